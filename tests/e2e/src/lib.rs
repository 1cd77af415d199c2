//! Test harness for end-to-end tests: a private `skiffd` (its own socket, data and exec roots
//! under a unique /tmp directory), a busybox image imported from Debian's busybox-static, and
//! helpers that run the real `docker` CLI and `skiff` against it.
//!
//! Everything a test made is torn down when its [`Daemon`] drops, even after a failed
//! assertion: containers are removed, monitors and container processes killed, mounts under
//! the test directory unmounted, cgroups removed, the directory deleted.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether we can run these tests (root is needed for namespaces, mounts, cgroups).
pub mod rig;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (returns early from) a test when not root, with a message.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipping: end-to-end tests need root");
            return;
        }
    };
}

/// Where the skiff binaries are: `$SKIFF_BIN_DIR`, else the workspace's release or debug dir.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SKIFF_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    for profile in ["release", "debug"] {
        let d = target.join(profile);
        if d.join("skiffd").exists() && d.join("skiff-monitor").exists() {
            return d;
        }
    }
    panic!("skiffd not built: run `cargo build --release` first (or set SKIFF_BIN_DIR)");
}

/// The docker CLI to drive the daemon with (`$DOCKER_CLI`, else the first `docker` on PATH).
pub fn docker_cli() -> PathBuf {
    if let Ok(d) = std::env::var("DOCKER_CLI") {
        return PathBuf::from(d);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("docker");
        if p.exists() {
            return p;
        }
    }
    panic!("no docker CLI on PATH (install Debian's docker.io, or set DOCKER_CLI)");
}

/// The result of a command.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts success and returns trimmed stdout.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "command failed: stdout={:?} stderr={:?}", self.stdout, self.stderr);
        self.stdout.trim().to_string()
    }
}

/// A private daemon for one test.
pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    bins: PathBuf,
    extra: Vec<String>,
    /// This daemon's network slot (see [`NetSlot`]).
    pub net: NetSlot,
    /// User networks' bridges seen, removed at teardown if the daemon left them.
    bridges: Vec<String>,
    /// The network namespace the daemon runs in (a [`rig::Rig`]'s), if not the host's.
    netns: Option<String>,
}

/// A slot of test networking that no other test daemon uses at the same time: its own
/// default bridge `sktb<N>` with 10.213.N.0/24, its own pool 10.214.N.0/24 (/28s) for user
/// networks, and 10.215.N.0/24 for subnets a test picks. Reserved by a lock file holding the
/// owner's pid (a stale one from a dead test run is taken over).
#[derive(Debug)]
pub struct NetSlot {
    pub n: u8,
    lock: PathBuf,
}

impl NetSlot {
    pub(crate) fn reserve() -> NetSlot {
        // Tests of one binary run in threads: one reservation at a time in this process; the
        // lock files (created whole, by a hard link) keep other processes out.
        static RESERVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = RESERVING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = Path::new("/tmp/skiff-e2e-slots");
        std::fs::create_dir_all(dir).expect("slot dir");
        let me = std::process::id();
        let tmp = dir.join(format!(".tmp-{me}-{:?}", std::thread::current().id()));
        std::fs::write(&tmp, me.to_string()).expect("slot temp file");
        for n in 1..=250u8 {
            let lock = dir.join(n.to_string());
            let mut taken = std::fs::hard_link(&tmp, &lock).is_ok();
            if !taken {
                let pid = std::fs::read_to_string(&lock).ok().and_then(|p| p.trim().parse::<u32>().ok());
                let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                if !alive && std::fs::remove_file(&lock).is_ok() {
                    taken = std::fs::hard_link(&tmp, &lock).is_ok();
                }
            }
            if taken {
                let _ = std::fs::remove_file(&tmp);
                let slot = NetSlot { n, lock };
                // Leftovers of a test that died in this slot.
                slot.scrub();
                return slot;
            }
        }
        let _ = std::fs::remove_file(&tmp);
        panic!("no free network slot for a test daemon");
    }

    pub fn bridge(&self) -> String {
        format!("sktb{}", self.n)
    }

    pub fn bip(&self) -> String {
        format!("10.213.{}.1/24", self.n)
    }

    /// A subnet for `network create --subnet` (k < 8): 10.215.N.(32k)/27.
    pub fn subnet(&self, k: u8) -> String {
        format!("10.215.{}.{}/27", self.n, k * 32)
    }

    /// The daemon's firewall chain prefix (as skiffd derives it from the bridge name).
    pub fn chain_prefix(&self) -> String {
        format!("SKIFF-{}", self.bridge().to_ascii_uppercase())
    }

