//! The docker CLI against skiffd, as a user would drive it.

use std::time::Duration;

use skiff_e2e::{Daemon, eventually, require_root};

#[test]
fn run_echo_exit_codes_and_missing_command() {
    require_root!();
    let d = Daemon::start();
    let o = d.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\n"), "{o:?}");
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.code, 3);
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(o.code, 127, "{o:?}");
    assert!(o.stderr.contains("executable file not found"), "{o:?}");
    // --rm removed everything.
    assert_eq!(d.docker(&["ps", "-aq"]).ok(), "");
    let o = d.docker_stdin(&["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done"], b"piped\n");
    assert_eq!(o.stdout, "piped\ndone\n", "{o:?}");
}

#[test]
fn run_it_has_a_working_pty() {
    require_root!();
    let d = Daemon::start();
    let docker = skiff_e2e::docker_cli();
    let o = d.in_pty(&format!("{} run --rm -it busybox sh -c 'stty size; tty; exit 7'", docker.display()), 24, 80);
    assert_eq!(o.code, 7, "{o:?}");
    assert!(o.stdout.contains("24 80"), "{o:?}");
    assert!(o.stdout.contains("/dev/pts/"), "{o:?}");
}

#[test]
fn detached_logs_exec_stop_rm() {
    require_root!();
    let d = Daemon::start();
    let id = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "web1",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
        ])
        .ok();
    assert_eq!(id.len(), 64);
    assert!(eventually(Duration::from_secs(5), || d.docker(&["logs", "web1"]).stdout.contains("tick2")));
    // logs -f follows until the container stops.
    let follow = std::thread::spawn({
        let sock = d.socket.clone();
        let docker = skiff_e2e::docker_cli();
        move || {
            std::process::Command::new(docker)
                .args(["logs", "-f", "--tail", "1", "web1"])
                .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                .output()
                .unwrap()
        }
    });
    let o = d.docker(&["exec", "web1", "sh", "-c", "echo from-exec; hostname; exit 5"]);
    assert_eq!(o.code, 5);
    assert!(o.stdout.starts_with("from-exec\n"), "{o:?}");
    assert_eq!(o.stdout.lines().nth(1).unwrap(), &id[..12]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.docker(&["stop", "web1"]).ok(), "web1");
    let followed = follow.join().unwrap();
    let text = String::from_utf8_lossy(&followed.stdout);
    assert!(text.lines().count() >= 2, "logs -f printed {text:?}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web1"]).ok(), "exited 0");
    assert!(d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).ok().starts_with("web1 Exited (0)"));
    assert_eq!(d.docker(&["rm", "web1"]).ok(), "web1");
    let o = d.docker(&["inspect", "web1"]);
    assert_eq!(o.code, 1);
}

#[test]
fn memory_limit_and_oom_kill() {
    require_root!();
    let d = Daemon::start();
    let limit = d
        .docker(&[
            "run",
            "--rm",
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        ])
        .ok();
    assert_eq!(limit, (64 << 20).to_string());
    // `tail` keeps what it has read of a stream without newlines: as the container's main
    // process it grows until the OOM killer ends it.
    let o =
        d.docker(&["run", "--name", "hog", "--memory", "16m", "--memory-swap", "16m", "busybox", "tail", "/dev/zero"]);
    assert_eq!(o.code, 137, "{o:?}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]).ok(), "true 137");
}

#[test]
fn pids_limit_and_read_only() {
    require_root!();
    let d = Daemon::start();
    let o = d.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "8",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 20); do sleep 3 & done 2>&1; wait",
    ]);
    assert!(o.stdout.contains("can't fork") || o.stderr.contains("can't fork"), "{o:?}");
    assert_eq!(
        d.docker(&["run", "--rm", "--pids-limit", "8", "busybox", "cat", "/sys/fs/cgroup/pids/pids.max"]).ok(),
        "8"
    );
    let o = d.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{o:?}");
    assert_eq!(
        d.docker(&["run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c", "touch /tmp/x && echo ok"])
            .ok(),
        "ok"
    );
}

