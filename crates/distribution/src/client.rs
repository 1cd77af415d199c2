//! An HTTP client for one registry endpoint: scheme choice (HTTPS, or plain HTTP for insecure
//! registries), Docker's auth challenge flow (basic, bearer tokens cached per scope), redirects
//! (bounded), and the distribution API calls pull and push need.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use skiff_image::digest::Digest;

use crate::auth::{Challenge, Credentials, TokenResponse, parse_challenge};
use crate::config::Endpoint;
use crate::error::DistError;

pub type Body = BoxBody<Bytes, io::Error>;
type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub fn empty() -> Body {
    Empty::new().map_err(|e: std::convert::Infallible| match e {}).boxed()
}
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e: std::convert::Infallible| match e {}).boxed()
}

const MAX_REDIRECTS: usize = 5;
const USER_AGENT: &str = concat!("skiff/", env!("CARGO_PKG_VERSION"));

/// Shared HTTP clients: one verifying TLS, one not (insecure registries).
#[derive(Clone)]
pub struct Transport {
    verified: HyperClient<Https, Body>,
    unverified: HyperClient<Https, Body>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    // Per-registry CAs the way Docker finds them.
    for dir in ["/etc/docker/certs.d", "/etc/skiff/certs.d"] {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let Ok(files) = std::fs::read_dir(e.path()) else { continue };
            for f in files.flatten() {
                if f.path().extension().is_some_and(|x| x == "crt") {
                    use rustls::pki_types::{CertificateDer, pem::PemObject};
                    if let Ok(it) = CertificateDer::pem_file_iter(f.path()) {
                        for c in it.flatten() {
                            let _ = roots.add(c);
                        }
                    }
                }
            }
        }
    }
    roots
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Transport {
    pub fn new() -> Result<Transport, DistError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mk = |verify: bool| -> Result<HyperClient<Https, Body>, DistError> {
            let b = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| DistError::Transport(e.to_string()))?;
            let cfg = if verify {
                b.with_root_certificates(roots()).with_no_client_auth()
            } else {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
                    .with_no_client_auth()
            };
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(Duration::from_secs(15)));
            http.set_nodelay(true);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Ok(HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
        };
        Ok(Transport { verified: mk(true)?, unverified: mk(false)? })
    }

    /// The process-wide transport (TLS roots are read once).
    pub fn shared() -> Result<Transport, DistError> {
        static T: OnceLock<Transport> = OnceLock::new();
        if let Some(t) = T.get() {
            return Ok(t.clone());
        }
        let t = Transport::new()?;
        Ok(T.get_or_init(|| t).clone())
    }
}

/// A request that can be rebuilt (for auth retries and redirects).
pub struct Req<'a> {
    pub method: Method,
    /// Path and query on the registry (`/v2/...`), or an absolute URL (a Location).
    pub target: String,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Option<&'a (dyn Fn() -> Result<Body, DistError> + Send + Sync)>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, target: impl Into<String>) -> Req<'a> {
        Req { method, target: target.into(), headers: Vec::new(), body: None }
    }
    pub fn header(mut self, k: header::HeaderName, v: impl Into<String>) -> Req<'a> {
        self.headers.push((k, v.into()));
        self
    }
}

/// A session with one registry endpoint.
pub struct Registry {
    transport: Transport,
    pub endpoint: Endpoint,
    creds: Option<Credentials>,
    scheme: Mutex<Option<&'static str>>,
    /// Bearer tokens by scope string; `basic` once the registry asked for basic auth.
    tokens: Mutex<HashMap<String, String>>,
    basic: Mutex<bool>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("endpoint", &self.endpoint).finish()
    }
}

fn transport_err(host: &str, e: impl std::fmt::Display) -> DistError {
    DistError::Transport(format!("{host}: {e}"))
}

/// The registry's error message from a distribution-spec error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
    Some(format!("{code}: {msg}").trim_matches([':', ' ']).to_string())
}

