//! Attaching to a container's stdio.
//!
//! The API gets an [`AttachHandle`]: a channel of output chunks and, with stdin, a channel for
//! input. Behind it a relay task speaks the monitor protocol. An attach made before the
//! container starts (what `docker run` does) is parked and connected when the monitor is up,
//! before the container's process runs, so no output is missed.

use std::sync::Arc;

use bytes::Bytes;
use skiff_runtime::config::MonitorDir;
use skiff_runtime::protocol::{FrameKind, Request, Response, Streams};
use tokio::sync::mpsc;

use super::monitor_client::{self, write_frame};
use super::{Container, Containers, Status};
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Data(Bytes),
    /// The client's stdin ended.
    Close,
    Resize {
        height: u16,
        width: u16,
    },
}

/// The API's end of an attach (or exec) stream.
pub struct AttachHandle {
    pub output: mpsc::Receiver<Output>,
    pub input: Option<mpsc::Sender<Input>>,
    pub tty: bool,
}

pub(crate) struct PendingAttach {
    pub streams: Streams,
    pub out: mpsc::Sender<Output>,
    pub input: Option<mpsc::Receiver<Input>>,
    pub stdin_once: bool,
}

/// Connects an attach to a running monitor and relays until the container exits or the
/// client goes away.
pub(crate) async fn connect_relay(dir: &MonitorDir, p: PendingAttach) -> Result<()> {
    let mut conn = monitor_client::connect(dir).await.map_err(|e| EngineError::internal(format!("attach: {e}")))?;
    conn.send(&Request::Attach { streams: p.streams })
        .await
        .map_err(|e| EngineError::internal(format!("attach: {e}")))?;
    match conn.response().await {
        Ok(Some(Response::Ok)) => {}
        // Already exited: nothing to stream.
        Ok(Some(Response::Exited { .. })) => return Ok(()),
        Ok(Some(Response::Error { message })) => return Err(EngineError::conflict(message)),
        other => {
            return Err(EngineError::internal(format!("attach: unexpected monitor reply {other:?}")));
        }
    }
    spawn_relay(conn, p.out, p.input, p.stdin_once, None);
    Ok(())
}

/// Moves frames between a monitor connection and the API's channels.
pub(crate) fn spawn_relay(
    conn: monitor_client::Conn,
    out: mpsc::Sender<Output>,
    input: Option<mpsc::Receiver<Input>>,
    close_stdin_on_eof: bool,
    resize_exec: Option<String>,
) -> tokio::task::JoinHandle<Option<i32>> {
    let (mut reader, mut writer) = conn.into_split();
    // Dropping a write half shuts the socket down for writing, which the monitor reads as the
    // client leaving: the reader task holds it when there is no input to forward.
    let mut keep_writer = None;
    let mut input_task = None;
    if let Some(mut input) = input {
        input_task = Some(tokio::spawn(async move {
            while let Some(msg) = input.recv().await {
                let r = match msg {
                    Input::Data(b) => write_frame(&mut writer, FrameKind::Stdin, &b).await,
                    Input::Close => write_frame(&mut writer, FrameKind::StdinClose, &[]).await,
                    Input::Resize { height, width } => {
                        let req = match &resize_exec {
                            Some(id) => Request::ExecResize { id: id.clone(), height, width },
                            None => Request::Resize { height, width },
                        };
                        let payload = serde_json::to_vec(&req).expect("serializes");
                        write_frame(&mut writer, FrameKind::Json, &payload).await
                    }
                };
                if r.is_err() {
                    return;
                }
            }
            if close_stdin_on_eof {
                let _ = write_frame(&mut writer, FrameKind::StdinClose, &[]).await;
            }
            // Keep the write half open until the reader is done (dropping it here would
            // half-close the socket, which the monitor reads as the client leaving); the
            // reader ends this task when it ends.
            std::future::pending::<()>().await;
        }));
    } else {
        keep_writer = Some(writer);
    }
    tokio::spawn(async move {
        let _writer = keep_writer;
        // The input side lives as long as the output side, not longer: once the relay ends,
        // its write half (and the task holding it) go too.
        struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                if let Some(t) = &self.0 {
                    t.abort();
                }
            }
        }
        let _input = AbortOnDrop(input_task);
        loop {
            match reader.frame().await {
                Ok(Some((FrameKind::Stdout, b))) => {
                    if out.send(Output::Stdout(b)).await.is_err() {
                        return None;
                    }
                }
                Ok(Some((FrameKind::Stderr, b))) => {
                    if out.send(Output::Stderr(b)).await.is_err() {
                        return None;
                    }
                }
                Ok(Some((FrameKind::Json, p))) => {
                    if let Ok(Response::Exited { status }) = serde_json::from_slice::<Response>(&p) {
                        return Some(status.code);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    })
}

impl Containers {
    /// Attaches to a container. Before it starts, the attach waits for the start.
    pub async fn attach(self: &Arc<Self>, key: &str, streams: Streams) -> Result<AttachHandle> {
        let c = self.get(key)?;
        let (tty, open_stdin, stdin_once) = c.with(|r| {
            (r.config.tty == Some(true), r.config.open_stdin == Some(true), r.config.stdin_once == Some(true))
        });
        let streams = Streams { stdin: streams.stdin && open_stdin, ..streams };
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = if streams.stdin {
            let (t, r) = mpsc::channel(64);
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let p = PendingAttach { streams, out: out_tx, input: in_rx, stdin_once };
        let _op = c.ops.lock().await;
        match c.status() {
            Status::Running | Status::Paused => connect_relay(&self.monitor_dir(&c.id), p).await?,
            Status::Created | Status::Exited | Status::Restarting => park(&c, p),
            Status::Removing | Status::Dead => {
                return Err(EngineError::conflict(format!("container {} is being removed", c.id)));
            }
        }
        Ok(AttachHandle { output: out_rx, input: in_tx, tty })
    }
}

impl Containers {
    /// `POST /containers/{id}/resize`: the container's terminal; without one there is nothing
    /// to resize, which is not an error (as with dockerd).
    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        let c = self.get(key)?;
        if !c.status().is_live() {
            return Err(EngineError::conflict(format!("Container {} is not running", c.id)));
        }
        if c.with(|r| r.config.tty != Some(true)) {
            return Ok(());
        }
        monitor_client::call(&self.monitor_dir(&c.id), Request::Resize { height, width }).await?;
        Ok(())
    }
}

fn park(c: &Container, p: PendingAttach) {
    c.pending_attach.lock().expect("attach lock").push(p);
}

/// Takes the parked attaches (at start).
pub(crate) fn take_pending(c: &Container) -> Vec<PendingAttach> {
    std::mem::take(&mut *c.pending_attach.lock().expect("attach lock"))
}
