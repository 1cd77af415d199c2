//! Swarm mode across hosts: daemons in their own network namespaces (a [`Rig`]) form a cluster
//! through the docker CLI — init, join by token over mutual TLS, node listing and updates,
//! heartbeats marking a killed node down, and the managers electing a new leader when the
//! leader's host goes.

use std::time::Duration;

use skiff_e2e::rig::Rig;
use skiff_e2e::{Daemon, eventually, require_root};

fn token(d: &Daemon, role: &str) -> String {
    d.docker(&["swarm", "join-token", "-q", role]).ok().trim().to_string()
}

fn nodes(d: &Daemon) -> String {
    d.docker(&["node", "ls", "--format", "{{.ID}} {{.Status}} {{.ManagerStatus}}"]).stdout
}

#[test]
fn hosts_form_a_swarm_and_survive_a_worker_and_the_leader_going() {
    require_root!();
    let rig = Rig::new(5);
    let mut d: Vec<Daemon> = rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &[])).collect();
    form(&rig, &mut d);
    let wid = membership(&d);
    lose_a_worker(&rig, &mut d, &wid);
    let (lone, me) = lose_the_leader(&mut d, &wid);
    lose_the_quorum(&rig, &mut d, lone, &me);
    drop(d);
    drop(rig);
}

/// Init, tokens (forged, rotated), managers and workers joining, every manager agreeing.
fn form(rig: &Rig, d: &mut [Daemon]) {
    let addr = |i: usize| format!("{}:2377", rig.addrs[i]);

    let out = d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0], "--dispatcher-heartbeat", "1s"]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Swarm initialized: current node"), "{}", out.stdout);
    let again = d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0]]);
    assert!(again.stderr.contains("This node is already part of a swarm"), "{}", again.stderr);

    // A token's secret decides; a forged one is refused, and nothing is left on the node.
    let worker = token(&d[0], "worker");
    let forged = format!("{}{}", &worker[..worker.len() - 1], if worker.ends_with('a') { 'b' } else { 'a' });
    let r = d[3].docker(&["swarm", "join", "--token", &forged, "--advertise-addr", &rig.addrs[3], &addr(0)]);
    assert!(r.stderr.contains("A valid join token is necessary"), "{}", r.stderr);
    assert!(d[3].docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).ok().contains("inactive"));

    let manager = token(&d[0], "manager");
    for (i, di) in d.iter().enumerate().take(3).skip(1) {
        let r = di.docker(&["swarm", "join", "--token", &manager, "--advertise-addr", &rig.addrs[i], &addr(0)]);
        assert!(r.stdout.contains("This node joined a swarm as a manager"), "{} {}", r.stdout, r.stderr);
    }
    let r = d[3].docker(&["swarm", "join", "--token", &worker, "--advertise-addr", &rig.addrs[3], &addr(0)]);
    assert!(r.stdout.contains("This node joined a swarm as a worker"), "{} {}", r.stdout, r.stderr);
    // A rotated token refuses the old one; the new one admits, through another manager.
    d[2].docker(&["swarm", "join-token", "--rotate", "worker"]).ok();
    let r = d[4].docker(&["swarm", "join", "--token", &worker, "--advertise-addr", &rig.addrs[4], &addr(1)]);
    assert!(r.stderr.contains("A valid join token is necessary"), "{} {}", r.stdout, r.stderr);
    let rotated = token(&d[1], "worker");
    assert_ne!(rotated, worker);
    let r = d[4].docker(&["swarm", "join", "--token", &rotated, "--advertise-addr", &rig.addrs[4], &addr(1)]);
    assert!(r.stdout.contains("This node joined a swarm as a worker"), "{} {}", r.stdout, r.stderr);

    assert!(
        eventually(Duration::from_secs(20), || {
            let n = nodes(&d[0]);
            n.matches("Ready").count() == 5 && n.matches("Reachable").count() == 2 && n.contains("Leader")
        }),
        "{}",
        nodes(&d[0])
    );
    // Every manager sees the same cluster.
    let sorted = |d: &Daemon| {
        let mut l: Vec<String> =
            nodes(d).lines().map(|l| l.split_whitespace().next().unwrap_or("").to_string()).collect();
        l.sort();
        l
    };
    assert!(eventually(Duration::from_secs(10), || sorted(&d[1]) == sorted(&d[0]) && sorted(&d[2]) == sorted(&d[0])));
    // Every manager answers for the cluster; a worker says it is not a manager.
    assert!(nodes(&d[2]).contains("Leader"), "{}", nodes(&d[2]));
    let w = d[3].docker(&["node", "ls"]);
    assert!(w.stderr.contains("This node is not a swarm manager"), "{}", w.stderr);
    let info = d[3].docker(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"]).ok();
    assert_eq!(info.trim(), "active false");
}

