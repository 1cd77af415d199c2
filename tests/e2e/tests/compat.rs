//! Compatibility below the CLI: the Engine API as Docker's SDKs drive it (raw HTTP with what
//! the Go SDK sends, docker-py, the docker CLI's less common paths). Each test was written
//! against a gap found with moby's integration tests or docker-py, and failed before its fix.

use skiff_e2e::{Daemon, require_root, unique_dir};

/// A build context tar with the given files.
fn context(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The JSON lines of a build response.
fn lines(body: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(body).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn endpoints_sdks_probe_exist() {
    require_root!();
    let d = Daemon::start();
    let (s, b) = d.http("GET", "/v1.41/plugins", None);
    assert_eq!((s, b.trim()), (200, "[]"));
    // A node outside a swarm, as dockerd answers (docker-py's teardown leaves the swarm).
    for (m, p) in [
        ("POST", "/v1.41/swarm/leave?force=1"),
        ("GET", "/v1.41/swarm"),
        ("GET", "/v1.41/nodes"),
        ("GET", "/v1.41/services"),
        ("GET", "/v1.41/tasks"),
        ("GET", "/v1.41/secrets"),
        ("GET", "/v1.41/configs"),
        ("GET", "/v1.41/services/x"),
    ] {
        let (s, b) = d.http(m, p, None);
        assert_eq!(s, 503, "{m} {p}: {b}");
        assert!(b.contains("This node is not part of a swarm"), "{m} {p}: {b}");
    }
    let (s, b) = d.http("POST", "/v1.41/swarm/init", Some("{}"));
    assert_eq!(s, 503, "{b}");
    let (s, b) = d.http("GET", "/v1.41/networks/", None);
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"bridge\""), "{b}");
    // `docker rm --link /parent/alias` removes the link, not a container.
    d.docker(&["run", "-d", "--name", "db", "busybox", "sleep", "600"]).ok();
    d.docker(&["create", "--name", "web", "--link", "db:database", "busybox", "true"]).ok();
    d.docker(&["rm", "--link", "/web/database"]).ok();
    let links = d.docker(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]).ok();
    assert!(!links.contains("database"), "{links}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "db"]).ok(), "true");
    assert_ne!(d.docker(&["rm", "--link", "/web/nolink"]).code, 0);
}