    /// Removes the slot's bridge and firewall chains if present.
    fn scrub(&self) {
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).stderr(Stdio::null()).status();
        remove_chains(&self.chain_prefix());
    }
}

impl Drop for NetSlot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Deletes a daemon's firewall chains and the jumps to them (test cleanup).
pub fn remove_chains(prefix: &str) {
    let ipt = |args: &[&str]| {
        Command::new("iptables")
            .arg("-w")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let dnat = format!("{prefix}-DNAT");
    let post = format!("{prefix}-POST");
    let fwd = format!("{prefix}-FWD");
    let local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", dnat.as_str()];
    for chain in ["PREROUTING", "OUTPUT"] {
        let mut a = vec!["-t", "nat", "-D", chain];
        a.extend(local);
        while ipt(&a) {}
    }
    while ipt(&["-t", "nat", "-D", "POSTROUTING", "-j", &post]) {}
    while ipt(&["-t", "filter", "-D", "FORWARD", "-j", &fwd]) {}
    for (t, c) in [("nat", &dnat), ("nat", &post), ("filter", &fwd)] {
        if ipt(&["-t", t, "-F", c]) {
            ipt(&["-t", t, "-X", c]);
        }
    }
}

/// Every line of `iptables-save` (both tables) that mentions `needle`.
pub fn firewall_lines(needle: &str) -> Vec<String> {
    let out = Command::new("iptables-save").output().expect("iptables-save");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// `ip -o link` / `ip -o addr` / `ip route` lines that mention `needle`.
pub fn ip_lines(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for args in [&["-o", "link"][..], &["-o", "-4", "addr"][..], &["route"][..]] {
        let out = Command::new("ip").args(args).output().expect("ip");
        v.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string));
    }
    v
}

pub fn unique_dir() -> PathBuf {
    // Short: unix socket paths under it must fit in 108 bytes.
    let n: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let p = PathBuf::from(format!("/tmp/ske{:x}{:x}", std::process::id(), n & 0xffffff));
    std::fs::create_dir_all(&p).expect("create test dir");
    p
}

impl Daemon {
    /// Starts a daemon and imports the busybox image as `busybox`.
    pub fn start() -> Daemon {
        let mut d = Daemon::start_bare();
        d.import_busybox("busybox");
        d
    }

    /// Starts a daemon with extra flags, and imports busybox.
    pub fn start_with(extra: &[&str]) -> Daemon {
        let mut d = Daemon::bare(extra);
        d.import_busybox("busybox");
        d
    }

    /// Starts a daemon with no images.
    pub fn start_bare() -> Daemon {
        Daemon::bare(&[])
    }

    /// Starts a daemon with extra flags and no images.
    pub fn start_bare_with(extra: &[&str]) -> Daemon {
        Daemon::bare(extra)
    }

    fn bare(extra: &[&str]) -> Daemon {
        Daemon::bare_in(extra, None, true)
    }

    fn bare_in(extra: &[&str], netns: Option<&str>, bip: bool) -> Daemon {
        let dir = unique_dir();
        let bins = bin_dir();
        let net = NetSlot::reserve();
        let mut args: Vec<String> = vec!["-b".into(), net.bridge()];
        if bip {
            args.extend(["--bip".into(), net.bip()]);
        }
        args.extend([
            "--default-address-pool".into(),
            format!("base=10.214.{}.0/24,size=28", net.n),
            // Names no container test resolves may go anywhere but the host's loopback.
            "--dns".into(),
            "127.0.0.1".into(),
        ]);
        // The host's /etc/skiff/daemon.json is none of a test's business.
        if !extra.contains(&"--config-file") {
            std::fs::create_dir_all(&dir).expect("test dir");
            std::fs::write(dir.join("daemon.json"), "{}").expect("daemon.json");
            args.push("--config-file".into());
            args.push(dir.join("daemon.json").display().to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            socket: dir.join("s.sock"),
            dir,
            child: None,
            bins,
            extra: args,
            net,
            bridges: Vec::new(),
            netns: netns.map(str::to_string),
        };
        d.spawn();
        d
    }

    /// Starts a daemon with no images inside the network namespace `netns` (entered with
    /// `nsenter --net`, which keeps the host's /sys and cgroups in view).
    pub fn start_in_netns(netns: &str, extra: &[&str]) -> Daemon {
        Daemon::bare_in(extra, Some(netns), true)
    }

    /// As [`Daemon::start_in_netns`], without `--bip`: the default bridge's subnet is the
    /// daemon's choice (from the test's address pool).
    pub fn start_in_netns_choosing_bip(netns: &str, extra: &[&str]) -> Daemon {
        Daemon::bare_in(extra, Some(netns), false)
    }

    fn spawn(&mut self) {
        let log =
            std::fs::File::options().create(true).append(true).open(self.dir.join("daemon.log")).expect("log file");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(self.bins.join("skiffd"));
                c
            }
            None => Command::new(self.bins.join("skiffd")),
        };
        let child = cmd
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("--log-level")
            .arg("debug")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiffd");
        self.child = Some(child);
        // Up means answering: the socket is bound before the daemon has re-adopted its
        // containers and reconciled networking, and serves only after that.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(mut c) = std::os::unix::net::UnixStream::connect(&self.socket) {
                use std::io::Read;
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                let mut resp = [0u8; 12];
                if c.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").is_ok()
                    && c.read_exact(&mut resp).is_ok()
                    && resp.starts_with(b"HTTP/1.1 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("skiffd did not come up; log:\n{}", self.log());
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon as a service manager would (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the daemon as a service manager would and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.socket);
        self.spawn();
    }

