//! The monitor's event loop.
//!
//! One thread, one `poll(2)`: the control socket, a signalfd for SIGCHLD, the container's
//! stdio (pipes, or a pty master), the stdio of exec'd processes, and the connected clients.
//! Output goes to the json-file log and to every attached client; a slow client holds back
//! reading (backpressure) instead of growing memory without bound.
//!
//! Exit handling: when init is reaped its output may still be in the pipes, so the exit is
//! "pending" until both streams reach EOF (or a short deadline passes — a background process
//! may hold a pipe open). Then the status is written to `exit.json` (atomically) *before* any
//! client is told, so a daemon that was down learns the same thing later from the file.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::sys::signalfd::SignalFd;
use skiff_common::{fsutil, timefmt};
use skiff_runtime::cgroups::Layout;
use skiff_runtime::config::{MonitorConfig, MonitorDir};
use skiff_runtime::logfile::{self, Stream};
use skiff_runtime::protocol::{
    self, ExecSpec, ExecState, ExitStatus, FrameKind, MonitorState, Request, Response, Status, Streams,
};

use skiff_monitor::helper::{self, Invocation, Job, Stdio};
use skiff_monitor::sys::{self, Fork};

/// How long output may keep flowing after a process exited before we stop waiting for EOF.
const DRAIN: Duration = Duration::from_millis(1500);
/// How long clients get to read their last bytes once the container is gone.
const LINGER: Duration = Duration::from_secs(5);
/// Client output buffered beyond this pauses reading from the container.
const HIGH_WATER: usize = 1 << 20;
/// A monitor not told to start within this long exits: the daemon that spawned it sends
/// `Start` within milliseconds, so it died in between (and its restart will not know us).
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A process's stdio as the monitor holds it.
#[derive(Default)]
struct Io {
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    close_stdin_when_drained: bool,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    tty: Option<OwnedFd>,
}

impl Io {
    fn drained(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }

    fn close_stdin(&mut self) {
        if self.stdin_buf.is_empty() {
            self.stdin = None;
        } else {
            self.close_stdin_when_drained = true;
        }
    }
}

enum Role {
    New,
    Control,
    Attach(Streams),
    Wait,
    Exec(String),
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    role: Role,
    close_after_flush: bool,
    dead: bool,
}

impl Client {
    fn send(&mut self, r: &Response) {
        protocol::encode_json(r, &mut self.outbuf);
    }
}

struct Exec {
    pid: i32,
    io: Io,
    client: Option<u64>,
    reaped: Option<(i32, Instant)>,
    exit: Option<i32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Listener,
    Signal,
    Out,
    Err,
    In,
    ExecOut(u64),
    ExecErr(u64),
    ExecIn(u64),
    Client(u64),
}

pub struct Monitor {
    cfg: MonitorConfig,
    /// `skiff-create`, beside this binary.
    helper_bin: std::path::PathBuf,
    dir: MonitorDir,
    layout: Layout,
    listener: UnixListener,
    sigfd: SignalFd,
    status: Status,
    pid: Option<i32>,
    started_at: Option<String>,
    exit: Option<ExitStatus>,
    failed: bool,
    reaped: Option<(i32, Instant)>,
    io: Io,
    /// Stdin that arrived before the start (a client attaches, writes and closes first).
    early_stdin: Vec<u8>,
    early_close: bool,
    log: Option<logfile::Writer>,
    clients: BTreeMap<u64, Client>,
    execs: BTreeMap<String, Exec>,
    exec_ids: BTreeMap<u64, String>,
    next: u64,
    done_at: Option<Instant>,
    /// When the monitor came up (for [`START_DEADLINE`]).
    came_up: Instant,
    buf: Vec<u8>,
}

fn io_string(e: io::Error) -> String {
    e.to_string()
}

