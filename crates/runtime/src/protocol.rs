//! The daemon ↔ monitor protocol, spoken over the monitor's unix socket (`ctl.sock`).
//!
//! Every message is a frame: one kind byte, a big-endian u32 length, then the payload.
//! A connection starts with one [`Request`] (a JSON frame). Control requests get one
//! [`Response`] and the monitor closes the connection. Streaming requests (attach, exec,
//! wait) keep it open: the monitor sends output frames and finally an `Exited` response; the
//! client may send stdin frames, resize requests (JSON) and a stdin-close frame.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest frame either side accepts; bigger frames are protocol errors.
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Json = 1,
    Stdin = 2,
    Stdout = 3,
    Stderr = 4,
    StdinClose = 5,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Json,
            2 => FrameKind::Stdin,
            3 => FrameKind::Stdout,
            4 => FrameKind::Stderr,
            5 => FrameKind::StdinClose,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("monitor connection: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame kind {0}")]
    Kind(u8),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("bad message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a frame header followed by the payload.
pub fn encode(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn encode_json<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(msg).expect("protocol messages serialize");
    encode(FrameKind::Json, &payload, out);
}

/// Tries to take one complete frame off the front of `buf`. `Ok(None)`: need more bytes.
/// A decoded frame: its kind, payload, and how many bytes of the buffer it used.
pub type Decoded<'a> = (FrameKind, &'a [u8], usize);

pub fn decode(buf: &[u8]) -> Result<Option<Decoded<'_>>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let kind = FrameKind::from_u8(buf[0]).ok_or(ProtocolError::Kind(buf[0]))?;
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    Ok(Some((kind, &buf[5..5 + len], 5 + len)))
}

/// Blocking read of one frame (for simple synchronous clients and tests).
pub fn read_frame(r: &mut impl Read) -> Result<Option<(FrameKind, Vec<u8>)>, ProtocolError> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let kind = FrameKind::from_u8(head[0]).ok_or(ProtocolError::Kind(head[0]))?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

pub fn write_json<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ProtocolError> {
    let mut out = Vec::new();
    encode_json(msg, &mut out);
    w.write_all(&out)?;
    Ok(())
}

/// Which streams an attach wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A process to run in the container, for exec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub id: String,
    /// An OCI runtime-spec `process` object.
    pub process: serde_json::Value,
    pub tty: bool,
    pub stdin: bool,
    /// Do not stream output; the connection only reports start and exit.
    pub detach: bool,
    /// Initial terminal size (rows, columns).
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Current state, one response.
    State,
    /// Create and start the container; answers `Started` or `Error`.
    Start,
    /// Stream the container's stdio; ends with `Exited`.
    Attach {
        streams: Streams,
    },
    /// Answers `Exited` when the container exits (at once if it has).
    Wait,
    /// Signal the container's init process.
    Signal {
        signal: i32,
    },
    /// Resize the container's terminal.
    Resize {
        height: u16,
        width: u16,
    },
    /// Resize an exec's terminal.
    ExecResize {
        id: String,
        height: u16,
        width: u16,
    },
    Pause,
    Resume,
    /// Run a process in the container; the connection then carries its stdio.
    Exec {
        spec: ExecSpec,
    },
    /// Signal an exec'd process.
    ExecSignal {
        id: String,
        signal: i32,
    },
    /// Exit without starting: for a monitor whose container never started (its create was
    /// interrupted, or the container is being removed). Refused once the container started.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code Docker reports: the process's status, or 128 + signal.
    pub code: i32,
    pub oom_killed: bool,
    /// RFC 3339.
    pub finished_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecState {
    pub pid: i32,
    pub exit: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    pub status: Status,
    pub pid: Option<i32>,
    pub started_at: Option<String>,
    pub exit: Option<ExitStatus>,
    pub monitor_pid: i32,
    pub execs: BTreeMap<String, ExecState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    State { state: MonitorState },
    Started { pid: i32, started_at: String },
    Exited { status: ExitStatus },
    Error { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_json(&Request::Signal { signal: 9 }, &mut buf);
        encode(FrameKind::Stdout, b"hello", &mut buf);
        let (k, p, used) = decode(&buf).unwrap().unwrap();
        assert_eq!(k, FrameKind::Json);
        assert_eq!(serde_json::from_slice::<Request>(p).unwrap(), Request::Signal { signal: 9 });
        let (k, p, _) = decode(&buf[used..]).unwrap().unwrap();
        assert_eq!((k, p), (FrameKind::Stdout, &b"hello"[..]));
        assert!(decode(&buf[..3]).unwrap().is_none());
        assert!(decode(&buf[..used - 1]).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(decode(&[9, 0, 0, 0, 0]), Err(ProtocolError::Kind(9))));
        assert!(matches!(decode(&[1, 0xff, 0xff, 0xff, 0xff]), Err(ProtocolError::TooLarge(_))));
        assert!(serde_json::from_slice::<Request>(br#"{"op":"format_disk"}"#).is_err());
        let mut r = &[1u8, 0, 0, 0, 10, b'{'][..];
        assert!(read_frame(&mut r).is_err());
    }
}
