//! skiff-monitor: one per container. Usage: `skiff-monitor <monitor-dir>`.
//!
//! Started by the daemon, it detaches (forks; the first process exits so the daemon can reap
//! it at once), starts its own session, becomes a child subreaper, listens on `ctl.sock`, and
//! prints `ready <pid>` on stdout for the daemon. From then on it is on its own: it outlives
//! the daemon, and a restarted daemon reconnects to its socket.

mod monitor;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use skiff_monitor::sys;
use skiff_runtime::config::{MonitorConfig, MonitorDir};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        eprintln!("usage: skiff-monitor <monitor-dir>");
        return ExitCode::from(2);
    }
    let dir = MonitorDir::new(&args[1]);
    let cfg: MonitorConfig = match std::fs::read(dir.config())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            println!("error reading {}: {e}", dir.config().display());
            return ExitCode::from(1);
        }
    };
    match sys::fork() {
        Ok(sys::Fork::Parent(_)) => return ExitCode::SUCCESS,
        Ok(sys::Fork::Child) => {}
        Err(e) => {
            println!("error: fork: {e}");
            return ExitCode::from(1);
        }
    }
    match setup(&cfg, &dir) {
        Ok(mut m) => {
            if let Err(e) = m.run() {
                eprintln!("skiff-monitor: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // stdout is still the daemon's pipe: tell it why.
            println!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn setup(cfg: &MonitorConfig, dir: &MonitorDir) -> std::io::Result<monitor::Monitor> {
    rustix::process::setsid()?;
    sys::become_subreaper()?;
    let sigfd = sys::sigchld_fd()?;
    // Work in the monitor directory: sockets are bound by their short relative names, so the
    // directory's path may be longer than a unix socket address allows.
    std::env::set_current_dir(dir.path())?;
    let sock = dir.socket();
    let name = sock.file_name().expect("socket has a name");
    let _ = std::fs::remove_file(name);
    let listener = UnixListener::bind(name)?;
    listener.set_nonblocking(true)?;
    std::fs::write(dir.pid_file(), std::process::id().to_string())?;
    let m = monitor::Monitor::new(cfg.clone(), dir.clone(), listener, sigfd)?;
    let null = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    let log = std::fs::File::options().create(true).append(true).open(dir.log())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", std::process::id())?;
    out.flush()?;
    drop(out);
    sys::redirect_stdio(&null, &null, &log)?;
    Ok(m)
}
