//! The per-container monitor's parts shared by its two binaries: `skiff-monitor`, the small
//! long-lived process that stays the container's parent, and `skiff-create`, the short-lived
//! helper it runs for each start and exec — the only code that links libcontainer, so none of
//! libcontainer's code or relocated data stays resident in the monitor.

pub mod helper;
pub mod sys;