impl Registry {
    pub fn new(transport: Transport, endpoint: Endpoint, creds: Option<Credentials>) -> Registry {
        Registry {
            transport,
            endpoint,
            creds,
            scheme: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
        }
    }

    fn client(&self) -> &HyperClient<Https, Body> {
        if self.endpoint.insecure { &self.transport.unverified } else { &self.transport.verified }
    }

    pub fn base_url(&self) -> String {
        let s = self.scheme.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or("https");
        format!("{s}://{}", self.endpoint.host)
    }

    /// Sends one request (no auth, no redirects) to an absolute URL.
    async fn raw(
        &self,
        method: &Method,
        url: &str,
        r: &Req<'_>,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, DistError> {
        let mut b = Request::builder().method(method.clone()).uri(url).header(header::USER_AGENT, USER_AGENT);
        for (k, v) in &r.headers {
            b = b.header(k, v);
        }
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let body = match r.body {
            Some(f) if *method != Method::GET && *method != Method::HEAD => f()?,
            _ => empty(),
        };
        let req = b.body(body).map_err(|e| DistError::Invalid(format!("request to {url}: {e}")))?;
        self.client().request(req).await.map_err(|e| transport_err(&self.endpoint.host, error_chain(&e)))
    }

    /// Picks the scheme on first use: HTTPS; for insecure registries, plain HTTP if HTTPS fails.
    async fn ensure_scheme(&self) -> Result<(), DistError> {
        if self.scheme.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(());
        }
        let ping = Req::new(Method::GET, "/v2/");
        let https = format!("https://{}/v2/", self.endpoint.host);
        let first = tokio::time::timeout(Duration::from_secs(20), self.raw(&Method::GET, &https, &ping, None)).await;
        let https_err = match first {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("{}: timed out", self.endpoint.host)),
        };
        let chosen: &'static str = match https_err {
            None => "https",
            Some(e) if self.endpoint.insecure => {
                let http = format!("http://{}/v2/", self.endpoint.host);
                match self.raw(&Method::GET, &http, &ping, None).await {
                    Ok(_) => "http",
                    Err(e2) => return Err(DistError::Transport(format!("https: {e}; http: {e2}"))),
                }
            }
            Some(e) if e.contains("Connect") || e.contains("timed out") => return Err(DistError::Transport(e)),
            Some(e) => {
                return Err(DistError::Transport(format!(
                    "{e} (if {} serves plain HTTP, add it to the insecure registries)",
                    self.endpoint.host
                )));
            }
        };
        *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = Some(chosen);
        Ok(())
    }

    fn cached_auth(&self, scope: &str) -> Option<String> {
        if let Some(t) = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if *self.basic.lock().unwrap_or_else(|p| p.into_inner()) {
            return self.creds.as_ref().map(|c| c.basic());
        }
        None
    }

    /// Answers a challenge: remembers basic auth or fetches a bearer token for `scope`.
    async fn authenticate(&self, challenge: &str, scope: &str) -> Result<(), DistError> {
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                if self.creds.is_none() {
                    return Err(DistError::Unauthorized(format!("{} requires a login", self.endpoint.host)));
                }
                *self.basic.lock().unwrap_or_else(|p| p.into_inner()) = true;
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, scope: cscope }) => {
                let query = {
                    let mut q = form_urlencoded::Serializer::new(String::new());
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                    if let Some(cs) = cscope
                        && cs != scope
                    {
                        for s in cs.split(' ') {
                            q.append_pair("scope", s);
                        }
                    }
                    if let Some(c) = &self.creds
                        && !c.username.is_empty()
                    {
                        q.append_pair("account", &c.username);
                    }
                    q.finish()
                };
                let url = format!("{realm}{}{}", if realm.contains('?') { "&" } else { "?" }, query);
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(DistError::Invalid(format!("token realm {realm:?} is not an http(s) URL")));
                }
                let auth = self.creds.as_ref().filter(|c| !c.username.is_empty()).map(|c| c.basic());
                let r = Req::new(Method::GET, url.clone());
                let resp = self.raw(&Method::GET, &url, &r, auth.as_deref()).await?;
                let status = resp.status();
                let body = read_body(resp.into_body(), 1 << 20).await?;
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(DistError::Unauthorized(format!(
                        "{}: {}",
                        self.endpoint.host,
                        error_message(&body).unwrap_or_else(|| "incorrect username or password".into())
                    )));
                }
                if !status.is_success() {
                    return Err(DistError::Registry {
                        status: status.as_u16(),
                        message: format!("token endpoint {realm}: {}", error_message(&body).unwrap_or_default()),
                    });
                }
                let t: TokenResponse =
                    serde_json::from_slice(&body).map_err(|e| DistError::Invalid(format!("token response: {e}")))?;
                let t = t.token().ok_or_else(|| DistError::Invalid("token response without a token".into()))?;
                self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(scope.to_string(), t);
                Ok(())
            }
            None => Err(DistError::Unauthorized(format!(
                "{}: unsupported auth challenge {challenge:?}",
                self.endpoint.host
            ))),
        }
    }

    /// Sends a request with auth (retrying once after a challenge) and following redirects.
    pub async fn send(&self, r: Req<'_>, scope: &str) -> Result<Response<Incoming>, DistError> {
        self.ensure_scheme().await?;
        let base = self.base_url();
        let mut url = if r.target.starts_with("http://") || r.target.starts_with("https://") {
            r.target.clone()
        } else {
            format!("{base}{}", r.target)
        };
        let mut method = r.method.clone();
        let mut authed_once = false;
        let mut hops = 0;
        loop {
            // Credentials go only to the registry itself, never to a redirect target elsewhere.
            let same_host = url.starts_with(&base);
            let auth = if same_host { self.cached_auth(scope) } else { None };
            let resp = self.raw(&method, &url, &r, auth.as_deref()).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !authed_once {
                authed_once = true;
                let ch = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
                let Some(ch) = ch else { return Ok(resp) };
                self.authenticate(&ch, scope).await?;
                continue;
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(DistError::Transport(format!("{}: too many redirects", self.endpoint.host)));
                }
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| DistError::Invalid("redirect without Location".into()))?;
                url = resolve_url(&url, loc);
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                }
                continue;
            }
            return Ok(resp);
        }
    }

    /// Resolves a Location header against this registry.
    pub fn absolute(&self, loc: &str) -> String {
        resolve_url(&self.base_url(), loc)
    }

    // ---- API calls ----

    pub fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.endpoint.repo)
    }
    pub fn push_scope(&self) -> String {
        format!("repository:{}:pull,push", self.endpoint.repo)
    }

    /// Fetches a manifest or index by tag or digest: (bytes, media type, digest of the bytes).
    pub async fn get_manifest(&self, reference: &str, max: u64) -> Result<(Vec<u8>, String, Digest), DistError> {
        let accept = [
            skiff_image::spec::media::OCI_INDEX,
            skiff_image::spec::media::OCI_MANIFEST,
            skiff_image::spec::media::DOCKER_MANIFEST_LIST,
            skiff_image::spec::media::DOCKER_MANIFEST,
        ]
        .join(", ");
        let r = Req::new(Method::GET, format!("/v2/{}/manifests/{reference}", self.endpoint.repo))
            .header(header::ACCEPT, accept);
        let resp = self.send(r, &self.pull_scope()).await?;
        let status = resp.status();
        let ct = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if !status.is_success() {
            let body = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &body, &format!("manifest {reference}")));
        }
        if let Some(len) = content_length(&resp)
            && len > max
        {
            return Err(DistError::TooLarge(format!("manifest {reference} is {len} bytes (limit {max})")));
        }
        let bytes = read_body(resp.into_body(), max as usize).await?;
        let d = Digest::of(&bytes);
        Ok((bytes, ct.split(';').next().unwrap_or("").trim().to_string(), d))
    }

    pub fn status_error(&self, status: StatusCode, body: &[u8], what: &str) -> DistError {
        let msg = error_message(body).unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        match status {
            StatusCode::NOT_FOUND => {
                DistError::NotFound(format!("{}/{}: {what}: {msg}", self.endpoint.host, self.endpoint.repo))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                DistError::Unauthorized(format!("{}/{}: {msg}", self.endpoint.host, self.endpoint.repo))
            }
            _ => DistError::Registry { status: status.as_u16(), message: format!("{what}: {msg}") },
        }
    }

    /// GET of a blob; the caller streams and verifies the body.
    pub async fn get_blob(&self, d: &Digest, scope: &str) -> Result<Response<Incoming>, DistError> {
        let r = Req::new(Method::GET, format!("/v2/{}/blobs/{d}", self.endpoint.repo));
        let resp = self.send(r, scope).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &body, &format!("blob {d}")));
        }
        Ok(resp)
    }

    /// Size of a blob if the repository has it.
    pub async fn blob_exists(&self, d: &Digest, scope: &str) -> Result<Option<u64>, DistError> {
        let r = Req::new(Method::HEAD, format!("/v2/{}/blobs/{d}", self.endpoint.repo));
        let resp = self.send(r, scope).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(&resp).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.status_error(s, &[], &format!("blob {d}"))),
        }
    }

    /// Tries to mount a blob from another repository on this registry. Ok(true) if mounted;
    /// otherwise the upload session it opened is cancelled.
    pub async fn mount_blob(&self, d: &Digest, from: &str) -> Result<bool, DistError> {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("mount", &d.to_string())
            .append_pair("from", from)
            .finish();
        let scope = format!("{} repository:{from}:pull", self.push_scope());
        let r = Req::new(Method::POST, format!("/v2/{}/blobs/uploads/?{q}", self.endpoint.repo))
            .header(header::CONTENT_LENGTH, "0");
        let resp = self.send(r, &scope).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                    let url = self.absolute(loc);
                    let _ = self.send(Req::new(Method::DELETE, url), &self.push_scope()).await;
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Uploads a blob: POST for a session, then one streamed PUT with the digest.
    /// Starts an upload session; its absolute location.
    async fn start_upload(&self, scope: &str) -> Result<String, DistError> {
        let r = Req::new(Method::POST, format!("/v2/{}/blobs/uploads/", self.endpoint.repo))
            .header(header::CONTENT_LENGTH, "0");
        let resp = self.send(r, scope).await?;
        if resp.status() != StatusCode::ACCEPTED {
            let status = resp.status();
            let b = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &b, "starting an upload"));
        }
        self.upload_location(&resp)
    }

    fn upload_location(&self, resp: &Response<Incoming>) -> Result<String, DistError> {
        resp.headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| DistError::Invalid("upload session without Location".into()))
    }

    /// An upload location with `digest=` added (the session's final `PUT`).
    fn with_digest(mut url: String, d: &Digest) -> String {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&form_urlencoded::Serializer::new(String::new()).append_pair("digest", &d.to_string()).finish());
        url
    }

    pub async fn push_blob(
        &self,
        d: &Digest,
        size: u64,
        body: &(dyn Fn() -> Result<Body, DistError> + Send + Sync),
    ) -> Result<(), DistError> {
        let scope = self.push_scope();
        let url = Self::with_digest(self.start_upload(&scope).await?, d);
        let mut r = Req::new(Method::PUT, url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size.to_string());
        r.body = Some(body);
        let resp = self.send(r, &scope).await?;
        let status = resp.status();
        if status != StatusCode::CREATED && !status.is_success() {
            let b = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &b, &format!("uploading {d}")));
        }
        Ok(())
    }

    /// Uploads a blob whose digest is known only once its bytes have all been produced (a layer
    /// compressed while it is sent): `POST` a session, one `PATCH` with the streamed body (chunked),
    /// then `PUT ?digest=` with the digest `digest` resolves to. The body cannot be replayed, so a
    /// failure is reported rather than retried.
    pub async fn push_blob_streamed(
        &self,
        body: Body,
        digest: impl std::future::Future<Output = Result<Digest, DistError>>,
    ) -> Result<Digest, DistError> {
        let scope = self.push_scope();
        let loc = self.start_upload(&scope).await?;
        let once = Mutex::new(Some(body));
        let replay = move || {
            once.lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or_else(|| DistError::Transport("the registry asked to resend a streamed upload".into()))
        };
        let mut r = Req::new(Method::PATCH, loc).header(header::CONTENT_TYPE, "application/octet-stream");
        r.body = Some(&replay);
        let resp = self.send(r, &scope).await?;
        if resp.status() != StatusCode::ACCEPTED {
            let status = resp.status();
            let b = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &b, "uploading a layer"));
        }
        let loc = self.upload_location(&resp)?;
        let d = digest.await?;
        let r = Req::new(Method::PUT, Self::with_digest(loc, &d)).header(header::CONTENT_LENGTH, "0");
        let resp = self.send(r, &scope).await?;
        let status = resp.status();
        if !status.is_success() {
            let b = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &b, &format!("uploading {d}")));
        }
        Ok(d)
    }

    pub async fn put_manifest(&self, reference: &str, media_type: &str, bytes: Vec<u8>) -> Result<Digest, DistError> {
        let bytes = Bytes::from(bytes);
        let d = Digest::of(&bytes);
        let b2 = bytes.clone();
        let body = move || Ok(full(b2.clone()));
        let mut r = Req::new(Method::PUT, format!("/v2/{}/manifests/{reference}", self.endpoint.repo))
            .header(header::CONTENT_TYPE, media_type)
            .header(header::CONTENT_LENGTH, bytes.len().to_string());
        r.body = Some(&body);
        let resp = self.send(r, &self.push_scope()).await?;
        let status = resp.status();
        if !status.is_success() {
            let b = read_body(resp.into_body(), 1 << 20).await.unwrap_or_default();
            return Err(self.status_error(status, &b, &format!("manifest {reference}")));
        }
        Ok(d)
    }

    /// Checks the credentials against the registry (`docker login`).
    pub async fn login(&self) -> Result<(), DistError> {
        let r = Req::new(Method::GET, "/v2/");
        let resp = self.send(r, "").await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(DistError::Unauthorized(format!("{}: incorrect username or password", self.endpoint.host)))
            }
            s => Err(DistError::Registry {
                status: s.as_u16(),
                message: format!("{}: login failed", self.endpoint.host),
            }),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

