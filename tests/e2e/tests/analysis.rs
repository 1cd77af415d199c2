//! "Is it the host or the container?" as a user asks it: `skiff diagnose` on a busy container
//! held by `--cpus 0.2` says CPU quota; a container unlimited and wanting every CPU, while the
//! host runs more busy processes than CPUs outside any container, says host CPU saturation; a container
//! filling its `--memory` says memory limit; `skiff top --once --format json` lists every
//! running container with its fields; `docker stats` carries throttling and skiff's own
//! fields; the metrics endpoint parses with Prometheus' own text parser. Not timed: the
//! verdicts are what is checked. One test, in order, so the host-saturation step cannot
//! disturb the others.

use std::process::{Child, Command, Stdio};

use skiff_e2e::{Daemon, require_root};

const IMAGE: &str = "skiff-e2e-perf:1";

fn diagnose(d: &Daemon, name: &str, seconds: &str) -> serde_json::Value {
    let out = d.skiff(&["diagnose", "--seconds", seconds, "--format", "json", name]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn verdicts(r: &serde_json::Value) -> Vec<String> {
    r["findings"].as_array().unwrap().iter().map(|f| f["verdict"].as_str().unwrap().to_string()).collect()
}

/// Busy loops outside any container, one more than twice the CPUs; killed when dropped.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start() -> Hogs {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2 + 1;
        Hogs(
            (0..n)
                .map(|_| {
                    Command::new("sh").args(["-c", "while :; do :; done"]).stdout(Stdio::null()).spawn().expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `skiff top` in a pseudo-terminal for three seconds, then `q`: what it drew (it must exit 0).
fn live_view(d: &Daemon) -> String {
    let skiff = skiff_e2e::bin_dir().join("skiff");
    let cmd = format!("stty rows 30 cols 160; {} -H unix://{} top", skiff.display(), d.socket.display());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    std::thread::sleep(std::time::Duration::from_secs(3));
    use std::io::Write as _;
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "skiff top did not end cleanly: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn diagnose_top_stats_and_metrics_answer_host_or_container() {
    require_root!();
    let port = 9300 + (std::process::id() % 500) as u16;
    let metrics = format!("127.0.0.1:{port}");
    let mut d = Daemon::start_with(&["--metrics-addr", &metrics]);
    d.import_busybox(IMAGE);

    // Held by its quota.
    d.docker(&["run", "-d", "--name", "quota", "--cpus", "0.2", IMAGE, "sh", "-c", "while :; do :; done"]).ok();
    let r = diagnose(&d, "quota", "3");
    let v = verdicts(&r);
    assert!(v[0].starts_with("container limited: CPU quota (throttled in"), "{v:?}\n{r}");
    assert!(r["evidence"]["throttled_periods_percent"].as_f64().unwrap() > 50.0, "{r}");
    assert!((r["evidence"]["quota_cpus"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    let text = d.skiff(&["diagnose", "--seconds", "1", "quota"]).ok();
    assert!(
        text.contains("container limited: CPU quota") && text.contains("evidence:") && text.contains("next:"),
        "{text}"
    );

    // docker stats: Docker's throttling data, and skiff's own fields beside it.
    let stats = d.docker(&["stats", "--no-stream", "--format", "{{json .}}", "quota"]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let (code, raw) = d.http("GET", "/containers/quota/stats?stream=false", None);
    assert_eq!(code, 200, "{raw}");
    let s: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(s["cpu_stats"]["throttling_data"]["throttled_periods"].as_u64().unwrap() > 0, "{s}");
    assert!(s["skiff"]["runqueue_wait_ns"].as_u64().is_some(), "{s}");
    assert!(s["skiff"]["throttled_periods_percent"].as_f64().unwrap() > 50.0, "{s}");
    d.docker(&["rm", "-f", "quota"]).ok();

    // Unlimited and asking for every CPU, on a host saturated from outside: the host, not the
    // container (its threads wait for CPUs the host's other processes hold).
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let loops = vec!["while :; do :; done &"; cpus].join(" ") + " wait";
    d.docker(&["run", "-d", "--name", "free", IMAGE, "sh", "-c", &loops]).ok();
    {
        let _hogs = Hogs::start();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let r = diagnose(&d, "free", "3");
        let v = verdicts(&r);
        assert!(v.iter().any(|f| f.starts_with("host saturated: CPU (run queue")), "{v:?}\n{r}");
        assert!(!v.iter().any(|f| f.contains("CPU quota")), "{v:?}");
    }

    // Filling its memory limit (a tmpfs is memory the cgroup cannot reclaim without swap).
    let fill = "while :; do dd if=/dev/zero of=/dev/shm/fill bs=1M count=60 2>/dev/null; rm -f /dev/shm/fill; done";
    d.docker(&["run", "-d", "--name", "mem", "--memory", "32m", "--memory-swap", "32m", IMAGE, "sh", "-c", fill]).ok();
    let r = diagnose(&d, "mem", "3");
    let v = verdicts(&r);
    assert!(v.iter().any(|f| f.starts_with("memory limit:") && f.contains("of 32 MiB")), "{v:?}\n{r}");

    // skiff top, once, as JSON: every running container with its fields, and the host.
    let out = d.skiff(&["top", "--once", "--format", "json", "--interval", "0.5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let top: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = top["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["free", "mem"], "{}", out.stdout);
    for c in top["containers"].as_array().unwrap() {
        for k in [
            "cpus",
            "cpu_percent_of_host",
            "cpu_percent_of_limit",
            "runqueue_wait_percent",
            "memory_usage",
            "memory_limit_hits",
            "oom_kills",
            "io_read_bytes_per_s",
            "net_rx_bytes_per_s",
            "pids",
        ] {
            assert!(c.get(k).is_some(), "{k} missing: {c}");
        }
    }
    let free = top["containers"].as_array().unwrap().iter().find(|c| c["name"] == "free").unwrap();
    assert!(free["cpus"].as_f64().unwrap() > 0.5, "busy loops use CPUs: {free}");
    let mem = top["containers"].as_array().unwrap().iter().find(|c| c["name"] == "mem").unwrap();
    assert_eq!(mem["memory_limit"].as_u64(), Some(32 << 20));
    assert!(top["host"]["cpus"].as_u64().unwrap() >= 1);
    let table = d.skiff(&["top", "--once"]).ok();
    assert!(table.starts_with("host: ") && table.contains("RQ WAIT") && table.contains("free"), "{table}");

    // The live view, under a terminal: it draws the host and the containers, and `q` ends it.
    let live = live_view(&d);
    assert!(live.contains("host: ") && live.contains("RQ WAIT") && live.contains("free"), "{live}");
    assert!(live.contains("quit") && live.contains("detail"), "the key line: {live}");

    // Prometheus: scraped and parsed by prometheus_client's own text parser.
    let body = Command::new("curl").args(["-sf", &format!("http://{metrics}/metrics")]).output().unwrap();
    assert!(body.status.success(), "scrape failed");
    let text = String::from_utf8(body.stdout).unwrap();
    // Debian's python, where install-deps puts python3-prometheus-client.
    let parse = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
             fams = {f.name: f for f in p(sys.stdin.read())}\n\
             print(len(fams['container_cpu_usage_seconds'].samples), len(fams['engine_daemon_container_states_containers'].samples))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    parse.stdin.as_ref().unwrap().write_all(text.as_bytes()).unwrap();
    let out = parse.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 3", "two containers, three states");
    assert!(text.contains("container_cpu_cfs_throttled_periods_total{"), "{text}");
    assert!(text.contains("container_spec_memory_limit_bytes{id=\"/skiff/"), "{text}");
    assert!(text.contains("skiff_container_runqueue_wait_seconds_total{"), "{text}");
    d.docker(&["rm", "-f", "free", "mem"]).ok();
}
