//! Hardening: no input takes the daemon down, a crash leaves nothing behind, no name leaks
//! across networks. Each test here was written against a finding and failed before its fix.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use skiff_e2e::{Daemon, busybox_tar, busybox_with_tool_tar, eventually, require_root, unique_dir};

fn mkdeep_image(d: &Daemon) {
    let tar = busybox_with_tool_tar(&d.dir, Path::new(env!("CARGO_BIN_EXE_mkdeep")));
    d.docker(&["import", tar.to_str().unwrap(), "deeptool"]).ok();
}

fn alive(d: &Daemon) {
    let v = d.docker(&["version", "-f", "{{.Server.Os}}"]);
    assert_eq!(v.code, 0, "the daemon died: {}\n{}", v.stderr, d.log());
}

fn tar_entries(bytes: &[u8]) -> usize {
    tar::Archive::new(bytes).entries().unwrap().inspect(|e| assert!(e.is_ok())).count()
}

#[test]
fn deep_trees_never_take_the_daemon_down() {
    require_root!();
    let d = Daemon::start();
    mkdeep_image(&d);
    // 100,000 levels: far past what any path names (PATH_MAX is 4,096 bytes).
    let made = d.docker(&["run", "--name", "deep", "deeptool", "mkdeep", "/tmp/deep", "100000"]).ok();
    assert_eq!(made, "made 100000 levels");
    let cp = d.docker(&["cp", "deep:/tmp", "-"]);
    assert_ne!(cp.code, 0, "a 100,000-deep copy cannot be archived");
    alive(&d);
    let diff = d.docker(&["diff", "deep"]);
    assert_ne!(diff.code, 0);
    assert!(diff.stderr.contains("PATH_MAX"), "{}", diff.stderr);
    alive(&d);
    assert_ne!(d.docker(&["export", "deep"]).code, 0);
    alive(&d);
    let commit = d.docker(&["commit", "deep", "deepimg"]);
    assert_ne!(commit.code, 0);
    assert!(commit.stderr.contains("PATH_MAX"), "{}", commit.stderr);
    alive(&d);
    // The same from a running container (its root seen through /proc/<pid>/root; 3,000
    // levels are past PATH_MAX too, and quicker to make).
    d.docker(&["run", "-d", "--name", "deeprun", "deeptool", "sh", "-c", "mkdeep /tmp/deep 3000 && sleep 600"]).ok();
    assert!(eventually(Duration::from_secs(30), || d.docker(&["logs", "deeprun"]).stdout.contains("made")));
    assert_ne!(d.docker(&["cp", "deeprun:/tmp/deep", "-"]).code, 0);
    alive(&d);
    // Removal walks any depth and leaves nothing.
    let id = d.docker(&["inspect", "-f", "{{.Id}}", "deep"]).ok();
    d.docker(&["rm", "deep"]).ok();
    d.docker(&["rm", "-f", "deeprun"]).ok();
    assert!(!d.data_root().join("image/snapshots").join(&id).exists(), "the snapshot stayed");

    // 2,000 levels (paths of about 4,000 bytes): every operation works.
    d.docker(&["run", "--name", "deep2", "deeptool", "mkdeep", "/tmp/deep", "2000"]).ok();
    let cp = Command::new(skiff_e2e::docker_cli())
        .args(["cp", "deep2:/tmp", "-"])
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .output()
        .unwrap();
    assert!(cp.status.success(), "{}", String::from_utf8_lossy(&cp.stderr));
    assert!(tar_entries(&cp.stdout) > 2000);
    let diff = d.docker(&["diff", "deep2"]).ok();
    assert!(diff.lines().count() > 2000, "{} changes", diff.lines().count());
    d.docker(&["commit", "deep2", "deep2img"]).ok();
    let found = d.docker(&["run", "--rm", "deep2img", "sh", "-c", "find /tmp/deep -type f | wc -l"]).ok();
    assert_eq!(found, "1");

    // A build whose RUN makes 100,000 levels fails cleanly; at 1,950 it builds.
    let ctx = d.dir.join("ctx-deep");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM deeptool\nRUN mkdeep /deep 100000\n").unwrap();
    let b = d.docker(&["build", "--force-rm", "-t", "toodeep", ctx.to_str().unwrap()]);
    assert_ne!(b.code, 0);
    assert!(format!("{}{}", b.stdout, b.stderr).contains("PATH_MAX"), "{} {}", b.stdout, b.stderr);
    alive(&d);
    std::fs::write(ctx.join("Dockerfile"), "FROM deeptool\nRUN mkdeep /deep 1950\n").unwrap();
    d.docker(&["build", "-t", "deepok", ctx.to_str().unwrap()]).ok();
    assert_eq!(d.docker(&["run", "--rm", "deepok", "sh", "-c", "find /deep -type f | wc -l"]).ok(), "1");
    assert_eq!(d.docker(&["ps", "-aq", "--filter", "status=exited"]).ok().lines().count(), 1, "only deep2 is left");
}

