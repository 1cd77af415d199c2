//! `docker run` flags beyond the basics, checked from inside the container.

use std::process::Command;
use std::time::Duration;

use skiff_e2e::{Daemon, eventually, require_root};

#[test]
fn env_workdir_user_entrypoint_hostname_labels() {
    require_root!();
    let d = Daemon::start();
    let env_file = d.dir.join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let o = d
        .docker(&[
            "run",
            "--rm",
            "-e",
            "A=1",
            "--env-file",
            env_file.to_str().unwrap(),
            "-w",
            "/var/lib/new",
            "-u",
            "nobody",
            "--hostname",
            "box.example",
            "--entrypoint",
            "sh",
            "busybox",
            "-c",
            "echo $A $FROM_FILE; pwd; id -u; hostname",
        ])
        .ok();
    assert_eq!(o, "1 yes\n/var/lib/new\n65534\nbox.example");
    d.docker(&["run", "-d", "--name", "lab", "-l", "tier=web", "busybox", "sleep", "30"]).ok();
    assert_eq!(d.docker(&["ps", "--filter", "label=tier=web", "--format", "{{.Names}}"]).ok(), "lab");
    assert_eq!(d.docker(&["inspect", "-f", "{{index .Config.Labels \"tier\"}}", "lab"]).ok(), "web");
}

#[test]
fn mounts_tmpfs_and_ulimits() {
    require_root!();
    let d = Daemon::start();
    let host = d.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "bound\n").unwrap();
    let spec = format!("type=bind,source={},target=/b,readonly", host.display());
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        &spec,
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        "cat /b/in.txt; touch /b/x 2>&1 | grep -c Read-only; df -k /scratch | tail -1 | awk '{print $2}'",
    ]);
    assert_eq!(o.ok(), "bound\n1\n1024");
    let o = d.docker(&["run", "--rm", "--ulimit", "nofile=1024:2048", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(o.ok(), "1024\n2048");
    // Above the daemon's own hard limit (it cannot raise it): a clear error.
    let o = d.docker(&["run", "--rm", "--ulimit", "nofile=1048576:1048576", "busybox", "true"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nofile") && o.stderr.contains("hard limit"), "{o:?}");
    // An image volume gets an anonymous volume with the image's content, removed with rm -v.
    let vols_before = d.docker(&["volume", "ls", "-q"]).ok();
    d.docker(&["run", "--name", "anon", "-v", "/etc", "busybox", "ls", "/etc/passwd"]).ok();
    let vols = d.docker(&["volume", "ls", "-q"]).ok();
    assert_ne!(vols, vols_before);
    d.docker(&["rm", "-v", "anon"]).ok();
    assert_eq!(d.docker(&["volume", "ls", "-q"]).ok(), vols_before);
}

#[test]
fn capabilities_and_no_new_privileges() {
    require_root!();
    let d = Daemon::start();
    let eff = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "sh", "-c", "grep CapEff /proc/self/status"]);
        let out = d.docker(&a).ok();
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let default = eff(&[]);
    assert_eq!(default, 0xa80425fb, "Docker's default set");
    assert_ne!(eff(&["--cap-add", "NET_ADMIN"]) & (1 << 12), 0);
    assert_eq!(eff(&["--cap-drop", "CHOWN"]) & 1, 0);
    assert_eq!(eff(&["--cap-drop", "ALL"]), 0);
    let nnp = d
        .docker(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ])
        .ok();
    assert!(nnp.ends_with('1'), "{nnp}");
    let nnp = d.docker(&["run", "--rm", "busybox", "grep", "NoNewPrivs", "/proc/self/status"]).ok();
    assert!(nnp.ends_with('0'), "{nnp}");
}