impl Monitor {
    pub fn new(cfg: MonitorConfig, dir: MonitorDir, listener: UnixListener, sigfd: SignalFd) -> io::Result<Monitor> {
        let layout = Layout::detect()?;
        let helper_bin = std::env::current_exe()?
            .parent()
            .map(|d| d.join(helper::BINARY))
            .ok_or_else(|| io::Error::other("the monitor binary has no directory"))?;
        let log = match &cfg.log_path {
            Some(p) => Some(logfile::Writer::open_rotating(p, cfg.log_rotation)?.with_attrs(cfg.log_attrs.clone())),
            None => None,
        };
        Ok(Monitor {
            cfg,
            helper_bin,
            dir,
            layout,
            listener,
            sigfd,
            status: Status::Created,
            pid: None,
            started_at: None,
            exit: None,
            failed: false,
            reaped: None,
            io: Io::default(),
            early_stdin: Vec::new(),
            early_close: false,
            log,
            clients: BTreeMap::new(),
            execs: BTreeMap::new(),
            exec_ids: BTreeMap::new(),
            next: 1,
            done_at: None,
            came_up: Instant::now(),
            buf: vec![0u8; 64 << 10],
        })
    }

    fn state(&self) -> MonitorState {
        MonitorState {
            status: self.status.clone(),
            pid: self.pid,
            started_at: self.started_at.clone(),
            exit: self.exit.clone(),
            monitor_pid: std::process::id() as i32,
            execs: self.execs.iter().map(|(k, e)| (k.clone(), ExecState { pid: e.pid, exit: e.exit })).collect(),
        }
    }

    fn backlog(&self) -> usize {
        self.clients.values().map(|c| c.outbuf.len()).sum()
    }

