//! The monitor's system-call wrappers: every `unsafe` block of the monitor lives here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Result of `fork`.
pub enum Fork {
    Parent(i32),
    Child,
}

/// Forks the (single-threaded) monitor.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the monitor is single-threaded (no tokio, no helper threads), so the child
    // starts with a consistent copy of the only thread's state; it runs ordinary Rust code
    // afterwards, which is sound in a single-threaded child.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Ends a forked child without running the parent's exit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Blocks SIGCHLD and returns a signalfd that reports it (the event loop's child notifier).
pub fn sigchld_fd() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io::Error::from)
}

/// Undoes the monitor's signal setup in a forked child, before it creates container processes
/// (which would otherwise inherit a blocked SIGCHLD).
/// Unblocks every signal and puts every disposition back to its default. Ignored signals stay
/// ignored across exec, and a Rust program starts with SIGPIPE ignored: without this a
/// container's processes would inherit it (`yes | head` would never end, as `yes` would get
/// EPIPE instead of dying). Called first thing in the helper, whose dispositions the container's
/// init and exec'd processes inherit.
pub fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // The kernel's sigaction layout; the raw call also reaches the two real-time signals glibc
    // keeps for itself (32, 33), which its `signal` refuses.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installs the default disposition from a valid struct of the kernel's layout;
        // no handler code is involved.
        unsafe {
            libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, std::ptr::null::<u8>(), 8usize)
        };
    }
}

/// The kernel's `pollfd`, for [`poll`].
pub type PollFd = libc::pollfd;

pub fn pollfd(fd: RawFd, events: i16) -> PollFd {
    libc::pollfd { fd, events, revents: 0 }
}

/// poll(2); EINTR counts as "nothing ready".
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Sends one file descriptor over a unix socket.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    let fds = [fd.as_raw_fd()];
    let iov = [io::IoSlice::new(b"F")];
    sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    Ok(())
}

/// Receives one file descriptor sent with SCM_RIGHTS.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 64];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut got: Option<OwnedFd> = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor in our table for us; we
                // are its only owner.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    got.ok_or_else(|| io::Error::other("no file descriptor received"))
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(fd, ws)?;
    Ok(())
}

/// Brings up the loopback interface of the network namespace at `ns_path`. Must run in a
/// throwaway process: it leaves the caller in that namespace.
pub fn loopback_up(ns_path: &str) -> io::Result<()> {
    let ns = std::fs::File::open(ns_path)?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let sock = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::DGRAM, None)?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into the ifreq we own, which lives for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process the reaper of its orphaned descendants, so that processes a helper
/// created (the container's init, exec'd processes) become our children when it exits.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(())
}

/// Reaps one exited child, if any: (pid, Docker-style exit code).
pub fn reap() -> Option<(i32, i32)> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid.as_raw(), code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => return Some((pid.as_raw(), 128 + sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Waits for one specific child (a helper) and returns its exit code.
pub fn wait_pid(pid: i32) -> i32 {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return -1,
        }
    }
}

/// Redirects fd 0/1/2 to the given files (after daemonizing).
pub fn redirect_stdio(stdin: &impl AsRawFd, stdout: &impl AsRawFd, stderr: &impl AsRawFd) -> io::Result<()> {
    for (src, dst) in [(stdin.as_raw_fd(), 0), (stdout.as_raw_fd(), 1), (stderr.as_raw_fd(), 2)] {
        if src != dst {
            nix::unistd::dup2(src, dst).map_err(io::Error::from)?;
        }
    }
    Ok(())
}

pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) with plain integers has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
