//! A small Engine API client over a unix socket: one HTTP/1.1 connection per request, JSON
//! helpers, streamed bodies, and hijacked (upgraded) connections for attach and exec.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

type Body = BoxBody<Bytes, std::io::Error>;

/// An error the daemon answered with (`{"message": ...}`), kept apart so commands can map
/// status codes to exit codes.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
}

pub fn query(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

fn full(b: Vec<u8>) -> Body {
    Full::new(Bytes::from(b)).map_err(|never| match never {}).boxed()
}

impl Client {
    /// From `DOCKER_HOST` (unix:// only), `SKIFF_HOST`, or the default socket.
    pub fn from_env(host: Option<String>) -> anyhow::Result<Client> {
        let host = host
            .or_else(|| std::env::var("SKIFF_HOST").ok())
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///run/skiff.sock".into());
        let path =
            host.strip_prefix("unix://").map(str::to_string).or_else(|| host.starts_with('/').then(|| host.clone()));
        let Some(path) = path else { bail!("unsupported host {host:?}: only unix:// sockets are supported") };
        Ok(Client { socket: PathBuf::from(path) })
    }

    async fn connect(&self) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Body>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow!(
                "Cannot connect to the skiff daemon at unix://{}. Is the daemon running? ({e})",
                self.socket.display()
            )
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// Sends a request; returns the raw response (any status).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder().method(method).uri(path).header("Host", "skiff");
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let req = req.body(body)?;
        Ok(sender.send_request(req).await?)
    }

    /// A request with extra headers (X-Registry-Auth) and a JSON or empty body.
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder().method(method).uri(path).header("Host", "skiff");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = match body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                full(b)
            }
            None => empty(),
        };
        Self::checked(sender.send_request(req.body(body)?).await?).await
    }

    /// Checks the status; error statuses become [`ApiError`].
    pub async fn checked(resp: http::Response<Incoming>) -> anyhow::Result<http::Response<Incoming>> {
        if resp.status().is_success()
            || resp.status() == StatusCode::SWITCHING_PROTOCOLS
            || resp.status() == StatusCode::NOT_MODIFIED
        {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        Err(ApiError { status, message }.into())
    }

    pub async fn request(&self, method: Method, path: &str) -> anyhow::Result<http::Response<Incoming>> {
        Self::checked(self.send(method, path, empty(), None).await?).await
    }

    pub async fn request_json<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &T,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let b = serde_json::to_vec(body)?;
        Self::checked(self.send(method, path, full(b), Some("application/json")).await?).await
    }

    /// A request whose body streams from a reader (tar uploads).
    pub async fn request_stream(
        &self,
        method: Method,
        path: &str,
        mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        content_type: &str,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n])))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        let body = ChannelBody { rx }.boxed();
        Self::checked(self.send(method, path, body, Some(content_type)).await?).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.request(Method::GET, path).await?;
        read_json(resp).await
    }

    pub async fn post_json<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        let resp = self.request_json(Method::POST, path, body).await?;
        read_json(resp).await
    }

    /// Sends an upgrade request; returns the hijacked connection.
    pub async fn hijack<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<(hyper::upgrade::Upgraded, bool)> {
        let mut sender = self.connect().await?;
        let b = match body {
            Some(b) => full(serde_json::to_vec(b)?),
            None => empty(),
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("Host", "skiff")
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp")
            .header("Content-Type", "application/json")
            .body(b)?;
        let resp = Self::checked(sender.send_request(req).await?).await?;
        let raw = resp.headers().get("content-type").map(|v| v == "application/vnd.docker.raw-stream").unwrap_or(false);
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            bail!("the daemon did not upgrade the connection ({})", resp.status());
        }
        let up = hyper::upgrade::on(resp).await.context("upgrading the connection")?;
        Ok((up, raw))
    }
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx)
    }
}

pub async fn read_json<T: DeserializeOwned>(resp: http::Response<Incoming>) -> anyhow::Result<T> {
    let bytes = resp.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&bytes)
        .with_context(|| format!("decoding the daemon's answer: {}", String::from_utf8_lossy(&bytes)))
}

/// Reads a streamed body chunk by chunk.
pub async fn for_each_chunk(
    resp: http::Response<Incoming>,
    mut f: impl FnMut(Bytes) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            f(data)?;
        }
    }
    Ok(())
}

/// Reads a newline-delimited JSON stream.
pub async fn for_each_json(
    resp: http::Response<Incoming>,
    mut f: impl FnMut(serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    for_each_chunk(resp, |b| {
        buf.extend_from_slice(&b);
        while let Some(p) = buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            if line.iter().all(|c| c.is_ascii_whitespace()) {
                continue;
            }
            f(serde_json::from_slice(&line)?)?;
        }
        Ok(())
    })
    .await?;
    if !buf.iter().all(|c| c.is_ascii_whitespace()) {
        f(serde_json::from_slice(&buf)?)?;
    }
    Ok(())
}
