//! How the monitor runs `skiff-create`: the job in argv, the descriptors at fixed numbers.
//!
//! `skiff-create start ID STATE_ROOT BUNDLE LOOPBACK ROWS COLS TTY_SOCKET`
//! `skiff-create exec  ID STATE_ROOT PROCESS_JSON - ROWS COLS TTY_SOCKET`
//! (`LOOPBACK` is 0 or 1; `ROWS COLS` 0 0 without a size; `TTY_SOCKET` is `-` without a tty.)
//! Descriptors: 3 the result pipe; with pipes 4, 5, 6 the process's stdin, stdout, stderr; with
//! a tty 4 the listening console socket and 5 where to send the pty master.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Stdio for a process being created.
pub enum Stdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// Path of a listening console socket, and where to send the pty master.
    Tty {
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
        send_to: OwnedFd,
    },
}

impl Stdio {
    /// The descriptors to hand to the helper, with their numbers there.
    pub fn into_fds(self) -> (Vec<(OwnedFd, RawFd)>, Option<PathBuf>) {
        match self {
            Stdio::Pipes { stdin, stdout, stderr } => {
                (vec![(stdin, FD_STDIN), (stdout, FD_STDOUT), (stderr, FD_STDERR)], None)
            }
            Stdio::Tty { listener, path, send_to } => {
                (vec![(OwnedFd::from(listener), FD_CONSOLE_LISTENER), (send_to, FD_SEND_TO)], Some(path))
            }
        }
    }

    /// In the helper: the descriptors the monitor put at their numbers.
    ///
    /// # Safety
    /// Only in `skiff-create`, started as [`exec`] starts it, once.
    pub unsafe fn from_fixed_fds(console: Option<PathBuf>) -> Stdio {
        use std::os::fd::FromRawFd;
        // SAFETY: the monitor placed these descriptors here for this process (see the caller's
        // contract); each is taken once.
        unsafe {
            match console {
                None => Stdio::Pipes {
                    stdin: OwnedFd::from_raw_fd(FD_STDIN),
                    stdout: OwnedFd::from_raw_fd(FD_STDOUT),
                    stderr: OwnedFd::from_raw_fd(FD_STDERR),
                },
                Some(path) => Stdio::Tty {
                    listener: std::os::unix::net::UnixListener::from_raw_fd(FD_CONSOLE_LISTENER),
                    path,
                    send_to: OwnedFd::from_raw_fd(FD_SEND_TO),
                },
            }
        }
    }
}

pub const FD_RESULT: RawFd = 3;
pub const FD_STDIN: RawFd = 4;
pub const FD_STDOUT: RawFd = 5;
pub const FD_STDERR: RawFd = 6;
pub const FD_CONSOLE_LISTENER: RawFd = 4;
pub const FD_SEND_TO: RawFd = 5;

/// The helper binary's name; it lives beside `skiff-monitor`.
pub const BINARY: &str = "skiff-create";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Create and start the container of the bundle.
    Start { bundle: PathBuf, loopback: bool },
    /// Start the process (an OCI process JSON file) in the running container.
    Exec { process: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub id: String,
    pub state_root: PathBuf,
    pub job: Job,
    pub size: Option<(u16, u16)>,
    /// The console socket's path, with a tty.
    pub console: Option<PathBuf>,
}

impl Invocation {
    pub fn to_args(&self) -> Vec<CString> {
        let path = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
        let s = |x: &str| CString::new(x).unwrap_or_default();
        let (rows, cols) = self.size.unwrap_or((0, 0));
        let (kind, target, loopback) = match &self.job {
            Job::Start { bundle, loopback } => ("start", path(bundle), s(if *loopback { "1" } else { "0" })),
            Job::Exec { process } => ("exec", path(process), s("-")),
        };
        vec![
            s(BINARY),
            s(kind),
            s(&self.id),
            path(&self.state_root),
            target,
            loopback,
            s(&rows.to_string()),
            s(&cols.to_string()),
            self.console.as_deref().map(path).unwrap_or_else(|| s("-")),
        ]
    }