#[test]
fn named_volume_survives_rm() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["volume", "create", "keep"]).ok();
    d.docker(&["run", "--name", "writer", "-v", "keep:/data", "busybox", "sh", "-c", "echo persisted > /data/f"]).ok();
    d.docker(&["rm", "-v", "writer"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f"]).ok(), "persisted");
    assert!(d.docker(&["volume", "ls", "-q"]).ok().lines().any(|l| l == "keep"));
    let o = d.docker(&["volume", "rm", "keep"]);
    assert_eq!(o.ok(), "keep");
}

#[test]
fn cp_both_ways() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]).ok();
    let host = d.dir.join("host.txt");
    std::fs::write(&host, "from the host\n").unwrap();
    d.docker(&["cp", host.to_str().unwrap(), "box:/tmp/"]).ok();
    assert_eq!(d.docker(&["exec", "box", "cat", "/tmp/host.txt"]).ok(), "from the host");
    d.docker(&["exec", "box", "sh", "-c", "mkdir -p /srv/d/e && echo inner > /srv/d/e/f"]).ok();
    let back = d.dir.join("back");
    d.docker(&["cp", "box:/srv/d", back.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(back.join("e/f")).unwrap(), "inner\n");
    // And from a stopped container.
    d.docker(&["stop", "-t", "0", "box"]).ok();
    let back2 = d.dir.join("passwd");
    d.docker(&["cp", "box:/etc/passwd", back2.to_str().unwrap()]).ok();
    assert!(std::fs::read_to_string(&back2).unwrap().starts_with("root:"));
}

/// The names in a `GET /containers/{id}/archive?path=…` tar, as dockerd names them: a path
/// whose last element is `.` gives the directory's contents as `./…`; a trailing `/` follows a
/// symlink to a directory; the root is `/`. `docker cp CTR:DIR/. DEST` relies on the `./`
/// names to put the contents in DEST (before, a DEST that did not exist was never made).
#[test]
fn cp_of_a_directorys_contents_names_entries_as_dockerd() {
    require_root!();
    let d = Daemon::start();
    d.docker(&[
        "run",
        "--name",
        "tree",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /bar/quux && echo -n world > /bar/quux/baz && ln -s quux /bar/dirlink && ln -s / /bar/root",
    ])
    .ok();
    let names = |path: &str| -> Vec<String> {
        let q: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let (status, _, body) = d.http_raw("GET", &format!("/containers/tree/archive?path={q}"), "text/plain", b"");
        assert_eq!(status, 200, "{path}");
        let mut ar = tar::Archive::new(&body[..]);
        let mut out: Vec<String> =
            ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        out.sort();
        out
    };
    let contents = ["./", "./baz"];
    for p in ["/bar/quux/.", "bar/quux/.", "/bar/quux/./", "/bar/dirlink/."] {
        assert_eq!(names(p), contents, "{p}");
    }
    assert_eq!(names("/bar/quux"), ["quux/", "quux/baz"]);
    assert_eq!(names("/bar/dirlink"), ["dirlink"], "a symlink itself");
    assert_eq!(names("/bar/dirlink/"), ["dirlink/", "dirlink/baz"], "a trailing slash follows it");
    for p in [".", "./", "/.", "/./", "/bar/root/."] {
        let n = names(p);
        assert!(n.contains(&"./".to_string()) && n.contains(&"./bar/quux/baz".to_string()), "{p}: {n:?}");
    }
    let root = names("/");
    assert!(root.contains(&"/bar/quux/baz".to_string()), "{root:?}");
    // The CLI: contents into a new directory, and into an existing one.
    let fresh = d.dir.join("fresh");
    d.docker(&["cp", "tree:/bar/quux/.", fresh.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(fresh.join("baz")).unwrap(), "world");
    let existing = d.dir.join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    d.docker(&["cp", "tree:/bar/.", existing.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(existing.join("quux/baz")).unwrap(), "world");
    assert!(!existing.join("bar").exists(), "the contents, not the directory");
}

#[test]
fn stats_no_stream() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["run", "-d", "--name", "st", "--memory", "32m", "busybox", "sleep", "60"]).ok();
    let o = d.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "st"]).ok();
    let f: Vec<&str> = o.split_whitespace().collect();
    assert_eq!(f[0], "st", "{o}");
    assert_eq!(f[3], "32MiB", "{o}");
    assert_eq!(f[4], "1", "{o}");
    // Network counters of the container's interfaces: 100 kB of pings out and back.
    let gw = d.docker(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "st"]).ok();
    d.docker(&["exec", "st", "ping", "-c", "2", "-s", "50000", &gw]).ok();
    let net = d.docker(&["stats", "--no-stream", "--format", "{{.NetIO}}", "st"]).ok();
    let (rx, tx) = net.split_once(" / ").unwrap_or(("", ""));
    let kb = |x: &str| x.ends_with("kB") && x.trim_end_matches("kB").parse::<f64>().unwrap_or(0.0) >= 100.0;
    assert!(kb(rx) && kb(tx), "{net}");
}

