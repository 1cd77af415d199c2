//! Overlay networks across hosts, driven by the docker CLI as a user would: `network create -d
//! overlay` on a manager, services on it whose tasks on two hosts reach each other over VXLAN
//! (a 96 KB page, so the overlay's MTU matters) and by name through each node's embedded DNS
//! (the service's virtual IP, balanced over its tasks; `tasks.NAME`; a DNS round-robin
//! service's alias), the network refused removal while in use and gone from
//! every node after; the routing mesh (a port published on every node, answered by a task on
//! another); then `docker stack deploy` of a compose file (its network, secret, config, two
//! services talking by their short names, a port through the mesh) and `stack rm` leaving
//! nothing; and `--with-registry-auth` letting a worker that never logged in pull from a
//! registry that wants a login.

use std::process::Command;
use std::time::Duration;

use skiff_e2e::rig::Rig;
use skiff_e2e::{Daemon, eventually, require_root};

const IMAGE: &str = "skiff-e2e-ov:1";

fn wait(what: &str, d: &Daemon, f: impl FnMut() -> bool) {
    assert!(eventually(Duration::from_secs(40), f), "{what}:\n{}\n{}", d.docker(&["service", "ls"]).stdout, d.log());
}

fn running_tasks(d: &Daemon, service: &str) -> usize {
    let out = d.docker(&["service", "ps", "-q", "-f", "desired-state=running", service]).stdout;
    let ids: Vec<&str> = out.split_whitespace().collect();
    if ids.is_empty() {
        return 0;
    }
    let mut args = vec!["inspect", "--type", "task", "--format", "{{.Status.State}}"];
    args.extend(ids);
    d.docker(&args).stdout.lines().filter(|l| l.trim() == "running").count()
}

/// The running container of `service` on the host of `d`.
fn container(d: &Daemon, service: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    d.docker(&["ps", "-q", "--filter", &filter]).stdout.split_whitespace().next().unwrap_or_default().to_string()
}

/// The links of overlay `id` (`ov-…`, `vx-…`) in the host namespace of rig host `k`.
fn overlay_links(rig: &Rig, k: usize, id: &str) -> Vec<String> {
    let (ov, vx) = (format!("ov-{}", &id[..12]), format!("vx-{}", &id[..12]));
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", rig.netns[k]))
        .args(["ip", "-br", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&ov) || n.starts_with(&vx))
        .map(str::to_string)
        .collect()
}