#[test]
fn exec_options_attach_and_init() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["run", "-d", "--name", "ex", "-i", "busybox", "sh", "-c", "while read l; do echo got:$l; done"]).ok();
    let o =
        d.docker(&["exec", "-u", "nobody", "-w", "/tmp", "-e", "X=y", "ex", "sh", "-c", "id -u; pwd; echo $X"]).ok();
    assert_eq!(o, "65534\n/tmp\ny");
    d.docker(&["exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d"]).ok();
    assert!(eventually(Duration::from_secs(3), || d.docker(&["exec", "ex", "cat", "/tmp/d"]).stdout == "detached\n"));
    let o = d.docker_stdin(&["exec", "-i", "ex", "cat"], b"via exec stdin\n").ok();
    assert_eq!(o, "via exec stdin");
    let o = d.docker(&["exec", "ex", "nonexistent"]);
    assert_eq!(o.code, 126, "{o:?}");
    assert!(o.stdout.contains("executable file not found"), "{o:?}");
    // --init: tini is PID 1 and reaps.
    if std::path::Path::new("/usr/bin/tini-static").exists() {
        let o = d.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]).ok();
        assert!(o.starts_with("/sbin/docker-init --"), "{o}");
    }
}

#[test]
fn logs_options_and_healthcheck() {
    require_root!();
    let d = Daemon::start();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; done; sleep 60",
    ])
    .ok();
    assert!(eventually(Duration::from_secs(5), || d.docker(&["logs", "lg"]).stdout.contains("line5")));
    // --tail counts entries of both streams together, as Docker does.
    // --tail counts the entries of both streams together, as Docker does.
    let o = d.docker(&["logs", "--tail", "2", "lg"]);
    assert_eq!(o.stdout.lines().count() + o.stderr.lines().count(), 2, "{o:?}");
    assert!(o.stdout.lines().chain(o.stderr.lines()).all(|l| l.ends_with('4') || l.ends_with('5')), "{o:?}");
    let o = d.docker(&["logs", "-t", "lg"]).ok();
    let first = o.lines().next().unwrap_or_default();
    assert!(first.starts_with("20") && first.contains('T') && first.ends_with("Z line1"), "{o}");
    assert_eq!(d.docker(&["logs", "--since", "1h", "lg"]).stdout.lines().count(), 5);
    assert_eq!(d.docker(&["logs", "--until", "2000-01-01T00:00:00Z", "lg"]).stdout, "");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 60",
    ])
    .ok();
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
        .stdout
        .trim()
        == "healthy"));
    assert!(d.docker(&["ps", "--format", "{{.Status}}", "--filter", "name=hc"]).ok().contains("(healthy)"));
}

#[test]
fn restart_always_survives_daemon_restart_and_prunes() {
    require_root!();
    let mut d = Daemon::start();
    d.docker(&["run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "60"]).ok();
    d.docker(&["run", "--name", "done1", "busybox", "true"]).ok();
    d.crash_and_restart();
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "always"]).ok(), "true");
    // A stopped container with restart=always stays stopped.
    d.docker(&["stop", "-t", "0", "always"]).ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "always"]).ok(), "false");
    let o = d.docker(&["container", "prune", "-f"]).ok();
    assert!(o.contains("Deleted Containers") && o.contains("Total reclaimed space"), "{o}");
    assert_eq!(d.docker(&["ps", "-aq"]).ok(), "");
    d.docker(&["tag", "busybox", "extra:tag"]).ok();
    d.docker(&["rmi", "busybox"]).ok();
    assert_eq!(d.docker(&["image", "prune", "-af"]).code, 0);
    assert_eq!(d.docker(&["images", "-q"]).ok(), "");
}

#[test]
fn vfs_driver_runs_and_commits() {
    require_root!();
    let d = Daemon::start_with(&["--storage-driver", "vfs"]);
    assert_eq!(d.docker(&["info", "--format", "{{.Driver}}"]).ok(), "vfs");
    d.docker(&["run", "--name", "v1", "busybox", "sh", "-c", "echo vfs > /etc/motd; rm /etc/group"]).ok();
    let diff = d.docker(&["diff", "v1"]).ok();
    assert!(diff.contains("A /etc/motd") && diff.contains("D /etc/group"), "{diff}");
    d.docker(&["commit", "v1", "vfs:done"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "vfs:done", "cat", "/etc/motd"]).ok(), "vfs");
    assert_ne!(d.docker(&["run", "--rm", "vfs:done", "ls", "/etc/group"]).code, 0);
}

