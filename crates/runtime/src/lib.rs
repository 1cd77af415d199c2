//! skiff-runtime: the contract between the daemon and the per-container monitor.
//!
//! The monitor binary (`skiff-monitor`, crate `skiff-monitor`) is the only code that creates
//! containers; this crate holds what both sides must agree on — the monitor's configuration and
//! directory layout, the wire protocol on its socket, where a container's cgroups are and how
//! to read them, and the json-file log format — and nothing that forks.

pub mod cgroups;
pub mod config;
pub mod logfile;
pub mod protocol;
