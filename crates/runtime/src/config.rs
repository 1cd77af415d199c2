//! What the daemon tells a monitor, and where a monitor keeps its files.
//!
//! Layout of a monitor directory (`<exec-root>/containers/<id>/`):
//! - `monitor.json` — the [`MonitorConfig`] (written by the daemon before spawning)
//! - `ctl.sock` — the monitor's socket ([`crate::protocol`])
//! - `exit.json` — the container's [`crate::protocol::ExitStatus`], written atomically by the
//!   monitor before it reports the exit; how a restarted daemon learns of exits it missed
//! - `monitor.pid`, `monitor.log`, `console.sock` (transient)

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    pub id: String,
    /// OCI bundle with `config.json`.
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    /// json-file log; `None` disables logging (`--log-driver none`).
    pub log_path: Option<PathBuf>,
    /// `--log-opt max-size/max-file`.
    #[serde(default)]
    pub log_rotation: crate::logfile::Rotation,
    /// `--log-opt labels/env/tag` attributes written with every log entry.
    #[serde(default)]
    pub log_attrs: std::collections::BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// `linux.cgroupsPath` of the spec.
    pub cgroup_path: String,
    /// Bring up `lo` in the container's network namespace (a new, empty one).
    pub loopback: bool,
    /// Initial terminal size (rows, columns), set before the process runs.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// Paths inside a monitor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorDir(PathBuf);

impl MonitorDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MonitorDir(dir.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("monitor.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.0.join("ctl.sock")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("monitor.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("monitor.log")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.0.join("console.sock")
    }
    /// Where an exec's OCI process spec is written for libcontainer.
    pub fn exec_process(&self, exec_id: &str) -> PathBuf {
        self.0.join(format!("exec-{exec_id}.json"))
    }
}
