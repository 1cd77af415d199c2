//! The distribution-spec v1.1 HTTP API over `Storage`.
//!
//! Routing is by hand: repository names contain slashes, so a path is split from its end
//! (`…/manifests/<ref>`, `…/blobs/uploads/<id>`, `…/blobs/<digest>`, `…/tags/list`,
//! `…/referrers/<digest>`) and what is left must be a valid name. Blob bodies stream through a
//! bounded channel to a blocking thread that appends and hashes, so network reads and hashing
//! overlap; nothing is visible under `blobs/` until its digest matched.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::digest::{Algo, Digest, Hasher};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::{Access, Auth, Scope};
use crate::manifest::{self, MAX_MANIFEST};
use crate::names::{valid_name, valid_tag};
use crate::storage::{BlobSink, ManifestRecord, Storage};

pub type Body = BoxBody<Bytes, io::Error>;

/// Registry settings beyond storage.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether DELETE of manifests, tags and blobs is allowed.
    pub delete: bool,
    /// The largest blob accepted, in bytes.
    pub max_blob: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { delete: true, max_blob: 64 << 30 }
    }
}

/// The registry: storage, settings, auth and the hash state of open upload sessions.
pub struct Registry {
    storage: Storage,
    settings: Settings,
    auth: Option<Auth>,
    /// Upload id → running hash of the data received so far. A session missing here (after a
    /// restart) is rehashed from its data file on first use.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Hasher>>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("root", &self.storage.root()).finish()
    }
}

/// A distribution-spec error: HTTP status plus the spec's error code.
#[derive(Debug)]
pub struct RegError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl RegError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> RegError {
        RegError { status, code, message: message.into(), headers: Vec::new() }
    }
    fn with_header(mut self, h: header::HeaderName, v: String) -> RegError {
        self.headers.push((h, v));
        self
    }
}

fn io_err(e: io::Error) -> RegError {
    tracing::error!("registry storage: {e}");
    RegError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", format!("storage error: {e}"))
}

fn blob_unknown(d: &Digest) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("blob unknown to registry: {d}"))
}
fn upload_unknown() -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
}
fn manifest_unknown(r: &str) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest unknown: {r}"))
}
fn name_unknown(n: &str) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository name not known to registry: {n}"))
}
fn digest_invalid(m: impl Into<String>) -> RegError {
    RegError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", m)
}
fn unsupported(m: &str) -> RegError {
    RegError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", m)
}

type Result<T> = std::result::Result<T, RegError>;

/// A response builder's result: its only failure is a header value that is not one, which
/// validated names, tags and digests never produce; should it happen it is a 500, not a panic.
trait Done {
    fn done(self) -> Result<Response<Body>>;
}

impl Done for http::Result<Response<Body>> {
    fn done(self) -> Result<Response<Body>> {
        self.map_err(|e| io_err(io::Error::other(e)))
    }
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e: Infallible| match e {}).boxed()
}
fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e: Infallible| match e {}).boxed()
}

fn resp(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status).header("Docker-Distribution-API-Version", "registry/2.0")
}

fn error_response(e: RegError, head: bool) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": e.code, "message": e.message, "detail": null}]});
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut b = resp(e.status).header(header::CONTENT_TYPE, "application/json");
    for (h, v) in &e.headers {
        b = b.header(h, v);
    }
    if head { b.header(header::CONTENT_LENGTH, bytes.len()).body(empty()) } else { b.body(full(bytes)) }
        .unwrap_or_else(|_| Response::new(empty()))
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String, Option<String>),
    Referrers(String, String),
    Token,
}

pub fn route(path: &str) -> Option<Route> {
    if path == "/token" {
        return Some(Route::Token);
    }
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.to_string()));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Uploads(name.to_string(), Some(last.to_string()).filter(|s| !s.is_empty())));
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        if last == "uploads" {
            return Some(Route::Uploads(name.to_string(), None));
        }
        return Some(Route::Blob(name.to_string(), last.to_string()));
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Some(Route::Manifest(name.to_string(), last.to_string()));
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Some(Route::Referrers(name.to_string(), last.to_string()));
    }
    None
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn q1<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(digest_invalid)
}