/// Promote/demote, pause/drain/labels through different managers; the worker's node ID.
fn membership(d: &[Daemon]) -> String {
    // Promotion: the worker renews its certificate as a manager and joins the Raft voters;
    // demotion takes it back out. Both through the CLI, on different managers.
    let wid = node_id(&d[3]);
    d[0].docker(&["node", "promote", &wid]).ok();
    let control = |d: &Daemon| d.docker(&["info", "--format", "{{.Swarm.ControlAvailable}}"]).stdout.trim().to_string();
    assert!(eventually(Duration::from_secs(30), || control(&d[3]) == "true"), "{}\n{}", nodes(&d[0]), d[3].log());
    assert!(eventually(Duration::from_secs(30), || nodes(&d[3]).matches("Reachable").count() == 3), "{}", nodes(&d[3]));
    d[1].docker(&["node", "demote", &wid]).ok();
    assert!(eventually(Duration::from_secs(30), || control(&d[3]) == "false"), "{}", nodes(&d[0]));
    assert!(eventually(Duration::from_secs(30), || nodes(&d[0]).matches("Reachable").count() == 2), "{}", nodes(&d[0]));

    // Node updates: by ID, through any manager.
    d[1].docker(&["node", "update", "--availability", "pause", &node_id(&d[4])]).ok();
    let paused = d[0].docker(&["node", "inspect", "--format", "{{.Spec.Availability}}", &node_id(&d[4])]);
    assert_eq!(paused.ok().trim(), "pause");
    d[1].docker(&["node", "update", "--availability", "drain", "--label-add", "zone=b", &wid]).ok();
    let spec = d[2].docker(&["node", "inspect", "--format", "{{.Spec.Availability}} {{.Spec.Labels.zone}}", &wid]);
    assert_eq!(spec.ok().trim(), "drain b");

    wid
}

/// The worker's host killed: down, removed, and refused when it comes back.
fn lose_a_worker(_rig: &Rig, d: &mut [Daemon], wid: &str) {
    // The worker's host goes: down after three missed heartbeats; then it can be removed.
    d[3].kill9();
    assert!(
        eventually(Duration::from_secs(20), || nodes(&d[0]).lines().any(|l| l.contains("Down"))),
        "{}",
        nodes(&d[0])
    );
    d[0].docker(&["node", "rm", wid]).ok();
    assert_eq!(nodes(&d[0]).lines().count(), 4, "{}", nodes(&d[0]));
    // A removed node cannot come back: its certificate is refused.
    d[3].start_again();
    let state = |d: &Daemon| d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.trim().to_string();
    assert!(eventually(Duration::from_secs(15), || state(&d[3]) == "error"), "{}", state(&d[3]));
    assert_eq!(nodes(&d[0]).lines().count(), 4, "{}", nodes(&d[0]));
}

/// The leader's host killed: a new leader takes writes; the old one comes back a follower,
/// then goes again. Returns the manager left to lose its quorum, and its node ID.
fn lose_the_leader(d: &mut [Daemon], wid: &str) -> (usize, String) {
    // The leader's host goes: the other two managers elect one and keep answering.
    let ls = nodes(&d[0]);
    let leader = (0..3).find(|&i| ls.lines().any(|l| l.starts_with(&node_id(&d[i])) && l.ends_with("Leader")));
    let leader = leader.unwrap_or_else(|| panic!("no leader in {ls}"));
    let old = node_id(&d[leader]);
    d[leader].kill9();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    assert!(
        eventually(Duration::from_secs(30), || {
            let n = nodes(&d[rest[0]]);
            n.contains("Leader") && n.lines().any(|l| l.contains("Unreachable") || l.contains("Down"))
        }),
        "{}",
        nodes(&d[rest[0]])
    );
    let r = d[rest[1]].docker(&["node", "update", "--label-add", "after=election", wid]);
    assert_ne!(r.code, 0, "the removed worker is gone: {}", r.stdout);
    let me = node_id(&d[rest[0]]);
    d[rest[1]].docker(&["node", "update", "--label-add", "after=election", &me]).ok();
    // The old leader comes back as a follower.
    d[leader].start_again();
    assert!(
        eventually(Duration::from_secs(30), || {
            let n = nodes(&d[leader]);
            n.contains("Leader") && !n.lines().any(|l| l.starts_with(&old) && l.ends_with("Leader"))
        }),
        "{}",
        nodes(&d[leader])
    );
    assert!(
        eventually(Duration::from_secs(30), || nodes(&d[rest[0]]).matches("Reachable").count() == 2),
        "{}",
        nodes(&d[rest[0]])
    );
    d[leader].kill9();

    (rest[0], me)
}

