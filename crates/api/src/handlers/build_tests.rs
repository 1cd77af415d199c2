//! The build routes against a fake backend.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use skiff_engine::build::{BuildContext, BuildOut, BuildRequest, ImageInfo, Out};
use skiff_engine::{EngineError, Result};

use crate::backend::{ArchiveReader, BuildBackend};
use crate::test_support::{message, send, value};

/// Builds succeed when the Dockerfile is named `Dockerfile`, fail at once otherwise.
struct Fake {
    dir: tempfile::TempDir,
    calls: Mutex<Vec<String>>,
}

impl BuildBackend for Fake {
    fn experimental(&self) -> bool {
        false
    }
    async fn unpack_context(&self, _r: ArchiveReader) -> Result<BuildContext> {
        let dir = tempfile::Builder::new().prefix("ctx").tempdir_in(self.dir.path())?.keep();
        Ok(BuildContext { dir, secrets: None })
    }
    async fn build(self: Arc<Self>, req: BuildRequest, out: Out) -> Result<ImageInfo> {
        self.calls.lock().unwrap().push(format!(
            "build {} tags={:?} nocache={} args={:?}",
            req.dockerfile,
            req.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            req.no_cache,
            req.build_args
        ));
        if req.dockerfile != "Dockerfile" {
            return Err(EngineError::invalid(format!("Cannot locate specified Dockerfile: {}", req.dockerfile)));
        }
        out(BuildOut::Stream("Step 1/1 : FROM busybox\n".into()));
        Ok(ImageInfo { id: format!("sha256:{}", "a".repeat(64)), parent: None, config: Default::default() })
    }
    fn prune(&self) -> Result<usize> {
        Ok(3)
    }
}

#[tokio::test]
async fn build_routes() {
    let f = Arc::new(Fake { dir: tempfile::tempdir().unwrap(), calls: Mutex::new(vec![]) });
    let r = || super::routes(f.clone());
    let (st, body) = send(r(), "POST", "/build?version=2", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = send(r(), "POST", "/build?squash=1", "").await;
    assert_eq!(
        (st, message(&body).as_str()),
        (StatusCode::BAD_REQUEST, "squash is only supported with experimental mode")
    );
    let (st, _) = send(r(), "POST", "/build?t=Bad:Tag:x", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Fails before saying anything: an HTTP error, and the context is gone.
    let (st, body) = send(r(), "POST", "/build?dockerfile=Nope", "tar").await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "Cannot locate specified Dockerfile: Nope"));
    assert_eq!(f.dir.path().read_dir().unwrap().count(), 0, "the context was removed");
    // Go SDKs send null for unset maps.
    let (st, body) = send(r(), "POST", "/build?t=app&nocache=1&buildargs=null&labels=null", "tar").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let lines: Vec<serde_json::Value> = body.lines().map(value).collect();
    assert_eq!(lines[0]["stream"], "Step 1/1 : FROM busybox\n");
    let (st, body) = send(r(), "POST", "/build?q=1", "tar").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        value(body.lines().last().unwrap())["stream"],
        format!("sha256:{}\n", "a".repeat(64)),
        "-q: the ID only"
    );
    assert!(!body.contains("Step 1/1"), "-q holds the steps back");
    let (_, body) = send(r(), "POST", "/build/prune", "").await;
    assert_eq!(value(&body)["EntriesRemoved"], 3);
    assert_eq!(
        *f.calls.lock().unwrap(),
        [
            "build Nope tags=[] nocache=false args={}",
            r#"build Dockerfile tags=["docker.io/library/app:latest"] nocache=true args={}"#,
            "build Dockerfile tags=[] nocache=false args={}",
        ]
    );
}
