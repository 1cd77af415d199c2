//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use skiff_engine::events::EventFilter;
use skiff_engine::system::API_VERSION;
use tokio::sync::mpsc;

use super::json;
use crate::backend::{SwarmBackend, SystemBackend};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream;

/// The system routes on `backend`.
pub fn routes<B: SystemBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version::<B>))
        .route("/events", get(events::<B>))
        .route("/system/df", get(df::<B>))
        .with_state(backend)
}

pub async fn ping() -> Response {
    let mut r = "OK".into_response();
    let h = r.headers_mut();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub async fn version<B: SystemBackend>(State(b): State<Arc<B>>) -> Response {
    json(&b.version())
}

/// `/info`: the system's, with the swarm's section from `swarm`.
pub fn info_routes<B: SystemBackend, S: SwarmBackend>(system: Arc<B>, swarm: Arc<S>) -> Router {
    Router::new().route("/info", get(info::<B, S>)).with_state((system, swarm))
}

pub async fn info<B: SystemBackend, S: SwarmBackend>(
    State((b, s)): State<(Arc<B>, Arc<S>)>,
    axum::extract::Extension(v): axum::extract::Extension<crate::version::ApiVersion>,
) -> Response {
    let mut info = b.info();
    info.swarm = Some(s.info().await);
    let mut doc = serde_json::to_value(info).unwrap_or_default();
    crate::version::adapt::info(v, &mut doc);
    json(&doc)
}

pub async fn df<B: SystemBackend>(State(b): State<Arc<B>>) -> ApiResult<Response> {
    let df = tokio::task::spawn_blocking(move || b.df())
        .await
        .map_err(|err| ApiError(skiff_engine::EngineError::internal(err.to_string())))??;
    Ok(json(&df))
}

fn parse_ts(s: &str) -> ApiResult<SystemTime> {
    skiff_engine::container::logs::parse_time(s).map_err(ApiError)
}

pub async fn events<B: SystemBackend>(State(b): State<Arc<B>>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let since = p.string("since").map(|s| parse_ts(&s)).transpose()?;
    let until = p.string("until").map(|s| parse_ts(&s)).transpose()?;
    let filter = EventFilter { filters: p.filters()? };
    let nanos = |t: SystemTime| {
        let (s, n) = skiff_common::timefmt::split(t);
        s * 1_000_000_000 + n as i64
    };
    let since_ns = since.map(nanos);
    let until_ns = until.map(nanos);
    let (history, mut live) = b.subscribe();
    let (tx, rx) = mpsc::channel(256);
    crate::tasks::spawn(async move {
        let to_json = |ev: &skiff_engine::events::Event| {
            serde_json::json!({
                "status": ev.action,
                "id": ev.id,
                "from": ev.attributes.get("image").cloned().unwrap_or_default(),
                "Type": ev.kind.as_str(),
                "Action": ev.action,
                "Actor": { "ID": ev.id, "Attributes": ev.attributes },
                "scope": "local",
                "time": ev.time_nano / 1_000_000_000,
                "timeNano": ev.time_nano,
            })
        };
        let in_window = |t: i64| since_ns.is_none_or(|s| t >= s) && until_ns.is_none_or(|u| t <= u);
        if since_ns.is_some() {
            for ev in &history {
                if in_window(ev.time_nano) && filter.matches(ev) && tx.send(to_json(ev)).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let wait = match until_ns {
                Some(u) => {
                    let now = nanos(SystemTime::now());
                    if now > u {
                        return;
                    }
                    std::time::Duration::from_nanos((u - now) as u64)
                }
                None => std::time::Duration::from_secs(3600),
            };
            match tokio::time::timeout(wait, live.recv()).await {
                Ok(Ok(ev)) => {
                    if in_window(ev.time_nano) && filter.matches(&ev) && tx.send(to_json(&ev)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return,
                Err(_) if until_ns.is_some() => return,
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    });
    let mut r = Response::new(stream::json_lines(rx));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

#[cfg(test)]
#[path = "system_tests.rs"]
mod tests;
