//! The container routes against a fake backend: what each request turns into, and the errors
//! that must come before the backend is asked anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bollard_stubs::models::{
    ChangeType, ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
    ContainerTopResponse, ContainerUpdateBody, FilesystemChange,
};
use skiff_engine::container::WaitCondition;
use skiff_engine::container::archive::PathStat;
use skiff_engine::container::attach::AttachHandle;
use skiff_engine::container::commit::CommitOptions;
use skiff_engine::container::list::{ListOptions, PruneReport};
use skiff_engine::container::logs::{LogLine, LogOptions};
use skiff_engine::container::stats::Sample;
use skiff_engine::types::Streams;
use skiff_engine::{EngineError, Result};
use tokio::sync::mpsc;

use crate::backend::{ArchiveReader, ArchiveWriter, ContainerBackend};
use crate::test_support::message;

/// Knows the containers named in `known`; records every call it gets.
#[derive(Default)]
struct Fake {
    known: BTreeSet<String>,
    running: BTreeSet<String>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn with(known: &[&str]) -> Fake {
        Fake { known: known.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn check(&self, key: &str) -> Result<()> {
        if self.known.contains(key) { Ok(()) } else { Err(EngineError::no_container(key)) }
    }
    fn op(&self, key: &str, c: String) -> Result<()> {
        self.check(key)?;
        self.call(c);
        Ok(())
    }
}

impl ContainerBackend for Fake {
    fn cgroup_v2(&self) -> bool {
        false
    }
    async fn create(
        &self,
        name: Option<String>,
        body: ContainerCreateBody,
        opts: skiff_engine::container::create::CreateOptions,
    ) -> Result<(String, Vec<String>)> {
        let binds = body.host_config.as_ref().and_then(|h| h.binds.clone());
        let (platform, legacy_ro) = (opts.platform, opts.read_only_non_recursive);
        self.call(format!(
            "create {name:?} {:?} {platform:?} labels={:?} binds={binds:?} ro-non-recursive={legacy_ro}",
            body.image, body.labels
        ));
        Ok(("c0ffee".into(), vec![]))
    }
    fn list(&self, opts: ListOptions) -> Result<Vec<ContainerSummary>> {
        self.call(format!("list {opts:?}"));
        Ok(vec![ContainerSummary { id: Some("c0ffee".into()), ..Default::default() }])
    }
    fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspectResponse> {
        self.op(key, format!("inspect {key} {size}"))?;
        Ok(ContainerInspectResponse { id: Some(key.into()), ..Default::default() })
    }
    fn exists(&self, key: &str) -> Result<()> {
        self.check(key)
    }
    async fn start(&self, key: &str) -> Result<()> {
        self.op(key, format!("start {key}"))
    }
    async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        self.op(key, format!("stop {key} {timeout:?} {signal:?}"))
    }
    async fn restart(&self, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        self.op(key, format!("restart {key} {timeout:?} {signal:?}"))
    }
    async fn kill(&self, key: &str, signal: Option<String>) -> Result<()> {
        self.op(key, format!("kill {key} {signal:?}"))?;
        if !self.running.contains(key) {
            return Err(EngineError::conflict(format!("Container {key} is not running")));
        }
        Ok(())
    }
    async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        self.op(key, format!("pause {key} {pause}"))
    }
    async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        if key == "running" && !force {
            let refused = skiff_engine::container::RemoveRefused {
                id: "c0ffee".into(),
                name: "/running".into(),
                status: skiff_engine::container::Status::Running,
            };
            return Err(EngineError::conflict(refused.to_string()).caused_by(refused));
        }
        self.op(key, format!("remove {key} force={force} volumes={volumes}"))
    }
    fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        self.op(parent, format!("remove_link {parent} {alias}"))
    }
    fn rename(&self, key: &str, name: &str) -> Result<()> {
        self.op(key, format!("rename {key} {name}"))
    }
    async fn wait(&self, key: &str, condition: WaitCondition) -> Result<(i64, Option<String>)> {
        self.op(key, format!("wait {key} {condition:?}"))?;
        Ok((3, None))
    }
    async fn attach(&self, key: &str, _streams: Streams) -> Result<AttachHandle> {
        self.check(key)?;
        Err(EngineError::internal("the fake does not attach"))
    }
    fn logs(&self, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<LogLine>)> {
        self.op(key, format!("logs {key} tail={:?} follow={} since={}", opts.tail, opts.follow, opts.since.is_some()))?;
        let (tx, rx) = mpsc::channel(2);
        let line = |s: &'static str| LogLine {
            stream: skiff_engine::types::Stream::Stdout,
            time: "2026-12-07T00:00:00.000000000Z".into(),
            data: bytes::Bytes::from_static(s.as_bytes()),
            attrs: None,
        };
        tx.try_send(line("hello\n")).unwrap();
        Ok((false, rx))
    }
    async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        self.op(key, format!("resize {key} {height}x{width}"))
    }
    fn top(&self, key: &str) -> Result<ContainerTopResponse> {
        self.op(key, format!("top {key}"))?;
        Ok(ContainerTopResponse::default())
    }
    async fn changes(&self, key: &str) -> Result<Vec<FilesystemChange>> {
        self.op(key, format!("changes {key}"))?;
        Ok(vec![FilesystemChange { path: "/foo".into(), kind: ChangeType::_1 }])
    }
    fn export(&self, key: &str, w: ArchiveWriter<'_>) -> Result<()> {
        self.op(key, format!("export {key}"))?;
        w.write_all(b"tar bytes").map_err(EngineError::from)
    }
    fn sample(&self, key: &str) -> Result<Option<Sample>> {
        self.check(key)?;
        Ok(None)
    }
    fn stats(&self, key: &str, _cur: Option<&Sample>, _pre: Option<&Sample>) -> Result<ContainerStatsResponse> {
        self.op(key, format!("stats {key}"))?;
        Ok(ContainerStatsResponse::default())
    }
    async fn update(&self, key: &str, body: ContainerUpdateBody) -> Result<Vec<String>> {
        self.op(key, format!("update {key} memory={:?}", body.memory))?;
        Ok(vec![])
    }
    async fn stat_path(&self, key: &str, path: &str) -> Result<PathStat> {
        self.op(key, format!("stat {key} {path}"))?;
        Ok(PathStat { name: "f".into(), size: 1, mode: 0o644, mtime: String::new(), link_target: String::new() })
    }
    fn archive_path(&self, key: &str, path: &str, w: ArchiveWriter<'_>) -> Result<PathStat> {
        self.op(key, format!("archive {key} {path}"))?;
        w.write_all(b"tar bytes").map_err(EngineError::from)?;
        Ok(PathStat { name: "f".into(), size: 1, mode: 0o644, mtime: String::new(), link_target: String::new() })
    }
    async fn extract_to(&self, key: &str, path: &str, r: ArchiveReader, ids: bool, no_overwrite: bool) -> Result<()> {
        // The reader blocks (it is the request body): read off the async workers.
        let body = tokio::task::spawn_blocking(move || {
            let mut r = r;
            let mut body = Vec::new();
            r.read_to_end(&mut body).map(|_| body)
        })
        .await
        .map_err(EngineError::from_cause)??;
        self.op(key, format!("extract {key} {path} {} ids={ids} no_overwrite={no_overwrite}", body.len()))
    }
    async fn prune(&self, filters: BTreeMap<String, Vec<String>>) -> Result<PruneReport> {
        self.call(format!("prune {filters:?}"));
        Ok(PruneReport { deleted: vec!["old".into()], reclaimed: 42 })
    }
    async fn commit(&self, key: &str, opts: CommitOptions) -> Result<String> {
        self.op(
            key,
            format!(
                "commit {key} {:?} pause={} changes={:?} config={}",
                opts.reference.map(|r| r.to_string()),
                opts.pause,
                opts.changes,
                opts.config.is_some()
            ),
        )?;
        Ok("sha256:abc".into())
    }
}

