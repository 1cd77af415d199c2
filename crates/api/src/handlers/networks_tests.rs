//! The network routes against a fake backend.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bollard_stubs::models::EndpointSettings;
use skiff_engine::network::{CreateRequest, MemberView, NetworkFilters, NetworkRecord};
use skiff_engine::{EngineError, Result};

use crate::backend::NetworkBackend;
use crate::test_support::{message, send, value};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
}

fn record() -> NetworkRecord {
    serde_json::from_value(serde_json::json!({
        "id": "n1", "name": "front", "driver": "bridge", "created": "2026-12-07T00:00:00Z", "builtin": false,
        "bridge": "br-n1", "subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "internal": false,
        "attachable": false, "icc": true
    }))
    .unwrap()
}

impl NetworkBackend for Fake {
    async fn list(&self, filters: &NetworkFilters) -> Result<Vec<(NetworkRecord, Vec<MemberView>)>> {
        self.call(format!("list {filters:?}"));
        Ok(vec![(record(), vec![])])
    }
    async fn inspect(&self, key: &str) -> Result<(NetworkRecord, Vec<MemberView>)> {
        if key != "front" {
            return Err(EngineError::not_found(format!("network {key} not found")));
        }
        let m = MemberView {
            container_id: "c1".into(),
            name: "web".into(),
            endpoint_id: "e1".into(),
            mac: "02:42:0a:09:00:02".into(),
            ip: "10.9.0.2".parse().unwrap(),
            prefix: 24,
        };
        Ok((record(), vec![m]))
    }
    async fn create(&self, req: CreateRequest) -> Result<NetworkRecord> {
        self.call(format!(
            "create {} {:?} subnet={:?} gw={:?} v6={} labels={:?}",
            req.name, req.driver, req.subnet, req.gateway, req.enable_ipv6, req.labels
        ));
        Ok(record())
    }
    async fn remove(&self, key: &str) -> Result<()> {
        self.call(format!("remove {key}"));
        Ok(())
    }
    async fn prune(&self, filters: &NetworkFilters) -> Result<Vec<String>> {
        self.call(format!("prune until={:?} label={:?}", filters.until, filters.label));
        Ok(vec!["front".into()])
    }
    async fn connect(&self, network: &str, container: &str, settings: Option<EndpointSettings>) -> Result<()> {
        let aliases = settings.and_then(|s| s.aliases);
        self.call(format!("connect {network} {container} {aliases:?}"));
        Ok(())
    }
    async fn disconnect(&self, network: &str, container: &str, force: bool) -> Result<()> {
        self.call(format!("disconnect {network} {container} {force}"));
        Ok(())
    }
}

