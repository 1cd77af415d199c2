//! skiff's OCI registry: the distribution-spec v1.1 API over filesystem storage, with basic and
//! bearer-token auth, TLS (rustls, ring) and garbage collection. Runs standalone
//! (`skiff registry serve`) or inside skiffd (`--registry-addr`).

pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod names;
pub mod server;
pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use config::Config;
pub use server::Registry;

/// Opens the registry a config describes.
pub fn open(cfg: &Config) -> Result<Arc<Registry>, String> {
    let storage = storage::Storage::open(&cfg.root).map_err(|e| format!("opening {}: {e}", cfg.root.display()))?;
    let auth = match cfg.effective_auth()? {
        Some(a) => Some(auth::Auth::new(a, &cfg.root)?),
        None => {
            tracing::warn!(root = %cfg.root.display(), "registry: anyone may push and delete (anonymous_push)");
            None
        }
    };
    if cfg.auth.is_none() && !cfg.anonymous_push {
        tracing::info!(
            "registry: pulls are open; pushes and deletes need a login: user {}, password in {}",
            config::LOGIN_USER,
            config::login_password_file(&cfg.root).display()
        );
    }
    Ok(Arc::new(Registry::new(storage, cfg.settings(), auth)))
}

/// Serves the registry on a bound listener until the task is dropped. With `tls`, every
/// connection is a TLS connection.
pub async fn serve(listener: TcpListener, reg: Arc<Registry>, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("registry accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let reg = reg.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| reg.clone().handle(req));
            let r = match acceptor {
                Some(a) => match a.accept(stream).await {
                    Ok(s) => http1::Builder::new().serve_connection(TokioIo::new(s), svc).await,
                    Err(e) => {
                        tracing::debug!(%peer, "registry TLS handshake: {e}");
                        return;
                    }
                },
                None => http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await,
            };
            if let Err(e) = r {
                tracing::debug!(%peer, "registry connection: {e}");
            }
        });
    }
}

/// Binds the configured address and serves (the convenience the binaries use).
pub async fn bind_and_serve(cfg: &Config) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let reg = open(cfg)?;
    let tls = cfg.tls_config()?;
    let listener = TcpListener::bind(cfg.addr).await.map_err(|e| format!("registry: binding {}: {e}", cfg.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, root = %cfg.root.display(), tls = tls.is_some(), "registry listening");
    Ok((addr, tokio::spawn(serve(listener, reg, tls))))
}