/// Down to one manager of three: no answers, then `--force-new-cluster`; leaving.
fn lose_the_quorum(rig: &Rig, d: &mut [Daemon], lone: usize, me: &str) {
    let other = (0..3).find(|&i| i != lone && d[i].pid().is_some()).expect("another live manager");
    // Down to one manager of three: no quorum, so no answers; `--force-new-cluster` makes a
    // new single-manager swarm from what that manager kept.
    d[other].kill9();
    assert!(
        eventually(Duration::from_secs(30), || d[lone]
            .docker(&["node", "ls"])
            .stderr
            .contains("does not have a leader")),
        "{}",
        d[lone].docker(&["node", "ls"]).stderr
    );
    let r = d[lone].docker(&["swarm", "init", "--force-new-cluster", "--advertise-addr", &rig.addrs[lone]]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        eventually(Duration::from_secs(20), || nodes(&d[lone])
            .lines()
            .any(|l| l.starts_with(me) && l.ends_with("Leader"))),
        "{}",
        nodes(&d[lone])
    );
    let n = nodes(&d[lone]);
    // The two managers outside the new membership are down; the live worker carries on with it.
    assert_eq!(n.lines().filter(|l| l.contains("Down")).count(), 2, "{n}");
    assert!(
        eventually(Duration::from_secs(15), || nodes(&d[lone]).lines().filter(|l| l.contains("Ready")).count() == 2)
    );

    // Leaving: a manager needs --force; a node that left is inactive and keeps nothing.
    let r = d[lone].docker(&["swarm", "leave"]);
    assert!(r.stderr.contains("participating as a manager"), "{}", r.stderr);
    d[lone].docker(&["swarm", "leave", "--force"]).ok();
    assert!(!d[lone].data_root().join("swarm").exists());
}

/// A daemon's swarm node ID (the rig's hosts share the machine's hostname).
fn node_id(d: &Daemon) -> String {
    d.docker(&["info", "--format", "{{.Swarm.NodeID}}"]).ok().trim().to_string()
}

