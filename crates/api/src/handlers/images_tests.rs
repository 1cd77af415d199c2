//! The image routes against a fake backend.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bollard_stubs::models::{
    HistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImagePruneResponse, ImageSummary,
};
use skiff_engine::images::ImageFilters;
use skiff_engine::types::{Credentials, LoadResult, Progress, Reference, SaveItem, Sink};
use skiff_engine::{EngineError, Result};

use crate::backend::{ArchiveReader, ArchiveWriter, ImageBackend};
use crate::test_support::{message, send, value};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
    fn known(name: &str) -> Result<()> {
        if name.starts_with("busybox") || name == "me/app" {
            Ok(())
        } else {
            Err(EngineError::not_found(format!("No such image: {name}")))
        }
    }
}

impl ImageBackend for Fake {
    fn list(&self, all: bool, f: &ImageFilters) -> Result<Vec<ImageSummary>> {
        self.call(format!("list all={all} dangling={:?} refs={:?}", f.dangling, f.references));
        Ok(vec![])
    }
    fn inspect(&self, name: &str) -> Result<ImageInspect> {
        Self::known(name)?;
        Ok(ImageInspect { id: Some("sha256:1".into()), ..Default::default() })
    }
    fn history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        Self::known(name)?;
        Ok(vec![])
    }
    fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        Self::known(name)?;
        self.call(format!("tag {name} {repo} {tag:?}"));
        Ok(())
    }
    fn remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>> {
        Self::known(name)?;
        self.call(format!("remove {name} force={force}"));
        Ok(vec![ImageDeleteResponseItem { untagged: Some(name.into()), deleted: None }])
    }
    fn prune(&self, all: bool) -> Result<ImagePruneResponse> {
        self.call(format!("prune all={all}"));
        Ok(ImagePruneResponse::default())
    }
    async fn import(
        &self,
        _r: ArchiveReader,
        reference: Option<Reference>,
        changes: Vec<String>,
        message: Option<String>,
        platform: Option<String>,
    ) -> Result<String> {
        self.call(format!("import {:?} {changes:?} {message:?} {platform:?}", reference.map(|r| r.to_string())));
        Ok("sha256:2".into())
    }
    async fn load(&self, _r: ArchiveReader) -> Result<LoadResult> {
        Err(EngineError::invalid("invalid archive: no manifest.json"))
    }
    fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>> {
        for n in names {
            Self::known(n)?;
        }
        Ok(vec![])
    }
    fn save(&self, _items: &[SaveItem], w: ArchiveWriter<'_>) -> Result<()> {
        Ok(w.write_all(b"archive")?)
    }
    async fn pull(&self, r: &Reference, platform: Option<&str>, creds: Option<Credentials>, sink: Sink) -> Result<()> {
        self.call(format!("pull {r} {platform:?} creds={}", creds.is_some()));
        if r.to_string().contains("missing") {
            return Err(EngineError::not_found(format!("pull access denied for {r}")));
        }
        if r.to_string().contains("endless") {
            // A pull that goes on until it is dropped, and says so when it is.
            struct Dropped<'a>(&'a Fake);
            impl Drop for Dropped<'_> {
                fn drop(&mut self) {
                    self.0.call("pull dropped".into());
                }
            }
            let _d = Dropped(self);
            sink(Progress::Status(format!("Pulling from {r}")));
            std::future::pending::<()>().await;
        }
        sink(Progress::Status(format!("Pulling from {r}")));
        sink(Progress::Item { id: "abc".into(), status: "Downloading".into(), current: Some(5), total: Some(10) });
        Err(EngineError::internal("connection reset"))
    }
    async fn push(&self, r: &Reference, _creds: Option<Credentials>, sink: Sink) -> Result<()> {
        self.call(format!("push {r}"));
        sink(Progress::Status("pushed".into()));
        Ok(())
    }
    async fn login(&self, server: &str, _creds: Credentials) -> Result<()> {
        self.call(format!("login {server}"));
        Ok(())
    }
}