    /// The daemon's process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the daemon with SIGKILL and waits for it (then [`Daemon::start_again`]).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the daemon again after [`Daemon::kill9`].
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Kills the daemon with SIGKILL (containers keep running) and starts it again.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
        self.spawn();
    }

    fn cli(&self, bin: &Path, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        if let Some(data) = stdin {
            let mut s = child.stdin.take().expect("stdin");
            s.write_all(data).expect("write stdin");
        }
        Out::from(child.wait_with_output().expect("wait"))
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Out {
        self.cli(&docker_cli(), args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.cli(&docker_cli(), args, Some(stdin))
    }

    /// Runs the skiff CLI against this daemon.
    pub fn skiff(&self, args: &[&str]) -> Out {
        self.cli(&self.bins.join("skiff"), args, None)
    }

    pub fn skiff_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.cli(&self.bins.join("skiff"), args, Some(stdin))
    }

    /// Runs a command line under a pseudo-terminal (`script`), with the given window size.
    pub fn in_pty(&self, cmdline: &str, rows: u16, cols: u16) -> Out {
        let full = format!("stty rows {rows} cols {cols}; {cmdline}");
        let o = Command::new("script")
            .args(["-qec", &full, "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("script (bsdutils) is needed for tty tests");
        Out::from(o)
    }

    /// Raw HTTP over the daemon's socket: (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).expect("read");
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        // Chunked bodies: good enough to strip the size lines for small JSON answers.
        let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body.lines()
                .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()) || l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            body
        };
        (status, body)
    }

    /// Raw HTTP with a binary body and content type: (status, headers, body); a chunked
    /// body is de-chunked.
    pub fn http_raw(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).expect("send");
        // A daemon may answer (an early 4xx) and close before it has read the whole body, as
        // dockerd may: what it answered is what the caller checks.
        let _ = s.write_all(body);
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).expect("read");
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
        let headers = String::from_utf8_lossy(&resp[..split]).into_owned();
        let status = headers.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut body = resp[split..].to_vec();
        if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            let mut out = Vec::new();
            let mut i = 0;
            while let Some(j) = body[i..].windows(2).position(|w| w == b"\r\n") {
                let n = usize::from_str_radix(String::from_utf8_lossy(&body[i..i + j]).trim(), 16).unwrap_or(0);
                i += j + 2;
                if n == 0 || i + n > body.len() {
                    break;
                }
                out.extend_from_slice(&body[i..i + n]);
                i += n + 2;
            }
            body = out;
        }
        (status, headers, body)
    }

    /// Imports a busybox rootfs (Debian's busybox-static) as `name`.
    pub fn import_busybox(&mut self, name: &str) {
        let tar = busybox_tar(&self.dir);
        let out = self.docker(&["import", tar.to_str().unwrap(), name]);
        out.ok();
    }

    /// The data root (for checks of on-disk state).
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn teardown(&mut self) {
        // Remove containers and networks through the daemon if it is up.
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq", "--no-trunc"]).stdout;
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", "-v", id]);
            }
            let nets = self.docker(&["network", "ls", "-q", "--no-trunc", "--filter", "type=custom"]).stdout;
            for id in nets.split_whitespace() {
                self.bridges.push(format!("br-{}", &id[..12.min(id.len())]));
                let _ = self.docker(&["network", "rm", id]);
            }
        }
        self.stop();
        // Anything left: monitors and container processes (by cgroup), mounts, cgroups.
        let run = self.dir.join("run/containers");
        let mut ids = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&run) {
            for e in rd.flatten() {
                ids.push(e.file_name().to_string_lossy().into_owned());
                if let Ok(pid) = std::fs::read_to_string(e.path().join("monitor.pid"))
                    && let Ok(p) = pid.trim().parse::<i32>()
                    && let Some(pid) = rustix::process::Pid::from_raw(p)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        for id in &ids {
            for sub in
                ["pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""]
            {
                let cg = Path::new("/sys/fs/cgroup").join(sub).join("skiff").join(id);
                if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                    for p in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                        if let Some(pid) = rustix::process::Pid::from_raw(p) {
                            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                    }
                }
            }
        }
        // A monitor whose pid file was not written yet (a task container made while the daemon
        // stopped) is found by its command line, which names this daemon's directory; its
        // container's processes go with it.
        kill_processes_naming(&self.dir);
        std::thread::sleep(Duration::from_millis(50));
        for id in &ids {
            for sub in
                ["pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""]
            {
                let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(sub).join("skiff").join(id));
            }
        }
        unmount_below(&self.dir);
        for b in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", b]).stderr(Stdio::null()).status();
        }
        self.net.scrub();
        // Descriptor-relative: a test may leave trees deeper than std's removal can walk.
        let _ = skiff_common::tree::remove_all(&self.dir);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- skiffd log ({}) ---\n{}", self.dir.display(), tail(&self.log(), 60));
        }
        self.teardown();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills every process whose command line names `dir`, and their descendants.
