//! `skiff top` and `skiff diagnose` over `skiff-analysis`, for the API's `/skiff/*` routes.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::backend::AnalysisBackend;
use skiff_engine::{Engine, EngineError, Result};

pub struct AnalysisApi {
    pub engine: Arc<Engine>,
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| EngineError::internal(format!("encoding the report: {e}")))
}

impl AnalysisBackend for AnalysisApi {
    async fn diagnose(&self, key: &str, seconds: f64) -> Result<serde_json::Value> {
        let window = skiff_analysis::sample::window(&self.engine, key, seconds).await?;
        let report = skiff_analysis::verdict::diagnose(&window);
        let mut v = to_json(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("text".into(), serde_json::Value::String(skiff_analysis::verdict::render(&report)));
        }
        Ok(v)
    }

    async fn top(&self, interval: Duration) -> Result<serde_json::Value> {
        to_json(&skiff_analysis::sample::top(&self.engine, interval).await)
    }
}
