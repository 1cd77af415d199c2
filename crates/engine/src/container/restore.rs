//! A restarted daemon: re-adopt the running containers, settle the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard_stubs::models::RestartPolicyNameEnum;
use skiff_image::db::Durability;
use skiff_runtime::protocol::{Request, Response, Status as MStatus};

use super::monitor_client;
use super::{Containers, Status};

impl Containers {
    /// At daemon start: reconnect to the monitors of running containers, and settle the state
    /// of those that exited while the daemon was away.
    pub async fn restore(self: &Arc<Self>) {
        // What a create, start or removal killed with the daemon left without a record.
        {
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.collect_orphans()).await;
        }
        self.stop_orphan_monitors().await;
        for c in self.all() {
            self.readopt(&c).await;
        }
        if !self.defaults.live_restore {
            // Live restore off: what outlived the daemon stops now (restart policies below bring
            // back the containers that ask for it).
            self.stop_all().await;
        }
        self.settle_interrupted().await;
    }

    /// After [`restore`](Self::restore) and the networks' reconciliation: containers with a
    /// restart policy of `always` (or `unless-stopped`, not stopped by hand) come back with
    /// the daemon. Not before the reconciliation: it releases every sandbox whose container
    /// is not running, and would take the one a start is making from under it.
    pub async fn restart_at_boot(self: &Arc<Self>) {
        for c in self.all() {
            let rec = c.record();
            let policy = rec.host_config.restart_policy.as_ref().and_then(|p| p.name);
            let wants = matches!(policy, Some(RestartPolicyNameEnum::ALWAYS))
                || (matches!(policy, Some(RestartPolicyNameEnum::UNLESS_STOPPED)) && !rec.manually_stopped);
            if wants && rec.state.status == Status::Exited && rec.state.started_at.is_some() {
                let this = self.clone();
                self.spawn_cancellable(async move {
                    let _op = c.ops.lock().await;
                    if let Err(e) = this.start_locked(&c).await {
                        tracing::warn!(container = %c.id, error = %e, "restart at daemon start failed");
                    }
                });
            }
        }
        self.restored.send_replace(true);
    }

    /// Until the daemon's start has reconciled the networks (at once afterwards).
    pub(super) async fn restored(&self) {
        let _ = self.restored.subscribe().wait_for(|done| *done).await;
    }

    /// Monitors with no container record: a container running under one is stopped (nothing
    /// can manage it), and the monitor's directory goes.
    async fn stop_orphan_monitors(&self) {
        for id in self.orphan_monitors() {
            self.shutdown_monitor(&id).await;
            let dir = self.monitor_dir(&id);
            if let Ok(Response::State { state }) = monitor_client::call(&dir, Request::State).await
                && matches!(state.status, MStatus::Running | MStatus::Paused)
            {
                // A container running with no record: nothing can manage it; stop it.
                tracing::warn!(container = %id, "killing a container that has no record");
                let _ = monitor_client::call(&dir, Request::Signal { signal: 9 }).await;
            }
            let _ = skiff_common::fsutil::remove_all(dir.path());
        }
    }

    /// Takes back one container from what its monitor says: still running (watch it again),
    /// exited while we were away (settle the exit), a start or removal the daemon's death cut
    /// short (finish it).
    async fn readopt(self: &Arc<Self>, c: &Arc<super::Container>) {
        let st = c.status();
        let dir = self.monitor_dir(&c.id);
        let alive = if dir.socket().exists() { monitor_client::call(&dir, Request::State).await.ok() } else { None };
        match alive {
            Some(Response::State { state }) if matches!(state.status, MStatus::Running | MStatus::Paused) => {
                let status = if state.status == MStatus::Paused { Status::Paused } else { Status::Running };
                let _ = self.update(c, Durability::Lazy, |r| {
                    r.state.status = status;
                    r.state.pid = state.pid.unwrap_or(0);
                    if let Some(s) = state.started_at.as_deref().and_then(skiff_common::timefmt::parse) {
                        r.state.started_at = Some(s);
                    }
                    // As dockerd: a re-adopted container's checks start over, from
                    // `starting` (the last result before the daemon went may not even
                    // have reached the disk).
                    if super::health::has_check(&r.config) {
                        r.state.health = Some(super::health::starting());
                    }
                });
                let watcher = async {
                    let mut w = monitor_client::connect(&dir).await?;
                    w.send(&Request::Wait).await?;
                    Ok::<_, std::io::Error>(w)
                }
                .await;
                match watcher {
                    Ok(mut w) => {
                        // The first reply is Ok (still running) or Exited (just finished).
                        match w.response().await {
                            Ok(Some(Response::Ok)) => {
                                self.watch_exit(c.clone(), w, Instant::now() - Duration::from_secs(60))
                            }
                            Ok(Some(Response::Exited { status })) => {
                                self.on_exit(c.clone(), status, Duration::from_secs(60)).await
                            }
                            _ => {
                                let s = self.exit_from_file(&c.id);
                                self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                            }
                        }
                    }
                    Err(_) => {
                        let s = self.exit_from_file(&c.id);
                        self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                    }
                }
                super::health::spawn(self.clone(), c.clone());
            }
            // A start killed with the daemon: its monitor still waits to be told.
            Some(Response::State { state }) if state.status == MStatus::Created => {
                self.shutdown_monitor(&c.id).await;
                if st.is_live() || st == Status::Restarting {
                    let s = self.exit_from_file(&c.id);
                    self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
                }
            }
            // A start whose record was not flushed before a crash still left the monitor's
            // exit file behind.
            _ if st.is_live() || st == Status::Restarting || (st == Status::Created && dir.exit_file().exists()) => {
                let s = self.exit_from_file(&c.id);
                self.on_exit(c.clone(), s, Duration::from_secs(60)).await;
            }
            // A removal killed with the daemon: finish it.
            _ if st == Status::Removing => {
                if let Err(e) = self.finish_remove(c).await {
                    tracing::warn!(container = %c.id, error = %e, "finishing an interrupted removal");
                } else {
                    self.publish(&c.record(), "destroy");
                }
            }
            _ => {}
        }
    }

    /// What a daemon killed mid-operation left half done: builds' RUN containers (their
    /// builds are gone), containers paused by a commit, root filesystems left mounted.
    async fn settle_interrupted(self: &Arc<Self>) {
        for c in self.all() {
            let rec = c.record();
            if rec.builder {
                // A build's RUN container: its build died with the daemon.
                if let Err(e) = self.remove(&c.id, true, true).await {
                    tracing::warn!(container = %c.id, error = %e, "removing a dead build's container");
                }
                continue;
            }
            if rec.paused_for_commit {
                // A commit killed with the daemon paused this container: resume it.
                if rec.state.status == Status::Paused {
                    let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
                }
                let _ = self.update(&c, Durability::Lazy, |r| {
                    r.paused_for_commit = false;
                    if r.state.status == Status::Paused {
                        r.state.status = Status::Running;
                    }
                });
            }
            if !rec.state.status.is_live() {
                // A root filesystem (or a shareable /dev/shm) a crash left mounted.
                let _ = self.images.snapshots().unmount(&c.id);
                self.release_shm(&c.id);
            }
        }
    }

    /// Removes container directories and snapshots that no record describes (blocking).
    fn collect_orphans(&self) {
        let ids = self.known_ids();
        let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
        if let Ok(rd) = std::fs::read_dir(self.data_root.join("containers")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !ids.contains(&n) {
                    self.release_shm(&n);
                    tracing::info!(dir = %e.path().display(), "removing a container directory with no record");
                    let _ = skiff_common::fsutil::remove_all(&e.path());
                }
            }
        }
        for key in self.images.snapshots().keys() {
            if is_id(&key) && !ids.contains(&key) {
                tracing::info!(snapshot = %key, "removing a snapshot with no container");
                if let Err(e) = self.images.snapshots().remove(&key) {
                    tracing::warn!(snapshot = %key, error = %e, "removing a snapshot with no container");
                }
            }
        }
        self.volumes.collect(&|id| ids.contains(id));
    }

    /// Monitor directories with no container record.
    fn orphan_monitors(&self) -> Vec<String> {
        let ids = self.known_ids();
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.exec_root.join("containers")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !ids.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}
