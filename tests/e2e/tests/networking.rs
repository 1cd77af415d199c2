//! Networking with the docker CLI against skiffd: the default bridge, published ports, user
//! networks with DNS, network modes, restart and cleanup, docker-compose.
//!
//! Every test daemon has its own bridge, subnets and firewall chains (see `NetSlot`); test
//! traffic goes to loopback and to the daemon's own bridge addresses only, and names that are
//! not the containers' are forwarded to 127.0.0.1 (the harness passes `--dns 127.0.0.1`).

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use skiff_e2e::{Daemon, Out, eventually, firewall_lines, ip_lines, require_root};

const HTTPD: &str = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www";

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Two consecutive free ports.
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && TcpListener::bind(("0.0.0.0", p + 1)).is_ok() && TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

fn curl(url: &str) -> Out {
    let o = Command::new("curl").args(["-s", "-S", "-m", "5", url]).output().expect("curl");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

/// curl until the server answers (httpd takes a moment to start).
#[track_caller]
fn fetch(url: &str) -> String {
    let mut last = None;
    let ok = eventually(Duration::from_secs(10), || {
        let o = curl(url);
        let good = o.code == 0;
        last = Some(o);
        good
    });
    let o = last.unwrap();
    assert!(ok, "GET {url}: {o:?}");
    o.stdout.trim().to_string()
}

fn httpd(d: &Daemon, name: &str, args: &[&str]) -> String {
    let mut a = vec!["run", "-d", "--name", name, "--hostname", name];
    a.extend(args);
    a.extend(["busybox", "sh", "-c", HTTPD]);
    d.docker(&a).ok()
}

fn inspect(d: &Daemon, what: &str, fmt: &str) -> String {
    d.docker(&["inspect", "-f", fmt, what]).ok()
}

/// `wget` from a new container. busybox's own timeout option crashes, so `timeout -s KILL`
/// bounds it (wget ignores SIGTERM while connecting), under a shell that must not exec it:
/// as PID 1 of the container, wget would be immune to the kill.
fn wget_from(d: &Daemon, net: &[&str], url: &str) -> Out {
    let mut a = vec!["run", "--rm"];
    a.extend(net);
    let cmd = format!("timeout -s KILL 5 wget -qO- {url} && exit 0; exit 1");
    a.extend(["busybox", "sh", "-c", &cmd]);
    d.docker(&a)
}

#[test]
fn published_ports_reach_the_container_from_the_host_and_from_containers() {
    require_root!();
    let d = Daemon::start();
    let gw = d.net.bip().split('/').next().unwrap().to_string();

    // 127.0.0.1 only.
    let p1 = free_port();
    httpd(&d, "web", &["-p", &format!("127.0.0.1:{p1}:80")]);
    assert_eq!(fetch(&format!("http://127.0.0.1:{p1}/")), "hello-from-web");
    assert_eq!(d.docker(&["port", "web"]).ok(), format!("80/tcp -> 127.0.0.1:{p1}"));
    assert_eq!(
        inspect(&d, "web", "{{json .NetworkSettings.Ports}}"),
        format!(r#"{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{p1}"}}]}}"#)
    );
    assert!(d.docker(&["ps"]).ok().contains(&format!("127.0.0.1:{p1}->80/tcp")));
    // Not on the bridge address: the binding is for loopback only.
    assert_ne!(curl(&format!("http://{gw}:{p1}/")).code, 0);
    // Another container reaches it at its address.
    let ip = inspect(&d, "web", "{{.NetworkSettings.IPAddress}}");
    assert!(ip.starts_with(&format!("10.213.{}.", d.net.n)), "{ip}");
    let o = wget_from(&d, &[], &format!("http://{ip}/"));
    assert_eq!(o.ok(), "hello-from-web");

    // Every address: the host's loopback and its bridge address, and from containers through
    // the host (hairpin), including the container itself.
    let p2 = free_port();
    httpd(&d, "web2", &["-p", &format!("{p2}:80")]);
    assert_eq!(fetch(&format!("http://127.0.0.1:{p2}/")), "hello-from-web2");
    assert_eq!(fetch(&format!("http://{gw}:{p2}/")), "hello-from-web2");
    assert_eq!(wget_from(&d, &[], &format!("http://{gw}:{p2}/")).ok(), "hello-from-web2");
    let o = d.docker(&["exec", "web2", "timeout", "-s", "KILL", "5", "wget", "-qO-", &format!("http://{gw}:{p2}/")]);
    assert_eq!(o.ok(), "hello-from-web2");

    // A random host port, and -P from EXPOSE.
    httpd(&d, "web3", &["-p", "127.0.0.1::80"]);
    let port = d.docker(&["port", "web3", "80"]).ok();
    let (host, p3) = port.rsplit_once(':').unwrap();
    assert_eq!(host, "127.0.0.1");
    assert_eq!(fetch(&format!("http://127.0.0.1:{p3}/")), "hello-from-web3");
    httpd(&d, "web4", &["--expose", "80", "-P"]);
    let p4 = d.docker(&["port", "web4", "80/tcp"]).ok();
    let p4 = p4.lines().next().unwrap().rsplit_once(':').unwrap().1.to_string();
    assert_eq!(fetch(&format!("http://127.0.0.1:{p4}/")), "hello-from-web4");

    // Ranges map port by port.
    let a = free_port_pair();
    httpd(&d, "web5", &["-p", &format!("127.0.0.1:{a}-{}:80-81", a + 1)]);
    assert_eq!(fetch(&format!("http://127.0.0.1:{a}/")), "hello-from-web5");
    let ports = d.docker(&["port", "web5"]).ok();
    assert!(ports.contains(&format!("81/tcp -> 127.0.0.1:{}", a + 1)), "{ports}");

    // Removing a container removes its rules.
    d.docker(&["rm", "-f", "web"]).ok();
    assert!(firewall_lines(&format!("--dport {p1} ")).is_empty(), "{:?}", firewall_lines(&format!("--dport {p1} ")));
    assert_ne!(curl(&format!("http://127.0.0.1:{p1}/")).code, 0);
}

#[test]
fn a_port_in_use_is_a_clear_error_and_leaves_nothing_behind() {
    require_root!();
    let d = Daemon::start();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = held.local_addr().unwrap().port();
    let o = d.docker(&["run", "-d", "--name", "busy", "-p", &format!("127.0.0.1:{p}:80"), "busybox", "sleep", "60"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("address already in use"), "{o:?}");
    assert_eq!(inspect(&d, "busy", "{{.State.Running}}"), "false");
    assert_eq!(inspect(&d, "busy", "{{.NetworkSettings.IPAddress}}"), "");
    assert_eq!(d.docker(&["network", "inspect", "-f", "{{len .Containers}}", "bridge"]).ok(), "0");
    let netns = std::fs::read_dir(d.dir.join("run/netns")).unwrap().count();
    assert_eq!(netns, 0, "no sandbox left");
    assert!(firewall_lines(&format!("--dport {p} ")).is_empty());
    // Once the port is free, the same container starts.
    drop(held);
    d.docker(&["start", "busy"]).ok();
    // Published by this daemon: a second container cannot take it.
    let o = d.docker(&["run", "-d", "-p", &format!("127.0.0.1:{p}:80"), "busybox", "sleep", "60"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("already allocated") || o.stderr.contains("already in use"), "{o:?}");
    // And while it is published, nothing else on the host can listen there.
    assert!(TcpListener::bind(("127.0.0.1", p)).is_err());
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    require_root!();
    let d = Daemon::start();
    d.docker(&["network", "create", "front"]).ok();
    let back_subnet = d.net.subnet(0);
    d.docker(&["network", "create", "--subnet", &back_subnet, "back"]).ok();
    let front_subnet = d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "front"]).ok();
    assert!(front_subnet.starts_with(&format!("10.214.{}.", d.net.n)), "from the daemon's pool: {front_subnet}");
    assert_eq!(d.docker(&["network", "ls", "-q", "--filter", "name=back"]).ok().len(), 12);

    d.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "front",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "other", "--network", "back", "busybox", "sleep", "300"]).ok();
    let db_ip = inspect(&d, "db", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let other_ip = inspect(&d, "other", "{{.NetworkSettings.Networks.back.IPAddress}}");

    // By name and by alias, from the same network.
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 db && ping -c1 -W2 database && cat /etc/resolv.conf",
    ]);
    let out = o.ok();
    assert!(out.contains(&format!("({db_ip})")), "{out}");
    let gw = d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "front"]).ok();
    assert!(out.contains(&format!("nameserver {gw}")), "{out}");
    // Not across networks: neither the name nor the address.
    let o = d.docker(&["run", "--rm", "--network", "front", "busybox", "ping", "-c1", "-W1", &other_ip]);
    assert_ne!(o.code, 0, "{o:?}");
    let o = d.docker(&["run", "--rm", "--network", "front", "busybox", "nslookup", "other"]);
    assert_ne!(o.code, 0, "{o:?}");
    let o = d.docker(&["run", "--rm", "--network", "back", "busybox", "ping", "-c1", "-W1", &db_ip]);
    assert_ne!(o.code, 0, "{o:?}");
    // Nor from the default bridge.
    let o = d.docker(&["run", "--rm", "busybox", "ping", "-c1", "-W1", &db_ip]);
    assert_ne!(o.code, 0, "{o:?}");

    // Connected at runtime: a second interface, both networks' names.
    d.docker(&["network", "connect", "--alias", "ot", "front", "other"]).ok();
    let addrs = d.docker(&["exec", "other", "ip", "-4", "-o", "addr"]).ok();
    assert!(addrs.contains("eth1"), "{addrs}");
    d.docker(&["exec", "other", "ping", "-c1", "-W2", "db"]).ok();
    d.docker(&["run", "--rm", "--network", "front", "busybox", "ping", "-c1", "-W2", "ot"]).ok();
    let members = d.docker(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "front"]).ok();
    assert!(members.contains("other") && members.contains("db"), "{members}");
    d.docker(&["network", "disconnect", "front", "other"]).ok();
    assert!(!d.docker(&["exec", "other", "ip", "-4", "-o", "addr"]).ok().contains("eth1"));
    assert_ne!(d.docker(&["exec", "other", "ping", "-c1", "-W1", &db_ip]).code, 0);

    // Static addresses, and their conflicts.
    let base: Vec<&str> = back_subnet.split('/').next().unwrap().split('.').collect();
    let fixed = format!("{}.{}.{}.20", base[0], base[1], base[2]);
    d.docker(&["run", "-d", "--name", "fixed", "--network", "back", "--ip", &fixed, "busybox", "sleep", "300"]).ok();
    assert_eq!(inspect(&d, "fixed", "{{.NetworkSettings.Networks.back.IPAddress}}"), fixed);
    let o = d.docker(&["run", "--rm", "--network", "back", "--ip", &fixed, "busybox", "true"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Address already in use"), "{o:?}");
    let o = d.docker(&["run", "--rm", "--ip", "10.213.0.9", "busybox", "true"]);
    assert!(o.stderr.contains("user defined networks"), "{o:?}");

    // A network in use cannot go; an unused one can.
    let o = d.docker(&["network", "rm", "front"]);
    assert!(o.stderr.contains("active endpoints"), "{o:?}");
    d.docker(&["network", "create", "spare"]).ok();
    let o = d.docker(&["network", "prune", "-f"]).ok();
    assert!(o.contains("spare") && !o.contains("front"), "{o}");
    let o = d.docker(&["network", "rm", "bridge"]);
    assert!(o.stderr.contains("pre-defined"), "{o:?}");
}

#[test]
fn internal_networks_reach_nothing_outside() {
    require_root!();
    let d = Daemon::start();
    let web_ip = {
        httpd(&d, "web", &[]);
        inspect(&d, "web", "{{.NetworkSettings.IPAddress}}")
    };
    d.docker(&["network", "create", "--internal", "--subnet", &d.net.subnet(1), "sealed"]).ok();
    d.docker(&["run", "-d", "--name", "peer", "--network", "sealed", "busybox", "sleep", "300"]).ok();
    let o = d.docker(&["run", "--rm", "--network", "sealed", "busybox", "sh", "-c", "ping -c1 -W2 peer && ip route"]);
    let out = o.ok();
    assert!(!out.contains("default"), "no default route on an internal network: {out}");
    assert_ne!(wget_from(&d, &["--network", "sealed"], &format!("http://{web_ip}/")).code, 0);
}

#[test]
fn daemon_crash_keeps_networking_and_never_reuses_addresses() {
    require_root!();
    let mut d = Daemon::start();
    let p = free_port();
    httpd(&d, "web", &["-p", &format!("127.0.0.1:{p}:80")]);
    d.docker(&["network", "create", "app"]).ok();
    d.docker(&["run", "-d", "--name", "db", "--network", "app", "busybox", "sleep", "300"]).ok();
    assert_eq!(fetch(&format!("http://127.0.0.1:{p}/")), "hello-from-web");
    let web_ip = inspect(&d, "web", "{{.NetworkSettings.IPAddress}}");
    let db_ip = inspect(&d, "db", "{{.NetworkSettings.Networks.app.IPAddress}}");

    d.crash_and_restart();
    assert_eq!(fetch(&format!("http://127.0.0.1:{p}/")), "hello-from-web");
    assert_eq!(inspect(&d, "web", "{{.NetworkSettings.IPAddress}}"), web_ip);
    // Names resolve again (the DNS server came back) and new containers get new addresses.
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 db >/dev/null && ip -4 -o addr show eth0",
    ]);
    let out = o.ok();
    assert!(!out.contains(&format!("{db_ip}/")), "{out}");
    let o = d.docker(&["run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(!o.ok().contains(&format!("{web_ip}/")));
    // The published port is still reserved and still programmed once.
    let rules = firewall_lines(&format!("--dport {p} "));
    assert_eq!(rules.len(), 1, "{rules:?}");
    d.docker(&["stop", "-t", "1", "web", "db"]).ok();
    assert_ne!(curl(&format!("http://127.0.0.1:{p}/")).code, 0);
    assert!(firewall_lines(&format!("--dport {p} ")).is_empty());
}

#[test]
fn nothing_is_left_after_containers_networks_and_the_daemon_are_gone() {
    require_root!();
    let mut d = Daemon::start();
    let net_id = d.docker(&["network", "create", "tmpnet"]).ok();
    let subnet = d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "tmpnet"]).ok();
    let mut ids = Vec::new();
    ids.push(httpd(&d, "a1", &["-p", &format!("127.0.0.1:{}:80", free_port())]));
    ids.push(httpd(&d, "a2", &["--network", "tmpnet", "-p", &format!("127.0.0.1:{}:80", free_port())]));
    d.docker(&["network", "connect", "tmpnet", "a1"]).ok();
    for id in &ids {
        d.docker(&["rm", "-f", id]).ok();
    }
    d.docker(&["network", "rm", "tmpnet"]).ok();
    let bridge = format!("br-{}", &net_id[..12]);
    assert!(ip_lines(&bridge).is_empty(), "{:?}", ip_lines(&bridge));
    assert!(ip_lines(&subnet).is_empty(), "{:?}", ip_lines(&subnet));
    d.stop();
    let prefix = d.net.chain_prefix();
    assert!(firewall_lines(&prefix).is_empty(), "{:?}", firewall_lines(&prefix));
    assert!(ip_lines(&d.net.bridge()).is_empty(), "{:?}", ip_lines(&d.net.bridge()));
    // The containers' veths go with their namespaces (the kernel frees them shortly after).
    for id in &ids {
        let veth = format!("sk{}", &id[..10]);
        assert!(eventually(Duration::from_secs(5), || ip_lines(&veth).is_empty()), "{:?}", ip_lines(&veth));
    }
}

