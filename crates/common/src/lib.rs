//! skiff-common: the few helpers both the per-container monitor and the daemon's libraries
//! need — atomic file writes and Docker-style timestamps — kept free of heavy dependencies so
//! the monitor binary stays small.

pub mod fsutil;
pub mod rootfs;
pub mod signal;
pub mod timefmt;
pub mod tree;
pub mod units;
