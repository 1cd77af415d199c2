//! The distribution-spec v1.1 HTTP API over `Storage`: dispatch and authorization here,
//! `routes` (paths to routes), `manifests`, `blobs` (and uploads). Blob bodies stream through a
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
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::{Access, Auth, Scope};
pub use crate::error::RegError;
use crate::error::{
    Result, blob_unknown, digest_invalid, io_err, manifest_unknown, name_unknown, unsupported, upload_unknown,
};
pub use routes::{Route, parse_content_range, parse_range, route};
use routes::{check_name, header_str, parse_digest, q1, query};

mod blobs;
mod manifests;
mod routes;
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
            Route::Referrers(name, digest) => self.referrers(&name, &digest, &req),
        }
    }

    /// The OCI referrers API: the manifests whose subject is `digest`, filtered by
    /// `artifactType`.
    fn referrers(&self, name: &str, digest: &str, req: &Request<Incoming>) -> Result<Response<Body>> {
        check_name(name)?;
        self.authorize(req, &[Scope::repo(name, "pull")])?;
        let m = req.method();
        if m != Method::GET && m != Method::HEAD {
            return Err(unsupported("method not allowed"));
        }
        let d = parse_digest(digest)?;
        let q = query(req);
        let filter: Vec<&str> = q.iter().filter(|(k, _)| k == "artifactType").map(|(_, v)| v.as_str()).collect();
        let mut list = self.storage.referrers(name, &d);
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