#[test]
fn daemon_json_sets_defaults_such_as_log_opts() {
    require_root!();
    let dir = skiff_e2e::unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("daemon.json");
    std::fs::write(&conf, r#"{"log-driver": "json-file", "log-opts": {"max-size": "1k", "max-file": "2"}}"#).unwrap();
    let pidfile = dir.join("skiffd.pid");
    let d = Daemon::start_with(&["--config-file", conf.to_str().unwrap(), "--pidfile", pidfile.to_str().unwrap()]);
    assert_eq!(d.docker(&["info", "-f", "{{.LoggingDriver}}"]).ok(), "json-file");
    let script = "i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done";
    let id = d.docker(&["run", "-d", "busybox", "sh", "-c", script]).ok();
    d.docker(&["wait", &id]).ok();
    let lc = d.docker(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &id]).ok();
    assert!(lc.contains(r#""max-size":"1k""#) && lc.contains(r#""max-file":"2""#), "{lc}");
    let logs = d.docker(&["logs", &id]).ok();
    assert!(logs.ends_with("line299") && !logs.contains("line0\n"), "{logs}");
    let files = |id: &str| {
        std::fs::read_dir(d.data_root().join("containers").join(id))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("-json.log"))
            .count()
    };
    assert_eq!(files(&id), 2);
    // A container's own options win; the daemon's fill in the rest.
    let id2 = d.docker(&["run", "-d", "--log-opt", "max-file=1", "busybox", "sh", "-c", script]).ok();
    d.docker(&["wait", &id2]).ok();
    let lc = d.docker(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &id2]).ok();
    assert!(lc.contains(r#""max-size":"1k""#) && lc.contains(r#""max-file":"1""#), "{lc}");
    assert_eq!(files(&id2), 1);
    // SIGHUP reloads registries and log options (for containers created from then on).
    std::fs::write(&conf, r#"{"log-opts": {"max-size": "2k"}, "registry-mirrors": ["http://10.0.0.9:5000"]}"#).unwrap();
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap().success());
    assert!(
        eventually(Duration::from_secs(5), || d.docker(&["info"]).stdout.contains("http://10.0.0.9:5000/")),
        "mirror after reload"
    );
    let id3 = d.docker(&["create", "busybox", "true"]).ok();
    let lc = d.docker(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &id3]).ok();
    assert!(lc.contains(r#""max-size":"2k""#) && !lc.contains("max-file"), "{lc}");
    let lc = d.docker(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &id2]).ok();
    assert!(lc.contains(r#""max-size":"1k""#), "an existing container keeps its options: {lc}");
    // A directive both in the file and as a flag, or one skiff does not know, stops the daemon.
    let start = |file: &str, extra: &[&str]| {
        std::fs::write(&conf, file).unwrap();
        Command::new(skiff_e2e::bin_dir().join("skiffd"))
            .args(["-H", &format!("unix://{}", dir.join("x.sock").display())])
            .args(["--data-root", dir.join("data").to_str().unwrap(), "--exec-root", dir.join("run").to_str().unwrap()])
            .args(["--config-file", conf.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = start(r#"{"bridge": "skx0"}"#, &["--bridge", "sky0"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("both as a flag and in the configuration file"));
    let o = start(r#"{"bridge": "skx0", "cluster-store": "x"}"#, &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cluster-store"));
    let o = start(r#"{"log-opts": {"max-file": "0"}}"#, &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("max-file cannot be less than 1"));
    let _ = std::fs::remove_dir_all(&dir);
}
