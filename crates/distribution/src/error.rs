//! Errors of pull and push, worded for the person at the terminal.

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Transport(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("registry error ({status}): {message}")]
    Registry { status: u16, message: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DistError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DistError {
        let what = what.into();
        move |source| DistError::Io { what, source }
    }
}
