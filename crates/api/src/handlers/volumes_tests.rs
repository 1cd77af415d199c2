//! The volume routes against a fake backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use skiff_engine::volume_ops::VolumePruneReport;
use skiff_engine::volumes::VolumeRecord;
use skiff_engine::{EngineError, Result};

use crate::backend::VolumeBackend;
use crate::test_support::{message, send, value};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

fn record(name: &str) -> VolumeRecord {
    VolumeRecord {
        name: name.into(),
        driver: "local".into(),
        mountpoint: format!("/data/volumes/{name}/_data").into(),
        created_at: "2026-12-07T00:00:00Z".into(),
        labels: BTreeMap::from([("a".into(), "1".into())]),
        options: BTreeMap::new(),
        anonymous: false,
        pending_for: None,
    }
}

impl VolumeBackend for Fake {
    fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord> {
        self.calls.lock().unwrap().push(format!("create {name:?} {driver:?} {labels:?} {options:?}"));
        Ok(record(name.unwrap_or("generated")))
    }
    fn list(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<VolumeRecord>> {
        self.calls.lock().unwrap().push(format!("list {filters:?}"));
        Ok(vec![record("data")])
    }
    fn inspect(&self, name: &str) -> Result<VolumeRecord> {
        if name == "data" {
            Ok(record(name))
        } else {
            Err(EngineError::not_found(format!("get {name}: no such volume")))
        }
    }
    fn remove(&self, name: &str) -> Result<()> {
        Err(EngineError::conflict(format!("remove {name}: volume is in use - [abc]")))
    }
    fn prune(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<VolumePruneReport> {
        self.calls.lock().unwrap().push(format!("prune {filters:?}"));
        Ok(VolumePruneReport { deleted: vec!["old".into()], reclaimed: 7 })
    }
}

#[tokio::test]
async fn volume_routes() {
    let f = Arc::new(Fake::default());
    let r = || super::routes(f.clone());
    let (st, body) = send(r(), "POST", "/volumes/create", r#"{"Name":"","Labels":null,"DriverOpts":{"o":"x"}}"#).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let v = value(&body);
    assert_eq!(
        (v["Name"].as_str(), v["Scope"].as_str(), v["Labels"]["a"].as_str()),
        (Some("generated"), Some("local"), Some("1"))
    );
    let (st, body) = send(r(), "GET", "/v1.41/volumes?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(&body)["Volumes"][0]["Mountpoint"], "/data/volumes/data/_data");
    assert_eq!(value(&body)["Warnings"], serde_json::json!([]));
    let (st, body) = send(r(), "GET", "/volumes/nope", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::NOT_FOUND, "get nope: no such volume"));
    let (st, body) = send(r(), "DELETE", "/volumes/data?force=1", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::CONFLICT, "remove data: volume is in use - [abc]"));
    let (st, body) = send(r(), "POST", "/volumes/prune", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(&body), serde_json::json!({"VolumesDeleted": ["old"], "SpaceReclaimed": 7}));
    assert_eq!(
        *f.calls.lock().unwrap(),
        [r#"create None None {} {"o": "x"}"#, r#"list {"dangling": ["true"]}"#, "prune {}",],
        "an empty name means a generated one"
    );
}
