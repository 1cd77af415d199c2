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
    let mut demux = Demux::default();
    let stdout = std::io::stdout();
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
        demux.feed(&buf[..n], write_to_std)?;
    }
    if let Some(h) = input {
        h.abort();
    }
    Ok(())
}

/// Splits Docker's multiplexed stream (8-byte headers: stream, 0, 0, 0, big-endian length) into
/// its frames, across however the bytes arrive.
#[derive(Debug, Default)]
pub struct Demux {
    pending: Vec<u8>,
}

impl Demux {
    /// Takes the next bytes; calls `out(stream, data)` for every frame now complete.
    pub fn feed(&mut self, bytes: &[u8], mut out: impl FnMut(u8, &[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= 8 {
            let h = &self.pending[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.pending.len() - at - 8 < len {
                break;
            }
            out(h[0], &self.pending[at + 8..at + 8 + len])?;
            at += 8 + len;
        }
        self.pending.drain(..at);
        Ok(())
    }
}

/// Writes a demultiplexed frame where it belongs: stream 2 to stderr, the others to stdout.
pub fn write_to_std(stream: u8, data: &[u8]) -> std::io::Result<()> {
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
}

#[cfg(test)]
mod demux_tests {
    use super::Demux;

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let mut wire = Vec::new();
        for (s, d) in [(1u8, &b"hello "[..]), (2, b"oops\n"), (1, b""), (1, b"world\n")] {
            wire.extend_from_slice(&[s, 0, 0, 0]);
            wire.extend_from_slice(&(d.len() as u32).to_be_bytes());
            wire.extend_from_slice(d);
        }
        for chunk in [1, 3, 7, 8, 9, wire.len()] {
            let mut d = Demux::default();
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                d.feed(c, |s, data| {
                    got.push((s, data.to_vec()));
                    Ok(())
                })
                .unwrap();
            }
            let want: Vec<(u8, Vec<u8>)> =
                vec![(1, b"hello ".to_vec()), (2, b"oops\n".to_vec()), (1, vec![]), (1, b"world\n".to_vec())];
            assert_eq!(got, want, "chunks of {chunk}");
            assert!(d.pending.is_empty());
        }
        // A header that promises more than ever comes yields nothing (and no panic).
        let mut d = Demux::default();
        d.feed(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'x'], |_, _| panic!("no whole frame")).unwrap();
    }
}