/// Every certs file of a daemon's swarm state, concatenated.
fn certs(d: &Daemon) -> String {
    let dir = d.data_root().join("swarm/certs");
    let mut all = String::new();
    for e in std::fs::read_dir(&dir).map(|r| r.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        all.push_str(&format!("== {}\n", e.file_name().to_string_lossy()));
        all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    all
}

/// A manager's keys sealed on disk with the unlock key it is not given: no key, no raft data key.
fn sealed(d: &Daemon) -> bool {
    let c = certs(d);
    c.contains("SKIFF LOCKED NODE KEY") && !c.contains("PRIVATE KEY") && !c.contains("== raft.dek")
}

fn state(d: &Daemon) -> String {
    d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.trim().to_string()
}

fn unlock_key(out: &str) -> String {
    out.split_whitespace().find(|w| w.starts_with("SWMKEY-1-")).unwrap_or_else(|| panic!("no key in {out}")).to_string()
}

#[test]
fn autolock_keeps_managers_locked_until_they_are_given_the_key() {
    require_root!();
    let rig = Rig::new(3);
    let mut d: Vec<Daemon> = rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &[])).collect();
    let out = d[0].docker(&["swarm", "init", "--autolock", "--advertise-addr", &rig.addrs[0]]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("docker swarm unlock"), "{}", out.stdout);
    let key = unlock_key(&out.stdout);
    assert_eq!(d[0].docker(&["swarm", "unlock-key", "-q"]).ok().trim(), key);
    let manager = token(&d[0], "manager");
    let addr0 = format!("{}:2377", rig.addrs[0]);
    for (di, addr) in d.iter().zip(&rig.addrs).skip(1) {
        di.docker(&["swarm", "join", "--token", &manager, "--advertise-addr", addr, &addr0]).ok();
    }
    // Every manager seals its own keys with the cluster's unlock key, joiners too.
    assert!(eventually(Duration::from_secs(10), || d.iter().all(sealed)), "{}", certs(&d[1]));
    assert_eq!(state(&d[0]), "active");

    // A restarted manager is locked: no swarm operations, the wrong key refused, the right one
    // brings it back into the cluster.
    d[1].restart();
    assert_eq!(state(&d[1]), "locked");
    assert!(d[1].docker(&["node", "ls"]).stderr.contains("Swarm is encrypted and needs to be unlocked"));
    let r = d[1].docker(&["swarm", "leave"]);
    assert!(r.stderr.contains("Swarm is encrypted and locked"), "{}", r.stderr);
    let wrong = "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8";
    let r = d[1].docker_stdin(&["swarm", "unlock"], wrong.as_bytes());
    assert!(r.stderr.contains("invalid key provided"), "{} {}", r.stdout, r.stderr);
    assert_eq!(state(&d[1]), "locked");
    d[1].docker_stdin(&["swarm", "unlock"], format!("{key}\n").as_bytes()).ok();
    assert_eq!(state(&d[1]), "active");
    assert!(eventually(Duration::from_secs(20), || nodes(&d[1]).matches("Ready").count() == 3), "{}", nodes(&d[1]));
    let r = d[1].docker_stdin(&["swarm", "unlock"], key.as_bytes());
    assert!(r.stderr.contains("swarm is not locked"), "{}", r.stderr);

    // A rotated key re-seals every manager: after a restart the old key no longer opens it.
    let out = d[0].docker(&["swarm", "unlock-key", "--rotate"]).ok();
    assert!(out.contains("Successfully rotated manager unlock key"), "{out}");
    let rotated = unlock_key(&out);
    assert_ne!(rotated, key);
    std::thread::sleep(Duration::from_secs(3));
    d[2].restart();
    assert_eq!(state(&d[2]), "locked");
    let r = d[2].docker_stdin(&["swarm", "unlock"], key.as_bytes());
    assert!(r.stderr.contains("invalid key provided"), "the old key: {}", r.stderr);
    d[2].docker_stdin(&["swarm", "unlock"], rotated.as_bytes()).ok();
    assert_eq!(state(&d[2]), "active");

    // Autolock off: the keys are clear again and a restart needs no key.
    d[0].docker(&["swarm", "update", "--autolock=false"]).ok();
    assert!(eventually(Duration::from_secs(10), || !sealed(&d[1]) && certs(&d[1]).contains("PRIVATE KEY")));
    let r = d[0].docker(&["swarm", "unlock-key"]);
    assert!(r.stderr.contains("no unlock key is set"), "{}", r.stderr);
    d[1].restart();
    assert_eq!(state(&d[1]), "active");
    assert!(eventually(Duration::from_secs(20), || nodes(&d[1]).contains("Leader")), "{}", nodes(&d[1]));
    drop(d);
    drop(rig);
}

fn trust_roots(d: &Daemon) -> String {
    d.docker(&["node", "ls", "-q"])
        .ok()
        .lines()
        .map(|id| d.docker(&["node", "inspect", "--format", "{{.Description.TLSInfo.TrustRoot}}", id]).ok())
        .collect::<Vec<_>>()
        .join("")
}

