//! Routing by hand: repository names contain slashes, so a path is split from its end
//! (`…/manifests/<ref>`, `…/blobs/uploads/<id>`, `…/blobs/<digest>`, `…/tags/list`,
//! `…/referrers/<digest>`) and what is left must be a valid name; and the request details the
//! handlers read (query, ranges).

use http::{HeaderMap, Request, StatusCode, header};
use hyper::body::Incoming;

use crate::digest::Digest;
use crate::error::{RegError, Result, digest_invalid};
use crate::names::valid_name;

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

pub(crate) fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub(crate) fn q1<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(digest_invalid)
}

pub(crate) fn check_name(n: &str) -> Result<()> {
    if valid_name(n) {
        Ok(())
    } else {
        Err(RegError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("invalid repository name {n:?}")))
    }
}

pub(crate) fn header_str(h: &HeaderMap, k: header::HeaderName) -> Option<&str> {
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
}
