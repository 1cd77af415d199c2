//! A swarm manager (swarmkit's `manager` package, in the parts skiff has so far): the cluster
//! state replicated among managers with openraft ([`raft`]: log and snapshots on redb, messages
//! over the cluster's mutual-TLS transport), the CA that admits joining nodes, heartbeats that
//! mark nodes ready or down, and the control operations the Engine API's swarm and node
//! endpoints call ([`Manager`]).

pub mod raft;
