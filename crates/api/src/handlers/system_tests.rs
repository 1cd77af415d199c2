//! The system routes against a fake backend.

use std::sync::Arc;

use axum::http::StatusCode;
use bollard_stubs::models::{SystemDataUsageResponse, SystemInfo, SystemVersion};
use skiff_engine::Result;
use skiff_engine::events::{Event, EventKind};
use tokio::sync::broadcast;

use crate::backend::SystemBackend;
use crate::test_support::{send, value};

struct Fake {
    history: Vec<Arc<Event>>,
    live: broadcast::Sender<Arc<Event>>,
}

impl SystemBackend for Fake {
    fn version(&self) -> SystemVersion {
        SystemVersion { api_version: Some("1.47".into()), ..Default::default() }
    }
    fn info(&self) -> SystemInfo {
        SystemInfo { containers: Some(3), ..Default::default() }
    }
    fn df(&self) -> Result<SystemDataUsageResponse> {
        Ok(SystemDataUsageResponse { layers_size: Some(42), ..Default::default() })
    }
    fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        (self.history.clone(), self.live.subscribe())
    }
}

#[tokio::test]
async fn system_routes() {
    let mut old = Event::new(EventKind::Container, "start", "c1").attr("image", "busybox");
    old.time_nano = 1_700_000_000_000_000_000;
    let history = vec![
        Arc::new(old.clone()),
        Arc::new(Event { kind: EventKind::Network, ..old.clone() }),
        Arc::new(Event { time_nano: 1_800_000_000_000_000_000, ..old }),
    ];
    let f = Arc::new(Fake { history, live: broadcast::channel(4).0 });
    let swarm = Arc::new(crate::handlers::swarm::tests::FakeSwarm::default());
    let r = || super::routes(f.clone()).merge(super::info_routes(f.clone(), swarm.clone()));
    let (st, _) = send(r(), "HEAD", "/_ping", "").await;
    assert_eq!(st, StatusCode::OK);
    let (_, body) = send(r(), "GET", "/v1.41/version", "").await;
    assert_eq!(value(&body)["ApiVersion"], "1.47");
    let (_, body) = send(r(), "GET", "/info", "").await;
    assert_eq!(value(&body)["Containers"], 3);
    assert_eq!(value(&body)["Swarm"]["LocalNodeState"], "inactive", "the swarm backend's section");
    let (_, body) = send(r(), "GET", "/system/df", "").await;
    assert_eq!(value(&body)["LayersSize"], 42);
    // A window in the past: the kept events in it that pass the filter, then the end.
    let (st, body) = send(
        r(),
        "GET",
        "/events?since=1600000000&until=1750000000&filters=%7B%22type%22%3A%5B%22container%22%5D%7D",
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let lines: Vec<serde_json::Value> = body.lines().map(value).collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["Type"], "container");
    assert_eq!(lines[0]["from"], "busybox");
    assert_eq!(lines[0]["time"], 1_700_000_000);
    let (st, _) = send(r(), "GET", "/events?since=yesterday", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}
