//! Swarm services across hosts, driven by the docker CLI as a user would: replicas spread over
//! the nodes, scaling, a killed worker's tasks rescheduled on the others (and its containers
//! stopped, not duplicated, when it comes back), drain, a start-first rolling update and its
//! rollback, global mode, removal leaving no container behind.

use std::time::Duration;

use skiff_e2e::rig::Rig;
use skiff_e2e::{Daemon, eventually, require_root};

const IMAGE: &str = "skiff-e2e-svc:1";
const IMAGE2: &str = "skiff-e2e-svc:2";

fn node_id(d: &Daemon) -> String {
    d.docker(&["info", "--format", "{{.Swarm.NodeID}}"]).ok().trim().to_string()
}

/// `NODE STATE IMAGE` of each task of `service` the managers want running.
fn running(d: &Daemon, service: &str) -> Vec<(String, String, String)> {
    let ids = d.docker(&["service", "ps", "-q", "-f", "desired-state=running", service]).stdout;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args =
        vec!["inspect", "--type", "task", "--format", "{{.NodeID}} {{.Status.State}} {{.Spec.ContainerSpec.Image}}"];
    args.extend(ids);
    d.docker(&args)
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

/// Whether `service` has `n` tasks running, all on `allowed` nodes (any when empty) and of
/// `image` (any when empty).
fn converged(d: &Daemon, service: &str, n: usize, allowed: &[&str], image: &str) -> bool {
    let r = running(d, service);
    r.len() == n
        && r.iter().all(|(node, state, img)| {
            state == "running"
                && (allowed.is_empty() || allowed.contains(&node.as_str()))
                && (image.is_empty() || img.starts_with(image))
        })
}

/// Running containers of `service` on the host of `d`.
fn containers(d: &Daemon, service: &str) -> usize {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    d.docker(&["ps", "-q", "--filter", &filter]).stdout.split_whitespace().count()
}

fn wait(what: &str, d: &Daemon, f: impl FnMut() -> bool) {
    assert!(
        eventually(Duration::from_secs(40), f),
        "{what}:\n{}\n{}",
        d.docker(&["service", "ps", "--no-trunc", "web"]).stdout,
        d.log()
    );
}

#[test]
fn services_spread_scale_survive_a_lost_node_and_roll_through_updates() {
    require_root!();
    let rig = Rig::new(3);
    let mut d: Vec<Daemon> = rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &[])).collect();
    for x in d.iter_mut() {
        x.import_busybox(IMAGE);
        x.docker(&["tag", IMAGE, IMAGE2]).ok();
    }
    d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0], "--dispatcher-heartbeat", "1s"]).ok();
    let worker = d[0].docker(&["swarm", "join-token", "-q", "worker"]).ok().trim().to_string();
    let addr0 = format!("{}:2377", rig.addrs[0]);
    for (x, addr) in d.iter().zip(&rig.addrs).skip(1) {
        x.docker(&["swarm", "join", "--token", &worker, "--advertise-addr", addr, &addr0]).ok();
    }
    let ids: Vec<String> = d.iter().map(node_id).collect();
    let ready = || d[0].docker(&["node", "ls"]).stdout.matches("Ready").count() == 3;
    assert!(eventually(Duration::from_secs(20), ready));

    // Created the way users do, waiting with the CLI's progress until the service converges.
    let out = d[0].docker(&["service", "create", "--name", "web", "--replicas", "3", IMAGE, "sleep", "100000"]);
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, d[0].log());
    assert!(out.stdout.contains("converged"), "{}", out.stdout);
    let r = running(&d[0], "web");
    let mut nodes: Vec<&str> = r.iter().map(|(n, _, _)| n.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one replica per node: {r:?}");
    assert!(d.iter().all(|x| containers(x, "web") == 1));
    let ls = d[0].docker(&["service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}"]).ok();
    assert_eq!(ls.trim(), "web replicated 3/3");
    let again = d[0].docker(&["service", "create", "--name", "web", IMAGE]);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    d[0].docker(&["service", "scale", "-d", "web=5"]).ok();
    wait("scaled to 5", &d[0], || converged(&d[0], "web", 5, &[], ""));

    // A worker's daemon killed: it is marked down and its tasks run elsewhere.
    d[2].kill9();
    let others = [ids[0].as_str(), ids[1].as_str()];
    wait("rescheduled off the lost node", &d[0], || converged(&d[0], "web", 5, &others, ""));
    // Back, it stops the containers of the tasks it lost; nothing runs twice.
    d[2].start_again();
    wait("the returning node's old tasks stopped", &d[0], || containers(&d[2], "web") == 0);
    assert_eq!(running(&d[0], "web").len(), 5);

    // Drained, a node's tasks move.
    d[0].docker(&["node", "update", "--availability", "drain", &ids[1]]).ok();
    let left = [ids[0].as_str(), ids[2].as_str()];
    wait("drained", &d[0], || converged(&d[0], "web", 5, &left, "") && containers(&d[1], "web") == 0);
    d[0].docker(&["node", "update", "--availability", "active", &ids[1]]).ok();

    // A start-first rolling update to another image, then back with rollback.
    d[0].docker(&[
        "service",
        "update",
        "-d",
        "--image",
        IMAGE2,
        "--update-order",
        "start-first",
        "--update-parallelism",
        "2",
        "web",
    ])
    .ok();
    wait("updated", &d[0], || converged(&d[0], "web", 5, &[], IMAGE2));
    let state = d[0].docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", "web"]).ok();
    assert!(
        eventually(Duration::from_secs(10), || d[0]
            .docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", "web"])
            .stdout
            .trim()
            == "completed"),
        "{state}"
    );
    d[0].docker(&["service", "rollback", "-d", "web"]).ok();
    wait("rolled back", &d[0], || converged(&d[0], "web", 5, &[], IMAGE));
    let status = |d: &Daemon| d.docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", "web"]).stdout;
    assert!(eventually(Duration::from_secs(20), || status(&d[0]).trim() == "rollback_completed"), "{}", status(&d[0]));

    // An update whose new tasks fail rolls back by itself.
    let failing = ["service", "update", "-d", "--args", "sh -c 'exit 3'", "--update-failure-action", "rollback", "web"];
    d[0].docker(&failing).ok();
    wait("rolled back after a failure", &d[0], || {
        status(&d[0]).trim() == "rollback_completed" && converged(&d[0], "web", 5, &[], IMAGE)
    });
    let args =
        d[0].docker(&["service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}", "web"]).ok();
    assert_eq!(args.trim(), r#"["sleep","100000"]"#);
    let errors = d[0].docker(&["service", "ps", "--no-trunc", "--format", "{{.Error}}", "web"]).ok();
    assert!(errors.contains("task: non-zero exit (3)"), "the failed task stays in the history: {errors}");

    // Global mode: one task per node that takes work.
    d[0].docker(&["service", "create", "-d", "--mode", "global", "--name", "agent", IMAGE, "sleep", "100000"]).ok();
    wait("global", &d[0], || converged(&d[0], "agent", 3, &[], ""));

    // Removed: no container of either service is left on any host.
    d[0].docker(&["service", "rm", "web", "agent"]).ok();
    let gone = || {
        d.iter().all(|x| {
            let all = x.docker(&["ps", "-aq", "--filter", "label=com.docker.swarm.task"]).stdout;
            all.trim().is_empty()
        })
    };
    assert!(eventually(Duration::from_secs(40), gone), "containers are left");
    assert!(d[0].docker(&["service", "ls", "-q"]).ok().trim().is_empty());
    drop(d);
    drop(rig);
}

/// Files under `dir` holding `needle` (contents, not names).
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", "-F"])
        .arg(std::str::from_utf8(needle).unwrap())
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn secrets_and_configs_reach_only_their_tasks_on_a_tmpfs_and_never_a_disk() {
    require_root!();
    let rig = Rig::new(2);
    let mut d: Vec<Daemon> = rig.netns.iter().map(|ns| Daemon::start_in_netns(ns, &[])).collect();
    for x in d.iter_mut() {
        x.import_busybox(IMAGE);
    }
    d[0].docker(&["swarm", "init", "--advertise-addr", &rig.addrs[0]]).ok();
    // A global service started on a one-node swarm gets a task on each node that joins.
    d[0].docker(&["service", "create", "-d", "--mode", "global", "--name", "everywhere", IMAGE, "sleep", "100000"])
        .ok();
    wait("global on one node", &d[0], || converged(&d[0], "everywhere", 1, &[], ""));
    let worker = d[0].docker(&["swarm", "join-token", "-q", "worker"]).ok().trim().to_string();
    d[1].docker(&[
        "swarm",
        "join",
        "--token",
        &worker,
        "--advertise-addr",
        &rig.addrs[1],
        &format!("{}:2377", rig.addrs[0]),
    ])
    .ok();
    let wid = node_id(&d[1]);
    let both = [node_id(&d[0]), wid.clone()];
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    wait("global on the joining node", &d[0], || {
        converged(&d[0], "everywhere", 2, &both, "") && containers(&d[1], "everywhere") == 1
    });
    d[0].docker(&["service", "rm", "everywhere"]).ok();
    let secret = b"s3cret-e2e-value-7f1c";
    d[0].docker_stdin(&["secret", "create", "pw", "-"], secret).ok();
    d[0].docker_stdin(&["config", "create", "app.conf", "-"], b"listen 80\n").ok();
    let dup = d[0].docker_stdin(&["secret", "create", "pw", "-"], b"x");
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let bad = d[0].docker(&["service", "create", "-d", "--secret", "nope", IMAGE]);
    assert_ne!(bad.code, 0, "an unknown secret");

    d[0].docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "sec",
        "--constraint",
        "node.role==worker",
        "--secret",
        "pw",
        "--secret",
        "source=pw,target=/etc/pw2,mode=0400",
        "--config",
        "source=app.conf,target=/etc/app.conf",
        IMAGE,
        "sleep",
        "100000",
    ])
    .ok();
    wait("the task with secrets", &d[0], || converged(&d[0], "sec", 1, &[wid.as_str()], ""));
    let ctr = d[1].docker(&["ps", "-q", "--filter", "label=com.docker.swarm.service.name=sec"]).ok().trim().to_string();
    assert_eq!(d[1].docker(&["exec", &ctr, "cat", "/run/secrets/pw"]).ok().as_bytes(), secret);
    assert_eq!(d[1].docker(&["exec", &ctr, "stat", "-c", "%a", "/etc/pw2"]).ok().trim(), "400");
    assert_eq!(d[1].docker(&["exec", &ctr, "cat", "/etc/app.conf"]).stdout, "listen 80\n");
    let write = d[1].docker(&["exec", &ctr, "sh", "-c", "echo x > /run/secrets/pw"]);
    assert_ne!(write.code, 0, "secrets are read-only");

    // In memory only: a tmpfs under the worker's exec root, nothing in any data root.
    let exec_root = d[1].data_root().parent().unwrap().to_path_buf();
    let tmpfs = |root: &std::path::Path| {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("tmpfs ") && l.contains("swarm-files") && l.contains(root.to_str().unwrap()))
            .count()
    };
    assert_eq!(tmpfs(&exec_root), 1);
    for x in &d {
        assert_eq!(files_holding(&x.data_root(), secret), Vec::<String>::new(), "the secret is on a disk");
    }
    let inspect = d[0].docker(&["secret", "inspect", "pw"]).ok();
    assert!(!inspect.contains("\"Data\""), "a secret's data is never shown: {inspect}");
    let cfg = d[0].docker(&["config", "inspect", "--format", "{{json .Spec.Data}}", "app.conf"]).ok();
    assert_eq!(cfg.trim(), "\"bGlzdGVuIDgwCg==\"");
    let rm = d[0].docker(&["secret", "rm", "pw"]);
    assert!(rm.stderr.contains("in use by the following service: sec"), "{}", rm.stderr);

    logs_health_and_ports(&d, &rig, &wid);

    // Gone with the task.
    d[0].docker(&["service", "rm", "sec"]).ok();
    assert!(eventually(Duration::from_secs(30), || tmpfs(&exec_root) == 0 && containers(&d[1], "sec") == 0));
    d[0].docker(&["secret", "rm", "pw"]).ok();
    d[0].docker(&["config", "rm", "app.conf"]).ok();
    assert!(d[0].docker(&["secret", "ls", "-q"]).ok().trim().is_empty());
    drop(d);
    drop(rig);
}