/// An operator's root CA (EC P-256, made with openssl) in `dir`: its certificate and key files.
fn operator_root(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("root.pem"), dir.join("root.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=operator-root", "-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn the_root_ca_rotates_with_every_node_staying_ready() {
    require_root!();
    let rig = Rig::new(4);
    let d: Vec<Daemon> = rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &[])).collect();
    let addr0 = format!("{}:2377", rig.addrs[0]);
    d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0]]).ok();
    let (manager, worker) = (token(&d[0], "manager"), token(&d[0], "worker"));
    d[1].docker(&["swarm", "join", "--token", &manager, "--advertise-addr", &rig.addrs[1], &addr0]).ok();
    d[2].docker(&["swarm", "join", "--token", &worker, "--advertise-addr", &rig.addrs[2], &addr0]).ok();
    assert!(eventually(Duration::from_secs(20), || nodes(&d[0]).matches("Ready").count() == 3), "{}", nodes(&d[0]));
    let old = d[0].docker(&["swarm", "ca"]).ok();
    assert!(old.starts_with("-----BEGIN CERTIFICATE-----"), "{old}");

    // `swarm ca --rotate` waits, with the CLI's progress, until every node has a certificate
    // from the new root and trusts it alone; then prints the new root.
    let out = d[1].docker(&["swarm", "ca", "--rotate"]);
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, d[0].log());
    let new = d[0].docker(&["swarm", "ca"]).ok();
    assert_ne!(new, old, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(new.trim()), "{}", out.stdout);
    assert_eq!(trust_roots(&d[0]).matches(new.trim()).count(), 3, "every node trusts the new root");
    assert_eq!(nodes(&d[0]).matches("Ready").count(), 3, "{}", nodes(&d[0]));
    let rotating = d[0].docker(&["info", "--format", "{{.Swarm.Cluster.RootRotationInProgress}}"]).ok();
    assert_eq!(rotating.trim(), "false");

    // The join tokens pin the new root: the old one is refused, the new one admits.
    let r = d[3].docker(&["swarm", "join", "--token", &worker, "--advertise-addr", &rig.addrs[3], &addr0]);
    assert_ne!(r.code, 0, "a token pinning the old root: {}", r.stdout);
    let fresh = token(&d[0], "worker");
    assert_ne!(fresh, worker);
    assert_eq!(fresh.rsplit('-').next(), worker.rsplit('-').next(), "the secret stays");
    let r = d[3].docker(&["swarm", "join", "--token", &fresh, "--advertise-addr", &rig.addrs[3], &addr0]);
    assert!(r.stdout.contains("joined a swarm as a worker"), "{} {}", r.stdout, r.stderr);

    // To an operator's root; the cluster keeps answering writes, on every manager.
    let dir = skiff_e2e::unique_dir();
    let (cert, key) = operator_root(&dir);
    let out = d[0].docker(&["swarm", "ca", "--rotate", "--ca-cert", &cert, "--ca-key", &key]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let given = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(d[1].docker(&["swarm", "ca"]).ok().trim(), given.trim());
    assert!(eventually(Duration::from_secs(20), || nodes(&d[1]).matches("Ready").count() == 4), "{}", nodes(&d[1]));
    d[1].docker(&["node", "update", "--label-add", "rotated=yes", &node_id(&d[2])]).ok();
    // A bad root is refused: a leaf certificate, or a key that is not the certificate's.
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let (c2, _) = operator_root(&dir.join("b"));
    let r = d[0].docker(&["swarm", "ca", "--rotate", "--detach", "--ca-cert", &c2, "--ca-key", &key]);
    assert!(r.stderr.contains("not the root certificate's"), "{}", r.stderr);
    drop(d);
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/rig.sh` with the given arguments.
fn rig_script(args: &[&str]) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rig.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("SKIFF_BIN_DIR", skiff_e2e::bin_dir())
        .env("DOCKER_CLI", skiff_e2e::docker_cli())
        .output()
        .expect("run scripts/rig.sh");
    assert!(out.status.success(), "rig.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Removes a rig made by the script even when the test fails.
struct ScriptRig(String);

impl Drop for ScriptRig {
    fn drop(&mut self) {
        if std::path::Path::new(&self.0).join("rig.env").exists() {
            let _ = std::process::Command::new("bash")
                .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rig.sh"))
                .args(["down", &self.0])
                .status();
        }
    }
}

#[test]
fn the_rig_script_starts_hosts_that_form_a_swarm_and_removes_them_all() {
    require_root!();
    let parent = skiff_e2e::unique_dir();
    let dir = format!("{}/rig", parent.display());
    let rig = ScriptRig(dir.clone());
    let up = String::from_utf8(rig_script(&["up", &dir, "2"]).stdout).unwrap();
    assert_eq!(up.lines().count(), 2, "{up}");
    let tag = std::fs::read_to_string(format!("{dir}/rig.env")).unwrap();
    let tag = tag.lines().find_map(|l| l.strip_prefix("TAG=")).unwrap().to_string();
    let out = |args: &[&str]| String::from_utf8(rig_script(args).stdout).unwrap().trim().to_string();
    let a1 = out(&["addr", &dir, "1"]);
    out(&["docker", &dir, "1", "swarm", "init", "--advertise-addr", &a1]);
    let token = out(&["docker", &dir, "1", "swarm", "join-token", "-q", "manager"]);
    let a2 = out(&["addr", &dir, "2"]);
    out(&["docker", &dir, "2", "swarm", "join", "--token", &token, "--advertise-addr", &a2, &format!("{a1}:2377")]);
    let ready = || out(&["docker", &dir, "2", "node", "ls", "--format", "{{.Status}}"]).matches("Ready").count();
    assert!(eventually(Duration::from_secs(20), || ready() == 2));
    // A host killed and started again rejoins.
    out(&["kill", &dir, "1"]);
    out(&["start", &dir, "1"]);
    assert!(eventually(Duration::from_secs(20), || ready() == 2));

    rig_script(&["down", &dir]);
    assert!(!std::path::Path::new(&dir).exists());
    let netns = String::from_utf8(std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout);
    assert!(!netns.unwrap().contains(&tag), "a namespace is left");
    assert!(skiff_e2e::ip_lines(&tag).is_empty(), "links are left: {:?}", skiff_e2e::ip_lines(&tag));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&dir), "mounts are left");
    drop(rig);
    let _ = std::fs::remove_dir_all(parent);
}