#[test]
fn services_on_an_overlay_reach_each_other_across_hosts_by_name_and_stacks_deploy() {
    require_root!();
    let rig = Rig::new(2);
    // The manager's host also serves a registry that wants a login (see `registry_auth`).
    let registry = format!("{}:5000", rig.addrs[0]);
    let mut d: Vec<Daemon> =
        rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &["--insecure-registry", &registry])).collect();
    for x in d.iter_mut() {
        x.import_busybox(IMAGE);
    }
    d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0], "--dispatcher-heartbeat", "1s"]).ok();
    let token = d[0].docker(&["swarm", "join-token", "-q", "worker"]).ok();
    let addr0 = format!("{}:2377", rig.addrs[0]);
    d[1].docker(&["swarm", "join", "--token", &token, "--advertise-addr", &rig.addrs[1], &addr0]).ok();
    assert!(eventually(Duration::from_secs(20), || d[0].docker(&["node", "ls"]).stdout.matches("Ready").count() == 2));

    // Made on a manager, listed with the swarm's scope.
    let id = d[0].docker(&["network", "create", "-d", "overlay", "front"]).ok();
    let ls = d[0].docker(&["network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}} {{.Scope}}"]).ok();
    assert_eq!(ls, "front swarm\ningress swarm");
    let net = d[0].docker(&["network", "inspect", "--format", "{{.Driver}} {{json .IPAM.Config}}", "front"]).ok();
    assert_eq!(
        net, r#"overlay [{"Subnet":"10.0.1.0/24","Gateway":"10.0.1.1"}]"#,
        "the ingress network has 10.0.0.0/24"
    );
    let ingress = d[0].docker(&["network", "inspect", "--format", "{{.Ingress}} {{.Scope}}", "ingress"]).ok();
    assert_eq!(ingress, "true swarm", "made at init, as dockerd makes it");
    let again = d[0].docker(&["network", "create", "-d", "overlay", "front"]);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let on_worker = d[1].docker(&["network", "create", "-d", "overlay", "x"]);
    assert!(on_worker.stderr.contains("not a swarm manager"), "{}", on_worker.stderr);

    // A web server with one task per host (a 96 KB page ending with its container's name),
    // and a client on every host.
    let page = "seq 1 18000 > /var/www/index.html; hostname >> /var/www/index.html; httpd -f -p 80 -h /var/www";
    let web = ["--name", "web", "--network", "front", "--replicas", "2", "--replicas-max-per-node", "1"];
    let mut args = vec!["service", "create", "-d"];
    args.extend(web);
    args.extend([IMAGE, "sh", "-c", page]);
    d[0].docker(&args).ok();
    let client =
        ["--name", "client", "--network", "name=front,alias=cl", "--mode", "global", "--endpoint-mode", "dnsrr"];
    let mut args = vec!["service", "create", "-d"];
    args.extend(client);
    args.extend([IMAGE, "sleep", "100000"]);
    d[0].docker(&args).ok();
    wait("web and client", &d[0], || running_tasks(&d[0], "web") == 2 && running_tasks(&d[0], "client") == 2);
    let plain = d[0].docker(&["run", "-d", "--network", "front", IMAGE, "sleep", "1"]);
    assert!(plain.stderr.contains("swarm services' tasks only"), "{}", plain.stderr);

    // Each host's web task, by address: reached from the client on the other host.
    let web_ip = |x: &Daemon| {
        let c = container(x, "web");
        x.docker(&["inspect", "--format", "{{.NetworkSettings.Networks.front.IPAddress}}", &c]).ok()
    };
    let (ip0, ip1) = (web_ip(&d[0]), web_ip(&d[1]));
    let vips =
        d[0].docker(&["service", "inspect", "--format", "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}", "web"]).ok();
    let vip = vips.strip_suffix("/24").unwrap_or_else(|| panic!("one VIP on front: {vips}")).to_string();
    assert!(ip0.starts_with("10.0.1.") && ip1.starts_with("10.0.1.") && ip0 != ip1, "{ip0} {ip1}");
    for (x, other_ip, other) in [(&d[0], &ip1, &d[1]), (&d[1], &ip0, &d[0])] {
        let c = container(x, "client");
        let body = x.docker(&["exec", &c, "wget", "-qO-", &format!("http://{other_ip}/")]).ok();
        assert!(body.len() > 90_000, "the whole page crossed the tunnel: {} bytes", body.len());
        assert_eq!(body.lines().last().unwrap(), &container(other, "web")[..12], "the other host's task answered");
        // By name, through the node's embedded DNS: the service, its tasks, the client's alias.
        let all = |name: &str| {
            let out = x.docker(&["exec", &c, "nslookup", name]).stdout;
            let mut ips: Vec<String> = out
                .lines()
                .skip_while(|l| !l.starts_with("Name:"))
                .filter_map(|l| l.strip_prefix("Address:").map(|a| a.trim().to_string()))
                .collect();
            ips.sort();
            ips
        };
        let mut both = vec![ip0.clone(), ip1.clone()];
        both.sort();
        assert!(eventually(Duration::from_secs(10), || all("tasks.web") == both), "{:?}", all("tasks.web"));
        // VIP mode (the default): the name is one virtual IP, balanced over both tasks; the
        // clients' service is DNS round-robin, so its alias is both clients' addresses.
        assert_eq!(all("web"), std::slice::from_ref(&vip), "the virtual IP");
        assert_eq!(all("cl").len(), 2, "the clients' alias");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let body = x.docker(&["exec", &c, "wget", "-qO-", "http://web/"]).ok();
            assert!(body.len() > 90_000);
            seen.insert(body.lines().last().unwrap().to_string());
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen.len(), 2, "connections to the VIP reach both tasks: {seen:?}");
    }

    // In use, it stays; once its services are gone, it goes from the managers and every node.
    let rm = d[0].docker(&["network", "rm", "front"]);
    assert!(rm.stderr.contains("is in use by service"), "{}", rm.stderr);
    let local = d[1].docker(&["network", "rm", &id]);
    assert!(local.stderr.contains("swarm network"), "{}", local.stderr);
    d[0].docker(&["service", "rm", "web", "client"]).ok();
    d[0].docker(&["network", "rm", "front"]).ok();
    for (k, x) in d.iter().enumerate() {
        let gone = || overlay_links(&rig, k, &id).is_empty() && !x.docker(&["network", "ls"]).stdout.contains("front");
        assert!(eventually(Duration::from_secs(30), gone), "host {k}: {:?}", overlay_links(&rig, k, &id));
    }

    mesh(&d, &rig);
    stack(&d, &rig);
    registry_auth(&d, &rig, &registry);
    drop(d);
    drop(rig);
}