#[test]
fn save_rmi_load_keeps_ids() {
    require_root!();
    let d = Daemon::start();
    let id = d.docker(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok();
    let archive = d.dir.join("bb.tar");
    d.docker(&["save", "-o", archive.to_str().unwrap(), "busybox"]).ok();
    d.docker(&["rmi", "busybox"]).ok();
    assert_eq!(d.docker(&["images", "-q"]).ok(), "");
    let o = d.docker(&["load", "-i", archive.to_str().unwrap()]).ok();
    assert!(o.contains("Loaded image: busybox:latest"), "{o}");
    assert_eq!(d.docker(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok(), id);
    assert_eq!(d.docker(&["run", "--rm", "busybox", "echo", "works"]).ok(), "works");
}

#[test]
fn daemon_crash_keeps_containers() {
    require_root!();
    let mut d = Daemon::start();
    for i in 0..5 {
        d.docker(&[
            "run",
            "-d",
            "--name",
            &format!("c{i}"),
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do echo up; sleep 0.2; done",
        ])
        .ok();
    }
    d.crash_and_restart();
    let running = d.docker(&["ps", "--format", "{{.Names}}"]).ok();
    for i in 0..5 {
        assert!(running.lines().any(|l| l == format!("c{i}")), "c{i} not running after restart: {running}");
    }
    assert_eq!(d.docker(&["exec", "c0", "echo", "alive"]).ok(), "alive");
    assert!(d.docker(&["logs", "--tail", "1", "c1"]).ok().contains("up"));
    // One exits while the daemon is down: the restarted daemon notices.
    let pid = d.docker(&["inspect", "-f", "{{.State.Pid}}", "c2"]).ok();
    d.crash_and_restart();
    assert_eq!(d.docker(&["stop", "c2"]).ok(), "c2");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Status}}", "c2"]).ok(), "exited");
    let _ = pid;
    d.docker(&["rm", "-f", "c0", "c1", "c3", "c4"]).ok();
}

