//! The swarm routes against a fake backend.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bollard_stubs::models::{
    LocalNodeState, Node, NodeSpec, NodeSpecAvailabilityEnum, Secret, SecretSpec, Service, ServiceCreateResponse,
    ServiceSpec, ServiceUpdateResponse, Swarm, SwarmInfo, SwarmInitRequest, SwarmJoinRequest, SwarmSpec, Task,
};
use skiff_engine::{EngineError, Kind, Result};

use skiff_engine::container::logs::{LogLine, LogOptions};

use crate::backend::{BlobKind, ServiceAuth, SwarmBackend, TokenRotation};
use crate::test_support::{message, send, value};

/// A swarm backend that records what it is asked.
#[derive(Default)]
pub(crate) struct FakeSwarm {
    pub active: bool,
    pub calls: Mutex<Vec<String>>,
}

impl FakeSwarm {
    fn said(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl SwarmBackend for FakeSwarm {
    async fn info(&self) -> SwarmInfo {
        SwarmInfo {
            local_node_state: Some(if self.active { LocalNodeState::ACTIVE } else { LocalNodeState::INACTIVE }),
            ..Default::default()
        }
    }
    async fn init(&self, req: SwarmInitRequest) -> Result<String> {
        let autolock = req.spec.and_then(|s| s.encryption_config).and_then(|e| e.auto_lock_managers);
        self.said(format!("init {:?} {:?} autolock={autolock:?}", req.listen_addr, req.advertise_addr));
        Ok("node1".into())
    }
    async fn join(&self, req: SwarmJoinRequest) -> Result<()> {
        self.said(format!("join {:?}", req.remote_addrs));
        Ok(())
    }
    async fn leave(&self, force: bool) -> Result<()> {
        self.said(format!("leave {force}"));
        if self.active { Ok(()) } else { Err(EngineError::new(Kind::Unavailable, "This node is not part of a swarm")) }
    }
    async fn inspect(&self) -> Result<Swarm> {
        Ok(Swarm { id: Some("c1".into()), ..Default::default() })
    }
    async fn update(&self, version: u64, spec: SwarmSpec, rotate: TokenRotation) -> Result<()> {
        self.said(format!("update {version} {:?} {rotate:?}", spec.name));
        Ok(())
    }
    async fn unlock_key(&self) -> Result<String> {
        Err(EngineError::new(Kind::NotFound, "no unlock key is set"))
    }
    async fn unlock(&self, key: &str) -> Result<()> {
        self.said(format!("unlock {key}"));
        Err(EngineError::new(Kind::Invalid, "swarm is not locked"))
    }
    async fn nodes(&self, filters: Option<&str>) -> Result<Vec<Node>> {
        self.said(format!("nodes {filters:?}"));
        Ok(vec![Node { id: Some("n1".into()), ..Default::default() }])
    }
    async fn node(&self, id: &str) -> Result<Node> {
        Err(EngineError::not_found(format!("node {id} not found")))
    }
    async fn update_node(&self, id: &str, version: u64, spec: NodeSpec) -> Result<()> {
        self.said(format!("update_node {id} {version} {:?}", spec.availability));
        Ok(())
    }
    async fn remove_node(&self, id: &str, force: bool) -> Result<()> {
        self.said(format!("remove_node {id} {force}"));
        Ok(())
    }
    async fn services(&self, filters: Option<&str>, status: bool) -> Result<Vec<Service>> {
        self.in_swarm()?;
        self.said(format!("services {filters:?} {status}"));
        Ok(vec![Service { id: Some("s1".into()), ..Default::default() }])
    }
    async fn service(&self, id: &str) -> Result<Service> {
        Err(EngineError::not_found(format!("service {id} not found")))
    }
    async fn create_service(&self, spec: ServiceSpec, auth: Option<String>) -> Result<ServiceCreateResponse> {
        self.in_swarm()?;
        let health =
            spec.task_template.and_then(|t| t.container_spec).and_then(|c| c.health_check).and_then(|h| h.test);
        self.said(format!("create_service {:?} {health:?} {auth:?}", spec.name));
        Ok(ServiceCreateResponse { id: Some("s1".into()), warnings: None })
    }
    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: ServiceSpec,
        rollback: bool,
        auth: ServiceAuth,
    ) -> Result<ServiceUpdateResponse> {
        self.said(format!("update_service {id} {version} {:?} {rollback} {auth:?}", spec.name));
        Ok(ServiceUpdateResponse { warnings: None })
    }
    async fn remove_service(&self, id: &str) -> Result<()> {
        self.said(format!("remove_service {id}"));
        Ok(())
    }
    async fn tasks(&self, filters: Option<&str>) -> Result<Vec<Task>> {
        self.said(format!("tasks {filters:?}"));
        Ok(Vec::new())
    }
    async fn task(&self, id: &str) -> Result<Task> {
        Err(EngineError::not_found(format!("task {id} not found")))
    }
    async fn blobs(&self, kind: BlobKind, filters: Option<&str>) -> Result<Vec<Secret>> {
        self.in_swarm()?;
        self.said(format!("blobs {kind:?} {filters:?}"));
        Ok(vec![Secret { id: Some("b1".into()), ..Default::default() }])
    }
    async fn blob(&self, kind: BlobKind, id: &str) -> Result<Secret> {
        Err(EngineError::not_found(format!("{kind:?} {id} not found")))
    }
    async fn create_blob(&self, kind: BlobKind, spec: SecretSpec) -> Result<String> {
        self.said(format!("create_blob {kind:?} {:?} {:?}", spec.name, spec.data));
        Ok("b1".into())
    }
    async fn update_blob(&self, kind: BlobKind, id: &str, version: u64, spec: SecretSpec) -> Result<()> {
        self.said(format!("update_blob {kind:?} {id} {version} {:?}", spec.labels));
        Ok(())
    }
    async fn remove_blob(&self, kind: BlobKind, id: &str) -> Result<()> {
        self.said(format!("remove_blob {kind:?} {id}"));
        Ok(())
    }
    async fn service_logs(
        &self,
        id: &str,
        task: bool,
        opts: LogOptions,
    ) -> Result<(bool, tokio::sync::mpsc::Receiver<LogLine>)> {
        self.in_swarm()?;
        self.said(format!("service_logs {id} {task} follow={} tail={:?}", opts.follow, opts.tail));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let attrs = [("com.docker.swarm.task.id".to_string(), "t1".to_string())].into_iter().collect();
        let line = LogLine {
            stream: skiff_engine::types::Stream::Stdout,
            time: "2026-12-07T00:00:00.000000000Z".into(),
            data: bytes::Bytes::from_static(b"hello\n"),
            attrs: Some(attrs),
        };
        tx.send(line).await.unwrap();
        Ok((false, rx))
    }
    async fn networks(&self) -> Result<Vec<skiff_engine::network::NetworkRecord>> {
        Ok(if self.active { vec![overlay_record()] } else { Vec::new() })
    }
    async fn network(&self, key: &str) -> Result<Option<skiff_engine::network::NetworkRecord>> {
        Ok(self.networks().await?.into_iter().find(|n| n.id == key || n.name == key))
    }
    async fn create_network(&self, req: bollard_stubs::models::NetworkCreateRequest) -> Result<String> {
        self.in_swarm()?;
        self.said(format!("create_network {} {:?}", req.name, req.attachable));
        Ok("ov2".into())
    }
    async fn remove_network(&self, id: &str) -> Result<()> {
        self.said(format!("remove_network {id}"));
        Ok(())
    }
}

/// The swarm network the fake's managers keep.
pub(crate) fn overlay_record() -> skiff_engine::network::NetworkRecord {
    serde_json::from_value(serde_json::json!({
        "id": "ov1", "name": "mesh", "driver": "overlay", "created": "2026-12-07T00:00:00Z", "builtin": false,
        "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "internal": false, "attachable": false, "icc": true,
        "vni": 4097
    }))
    .unwrap()
}

impl FakeSwarm {
    fn in_swarm(&self) -> Result<()> {
        if self.active { Ok(()) } else { Err(EngineError::new(Kind::Unavailable, "This node is not part of a swarm")) }
    }
}

#[tokio::test]
async fn swarm_calls_reach_the_backend_as_dockerd_reads_them() {
    let f = Arc::new(FakeSwarm { active: true, ..Default::default() });
    let r = || super::routes(f.clone());
    let (st, body) =
        send(r(), "POST", "/v1.41/swarm/init", r#"{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":null}"#).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(value(&body), "node1", "the node ID as a JSON string");
    // The CLI's `--autolock` travels beside the spec; the cluster reads it in the spec.
    let (st, _) = send(r(), "POST", "/swarm/init", r#"{"AutoLockManagers":true,"Spec":{"Name":"x"}}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "POST", "/swarm/update?version=7&rotateWorkerToken=1", r#"{"Name":"default"}"#).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = send(r(), "POST", "/swarm/update", "{}").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no version: {body}");
    let (st, _) = send(r(), "POST", "/nodes/n1/update?version=3", r#"{"Availability":"drain","Role":"worker"}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/nodes?filters=%7B%22role%22%3A%7B%22manager%22%3Atrue%7D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(&body)[0]["ID"], "n1");
    let (st, _) = send(r(), "DELETE", "/nodes/n1?force=1", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/nodes/zz", "").await;
    assert_eq!((st, message(&body)), (StatusCode::NOT_FOUND, "node zz not found".into()));
    assert_eq!(
        f.calls(),
        [
            "init Some(\"0.0.0.0:2377\") None autolock=None",
            "init None None autolock=Some(true)",
            "update 7 Some(\"default\") TokenRotation { worker: true, manager: false, unlock_key: false }",
            format!("update_node n1 3 {:?}", Some(NodeSpecAvailabilityEnum::DRAIN)).as_str(),
            "nodes Some(\"{\\\"role\\\":{\\\"manager\\\":true}}\")",
            "remove_node n1 true",
        ]
    );
}

#[tokio::test]
async fn bad_joins_are_refused_before_the_backend_is_asked() {
    let f = Arc::new(FakeSwarm::default());
    let r = || super::routes(f.clone());
    let (st, body) = send(r(), "POST", "/swarm/join", r#"{"RemoteAddrs":["10.0.0.1:2377"]}"#).await;
    assert_eq!((st, message(&body)), (StatusCode::BAD_REQUEST, "invalid join token".into()));
    let (st, _) = send(r(), "POST", "/swarm/join", r#"{"JoinToken":"SWMTKN-1-x-y","RemoteAddrs":[]}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = send(r(), "POST", "/swarm/join", "{").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(f.calls().is_empty(), "{:?}", f.calls());
}

#[tokio::test]
async fn services_outside_a_swarm_are_dockerds_503_and_logs_are_framed_as_docker_logs() {
    let outside = Arc::new(FakeSwarm::default());
    let (st, body) = send(super::routes(outside.clone()), "GET", "/v1.41/services", "").await;
    assert_eq!((st, message(&body)), (StatusCode::SERVICE_UNAVAILABLE, "This node is not part of a swarm".into()));
    let (st, body) = send(super::routes(outside.clone()), "GET", "/secrets", "").await;
    assert_eq!((st, message(&body)), (StatusCode::SERVICE_UNAVAILABLE, "This node is not part of a swarm".into()));
    let (st, body) = send(super::routes(outside), "POST", "/swarm/leave", "").await;
    assert_eq!((st, message(&body)), (StatusCode::SERVICE_UNAVAILABLE, "This node is not part of a swarm".into()));
    let inside = Arc::new(FakeSwarm { active: true, ..Default::default() });
    let r = || super::routes(inside.clone());
    let (st, body) = send(r(), "GET", "/services/web/logs?stdout=1&details=1&tail=5&follow=1", "").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.ends_with("com.docker.swarm.task.id=t1 hello\n"), "the details prefix the CLI reads: {body:?}");
    let (st, _) = send(r(), "GET", "/tasks/t1/logs", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no stream chosen");
    assert_eq!(inside.calls(), ["service_logs web false follow=true tail=Some(5)"]);
}

#[tokio::test]
async fn secrets_and_configs_share_their_calls() {
    let f = Arc::new(FakeSwarm { active: true, ..Default::default() });
    let r = || super::routes(f.clone());
    let (st, body) = send(r(), "POST", "/secrets/create", r#"{"Name":"pw","Data":"czNjcmV0"}"#).await;
    assert_eq!((st, value(&body)["ID"].clone()), (StatusCode::CREATED, "b1".into()), "{body}");
    let (st, body) = send(r(), "GET", "/configs", "").await;
    assert_eq!((st, value(&body)[0]["ID"].clone()), (StatusCode::OK, "b1".into()));
    let (st, _) = send(r(), "POST", "/configs/b1/update?version=4", r#"{"Name":"c","Labels":{"a":"b"}}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = send(r(), "DELETE", "/secrets/b1", "").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = send(r(), "GET", "/configs/zz", "").await;
    assert_eq!((st, message(&body)), (StatusCode::NOT_FOUND, "Config zz not found".into()));
    assert_eq!(
        f.calls(),
        [
            "create_blob Secret Some(\"pw\") Some(\"czNjcmV0\")",
            "blobs Config None",
            "update_blob Config b1 4 Some({\"a\": \"b\"})",
            "remove_blob Secret b1",
        ]
    );
}

#[tokio::test]
async fn service_and_task_calls_reach_the_backend_as_dockerd_reads_them() {
    let f = Arc::new(FakeSwarm { active: true, ..Default::default() });
    let r = || super::routes(f.clone());
    let create =
        r#"{"Name":"web","Labels":null,"TaskTemplate":{"ContainerSpec":{"Healthcheck":{"Test":["CMD","true"]}}}}"#;
    let (st, body) = send(r(), "POST", "/v1.41/services/create", create).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(value(&body)["ID"], "s1");
    let (st, body) = send(r(), "GET", "/services?status=true", "").await;
    assert_eq!((st, value(&body)[0]["ID"].clone()), (StatusCode::OK, "s1".into()));
    let (st, _) = send(r(), "POST", "/services/s1/update?version=9&rollback=previous", r#"{"Name":"web"}"#).await;
    assert_eq!(st, StatusCode::OK);
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/services/s1/update?version=10")
        .header("X-Registry-Auth", "eyJ1c2VybmFtZSI6InUifQ==")
        .body(axum::body::Body::from(r#"{"Name":"web"}"#))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(r(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (st, _) = send(r(), "POST", "/services/s1/update?version=11&registryAuthFrom=previous-spec", "{}").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "POST", "/services/s1/update?version=12&registryAuthFrom=elsewhere", "{}").await;
    assert_eq!((st, message(&body)), (StatusCode::BAD_REQUEST, "invalid registryAuthFrom value: elsewhere".into()));
    let (st, body) = send(r(), "POST", "/services/s1/update?version=9&rollback=sideways", "{}").await;
    assert_eq!((st, message(&body)), (StatusCode::BAD_REQUEST, "unrecognized rollback option sideways".into()));
    let (st, _) = send(r(), "POST", "/services/s1/update", "{}").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no version");
    let (st, body) = send(r(), "POST", "/services/create", r#"{"Name":7}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, _) = send(r(), "DELETE", "/services/s1", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/tasks?filters=%7B%22service%22%3A%5B%22web%22%5D%7D", "").await;
    assert_eq!((st, body.trim()), (StatusCode::OK, "[]"));
    let (st, body) = send(r(), "GET", "/tasks/zz", "").await;
    assert_eq!((st, message(&body)), (StatusCode::NOT_FOUND, "task zz not found".into()));
    assert_eq!(
        f.calls(),
        [
            "create_service Some(\"web\") Some([\"CMD\", \"true\"]) None",
            "services None true",
            "update_service s1 9 Some(\"web\") true FromSpec",
            "update_service s1 10 Some(\"web\") false Given(\"eyJ1c2VybmFtZSI6InUifQ==\")",
            "update_service s1 11 None false FromPreviousSpec",
            "remove_service s1",
            "tasks Some(\"{\\\"service\\\":[\\\"web\\\"]}\")",
        ]
    );
}