    /// Runs until the container has exited and every client has been served.
    pub fn run(&mut self) -> io::Result<()> {
        let mut fds = Vec::new();
        let mut tokens = Vec::new();
        loop {
            fds.clear();
            tokens.clear();
            let add = |fd: RawFd, ev: i16, t: Token, fds: &mut Vec<sys::PollFd>, tokens: &mut Vec<Token>| {
                fds.push(sys::pollfd(fd, ev));
                tokens.push(t);
            };
            add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener, &mut fds, &mut tokens);
            add(self.sigfd.as_raw_fd(), libc::POLLIN, Token::Signal, &mut fds, &mut tokens);
            let paused_out = self.backlog() > HIGH_WATER;
            if !paused_out {
                if let Some(fd) = &self.io.out {
                    add(fd.as_raw_fd(), libc::POLLIN, Token::Out, &mut fds, &mut tokens);
                }
                if let Some(fd) = &self.io.err {
                    add(fd.as_raw_fd(), libc::POLLIN, Token::Err, &mut fds, &mut tokens);
                }
                for (n, id) in &self.exec_ids {
                    let e = &self.execs[id];
                    if let Some(fd) = &e.io.out {
                        add(fd.as_raw_fd(), libc::POLLIN, Token::ExecOut(*n), &mut fds, &mut tokens);
                    }
                    if let Some(fd) = &e.io.err {
                        add(fd.as_raw_fd(), libc::POLLIN, Token::ExecErr(*n), &mut fds, &mut tokens);
                    }
                }
            }
            if let (Some(fd), false) = (&self.io.stdin, self.io.stdin_buf.is_empty()) {
                add(fd.as_raw_fd(), libc::POLLOUT, Token::In, &mut fds, &mut tokens);
            }
            for (n, id) in &self.exec_ids {
                let e = &self.execs[id];
                if let (Some(fd), false) = (&e.io.stdin, e.io.stdin_buf.is_empty()) {
                    add(fd.as_raw_fd(), libc::POLLOUT, Token::ExecIn(*n), &mut fds, &mut tokens);
                }
            }
            for (id, c) in &self.clients {
                let mut ev = libc::POLLIN;
                if !c.outbuf.is_empty() {
                    ev |= libc::POLLOUT;
                }
                add(c.sock.as_raw_fd(), ev, Token::Client(*id), &mut fds, &mut tokens);
            }

            let timeout = self.next_timeout();
            sys::poll(&mut fds, timeout)?;
            for (i, pfd) in fds.iter().enumerate() {
                if pfd.revents == 0 {
                    continue;
                }
                let ready_in = pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
                let ready_out = pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0;
                match tokens[i] {
                    Token::Listener => self.accept(),
                    Token::Signal => self.on_sigchld(),
                    Token::Out => self.read_output(Stream::Stdout),
                    Token::Err => self.read_output(Stream::Stderr),
                    Token::In => flush_stdin(&mut self.io),
                    Token::ExecOut(n) => self.read_exec_output(n, Stream::Stdout),
                    Token::ExecErr(n) => self.read_exec_output(n, Stream::Stderr),
                    Token::ExecIn(n) => {
                        if let Some(e) = self.exec_ids.get(&n).and_then(|id| self.execs.get_mut(id)) {
                            flush_stdin(&mut e.io);
                        }
                    }
                    Token::Client(id) => {
                        if ready_out {
                            self.flush_client(id);
                        }
                        if ready_in {
                            self.read_client(id);
                        }
                    }
                }
            }
            self.check_exits();
            if self.never_started() && self.came_up.elapsed() >= START_DEADLINE {
                eprintln!("skiff-monitor: not told to start within {START_DEADLINE:?}; exiting");
                self.fail_start();
            }
            self.clients.retain(|_, c| !(c.dead || (c.close_after_flush && c.outbuf.is_empty())));
            if let Some(done) = self.done_at {
                let idle = self.clients.values().all(|c| c.outbuf.is_empty() && !matches!(c.role, Role::New));
                if (self.clients.is_empty() || idle && done.elapsed() > Duration::from_millis(200))
                    || done.elapsed() > LINGER
                {
                    return Ok(());
                }
            }
        }
    }

    fn next_timeout(&self) -> i32 {
        let mut deadlines: Vec<Instant> = Vec::new();
        if let Some((_, t)) = self.reaped {
            deadlines.push(t + DRAIN);
        }
        for e in self.execs.values() {
            if let Some((_, t)) = e.reaped {
                deadlines.push(t + DRAIN);
            }
        }
        if let Some(d) = self.done_at {
            deadlines.push(d + Duration::from_millis(200));
        }
        if self.never_started() {
            deadlines.push(self.came_up + START_DEADLINE);
        }
        match deadlines.into_iter().min() {
            None => -1,
            Some(d) => d.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32 + 1,
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next;
                    self.next += 1;
                    self.clients.insert(
                        id,
                        Client {
                            sock,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                            role: Role::New,
                            close_after_flush: false,
                            dead: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("skiff-monitor: accept: {e}");
                    return;
                }
            }
        }
    }

    fn flush_client(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        while !c.outbuf.is_empty() {
            match rustix::net::send(&c.sock, &c.outbuf, rustix::net::SendFlags::NOSIGNAL) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    c.dead = true;
                    c.outbuf.clear();
                    return;
                }
            }
        }
    }

    fn read_client(&mut self, id: u64) {
        let mut eof = false;
        {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            loop {
                match c.sock.read(&mut self.buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&self.buf[..n]);
                        if c.inbuf.len() > protocol::MAX_FRAME * 2 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
        }
        loop {
            let frame = {
                let Some(c) = self.clients.get_mut(&id) else {
                    return;
                };
                match protocol::decode(&c.inbuf) {
                    Ok(Some((k, p, used))) => {
                        let p = p.to_vec();
                        c.inbuf.drain(..used);
                        Some((k, p))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        c.send(&Response::Error { message: e.to_string() });
                        c.close_after_flush = true;
                        c.inbuf.clear();
                        None
                    }
                }
            };
            let Some((kind, payload)) = frame else { break };
            self.on_frame(id, kind, payload);
        }
        if eof {
            self.on_client_gone(id);
        }
    }

    fn on_client_gone(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.dead = true;
        match &c.role {
            Role::Attach(s) if s.stdin && self.cfg.stdin_once => {
                if self.status == Status::Created {
                    self.early_close = true;
                } else {
                    self.io.close_stdin();
                }
            }
            _ => {}
        }
    }

    fn on_frame(&mut self, id: u64, kind: FrameKind, payload: Vec<u8>) {
        let role_is_new = matches!(self.clients.get(&id).map(|c| &c.role), Some(Role::New));
        match kind {
            FrameKind::Json => {
                let req: Request = match serde_json::from_slice(&payload) {
                    Ok(r) => r,
                    Err(e) => {
                        if let Some(c) = self.clients.get_mut(&id) {
                            c.send(&Response::Error { message: format!("bad request: {e}") });
                            c.close_after_flush = true;
                        }
                        return;
                    }
                };
                if !role_is_new {
                    // Mid-stream control messages: resizes only.
                    match req {
                        Request::Resize { height, width } => {
                            let _ = self.resize(None, height, width);
                        }
                        Request::ExecResize { id: eid, height, width } => {
                            let _ = self.resize(Some(&eid), height, width);
                        }
                        _ => {}
                    }
                    return;
                }
                self.on_request(id, req);
            }
            FrameKind::Stdin => {
                let role = self.clients.get(&id).map(|c| match &c.role {
                    Role::Attach(s) if s.stdin => Some(None),
                    Role::Exec(e) => Some(Some(e.clone())),
                    _ => None,
                });
                match role.flatten() {
                    Some(None) if self.status == Status::Created && self.cfg.open_stdin => {
                        self.early_stdin.extend_from_slice(&payload);
                    }
                    Some(None) if self.status != Status::Created && self.io.stdin.is_some() => {
                        self.io.stdin_buf.extend_from_slice(&payload);
                        flush_stdin(&mut self.io);
                    }
                    Some(Some(eid)) => {
                        if let Some(e) = self.execs.get_mut(&eid).filter(|e| e.io.stdin.is_some()) {
                            e.io.stdin_buf.extend_from_slice(&payload);
                            flush_stdin(&mut e.io);
                        }
                    }
                    Some(None) => {}
                    None => {}
                }
            }
            FrameKind::StdinClose => {
                let role = self.clients.get(&id).map(|c| match &c.role {
                    Role::Attach(s) if s.stdin => Some(None),
                    Role::Exec(e) => Some(Some(e.clone())),
                    _ => None,
                });
                match role.flatten() {
                    Some(None) if self.status == Status::Created => self.early_close = true,
                    Some(None) => self.io.close_stdin(),
                    Some(Some(eid)) => {
                        if let Some(e) = self.execs.get_mut(&eid) {
                            e.io.close_stdin();
                        }
                    }
                    None => {}
                }
            }
            FrameKind::Stdout | FrameKind::Stderr => {}
        }
    }

    fn reply(&mut self, id: u64, r: Response, close: bool) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.send(&r);
            if close {
                c.close_after_flush = true;
                c.role = Role::Control;
            }
        }
    }

    fn on_request(&mut self, id: u64, req: Request) {
        match req {
            Request::State => {
                let s = self.state();
                self.reply(id, Response::State { state: s }, true);
            }
            Request::Start => {
                let r = match self.start() {
                    Ok(pid) => Response::Started { pid, started_at: self.started_at.clone().unwrap_or_default() },
                    Err(message) => {
                        self.fail_start();
                        Response::Error { message }
                    }
                };
                self.reply(id, r, true);
            }
            Request::Shutdown => {
                let r = if self.never_started() || self.failed {
                    self.fail_start();
                    Response::Ok
                } else {
                    Response::Error { message: "the container has started; signal it instead".into() }
                };
                self.reply(id, r, true);
            }
            Request::Attach { streams } => {
                if let Some(exit) = &self.exit {
                    let r = Response::Exited { status: exit.clone() };
                    self.reply(id, r, true);
                } else if let Some(c) = self.clients.get_mut(&id) {
                    c.send(&Response::Ok);
                    c.role = Role::Attach(streams);
                }
            }
            Request::Wait => {
                if let Some(exit) = &self.exit {
                    let r = Response::Exited { status: exit.clone() };
                    self.reply(id, r, true);
                } else if let Some(c) = self.clients.get_mut(&id) {
                    c.send(&Response::Ok);
                    c.role = Role::Wait;
                }
            }
            Request::Signal { signal } => {
                let r = match (self.pid, &self.status) {
                    (Some(pid), Status::Running | Status::Paused) => match sys::kill(pid, signal) {
                        Ok(()) => Response::Ok,
                        Err(e) => Response::Error { message: format!("signal {signal}: {e}") },
                    },
                    _ => Response::Error { message: "container is not running".into() },
                };
                self.reply(id, r, true);
            }
            Request::ExecSignal { id: eid, signal } => {
                let r = match self.execs.get(&eid) {
                    Some(e) if e.exit.is_none() => match sys::kill(e.pid, signal) {
                        Ok(()) => Response::Ok,
                        Err(err) => Response::Error { message: err.to_string() },
                    },
                    _ => Response::Error { message: format!("exec {eid} is not running") },
                };
                self.reply(id, r, true);
            }
            Request::Resize { height, width } => {
                let r = match self.resize(None, height, width) {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error { message: e },
                };
                self.reply(id, r, true);
            }
            Request::ExecResize { id: eid, height, width } => {
                let r = match self.resize(Some(&eid), height, width) {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error { message: e },
                };
                self.reply(id, r, true);
            }
            Request::Pause | Request::Resume => {
                let pause = matches!(req, Request::Pause);
                let r = match (&self.status, pause) {
                    (Status::Running, true) | (Status::Paused, false) => {
                        match self.layout.freeze(&self.cfg.cgroup_path, pause) {
                            Ok(()) => {
                                self.status = if pause { Status::Paused } else { Status::Running };
                                Response::Ok
                            }
                            Err(e) => Response::Error { message: e.to_string() },
                        }
                    }
                    (Status::Paused, true) => Response::Error { message: "container is already paused".into() },
                    (Status::Running, false) => Response::Error { message: "container is not paused".into() },
                    _ => Response::Error { message: "container is not running".into() },
                };
                self.reply(id, r, true);
            }
            Request::Exec { spec } => match self.exec(id, spec) {
                Ok(pid) => {
                    let started_at = timefmt::now();
                    self.reply(id, Response::Started { pid, started_at }, false);
                }
                Err(message) => self.reply(id, Response::Error { message }, true),
            },
        }
    }

    fn resize(&mut self, exec: Option<&str>, h: u16, w: u16) -> Result<(), String> {
        let fd = match exec {
            None => self.io.tty.as_ref(),
            Some(id) => self.execs.get(id).and_then(|e| e.io.tty.as_ref()),
        };
        let fd = fd.ok_or("no terminal to resize")?;
        sys::set_winsize(fd.as_fd(), h, w).map_err(io_string)
    }

    /// Builds the stdio for a new process (step 1 of `create.rs`). Returns what the helper
    /// gets, what the monitor keeps, and the socket on which a pty master will arrive.
    fn make_stdio(
        &self,
        tty: bool,
        stdin: bool,
        null: bool,
        console: &std::path::Path,
    ) -> Result<(Stdio, Io, Option<UnixStream>), String> {
        if tty && !null {
            let _ = std::fs::remove_file(console);
            // Bound by relative name (the monitor's cwd is its directory); libcontainer is given
            // the absolute path and reaches it through a symlink of its own.
            let name = console.file_name().ok_or("console socket path has no name")?;
            let listener = UnixListener::bind(name).map_err(|e| format!("console socket: {e}"))?;
            let (mine, theirs) = UnixStream::pair().map_err(io_string)?;
            let stdio = Stdio::Tty { listener, path: console.to_path_buf(), send_to: theirs.into() };
            return Ok((stdio, Io::default(), Some(mine)));
        }
        let devnull = |w: bool| -> Result<OwnedFd, String> {
            std::fs::File::options().read(!w).write(w).open("/dev/null").map(OwnedFd::from).map_err(io_string)
        };
        if null {
            let stdio = Stdio::Pipes { stdin: devnull(false)?, stdout: devnull(true)?, stderr: devnull(true)? };
            return Ok((stdio, Io::default(), None));
        }
        let (out_r, out_w) = sys::pipe().map_err(io_string)?;
        let (err_r, err_w) = sys::pipe().map_err(io_string)?;
        let mut io = Io { out: Some(out_r), err: Some(err_r), ..Default::default() };
        let child_in = if stdin {
            let (in_r, in_w) = sys::pipe().map_err(io_string)?;
            sys::set_nonblocking(in_w.as_fd()).map_err(io_string)?;
            io.stdin = Some(in_w);
            in_r
        } else {
            devnull(false)?
        };
        for fd in [&io.out, &io.err].into_iter().flatten() {
            sys::set_nonblocking(fd.as_fd()).map_err(io_string)?;
        }
        Ok((Stdio::Pipes { stdin: child_in, stdout: out_w, stderr: err_w }, io, None))
    }

    /// Forks and execs `skiff-create` for a job; returns its pid and the read end of its
    /// result pipe.
    fn run_helper(&self, mut inv: Invocation, stdio: Stdio) -> Result<(i32, OwnedFd), String> {
        let (res_r, res_w) = sys::pipe().map_err(io_string)?;
        let (fds, console) = stdio.into_fds();
        inv.console = console;
        match sys::fork().map_err(io_string)? {
            Fork::Child => {
                drop(res_r);
                helper::exec(&self.helper_bin, &inv, res_w, fds)
            }
            Fork::Parent(pid) => Ok((pid, res_r)),
        }
    }

    /// Runs a helper (already given its job) to completion: reads its one-line result.
    fn await_helper(helper: i32, result: OwnedFd) -> Result<i32, String> {
        let mut msg = String::new();
        let _ = std::fs::File::from(result).read_to_string(&mut msg);
        let code = sys::wait_pid(helper);
        if let Some(pid) = msg.strip_prefix("ok ") {
            return pid.trim().parse().map_err(|_| format!("helper sent a bad pid {pid:?}"));
        }
        if let Some(e) = msg.strip_prefix("err ") {
            return Err(e.to_string());
        }
        Err(format!("container helper exited with {code} without a result"))
    }

    fn take_tty(io: &mut Io, sock: Option<UnixStream>) -> Result<(), String> {
        if let Some(s) = sock {
            let master = sys::recv_fd(s.as_fd()).map_err(|e| format!("receiving the pty master: {e}"))?;
            sys::set_nonblocking(master.as_fd()).map_err(io_string)?;
            io.stdin = Some(master.try_clone().map_err(io_string)?);
            io.out = Some(master.try_clone().map_err(io_string)?);
            io.tty = Some(master);
        }
        Ok(())
    }

    fn start(&mut self) -> Result<i32, String> {
        if self.status != Status::Created || self.failed {
            return Err("container was already started".into());
        }
        std::fs::create_dir_all(&self.cfg.state_root).map_err(io_string)?;
        let (stdio, mut io, tty_sock) =
            self.make_stdio(self.cfg.tty, self.cfg.open_stdin, false, &self.dir.console_socket())?;
        let inv = Invocation {
            id: self.cfg.id.clone(),
            state_root: self.cfg.state_root.clone(),
            job: Job::Start { bundle: self.cfg.bundle.clone(), loopback: self.cfg.loopback },
            size: self.cfg.console_size,
            console: None,
        };
        let (helper, res_r) = self.run_helper(inv, stdio)?;
        let pid = Self::await_helper(helper, res_r)?;
        let _ = std::fs::remove_file(self.dir.console_socket());
        if self.cfg.tty {
            Self::take_tty(&mut io, tty_sock)?;
            if !self.cfg.open_stdin {
                io.stdin = None;
            }
        }
        self.io = io;
        self.io.stdin_buf = std::mem::take(&mut self.early_stdin);
        if self.early_close {
            self.io.close_stdin();
        }
        flush_stdin(&mut self.io);
        self.pid = Some(pid);
        self.status = Status::Running;
        self.started_at = Some(timefmt::now());
        Ok(pid)
    }

    /// A start that failed: clean up what libcontainer may have left, and go away once the
    /// error has been delivered.
    /// Waiting for a `Start` that has not come (and not failed or shut down either).
    fn never_started(&self) -> bool {
        self.status == Status::Created && self.done_at.is_none() && self.pid.is_none()
    }

    fn fail_start(&mut self) {
        self.failed = true;
        let _ = self.layout.remove(&self.cfg.cgroup_path);
        let _ = fsutil::remove_all(&self.cfg.state_root.join(&self.cfg.id));
        self.done_at = Some(Instant::now());
    }

    fn exec(&mut self, client: u64, spec: ExecSpec) -> Result<i32, String> {
        if !matches!(self.status, Status::Running) {
            return Err(format!("container {} is not running", self.cfg.id));
        }
        if self.execs.contains_key(&spec.id) {
            return Err(format!("exec {} already ran", spec.id));
        }
        let proc_path = self.dir.exec_process(&spec.id);
        let bytes = serde_json::to_vec(&spec.process).map_err(|e| e.to_string())?;
        std::fs::write(&proc_path, bytes).map_err(io_string)?;
        let n = self.next;
        self.next += 1;
        let console = self.dir.path().join(format!("e{n}.sock"));
        let (stdio, mut io, tty_sock) = self.make_stdio(spec.tty, spec.stdin, spec.detach, &console)?;
        let inv = Invocation {
            id: self.cfg.id.clone(),
            state_root: self.cfg.state_root.clone(),
            job: Job::Exec { process: proc_path.clone() },
            size: spec.console_size,
            console: None,
        };
        let (helper, res_r) = self.run_helper(inv, stdio)?;
        let result = Self::await_helper(helper, res_r);
        let _ = std::fs::remove_file(&console);
        let _ = std::fs::remove_file(&proc_path);
        let pid = result?;
        if spec.tty && !spec.detach {
            Self::take_tty(&mut io, tty_sock)?;
            if !spec.stdin {
                io.stdin = None;
            }
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.role = Role::Exec(spec.id.clone());
        }
        self.exec_ids.insert(n, spec.id.clone());
        self.execs.insert(spec.id, Exec { pid, io, client: Some(client), reaped: None, exit: None });
        Ok(pid)
    }

    fn read_output(&mut self, stream: Stream) {
        let fd = match stream {
            Stream::Stdout => &mut self.io.out,
            Stream::Stderr => &mut self.io.err,
        };
        let Some(f) = fd.as_ref() else { return };
        let n = match rustix::io::read(f, &mut self.buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                *fd = None;
                if stream == Stream::Stdout {
                    self.io.tty = None;
                    if self.cfg.tty {
                        self.io.stdin = None;
                    }
                }
                return;
            }
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return,
            Err(_) => {
                *fd = None;
                return;
            }
        };
        let data = &self.buf[..n];
        if let Some(Err(e)) = self.log.as_mut().map(|log| log.write(stream, data, &timefmt::now())) {
            eprintln!("skiff-monitor: writing log: {e}");
        }
        let kind = if stream == Stream::Stdout { FrameKind::Stdout } else { FrameKind::Stderr };
        for c in self.clients.values_mut() {
            let wants = match &c.role {
                Role::Attach(s) => (stream == Stream::Stdout && s.stdout) || (stream == Stream::Stderr && s.stderr),
                _ => false,
            };
            if wants {
                protocol::encode(kind, data, &mut c.outbuf);
            }
        }
    }

    fn read_exec_output(&mut self, n: u64, stream: Stream) {
        let Some(id) = self.exec_ids.get(&n).cloned() else {
            return;
        };
        let Some(e) = self.execs.get_mut(&id) else {
            return;
        };
        let fd = match stream {
            Stream::Stdout => &mut e.io.out,
            Stream::Stderr => &mut e.io.err,
        };
        let Some(f) = fd.as_ref() else { return };
        let got = match rustix::io::read(f, &mut self.buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                *fd = None;
                if stream == Stream::Stdout {
                    e.io.tty = None;
                }
                return;
            }
            Ok(k) => k,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return,
            Err(_) => {
                *fd = None;
                return;
            }
        };
        let kind = if stream == Stream::Stdout { FrameKind::Stdout } else { FrameKind::Stderr };
        if let Some(c) = e.client.and_then(|cid| self.clients.get_mut(&cid)) {
            protocol::encode(kind, &self.buf[..got], &mut c.outbuf);
        }
    }

    fn on_sigchld(&mut self) {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        while let Some((pid, code)) = sys::reap() {
            if Some(pid) == self.pid && self.reaped.is_none() {
                self.reaped = Some((code, Instant::now()));
            } else if let Some(e) = self.execs.values_mut().find(|e| e.pid == pid && e.reaped.is_none()) {
                e.reaped = Some((code, Instant::now()));
            }
        }
    }

    fn check_exits(&mut self) {
        let now = Instant::now();
        let ids: Vec<String> = self.execs.keys().cloned().collect();
        for id in ids {
            let e = self.execs.get_mut(&id).expect("listed");
            let Some((code, at)) = e.reaped else { continue };
            if e.exit.is_some() || !(e.io.drained() || now.duration_since(at) > DRAIN) {
                continue;
            }
            e.exit = Some(code);
            e.io = Io::default();
            if let Some(c) = e.client.and_then(|cid| self.clients.get_mut(&cid)) {
                let status = ExitStatus { code, oom_killed: false, finished_at: timefmt::now() };
                c.send(&Response::Exited { status });
                c.close_after_flush = true;
            }
            self.exec_ids.retain(|_, v| *v != id);
        }
        let Some((code, at)) = self.reaped else {
            return;
        };
        if self.exit.is_some() || !(self.io.drained() || now.duration_since(at) > DRAIN) {
            return;
        }
        self.finish(code);
    }

    /// The container is gone and its output drained: record the exit durably, tell everyone,
    /// clean up its cgroups and libcontainer state.
    fn finish(&mut self, code: i32) {
        if let Some(log) = &mut self.log {
            let _ = log.flush_partial(&timefmt::now());
        }
        let status =
            ExitStatus { code, oom_killed: self.layout.oom_killed(&self.cfg.cgroup_path), finished_at: timefmt::now() };
        let bytes = serde_json::to_vec(&status).expect("exit status serializes");
        if let Err(e) = fsutil::atomic_write(&self.dir.exit_file(), &bytes) {
            eprintln!("skiff-monitor: writing exit file: {e}");
        }
        self.exit = Some(status.clone());
        self.status = Status::Exited;
        self.io = Io::default();
        for c in self.clients.values_mut() {
            if matches!(c.role, Role::Attach(_) | Role::Wait) {
                c.send(&Response::Exited { status: status.clone() });
                c.close_after_flush = true;
            }
        }
        // Every process of the container is gone with its pid namespace; the cgroups are empty.
        if let Err(e) = self.layout.remove(&self.cfg.cgroup_path) {
            eprintln!("skiff-monitor: removing cgroups: {e}");
        }
        let _ = fsutil::remove_all(&self.cfg.state_root.join(&self.cfg.id));
        self.done_at = Some(Instant::now());
    }
}

/// Writes as much buffered stdin as the pipe takes.
fn flush_stdin(io: &mut Io) {
    let Some(fd) = &io.stdin else {
        io.stdin_buf.clear();
        return;
    };
    while !io.stdin_buf.is_empty() {
        match rustix::io::write(fd, &io.stdin_buf) {
            Ok(n) => {
                io.stdin_buf.drain(..n);
            }
            Err(rustix::io::Errno::AGAIN) => return,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                io.stdin_buf.clear();
                io.stdin = None;
                return;
            }
        }
    }
    if io.close_stdin_when_drained {
        io.stdin = None;
        io.close_stdin_when_drained = false;
    }
}
