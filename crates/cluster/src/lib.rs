//! The cluster's contract: what managers and agents agree on before they trust each other.
//!
//! - [`identity`]: a node's identity as its certificate states it — node ID (subject CN), role
//!   (OU: `swarm-manager` or `swarm-worker`, and the DNS name of the same) and cluster (O).
//! - [`ca`]: the cluster's root CA (made at `swarm init`, or an operator's), which issues a node
//!   its certificate from a CSR: only the key comes from the node, the subject is the manager's.
//! - [`token`]: join tokens, `SWMTKN-1-<digest of the root CA>-<secret>`: the digest pins the CA a
//!   joining node must find on the manager, the secret (one per role) admits it.
//! - [`tls`]: mutual-TLS configurations (rustls, ring): every link presents a certificate from
//!   the cluster's CA, and a node dialling a manager accepts only a manager's certificate.
//!
//! - [`seal`]: encryption at rest — the data key that seals a manager's Raft data and the
//!   unlock key (`--autolock`) that seals the data key and the node's TLS key.
//! - [`transport`]: the wire (JSON over HTTP/2 on those TLS links), [`rpc`] its messages, and
//!   [`join`] the joining node's half of a join; [`types`]: the replicated objects and commands.
//!
//! The manager, agent and swarm crates build on it; neither they nor this crate depend on the
//! engine.

pub mod ca;
pub mod identity;
pub mod join;
pub mod rpc;
pub mod seal;
pub mod tls;
pub mod token;
pub mod transport;
pub mod types;

mod error;
pub use error::ClusterError;

/// The crate's result.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
