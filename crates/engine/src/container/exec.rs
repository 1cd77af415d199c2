//! `docker exec`: exec instances are created, then started through the container's monitor,
//! which runs them with libcontainer's tenant builder and reports their exit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use oci_spec::runtime::Spec;
use skiff_runtime::protocol::{ExecSpec, Request, Response};
use tokio::sync::mpsc;

use super::attach::{AttachHandle, spawn_relay};
use super::{Containers, Status, monitor_client, rootfs};
use crate::error::{EngineError, Result};
use crate::volumes::hex_id;

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

pub struct ExecInstance {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub state: Mutex<ExecState>,
}

#[derive(Default)]
pub struct ExecStore {
    map: Mutex<HashMap<String, Arc<ExecInstance>>>,
}

impl ExecStore {
    pub fn get(&self, id: &str) -> Result<Arc<ExecInstance>> {
        self.map
            .lock()
            .expect("exec lock")
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    pub(crate) fn forget_container(&self, container: &str) {
        self.map.lock().expect("exec lock").retain(|_, e| e.container_id != container);
    }

    pub fn of_container(&self, container: &str) -> Vec<String> {
        self.map
            .lock()
            .expect("exec lock")
            .values()
            .filter(|e| e.container_id == container)
            .map(|e| e.id.clone())
            .collect()
    }
}

fn finish(e: &ExecInstance, code: Option<i32>) {
    let mut s = e.state.lock().expect("exec state");
    s.running = false;
    s.exit_code = Some(code.unwrap_or(126) as i64);
}

impl Containers {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, key: &str, config: ExecConfig) -> Result<String> {
        let c = self.get(key)?;
        match c.status() {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    c.id
                )));
            }
            _ => {
                return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
            }
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::invalid("No exec command specified"));
        }
        let id = hex_id();
        let inst = Arc::new(ExecInstance {
            id: id.clone(),
            container_id: c.id.clone(),
            config,
            state: Mutex::new(ExecState::default()),
        });
        self.execs.map.lock().expect("exec lock").insert(id.clone(), inst);
        let rec = c.record();
        self.publish_with(&rec, &format!("exec_create: {}", rec.path), &[("execID", id.clone())]);
        Ok(id)
    }

    /// The OCI process of an exec: the container's, with the exec's command, env, user, cwd.
    fn exec_process(&self, cid: &str, cfg: &ExecConfig, tty: bool) -> Result<serde_json::Value> {
        let dir = self.monitor_dir(cid);
        let spec = Spec::load(dir.path().join("config.json"))
            .map_err(|e| EngineError::internal(format!("reading container spec: {e}")))?;
        let mut process =
            spec.process().clone().ok_or_else(|| EngineError::internal("container spec has no process"))?;
        process.set_args(cfg.cmd.clone());
        process.set_terminal(Some(tty));
        let mut env = process.env().clone().unwrap_or_default();
        for e in cfg.env.clone().unwrap_or_default() {
            let key = e.split('=').next().unwrap_or(&e).to_string();
            env.retain(|x| x.split('=').next() != Some(key.as_str()));
            env.push(e);
        }
        process.set_env(Some(env));
        if let Some(wd) = cfg.working_dir.clone().filter(|w| !w.is_empty()) {
            process.set_cwd(wd.into());
        }
        let rootfs = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
        if let Some(u) = cfg.user.clone().filter(|u| !u.is_empty()) {
            let r = rootfs::resolve_user(&rootfs, &u, &[])?;
            let mut user = process.user().clone();
            user.set_uid(r.uid);
            user.set_gid(r.gid);
            user.set_additional_gids(if r.additional_gids.is_empty() { None } else { Some(r.additional_gids) });
            process.set_user(user);
        }
        if cfg.privileged == Some(true) {
            let all = crate::security::caps::resolve(true, &[], &[], &self.caps_held).map_err(EngineError::invalid)?;
            let set: oci_spec::runtime::Capabilities =
                all.iter().filter_map(|c| c.trim_start_matches("CAP_").parse().ok()).collect();
            let mut caps = process.capabilities().clone().unwrap_or_default();
            caps.set_bounding(Some(set.clone()));
            caps.set_effective(Some(set.clone()));
            caps.set_permitted(Some(set));
            process.set_capabilities(Some(caps));
        }
        serde_json::to_value(&process).map_err(EngineError::from_cause)
    }

    /// Whether an exec could start now (it exists, has not run, its container runs): the
    /// API answers these before it hands the connection over to the stream.
    pub fn exec_startable(&self, id: &str) -> Result<()> {
        let inst = self.execs.get(id)?;
        if inst.state.lock().expect("exec state").started {
            return Err(EngineError::conflict(format!("Error: Exec command {id} has already run")));
        }
        let c = self.get(&inst.container_id)?;
        if c.status() != Status::Running {
            return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
        }
        Ok(())
    }

    /// `POST /exec/{id}/start`. With `detach`, returns `None` once the process runs.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        detach: bool,
        tty: Option<bool>,
        console_size: Option<(u16, u16)>,
    ) -> Result<Option<AttachHandle>> {
        let inst = self.execs.get(id)?;
        {
            let mut s = inst.state.lock().expect("exec state");
            if s.started {
                return Err(EngineError::conflict(format!("Error: Exec command {id} has already run")));
            }
            s.started = true;
        }
        let c = self.get(&inst.container_id)?;
        if c.status() != Status::Running {
            return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
        }
        // As dockerd: the exec's own config decides whether it gets a terminal; the start's
        // `Tty` only decides whether its output is sent raw or framed (docker-py starts every
        // exec with `Tty: false`, and still gets its terminal's CRLFs, framed).
        let pty = inst.config.tty.unwrap_or(false);
        let raw_output = tty.unwrap_or(pty);
        let tty = pty;
        let stdin = !detach && inst.config.attach_stdin == Some(true);
        let process = self.exec_process(&c.id, &inst.config, tty)?;
        let dir = self.monitor_dir(&c.id);
        let mut conn = monitor_client::connect(&dir).await.map_err(|e| EngineError::internal(format!("exec: {e}")))?;
        let console_size = console_size.or_else(|| {
            inst.config
                .console_size
                .as_ref()
                .filter(|s| s.len() == 2 && s[0] > 0)
                .map(|s| (s[0].min(u16::MAX as usize) as u16, s[1].min(u16::MAX as usize) as u16))
        });
        let spec = ExecSpec { id: inst.id.clone(), process, tty, stdin, detach, console_size };
        conn.send(&Request::Exec { spec }).await.map_err(|e| EngineError::internal(format!("exec: {e}")))?;
        match conn.response().await {
            Ok(Some(Response::Started { pid, .. })) => {
                let mut s = inst.state.lock().expect("exec state");
                s.running = true;
                s.pid = pid as i64;
            }
            Ok(Some(Response::Error { message })) => {
                finish(&inst, Some(126));
                // Docker records 126 for any exec that could not start.
                let msg = if message.contains("not found in $PATH") || message.contains("no such file") {
                    let exe = inst.config.cmd.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default();
                    format!(
                        "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{exe}\": executable file not found in $PATH: unknown"
                    )
                } else {
                    format!("OCI runtime exec failed: {message}: unknown")
                };
                inst.state.lock().expect("exec state").exit_code = Some(126);
                return Err(EngineError::invalid(msg));
            }
            other => {
                finish(&inst, None);
                return Err(EngineError::internal(format!("exec: unexpected monitor reply {other:?}")));
            }
        }
        let rec = c.record();
        self.publish_with(
            &rec,
            &format!("exec_start: {}", inst.config.cmd.clone().unwrap_or_default().join(" ")),
            &[("execID", inst.id.clone())],
        );
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = if stdin {
            let (t, r) = mpsc::channel(64);
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        // Output passes through this task so that the exit code is recorded before the client's
        // stream ends: the docker CLI inspects the exec the moment its stream closes.
        let (mid_tx, mut mid_rx) = mpsc::channel(64);
        let relay = spawn_relay(conn, mid_tx, in_rx, true, Some(inst.id.clone()));
        let this = self.clone();
        let inst2 = inst.clone();
        // Cancellable: a session still open when the daemon stops must not hold the shutdown.
        self.spawn_cancellable(async move {
            let mut client_gone = false;
            while let Some(m) = mid_rx.recv().await {
                if !client_gone && out_tx.send(m).await.is_err() {
                    client_gone = true;
                }
            }
            let code = relay.await.ok().flatten();
            finish(&inst2, code);
            drop(out_tx);
            if let Ok(c) = this.get(&inst2.container_id) {
                let rec = c.record();
                this.publish_with(
                    &rec,
                    "exec_die",
                    &[("execID", inst2.id.clone()), ("exitCode", code.unwrap_or(126).to_string())],
                );
            }
        });
        if detach {
            return Ok(None);
        }
        Ok(Some(AttachHandle { output: out_rx, input: in_tx, tty: raw_output }))
    }

    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let inst = self.execs.get(id)?;
        monitor_client::call(
            &self.monitor_dir(&inst.container_id),
            Request::ExecResize { id: id.to_string(), height, width },
        )
        .await?;
        Ok(())
    }

    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspectResponse> {
        let inst = self.execs.get(id)?;
        let s = inst.state.lock().expect("exec state").clone();
        let cmd = inst.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(inst.config.detach_keys.clone().unwrap_or_default()),
            id: Some(inst.id.clone()),
            running: Some(s.running),
            exit_code: s.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(inst.config.privileged.unwrap_or(false)),
                user: inst.config.user.clone(),
                tty: Some(inst.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(inst.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(inst.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(inst.config.attach_stdout.unwrap_or(false)),
            container_id: Some(inst.container_id.clone()),
            pid: Some(s.pid),
        })
    }

    /// Runs a command in the container and collects its output (healthchecks).
    pub async fn exec_collect(
        self: &Arc<Self>,
        cid: &str,
        cmd: Vec<String>,
        timeout: std::time::Duration,
    ) -> Result<(i64, String)> {
        let cfg =
            ExecConfig { cmd: Some(cmd), attach_stdout: Some(true), attach_stderr: Some(true), ..Default::default() };
        let id = self.exec_create(cid, cfg)?;
        let handle = self
            .exec_start(&id, false, Some(false), None)
            .await?
            .ok_or_else(|| EngineError::internal("exec detached"))?;
        let mut out = handle.output;
        let mut text = Vec::new();
        let collect = async {
            while let Some(o) = out.recv().await {
                let b = match o {
                    super::attach::Output::Stdout(b) | super::attach::Output::Stderr(b) => b,
                };
                if text.len() < 4096 {
                    text.extend_from_slice(&b[..b.len().min(4096 - text.len())]);
                }
            }
        };
        if tokio::time::timeout(timeout, collect).await.is_err() {
            let inst = self.execs.get(&id)?;
            let _ =
                monitor_client::call(&self.monitor_dir(cid), Request::ExecSignal { id: inst.id.clone(), signal: 9 })
                    .await;
            return Ok((-1, format!("Health check exceeded timeout ({timeout:?})")));
        }
        // The relay finished; give the state task a moment to record the code.
        for _ in 0..50 {
            let s = self.execs.get(&id)?.state.lock().expect("exec state").clone();
            if let Some(code) = s.exit_code {
                return Ok((code, String::from_utf8_lossy(&text).into_owned()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok((-1, String::from_utf8_lossy(&text).into_owned()))
    }
}