#[test]
fn security_defaults_and_privileged() {
    require_root!();
    let d = Daemon::start();
    let o = d.docker(&["run", "--rm", "busybox", "mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_ne!(o.code, 0, "a default container mounted: {o:?}");
    let caps = d.docker(&["run", "--rm", "busybox", "sh", "-c", "grep CapEff /proc/self/status"]).ok();
    let mask = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(mask & (1 << 16), 0, "CAP_SYS_MODULE granted by default");
    assert_eq!(mask & (1 << 21), 0, "CAP_SYS_ADMIN granted by default");
    let o = d.docker(&["run", "--rm", "busybox", "insmod", "/bin/busybox"]);
    assert_ne!(o.code, 0, "{o:?}");
    let kcore = d.docker(&["run", "--rm", "busybox", "sh", "-c", "head -c 16 /proc/kcore | wc -c"]).ok();
    assert_eq!(kcore, "0");
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo 1 > /sys/kernel/profiling"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(d.docker(&["run", "--rm", "busybox", "grep", "Seccomp:", "/proc/self/status"]).ok().ends_with('2'));
    let o =
        d.docker(&["run", "--rm", "--privileged", "busybox", "sh", "-c", "mount -t tmpfs none /mnt && echo mounted"]);
    assert_eq!(o.ok(), "mounted");
    let o = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert!(o.ok().ends_with('0'));
}

#[test]
fn restart_policy_and_kill() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["run", "-d", "--name", "rp", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1"]).ok();
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rp"])
        .stdout
        .trim()
        == "2 exited"));
    d.docker(&["run", "-d", "--name", "kk", "busybox", "sleep", "60"]).ok();
    d.docker(&["kill", "kk"]).ok();
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.ExitCode}}", "kk"]).ok(), "137");
    let o = d.docker(&["kill", "kk"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{o:?}");
}

#[test]
fn pause_unpause_rename_top_diff_commit_export() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["run", "-d", "--name", "p1", "busybox", "sh", "-c", "echo changed > /etc/motd; sleep 60"]).ok();
    d.docker(&["pause", "p1"]).ok();
    assert!(d.docker(&["ps", "--format", "{{.Status}}"]).ok().contains("(Paused)"));
    d.docker(&["unpause", "p1"]).ok();
    d.docker(&["rename", "p1", "p2"]).ok();
    let top = d.docker(&["top", "p2"]).ok();
    assert!(top.contains("sleep 60"), "{top}");
    assert!(eventually(Duration::from_secs(5), || d.docker(&["diff", "p2"]).stdout.contains("A /etc/motd")));
    d.docker(&["commit", "p2", "committed:v1"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "--entrypoint", "cat", "committed:v1", "/etc/motd"]).ok(), "changed");
    let exp = d.dir.join("export.tar");
    d.docker(&["export", "-o", exp.to_str().unwrap(), "p2"]).ok();
    let mut ar = tar::Archive::new(std::fs::File::open(&exp).unwrap());
    assert!(ar.entries().unwrap().any(|e| e.unwrap().path().unwrap().to_string_lossy() == "etc/motd"));
}

#[test]
fn system_info_df_events_and_update() {
    require_root!();
    let d = Daemon::start();
    assert!(
        d.docker(&["info", "--format", "{{.Driver}}"]).ok().contains("overlay2")
            || d.docker(&["info", "--format", "{{.Driver}}"]).ok() == "vfs"
    );
    let v = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]).ok();
    assert!(v.starts_with("1.5"), "{v}");
    assert!(d.docker(&["system", "df"]).ok().contains("Images"));
    d.docker(&["run", "-d", "--name", "upd", "busybox", "sleep", "60"]).ok();
    d.docker(&["update", "--memory", "48m", "--memory-swap", "96m", "upd"]).ok();
    assert_eq!(
        d.docker(&["exec", "upd", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).ok(),
        (48 << 20).to_string()
    );
    // The CLI sends relative times as whole seconds: let the current second pass.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ev = d
        .docker(&["events", "--since", "1m", "--until", "0s", "--filter", "container=upd", "--format", "{{.Action}}"])
        .ok();
    assert!(ev.contains("create") && ev.contains("start") && ev.contains("update"), "{ev}");
}

#[test]
fn json_file_logs_rotate_with_max_size_and_max_file() {
    require_root!();
    let d = Daemon::start();
    // 400 lines of ~60 bytes of JSON each, 1 kB per file, 3 files: only the newest survive.
    let id = d
        .docker(&[
            "run",
            "-d",
            "--name",
            "chatty",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); done; sleep 1; echo last",
        ])
        .ok();
    // Follow across rotations: everything from the first line still there to "last".
    let follow = d.docker(&["logs", "-f", "chatty"]);
    assert_eq!(follow.code, 0, "{}", follow.stderr);
    assert!(follow.stdout.ends_with("last\n"), "{}", follow.stdout);
    let logs = d.docker(&["logs", "chatty"]).ok();
    assert!(!logs.contains("line0\n") && logs.contains("line399"), "old lines rotated away: {logs}");
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() < 60, "at most ~3 kB of log kept: {} lines", lines.len());
    // The kept lines are consecutive (nothing lost between files).
    let nums: Vec<u32> = lines.iter().filter_map(|l| l.strip_prefix("line")).map(|n| n.parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    assert_eq!(d.docker(&["logs", "--tail", "2", "chatty"]).ok(), "line399\nlast");
    let dir = d.data_root().join("containers").join(&id);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("-json.log"))
        .count();
    assert_eq!(files, 3, "the log and two rotated files");
    // Options checked as Docker checks them.
    let bad = d.docker(&["run", "--rm", "--log-opt", "max-file=0", "busybox", "true"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("max-file cannot be less than 1"), "{}", bad.stderr);
    let bad = d.docker(&["run", "--rm", "--log-opt", "max-size=big", "busybox", "true"]);
    assert!(bad.stderr.contains("invalid size"), "{}", bad.stderr);
    let bad = d.docker(&["run", "--rm", "--log-opt", "colour=red", "busybox", "true"]);
    assert!(bad.stderr.contains("unknown log opt 'colour'"), "{}", bad.stderr);
    d.docker(&["rm", "-f", "chatty"]).ok();
}

