//! The registry's error: a distribution-spec error code with its HTTP status, and the
//! constructors for the codes the handlers answer with. Its own module, so the auth and
//! server modules both use it without importing each other.

use std::io;

use http::{StatusCode, header};

use crate::digest::Digest;

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
    pub(crate) fn with_header(mut self, h: header::HeaderName, v: String) -> RegError {
        self.headers.push((h, v));
        self
    }
}

pub(crate) fn io_err(e: io::Error) -> RegError {
    tracing::error!("registry storage: {e}");
    RegError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", format!("storage error: {e}"))
}

pub(crate) fn blob_unknown(d: &Digest) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("blob unknown to registry: {d}"))
}
pub(crate) fn upload_unknown() -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
}
pub(crate) fn manifest_unknown(r: &str) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest unknown: {r}"))
}
pub(crate) fn name_unknown(n: &str) -> RegError {
    RegError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository name not known to registry: {n}"))
}
pub(crate) fn digest_invalid(m: impl Into<String>) -> RegError {
    RegError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", m)
}
pub(crate) fn unsupported(m: &str) -> RegError {
    RegError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", m)
}

pub type Result<T> = std::result::Result<T, RegError>;