/// Containers starting together on one network, each with a published port: their attaches
/// run side by side (the networks' data is never locked across a netlink request), and still
/// no address or port is handed out twice; `network ls` answers meanwhile; after `rm -f` of
/// them all (also together), the network goes with nothing left.
#[test]
fn containers_started_together_get_distinct_addresses_and_ports() {
    require_root!();
    let d = Daemon::start();
    let net_id = d.docker(&["network", "create", "togethernet"]).ok();
    const N: usize = 8;
    let ids: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..N)
            .map(|i| {
                let d = &d;
                s.spawn(move || httpd(d, &format!("tg{i}"), &["--network", "togethernet", "-p", "127.0.0.1::80"]))
            })
            .collect();
        // Listing networks while the attaches run.
        for _ in 0..5 {
            assert!(d.docker(&["network", "ls", "-q"]).ok().contains(&net_id[..12]));
        }
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for i in 0..N {
        let name = format!("tg{i}");
        let ip = inspect(&d, &name, "{{.NetworkSettings.Networks.togethernet.IPAddress}}");
        assert!(ips.insert(ip.clone()), "address {ip} handed out twice");
        let port = d.docker(&["port", &name, "80"]).ok();
        assert!(ports.insert(port.clone()), "host port {port} handed out twice");
        assert_eq!(fetch(&format!("http://{}/", port.lines().next().unwrap())), format!("hello-from-{name}"));
    }
    std::thread::scope(|s| {
        for id in &ids {
            let d = &d;
            s.spawn(move || d.docker(&["rm", "-f", id]).ok());
        }
    });
    d.docker(&["network", "rm", "togethernet"]).ok();
    let bridge = format!("br-{}", &net_id[..12]);
    assert!(ip_lines(&bridge).is_empty(), "{:?}", ip_lines(&bridge));
    for p in &ports {
        let port = p.rsplit(':').next().unwrap().trim();
        assert!(firewall_lines(&format!("--dport {port} ")).is_empty(), "rules of port {port} left");
    }
}

