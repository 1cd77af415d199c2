//! The joining node's half of the join protocol: make a key, send a CSR with the token to a
//! manager whose root the token pins, and keep what comes back — the node's certificate and
//! the root — only if the root is the pinned one and the certificate is for the key.

use std::time::Duration;

use base64::Engine as _;

use crate::ca::{NodeKey, RootCa};
use crate::identity::NodeIdentity;
use crate::rpc::{JoinRequest, JoinResponse, RPC_VERSION};
use crate::tls::{self, Credentials};
use crate::token::JoinToken;
use crate::transport::{CallError, Dialer};
use crate::types::NodeDescription;
use crate::{ClusterError, Result};

/// What a node has once admitted.
#[derive(Debug, Clone)]
pub struct Joined {
    pub creds: Credentials,
    pub identity: NodeIdentity,
    pub response: JoinResponse,
    /// The node's key, PEM (to be stored 0600 beside the certificate).
    pub key_pem: String,
    pub cert_pem: String,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Identity(#[from] ClusterError),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Joins through the manager at `addr` with `token`.
pub async fn join(
    addr: &str,
    token: &str,
    description: NodeDescription,
    advertise_addr: &str,
) -> Result<Joined, JoinError> {
    let pinned = JoinToken::parse(token)?;
    let key = NodeKey::generate()?;
    let req = JoinRequest {
        rpc_version: RPC_VERSION,
        token: token.trim().to_string(),
        csr: base64::engine::general_purpose::STANDARD.encode(key.csr()?),
        description,
        advertise_addr: advertise_addr.to_string(),
    };
    let dialer = Dialer::new(tls::joining_client(pinned.ca_digest)?);
    let response: JoinResponse = dialer.call(addr, "/v1/join", &req, Duration::from_secs(30)).await?;
    // The root the manager sent must be the pinned one (the handshake already checked the
    // manager's chain against it), and the certificate must be for our key under that root.
    let ca = RootCa::from_pem(&response.ca, None)?;
    pinned.check_ca(&ca)?;
    let creds = Credentials::from_pem(ca.cert_pem(), &response.cert, key.der())?;
    let identity = NodeIdentity::from_cert(&creds.cert)?;
    if identity.node_id != response.node_id || identity.cluster_id != response.cluster_id {
        return Err(ClusterError::NotANodeCertificate("the certificate names another node".into()).into());
    }
    // A TLS configuration from them proves certificate and key belong together.
    tls::client(&creds)?;
    Ok(Joined { creds, identity, key_pem: key.pem(), cert_pem: response.cert.clone(), response })
}