fn check_name(n: &str) -> Result<()> {
    if valid_name(n) {
        Ok(())
    } else {
        Err(RegError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("invalid repository name {n:?}")))
    }
}

fn header_str(h: &HeaderMap, k: header::HeaderName) -> Option<&str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

/// `Content-Range: <start>-<end>` (also accepts the `bytes ` prefix some clients send).
pub fn parse_content_range(s: &str) -> Option<(u64, u64)> {
    let s = s.trim().trim_start_matches("bytes").trim();
    let s = s.split('/').next()?;
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// `Range: bytes=<start>-[<end>]` against a blob of `size` bytes → (start, end inclusive).
pub fn parse_range(s: &str, size: u64) -> Option<(u64, u64)> {
    let s = s.trim().strip_prefix("bytes=")?;
    if s.contains(',') {
        return None;
    }
    let (a, b) = s.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return None;
        }
        return Some((size.saturating_sub(n), size - 1));
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() { size.checked_sub(1)? } else { b.parse::<u64>().ok()?.min(size.checked_sub(1)?) };
    (a <= b && a < size).then_some((a, b))
}

impl Registry {
    pub fn new(storage: Storage, settings: Settings, auth: Option<Auth>) -> Registry {
        Registry { storage, settings, auth, uploads: Mutex::new(HashMap::new()) }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Serves one request; never fails (errors become distribution-spec error bodies).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> std::result::Result<Response<Body>, Infallible> {
        let head = req.method() == Method::HEAD;
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
        let r = self.dispatch(req).await;
        let resp = r.unwrap_or_else(|e| {
            if e.status.is_server_error() {
                tracing::warn!(%method, %path, code = e.code, "{}", e.message);
            } else {
                tracing::debug!(%method, %path, code = e.code, "{}", e.message);
            }
            let mut r = error_response(e, head);
            if has_body {
                // Answered before the body was read (a 401 before an upload, a 416): the
                // connection cannot carry another request, so say so rather than let the
                // client's next request on it meet a closed socket.
                r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            r
        });
        tracing::debug!(%method, %path, status = resp.status().as_u16(), "registry request");
        Ok(resp)
    }

    fn authorize(&self, req: &Request<Incoming>, scopes: &[Scope]) -> Result<Access> {
        match &self.auth {
            None => Ok(Access::all()),
            Some(a) => a.authorize(req.headers(), scopes),
        }
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Result<Response<Body>> {
        let Some(route) = route(req.uri().path()) else {
            return Err(RegError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"));
        };
        let m = req.method().clone();
        let action = match m {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "delete",
            _ => "push",
        };
        match route {
            Route::Token => {
                let Some(a) = &self.auth else { return Err(unsupported("this registry needs no token")) };
                let q = query(&req);
                let (status, body) = a.issue_token(req.headers(), &q)?;
                resp(status).header(header::CONTENT_TYPE, "application/json").body(full(body)).done()
            }
            Route::Base => {
                self.authorize(&req, &[])?;
                resp(StatusCode::OK).header(header::CONTENT_TYPE, "application/json").body(full("{}")).done()
            }
            Route::Catalog => {
                self.authorize(&req, &[Scope::catalog()])?;
                let q = query(&req);
                let st = self.storage.clone();
                let all = tokio::task::spawn_blocking(move || st.catalog()).await.unwrap_or_default();
                let (page, link) = paginate(all, &q, "/v2/_catalog")?;
                let body = serde_json::json!({ "repositories": page });
                json_response(StatusCode::OK, &body, link)
            }
            Route::Tags(name) => {
                check_name(&name)?;
                self.authorize(&req, &[Scope::repo(&name, "pull")])?;
                let q = query(&req);
                let tags = self.storage.tags(&name).ok_or_else(|| name_unknown(&name))?;
                let (page, link) = paginate(tags, &q, &format!("/v2/{name}/tags/list"))?;
                json_response(StatusCode::OK, &serde_json::json!({"name": name, "tags": page}), link)
            }
            Route::Manifest(name, reference) => {
                check_name(&name)?;
                self.authorize(&req, &[Scope::repo(&name, action)])?;
                match m {
                    Method::GET | Method::HEAD => self.get_manifest(&name, &reference, m == Method::HEAD),
                    Method::PUT => self.put_manifest(&name, &reference, req).await,
                    Method::DELETE => self.delete_manifest(&name, &reference),
                    _ => Err(unsupported("method not allowed")),
                }
            }
            Route::Blob(name, digest) => {
                check_name(&name)?;
                self.authorize(&req, &[Scope::repo(&name, action)])?;
                let d = parse_digest(&digest)?;
                match m {
                    Method::GET | Method::HEAD => self.get_blob(&name, &d, &req, m == Method::HEAD).await,
                    Method::DELETE => {
                        if !self.settings.delete {
                            return Err(unsupported("deletes are disabled on this registry"));
                        }
                        if !self.storage.unlink_blob(&name, &d).map_err(io_err)? {
                            return Err(blob_unknown(&d));
                        }
                        resp(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0).body(empty()).done()
                    }
                    _ => Err(unsupported("method not allowed")),
                }
            }
            Route::Uploads(name, id) => {
                check_name(&name)?;
                let q = query(&req);
                let mut scopes = vec![Scope::repo(&name, "push")];
                if m == Method::GET {
                    scopes = vec![Scope::repo(&name, "pull")];
                }
                let from = if m == Method::POST && id.is_none() { q1(&q, "from").map(str::to_string) } else { None };
                if let Some(f) = &from
                    && valid_name(f)
                {
                    scopes.push(Scope::repo(f, "pull"));
                }
                let access = self.authorize(&req, &scopes[..1])?;
                match (m, id) {
                    (Method::POST, None) => self.start_upload(&name, &q, req, &access, from).await,
                    (Method::PATCH, Some(id)) => self.patch_upload(&name, &id, req).await,
                    (Method::PUT, Some(id)) => self.finish_upload(&name, &id, &q, req).await,
                    (Method::GET, Some(id)) => self.upload_status(&name, &id).await,
                    (Method::DELETE, Some(id)) => {
                        match self.storage.upload(&id) {
                            Some((repo, _)) if repo == name => {}
                            _ => return Err(upload_unknown()),
                        }
                        self.forget_upload(&id);
                        self.storage.remove_upload(&id);
                        resp(StatusCode::NO_CONTENT).body(empty()).done()
                    }
                    _ => Err(unsupported("method not allowed")),
                }
            }
            Route::Referrers(name, digest) => {
                check_name(&name)?;
                self.authorize(&req, &[Scope::repo(&name, "pull")])?;
                if m != Method::GET && m != Method::HEAD {
                    return Err(unsupported("method not allowed"));
                }
                let d = parse_digest(&digest)?;
                let q = query(&req);
                let filter: Vec<&str> =
                    q.iter().filter(|(k, _)| k == "artifactType").map(|(_, v)| v.as_str()).collect();
                let mut list = self.storage.referrers(&name, &d);
                if !filter.is_empty() {
                    list.retain(|x| x.artifact_type.as_deref().is_some_and(|a| filter.contains(&a)));
                }
                let body = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": manifest::OCI_INDEX,
                    "manifests": list,
                });
                let bytes = serde_json::to_vec(&body).map_err(|e| io_err(io::Error::other(e)))?;
                let mut b = resp(StatusCode::OK)
                    .header(header::CONTENT_TYPE, manifest::OCI_INDEX)
                    .header(header::CONTENT_LENGTH, bytes.len());
                if !filter.is_empty() {
                    b = b.header("OCI-Filters-Applied", "artifactType");
                }
                b.body(if m == Method::HEAD { empty() } else { full(bytes) }).done()
            }
        }
    }

    // ---- manifests ----

    fn resolve(&self, name: &str, reference: &str) -> Result<Digest> {
        if reference.contains(':') {
            let d = parse_digest(reference)?;
            if self.storage.manifest_record(name, &d).is_none() {
                return Err(manifest_unknown(reference));
            }
            Ok(d)
        } else if valid_tag(reference) {
            self.storage.resolve_tag(name, reference).ok_or_else(|| manifest_unknown(reference))
        } else {
            // No manifest can have an invalid tag: unknown, as the conformance suite expects.
            Err(manifest_unknown(reference))
        }
    }

    fn get_manifest(&self, name: &str, reference: &str, head: bool) -> Result<Response<Body>> {
        if !self.storage.repo_exists(name) {
            return Err(name_unknown(name));
        }
        let d = self.resolve(name, reference)?;
        let rec = self.storage.manifest_record(name, &d).ok_or_else(|| manifest_unknown(reference))?;
        let bytes = std::fs::read(self.storage.blob_path(&d)).map_err(io_err)?;
        let b = resp(StatusCode::OK)
            .header(header::CONTENT_TYPE, &rec.media_type)
            .header(header::CONTENT_LENGTH, bytes.len())
            .header("Docker-Content-Digest", d.to_string())
            .header(header::ETAG, format!("\"{d}\""));
        b.body(if head { empty() } else { full(bytes) }).done()
    }

    async fn put_manifest(&self, name: &str, reference: &str, req: Request<Incoming>) -> Result<Response<Body>> {
        let ct = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string);
        let q = query(&req);
        let (by_digest, tag) = if reference.contains(':') {
            (Some(parse_digest(reference)?), None)
        } else if valid_tag(reference) {
            (None, Some(reference.to_string()))
        } else {
            return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
        };
        let mut extra_tags = Vec::new();
        for (k, v) in &q {
            if k == "tag" {
                if !valid_tag(v) {
                    return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {v:?}")));
                }
                extra_tags.push(v.clone());
            }
        }
        let bytes = read_limited(req.into_body(), MAX_MANIFEST).await?;
        let parsed = manifest::parse(&bytes, ct.as_deref())
            .map_err(|m| RegError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m))?;
        // By digest, the manifest is addressed in the algorithm the client chose; by tag, sha256.
        // Re-pushing a tag with the very bytes it points at keeps that digest's algorithm.
        let algo = match (&by_digest, &tag) {
            (Some(d), _) => d.algo(),
            (None, Some(t)) => match self.storage.resolve_tag(name, t) {
                Some(cur) if cur.algo() != Algo::Sha256 && Digest::of(cur.algo(), &bytes) == cur => cur.algo(),
                _ => Algo::Sha256,
            },
            (None, None) => Algo::Sha256,
        };
        let digest = Digest::of(algo, &bytes);
        if let Some(d) = &by_digest
            && d != &digest
        {
            return Err(digest_invalid(format!("manifest digest {digest} does not match {d}")));
        }
        for r in &parsed.refs {
            let present = if r.manifest {
                self.storage.manifest_record(name, &r.digest).is_some()
            } else {
                self.storage.repo_blob(name, &r.digest).is_some()
            };
            if !present {
                return Err(RegError::new(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("manifest references {} which this repository does not hold", r.digest),
                ));
            }
        }
        let rec = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size: bytes.len() as u64,
            artifact_type: parsed.artifact_type.clone(),
            subject: parsed.subject.clone(),
            annotations: parsed.annotations.clone(),
        };
        let tags_set = if by_digest.is_some() { extra_tags.clone() } else { Vec::new() };
        let st = self.storage.clone();
        let name2 = name.to_string();
        let d = tokio::task::spawn_blocking(move || -> io::Result<Digest> {
            let d = st.put_manifest(&name2, &bytes, algo, &rec, tag.as_deref())?;
            for t in &extra_tags {
                st.put_manifest(&name2, &bytes, algo, &rec, Some(t))?;
            }
            Ok(d)
        })
        .await
        .map_err(|e| io_err(io::Error::other(e)))?
        .map_err(io_err)?;
        let mut b = resp(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/manifests/{d}"))
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0);
        if let Some(s) = &parsed.subject {
            b = b.header("OCI-Subject", s.to_string());
        }
        for t in &tags_set {
            b = b.header("OCI-Tag", t);
        }
        b.body(empty()).done()
    }

    fn delete_manifest(&self, name: &str, reference: &str) -> Result<Response<Body>> {
        if !self.settings.delete {
            return Err(unsupported("deletes are disabled on this registry"));
        }
        if !self.storage.repo_exists(name) {
            return Err(name_unknown(name));
        }
        let ok = if reference.contains(':') {
            let d = parse_digest(reference)?;
            self.storage.delete_manifest(name, &d).map_err(io_err)?
        } else if valid_tag(reference) {
            self.storage.delete_tag(name, reference).map_err(io_err)?
        } else {
            return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
        };
        if !ok {
            return Err(manifest_unknown(reference));
        }
        resp(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0).body(empty()).done()
    }

    // ---- blobs ----

    async fn get_blob(&self, name: &str, d: &Digest, req: &Request<Incoming>, head: bool) -> Result<Response<Body>> {
        let size = self.storage.repo_blob(name, d).ok_or_else(|| blob_unknown(d))?;
        let mut b = resp(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("Docker-Content-Digest", d.to_string())
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{d}\""));
        let range = match header_str(req.headers(), header::RANGE) {
            Some(r) => match parse_range(r, size) {
                Some(x) => Some(x),
                None => {
                    return Err(RegError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UNKNOWN",
                        format!("range {r:?} not satisfiable for {size} bytes"),
                    )
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}")));
                }
            },
            None => None,
        };
        let (start, len) = match range {
            Some((a, z)) => {
                b = b
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {a}-{z}/{size}"));
                (a, z - a + 1)
            }
            None => (0, size),
        };
        b = b.header(header::CONTENT_LENGTH, len);
        if head {
            return b.body(empty()).done();
        }
        let mut f = tokio::fs::File::open(self.storage.blob_path(d)).await.map_err(|_| blob_unknown(d))?;
        if start > 0 {
            f.seek(io::SeekFrom::Start(start)).await.map_err(io_err)?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
        let body = StreamBody::new(stream.map(|r| r.map(Frame::data)));
        b.body(BodyExt::boxed(body)).done()
    }

    fn upload_state(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<Hasher>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn upload_location(name: &str, id: &str) -> String {
        format!("/v2/{name}/blobs/uploads/{id}")
    }

    fn accepted(name: &str, id: &str, size: u64) -> Response<Body> {
        resp(StatusCode::ACCEPTED)
            .header(header::LOCATION, Self::upload_location(name, id))
            .header(header::RANGE, format!("0-{}", size.saturating_sub(1)))
            .header("Docker-Upload-UUID", id)
            .header(header::CONTENT_LENGTH, 0)
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()))
    }

    fn created(name: &str, d: &Digest) -> Response<Body> {
        resp(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()))
    }

    async fn start_upload(
        &self,
        name: &str,
        q: &[(String, String)],
        req: Request<Incoming>,
        access: &Access,
        from: Option<String>,
    ) -> Result<Response<Body>> {
        if let Some(mount) = q1(q, "mount") {
            let d = parse_digest(mount)?;
            // Mount from the named repository if the client may pull from it; a mount that
            // cannot be honoured falls back to an ordinary upload session, as the spec says.
            let from_ok = from
                .as_deref()
                .filter(|f| valid_name(f) && access.allows(&Scope::repo(f, "pull")))
                .is_some_and(|f| self.storage.repo_blob(f, &d).is_some());
            if from_ok {
                self.storage.link_blob(name, &d).map_err(io_err)?;
                return Ok(Self::created(name, &d));
            }
        }
        let id = self.storage.new_upload(name).map_err(io_err)?;
        if let Some(digest) = q1(q, "digest") {
            // Monolithic upload: the body is the whole blob.
            let d = parse_digest(digest)?;
            let (_, path) = self.storage.upload(&id).ok_or_else(upload_unknown)?;
            let r = self.receive(path, Hasher::new(d.algo()), req.into_body()).await;
            let h = match r {
                Ok(h) => h,
                Err(e) => {
                    self.storage.remove_upload(&id);
                    return Err(e);
                }
            };
            return self.commit(name, &id, &d, h).await;
        }
        Ok(Self::accepted(name, &id, 0))
    }

    async fn patch_upload(&self, name: &str, id: &str, req: Request<Incoming>) -> Result<Response<Body>> {
        let (repo, path) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let hasher = self.current_hash(id, &mut guard)?;
        let have = hasher.len();
        if let Some(cr) = header_str(req.headers(), header::CONTENT_RANGE) {
            match parse_content_range(cr) {
                Some((a, _)) if a == have => {}
                _ => {
                    return Err(RegError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UPLOAD_INVALID",
                        format!("Content-Range {cr:?} does not continue the upload at {have}"),
                    )
                    .with_header(header::LOCATION, Self::upload_location(name, id))
                    .with_header(header::RANGE, format!("0-{}", have.saturating_sub(1))));
                }
            }
        }
        let h = self.receive(path, hasher, req.into_body()).await;
        match h {
            Ok(h) => {
                let size = h.len();
                *guard = Some(h);
                Ok(Self::accepted(name, id, size))
            }
            Err(e) => {
                // What was appended is unknown now: rehash on next use.
                *guard = None;
                Err(e)
            }
        }
    }

    fn current_hash(&self, id: &str, slot: &mut Option<Hasher>) -> Result<Hasher> {
        if let Some(h) = slot {
            return Ok(h.clone());
        }
        let h = self.storage.rehash_upload(id, Algo::Sha256).map_err(|_| upload_unknown())?;
        *slot = Some(h.clone());
        Ok(h)
    }

    async fn upload_status(&self, name: &str, id: &str) -> Result<Response<Body>> {
        let (repo, _) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let h = self.current_hash(id, &mut guard)?;
        let mut r = Self::accepted(name, id, h.len());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    async fn finish_upload(
        &self,
        name: &str,
        id: &str,
        q: &[(String, String)],
        req: Request<Incoming>,
    ) -> Result<Response<Body>> {
        let (repo, path) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let d = parse_digest(q1(q, "digest").ok_or_else(|| digest_invalid("PUT needs ?digest="))?)?;
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let hasher = self.current_hash(id, &mut guard)?;
        if let Some(cr) = header_str(req.headers(), header::CONTENT_RANGE)
            && parse_content_range(cr).is_none_or(|(a, _)| a != hasher.len())
        {
            return Err(RegError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                format!("Content-Range {cr:?} does not continue the upload"),
            ));
        }
        let h = match self.receive(path, hasher, req.into_body()).await {
            Ok(h) => h,
            Err(e) => {
                *guard = None;
                return Err(e);
            }
        };
        let r = self.commit(name, id, &d, h).await;
        *guard = None;
        self.forget_upload(id);
        r
    }

    async fn commit(&self, name: &str, id: &str, d: &Digest, h: Hasher) -> Result<Response<Body>> {
        // Sessions hash in sha256 as data arrives; a sha512 digest named only at the end is
        // checked by hashing the data once more.
        let actual = if h.algo() == d.algo() {
            h.finish()
        } else {
            let (st, id2, algo) = (self.storage.clone(), id.to_string(), d.algo());
            tokio::task::spawn_blocking(move || st.rehash_upload(&id2, algo))
                .await
                .map_err(|e| io_err(io::Error::other(e)))?
                .map_err(io_err)?
                .finish()
        };
        if &actual != d {
            self.storage.remove_upload(id);
            return Err(digest_invalid(format!("uploaded content has digest {actual}, not {d}")));
        }
        let st = self.storage.clone();
        let (id2, d2, name2) = (id.to_string(), d.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            st.commit_upload(&id2, &d2)?;
            st.link_blob(&name2, &d2)
        })
        .await
        .map_err(|e| io_err(io::Error::other(e)))?
        .map_err(io_err)?;
        Ok(Self::created(name, d))
    }

    /// Streams a request body onto an upload's data file, hashing on a blocking thread.
    async fn receive(&self, path: PathBuf, hasher: Hasher, mut body: Incoming) -> Result<Hasher> {
        let max = self.settings.max_blob;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(32);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<Hasher> {
            let mut sink = BlobSink::open(&path, hasher)?;
            while let Some(b) = rx.blocking_recv() {
                sink.write(&b)?;
            }
            Ok(sink.hasher)
        });
        let mut total = 0u64;
        let mut err = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        total += data.len() as u64;
                        if total > max {
                            err = Some(RegError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "SIZE_INVALID",
                                format!("blob larger than this registry's limit of {max} bytes"),
                            ));
                            break;
                        }
                        if tx.send(data).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    err = Some(RegError::new(
                        StatusCode::BAD_REQUEST,
                        "BLOB_UPLOAD_INVALID",
                        format!("reading the request body: {e}"),
                    ));
                    break;
                }
            }
        }
        drop(tx);
        let h = writer.await.map_err(|e| io_err(io::Error::other(e)))?.map_err(io_err)?;
        match err {
            Some(e) => Err(e),
            None => Ok(h),
        }
    }
}