pub fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    resp.headers().get(header::CONTENT_LENGTH).and_then(|v: &HeaderValue| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads a whole body, refusing more than `max` bytes.
pub async fn read_body(mut body: Incoming, max: usize) -> Result<Vec<u8>, DistError> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| DistError::Transport(format!("reading a response: {e}")))?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > max {
                return Err(DistError::TooLarge(format!("response larger than {max} bytes")));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out)
}

/// Resolves a Location (absolute, absolute-path or relative) against the URL it came from.
pub fn resolve_url(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host = rest.split('/').next().unwrap_or(rest);
    if let Some(path) = loc.strip_prefix('/') {
        return format!("{scheme}://{host}/{path}");
    }
    let dir = match rest.split('?').next().unwrap_or(rest).rsplit_once('/') {
        Some((d, _)) if d.contains('/') || d == host => d.to_string(),
        _ => host.to_string(),
    };
    format!("{scheme}://{dir}/{loc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            resolve_url("http://h:5000/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/x"),
            "http://h:5000/v2/a/blobs/uploads/x"
        );
        assert_eq!(resolve_url("http://h:5000/v2/a", "https://s3/x?y"), "https://s3/x?y");
        assert_eq!(resolve_url("http://h/v2/a/b", "c"), "http://h/v2/a/c");
        assert_eq!(error_message(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#).unwrap(), "DENIED: no");
        assert_eq!(error_message(b"<html>"), None);
    }
}
