//! A swarm manager (swarmkit's `manager` package, in the parts skiff has so far): the cluster
//! state replicated among managers with openraft ([`raft`]: log and snapshots on redb, messages
//! over the cluster's mutual-TLS transport), the CA that admits joining nodes ([`join`]),
//! heartbeats that mark nodes ready or down ([`dispatcher`]), root CA rotation (`rotation`), the server other nodes call
//! ([`server`]) and the writes and reads the control operations make ([`Manager`]).

mod control;
mod dispatcher;
mod error;
mod join;
mod manager;
pub mod raft;
mod renew;
mod rotation;
mod server;

pub use control::init_command;
pub use error::{Kind, ManagerError, Result};
pub use manager::{Manager, Settings};
