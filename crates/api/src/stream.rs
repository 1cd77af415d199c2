//! Streams: hijacked attach/exec connections, Docker's multiplexed framing, and bridges
//! between blocking readers/writers (tar archives) and HTTP bodies.

use std::io;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use skiff_engine::container::attach::{AttachHandle, Input, Output};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Stream ids in the 8-byte header: 0 stdin, 1 stdout, 2 stderr.
pub fn mux(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    b.put_u32(data.len() as u32);
    b.extend_from_slice(data);
    b.freeze()
}

fn frame(out: &Output, tty: bool) -> Bytes {
    match (out, tty) {
        (Output::Stdout(b), true) | (Output::Stderr(b), true) => b.clone(),
        (Output::Stdout(b), false) => mux(1, b),
        (Output::Stderr(b), false) => mux(2, b),
    }
}

/// Parses `--detach-keys` (`ctrl-p,ctrl-q`, `a`, …) into bytes.
pub fn parse_detach_keys(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c {
                "@" => 0,
                "[" => 27,
                "\\" => 28,
                "]" => 29,
                "^" => 30,
                "_" => 31,
                c if c.len() == 1 && c.as_bytes()[0].is_ascii_lowercase() => c.as_bytes()[0] - b'a' + 1,
                _ => return None,
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return None;
        }
    }
    Some(out)
}

/// Relays a hijacked connection: client bytes become the container's stdin (watching for the
/// detach sequence), container output goes back framed (or raw with a tty). Ends when the
/// output ends (the process exited) or the client leaves or detaches.
pub async fn relay<IO>(io: IO, mut handle: AttachHandle, detach: Option<Vec<u8>>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let tty = handle.tty;
    let input = handle.input.take();
    let (detached_tx, mut detached_rx) = tokio::sync::oneshot::channel::<()>();
    // Ends with the relay, however the relay ends (also when dropped at shutdown).
    let reader = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        let keys = detach.unwrap_or_default();
        let mut matched = 0usize;
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    if let Some(tx) = &input {
                        let _ = tx.send(Input::Close).await;
                    }
                    // Keep the input channel open so the relay does not read EOF twice.
                    std::future::pending::<()>().await;
                    return;
                }
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            if !keys.is_empty() && input.is_some() {
                // Detach when the whole key sequence arrives; hold back a partial match.
                let mut out = Vec::with_capacity(n);
                for &b in chunk {
                    if b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = detached_tx.send(());
                            return;
                        }
                        continue;
                    }
                    out.extend_from_slice(&keys[..matched]);
                    matched = 0;
                    out.push(b);
                }
                if let Some(tx) = &input
                    && !out.is_empty()
                    && tx.send(Input::Data(Bytes::from(out))).await.is_err()
                {
                    return;
                }
                continue;
            }
            if let Some(tx) = &input {
                while !chunk.is_empty() {
                    let take = chunk.len().min(32 << 10);
                    if tx.send(Input::Data(Bytes::copy_from_slice(&chunk[..take]))).await.is_err() {
                        return;
                    }
                    chunk = &chunk[take..];
                }
            }
        }
    }));
    loop {
        tokio::select! {
            o = handle.output.recv() => match o {
                Some(o) => {
                    if wr.write_all(&frame(&o, tty)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = &mut detached_rx => break,
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    reader.abort();
}

/// The `101 Switching Protocols` answer that hands a connection over to a raw stream.
pub fn upgraded_response(tty: bool) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    let mut r = axum::response::Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// Writes a container's log into a hijacked stream (framed unless `tty`) and closes it.
pub async fn write_log_and_close<IO: AsyncWrite + Unpin>(
    mut io: IO,
    tty: bool,
    mut rx: tokio::sync::mpsc::Receiver<skiff_engine::container::logs::LogLine>,
) {
    // Clients read the 101's headers through a buffered reader and then the raw socket
    // (docker-py): bytes that arrive with the headers land in that buffer and are lost. A
    // moment's pause lets the headers go alone, as dockerd's log reader happens to.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    while let Some(l) = rx.recv().await {
        let bytes = if tty {
            l.data
        } else {
            mux(if l.stream == skiff_engine::types::Stream::Stdout { 1 } else { 2 }, &l.data)
        };
        if io.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

/// Writes an error into a hijacked stream (as stdout, as dockerd does) and closes it.
pub async fn write_error<IO: AsyncWrite + Unpin>(mut io: IO, message: &str, tty: bool) {
    let text = format!("{message}\r\n");
    let bytes = if tty { Bytes::from(text) } else { mux(1, text.as_bytes()) };
    let _ = io.write_all(&bytes).await;
    let _ = io.shutdown().await;
}

/// The output of an attach as a plain response body (clients that did not ask to upgrade).
pub fn output_body(mut handle: AttachHandle) -> Body {
    let tty = handle.tty;
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    crate::tasks::spawn(async move {
        while let Some(o) = handle.output.recv().await {
            if tx.send(Ok(frame(&o, tty))).await.is_err() {
                return;
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

/// A blocking `Write` whose bytes become a response body.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: BytesMut,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        }
        Ok(())
    }
}

/// Runs a blocking producer on the blocking pool; what it writes streams to the client. An error
/// ends the body abruptly (the client sees a truncated stream), as with Docker.
pub fn blocking_body<F>(f: F) -> Body
where
    F: FnOnce(&mut ChannelWriter) -> Result<(), skiff_engine::EngineError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx: tx.clone(), buf: BytesMut::new() };
        match f(&mut w).and_then(|_| io::Write::flush(&mut w).map_err(Into::into)) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e.message, "streamed response failed");
                let _ = tx.blocking_send(Err(io::Error::other(e.message)));
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

/// A request body as a blocking `Read` (for tar uploads), to be used on the blocking pool.
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    cur: Bytes,
}

impl BodyReader {
    pub fn new(body: Body) -> BodyReader {
        let (tx, rx) = mpsc::channel(8);
        crate::tasks::spawn(async move {
            let mut s = body.into_data_stream();
            while let Some(chunk) = s.next().await {
                let r = chunk.map_err(io::Error::other);
                let stop = r.is_err();
                if tx.send(r).await.is_err() || stop {
                    return;
                }
            }
        });
        BodyReader { rx, cur: Bytes::new() }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Newline-delimited JSON from a channel of values.
pub fn json_lines(rx: mpsc::Receiver<serde_json::Value>) -> Body {
    let s = ReceiverStream::new(rx).map(|v| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, io::Error>(Bytes::from(b))
    });
    Body::from_stream(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_header() {
        let f = mux(2, b"hi");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Some(vec![16, 17]));
        assert_eq!(parse_detach_keys("a,ctrl-@"), Some(vec![b'a', 0]));
        assert_eq!(parse_detach_keys("ctrl-1"), None);
        assert_eq!(parse_detach_keys("ab"), None);
    }
}