async fn send(fake: &Arc<Fake>, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    crate::test_support::send(super::routes(fake.clone()), method, uri, body).await
}

#[tokio::test]
async fn create_passes_name_platform_and_go_nulls_through() {
    let f = Arc::new(Fake::default());
    let (st, body) = send(
        &f,
        "POST",
        "/v1.41/containers/create?name=web&platform=linux/amd64",
        r#"{"Image":"busybox","Labels":null,"HostConfig":{"Binds":null}}"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["Id"], "c0ffee");
    assert_eq!(
        f.calls(),
        [r#"create Some("web") Some("busybox") Some("linux/amd64") labels=None binds=None ro-non-recursive=true"#],
        "nulls are what Go's zero values are: absent"
    );
}

#[tokio::test]
async fn create_refuses_bad_input_before_asking_the_backend() {
    let f = Arc::new(Fake::default());
    let cases = [
        ("", "invalid JSON: got EOF while reading request body"),
        (
            r#"{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'",
        ),
        (r#"{"Image":"busybox","HostConfig":{"CgroupnsMode":"shared"}}"#, "invalid cgroup namespace mode: shared"),
        (
            r#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"nfs","Target":"/x"}]}}"#,
            "invalid mount config for type \"nfs\": mount type unknown",
        ),
    ];
    for (body, want) in cases {
        let (st, text) = send(&f, "POST", "/containers/create", body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert_eq!(message(&text), want);
    }
    assert!(f.calls().is_empty(), "{:?}", f.calls());
}

#[tokio::test]
async fn list_turns_the_query_into_options() {
    let f = Arc::new(Fake::default());
    let (st, body) = send(
        &f,
        "GET",
        "/v1.41/containers/json?all=1&size=true&limit=2&filters=%7B%22label%22%3A%5B%22a%3D1%22%5D%7D",
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()[0]["Id"], "c0ffee");
    let (st, _) = send(&f, "GET", "/containers/json?limit=0", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, text) = send(&f, "GET", "/containers/json?filters=notjson", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(
        f.calls(),
        [
            r#"list ListOptions { all: true, limit: Some(2), size: true, filters: {"label": ["a=1"]} }"#,
            "list ListOptions { all: false, limit: None, size: false, filters: {} }",
        ],
        "limit=0 means no limit; a bad filter never reaches the backend"
    );
}

#[tokio::test]
async fn lifecycle_calls_carry_their_parameters() {
    let f = Arc::new(Fake::with(&["web"]));
    for (method, uri, want) in [
        ("POST", "/containers/web/start", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/stop?t=3&signal=SIGINT", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/restart?t=0", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/pause", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/unpause", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/rename?name=db", StatusCode::NO_CONTENT),
        ("POST", "/containers/web/resize?h=99999&w=80", StatusCode::OK),
        ("DELETE", "/containers/web?force=1&v=true", StatusCode::NO_CONTENT),
        ("DELETE", "/containers/web/db?link=1", StatusCode::NO_CONTENT),
    ] {
        let (st, body) = send(&f, method, uri, "").await;
        assert_eq!(st, want, "{method} {uri}: {body}");
    }
    assert_eq!(
        f.calls(),
        [
            "start web",
            r#"stop web Some(3) Some("SIGINT")"#,
            "restart web Some(0) None",
            "pause web true",
            "pause web false",
            "rename web db",
            "resize web 65535x80",
            "remove web force=true volumes=true",
            "remove_link web db",
        ]
    );
}

#[tokio::test]
async fn errors_map_to_dockerds_statuses() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "POST", "/containers/nosuch/start", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "No such container: nosuch");
    // Killing a stopped container: a conflict, except for clients older than 1.20.
    let (st, _) = send(&f, "POST", "/v1.41/containers/web/kill", "").await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = send(&f, "POST", "/v1.19/containers/web/kill", "").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = send(&f, "POST", "/containers/web/rename", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "missing name"));
    let (st, body) = send(&f, "DELETE", "/containers/web?link=1", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "Conflict, cannot remove the default link name of the container /web");
    let (st, _) = send(&f, "DELETE", "/containers/web/db", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a path under a container without link=1 is no container");
}

#[tokio::test]
async fn wait_checks_before_it_streams() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "POST", "/containers/web/wait?condition=sometime", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, _) = send(&f, "POST", "/containers/nosuch/wait", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an unknown container is a 404, not a 200 with an error");
    let (st, body) = send(&f, "POST", "/containers/web/wait?condition=next-exit", "").await;
    assert_eq!(st, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["StatusCode"], 3);
    assert_eq!(f.calls(), ["wait web NextExit"]);
}

#[tokio::test]
async fn logs_parse_tail_and_times_and_frame_the_output() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "GET", "/containers/web/logs?stdout=1&tail=abc", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "invalid tail value: abc"));
    let (st, body) = send(&f, "GET", "/containers/web/logs?stdout=1&tail=5&since=1700000000&follow=1", "").await;
    assert_eq!(st, StatusCode::OK);
    // One multiplexed frame: stdout, 6 bytes.
    assert_eq!(body.as_bytes(), b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n");
    let (_, _) = send(&f, "GET", "/containers/web/logs?stdout=1&tail=all", "").await;
    assert_eq!(
        f.calls(),
        ["logs web tail=Some(5) follow=true since=true", "logs web tail=None follow=false since=false"]
    );
}

#[tokio::test]
async fn archives_need_a_path_and_carry_its_stat() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "GET", "/containers/web/archive", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "missing path"));
    let (st, body) = send(&f, "GET", "/containers/web/archive?path=/etc/hosts", "").await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "tar bytes"));
    let (st, _) = send(&f, "PUT", "/containers/web/archive?path=/tmp&copyUIDGID=1", "twelve bytes").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(&f, "GET", "/containers/web/export", "").await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "tar bytes"));
    assert_eq!(
        f.calls(),
        [
            "stat web /etc/hosts",
            "archive web /etc/hosts",
            "extract web /tmp 12 ids=true no_overwrite=false",
            "export web"
        ]
    );
}

