//! Crash safety: a daemon killed at any point restarts clean, with only what its records
//! describe; tasks, builds and requests end with their owner. Each test here was written against
//! a finding and failed before its fix.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use skiff_e2e::{Daemon, eventually, require_root};

fn alive(d: &Daemon) {
    let v = d.docker(&["version", "-f", "{{.Server.Os}}"]);
    assert_eq!(v.code, 0, "the daemon died: {}\n{}", v.stderr, d.log());
}

#[test]
fn bridges_deleted_under_the_daemon_come_back_with_their_containers() {
    require_root!();
    let mut d = Daemon::start();
    d.docker(&["network", "create", "--subnet", &d.net.subnet(2), "gone"]).ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "busybox",
        "sh",
        "-c",
        "echo up > /tmp/i && httpd -f -p 80 -h /tmp",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "peer", "--network", "gone", "busybox", "sleep", "600"]).ok();
    d.docker(&["run", "-d", "--name", "peer2", "--network", "gone", "busybox", "sleep", "600"]).ok();
    let fetch =
        || Command::new("curl").args(["-s", "-m", "3", &format!("http://127.0.0.1:{port}/i")]).output().unwrap().stdout;
    assert!(eventually(Duration::from_secs(10), || fetch() == b"up\n"));
    let user_bridge = format!("br-{}", &d.docker(&["network", "inspect", "-f", "{{.Id}}", "gone"]).ok()[..12]);
    // Both bridges deleted by hand while the daemon is down; containers keep running.
    d.stop();
    for b in [d.net.bridge(), user_bridge.clone()] {
        assert!(Command::new("ip").args(["link", "del", &b]).status().unwrap().success());
    }
    d.start_again();
    for b in [d.net.bridge(), user_bridge.clone()] {
        let ports = Command::new("ip").args(["-o", "link", "show", "master", &b]).output().unwrap();
        assert!(!String::from_utf8_lossy(&ports.stdout).trim().is_empty(), "{b} has no ports after the restart");
    }
    assert!(eventually(Duration::from_secs(10), || fetch() == b"up\n"), "the published port works again");
    let ping = d.docker(&["exec", "peer", "ping", "-c", "1", "-W", "2", "peer2"]);
    assert_eq!(ping.code, 0, "{} {}", ping.stdout, ping.stderr);
}

#[test]
fn a_failed_create_leaves_no_volume() {
    require_root!();
    let d = Daemon::start();
    for bad in [
        &["create", "-v", "/anon", "--log-opt", "bogus=1", "busybox"][..],
        &["create", "-v", "/anon", "--network", "no-such-net", "busybox"][..],
    ] {
        let r = d.docker(bad);
        assert_ne!(r.code, 0, "{bad:?} succeeded");
        assert_eq!(d.docker(&["volume", "ls", "-q"]).ok(), "", "{bad:?} left a volume");
    }
    // Through the API, past what the CLI checks: a port binding that only the daemon refuses,
    // after the image's and the request's anonymous volumes were made.
    let body = r#"{"Image":"busybox","Cmd":["true"],"Volumes":{"/anon":{}},
        "HostConfig":{"Binds":["/x"],"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"notaport"}]}}}"#;
    let (status, text) = d.http("POST", "/v1.41/containers/create", Some(body));
    assert_eq!(status, 400, "{text}");
    assert_eq!(d.docker(&["volume", "ls", "-q"]).ok(), "", "a refused create left a volume");
    assert_eq!(d.docker(&["ps", "-aq"]).ok(), "");
}

/// Spawns `docker build` and waits until its output shows the RUN step running.
fn build_until_running(d: &Daemon, ctx: &Path) -> std::process::Child {
    let mut child = Command::new(skiff_e2e::docker_cli())
        .args(["build", ctx.to_str().unwrap()])
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .env("DOCKER_BUILDKIT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Running in") {
        assert!(t0.elapsed() < Duration::from_secs(30), "the build did not start: {}", String::from_utf8_lossy(&seen));
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "build ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(out);
    child
}

#[test]
fn builds_end_with_their_client_and_with_the_daemon() {
    require_root!();
    let mut d = Daemon::start();
    let ctx = d.dir.join("ctx-slow");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 60\nRUN echo never\n").unwrap();
    // The client goes away: the step's container is killed and removed within seconds.
    let mut client = build_until_running(&d, &ctx);
    assert!(eventually(Duration::from_secs(10), || d.docker(&["ps", "-q"]).ok().lines().count() == 1));
    client.kill().unwrap();
    let _ = client.wait();
    assert!(
        eventually(Duration::from_secs(15), || d.docker(&["ps", "-aq"]).ok().is_empty()),
        "the build went on without its client: {}",
        d.docker(&["ps", "-a"]).stdout
    );
    // The daemon is killed during the step: at restart its container is gone.
    let mut client = build_until_running(&d, &ctx);
    d.crash_and_restart();
    let _ = client.kill();
    let _ = client.wait();
    assert!(eventually(Duration::from_secs(15), || d.docker(&["ps", "-aq"]).ok().is_empty()));
    let snaps: Vec<_> = std::fs::read_dir(d.data_root().join("image/snapshots")).unwrap().flatten().collect();
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
}

/// Every `skiff-monitor` process serving this daemon's exec root.
fn monitors(d: &Daemon) -> Vec<u32> {
    let run = d.dir.join("run/containers");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.ends_with("skiff-monitor"))
            && args.get(1).is_some_and(|a| a.starts_with(run.to_str().unwrap()))
        {
            out.push(pid);
        }
    }
    out
}

