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
    /// What caused it, kept for logs and `error_chain` (the message is what the client reads).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        EngineError { kind, message: message.into(), code: None, source: None }
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
    /// An internal error that is `source` (its text the message).
    pub fn from_cause(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::internal(source.to_string()).caused_by(source)
    }
    /// The same error, caused by `source`.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
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
        EngineError { kind, message, code: None, source: Some(Box::new(e)) }
    }
}

impl From<skiff_image::db::DbError> for EngineError {
    fn from(e: skiff_image::db::DbError) -> Self {
        EngineError::internal(error_chain(&e)).caused_by(e)
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::internal(e.to_string()).caused_by(e)
    }
}

/// Context for I/O results: the path (or what was being done) goes into the message, the
/// `io::Error` stays the source. `std::fs::read(&p).at(&p)?` reads "…/config.json: No such
/// file or directory (os error 2)" where a bare `?` would drop which file.
pub trait IoContext<T> {
    fn at(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| EngineError::internal(format!("{what}: {e}")).caused_by(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_kept_and_paths_named() {
        let e: Result<Vec<u8>> = std::fs::read("/nonexistent/skiff-test").at("/nonexistent/skiff-test");
        let e = e.unwrap_err();
        assert_eq!(e.kind, Kind::Internal);
        assert!(e.message.starts_with("/nonexistent/skiff-test: "), "{}", e.message);
        let src = std::error::Error::source(&e).expect("the io::Error is the source");
        assert!(src.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound));
        let e: EngineError = std::io::Error::other("boom").into();
        assert!(std::error::Error::source(&e).is_some());
    }
}
