//! A swarm manager (swarmkit's `manager` package, in the parts skiff has so far): the cluster
//! state replicated among managers with openraft ([`raft`]: log and snapshots on redb, messages
//! over the cluster's mutual-TLS transport), the CA that admits joining nodes ([`join`]),
//! heartbeats that mark nodes ready or down ([`dispatcher`]), root CA rotation (`rotation`),
//! services — the orchestrators ([`orchestrator`]), the scheduler ([`scheduler`]) and task
//! assignment (`services`) —, the server other nodes call (`server`) and the writes and reads
//! the control operations make ([`Manager`]).

mod blobs;
mod control;
mod dispatcher;
mod error;
mod join;
mod logs;
mod manager;
mod networks;
pub mod orchestrator;
pub mod raft;
mod renew;
mod rotation;
pub mod scheduler;
mod server;
mod services;

pub use control::init_command;
pub use error::{Kind, ManagerError, Result};
pub use logs::{LogEvent, LogRequest, LogStream};
pub use manager::{Manager, Settings};
pub use networks::ingress_spec;
pub use services::validate as validate_service;