#[tokio::test]
async fn commit_parses_the_reference_and_an_empty_config() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "POST", "/commit?container=web&repo=Upper", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) =
        send(&f, "POST", "/commit?container=web&repo=me/app&tag=v1&pause=0&changes=ENV%20A%3D1", "null").await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _) = send(&f, "POST", "/commit?repo=x", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no container");
    assert_eq!(f.calls(), [r#"commit web Some("docker.io/me/app:v1") pause=false changes=["ENV A=1"] config=false"#]);
}

#[tokio::test]
async fn prune_and_changes_answer_in_dockerds_shape() {
    let f = Arc::new(Fake::with(&["web"]));
    let (st, body) = send(&f, "POST", "/containers/prune?filters=%7B%22until%22%3A%5B%2210m%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"ContainersDeleted": ["old"], "SpaceReclaimed": 42}));
    let (st, body) = send(&f, "GET", "/containers/web/changes", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([{"Path": "/foo", "Kind": 1}])
    );
    assert_eq!(f.calls(), [r#"prune {"until": ["10m"]}"#, "changes web"]);
}

/// A refused removal in the words of the dockerd the client was written against: dockerd 25's
/// from API 1.44, dockerd 20.10's before.
#[tokio::test]
async fn a_refused_removal_speaks_the_clients_dockerd() {
    let f = Arc::new(Fake::default());
    let (st, body) = send(&f, "DELETE", "/v1.50/containers/running", "").await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        body.contains(r#"cannot remove container \"/running\": container is running: stop the container before removing or force remove"#),
        "{body}"
    );
    let (st, body) = send(&f, "DELETE", "/v1.41/containers/running", "").await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(body.contains("You cannot remove a running container c0ffee. Stop the container"), "{body}");
}
