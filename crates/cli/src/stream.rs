//! Streaming a hijacked attach/exec connection to the terminal: stdin up, stdout/stderr down
//! (demultiplexing Docker's 8-byte frame headers when there is no tty), raw terminal mode,
//! and window-size changes.

use std::io::Write;
use std::os::fd::AsFd;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Puts the terminal in raw mode while alive.
pub struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    pub fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !rustix::termios::isatty(fd) {
            return RawMode { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(fd) else { return RawMode { saved: None } };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = rustix::termios::tcsetattr(std::io::stdin().as_fd(), rustix::termios::OptionalActions::Now, s);
        }
    }
}

/// The terminal size of stdout (rows, columns), if it is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    let ws = rustix::termios::tcgetwinsize(out.as_fd()).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

pub fn stdin_is_tty() -> bool {
    rustix::termios::isatty(std::io::stdin().as_fd())
}

/// Relays until the daemon closes the stream (the process ended) or detaches.
pub async fn relay(up: hyper::upgrade::Upgraded, raw: bool, send_stdin: bool) -> anyhow::Result<()> {
    let io = TokioIo::new(up);
    let (mut rd, mut wr) = tokio::io::split(io);
    let input = if send_stdin {
        Some(tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // Half-close: the daemon closes the container's stdin, output keeps flowing.
            let _ = wr.shutdown().await;
        }))
    } else {
        None
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut pending: Vec<u8> = Vec::new();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if raw {
            let mut o = stdout.lock();
            o.write_all(&buf[..n])?;
            o.flush()?;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while pending.len() >= 8 {
            let len = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]) as usize;
            if pending.len() < 8 + len {
                break;
            }
            let stream = pending[0];
            let data: Vec<u8> = pending.drain(..8 + len).skip(8).collect();
            if stream == 2 {
                let mut e = stderr.lock();
                e.write_all(&data)?;
                e.flush()?;
            } else {
                let mut o = stdout.lock();
                o.write_all(&data)?;
                o.flush()?;
            }
        }
    }
    if let Some(h) = input {
        h.abort();
    }
    Ok(())
}