#[tokio::test]
async fn image_routes() {
    let f = Arc::new(Fake::default());
    let r = || super::routes(f.clone());
    let (st, _) = send(r(), "GET", "/images/json?all=1&filters=%7B%22reference%22%3A%5B%22busy*%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/images/json?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D", "").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "invalid filter 'colour'"));
    // Names with slashes route by their last segment.
    let (st, body) = send(r(), "GET", "/images/me/app/json", "").await;
    assert_eq!((st, value(&body)["Id"].as_str()), (StatusCode::OK, Some("sha256:1")));
    let (st, _) = send(r(), "GET", "/images/nope/json", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = send(r(), "POST", "/images/busybox/tag?repo=me/app&tag=v1", "").await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = send(r(), "DELETE", "/images/me/app?force=1", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/images/get?names=busybox&names=me/app", "").await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "archive"));
    let (st, _) = send(r(), "GET", "/images/get?names=nope", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an unknown name fails before the archive starts");
    // A failed load is still a 200 with the error in the stream (docker-py relies on it).
    let (st, body) = send(r(), "POST", "/images/load", "not a tar").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(value(body.lines().last().unwrap())["error"], "invalid archive: no manifest.json");
    // A pull that fails before any progress is an HTTP error; after, an error in the stream.
    let (st, _) = send(r(), "POST", "/images/create?fromImage=missing&tag=1", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body) = send(r(), "POST", "/images/create?fromImage=busybox&platform=linux/amd64", "").await;
    assert_eq!(st, StatusCode::OK);
    let lines: Vec<serde_json::Value> = body.lines().map(value).collect();
    assert_eq!(lines[1]["progressDetail"], serde_json::json!({"current": 5, "total": 10}));
    assert_eq!(lines.last().unwrap()["error"], "connection reset");
    let (st, _) = send(r(), "POST", "/images/create?fromImage=busybox&platform=amd64/linux/x/y", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a malformed platform is refused before pulling");
    let (st, body) = send(
        r(),
        "POST",
        "/images/create?fromSrc=-&repo=me/app&tag=v2&changes=ENV%20A%3D1&platform=linux/arm64",
        "tar",
    )
    .await;
    assert_eq!((st, value(&body)["status"].as_str()), (StatusCode::OK, Some("sha256:2")));
    let (st, _) = send(r(), "POST", "/images/me/app/push?tag=v1", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) =
        send(r(), "POST", "/auth", r#"{"username":"u","password":"p","serveraddress":"localhost:5000"}"#).await;
    assert_eq!((st, value(&body)["Status"].as_str()), (StatusCode::OK, Some("Login Succeeded")));
    let (st, _) = send(r(), "POST", "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D", "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        *f.calls.lock().unwrap(),
        [
            r#"list all=true dangling=None refs=["busy*"]"#,
            r#"tag busybox me/app Some("v1")"#,
            "remove me/app force=true",
            "pull docker.io/library/missing:1 None creds=false",
            r#"pull docker.io/library/busybox:latest Some("linux/amd64") creds=false"#,
            r#"import Some("docker.io/me/app:v2") ["ENV A=1"] None Some("linux/arm64")"#,
            "push docker.io/me/app:v1",
            "login localhost:5000",
            "prune all=true",
        ]
    );
}

#[tokio::test]
async fn a_pull_stops_when_its_client_goes() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let f = Arc::new(Fake::default());
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/images/create?fromImage=endless&tag=1")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = super::routes(f.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Pulling from"), "{first:?}");
    assert!(!f.calls.lock().unwrap().iter().any(|c| c == "pull dropped"), "still pulling while read");
    drop(body);
    for _ in 0..200 {
        if f.calls.lock().unwrap().iter().any(|c| c == "pull dropped") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the pull went on after its client left: {:?}", f.calls.lock().unwrap());
}