#[tokio::test]
async fn network_routes() {
    let f = Arc::new(Fake::default());
    let swarm = Arc::new(crate::handlers::swarm::tests::FakeSwarm::default());
    let r = || super::routes(f.clone(), swarm.clone());
    for uri in ["/networks", "/networks/", "/v1.41/networks?filters=%7B%22label%22%3A%5B%22a%22%5D%7D"] {
        let (st, body) = send(r(), "GET", uri, "").await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        assert_eq!(value(&body)[0]["IPAM"]["Config"][0]["Subnet"], "10.9.0.0/24");
        assert_eq!(value(&body)[0]["Containers"], serde_json::json!({}), "a list shows no members");
    }
    let (st, body) = send(r(), "GET", "/networks/front", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(&body)["Containers"]["c1"]["IPv4Address"], "10.9.0.2/24");
    let (st, body) = send(r(), "GET", "/networks/back", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::NOT_FOUND, "network back not found"));
    let (st, _) = send(r(), "GET", "/networks?filters=%7B%22type%22%3A%5B%22odd%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a bad filter never reaches the backend");

    let body = r#"{"Name":"front","Driver":"","Labels":null,"IPAM":{"Driver":"default","Options":null,
        "Config":[{"Subnet":"10.9.0.0/24","Gateway":"10.9.0.1"},{"Subnet":"fd00::/64"}]}}"#;
    let (st, text) = send(r(), "POST", "/networks/create", body).await;
    assert_eq!(st, StatusCode::CREATED, "{text}");
    assert_eq!(value(&text)["Id"], "n1");
    let (st, text) = send(r(), "POST", "/networks/create", r#"{"Name":"x","IPAM":{"Driver":"weave"}}"#).await;
    assert_eq!((st, message(&text).as_str()), (StatusCode::NOT_FOUND, "plugin \"weave\" not found"));
    let two = r#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.1.0.0/24"},{"Subnet":"10.2.0.0/24"}]}}"#;
    let (st, _) = send(r(), "POST", "/networks/create", two).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, _) =
        send(r(), "POST", "/networks/front/connect", r#"{"Container":"web","EndpointConfig":{"Aliases":["w"]}}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, text) = send(r(), "POST", "/networks/front/connect", r#"{"Container":""}"#).await;
    assert_eq!((st, message(&text).as_str()), (StatusCode::BAD_REQUEST, "no container specified"));
    let (st, _) = send(r(), "POST", "/networks/front/disconnect", r#"{"Container":"web","Force":true}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = send(r(), "DELETE", "/networks/front", "").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, text) = send(r(), "POST", "/networks/prune?filters=%7B%22until%22%3A%5B%221700000000%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(&text), serde_json::json!({"NetworksDeleted": ["front"]}));

    let calls = f.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 8, "{calls:#?}");
    assert!(calls[2].contains(r#"label: ["a"]"#), "{}", calls[2]);
    assert_eq!(
        calls[3..],
        [
            // An empty driver is the default; an IPv6 subnet asks for IPv6 (refused by the engine).
            r#"create front None subnet=Some("10.9.0.0/24") gw=Some("10.9.0.1") v6=true labels={}"#,
            r#"connect front web Some(["w"])"#,
            "disconnect front web true",
            "remove front",
            "prune until=Some(1700000000) label=[]",
        ]
    );
}

#[tokio::test]
async fn overlay_networks_are_the_swarms() {
    use crate::handlers::swarm::tests::FakeSwarm;
    let f = Arc::new(Fake::default());
    let swarm = Arc::new(FakeSwarm { active: true, ..Default::default() });
    let r = || super::routes(f.clone(), swarm.clone());
    // Listed beside the engine's, scoped to the swarm.
    let (st, body) = send(r(), "GET", "/networks", "").await;
    assert_eq!(st, StatusCode::OK);
    let v = value(&body);
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|n| n["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["front", "mesh"]);
    assert_eq!(v[1]["Scope"], "swarm");
    assert_eq!(v[1]["Driver"], "overlay");
    let (_, body) = send(r(), "GET", "/networks?filters=%7B%22driver%22%3A%5B%22bridge%22%5D%7D", "").await;
    let v = value(&body);
    assert!(v.as_array().unwrap().iter().all(|n| n["Name"] != "mesh"), "filters apply to swarm networks too: {v}");
    let (st, body) = send(r(), "GET", "/networks/mesh", "").await;
    assert_eq!((st, value(&body)["IPAM"]["Config"][0]["Gateway"].clone()), (StatusCode::OK, "10.0.0.1".into()));
    // Created and removed through the swarm; a local one through the engine.
    let (st, body) =
        send(r(), "POST", "/networks/create", r#"{"Name":"back","Driver":"overlay","Attachable":true}"#).await;
    assert_eq!((st, value(&body)["Id"].clone()), (StatusCode::CREATED, "ov2".into()));
    let (st, _) = send(r(), "DELETE", "/networks/mesh", "").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(swarm.calls.lock().unwrap().clone(), ["create_network back Some(true)", "remove_network ov1"]);
    // Not in a swarm: an overlay cannot be made.
    let off = Arc::new(FakeSwarm::default());
    let (st, body) =
        send(super::routes(f.clone(), off), "POST", "/networks/create", r#"{"Name":"x","Driver":"overlay"}"#).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
