//! The same user workflows with skiff's own CLI.

use std::time::Duration;

use skiff_e2e::{Daemon, eventually, require_root};

#[test]
fn skiff_runs_like_docker() {
    require_root!();
    let d = Daemon::start();
    let o = d.skiff(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hi\n"), "{o:?}");
    let o = d.skiff(&["run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 9"]);
    assert_eq!((o.code, o.stderr.as_str()), (9, "err\n"));
    assert_eq!(d.skiff(&["run", "--rm", "busybox", "nope"]).code, 127);
    assert_eq!(d.skiff_stdin(&["run", "--rm", "-i", "busybox", "cat"], b"through\n").stdout, "through\n");
    let skiff = skiff_e2e::bin_dir().join("skiff");
    let o = d.in_pty(&format!("{} run --rm -it busybox sh -c 'stty size; exit 3'", skiff.display()), 30, 100);
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("30 100"), "{o:?}");
}

#[test]
fn skiff_detached_lifecycle() {
    require_root!();
    let d = Daemon::start();
    let id = d
        .skiff(&[
            "run",
            "-d",
            "--name",
            "s1",
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done",
        ])
        .ok();
    assert_eq!(id.len(), 64);
    assert!(eventually(Duration::from_secs(5), || d.skiff(&["logs", "s1"]).stdout.contains("tick")));
    assert_eq!(
        d.skiff(&["exec", "s1", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).ok(),
        (64 << 20).to_string()
    );
    assert_eq!(d.skiff(&["exec", "s1", "sh", "-c", "exit 4"]).code, 4);
    let ps = d.skiff(&["ps", "--format", "{{.Names}}\t{{.Image}}"]).ok();
    assert_eq!(ps, "s1\tbusybox");
    let table = d.skiff(&["ps"]).ok();
    assert!(table.starts_with("CONTAINER ID   IMAGE     COMMAND"), "{table}");
    assert_eq!(d.skiff(&["inspect", "-f", "{{.State.Running}}", "s1"]).ok(), "true");
    let stats = d.skiff(&["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "s1"]).ok();
    assert!(stats.starts_with("s1 "), "{stats}");
    let host = d.dir.join("f.txt");
    std::fs::write(&host, "x\n").unwrap();
    d.skiff(&["cp", host.to_str().unwrap(), "s1:/tmp/f.txt"]).ok();
    assert_eq!(d.skiff(&["exec", "s1", "cat", "/tmp/f.txt"]).ok(), "x");
    let back = d.dir.join("back.txt");
    d.skiff(&["cp", "s1:/tmp/f.txt", back.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "x\n");
    assert_eq!(d.skiff(&["stop", "s1"]).ok(), "s1");
    assert_eq!(d.skiff(&["wait", "s1"]).ok(), "0");
    assert_eq!(d.skiff(&["rm", "s1"]).ok(), "s1");
}

#[test]
fn skiff_images_volumes_save_load() {
    require_root!();
    let d = Daemon::start();
    let images = d.skiff(&["images"]).ok();
    assert!(images.lines().nth(1).unwrap().starts_with("busybox "), "{images}");
    let id = d.skiff(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok();
    d.skiff(&["tag", "busybox", "example/bb:v1"]).ok();
    let archive = d.dir.join("s.tar");
    d.skiff(&["save", "-o", archive.to_str().unwrap(), "busybox"]).ok();
    let o = d.skiff(&["rmi", "busybox", "example/bb:v1"]).ok();
    assert!(o.contains("Untagged: busybox:latest") && o.contains("Deleted: sha256:"), "{o}");
    assert!(d.skiff(&["load", "-i", archive.to_str().unwrap()]).ok().contains("Loaded image: busybox:latest"));
    assert_eq!(d.skiff(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).ok(), id);
    assert_eq!(d.skiff(&["volume", "create", "v1"]).ok(), "v1");
    d.skiff(&["run", "--rm", "-v", "v1:/d", "busybox", "sh", "-c", "echo kept > /d/k"]).ok();
    assert_eq!(d.skiff(&["run", "--rm", "-v", "v1:/d", "busybox", "cat", "/d/k"]).ok(), "kept");
    assert!(d.skiff(&["volume", "ls"]).ok().contains("local     v1"));
    assert!(d.skiff(&["system", "df"]).ok().contains("Local Volumes"));
}

#[test]
fn skiff_survives_daemon_crash() {
    require_root!();
    let mut d = Daemon::start();
    d.skiff(&["run", "-d", "--name", "keep", "busybox", "sleep", "60"]).ok();
    d.crash_and_restart();
    assert_eq!(d.skiff(&["exec", "keep", "echo", "still"]).ok(), "still");
    assert_eq!(d.skiff(&["rm", "-f", "keep"]).ok(), "keep");
}

#[test]
fn seccomp_profile_files_from_either_cli() {
    require_root!();
    let d = Daemon::start();
    let dir = skiff_e2e::unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let prof = dir.join("no-mkdir.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    // The CLI sends the file's contents; the daemon never reads the client's files.
    for o in [
        d.skiff(&["run", "--rm", "--security-opt", &opt, "busybox", "mkdir", "/x"]),
        d.docker(&["run", "--rm", "--security-opt", &opt, "busybox", "mkdir", "/x"]),
    ] {
        assert_ne!(o.code, 0);
        assert!(o.stderr.contains("Operation not permitted"), "{}", o.stderr);
    }
    assert_eq!(d.skiff(&["run", "--rm", "--security-opt", &opt, "busybox", "echo", "ok"]).ok(), "ok");
    let missing = d.skiff(&["run", "--rm", "--security-opt", "seccomp=/nonexistent.json", "busybox", "true"]);
    assert!(missing.stderr.contains("opening seccomp profile"), "{}", missing.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