async fn read_limited(mut body: Incoming, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let f = frame.map_err(|e| RegError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("{e}")))?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > max {
                return Err(RegError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SIZE_INVALID",
                    format!("manifest larger than {max} bytes"),
                ));
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out)
}

fn paginate(all: Vec<String>, q: &[(String, String)], base: &str) -> Result<(Vec<String>, Option<String>)> {
    let n = match q1(q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            RegError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", format!("invalid n {v:?}"))
        })?),
        None => None,
    };
    let last = q1(q, "last");
    let mut items: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|t| t.as_str() > l).collect(),
        None => all,
    };
    let mut link = None;
    if let Some(n) = n
        && items.len() > n
    {
        items.truncate(n);
        if let Some(l) = items.last() {
            let lq: String = form_urlencoded::Serializer::new(String::new()).append_pair("last", l).finish();
            link = Some(format!("<{base}?n={n}&{lq}>; rel=\"next\""));
        }
    }
    Ok((items, link))
}

fn json_response(status: StatusCode, v: &serde_json::Value, link: Option<String>) -> Result<Response<Body>> {
    let bytes = serde_json::to_vec(v).map_err(|e| io_err(io::Error::other(e)))?;
    let mut b =
        resp(status).header(header::CONTENT_TYPE, "application/json").header(header::CONTENT_LENGTH, bytes.len());
    if let Some(l) = link {
        b = b.header(header::LINK, HeaderValue::from_str(&l).map_err(|e| io_err(io::Error::other(e)))?);
    }
    b.body(full(bytes)).done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(route("/v2/a/manifests/latest"), Some(Route::Manifest("a".into(), "latest".into())));
        assert_eq!(route("/v2/a/blobs/uploads/"), Some(Route::Uploads("a".into(), None)));
        assert_eq!(route("/v2/a/blobs/uploads"), Some(Route::Uploads("a".into(), None)));
        assert_eq!(route("/v2/a/blobs/uploads/x-1"), Some(Route::Uploads("a".into(), Some("x-1".into()))));
        assert_eq!(route("/v2/blobs/blobs/sha256:x"), Some(Route::Blob("blobs".into(), "sha256:x".into())));
        assert_eq!(route("/v2/a/referrers/sha256:x"), Some(Route::Referrers("a".into(), "sha256:x".into())));
        assert_eq!(route("/v2/a/unknown/x"), None);
        assert_eq!(route("/v1/a"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("x"), None);
    }

    #[test]
    fn pagination() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q = vec![("n".to_string(), "2".to_string())];
        let (p, l) = paginate(all.clone(), &q, "/v2/x/tags/list").unwrap();
        assert_eq!(p, vec!["a", "b"]);
        assert_eq!(l.unwrap(), "</v2/x/tags/list?n=2&last=b>; rel=\"next\"");
        let q = vec![("n".to_string(), "2".to_string()), ("last".to_string(), "b".to_string())];
        let (p, l) = paginate(all.clone(), &q, "/x").unwrap();
        assert_eq!(p, vec!["c", "d"]);
        assert!(l.is_none());
        let q = vec![("n".to_string(), "zz".to_string())];
        assert!(paginate(all, &q, "/x").is_err());
    }
}
