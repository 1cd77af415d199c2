//! The commands, grouped as docker groups them.

pub mod analysis;
pub mod bootstrap;
pub mod build;
pub mod container;
pub mod cp;
pub mod image;
pub mod network;
pub mod progress;
pub mod registry;
pub mod registry_auth;
pub mod run;
pub mod stats;
pub mod system;
pub mod top_view;
pub mod volume;

use crate::client::ApiError;

/// Exit code for an error that ends a command (most commands: 1).
pub fn exit_code_for(_e: &anyhow::Error) -> u8 {
    1
}

/// The message printed for an error, in docker's words.
pub fn error_text(e: &anyhow::Error) -> String {
    if let Some(api) = e.downcast_ref::<ApiError>() {
        return api.to_string();
    }
    format!("{e:#}")
}

/// `docker run` and friends: 125 for daemon errors, 126/127 for a process that cannot run.
pub fn run_exit_code(e: &anyhow::Error) -> u8 {
    let msg = e.to_string();
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    }
}

/// Prints `docker: <error>` and returns the run-style exit code.
pub fn report_run_error(e: &anyhow::Error) -> u8 {
    eprintln!("skiff: {}", error_text(e));
    run_exit_code(e)
}
