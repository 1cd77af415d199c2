//! The only place that calls libcontainer: the body of `skiff-create`, the short-lived helper
//! the monitor forks and execs for each start and exec. libcontainer's code and memory stay out
//! of the long-lived monitor, and the helper may change namespaces freely before it exits.
//!
//! Sequence for a container start (numbers match the monitor's side in `monitor.rs`):
//! 1. monitor creates the stdio pipes (or a console socket) and a result pipe, forks the helper
//! 2. helper: libcontainer `build()` — clones the intermediate and init processes; init sets up
//!    namespaces, mounts, cgroups, seccomp and waits on libcontainer's notify socket
//! 3. helper: with a tty, accepts the pty master from init and passes it to the monitor
//! 4. helper: brings up `lo` in the container's new network namespace
//! 5. helper: `start()` — init execs the user's process
//! 6. helper writes `ok <pid>` on the result pipe and exits; init, whose parent was the helper,
//!    is re-parented to the monitor (a child subreaper), which reaps it when it exits.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use skiff_monitor::helper::Stdio;
use skiff_monitor::sys;

pub struct Plan<'a> {
    pub id: &'a str,
    pub state_root: &'a Path,
    pub stdio: Stdio,
    pub result: OwnedFd,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn init_tracing() {
    // libcontainer reports details through tracing; the helper's stderr is monitor.log.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::ERROR)
        .try_init();
}

fn base(id: &str, state_root: &Path) -> Result<ContainerBuilder, String> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)
        .map_err(|e| chain(&e))?
        .validate_id()
        .map_err(|e| chain(&e))
}

/// Hands the stdio to the builder; a tty's listener stays with us to receive the pty master.
fn with_stdio(b: ContainerBuilder, stdio: Stdio) -> (ContainerBuilder, Option<Stdio>) {
    match stdio {
        Stdio::Pipes { stdin, stdout, stderr } => (b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr), None),
        Stdio::Tty { listener, path, send_to } => {
            let b = b.with_console_socket(Some(path.clone()));
            (b, Some(Stdio::Tty { listener, path, send_to }))
        }
    }
}

/// Receives the pty master that init (or an exec'd process) sent to the console socket and
/// passes it on to the monitor.
fn forward_tty(stdio: Option<Stdio>, size: Option<(u16, u16)>) -> Result<(), String> {
    if let Some(Stdio::Tty { listener, send_to, .. }) = stdio {
        let (conn, _) = listener.accept().map_err(|e| format!("console socket: {e}"))?;
        let master = sys::recv_fd(conn.as_fd()).map_err(|e| format!("receiving the pty master: {e}"))?;
        // The size must be right before the process runs (it may ask at once).
        if let Some((rows, cols)) = size.filter(|(r, c)| *r > 0 && *c > 0) {
            let _ = sys::set_winsize(master.as_fd(), rows, cols);
        }
        sys::send_fd(send_to.as_fd(), master.as_fd()).map_err(|e| format!("passing the pty master: {e}"))?;
    }
    Ok(())
}

/// Reports the outcome on the result pipe and exits the helper.
fn finish(result: OwnedFd, r: Result<i32, String>) -> ! {
    let msg = match &r {
        Ok(pid) => format!("ok {pid}"),
        Err(e) => format!("err {e}"),
    };
    let _ = std::fs::File::from(result).write_all(msg.as_bytes());
    sys::exit_now(if r.is_ok() { 0 } else { 1 })
}

/// Helper body for a container start (steps 2–6). Never returns.
pub fn start_container(plan: Plan<'_>, bundle: &Path, loopback: bool, size: Option<(u16, u16)>) -> ! {
    sys::reset_signals();
    init_tracing();
    let Plan { id, state_root, stdio, result } = plan;
    let r = (|| {
        let (b, tty) = with_stdio(base(id, state_root)?, stdio);
        let mut container = b.as_init(bundle).with_systemd(false).with_detach(true).build().map_err(|e| chain(&e))?;
        forward_tty(tty, size)?;
        let pid = container.pid().ok_or("container has no pid after create")?.as_raw();
        if loopback {
            sys::loopback_up(&format!("/proc/{pid}/ns/net")).map_err(|e| format!("bringing up lo: {e}"))?;
        }
        container.start().map_err(|e| chain(&e))?;
        Ok(pid)
    })();
    finish(result, r)
}

/// Helper body for an exec: starts `process` (an OCI process JSON file) in the container.
pub fn exec_process(plan: Plan<'_>, process: &Path, size: Option<(u16, u16)>) -> ! {
    sys::reset_signals();
    init_tracing();
    let Plan { id, state_root, stdio, result } = plan;
    let r = (|| {
        let (b, tty) = with_stdio(base(id, state_root)?, stdio);
        let pid = b.as_tenant().with_process(Some(process)).with_detach(true).build().map_err(|e| chain(&e))?;
        forward_tty(tty, size)?;
        Ok(pid.as_raw())
    })();
    finish(result, r)
}