/// A tar header for a regular entry.
fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h
}

fn octal12(v: u64) -> [u8; 12] {
    format!("{v:011o}\0").as_bytes().try_into().unwrap()
}

/// A layer with one GNU sparse file: `real` bytes long, one block of data in the middle.
fn sparse_layer(real: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("big").unwrap();
    h.set_mode(0o644);
    h.set_size(512);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].offset = octal12(real / 2);
    g.sparse[0].numbytes = octal12(512);
    g.sparse[1].offset = octal12(real);
    g.sparse[1].numbytes = octal12(0);
    g.realsize = octal12(real);
    h.set_cksum();
    let mut t = h.as_bytes().to_vec();
    t.extend_from_slice(&[7u8; 512]);
    t.extend_from_slice(&[0u8; 1024]);
    t
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A docker-archive (`docker save` layout) of busybox plus `layer` (as `layer.tar`, with
/// `diff_id` in the config; a compressed layer's diff ID is that of its content).
fn archive_with_layer(dir: &Path, name: &str, layer: &[u8], diff_id: &str) -> PathBuf {
    let bb = std::fs::read(busybox_tar(dir)).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [sha(&bb), diff_id] },
    })
    .to_string();
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": [format!("{name}:latest")],
        "Layers": ["bb/layer.tar", "x/layer.tar"] }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in [
        ("bb/layer.tar", &bb[..]),
        ("x/layer.tar", layer),
        ("config.json", config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        b.append_data(&mut file_header(data.len() as u64), p, data).unwrap();
    }
    let out = dir.join(format!("{name}.tar"));
    std::fs::write(&out, b.into_inner().unwrap()).unwrap();
    out
}

/// Disk space used below `p` (blocks, not apparent sizes).
fn du_bytes(p: &Path) -> u64 {
    let o = Command::new("du").args(["-sk"]).arg(p).output().unwrap();
    let used: u64 = String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().parse().unwrap();
    used * 1024
}

fn peak_rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn hostile_archives_keep_holes_respect_the_size_limit_and_leave_nothing() {
    require_root!();
    const GIB: u64 = 1 << 30;
    let d = Daemon::start_bare();
    let dir = unique_dir();
    // A 1 GiB sparse file in a few KB: loaded, the holes stay holes.
    let layer = sparse_layer(GIB);
    let archive = archive_with_layer(&dir, "sparse", &layer, &sha(&layer));
    assert!(std::fs::metadata(&archive).unwrap().len() < 4 << 20);
    let before = du_bytes(&d.data_root());
    d.docker(&["load", "-i", archive.to_str().unwrap()]).ok();
    let grew = du_bytes(&d.data_root()).saturating_sub(before);
    assert!(grew < 64 << 20, "loading a sparse file wrote {grew} bytes");
    assert_eq!(d.docker(&["run", "--rm", "sparse", "stat", "-c", "%s", "/big"]).ok(), GIB.to_string());

    // The layer blob itself sparse in the archive (1 GiB, nearly all zeros): no disk either.
    let zeros = vec![0u8; 1 << 20];
    let mut hasher = sha2::Sha256::new();
    for _ in 0..1024 {
        hasher.update(&zeros);
    }
    let zero_id = format!("sha256:{}", hex::encode(hasher.finalize()));
    let big = dir.join("zeros.tar");
    {
        // The outer archive with a GNU sparse `layer.tar` entry of 1 GiB of zeros.
        let bb = std::fs::read(busybox_tar(&dir)).unwrap();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha(&bb), zero_id]}})
        .to_string();
        let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["zeros:latest"],
            "Layers": ["bb/layer.tar", "z/layer.tar"]}])
        .to_string();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut file_header(bb.len() as u64), "bb/layer.tar", &bb[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_path("z/layer.tar").unwrap();
        h.set_mode(0o644);
        h.set_size(0);
        h.as_gnu_mut().unwrap().sparse[0].offset = octal12(GIB);
        h.as_gnu_mut().unwrap().sparse[0].numbytes = octal12(0);
        h.as_gnu_mut().unwrap().realsize = octal12(GIB);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        b.append_data(&mut file_header(config.len() as u64), "config.json", config.as_bytes()).unwrap();
        b.append_data(&mut file_header(manifest.len() as u64), "manifest.json", manifest.as_bytes()).unwrap();
        std::fs::write(&big, b.into_inner().unwrap()).unwrap();
    }
    assert!(std::fs::metadata(&big).unwrap().len() < 4 << 20);
    let before = du_bytes(&d.data_root());
    d.docker(&["load", "-i", big.to_str().unwrap()]).ok();
    let grew = du_bytes(&d.data_root()).saturating_sub(before);
    assert!(grew < 64 << 20, "a sparse layer blob wrote {grew} bytes");

    // A layer whose tar claims a 1 GiB long name (1 MB compressed): refused at once, without
    // the daemon holding the name in memory.
    let bomb = {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_size(GIB);
        h.set_cksum();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(h.as_bytes()).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..1024 {
            gz.write_all(&chunk).unwrap();
        }
        gz.finish().unwrap()
    };
    assert!(bomb.len() < 16 << 20);
    let bomb_archive = archive_with_layer(&dir, "bomb", &bomb, &format!("sha256:{}", "0".repeat(64)));
    let rss_before = peak_rss_kb(d.pid().unwrap());
    let r = d.docker(&["load", "-i", bomb_archive.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("metadata"), "{}", r.stderr);
    alive(&d);
    let rss_after = peak_rss_kb(d.pid().unwrap());
    assert!(rss_after < rss_before + 200 * 1024, "peak RSS went from {rss_before} to {rss_after} kB");

    // With a limit on unpacked size, the sparse image is refused and leaves nothing.
    drop(d);
    let d = Daemon::start_bare_with(&["--max-unpacked-image-size", "512m"]);
    let blobs = |d: &Daemon| std::fs::read_dir(d.data_root().join("image/content/blobs/sha256")).unwrap().count();
    let layers = |d: &Daemon| std::fs::read_dir(d.data_root().join("image/layers")).unwrap().count();
    let (b0, l0) = (blobs(&d), layers(&d));
    let r = d.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("limit"), "{}", r.stderr);
    let r = d.docker(&["load", "-i", big.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("limit"), "{}", r.stderr);
    assert_eq!(d.docker(&["images", "-q"]).ok(), "");
    // The busybox layer that did unpack stays (a layer is shared, an image is not); the
    // refused one left no directory and no blob.
    assert!(layers(&d) <= l0 + 1, "layer directories left behind");
    assert!(blobs(&d) <= b0 + 1, "blobs left behind");
    let _ = skiff_common::tree::remove_all(&dir);
}