/// Mount points under the test directory.
fn mounts_below(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

/// What may exist on disk for the containers the daemon knows, and nothing else.
fn assert_nothing_unknown(d: &Daemon) {
    let ids: Vec<String> = d.docker(&["ps", "-aq", "--no-trunc"]).ok().lines().map(str::to_string).collect();
    let running: Vec<String> = d.docker(&["ps", "-q", "--no-trunc"]).ok().lines().map(str::to_string).collect();
    for sub in ["data/containers", "data/image/snapshots", "run/containers"] {
        if let Ok(rd) = std::fs::read_dir(d.dir.join(sub)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(ids.contains(&n), "{sub}/{n} belongs to no container");
            }
        }
    }
    let volumes: Vec<String> = d.docker(&["volume", "ls", "-q"]).ok().lines().map(str::to_string).collect();
    if let Ok(rd) = std::fs::read_dir(d.data_root().join("volumes")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(volumes.contains(&n), "volumes/{n} has no record");
        }
    }
    for m in mounts_below(&d.dir) {
        assert!(running.iter().any(|id| m.contains(id.as_str())), "mount {m} belongs to no running container");
    }
    // Published-port rules are exactly the running containers' ports.
    assert_eq!(dnat_ports(d), published_ports(d), "the firewall's DNAT rules differ from the records");
    // Every blob is what its name says.
    let blobs = d.data_root().join("image/content/blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(hex::encode(sha2::Sha256::digest(&data)), e.file_name().to_string_lossy(), "a corrupt blob");
    }
    assert!(
        d.docker(&["ps", "-aq", "--filter", "status=paused"]).ok().is_empty(),
        "a container stayed paused after an interrupted commit"
    );
}

