//! The cluster contract's error.

/// What can go wrong establishing or checking an identity.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A join token that is not one (wrong prefix, version, lengths or alphabet).
    #[error("invalid join token")]
    InvalidToken,
    /// The token names another root CA than the one the manager presented: either the
    /// token is for another cluster or someone is in the middle.
    #[error("the remote CA does not match the fingerprint in the join token")]
    CaMismatch,
    /// The token's secret is not this cluster's (for the role it claims).
    #[error("the join token is not valid for this cluster")]
    TokenRejected,
    /// A certificate without the subject a node certificate has.
    #[error("not a node certificate of this cluster: {0}")]
    NotANodeCertificate(String),
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate verifier could not be built from the roots.
    #[error("tls verifier: {0}")]
    Verifier(String),
}