    pub fn from_args(args: &[String]) -> Result<Invocation, String> {
        let [_, kind, id, state_root, target, loopback, rows, cols, console] = args else {
            return Err(format!("usage: {BINARY} start|exec ID STATE_ROOT TARGET LOOPBACK ROWS COLS TTY_SOCKET"));
        };
        let num = |x: &str| x.parse::<u16>().map_err(|_| format!("bad terminal size {x:?}"));
        let (rows, cols) = (num(rows)?, num(cols)?);
        let job = match (kind.as_str(), loopback.as_str()) {
            ("start", "0" | "1") => Job::Start { bundle: target.into(), loopback: loopback == "1" },
            ("exec", "-") => Job::Exec { process: target.into() },
            _ => return Err(format!("bad job {kind:?} {loopback:?}")),
        };
        Ok(Invocation {
            id: id.clone(),
            state_root: state_root.into(),
            job,
            size: (rows > 0 && cols > 0).then_some((rows, cols)),
            console: (console != "-").then(|| console.into()),
        })
    }
}

/// In a forked child of the monitor: puts `fds` at their numbers (`(fd, number)`) and execs
/// the helper. Never returns; a failure is reported on the result pipe.
pub fn exec(binary: &std::path::Path, inv: &Invocation, result: OwnedFd, fds: Vec<(OwnedFd, RawFd)>) -> ! {
    let err = |result_fd: RawFd, msg: String| -> ! {
        let msg = format!("err starting {}: {msg}", binary.display());
        // SAFETY: writing a buffer to a descriptor we own; nothing else runs in this child.
        unsafe { libc::write(result_fd, msg.as_ptr().cast(), msg.len()) };
        crate::sys::exit_now(1)
    };
    // Move everything above the target numbers first, so no dup2 clobbers a source.
    let mut moved = Vec::new();
    for (fd, n) in std::iter::once((result, FD_RESULT)).chain(fds) {
        // SAFETY: F_DUPFD on a descriptor we own.
        let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
        if high < 0 {
            err(fd.as_raw_fd(), std::io::Error::last_os_error().to_string());
        }
        moved.push((high, n));
    }
    for (high, n) in &moved {
        // SAFETY: dup2 between descriptors of this process; the new one is not close-on-exec.
        if unsafe { libc::dup2(*high, *n) } < 0 {
            err(moved[0].0, std::io::Error::last_os_error().to_string());
        }
    }
    let args = inv.to_args();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let Ok(bin) = CString::new(binary.as_os_str().as_bytes()) else { err(moved[0].0, "bad path".into()) };
    // SAFETY: a NUL-terminated path and argv of NUL-terminated strings, ending in a null.
    unsafe { libc::execv(bin.as_ptr(), argv.as_ptr()) };
    err(moved[0].0, std::io::Error::last_os_error().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_round_trip() {
        for inv in [
            Invocation {
                id: "abc".into(),
                state_root: "/run/skiff/runtime".into(),
                job: Job::Start { bundle: "/run/skiff/containers/abc".into(), loopback: true },
                size: Some((24, 80)),
                console: Some("console.sock".into()),
            },
            Invocation {
                id: "abc".into(),
                state_root: "/r".into(),
                job: Job::Exec { process: "/r/e1.json".into() },
                size: None,
                console: None,
            },
        ] {
            let args: Vec<String> = inv.to_args().iter().map(|a| a.to_str().unwrap().to_string()).collect();
            assert_eq!(Invocation::from_args(&args).unwrap(), inv);
        }
        let bad = |a: &[&str]| Invocation::from_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_err();
        assert!(bad(&["x", "start", "id"]));
        assert!(bad(&["x", "start", "id", "/s", "/b", "2", "0", "0", "-"]));
        assert!(bad(&["x", "exec", "id", "/s", "/p", "1", "0", "0", "-"]));
        assert!(bad(&["x", "run", "id", "/s", "/p", "-", "0", "0", "-"]));
        assert!(bad(&["x", "start", "id", "/s", "/b", "1", "-1", "0", "-"]));
    }
}