/// Host ports with a DNAT rule in this daemon's chain.
fn dnat_ports(d: &Daemon) -> Vec<u16> {
    let chain = format!("-A {}-DNAT ", d.net.chain_prefix());
    let mut v: Vec<u16> = skiff_e2e::firewall_lines(&chain)
        .iter()
        .filter(|l| l.starts_with(&chain))
        .filter_map(|l| l.split("--dport ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Host ports the running containers publish, as their records say.
fn published_ports(d: &Daemon) -> Vec<u16> {
    let mut v = Vec::new();
    for id in d.docker(&["ps", "-q"]).ok().lines() {
        let ports = d
            .docker(&[
                "inspect",
                "-f",
                "{{range $p, $c := .NetworkSettings.Ports}}{{range $c}}{{.HostPort}} {{end}}{{end}}",
                id,
            ])
            .ok();
        v.extend(ports.split_whitespace().filter_map(|p| p.parse::<u16>().ok()));
    }
    v.sort_unstable();
    v
}

#[test]
fn published_port_rules_follow_the_records_across_a_crash() {
    require_root!();
    let mut d = Daemon::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    d.docker(&["run", "-d", "--name", "pub", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "600"]).ok();
    assert_eq!(dnat_ports(&d), vec![port]);
    d.crash_and_restart();
    assert_eq!(dnat_ports(&d), vec![port]);
    let runs: Vec<std::process::Child> = (0..30)
        .map(|i| {
            let mut args = vec!["run", "--rm", "busybox", "true"];
            if i % 3 == 0 {
                args = vec!["run", "--rm", "-p", "127.0.0.1::80", "busybox", "true"];
            }
            Command::new(skiff_e2e::docker_cli())
                .args(&args)
                .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in runs {
        let _ = c.wait();
    }
    assert_eq!(dnat_ports(&d), vec![port]);
    d.docker(&["rm", "-f", "pub"]).ok();
    assert!(dnat_ports(&d).is_empty(), "the rule outlived its container: {:?}", dnat_ports(&d));
}

#[test]
fn kill9_at_any_point_leaves_only_what_the_records_describe() {
    require_root!();
    let mut d = Daemon::start();
    let ctx = d.dir.join("ctx-crash");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo one > /one\nRUN sleep 0.2\nCOPY Dockerfile /\n")
        .unwrap();
    let docker = skiff_e2e::docker_cli();
    // A registry that outlives the kills, for push and pull to be interrupted against.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let reg_root = d.dir.join("registry");
    let _registry = KillOnDrop(
        Command::new(skiff_e2e::bin_dir().join("skiff"))
            .args(["registry", "serve", "--anonymous-push", "--addr", &format!("127.0.0.1:{port}"), "--root"])
            .arg(&reg_root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(eventually(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()));
    let repo = format!("127.0.0.1:{port}/crash/img");
    d.docker(&["tag", "busybox", &repo]).ok();
    d.docker(&["push", &repo]).ok();
    let t0 = Instant::now();
    let mut rounds = 0;
    while rounds < 10 && t0.elapsed() < Duration::from_secs(120) {
        rounds += 1;
        // Clients that keep operating (each loop ends when the daemon is gone); what a create
        // or run printed was acknowledged by the daemon.
        let loops = [
            "docker run -d -v /anon -p 127.0.0.1::80 busybox sleep 600".to_string(),
            "docker run --rm busybox true >/dev/null".to_string(),
            "docker create -v /anon2 busybox true".to_string(),
            format!("docker build -q --force-rm --no-cache {} >/dev/null", ctx.display()),
            "c=$(docker run -d busybox sh -c 'echo x > /x; sleep 600') && docker commit $c >/dev/null && docker exec $c true && docker rm -f $c >/dev/null".to_string(),
            "c=$(docker create busybox sleep 600) && docker start $c >/dev/null && docker stop -t 0 $c >/dev/null && docker rm $c >/dev/null".to_string(),
            // A new image each time (a RUN layer), pushed; then pulled back after removing it.
            format!("i=$(docker build -q --no-cache {}) && docker tag $i {repo}:b && docker push -q {repo}:b >/dev/null", ctx.display()),
            format!("docker rmi -f {repo}:b >/dev/null 2>&1; docker pull -q {repo}:b >/dev/null"),
        ];
        // The loops whose containers stay: what they printed must exist after the restart.
        let keeps = [0, 2];
        let children: Vec<std::process::Child> = loops
            .iter()
            .map(|l| {
                Command::new("sh")
                    .args(["-c", &format!("while :; do {l} || {{ docker version >/dev/null 2>&1 || break; }}; done")])
                    .env("PATH", format!("{}:{}", docker.parent().unwrap().display(), std::env::var("PATH").unwrap()))
                    .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
                    .env("DOCKER_CONFIG", d.dir.join("docker-config"))
                    .env("DOCKER_BUILDKIT", "0")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let delay = 300 + (rand_u64() % 1500);
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        let mut acked = Vec::new();
        for (n, c) in children.into_iter().enumerate() {
            let o = c.wait_with_output().unwrap();
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let id = line.trim();
                if keeps.contains(&n) && id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    acked.push(id.to_string());
                }
            }
        }
        d.start_again();
        for id in &acked {
            let i = d.docker(&["inspect", "-f", "{{.Id}}", id]);
            assert_eq!(i.code, 0, "round {rounds}: acknowledged container {id} is gone\n{}", i.stderr);
        }
        // Monitors: exactly the running containers' (a monitor never told to start goes).
        let ok = eventually(Duration::from_secs(12), || {
            let running = d.docker(&["ps", "-q"]).ok().lines().count();
            monitors(&d).len() == running
        });
        assert!(
            ok,
            "round {rounds} (killed after {delay} ms): {} monitors for {} running containers",
            monitors(&d).len(),
            d.docker(&["ps", "-q"]).ok().lines().count()
        );
        assert_nothing_unknown(&d);
        // Keep the rounds small: what runs now is stopped and removed.
        for id in d.docker(&["ps", "-aq"]).ok().lines() {
            d.docker(&["rm", "-f", "-v", id]).ok();
        }
    }
    assert!(rounds >= 4, "only {rounds} rounds ran");
    // Every image still runs; what was pushed last pulls and runs.
    for img in d.docker(&["images", "-q"]).ok().lines() {
        d.docker(&["run", "--rm", img, "true"]).ok();
    }
    d.docker(&["rmi", "-f", &format!("{repo}:b")]);
    if d.docker(&["pull", &format!("{repo}:b")]).code == 0 {
        d.docker(&["run", "--rm", &format!("{repo}:b"), "cat", "/one"]).ok();
    }
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Interactive execs and attaches leave nothing running in the daemon once they end: the task
/// holding their input side goes with the output side (it used to wait forever, one per
/// session, holding the monitor connection's write half).
#[test]
fn interactive_sessions_leave_no_tasks_behind() {
    require_root!();
    let d = Daemon::start();
    let c = d.docker(&["run", "-d", "-i", "busybox", "cat"]).ok();
    let tasks = || d.docker(&["info", "--format", "{{.NGoroutines}}"]).ok().parse::<i64>().unwrap();
    let out = d.docker_stdin(&["exec", "-i", &c, "cat"], b"warm\n");
    assert_eq!(out.stdout, "warm\n", "{}", out.stderr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = tasks();
    for i in 0..20 {
        let out = d.docker_stdin(&["exec", "-i", &c, "cat"], format!("line {i}\n").as_bytes());
        assert_eq!(out.stdout, format!("line {i}\n"), "{}", out.stderr);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = tasks();
    assert!(after < before + 10, "tasks grew from {before} to {after} over 20 interactive execs");
}

/// Replaces one container's stored record (the daemon must be stopped); returns the old bytes.
fn swap_record(d: &Daemon, id: &str, bytes: &[u8]) -> Vec<u8> {
    use redb::ReadableTable as _;
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("containers");
    let db = redb::Database::open(d.data_root().join("metadata.redb")).expect("open the metadata database");
    let txn = db.begin_write().unwrap();
    let old = {
        let mut t = txn.open_table(table).unwrap();
        let old = t.get(id).unwrap().expect("the container's record").value().to_vec();
        t.insert(id, bytes).unwrap();
        old
    };
    txn.commit().unwrap();
    old
}

#[test]
fn a_record_the_daemon_cannot_read_costs_only_that_container() {
    require_root!();
    let mut d = Daemon::start();
    let keep = d.docker(&["run", "-d", "--name", "keep", "busybox", "sleep", "600"]).ok();
    let odd = d.docker(&["run", "-d", "--name", "odd", "-v", "/data", "busybox", "sleep", "600"]).ok();
    d.docker(&["exec", "odd", "sh", "-c", "echo precious > /data/f && echo mine > /root-file"]).ok();
    let odd_pid = d.docker(&["inspect", "-f", "{{.State.Pid}}", "odd"]).ok();
    d.stop();
    // Damaged, then written by a newer daemon: either way, unreadable here.
    let original = swap_record(&d, &odd, b"{\"id\": \"half a rec");
    d.start_again();
    alive(&d);
    assert_eq!(d.docker(&["ps", "-q", "--no-trunc"]).ok(), keep, "the other container is managed as before");
    assert!(d.log().contains("container record left unread"), "the daemon says why:\n{}", d.log());
    assert!(Path::new(&format!("/proc/{odd_pid}")).exists(), "the unreadable container was left running");
    assert_eq!(d.docker(&["volume", "ls", "-q"]).ok().lines().count(), 1, "its volume is not collected");
    d.stop();
    let mut newer: serde_json::Value = serde_json::from_slice(&original).unwrap();
    newer["schema"] = 99.into();
    swap_record(&d, &odd, &serde_json::to_vec(&newer).unwrap());
    d.start_again();
    assert!(d.log().contains("written by a newer skiffd"), "{}", d.log());
    assert!(Path::new(&format!("/proc/{odd_pid}")).exists());
    // Once readable again (the newer daemon back, or the record repaired), all of it is there.
    d.stop();
    swap_record(&d, &odd, &original);
    d.start_again();
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Status}}", "odd"]).ok(), "running");
    assert_eq!(d.docker(&["exec", "odd", "cat", "/data/f", "/root-file"]).ok(), "precious\nmine");
    d.docker(&["rm", "-f", "-v", "odd", "keep"]).ok();
}

#[test]
fn a_request_in_flight_at_shutdown_completes_and_streams_end() {
    require_root!();
    let mut d = Daemon::start();
    // PID 1 ignores SIGTERM: the stop takes its whole timeout.
    d.docker(&["run", "-d", "--name", "slow", "busybox", "sleep", "600"]).ok();
    let client = |args: &[&str]| {
        Command::new(skiff_e2e::docker_cli())
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut events = client(&["events"]);
    let stop = client(&["stop", "-t", "2", "slow"]);
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.pid().expect("the daemon runs");
    let t0 = Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), rustix::process::Signal::TERM)
        .unwrap();
    let out = stop.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the stop in flight when the daemon was told to stop completed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The event stream ends with the daemon (it is not what keeps it up).
    assert!(eventually(Duration::from_secs(5), || events.try_wait().unwrap().is_some()), "docker events still open");
    assert!(t0.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t0.elapsed());
    d.stop();
    d.start_again();
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Status}}", "slow"]).ok(), "exited");
}

/// Whether a monitor process runs for the container `id` (its command line names its
/// directory, which holds the ID).
fn monitor_runs(id: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("skiff-monitor .*{id}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A client that hangs up while its container starts (here, after 1 to 40 ms) never leaves a
/// half-made start: the start runs to its end, so the container is recorded running with its
/// monitor, or was never started — never recorded `created` with a monitor running.
#[test]
fn a_start_whose_client_hangs_up_is_whole_or_not_at_all() {
    require_root!();
    let d = Daemon::start();
    let sock = d.socket.display().to_string();
    for ms in (1..=40).step_by(3) {
        let id = d.docker(&["create", "busybox", "sleep", "60"]).ok();
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--unix-socket", &sock, "-m", &format!("0.{ms:03}")])
            .args(["-X", "POST", &format!("http://d/containers/{id}/start")])
            .status();
        let settled = eventually(Duration::from_secs(5), || {
            let status = d.docker(&["inspect", "-f", "{{.State.Status}}", &id]).ok();
            match status.as_str() {
                "running" => monitor_runs(&id),
                "created" => !monitor_runs(&id),
                _ => false,
            }
        });
        let status = d.docker(&["inspect", "-f", "{{.State.Status}}", &id]).ok();
        assert!(settled, "after a hang-up at {ms} ms: recorded {status}, monitor running: {}", monitor_runs(&id));
        d.docker(&["rm", "-f", &id]).ok();
        assert!(eventually(Duration::from_secs(5), || !monitor_runs(&id)), "a monitor left after rm -f");
    }
    alive(&d);
}

/// A `docker start` sent the moment a `docker stop` returns gets a whole container: the stop
/// returns only once the exit's cleanup (networks, root filesystem) is done, so the cleanup
/// cannot take the new run's sandbox or root filesystem away. The daemon's own restart of
/// `--restart always` containers at boot follows the same path.
#[test]
fn a_start_right_after_a_stop_keeps_its_network_and_root_filesystem() {
    require_root!();
    let d = Daemon::start();
    let sock = d.socket.display().to_string();
    let id = d.docker(&["run", "-d", "busybox", "sleep", "600"]).ok();
    for round in 0..10 {
        // Both requests on one connection, the second sent as the first one's answer comes.
        let out = Command::new("curl")
            .args(["-s", "-f", "-o", "/dev/null", "--unix-socket", &sock, "-X", "POST"])
            .arg(format!("http://d/containers/{id}/stop?t=0"))
            .arg(format!("http://d/containers/{id}/start"))
            .status()
            .unwrap();
        assert!(out.success(), "round {round}: stop then start refused");
        // Whatever the old run's exit still had to do is done by now.
        std::thread::sleep(Duration::from_millis(300));
        let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id]).ok();
        assert!(!ip.is_empty(), "round {round}: the running container lost its address in the record");
        let inside = d.docker(&["exec", &id, "ip", "-4", "-o", "addr", "show", "eth0"]).ok();
        assert!(inside.contains(&format!("{ip}/")), "round {round}: eth0 is {inside:?}, the record says {ip}");
        let ls = d.docker(&["exec", &id, "ls", "/bin/busybox"]).ok();
        assert_eq!(ls, "/bin/busybox", "round {round}");
    }
    d.docker(&["rm", "-f", &id]).ok();
    alive(&d);
}

/// Daemon killed; at its next start the `--restart always` containers come back running with
/// their networks. Restarts wait for the networks' reconciliation, which releases every sandbox
/// whose container is not running — the one a restart is making included (seen in CI as a
/// container that never came back). Live restore off: the daemon stops what it finds running,
/// then restarts it; on: the containers' processes die while the daemon is away.
#[test]
fn restart_always_containers_come_back_whole_after_a_crash() {
    require_root!();
    for live_restore in [false, true] {
        come_back_whole(live_restore);
    }
}

fn come_back_whole(live_restore: bool) {
    let dir = skiff_e2e::unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("daemon.json");
    std::fs::write(&cfg, format!(r#"{{"live-restore": {live_restore}}}"#)).unwrap();
    let mut d = Daemon::start_with(&["--config-file", cfg.to_str().unwrap()]);
    d.docker(&["network", "create", "back"]).ok();
    let mut ids = Vec::new();
    for i in 0..6 {
        let net = if i % 2 == 0 { "bridge" } else { "back" };
        let args = ["run", "-d", "--restart", "always", "--stop-timeout", "1", "--network", net];
        ids.push(d.docker(&[&args[..], &["busybox", "sleep", "600"]].concat()).ok());
    }
    for round in 0..2 {
        let pids: Vec<String> = ids.iter().map(|id| d.docker(&["inspect", "-f", "{{.State.Pid}}", id]).ok()).collect();
        d.kill9();
        if live_restore {
            for pid in &pids {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        d.start_again();
        for id in &ids {
            let what = format!("live restore {live_restore}, round {round}: {id}");
            let up = eventually(Duration::from_secs(20), || {
                d.docker(&["inspect", "-f", "{{.State.Running}}", id]).ok() == "true"
            });
            assert!(up, "{what} did not come back");
            let ip = d.docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id]).ok();
            assert!(!ip.is_empty(), "{what} came back without an address in its record");
            let inside = d.docker(&["exec", id, "ip", "-4", "-o", "addr", "show", "eth0"]).ok();
            assert!(inside.contains(&format!("{ip}/")), "{what}: eth0 is {inside:?}, its record says {ip}");
        }
    }
    for id in &ids {
        d.docker(&["rm", "-f", id]).ok();
    }
    d.docker(&["network", "rm", "back"]).ok();
    alive(&d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `docker stop` whose client hangs up after the stop signal still stops the container once
/// the grace period is over, as dockerd's does (moby's TestStopContainerWithTimeoutCancel):
/// before, the stop went with its request and a container ignoring SIGTERM ran on.
#[test]
fn a_stop_whose_client_hangs_up_still_stops_the_container() {
    require_root!();
    let d = Daemon::start();
    let sock = d.socket.display().to_string();
    let id = d
        .docker(&["run", "-d", "busybox", "sh", "-c", "trap 'echo got TERM' TERM; while true; do sleep 0.1; done"])
        .ok();
    let _ = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--unix-socket", &sock, "-m", "0.5", "-X", "POST"])
        .arg(format!("http://d/containers/{id}/stop?t=2"))
        .status();
    assert!(eventually(Duration::from_secs(5), || d.docker(&["logs", &id]).ok().contains("got TERM")));
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", &id]).ok(), "true", "killed before its grace period");
    let stopped =
        eventually(Duration::from_secs(8), || d.docker(&["inspect", "-f", "{{.State.Running}}", &id]).ok() == "false");
    assert!(stopped, "the container ran on after its stop's client went");
    d.docker(&["rm", "-f", &id]).ok();
    alive(&d);
}
