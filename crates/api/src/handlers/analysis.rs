//! `/skiff/top` and `/skiff/containers/{id}/diagnose`: skiff's own endpoints (not Docker's),
//! behind `AnalysisBackend`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;

use super::json;
use crate::backend::AnalysisBackend;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

pub fn routes<A: AnalysisBackend>(backend: Arc<A>) -> Router {
    Router::new()
        .route("/skiff/top", get(top::<A>))
        .route("/skiff/containers/{id}/diagnose", get(diagnose::<A>))
        .with_state(backend)
}

/// A number of seconds from the query, within `lo..=hi`.
fn seconds(q: Option<&str>, key: &str, default: f64, lo: f64, hi: f64) -> Result<f64, ApiError> {
    let p = Params::parse(q);
    let Some(v) = p.string(key) else { return Ok(default) };
    let s: f64 = v.parse().map_err(|_| ApiError::bad_request(format!("invalid {key}: {v:?}")))?;
    if !(lo..=hi).contains(&s) {
        return Err(ApiError::bad_request(format!("{key} must be between {lo} and {hi}")));
    }
    Ok(s)
}

pub async fn top<A: AnalysisBackend>(State(b): State<Arc<A>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let interval = seconds(q.as_deref(), "interval", 1.0, 0.1, 60.0)?;
    Ok(json(&b.top(Duration::from_secs_f64(interval)).await?))
}

pub async fn diagnose<A: AnalysisBackend>(
    State(b): State<Arc<A>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let s = seconds(q.as_deref(), "seconds", 10.0, 1.0, 600.0)?;
    Ok(json(&b.diagnose(&id, s).await?))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::StatusCode;
    use skiff_engine::{EngineError, Result};

    use super::*;
    use crate::test_support::{message, send, value};

    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
    }

    impl AnalysisBackend for Fake {
        async fn diagnose(&self, key: &str, seconds: f64) -> Result<serde_json::Value> {
            self.calls.lock().unwrap().push(format!("diagnose {key} {seconds}"));
            if key == "nope" {
                return Err(EngineError::not_found("No such container: nope"));
            }
            Ok(serde_json::json!({"findings": []}))
        }
        async fn top(&self, interval: Duration) -> Result<serde_json::Value> {
            self.calls.lock().unwrap().push(format!("top {}", interval.as_millis()));
            Ok(serde_json::json!({"containers": []}))
        }
    }

    #[tokio::test]
    async fn the_routes_read_their_windows_and_refuse_bad_ones() {
        let f = Arc::new(Fake::default());
        let r = || routes(f.clone());
        let (st, body) = send(r(), "GET", "/skiff/containers/web/diagnose?seconds=3", "").await;
        assert_eq!((st, value(&body)["findings"].clone()), (StatusCode::OK, serde_json::json!([])));
        let (st, _) = send(r(), "GET", "/skiff/containers/web/diagnose", "").await;
        assert_eq!(st, StatusCode::OK);
        let (st, body) = send(r(), "GET", "/skiff/containers/nope/diagnose", "").await;
        assert_eq!((st, message(&body)), (StatusCode::NOT_FOUND, "No such container: nope".into()));
        for bad in ["seconds=0", "seconds=x", "seconds=1e9"] {
            let (st, _) = send(r(), "GET", &format!("/skiff/containers/web/diagnose?{bad}"), "").await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
        }
        let (st, _) = send(r(), "GET", "/skiff/top?interval=0.5", "").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            f.calls.lock().unwrap().clone(),
            ["diagnose web 3", "diagnose web 10", "diagnose nope 10", "top 500"]
        );
    }
}