/// `nslookup NAME SERVER` from a container; true if it resolved.
fn resolves(d: &Daemon, net: &str, name: &str, server: &str) -> bool {
    let o = d.docker(&["run", "--rm", "--network", net, "busybox", "nslookup", name, server]);
    o.code == 0 && o.stdout.contains("Address") && o.stdout.lines().filter(|l| l.contains("Address")).count() >= 2
}

#[test]
fn embedded_dns_answers_only_its_own_network() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["network", "create", "--subnet", &d.net.subnet(0), "neta"]).ok();
    d.docker(&["network", "create", "--subnet", &d.net.subnet(1), "netb"]).ok();
    d.docker(&["run", "-d", "--name", "secret-a", "--network", "neta", "busybox", "sleep", "600"]).ok();
    let gw = d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "neta"]).ok();
    assert!(resolves(&d, "neta", "secret-a", &gw), "a container of neta resolves its neighbour");
    assert!(!resolves(&d, "netb", "secret-a", &gw), "a container of netb resolved secret-a at neta's gateway");
    assert!(!resolves(&d, "bridge", "secret-a", &gw), "a default-bridge container resolved secret-a");
    // The host itself is not a client either.
    let host = Command::new("busybox").args(["nslookup", "secret-a", &gw]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stdout)
            .contains(&d.docker(&["inspect", "-f", "{{.NetworkSettings.Networks.neta.IPAddress}}", "secret-a"]).ok()),
        "the host resolved secret-a: {}",
        String::from_utf8_lossy(&host.stdout)
    );
}

#[test]
fn symlinks_in_images_are_kept_and_followed_inside_the_root() {
    require_root!();
    let d = Daemon::start();
    let dir = unique_dir();
    // An image whose /data is a symlink, plus a link that climbs above the root (refused
    // before; real images ship such links).
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(std::fs::File::open(busybox_tar(&dir)).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let p = e.path().unwrap().into_owned();
        if h.entry_type() == tar::EntryType::Symlink {
            let t = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &p, &t).unwrap();
        } else {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            b.append_data(&mut h, &p, &data[..]).unwrap();
        }
    }
    let mut dh = tar::Header::new_gnu();
    dh.set_entry_type(tar::EntryType::Directory);
    dh.set_mode(0o755);
    dh.set_size(0);
    b.append_data(&mut dh, "var/lib/real/", std::io::empty()).unwrap();
    for (link, target) in [("data", "/var/lib/real"), ("usr/share/climb", "../../../../etc")] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, link, target).unwrap();
    }
    let t = dir.join("links.tar");
    std::fs::write(&t, b.into_inner().unwrap()).unwrap();
    d.docker(&["import", t.to_str().unwrap(), "links"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "links", "readlink", "/usr/share/climb"]).ok(), "../../../../etc");
    // A volume at a symlinked destination lands where the link points, inside the root.
    let out = d
        .docker(&["run", "--rm", "-v", "lvol:/data", "links", "sh", "-c", "echo hi > /data/f && cat /var/lib/real/f"])
        .ok();
    assert_eq!(out, "hi");
    let _ = skiff_common::tree::remove_all(&dir);
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
