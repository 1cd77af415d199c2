//! The wire between nodes: JSON over HTTP/2 over mutual TLS, one multiplexed connection per
//! peer address, re-dialled when it breaks.
//!
//! A [`Dialer`] is cheap to clone and shared by everything a node sends (Raft, heartbeats,
//! forwarded writes). [`serve`] accepts connections for a handler that sees, with each request,
//! who is calling (from the verified client certificate, or `None` for a joining node).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::identity::NodeIdentity;
use crate::rpc::RpcError;
use crate::tls;

/// The largest body a node accepts from a member (a Raft append or snapshot chunk included).
pub const MAX_BODY: usize = 64 << 20;
/// The largest body accepted from a caller without a certificate (a join: a token and a CSR).
pub const MAX_ANONYMOUS_BODY: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached (connect, TLS handshake): try another.
    #[error("{addr} is unreachable: {message}")]
    Unreachable { addr: String, message: String },
    /// The connection broke or timed out mid-call.
    #[error("calling {addr}: {message}")]
    Network { addr: String, message: String },
    /// The peer answered with an error.
    #[error("{message}")]
    Remote { status: u16, message: String },
    /// The peer's answer was not what the protocol says.
    #[error("bad answer from {addr}: {message}")]
    Protocol { addr: String, message: String },
}

/// A TLS configuration that can be replaced while connections use it (a renewed certificate,
/// a new root): new connections take the current one.
pub struct Swappable<T>(std::sync::RwLock<Arc<T>>);

impl<T> Swappable<T> {
    pub fn new(v: Arc<T>) -> Arc<Swappable<T>> {
        Arc::new(Swappable(std::sync::RwLock::new(v)))
    }

    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set(&self, v: Arc<T>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }
}

/// Dials peers with one TLS configuration (replaceable) and keeps a connection per address.
#[derive(Clone)]
pub struct Dialer {
    tls: Arc<Swappable<ClientConfig>>,
    server_name: ServerName<'static>,
    conns: Arc<Mutex<HashMap<String, SendRequest<Full<Bytes>>>>>,
    closed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Dialer {
    /// Dials managers (the name `swarm-manager`) with `tls`.
    pub fn new(tls: Arc<ClientConfig>) -> Dialer {
        Dialer {
            tls: Swappable::new(tls),
            server_name: tls::manager_name(),
            conns: Arc::default(),
            closed: Arc::default(),
        }
    }

    /// New connections use `tls` from now on (open ones stay as they were authenticated).
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        self.tls.set(tls);
    }

    async fn connect(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let unreachable = |m: String| CallError::Unreachable { addr: addr.to_string(), message: m };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(self.tls.get());
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| unreachable("TLS handshake timed out".into()))?
            .map_err(|e| unreachable(format!("TLS: {e}")))?;
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(format!("HTTP/2: {e}")))?;
        let (a, closed) = (addr.to_string(), self.closed.clone());
        // Ends when the peer goes or every sender is dropped.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %a, "connection ended: {e}");
            }
            closed.notify_waiters();
        });
        Ok(send)
    }

    /// Resolves when one of this dialer's connections ends (a peer went, or restarted).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let n = self.closed.clone();
        async move { n.notified().await }
    }

    async fn sender(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, CallError> {
        if let Some(s) = self.conns.lock().await.get(addr).filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        // Dialled without the lock: a peer that does not answer must not hold up calls to the
        // others (Raft to the live managers, while a dead one times out).
        let s = self.connect(addr).await?;
        self.conns.lock().await.insert(addr.to_string(), s.clone());
        Ok(s)
    }

    /// Forgets the connection to `addr` (the next call dials again).
    pub async fn forget(&self, addr: &str) {
        self.conns.lock().await.remove(addr);
    }

    /// POSTs `body` as JSON to `path` on `addr`, within `timeout`, and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let network = |m: String| CallError::Network { addr: addr.to_string(), message: m };
        let bytes = serde_json::to_vec(body).map_err(|e| network(e.to_string()))?;
        let mut send = self.sender(addr).await?;
        let req = Request::post(format!("https://{addr}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| network(e.to_string()))?;
        let fut = async {
            send.ready().await.map_err(|e| network(e.to_string()))?;
            let resp = send.send_request(req).await.map_err(|e| network(e.to_string()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| network(e.to_string()))?
                .to_bytes();
            Ok::<_, CallError>((status, body))
        };
        let (status, body) = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.forget(addr).await;
                return Err(e);
            }
            Err(_) => return Err(network(format!("no answer within {timeout:?}"))),
        };
        if !status.is_success() {
            let message = serde_json::from_slice::<RpcError>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(CallError::Remote { status: status.as_u16(), message });
        }
        serde_json::from_slice(&body)
            .map_err(|e| CallError::Protocol { addr: addr.to_string(), message: e.to_string() })
    }
}

/// A request as a handler sees it: who sent it, where, and its body.
#[derive(Debug)]
pub struct Call {
    pub peer: Option<NodeIdentity>,
    pub remote_addr: std::net::SocketAddr,
    pub path: String,
    pub body: Bytes,
}

impl Call {
    /// Decodes the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Reply> {
        serde_json::from_slice(&self.body).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, format!("bad body: {e}")))
    }
}

/// A handler's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: Serialize>(v: &T) -> Reply {
        match serde_json::to_vec(v) {
            Ok(body) => Reply { status: StatusCode::OK, body },
            Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    pub fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        let body = serde_json::to_vec(&RpcError { message: message.into() }).unwrap_or_default();
        Reply { status, body }
    }
}

/// What serves calls.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, call: Call) -> impl std::future::Future<Output = Reply> + Send;

    /// A member's connection ended (it went, or it is reconnecting).
    fn disconnected(&self, _peer: NodeIdentity) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }
}

/// Accepts mutual-TLS connections on `listener` until `stop` resolves, each with the TLS
/// configuration current when it arrives; each request goes to `handler` with its caller's
/// identity.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<Swappable<ServerConfig>>,
    handler: Arc<H>,
    stop: impl std::future::Future<Output = ()>,
) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut stop => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("cluster listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
        let (handler, cancel) = (handler.clone(), cancel.clone());
        tasks.spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => return,
            };
            let peer = match tls::peer_identity(stream.get_ref().1.peer_certificates()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%remote, "peer certificate: {e}");
                    return;
                }
            };
            let (on_close, who) = (handler.clone(), peer.clone());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, peer) = (handler.clone(), peer.clone());
                async move {
                    let path = req.uri().path().to_string();
                    let limit = if peer.is_some() { MAX_BODY } else { MAX_ANONYMOUS_BODY };
                    let reply = match Limited::new(req.into_body(), limit).collect().await {
                        Ok(b) => handler.handle(Call { peer, remote_addr: remote, path, body: b.to_bytes() }).await,
                        Err(e) => Reply::error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
                    *resp.status_mut() = reply.status;
                    resp.headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                () = cancel.cancelled() => return,
                r = conn => if let Err(e) = r {
                    tracing::debug!(%remote, "cluster connection: {e}");
                }
            }
            if let Some(who) = who {
                on_close.disconnected(who).await;
            }
        });
    }
    // Connections end with the server (a node that leaves must stop answering at once).
    cancel.cancel();
    tasks.close();
}
