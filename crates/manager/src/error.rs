//! The manager's error: a class (which the Engine API maps to a status) and words.

/// What kind of failure, for the API's status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input (400).
    Invalid,
    /// No such node (404).
    NotFound,
    /// Stale version, or a state that forbids it (409 / 400 as dockerd).
    Conflict,
    /// No leader or no quorum, or this node cannot do it now (503).
    Unavailable,
    /// A token or certificate that does not admit the caller (403 on the wire).
    Forbidden,
    /// A key that does not open what it should (`swarm unlock`; 401).
    Unauthorized,
    /// Storage or something else inside (500).
    Internal,
}

/// A manager operation's failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ManagerError {
    pub kind: Kind,
    pub message: String,
}

impl ManagerError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ManagerError {
        ManagerError { kind, message: message.into() }
    }

    pub fn internal(e: impl std::fmt::Display) -> ManagerError {
        ManagerError::new(Kind::Internal, e.to_string())
    }

    pub fn unavailable(e: impl std::fmt::Display) -> ManagerError {
        ManagerError::new(Kind::Unavailable, e.to_string())
    }

    /// The HTTP status a peer sees for it.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self.kind {
            Kind::Invalid => S::BAD_REQUEST,
            Kind::NotFound => S::NOT_FOUND,
            Kind::Conflict => S::CONFLICT,
            Kind::Unavailable => S::SERVICE_UNAVAILABLE,
            Kind::Forbidden => S::FORBIDDEN,
            Kind::Unauthorized => S::UNAUTHORIZED,
            Kind::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error a peer's answer stands for.
    pub fn from_status(status: u16, message: String) -> ManagerError {
        let kind = match status {
            400 => Kind::Invalid,
            404 => Kind::NotFound,
            409 => Kind::Conflict,
            403 => Kind::Forbidden,
            401 => Kind::Unauthorized,
            503 => Kind::Unavailable,
            _ => Kind::Internal,
        };
        ManagerError { kind, message }
    }
}

pub type Result<T, E = ManagerError> = std::result::Result<T, E>;
