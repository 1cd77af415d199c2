//! The daemon's side of the monitor protocol (async), and spawning monitors.

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use skiff_runtime::config::MonitorDir;
use skiff_runtime::protocol::{self, FrameKind, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{EngineError, Result};

/// One connection to a monitor.
pub struct Conn {
    stream: UnixStream,
    buf: BytesMut,
}

pub async fn connect(dir: &MonitorDir) -> std::io::Result<Conn> {
    // Connect through a descriptor of the directory: the socket's full path may be longer
    // than a unix socket address allows (deep --exec-root).
    let d = std::fs::File::open(dir.path())?;
    let short = format!("/proc/self/fd/{}/ctl.sock", std::os::fd::AsRawFd::as_raw_fd(&d));
    let stream = UnixStream::connect(&short).await?;
    drop(d);
    Ok(Conn { stream, buf: BytesMut::with_capacity(16 << 10) })
}

impl Conn {
    pub async fn send(&mut self, req: &Request) -> std::io::Result<()> {
        let mut out = Vec::new();
        protocol::encode_json(req, &mut out);
        self.stream.write_all(&out).await
    }

    /// Next frame, or `None` at end of stream.
    pub async fn frame(&mut self) -> std::io::Result<Option<(FrameKind, bytes::Bytes)>> {
        read_frame(&mut self.stream, &mut self.buf).await
    }

    /// Next JSON response (output frames before it are skipped).
    pub async fn response(&mut self) -> std::io::Result<Option<Response>> {
        while let Some((k, p)) = self.frame().await? {
            if k == FrameKind::Json {
                return serde_json::from_slice(&p).map(Some).map_err(std::io::Error::other);
            }
        }
        Ok(None)
    }

    pub fn into_split(self) -> (FrameReader, OwnedWriteHalf) {
        let (r, w) = self.stream.into_split();
        (FrameReader { r, buf: self.buf }, w)
    }
}

/// The reading half of a streaming connection.
pub struct FrameReader {
    r: OwnedReadHalf,
    buf: BytesMut,
}

impl FrameReader {
    pub async fn frame(&mut self) -> std::io::Result<Option<(FrameKind, bytes::Bytes)>> {
        read_frame(&mut self.r, &mut self.buf).await
    }
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<(FrameKind, bytes::Bytes)>> {
    loop {
        match protocol::decode(buf) {
            Ok(Some((kind, payload, used))) => {
                let start = used - payload.len();
                let mut frame = buf.split_to(used);
                let data = frame.split_off(start).freeze();
                return Ok(Some((kind, data)));
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        if r.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Writes a frame on a streaming connection's write half.
pub async fn write_frame(w: &mut OwnedWriteHalf, kind: FrameKind, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    protocol::encode(kind, payload, &mut out);
    w.write_all(&out).await
}

/// One request, one response.
pub async fn call(dir: &MonitorDir, req: Request) -> Result<Response> {
    let mut c =
        connect(dir).await.map_err(|e| EngineError::internal(format!("cannot reach the container's monitor: {e}")))?;
    c.send(&req).await.map_err(|e| EngineError::internal(format!("monitor: {e}")))?;
    match c.response().await {
        Ok(Some(Response::Error { message })) => Err(EngineError::conflict(message)),
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(EngineError::internal("the container's monitor closed the connection")),
        Err(e) => Err(EngineError::internal(format!("monitor: {e}"))),
    }
}

/// Starts a monitor for the directory (its `monitor.json` already written) and waits until it
/// listens. Returns the monitor's pid.
pub async fn spawn(bin: &Path, dir: &MonitorDir) -> Result<i32> {
    let mut child = tokio::process::Command::new(bin)
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| EngineError::internal(format!("starting {}: {e}", bin.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line)).await;
    let _ = child.wait().await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(EngineError::internal(format!("monitor: {e}"))),
        Err(_) => {
            return Err(EngineError::internal("the container monitor did not start in time"));
        }
    }
    let line = line.trim();
    match line.strip_prefix("ready ") {
        Some(pid) => pid.parse().map_err(|_| EngineError::internal(format!("monitor said {line:?}"))),
        None if line.is_empty() => Err(EngineError::internal("the container monitor exited before it was ready")),
        None => Err(EngineError::internal(format!("container monitor: {line}"))),
    }
}