#[test]
fn log_attributes_and_details() {
    require_root!();
    let d = Daemon::start();
    d.docker(&[
        "run",
        "--name",
        "tagged",
        "--label",
        "team=web",
        "-e",
        "STAGE=dev",
        "--log-opt",
        "labels=team",
        "--log-opt",
        "env=STAGE",
        "--log-opt",
        "tag={{.Name}}/{{.ImageName}}",
        "busybox",
        "echo",
        "hello",
    ])
    .ok();
    assert_eq!(d.docker(&["logs", "tagged"]).ok(), "hello");
    // As dockerd prints them: query-escaped, by key, then a space.
    assert_eq!(d.docker(&["logs", "--details", "tagged"]).ok(), "STAGE=dev,tag=tagged%2Fbusybox,team=web hello");
    let bad = d.docker(&["run", "--rm", "--log-opt", "tag={{.Secret}}", "busybox", "true"]);
    assert!(bad.stderr.contains("can't evaluate"), "{}", bad.stderr);
    d.docker(&["rm", "tagged"]).ok();
}

#[test]
fn processes_start_with_default_signal_dispositions() {
    require_root!();
    let d = Daemon::start();
    // Nothing ignored or blocked, in the container's first process and in an exec'd one: an
    // inherited SIGPIPE-ignore (Rust programs start with it) made `yes | head` spin forever.
    let status = d.docker(&["run", "--rm", "busybox", "grep", "-E", "SigIgn|SigBlk", "/proc/self/status"]).ok();
    assert_eq!(status, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000", "{status}");
    let o = d.docker(&["run", "--rm", "busybox", "timeout", "10", "sh", "-c", "yes | head -n 2; echo done"]).ok();
    assert_eq!(o, "y\ny\ndone");
    d.docker(&["run", "-d", "--name", "sig", "busybox", "sleep", "30"]).ok();
    assert_eq!(d.docker(&["exec", "sig", "grep", "SigIgn", "/proc/self/status"]).ok(), "SigIgn:\t0000000000000000");
    d.docker(&["rm", "-f", "sig"]).ok();
}

/// As with dockerd, `docker rm -f` and `docker kill` act at once while a `docker stop` waits out
/// its grace period (here 30 s: `sleep` as the container's PID 1 ignores SIGTERM), and that stop
/// then returns as the container exits.
#[test]
fn a_forced_removal_or_a_kill_does_not_wait_out_a_stop() {
    require_root!();
    let d = Daemon::start();
    for how in ["rm", "kill"] {
        let id = d.docker(&["run", "-d", "busybox", "sleep", "600"]).ok();
        std::thread::scope(|s| {
            let stop = s.spawn(|| {
                let t0 = std::time::Instant::now();
                let o = d.docker(&["stop", "-t", "30", &id]);
                (o, t0.elapsed())
            });
            std::thread::sleep(Duration::from_millis(700));
            let t0 = std::time::Instant::now();
            match how {
                "rm" => d.docker(&["rm", "-f", &id]).ok(),
                _ => d.docker(&["kill", &id]).ok(),
            };
            assert!(t0.elapsed() < Duration::from_secs(5), "{how} waited {:?} for the stop", t0.elapsed());
            let (o, took) = stop.join().unwrap();
            assert!(took < Duration::from_secs(10), "the stop went on for {took:?} after the {how}: {o:?}");
        });
        let _ = d.docker(&["rm", "-f", &id]);
    }
}
