//! `/networks/...`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bollard_stubs::models::{
    ConfigReference, Ipam, IpamConfig, Network, NetworkConnectRequest, NetworkContainer, NetworkCreateRequest,
    NetworkCreateResponse, NetworkDisconnectRequest, NetworkPruneResponse,
};
use skiff_engine::network::{CreateRequest, MemberView, NetworkFilters, NetworkRecord};

use super::{json, json_body, no_content};
use crate::backend::{NetworkBackend, SwarmBackend};
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

fn api(n: &NetworkRecord, members: &[MemberView], with_members: bool) -> Network {
    let config = match (n.subnet, n.gateway) {
        (Some(s), gw) => vec![IpamConfig {
            subnet: Some(s.to_string()),
            ip_range: n.ip_range.map(|r| r.to_string()),
            gateway: gw.map(|g| g.to_string()),
            auxiliary_addresses: if n.aux.is_empty() {
                None
            } else {
                Some(n.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            },
        }],
        _ => vec![],
    };
    let containers: HashMap<String, NetworkContainer> = if with_members {
        members
            .iter()
            .map(|m| {
                (
                    m.container_id.clone(),
                    NetworkContainer {
                        name: Some(m.name.clone()),
                        endpoint_id: Some(m.endpoint_id.clone()),
                        mac_address: Some(m.mac.clone()),
                        ipv4_address: Some(format!("{}/{}", m.ip, m.prefix)),
                        ipv6_address: Some(String::new()),
                    },
                )
            })
            .collect()
    } else {
        HashMap::new()
    };
    Network {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(n.created.clone()),
        scope: Some(if n.is_overlay() { "swarm" } else { "local" }.into()),
        driver: Some(n.driver.to_string()),
        enable_ipv4: Some(n.has_bridge()),
        enable_ipv6: Some(false),
        // IPAM driver options are not kept (only the default IPAM driver exists): null, as dockerd shows
        // a network created without them.
        ipam: Some(Ipam { driver: Some("default".into()), config: Some(config), options: None }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(n.ingress),
        config_from: Some(ConfigReference { network: Some(String::new()) }),
        config_only: Some(false),
        containers: Some(containers),
        options: Some(n.options.clone().into_iter().collect()),
        labels: Some(n.labels.clone().into_iter().collect()),
        peers: None,
    }
}

fn filters(q: Option<&str>) -> Result<NetworkFilters, ApiError> {
    let p = Params::parse(q);
    let f = p.filters()?;
    let mut out = NetworkFilters::default();
    for (k, vals) in f {
        match k.as_str() {
            "name" => out.name = vals,
            "id" => out.id = vals,
            "driver" => out.driver = vals,
            "label" => out.label = vals,
            "label!" => out.label_not = vals,
            "type" => {
                for v in &vals {
                    if v != "custom" && v != "builtin" {
                        return Err(ApiError::bad_request(format!("invalid filter: 'type'='{v}'")));
                    }
                }
                out.typ = vals
            }
            "dangling" => {
                out.dangling = match vals.first().map(String::as_str) {
                    Some("true") | Some("1") => Some(true),
                    Some("false") | Some("0") => Some(false),
                    Some(v) => return Err(ApiError::bad_request(format!("invalid filter: 'dangling'='{v}'"))),
                    None => None,
                }
            }
            "until" => {
                let v = vals.first().cloned().unwrap_or_default();
                let t = skiff_engine::container::logs::parse_time(&v)?;
                out.until = Some(skiff_common::timefmt::split(t).0);
            }
            "scope" => {}
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    Ok(out)
}

/// The state of the network routes: the engine's networks, and the swarm's (overlay networks
/// live in the managers' store; a node keeps its own copy of those its tasks use).
pub struct Nets<B, S> {
    pub engine: Arc<B>,
    pub swarm: Arc<S>,
}

impl<B, S> Clone for Nets<B, S> {
    fn clone(&self) -> Self {
        Nets { engine: self.engine.clone(), swarm: self.swarm.clone() }
    }
}

/// The network routes on `backend`.
pub fn routes<B: NetworkBackend, S: SwarmBackend>(backend: Arc<B>, swarm: Arc<S>) -> Router {
    Router::new()
        .route("/networks", get(list::<B, S>))
        .route("/networks/", get(list::<B, S>))
        .route("/networks/create", post(create::<B, S>))
        .route("/networks/prune", post(prune::<B, S>))
        .route("/networks/{id}", get(inspect::<B, S>).delete(remove::<B, S>))
        .route("/networks/{id}/connect", post(connect::<B, S>))
        .route("/networks/{id}/disconnect", post(disconnect::<B, S>))
        .with_state(Nets { engine: backend, swarm })
}

/// The engine's networks and, on a manager, the swarm's (the managers' view of an overlay this
/// node also has replaces the node's own copy).
pub async fn list<B: NetworkBackend, S: SwarmBackend>(
    State(n): State<Nets<B, S>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let f = filters(q.as_deref())?;
    let mut out: Vec<(NetworkRecord, Vec<MemberView>)> = n.engine.list(&f).await?;
    let swarm: Vec<NetworkRecord> = n.swarm.networks().await?;
    out.retain(|(r, _)| !swarm.iter().any(|s| s.id == r.id));
    out.extend(swarm.into_iter().filter(|r| f.matches(r, false)).map(|r| (r, Vec::new())));
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(json(&out.iter().map(|(r, m)| api(r, m, false)).collect::<Vec<Network>>()))
}

pub async fn inspect<B: NetworkBackend, S: SwarmBackend>(
    State(n): State<Nets<B, S>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let local = n.engine.inspect(&id).await;
    if let Some(rec) = n.swarm.network(&id).await? {
        // This node's containers on it, if it has the network.
        let members = match local {
            Ok((l, m)) if l.id == rec.id => m,
            _ => Vec::new(),
        };
        return Ok(json(&api(&rec, &members, true)));
    }
    let (rec, m) = local?;
    Ok(json(&api(&rec, &m, true)))
}

pub async fn create<B: NetworkBackend, S: SwarmBackend>(
    State(n): State<Nets<B, S>>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkCreateRequest = json_body(&body)?;
    if req.driver.as_deref() == Some("overlay") {
        let id = n.swarm.create_network(req).await?;
        return Ok(
            (StatusCode::CREATED, axum::Json(NetworkCreateResponse { id, warning: String::new() })).into_response()
        );
    }
    let b = &n.engine;
    let ipam = req.ipam.clone().unwrap_or_default();
    if ipam.driver.as_deref().is_some_and(|d| !d.is_empty() && d != "default") {
        return Err(ApiError(skiff_engine::EngineError::not_found(format!(
            "plugin \"{}\" not found",
            ipam.driver.unwrap_or_default()
        ))));
    }
    let configs = ipam.config.unwrap_or_default();
    let v4: Vec<&IpamConfig> =
        configs.iter().filter(|c| c.subnet.as_deref().is_none_or(|s| !s.contains(':'))).collect();
    if v4.len() > 1 {
        return Err(ApiError::bad_request("skiff supports one IPv4 subnet per network"));
    }
    let c = v4.first();
    let create = CreateRequest {
        name: req.name.clone(),
        driver: req.driver.clone().filter(|d| !d.is_empty()),
        internal: req.internal.unwrap_or(false),
        attachable: req.attachable.unwrap_or(false),
        subnet: c.and_then(|c| c.subnet.clone()),
        gateway: c.and_then(|c| c.gateway.clone()),
        ip_range: c.and_then(|c| c.ip_range.clone()),
        aux: c.and_then(|c| c.auxiliary_addresses.clone()).unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        enable_ipv6: req.enable_ipv6.unwrap_or(false)
            || configs.iter().any(|c| c.subnet.as_deref().is_some_and(|s| s.contains(':'))),
        labels: req.labels.clone().unwrap_or_default().into_iter().collect(),
        options: req.options.clone().unwrap_or_default().into_iter().collect(),
    };
    let rec = b.create(create).await?;
    Ok((StatusCode::CREATED, axum::Json(NetworkCreateResponse { id: rec.id, warning: String::new() })).into_response())
}

pub async fn remove<B: NetworkBackend, S: SwarmBackend>(
    State(n): State<Nets<B, S>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    match n.swarm.network(&id).await? {
        Some(rec) => n.swarm.remove_network(&rec.id).await?,
        None => n.engine.remove(&id).await?,
    }
    Ok(no_content())
}

pub async fn prune<B: NetworkBackend, S: SwarmBackend>(
    State(n): State<Nets<B, S>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let f = filters(q.as_deref())?;
    let deleted = n.engine.prune(&f).await?;
    Ok(json(&NetworkPruneResponse { networks_deleted: Some(deleted) }))
}

pub async fn connect<B: NetworkBackend, S: SwarmBackend>(
    State(Nets { engine: b, .. }): State<Nets<B, S>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkConnectRequest = json_body(&body)?;
    let container =
        req.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("no container specified"))?;
    b.connect(&id, &container, req.endpoint_config).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn disconnect<B: NetworkBackend, S: SwarmBackend>(
    State(Nets { engine: b, .. }): State<Nets<B, S>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NetworkDisconnectRequest = json_body(&body)?;
    let container =
        req.container.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("no container specified"))?;
    b.disconnect(&id, &container, req.force.unwrap_or(false)).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
