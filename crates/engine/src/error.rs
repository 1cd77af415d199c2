//! The engine's error type, classified once for the API (moby's errdefs idea: the kind decides
//! the HTTP status; the message is what the user reads).

use skiff_image::ImageError;

/// What kind of failure, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Invalid,
    Conflict,
    NotModified,
    Unauthorized,
    Forbidden,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: Kind,
    pub message: String,
    /// A status code the client shows beside the message (a failed RUN step's exit code, which
    /// the classic builder's `errorDetail.code` carries).
    pub code: Option<i64>,
}

impl EngineError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        EngineError { kind, message: message.into(), code: None }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Kind::Internal, m)
    }
    pub fn not_modified() -> Self {
        Self::new(Kind::NotModified, "")
    }
    /// The same error with a status code for the client (see [`EngineError::code`]).
    pub fn with_code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }
    pub fn no_container(name: &str) -> Self {
        Self::not_found(format!("No such container: {name}"))
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl From<ImageError> for EngineError {
    fn from(e: ImageError) -> Self {
        let kind = match &e {
            ImageError::NotFound(_) => Kind::NotFound,
            ImageError::Reference(_) | ImageError::Invalid(_) | ImageError::Spec(_) | ImageError::Ambiguous(_) => {
                Kind::Invalid
            }
            ImageError::Layer(skiff_image::layers::LayerError::Unpack(_))
            | ImageError::Layer(skiff_image::layers::LayerError::DiffIdMismatch { .. }) => Kind::Invalid,
            ImageError::Content(skiff_image::content::ContentError::DigestMismatch { .. }) => Kind::Invalid,
            _ => Kind::Internal,
        };
        let message = match &e {
            ImageError::NotFound(n) => format!("No such image: {n}"),
            _ => error_chain(&e),
        };
        EngineError { kind, message, code: None }
    }
}

impl From<skiff_image::db::DbError> for EngineError {
    fn from(e: skiff_image::db::DbError) -> Self {
        EngineError::internal(error_chain(&e))
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::internal(e.to_string())
    }
}

/// "outer: inner: innermost", skipping repeats.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !m.is_empty() && !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl From<skiff_image::reference::ReferenceError> for EngineError {
    fn from(e: skiff_image::reference::ReferenceError) -> Self {
        EngineError::invalid(e.to_string())
    }
}

impl From<skiff_image::layers::LayerError> for EngineError {
    fn from(e: skiff_image::layers::LayerError) -> Self {
        ImageError::from(e).into()
    }
}
