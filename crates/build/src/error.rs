//! The builder's error: what the client reads, a kind the daemon maps to a status, the exit
//! code of a failed RUN, and the cause it came from.

/// What kind of failure (the engine maps each to its own kind, and so to an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile, the context or the request is wrong; also a failed RUN.
    Invalid,
    /// An image or a stage it names does not exist.
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    Unavailable,
    /// The worker failed (disk, mounts, the runtime).
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub kind: ErrorKind,
    pub message: String,
    /// A failed RUN step's exit code (the classic builder's `errorDetail.code`).
    pub code: Option<i64>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BuildError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BuildError { kind, message: message.into(), code: None, source: None }
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    /// The same error with the exit code of the step that failed.
    pub fn with_code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }
    /// The same error, its message prefixed (e.g. with the Dockerfile line it happened on).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        BuildError { message: format!("{prefix}: {}", self.message), ..self }
    }
    pub(crate) fn cancelled() -> Self {
        Self::invalid("the build was cancelled (its client went away)")
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        BuildError { kind: ErrorKind::Internal, message: e.to_string(), code: None, source: Some(Box::new(e)) }
    }
}

pub type Result<T> = std::result::Result<T, BuildError>;

pub(crate) fn invalid(m: impl Into<String>) -> BuildError {
    BuildError::invalid(m)
}