#[test]
fn network_modes_and_the_files_that_describe_the_network() {
    require_root!();
    let d = Daemon::start();
    // host: the host's interfaces (the daemon's bridge among them).
    let o = d.docker(&["run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"]);
    assert!(o.ok().contains(&d.net.bridge()));
    // none: loopback only.
    let o = d.docker(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    assert_eq!(o.ok().lines().count(), 1);
    // container:X shares X's interfaces.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "x1",
        "--hostname",
        "hx",
        "--mac-address",
        "02:42:0a:0b:0c:0d",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    let ip = inspect(&d, "x1", "{{.NetworkSettings.IPAddress}}");
    let o =
        d.docker(&["run", "--rm", "--network", "container:x1", "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(o.ok().contains(&format!("{ip}/24")));
    let link = d.docker(&["exec", "x1", "ip", "-o", "link", "show", "eth0"]).ok();
    assert!(link.contains("02:42:0a:0b:0c:0d"), "{link}");
    assert_eq!(inspect(&d, "x1", "{{.NetworkSettings.MacAddress}}"), "02:42:0a:0b:0c:0d");
    let hosts = d.docker(&["exec", "x1", "cat", "/etc/hosts"]).ok();
    assert!(hosts.contains(&format!("{ip}\thx")), "{hosts}");

    // --dns, --dns-search, --add-host (with host-gateway), --hostname.
    let gw = d.net.bip().split('/').next().unwrap().to_string();
    let o = d.docker(&[
        "run",
        "--rm",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "example.test",
        "--add-host",
        "db.local:10.1.2.3",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts; hostname",
    ]);
    let out = o.ok();
    assert!(out.contains("nameserver 10.9.9.9") && out.contains("search example.test"), "{out}");
    assert!(out.contains("10.1.2.3\tdb.local"), "{out}");
    assert!(out.contains(&format!("{gw}\thost.docker.internal")), "{out}");
    assert!(out.ends_with("box"), "{out}");
    // Links on the default bridge.
    let o = d.docker(&["run", "--rm", "--link", "x1:dbalias", "busybox", "ping", "-c1", "-W2", "dbalias"]);
    assert!(o.ok().contains(&ip));
}

#[test]
fn icc_false_isolates_containers_on_the_default_bridge() {
    require_root!();
    let d = Daemon::start_with(&["--icc=false"]);
    let p = free_port();
    httpd(&d, "web", &["-p", &format!("127.0.0.1:{p}:80")]);
    let ip = inspect(&d, "web", "{{.NetworkSettings.IPAddress}}");
    assert_ne!(wget_from(&d, &[], &format!("http://{ip}/")).code, 0);
    // Published ports still work.
    assert_eq!(fetch(&format!("http://127.0.0.1:{p}/")), "hello-from-web");
}

#[test]
fn docker_compose_v1_brings_up_a_two_service_project() {
    require_root!();
    if Command::new("docker-compose").arg("version").output().is_err() {
        panic!("docker-compose (Debian's, v1) is needed: scripts/install-deps.sh installs it");
    }
    let d = Daemon::start();
    let p = free_port();
    let dir = d.dir.join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    let yml = format!(
        r#"version: "3"
services:
  db:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo db-says-hi > /www/index.html && exec httpd -f -p 80 -h /www"]
  web:
    image: busybox
    depends_on: [db]
    ports: ["127.0.0.1:{p}:80"]
    command: ["sh", "-c", "mkdir -p /www; until wget -qO /www/index.html http://db/; do sleep 0.2; done; exec httpd -f -p 80 -h /www"]
"#
    );
    std::fs::write(dir.join("docker-compose.yml"), yml).unwrap();
    let compose = |args: &[&str]| {
        let o = Command::new("docker-compose")
            .args(["-p", "skt"])
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .output()
            .expect("docker-compose");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    compose(&["up", "-d"]).ok();
    assert_eq!(fetch(&format!("http://127.0.0.1:{p}/")), "db-says-hi");
    let ps = compose(&["ps"]).ok();
    assert!(ps.contains("skt_web_1") && ps.contains("Up"), "{ps}");
    compose(&["down", "-t", "1"]).ok();
    assert_eq!(d.docker(&["ps", "-aq"]).ok(), "");
    assert!(!d.docker(&["network", "ls"]).ok().contains("skt_default"));
}

/// Deletes the named links when dropped (test cleanup, also when an assertion fails).
struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(std::process::Stdio::null()).status();
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().unwrap().status.success()
}

#[test]
fn bridges_made_by_someone_else_are_used_and_left_in_place() {
    require_root!();
    let mut d = Daemon::start();
    let (made, theirs) = (format!("skxm{}", d.net.n), format!("skxt{}", d.net.n));
    let _cleanup = Links(vec![made.clone(), theirs.clone(), d.net.bridge()]);
    assert!(Command::new("ip").args(["link", "add", &theirs, "type", "bridge"]).status().unwrap().success());
    for (net, bridge, k) in [("made", &made, 1), ("theirs", &theirs, 2)] {
        d.docker(&[
            "network",
            "create",
            "--subnet",
            &d.net.subnet(k),
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            net,
        ])
        .ok();
        assert_eq!(d.docker(&["run", "--rm", "--network", net, "busybox", "true"]).code, 0);
    }
    d.docker(&["network", "rm", "made", "theirs"]).ok();
    assert!(!link_exists(&made), "the bridge skiffd made goes with its network");
    assert!(link_exists(&theirs), "a bridge that was there before the network stays");

    // The default bridge: skiffd's own goes at shutdown; one made by the administrator stays.
    d.stop();
    assert!(!link_exists(&d.net.bridge()), "skiffd removes the default bridge it made");
    assert!(Command::new("ip").args(["link", "add", &d.net.bridge(), "type", "bridge"]).status().unwrap().success());
    d.start_again();
    let gw = d.net.bip();
    let gw = gw.split('/').next().unwrap();
    let ping = d.docker(&["run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", gw]);
    assert_eq!(ping.code, 0, "the default network works on the administrator's bridge: {}", ping.stderr);
    d.stop();
    assert!(link_exists(&d.net.bridge()), "the administrator's default bridge is left in place");
    d.start_again();
}

/// A network namespace of the test's own, deleted even when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sk{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }
    fn run(&self, cmd: &[&str]) -> Out {
        let o = Command::new("nsenter").arg(format!("--net=/run/netns/{}", self.0)).args(cmd).output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Without `--bip`, the default bridge keeps its subnet from one start to the next — unless
/// another link took it while the daemon was down: then (no container running) the daemon
/// picks a free one, as dockerd elects docker0's anew, and its containers are reachable. Before,
/// it kept the taken subnet and traffic to its containers followed the other link's route.
#[test]
fn a_default_bridge_subnet_taken_while_the_daemon_was_down_is_replaced() {
    require_root!();
    let ns = Netns::new("bip");
    let mut d = Daemon::start_in_netns_choosing_bip(&ns.0, &[]);
    d.import_busybox("busybox");
    let subnet =
        |d: &Daemon| d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "bridge"]).ok();
    let first = subnet(&d);
    d.stop();
    d.start_again();
    assert_eq!(subnet(&d), first, "kept from one start to the next");
    d.stop();
    // Another link takes it (the daemon removed its bridge at shutdown, no container running).
    let (addr, prefix) = first.split_once('/').unwrap();
    let host = std::net::Ipv4Addr::from(u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap()) + 1);
    ns.run(&["ip", "link", "add", "sktaken", "type", "bridge"]).ok();
    ns.run(&["ip", "addr", "add", &format!("{host}/{prefix}"), "dev", "sktaken"]).ok();
    ns.run(&["ip", "link", "set", "sktaken", "up"]).ok();
    d.start_again();
    let second = subnet(&d);
    assert_ne!(second, first, "a subnet another link holds is not kept");
    let id = httpd(&d, "bipweb", &[]);
    let ip = inspect(&d, &id, "{{.NetworkSettings.IPAddress}}");
    let mut last = None;
    let ok = eventually(Duration::from_secs(10), || {
        let o = ns.run(&["curl", "-s", "-m", "2", &format!("http://{ip}/")]);
        let good = o.code == 0 && o.stdout.contains("hello-from-bipweb");
        last = Some(o);
        good
    });
    assert!(ok, "the container at {ip} in {second}: {last:?}");
    d.docker(&["rm", "-f", &id]).ok();
    d.stop();
}

/// Without `--bip`, a daemon with a fresh data root that finds its bridge already there with an
/// address takes that address's subnet, as dockerd takes an existing docker0's. Before, it
/// picked another subnet and added it: a bridge outliving daemons killed and started afresh
/// (moby's daemon tests do it dozens of times) gathered one address per start until the pools
/// ran out and the default network could not be made ("network bridge not found").
#[test]
fn a_fresh_daemon_takes_the_address_its_bridge_already_has() {
    require_root!();
    let ns = Netns::new("fresh");
    let mut d = Daemon::start_in_netns_choosing_bip(&ns.0, &[]);
    let subnet =
        |d: &Daemon| d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "bridge"]).ok();
    let first = subnet(&d);
    let bridge = d.net.bridge();
    for round in 0..3 {
        d.kill9();
        // A fresh data root; the bridge outlives the killed daemon with its address.
        std::fs::remove_dir_all(d.dir.join("data")).unwrap();
        d.start_again();
        assert_eq!(subnet(&d), first, "round {round}");
        let addrs = ns.run(&["ip", "-4", "-o", "addr", "show", "dev", &bridge]).ok();
        assert_eq!(addrs.lines().count(), 1, "round {round}: {addrs}");
    }
    d.stop();
}
