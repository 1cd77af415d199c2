//! openraft's type configuration for the cluster store, and the pieces it runs on: the log
//! ([`log`]), the state machine ([`sm`]) and the network ([`net`]).
#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return StorageError<u64> (224 bytes); the helpers here return what the traits do"
)]

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skiff_cluster::types::{Applied, Command};

pub mod log;
pub mod net;
pub mod sm;

/// A log entry's payload: the command, and the leader's clock when it was proposed (so every
/// manager records the same times).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub now: i64,
    pub cmd: Command,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", std::mem::discriminant(&self.cmd))
    }
}

/// A voter or learner as the Raft membership records it: the node's cluster ID and the
/// address managers reach it at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.addr)
    }
}

openraft::declare_raft_types!(
    /// The cluster store's Raft types.
    pub TypeConfig:
        D = Request,
        R = Applied,
        NodeId = u64,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

/// openraft's node ID (a u64) for a cluster node ID: the first 8 bytes of its SHA-256. Two
/// managers colliding would need 2^32 managers.
pub fn raft_id(node_id: &str) -> u64 {
    let d = Sha256::digest(node_id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

pub type StorageError = openraft::StorageError<u64>;

/// Seals a row of the raft database with the manager's data key; `context` names the row.
pub(crate) fn seal(dek: &skiff_cluster::seal::Key, plain: &[u8], context: &str) -> Vec<u8> {
    dek.seal(plain, context.as_bytes())
}

/// Opens a row [`seal`] wrote; a row stored in the clear (by skiffd before encryption at rest)
/// reads as it is.
pub(crate) fn unseal(dek: &skiff_cluster::seal::Key, stored: &[u8], context: &str) -> Result<Vec<u8>, String> {
    if !skiff_cluster::seal::is_sealed(stored) {
        return Ok(stored.to_vec());
    }
    dek.open(stored, context.as_bytes()).map_err(|e| format!("{context}: {e}"))
}

/// A storage failure as openraft takes it.
pub(crate) fn io_err(
    subject: openraft::ErrorSubject<u64>,
    verb: openraft::ErrorVerb,
    e: impl fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}
