//! The exec routes against a fake backend.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bollard_stubs::models::{ExecConfig, ExecInspectResponse};
use skiff_engine::container::attach::AttachHandle;
use skiff_engine::{EngineError, Result};

use crate::backend::ExecBackend;
use crate::test_support::{message, send, value};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }
    fn known(id: &str) -> Result<()> {
        match id {
            "e1" | "used" | "badkeys" => Ok(()),
            _ => Err(EngineError::not_found(format!("No such exec instance: {id}"))),
        }
    }
}

impl ExecBackend for Fake {
    fn create(&self, container: &str, config: ExecConfig) -> Result<String> {
        self.call(format!("create {container} {:?} tty={:?}", config.cmd, config.tty));
        Ok("e1".into())
    }
    fn config(&self, id: &str) -> Result<ExecConfig> {
        Self::known(id)?;
        let keys = (id == "badkeys").then(|| "ctrl-".to_string());
        Ok(ExecConfig { tty: Some(true), detach_keys: keys, ..Default::default() })
    }
    fn startable(&self, id: &str) -> Result<()> {
        if id == "used" {
            return Err(EngineError::conflict(format!("Error: Exec command {id} has already run")));
        }
        Ok(())
    }
    async fn start(
        &self,
        id: &str,
        detach: bool,
        tty: Option<bool>,
        size: Option<(u16, u16)>,
    ) -> Result<Option<AttachHandle>> {
        self.call(format!("start {id} detach={detach} tty={tty:?} size={size:?}"));
        Ok(None)
    }
    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        Self::known(id)?;
        self.call(format!("resize {id} {height}x{width}"));
        Ok(())
    }
    fn inspect(&self, id: &str) -> Result<ExecInspectResponse> {
        Self::known(id)?;
        Ok(ExecInspectResponse { id: Some(id.into()), running: Some(false), ..Default::default() })
    }
}

#[tokio::test]
async fn exec_routes() {
    let f = Arc::new(Fake::default());
    let r = || super::routes(f.clone());
    let (st, body) = send(r(), "POST", "/v1.41/containers/web/exec", r#"{"Cmd":["ls"],"Tty":null,"Env":null}"#).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(value(&body)["Id"], "e1");
    let (st, _) = send(r(), "POST", "/exec/e1/start", r#"{"Detach":true,"Tty":false,"ConsoleSize":[24,80]}"#).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "POST", "/exec/used/start", r#"{"Detach":true}"#).await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::CONFLICT, "Error: Exec command used has already run"));
    let (st, body) = send(r(), "POST", "/exec/badkeys/start", r#"{"Detach":true}"#).await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::BAD_REQUEST, "invalid detach keys: ctrl-"));
    let (st, _) = send(r(), "POST", "/exec/e1/start", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no body is Go's EOF error");
    let (st, body) = send(r(), "POST", "/exec/nope/start", r#"{"Detach":true}"#).await;
    assert_eq!((st, message(&body).as_str()), (StatusCode::NOT_FOUND, "No such exec instance: nope"));
    let (st, _) = send(r(), "POST", "/exec/e1/resize?h=70000&w=-3", "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = send(r(), "GET", "/exec/e1/json", "").await;
    assert_eq!((st, value(&body)["Running"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(
        *f.calls.lock().unwrap(),
        [
            r#"create web Some(["ls"]) tty=None"#,
            "start e1 detach=true tty=Some(false) size=Some((24, 80))",
            "resize e1 65535x0",
        ]
    );
}
