//! Hostile input never takes the daemon down: deep trees, archives that lie about their
//! sizes or hide holes, DNS queries from other networks, symlinks that point out of an image.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