fn kill_processes_naming(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let mut parents: HashMap<i32, i32> = HashMap::new();
    let mut roots = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
            && let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
        {
            parents.insert(pid, ppid);
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle.as_str()) {
            roots.push(pid);
        }
    }
    let mut doomed: Vec<i32> = roots.clone();
    let mut i = 0;
    while i < doomed.len() {
        let p = doomed[i];
        doomed.extend(parents.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    for p in doomed {
        if let Some(pid) = rustix::process::Pid::from_raw(p) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Unmounts every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> =
        info.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).filter(|p| p.starts_with(dir)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Builds a busybox rootfs tar from the host's static busybox, with applet links.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox.tar");
    if out.exists() {
        return out;
    }
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is needed");
    let list = Command::new(&bb).arg("--list").output().expect("busybox --list");
    let mut b = tar::Builder::new(Vec::new());
    let dir_entry = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for (d, m) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("root/", 0o700),
        ("tmp/", 0o1777),
        ("proc/", 0o755),
        ("sys/", 0o755),
        ("dev/", 0o755),
        ("var/", 0o755),
        ("var/www/", 0o755),
        ("mnt/", 0o755),
    ] {
        dir_entry(&mut b, d, m);
    }
    let data = std::fs::read(&bb).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "bin/busybox", &data[..]).unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    for (name, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    std::fs::write(&out, b.into_inner().unwrap()).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    out
}

/// Polls `f` until it returns true or the timeout passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A rootfs tar: busybox plus `tool` (a host binary, at `/usr/local/bin/<its name>`) and the
/// shared libraries it needs (from `ldd`), at their host paths.
pub fn busybox_with_tool_tar(dir: &Path, tool: &Path) -> PathBuf {
    let name = tool.file_name().expect("tool has a name").to_string_lossy().into_owned();
    let out = dir.join(format!("busybox+{name}.tar"));
    let base = std::fs::read(busybox_tar(dir)).expect("busybox tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&base[..]);
    for e in ar.entries().expect("busybox tar entries") {
        let mut e = e.expect("entry");
        let mut h = e.header().clone();
        let path = e.path().expect("path").into_owned();
        if h.entry_type() == tar::EntryType::Symlink {
            let target = e.link_name().expect("link").expect("target").into_owned();
            b.append_link(&mut h, &path, &target).expect("append link");
        } else {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("read entry");
            b.append_data(&mut h, &path, &data[..]).expect("append");
        }
    }
    let mut files = vec![(PathBuf::from("usr/local/bin").join(&name), tool.to_path_buf())];
    let ldd = Command::new("ldd").arg(tool).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = match line.split("=>").nth(1) {
            Some(rest) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            files.push((PathBuf::from(lib.trim_start_matches('/')), PathBuf::from(lib)));
        }
    }
    for (inside, host) in files {
        let data = std::fs::read(&host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()));
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, &inside, &data[..]).expect("append tool");
    }
    std::fs::write(&out, b.into_inner().expect("tar")).expect("write tool tar");
    out
}

/// A tar of the given files (names written into the header as given, `..` included, as Go's
/// tar writer lets a client write them): build contexts, root filesystems to import.
pub fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, text.as_bytes()).expect("a tar in memory");
    }
    b.into_inner().expect("a tar in memory")
}