/// Service logs from two nodes, a health check gating `running` (and an unhealthy task
/// failing), and a host-mode published port answering on the task's node.
fn logs_health_and_ports(d: &[Daemon], rig: &Rig, wid: &str) {
    // Logs of a service's tasks on both nodes, as `docker service logs` shows them.
    let talker = ["service", "create", "-d", "--name", "talker", "--replicas", "2", "--env", "SLOT={{.Task.Slot}}"];
    let mut talker = talker.to_vec();
    talker.extend([IMAGE, "sh", "-c", "echo hello-from-$SLOT; sleep 100000"]);
    d[0].docker(&talker).ok();
    wait("talker", &d[0], || converged(&d[0], "talker", 2, &[], ""));
    let logs = || d[0].docker(&["service", "logs", "talker"]);
    assert!(
        eventually(Duration::from_secs(20), || {
            let out = logs().stdout;
            out.contains("hello-from-1") && out.contains("hello-from-2")
        }),
        "{:?}",
        logs()
    );
    let out = logs();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.lines().all(|l| l.starts_with("talker.") && l.contains("@") && l.contains(" | hello-from-")),
        "{}",
        out.stdout
    );
    let raw = d[0].docker(&["service", "logs", "--raw", "--tail", "1", "talker"]).ok();
    assert_eq!(raw.lines().count(), 2, "{raw}");
    d[0].docker(&["service", "rm", "talker"]).ok();

    // A health check gates `running`; a task that turns unhealthy fails and is replaced.
    let healthy = [
        "service",
        "create",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "test -f /tmp/ready",
        "--health-interval",
        "500ms",
        "--health-retries",
        "20",
    ];
    let mut healthy = healthy.to_vec();
    healthy.extend([IMAGE, "sh", "-c", "sleep 2; touch /tmp/ready; sleep 100000"]);
    d[0].docker(&healthy).ok();
    let mut seen = std::collections::BTreeSet::new();
    assert!(eventually(Duration::from_secs(30), || {
        for (_, state, _) in running(&d[0], "slow") {
            seen.insert(state);
        }
        seen.contains("running")
    }));
    assert!(seen.contains("starting"), "starting until healthy: {seen:?}");
    let sick = [
        "service",
        "create",
        "-d",
        "--name",
        "sick",
        "--health-cmd",
        "false",
        "--health-interval",
        "500ms",
        "--health-retries",
        "1",
    ];
    let mut sick = sick.to_vec();
    sick.extend([IMAGE, "sleep", "100000"]);
    d[0].docker(&sick).ok();
    let errors = || d[0].docker(&["service", "ps", "--no-trunc", "--format", "{{.Error}}", "sick"]).stdout;
    assert!(eventually(Duration::from_secs(30), || errors().contains("container is unhealthy")), "{}", errors());
    d[0].docker(&["service", "rm", "slow", "sick"]).ok();

    // A port published in host mode answers on the node that runs the task.
    let publish = ["service", "create", "-d", "--name", "webby", "--constraint", "node.role==worker"];
    let mut publish = publish.to_vec();
    publish.extend(["--publish", "published=8089,target=80,mode=host", IMAGE, "httpd", "-f", "-p", "80", "-h", "/etc"]);
    d[0].docker(&publish).ok();
    wait("webby", &d[0], || converged(&d[0], "webby", 1, &[wid], ""));
    let url = format!("http://{}:8089/hostname", rig.addrs[1]);
    let curl = || {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", rig.netns[0]))
            .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(eventually(Duration::from_secs(20), || curl() == "200"), "{}", curl());
    d[0].docker(&["service", "rm", "webby"]).ok();
}
