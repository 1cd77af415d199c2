//! Compatibility below the CLI: the Engine API as Docker's SDKs drive it (raw HTTP with what
//! the Go SDK sends, docker-py, the docker CLI's less common paths). Each test was written
//! against a gap found with moby's integration tests or docker-py, and failed before its fix.

use std::time::Duration;

use skiff_e2e::{Daemon, require_root, unique_dir};

/// A build context tar with the given files (names written as given, `..` included, as Go's
/// tar writer lets a client write them).
fn context(files: &[(&str, &str)]) -> Vec<u8> {
    skiff_e2e::tar_of(files)
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
    // Swarm mode: init on loopback answers the node ID; the swarm endpoints then answer, and
    // leaving takes --force on its only manager.
    let port = 23000 + u16::from(d.net.n);
    let body = format!(r#"{{"ListenAddr":"127.0.0.1:{port}","AdvertiseAddr":"127.0.0.1:{port}"}}"#);
    let (s, b) = d.http("POST", "/v1.41/swarm/init", Some(&body));
    assert_eq!(s, 200, "{b}");
    assert_eq!((d.http("GET", "/v1.41/swarm", None).0, d.http("GET", "/v1.41/nodes", None).0), (200, 200));
    assert_eq!(d.http("POST", "/v1.41/swarm/leave", None).0, 503);
    assert_eq!(d.http("POST", "/v1.41/swarm/leave?force=1", None).0, 200);
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
    let ctx = context(&[("Dockerfile", "")]);
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

#[test]
fn builds_report_every_stage_and_keep_containers_as_asked() {
    require_root!();
    let d = Daemon::start();
    // Every stage up to the target builds and reports its image ID (moby's
    // TestBuildMultiStageOnBuild counts three), ONBUILD triggers included.
    let df = "FROM busybox AS stage1\nONBUILD RUN echo foo >somefile\nONBUILD ENV bar=baz\n\n\
              FROM stage1\nRUN cat somefile\n\nFROM stage1\nRUN cat somefile\n";
    let (s, _, body) =
        d.http_raw("POST", "/v1.41/build?rm=1&forcerm=1", "application/x-tar", &context(&[("Dockerfile", df)]));
    assert_eq!(s, 200);
    let ids: Vec<String> = lines(&body).iter().filter_map(|l| l["aux"]["ID"].as_str().map(str::to_string)).collect();
    assert_eq!(ids.len(), 3, "{}", String::from_utf8_lossy(&body));
    let env = d.docker(&["inspect", "-f", "{{json .Config.Env}}", &ids[2]]).ok();
    assert!(env.contains("bar=baz"), "{env}");
    // rm=0 keeps each RUN step's container; a failed step's stays unless forcerm.
    let running_in = |body: &[u8]| -> Vec<String> {
        lines(body)
            .iter()
            .filter_map(|l| l["stream"].as_str()?.strip_prefix(" ---> Running in ").map(|s| s.trim().to_string()))
            .collect()
    };
    let exists = |id: &str| d.docker(&["inspect", id]).code == 0;
    for (query, df, kept) in [
        ("rm=0&nocache=1", "FROM busybox\nRUN exit 0\nRUN exit 0\n", 2),
        ("rm=1&nocache=1", "FROM busybox\nRUN exit 0\nRUN exit 0\n", 0),
        ("rm=1&nocache=1", "FROM busybox\nRUN exit 0\nRUN exit 1\n", 1),
        ("rm=1&forcerm=1&nocache=1", "FROM busybox\nRUN exit 0\nRUN exit 1\n", 0),
    ] {
        let (_, _, body) =
            d.http_raw("POST", &format!("/v1.41/build?{query}"), "application/x-tar", &context(&[("Dockerfile", df)]));
        let ids = running_in(&body);
        assert_eq!(ids.len(), 2, "{query}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ids.iter().filter(|i| exists(i)).count(), kept, "{query} {df:?}");
    }
    // Kept containers are containers like any other: a restarted daemon keeps them.
    let mut d = d;
    let before = d.docker(&["ps", "-aq"]).ok();
    d.restart();
    assert_eq!(d.docker(&["ps", "-aq"]).ok(), before);
    // Names that climb out of the context are cleaned as dockerd's chrooted extraction does,
    // and new content is no cache hit.
    for content in ["0", "1"] {
        let df = "FROM scratch\nCOPY foo /\nFROM scratch\nCOPY bar /\n";
        let ctx = context(&[("Dockerfile", df), ("../foo", content), ("/bar", content)]);
        let (s, _, body) = d.http_raw("POST", "/v1.41/build", "application/x-tar", &ctx);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(s, 200, "{text}");
        assert!(text.contains("Successfully built") && !text.contains("Using cache"), "{text}");
    }
    // Blank or comment-only Dockerfiles: dockerd's words.
    for df in ["\n\n  \n", "# just a comment"] {
        let (s, _, body) = d.http_raw("POST", "/v1.41/build", "application/x-tar", &context(&[("Dockerfile", df)]));
        assert_eq!(s, 400);
        assert!(String::from_utf8_lossy(&body).contains("file with no instructions"), "{df:?}");
    }
}

#[test]
fn commit_changes_see_the_environment_and_configs_merge() {
    require_root!();
    let d = Daemon::start();
    // moby's TestCommitInheritsEnv: $PATH in a change is the container's PATH.
    d.docker(&["create", "--name", "env1", "-e", "PATH=/bin", "busybox", "true"]).ok();
    let i1 = d.docker(&["commit", "-c", "ENV PATH=/bin", "env1", "envimg1"]).ok();
    d.docker(&["create", "--name", "env2", &i1, "true"]).ok();
    let i2 = d.docker(&["commit", "-c", "ENV PATH=/usr/bin:$PATH", "env2", "envimg2"]).ok();
    assert_eq!(d.docker(&["inspect", "-f", "{{json .Config.Env}}", &i2]).ok(), r#"["PATH=/usr/bin:/bin"]"#);
    // Variables reach WORKDIR and LABEL too; EXPOSE ranges expand; RUN is no change.
    let i3 =
        d.docker(&["commit", "-c", "ENV DIR=/data", "-c", "WORKDIR $DIR/app", "-c", "EXPOSE 7000-7001", "env2"]).ok();
    assert_eq!(d.docker(&["inspect", "-f", "{{.Config.WorkingDir}}", &i3]).ok(), "/data/app");
    let ports = d.docker(&["inspect", "-f", "{{json .Config.ExposedPorts}}", &i3]).ok();
    assert!(ports.contains("7000/tcp") && ports.contains("7001/tcp"), "{ports}");
    let bad = d.docker(&["commit", "-c", "RUN rm -rf /", "env2"]);
    assert!(bad.stderr.contains("RUN is not a valid change command"), "{}", bad.stderr);
    // A config in the body is the base; what it leaves out comes from the container.
    let (s, b) =
        d.http("POST", "/v1.41/commit?container=env2&repo=envimg4", Some(r#"{"Env":["A=1"],"Cmd":["echo","hi"]}"#));
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        d.docker(&["inspect", "-f", "{{json .Config.Env}} {{json .Config.Cmd}}", "envimg4"]).ok(),
        r#"["A=1","PATH=/bin"] ["echo","hi"]"#
    );
}

#[test]
fn platforms_enums_and_references_answer_as_dockerd() {
    require_root!();
    let d = Daemon::start();
    let create = |q: &str, body: &str| d.http("POST", &format!("/v1.41/containers/create{q}"), Some(body));
    // An image for another platform is not there (moby's TestCreateDifferentPlatform).
    let (s, b) = create("?platform=windows/amd64", r#"{"Image":"busybox","Cmd":["true"]}"#);
    assert_eq!(s, 404, "{b}");
    let host = d.docker(&["version", "-f", "{{.Server.Os}}/{{.Server.Arch}}"]).ok();
    let (s, b) = create(&format!("?platform={host}"), r#"{"Image":"busybox","Cmd":["true"]}"#);
    assert_eq!(s, 201, "{b}");
    for (m, p) in [
        ("POST", "/v1.41/containers/create?platform=foobar"),
        ("POST", "/v1.41/images/create?fromImage=busybox&platform=foobar"),
    ] {
        let (s, b) = d.http(m, p, Some(r#"{"Image":"busybox"}"#));
        assert_eq!(s, 400, "{p}: {b}");
        assert!(b.contains("unknown operating system or architecture"), "{p}: {b}");
    }
    // Enumerated HostConfig values get dockerd's messages, not a decoder's.
    let (s, b) = create("", r#"{"Image":"busybox","HostConfig":{"CgroupnsMode":"invalid"}}"#);
    assert_eq!((s, b.contains("invalid cgroup namespace mode: invalid")), (400, true), "{b}");
    let (s, b) = create("", r#"{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#);
    assert_eq!((s, b.contains("invalid restart policy")), (400, true), "{b}");
    // sha256 is no repository name; reference filters list only the matching tags.
    let bad = d.docker(&["tag", "busybox", "sha256:sometag"]);
    assert!(bad.stderr.contains("refusing to create an ambiguous tag"), "{}", bad.stderr);
    for t in ["multi:v1", "multi:v2", "multi:v3"] {
        d.docker(&["tag", "busybox", t]).ok();
    }
    let (_, b) = d.http(
        "GET",
        "/v1.41/images/json?filters=%7B%22reference%22%3A%5B%22multi%3Av1%22%2C%22multi%3Av2%22%5D%7D",
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let mut tags: Vec<String> =
        v[0]["RepoTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    assert_eq!((v.as_array().unwrap().len(), tags), (1, vec!["multi:v1".to_string(), "multi:v2".to_string()]));
    // docker save: by ID no names, by bare name every tag of the repository.
    let manifest_tags = |name: &str| -> serde_json::Value {
        let (s, _, body) = d.http_raw("GET", &format!("/v1.41/images/get?names={name}"), "", &[]);
        assert_eq!(s, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let mut a = tar::Archive::new(&body[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("manifest.json") {
                let v: serde_json::Value = serde_json::from_reader(&mut e).unwrap();
                return v[0]["RepoTags"].clone();
            }
        }
        panic!("no manifest.json");
    };
    let id = d.docker(&["inspect", "-f", "{{.Id}}", "multi:v1"]).ok();
    assert!(manifest_tags(&id).as_array().is_none_or(|a| a.is_empty()), "{}", manifest_tags(&id));
    let all = manifest_tags("multi");
    for t in ["multi:v1", "multi:v2", "multi:v3"] {
        assert!(all.to_string().contains(t), "{all}");
    }
}

#[test]
fn daemon_flags_dockerd_tests_use() {
    require_root!();
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("daemon.json");
    std::fs::write(&cfg, r#"{"default-ipc-mode": "shareable", "live-restore": false, "debug": true}"#).unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let sock2 = dir.join("second.sock");
    let host2 = format!("unix://{}", sock2.display());
    let mut d = Daemon::start_with(&[
        "--config-file",
        &cfg_s,
        "--insecure-registry",
        "10.123.0.0/16",
        "--insecure-registry",
        "insecure.test:5000",
        "--host-gateway-ip",
        "10.1.2.3",
        "-H",
        &host2,
    ]);
    // Info tells what the daemon was started with.
    let info = d
        .docker(&["info", "-f", "{{.Debug}} {{.LiveRestoreEnabled}} {{json .RegistryConfig.InsecureRegistryCIDRs}}"])
        .ok();
    assert!(info.starts_with("true false "), "{info}");
    assert!(info.contains("10.123.0.0/16") && info.contains("127.0.0.0/8"), "{info}");
    let idx = d.docker(&["info", "-f", "{{json .RegistryConfig.IndexConfigs}}"]).ok();
    assert!(idx.contains("insecure.test:5000") && !idx.contains("10.123.0.0/16"), "{idx}");
    // A second -H socket serves the same daemon.
    let out = std::process::Command::new(skiff_e2e::docker_cli())
        .args(["-H", &host2, "version", "-f", "{{.Server.Version}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Defaults from the configuration file; host-gateway is the configured address.
    d.docker(&["create", "--name", "ipc", "--add-host", "gw:host-gateway", "busybox", "true"]).ok();
    assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "ipc"]).ok(), "shareable");
    let hosts = d.docker(&["run", "--rm", "--add-host", "gw:host-gateway", "busybox", "grep", "gw", "/etc/hosts"]).ok();
    assert!(hosts.starts_with("10.1.2.3"), "{hosts}");
    d.docker(&["start", "-a", "ipc"]).ok();
    // Live restore off: a daemon killed with its containers running stops them when it
    // starts again, and restart policies bring back those that ask for it.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    d.docker(&["run", "-d", "--name", "plain", "--stop-timeout", "1", "busybox", "sleep", "600"]).ok();
    d.kill9();
    d.start_again();
    assert!(skiff_e2e::eventually(Duration::from_secs(20), || {
        d.docker(&["inspect", "-f", "{{.State.Running}}", "always"]).ok() == "true"
    }));
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "plain"]).ok(), "false");
    // And it stops them when it stops.
    let pid = d.docker(&["inspect", "-f", "{{.State.Pid}}", "always"]).ok();
    d.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container outlived a daemon without live restore"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copy_destinations_link_paths_and_old_clients() {
    require_root!();
    let d = Daemon::start();
    // COPY to `.` under a WORKDIR, or to a directory the image has, copies into it (moby's
    // TestBuildMultiStageLayerLeak); a new name without a slash is a file.
    let df = "FROM busybox\nWORKDIR /foo\nCOPY foo .\nFROM busybox\nWORKDIR /foo\nCOPY bar .\n\
              RUN [ -f bar ]\nRUN [ ! -f foo ]\nCOPY bar /etc\nRUN [ -f /etc/bar ]\n\
              COPY foo /newname\nRUN [ -f /newname ]\n";
    let ctx = context(&[("Dockerfile", df), ("foo", "0"), ("bar", "1")]);
    let (s, _, body) = d.http_raw("POST", "/v1.41/build", "application/x-tar", &ctx);
    let text = String::from_utf8_lossy(&body);
    assert!(s == 200 && text.contains("Successfully built") && !text.contains("errorDetail"), "{text}");
    // A legacy link's name PARENT/ALIAS in a path names the target, also after a rename of
    // the parent (moby's TestRenameContainerWithLinkedContainer).
    d.docker(&["run", "-d", "--name", "linkdb", "busybox", "sleep", "600"]).ok();
    d.docker(&["create", "--name", "linkapp1", "--link", "linkdb:/mysql", "busybox", "true"]).ok();
    d.docker(&["rename", "linkapp1", "linkapp2"]).ok();
    let id = d.docker(&["inspect", "-f", "{{.Id}}", "linkdb"]).ok();
    assert_eq!(d.docker(&["inspect", "-f", "{{.Id}}", "linkapp2/mysql"]).ok(), id);
    let links = d.docker(&["inspect", "-f", "{{json .HostConfig.Links}}", "linkapp2"]).ok();
    assert_eq!(links, r#"["/linkdb:/linkapp2/mysql"]"#);
    // Clients before API 1.40 got shareable IPC by default.
    let (s, b) = d.http("POST", "/v1.39/containers/create?name=oldipc", Some(r#"{"Image":"busybox","Cmd":["true"]}"#));
    assert_eq!(s, 201, "{b}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "oldipc"]).ok(), "shareable");
    // ... and before 1.41 on cgroup v1 the host's cgroup namespace.
    if d.docker(&["info", "-f", "{{.CgroupVersion}}"]).ok() == "1" {
        assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.CgroupnsMode}}", "oldipc"]).ok(), "host");
    }
    let (s, b) = d.http("POST", "/v1.41/containers/create?name=newipc", Some(r#"{"Image":"busybox","Cmd":["true"]}"#));
    assert_eq!(s, 201, "{b}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "newipc"]).ok(), "private");
    // Squash is refused, not ignored.
    let (s, _, body) = d.http_raw("POST", "/v1.41/build?squash=1", "application/x-tar", &ctx);
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("experimental"));
    // An unknown path's body is read before the 404 (a client still sending sees the answer,
    // not a broken pipe).
    let big = vec![b'{'; 200_000];
    let (s, _, _) = d.http_raw("POST", "/v1.41/containers/nope/copy", "application/json", &big);
    assert_eq!(s, 404);
}

#[test]
fn published_addresses_outgoing_snat_and_propagation_sources() {
    require_root!();
    let d = Daemon::start_with(&["--ip", "127.0.0.1"]);
    // --ip: published ports that name no address bind there.
    d.docker(&["run", "-d", "--name", "web", "-p", "80", "busybox", "sleep", "600"]).ok();
    let port = d.docker(&["port", "web", "80"]).ok();
    assert!(port.starts_with("127.0.0.1:"), "{port}");
    // com.docker.network.host_ipv4: the network's traffic leaves from that address.
    let name = format!("snat{}", std::process::id());
    d.docker(&["network", "create", "-o", "com.docker.network.host_ipv4=10.99.0.1", &name]).ok();
    let subnet = d.docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", &name]).ok();
    let rules = skiff_e2e::firewall_lines(&format!("-s {subnet} "));
    assert!(rules.iter().any(|r| r.contains("-j SNAT --to-source 10.99.0.1")), "{rules:?}");
    assert!(!rules.iter().any(|r| r.contains("! -o") && r.contains("MASQUERADE")), "{rules:?}");
    let bad = d.docker(&["network", "create", "-o", "com.docker.network.host_ipv4=nope", "badsnat"]);
    assert_ne!(bad.code, 0);
    d.docker(&["network", "rm", &name]).ok();
    // A bind asked to be a slave of a private host mount: dockerd's error, before the runtime.
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let private = !std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&"/") && l.contains("shared:")
    });
    if private {
        let o = d.docker(&["run", "--rm", "-v", &format!("{}:/x:rslave", dir.display()), "busybox", "true"]);
        assert!(o.stderr.contains("is not a shared or slave mount"), "{}", o.stderr);
    }
    // A bind from inside the daemon's root (rslave by default) starts.
    let inside = d.data_root().join("bindsrc");
    std::fs::create_dir_all(&inside).unwrap();
    d.docker(&["run", "--rm", "-v", &format!("{}:/x", inside.display()), "busybox", "true"]).ok();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request that asks to upgrade to a raw stream (as docker-py's attach and exec do), with
/// `input` written after the request; everything the daemon sends until it closes, or until
/// `limit` passes (then `None`).
fn upgraded(d: &Daemon, path: &str, body: &str, input: &[u8], limit: Duration) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for b in input {
        let _ = s.write_all(&[*b]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn json(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let (s, b) = d.http(method, path, body);
    assert!(s < 300, "{method} {path}: {s} {b}");
    serde_json::from_str(b.trim()).unwrap_or_else(|e| panic!("{method} {path}: {e}: {b}"))
}

/// What docker-py's own integration tests found (scripts/compat-dockerpy.sh), each failing on
/// skiffd before its fix and passing on dockerd 20.10.
#[test]
fn docker_py_finds() {
    require_root!();
    let d = Daemon::start();
    // `wait` returns when a container with a restart policy exits, though it comes back.
    let id = json(
        &d,
        "POST",
        "/v1.41/containers/create",
        Some(r#"{"Image":"busybox","Cmd":["sleep","1"],"HostConfig":{"RestartPolicy":{"Name":"always"},"NetworkMode":"none"}}"#),
    )["Id"]
        .as_str()
        .unwrap()
        .to_string();
    d.http("POST", &format!("/v1.41/containers/{id}/start"), None);
    let t0 = std::time::Instant::now();
    let w = json(&d, "POST", &format!("/v1.41/containers/{id}/wait"), None);
    assert_eq!(w["StatusCode"], 0, "{w}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    let (s, b) = d.http("DELETE", &format!("/v1.41/containers/{id}"), None);
    assert_eq!(s, 409, "{b}");
    assert!(b.to_lowercase().contains("stop the container before"), "{b}");
    d.http("DELETE", &format!("/v1.41/containers/{id}?force=1"), None);

    // attach?logs=1&stream=0 on an upgraded connection: the log, then the connection closes.
    let id = d.docker(&["run", "-d", "busybox", "echo", "hello"]).ok();
    d.docker(&["wait", &id]).ok();
    let out = upgraded(
        &d,
        &format!("/v1.41/containers/{id}/attach?logs=1&stream=0&stdout=1&stderr=1"),
        "",
        b"",
        Duration::from_secs(10),
    )
    .expect("the daemon closes the connection after the log");
    assert!(out.ends_with(b"hello\n"), "{:?}", String::from_utf8_lossy(&out));

    // An exec created with Tty has its terminal (CRLF) even when started with Tty false, as
    // docker-py starts it; its output then comes framed. Lower-case keys match as in Go.
    let c = d.docker(&["run", "-d", "-i", "busybox", "cat"]).ok();
    let e = json(
        &d,
        "POST",
        &format!("/v1.41/containers/{c}/exec"),
        Some(r#"{"cmd":["echo","hi"],"Tty":true,"AttachStdout":true}"#),
    )["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, body) =
        d.http_raw("POST", &format!("/v1.41/exec/{e}/start"), "application/json", br#"{"Tty":false,"Detach":false}"#);
    // Every frame is stdout's (a terminal has one stream), and the text has the CRLF.
    let (mut i, mut text) = (0, Vec::new());
    while i + 8 <= body.len() {
        assert_eq!(body[i], 1, "{body:?}");
        let n = u32::from_be_bytes([body[i + 4], body[i + 5], body[i + 6], body[i + 7]]) as usize;
        text.extend_from_slice(&body[i + 8..(i + 8 + n).min(body.len())]);
        i += 8 + n;
    }
    assert_eq!(text, b"hi\r\n", "{body:?}");
    let e = json(
        &d,
        "POST",
        &format!("/v1.41/containers/{c}/exec"),
        Some(r#"{"cmd":["cat"],"Tty":true,"AttachStdin":true,"AttachStdout":true,"detachKeys":"ctrl-p"}"#),
    )["Id"]
        .as_str()
        .unwrap()
        .to_string();
    upgraded(&d, &format!("/v1.41/exec/{e}/start"), r#"{"Tty":true}"#, &[16], Duration::from_secs(10))
        .expect("ctrl-p (the exec's detachKeys) detaches");

    // commit?pause=1 of a container that has already exited.
    let x = d.docker(&["run", "-d", "busybox", "touch", "/test"]).ok();
    d.docker(&["wait", &x]).ok();
    let (s, b) = d.http("POST", &format!("/v1.41/commit?container={x}&pause=1"), None);
    assert_eq!(s, 201, "{b}");

    // An unknown log driver reads as dockerd 20.10 words it.
    let (s, b) = d.http(
        "POST",
        "/v1.41/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"LogConfig":{"Type":"asdf"}}}"#),
    );
    assert_eq!(s, 400);
    assert!(b.contains("\"logger: no log driver named 'asdf' is registered\""), "{b}");

    // Image configs carry every member (OnBuild: null), as Go writes them.
    let img = json(&d, "GET", "/v1.41/images/busybox/json", None);
    assert!(img["Config"].get("OnBuild").is_some_and(|v| v.is_null()), "{}", img["Config"]);

    // A RUN's stderr comes in red, as from the classic builder.
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN sh -c '>&2 echo oops'\n")]);
    let (s, _, body) = d.http_raw("POST", "/v1.41/build?nocache=1", "application/x-tar", &ctx);
    assert_eq!(s, 200);
    assert!(lines(&body).iter().any(|l| l["stream"] == "\x1b[91moops\n\x1b[0m"), "{}", String::from_utf8_lossy(&body));

    // Network names with spaces; IPAM options null when none were given; an endpoint's
    // link-local addresses and driver options kept; a link on a user network resolves.
    let n = json(&d, "POST", "/v1.41/networks/create", Some(r#"{"Name":"dpy test 01"}"#));
    let nid = n["Id"].as_str().unwrap().to_string();
    let ni = json(&d, "GET", &format!("/v1.41/networks/{nid}"), None);
    assert_eq!(ni["Name"], "dpy test 01");
    assert!(ni["IPAM"].get("Options").is_none_or(|o| o.is_null()), "{}", ni["IPAM"]);
    d.http("DELETE", &format!("/v1.41/networks/{nid}"), None);
    let body = r#"{"Image":"busybox","Cmd":["sleep","600"],"HostConfig":{"NetworkMode":"bridge"},
        "NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"LinkLocalIPs":["169.254.8.8"]},
        "DriverOpts":{"com.docker-py.setting":"on"}}}}}"#;
    let c2 = json(&d, "POST", "/v1.41/containers/create", Some(body))["Id"].as_str().unwrap().to_string();
    d.http("POST", &format!("/v1.41/containers/{c2}/start"), None);
    let ep =
        json(&d, "GET", &format!("/v1.41/containers/{c2}/json"), None)["NetworkSettings"]["Networks"]["bridge"].clone();
    assert_eq!(ep["IPAMConfig"]["LinkLocalIPs"][0], "169.254.8.8", "{ep}");
    assert_eq!(ep["DriverOpts"]["com.docker-py.setting"], "on", "{ep}");
    d.docker(&["network", "create", "dpylinks"]).ok();
    let body = r#"{"Image":"busybox","Cmd":["sleep","600"],"HostConfig":{"NetworkMode":"dpylinks"},
        "NetworkingConfig":{"EndpointsConfig":{"dpylinks":{"Links":["dpy-upstream:bar"]}}}}"#;
    let l =
        json(&d, "POST", "/v1.41/containers/create?name=dpy-linker", Some(body))["Id"].as_str().unwrap().to_string();
    d.http("POST", &format!("/v1.41/containers/{l}/start"), None);
    d.docker(&["run", "-d", "--name", "dpy-upstream", "--network", "dpylinks", "busybox", "sleep", "600"]).ok();
    // Before API 1.45 a user network's Aliases also list the short ID (docker-py checks).
    let aliases = |v: &str| {
        json(&d, "GET", &format!("/{v}/containers/{l}/json"), None)["NetworkSettings"]["Networks"]
        ["dpylinks"]["Aliases"]
        .clone()
    };
    assert!(aliases("v1.41").as_array().is_some_and(|a| a.iter().any(|x| x == &l[..12])), "{}", aliases("v1.41"));
    assert!(!aliases("v1.45").to_string().contains(&l[..12]), "{}", aliases("v1.45"));
    let r = d.docker(&["exec", "dpy-linker", "nslookup", "bar"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let r = d.docker(&["exec", "dpy-upstream", "nslookup", "bar"]);
    assert_ne!(r.code, 0, "the alias is the linking container's alone: {}", r.stdout);

    // A load that fails says so in its JSON stream, as dockerd does (docker-py's ImageLoadError).
    let (s, _, body) = d.http_raw("POST", "/v1.41/images/load", "application/x-tar", b"abc");
    assert_eq!(s, 200);
    assert!(lines(&body).iter().any(|l| l["error"].is_string()), "{}", String::from_utf8_lossy(&body));
    assert_ne!(d.docker(&["load", "-i", "/dev/null"]).code, 0);
}

/// A pull that fails before any progress (no such registry, repository or tag) is an HTTP
/// error, every time, as dockerd answers it (moby v25's TestImagePullNonExisting); it used to
/// be a 200 with the error in the stream about half the time (the progress channel closing
/// raced the pull's result).
#[test]
fn pull_errors_before_progress_are_http_errors() {
    require_root!();
    let d = Daemon::start();
    for _ in 0..20 {
        let (s, b) = d.http("POST", "/v1.44/images/create?fromImage=127.0.0.1:1/nope&tag=x", None);
        assert!(s >= 400, "{s}: {b}");
        assert!(b.contains("\"message\""), "{b}");
    }
}

/// A container re-adopted after the daemon went (crash or restart) has its health checks
/// start over from `starting`, as dockerd does (moby v25's TestDaemonRestartKillContainers
/// read a missing `State.Health` after a crash: the record's last health had not reached the
/// disk).
#[test]
fn health_starts_over_when_a_container_is_re_adopted() {
    require_root!();
    let mut d = Daemon::start();
    let id = d
        .docker(&[
            "run",
            "-d",
            "--restart",
            "always",
            "--health-cmd",
            "! test -f /tmp/unhealthy",
            "--health-interval",
            "60s",
            "--health-start-period",
            "60s",
            "--health-start-interval",
            "1s",
            "busybox",
            "top",
        ])
        .ok();
    let health = |d: &Daemon| d.docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]).ok();
    let t0 = std::time::Instant::now();
    while health(&d) != "healthy" {
        assert!(t0.elapsed() < Duration::from_secs(30), "never healthy: {}", health(&d));
        std::thread::sleep(Duration::from_millis(200));
    }
    d.crash_and_restart();
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", &id]).ok(), "true");
    assert_eq!(health(&d), "starting");
    let t0 = std::time::Instant::now();
    while health(&d) != "healthy" {
        assert!(t0.elapsed() < Duration::from_secs(30), "checks did not resume: {}", health(&d));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `images?filters={"until":…}` (newer clients' `docker images --filter until=`): a time or a
/// duration ago; a bad value is refused.
#[test]
fn images_filter_until() {
    require_root!();
    let d = Daemon::start();
    let list = |f: &str| {
        let q: String = form_urlencoded::byte_serialize(f.as_bytes()).collect();
        d.http("GET", &format!("/v1.44/images/json?filters={q}"), None)
    };
    let (s, b) = list(r#"{"until":["2999-01-01T00:00:00Z"]}"#);
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("busybox:latest"), "{b}");
    let (s, b) = list(r#"{"until":["24h"]}"#);
    assert_eq!(s, 200, "{b}");
    assert!(!b.contains("busybox:latest"), "imported just now, not a day ago: {b}");
    let (s, b) = list(r#"{"until":["yesterday-ish"]}"#);
    assert_eq!(s, 400, "{b}");
}