#[test]
fn go_sdk_nulls_read_as_absent() {
    require_root!();
    let d = Daemon::start();
    // What the Go SDK sends for a container with nothing optional set.
    let body = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,
        "AttachStderr":true,"ExposedPorts":null,"Tty":false,"OpenStdin":false,"StdinOnce":false,
        "Env":null,"Cmd":["true"],"Healthcheck":null,"ArgsEscaped":false,"Image":"busybox",
        "Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,
        "HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":null},
        "NetworkMode":"default","PortBindings":null,"RestartPolicy":{"Name":"","MaximumRetryCount":0},
        "AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"CapAdd":null,"CapDrop":null,
        "CgroupnsMode":"","Dns":null,"DnsOptions":null,"DnsSearch":null,"ExtraHosts":null,
        "GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"",
        "Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,
        "UTSMode":"","UsernsMode":"","ShmSize":0,"ConsoleSize":[0,0],"Isolation":"","CpuShares":0,
        "Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":null,
        "BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":null,
        "BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,
        "CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":null,
        "DeviceCgroupRules":null,"DeviceRequests":null,"KernelMemory":0,"KernelMemoryTCP":0,
        "MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,
        "PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,
        "IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},
        "NetworkingConfig":{"EndpointsConfig":null}}"#;
    let (s, b) = d.http("POST", "/v1.41/containers/create?name=gosdk", Some(body));
    assert_eq!(s, 201, "{b}");
    let (s, b) = d.http(
        "POST",
        "/v1.41/networks/create",
        Some(r#"{"Name":"gonet","CheckDuplicate":true,"Driver":"bridge","IPAM":{"Driver":"default","Options":null,"Config":null},"Options":null,"Labels":null}"#),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = d.http(
        "POST",
        "/v1.41/volumes/create",
        Some(r#"{"Name":"govol","Driver":"","DriverOpts":null,"Labels":null}"#),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = d.http("GET", "/v1.41/containers/json?all=1&filters=null", None);
    assert_eq!(s, 200, "{b}");
    // Every Go-SDK build sends buildargs and labels as JSON, null when empty.
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let (s, _, body) = d.http_raw(
        "POST",
        "/v1.41/build?buildargs=null&labels=null&cachefrom=null&t=gobuild",
        "application/x-tar",
        &ctx,
    );
    assert_eq!(s, 200);
    assert!(lines(&body).iter().any(|l| l.get("aux").is_some()), "{}", String::from_utf8_lossy(&body));
}

#[test]
fn classic_builder_answers_as_dockerd() {
    require_root!();
    let d = Daemon::start();
    let dir = unique_dir();
    // -q prints the image ID and nothing else.
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nRUN echo noisy\n").unwrap();
    let q = d.docker(&["build", "-q", dir.to_str().unwrap()]).ok();
    assert!(q.starts_with("sha256:") && !q.contains("noisy"), "{q}");
    // A Dockerfile from outside the context (the CLI adds it to the context as
    // .dockerfile.<random>, with a stream cut after the last entry's data).
    let other = unique_dir();
    std::fs::write(other.join("Outside"), "FROM busybox\nCOPY . /src\nRUN test -f /src/a.txt\n").unwrap();
    std::fs::write(dir.join("a.txt"), "a\n").unwrap();
    d.docker(&["build", "-f", other.join("Outside").to_str().unwrap(), "-t", "outside", dir.to_str().unwrap()]).ok();
    // COPY of a directory to a destination without a trailing slash makes that directory.
    assert_eq!(d.docker(&["run", "--rm", "outside", "cat", "/src/a.txt"]).ok(), "a");
    // A failing RUN: its exit code is the error's code, and the CLI exits with it.
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nRUN [ -f /nonexistent ]\n").unwrap();
    let f = d.docker(&["build", dir.to_str().unwrap()]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(f.stderr.contains("/bin/sh -c [ -f /nonexistent ]"), "shell form, not exec form: {}", f.stderr);
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN exit 5\n")]);
    let (_, _, body) = d.http_raw("POST", "/v1.41/build", "application/x-tar", &ctx);
    let err = lines(&body).into_iter().find(|l| l.get("errorDetail").is_some()).expect("an error line");
    assert_eq!(err["errorDetail"]["code"], 5, "{err}");
    // An empty Dockerfile, or none where named, is a 400 before any output.
    let ctx = context(&[("Dockerfile", "\n")]);
    let (s, _, body) = d.http_raw("POST", "/v1.41/build", "application/x-tar", &ctx);
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("cannot be empty"));
    let (s, _, _) = d.http_raw("POST", "/v1.41/build?dockerfile=Nope", "application/x-tar", &ctx);
    assert_eq!(s, 400);
    // A repeated dockerfile parameter: the first wins, as with Go's FormValue.
    let ctx = context(&[("A", "FROM busybox\nLABEL which=a\n"), ("B", "FROM busybox\nLABEL which=b\n")]);
    let (s, _, _) = d.http_raw("POST", "/v1.41/build?dockerfile=A&dockerfile=B&t=which", "application/x-tar", &ctx);
    assert_eq!(s, 200);
    assert_eq!(d.docker(&["inspect", "-f", "{{.Config.Labels.which}}", "which"]).ok(), "a");
    // --add-host reaches RUN steps.
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nRUN grep -q 'gateway.test' /etc/hosts\n").unwrap();
    d.docker(&["build", "--add-host", "gateway.test:10.9.9.9", dir.to_str().unwrap()]).ok();
    // --cache-from: a cached step is used only when it is in a cache-from image's history.
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nRUN echo cached > /c\n").unwrap();
    d.docker(&["build", "-t", "cachesrc", dir.to_str().unwrap()]).ok();
    let hit = d.docker(&["build", "--cache-from", "cachesrc", dir.to_str().unwrap()]).ok();
    assert!(hit.contains("Using cache"), "{hit}");
    let miss = d.docker(&["build", "--cache-from", "busybox", dir.to_str().unwrap()]).ok();
    assert!(!miss.contains("Using cache"), "{miss}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}