/// `--with-registry-auth`: an image in a registry that wants a login, pushed from the manager
/// (logged in), runs on the worker (never logged in, without the image) only when the
/// service carries the client's credentials.
fn registry_auth(d: &[Daemon], rig: &Rig, registry: &str) {
    let dir = std::env::temp_dir().join(format!("skiff-e2e-regauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The registry and its directory go however the test ends.
    let mut cleanup = Cleanup { child: None, dir: dir.clone() };
    let skiff = skiff_e2e::bin_dir().join("skiff");
    let htp = dir.join("htpasswd");
    let mut c = Command::new(&skiff)
        .args(["registry", "htpasswd", htp.to_str().unwrap(), "alice"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    c.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    assert!(c.wait().unwrap().success());
    cleanup.child = Some(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", rig.netns[0]))
            .arg(&skiff)
            .args(["registry", "serve", "--addr", registry, "--root", dir.join("root").to_str().unwrap()])
            .args(["--htpasswd", htp.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let image = format!("{registry}/private/app:1");
    d[0].docker(&["tag", IMAGE, &image]).ok();
    let login = d[0].docker_stdin(&["login", "-u", "alice", "--password-stdin", registry], b"s3cret");
    assert!(
        eventually(Duration::from_secs(10), || {
            let l = d[0].docker_stdin(&["login", "-u", "alice", "--password-stdin", registry], b"s3cret");
            l.code == 0
        }),
        "{login:?}"
    );
    d[0].docker(&["push", &image]).ok();
    // Without the client's credentials the worker cannot pull: the task is rejected.
    let args = ["service", "create", "-d", "--name", "nocreds", "--constraint", "node.role==worker"];
    let mut args = args.to_vec();
    args.extend([image.as_str(), "sleep", "100000"]);
    d[0].docker(&args).ok();
    let rejected = || {
        d[0].docker(&["service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", "nocreds"])
            .stdout
            .contains("Rejected")
    };
    assert!(
        eventually(Duration::from_secs(30), rejected),
        "{}",
        d[0].docker(&["service", "ps", "--no-trunc", "nocreds"]).stdout
    );
    d[0].docker(&["service", "rm", "nocreds"]).ok();
    // With them, it runs.
    let args =
        ["service", "create", "-d", "--with-registry-auth", "--name", "creds", "--constraint", "node.role==worker"];
    let mut args = args.to_vec();
    args.extend([image.as_str(), "sleep", "100000"]);
    d[0].docker(&args).ok();
    wait("the service pulled with the client's login", &d[0], || running_tasks(&d[0], "creds") == 1);
    assert!(!container(&d[1], "creds").is_empty(), "it runs on the worker");
    let inspect = d[0].docker(&["service", "inspect", "creds"]).ok();
    assert!(!inspect.contains("s3cret"), "credentials are never shown: {inspect}");
    d[0].docker(&["service", "rm", "creds"]).ok();
}

/// A helper process and a directory, gone when dropped (also when an assertion fails).
struct Cleanup {
    child: Option<std::process::Child>,
    dir: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `curl` of `port` at rig host `to`'s address, from rig host `from`'s namespace: the body.
fn curl(rig: &Rig, from: usize, to: &str, port: u16) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", rig.netns[from]))
        .args(["curl", "-s", "--max-time", "3", &format!("http://{to}:{port}/")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The routing mesh: one task on the worker, its port answered on every node's addresses
/// (and on a node's 127.0.0.1) by that task; gone with the service.
fn mesh(d: &[Daemon], rig: &Rig) {
    let page = "hostname > /var/www/index.html; httpd -f -p 80 -h /var/www";
    let args = ["service", "create", "-d", "--name", "mesh", "-p", "8080:80", "--constraint", "node.role==worker"];
    let mut args = args.to_vec();
    args.extend([IMAGE, "sh", "-c", page]);
    d[0].docker(&args).ok();
    wait("the mesh's task", &d[0], || running_tasks(&d[0], "mesh") == 1);
    let task = container(&d[1], "mesh")[..12].to_string();
    let ports = d[0].docker(&["service", "inspect", "--format", "{{json .Endpoint.Ports}}", "mesh"]).ok();
    assert!(ports.contains(r#""PublishMode":"ingress""#) && ports.contains(r#""PublishedPort":8080"#), "{ports}");
    for from in 0..2 {
        for to in rig.addrs.iter().map(String::as_str).chain(["127.0.0.1"]) {
            let got = || curl(rig, from, to, 8080) == task;
            assert!(
                eventually(Duration::from_secs(10), got),
                "{to}:8080 from host {from}: {:?}",
                curl(rig, from, to, 8080)
            );
        }
    }
    // A second service cannot take the port; one without a published port gets one of the
    // managers' choosing.
    let clash = d[0].docker(&["service", "create", "-d", "-p", "8080:80", IMAGE, "sleep", "1"]);
    assert!(clash.stderr.contains("already in use by service 'mesh'"), "{}", clash.stderr);
    d[0].docker(&["service", "create", "-d", "--name", "auto", "-p", "80", IMAGE, "sleep", "100000"]).ok();
    let auto =
        d[0].docker(&["service", "inspect", "--format", "{{range .Endpoint.Ports}}{{.PublishedPort}}{{end}}", "auto"]);
    assert_eq!(auto.ok(), "30000");
    d[0].docker(&["service", "rm", "auto"]).ok();
    d[0].docker(&["service", "rm", "mesh"]).ok();
    assert!(eventually(Duration::from_secs(20), || curl(rig, 0, &rig.addrs[0], 8080).is_empty()));
}

/// `docker stack deploy`: the CLI makes the stack's network, secret, config and services; the
/// services reach each other by their short names; `stack rm` removes all of it.
fn stack(d: &[Daemon], rig: &Rig) {
    let dir = std::env::temp_dir().join(format!("skiff-e2e-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = Cleanup { child: None, dir: dir.clone() };
    std::fs::write(dir.join("pw.txt"), "hunter2\n").unwrap();
    std::fs::write(dir.join("app.conf"), "listen 80\n").unwrap();
    let compose = format!(
        r#"version: "3.8"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "cat /run/secrets/pw /etc/app.conf > /var/www/index.html; exec httpd -f -p 80 -h /var/www"]
    deploy:
      replicas: 2
    ports: ["8081:80"]
    secrets: [pw]
    configs:
      - source: app
        target: /etc/app.conf
  client:
    image: {IMAGE}
    command: ["sleep", "100000"]
    deploy:
      mode: global
secrets:
  pw:
    file: ./pw.txt
configs:
  app:
    file: ./app.conf
"#
    );
    let file = dir.join("compose.yml");
    std::fs::write(&file, compose).unwrap();
    let out = d[0].docker(&["stack", "deploy", "-c", file.to_str().unwrap(), "app"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Creating network app_default"), "{}", out.stdout);
    assert_eq!(d[0].docker(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"]).ok(), "app 2");
    wait("the stack", &d[0], || running_tasks(&d[0], "app_web") == 2 && running_tasks(&d[0], "app_client") == 2);
    let services = d[0].docker(&["stack", "services", "--format", "{{.Name}} {{.Replicas}}", "app"]).ok();
    assert!(services.contains("app_web 2/2"), "{services}");
    for x in d {
        let c = container(x, "app_client");
        let get = |name: &str| x.docker(&["exec", &c, "wget", "-qO-", &format!("http://{name}/")]);
        assert!(eventually(Duration::from_secs(10), || get("web").code == 0), "{:?}", get("web"));
        assert_eq!(get("web").stdout, "hunter2\nlisten 80\n", "by its short name");
        assert_eq!(get("app_web").stdout, "hunter2\nlisten 80\n", "by its full name");
    }
    assert_eq!(curl(rig, 1, &rig.addrs[0], 8081), "hunter2\nlisten 80", "through the mesh");
    let ps = d[0].docker(&["stack", "ps", "--format", "{{.Name}} {{.CurrentState}}", "app"]).ok();
    assert_eq!(ps.lines().filter(|l| l.contains("Running")).count(), 4, "{ps}");
    let rm = d[0].docker(&["stack", "rm", "app"]);
    assert_eq!(rm.code, 0, "{}\n{}", rm.stdout, rm.stderr);
    let empty = || {
        d[0].docker(&["service", "ls", "-q"]).stdout.trim().is_empty()
            && d[0].docker(&["secret", "ls", "-q"]).stdout.trim().is_empty()
            && d[0].docker(&["config", "ls", "-q"]).stdout.trim().is_empty()
            && !d[0].docker(&["network", "ls"]).stdout.contains("app_default")
    };
    // The tasks stop first (SIGTERM, then SIGKILL after the 10 s grace period, as with
    // dockerd); each node drops the network after its last one.
    if !eventually(Duration::from_secs(30), empty) {
        let show = |what: &[&str]| d[0].docker(what).stdout;
        panic!(
            "services:\n{}secrets:\n{}configs:\n{}networks:\n{}containers:\n{}",
            show(&["service", "ls"]),
            show(&["secret", "ls"]),
            show(&["config", "ls"]),
            show(&["network", "ls"]),
            show(&["ps", "-a"])
        );
    }
    assert!(eventually(Duration::from_secs(30), || d.iter().all(|x| container(x, "app_client").is_empty())));
}
