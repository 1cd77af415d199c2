//! The Engine API's swarm and node endpoints over this node's swarm membership: the one place
//! the API's shapes (bollard's models) meet skiff's cluster types.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ClusterInfo, EngineDescription, JoinTokens, LocalNodeState, ManagerStatus, Node, NodeDescription, NodeSpec,
    NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, NodeStatus, ObjectVersion, PeerNode, Platform, Reachability,
    ResourceObject, Swarm, SwarmInfo, SwarmInitRequest, SwarmJoinRequest, SwarmSpec, SwarmSpecCaConfig,
    SwarmSpecDispatcher, SwarmSpecEncryptionConfig, SwarmSpecOrchestration, SwarmSpecRaft, SwarmSpecTaskDefaults,
    TlsInfo,
};
use skiff_api::backend::{BlobKind, ServiceAuth, SwarmBackend, TokenRotation};
use skiff_cluster::types::{self as ct, Availability, ClusterSpec, StoredRole};
use skiff_common::timefmt::format_unix_nanos as time;
use skiff_engine::{EngineError, Kind, Result};
use skiff_swarm::{InitOptions, JoinOptions, LocalState, ManagerError};

use crate::services_api;

/// The swarm backend skiffd serves.
pub struct SwarmApi {
    pub swarm: Arc<skiff_swarm::Swarm>,
}

fn err(e: ManagerError) -> EngineError {
    use skiff_swarm::Kind as K;
    let kind = match e.kind {
        K::Invalid => Kind::Invalid,
        K::NotFound => Kind::NotFound,
        K::Conflict => Kind::Conflict,
        K::Unavailable => Kind::Unavailable,
        K::Forbidden => Kind::Invalid,
        K::Unauthorized => Kind::Unauthorized,
        K::Internal => Kind::Internal,
    };
    EngineError::new(kind, e.message)
}

fn spec_to_api(s: &ClusterSpec) -> SwarmSpec {
    SwarmSpec {
        name: Some(s.name.clone()),
        labels: Some(s.labels.clone().into_iter().collect()),
        orchestration: Some(SwarmSpecOrchestration { task_history_retention_limit: Some(s.task_history_limit) }),
        raft: Some(SwarmSpecRaft {
            snapshot_interval: Some(s.snapshot_interval),
            keep_old_snapshots: Some(s.keep_old_snapshots),
            log_entries_for_slow_followers: Some(s.log_entries_for_slow_followers),
            election_tick: Some(s.election_tick as i64),
            heartbeat_tick: Some(s.heartbeat_tick as i64),
        }),
        dispatcher: Some(SwarmSpecDispatcher { heartbeat_period: Some(s.dispatcher_heartbeat_ns) }),
        ca_config: Some(SwarmSpecCaConfig {
            node_cert_expiry: Some(s.cert_expiry_ns),
            force_rotate: Some(s.ca_force_rotate),
            ..Default::default()
        }),
        encryption_config: Some(SwarmSpecEncryptionConfig { auto_lock_managers: Some(s.autolock) }),
        task_defaults: Some(SwarmSpecTaskDefaults::default()),
    }
}

/// A request's spec over `base` (what `init` defaults to, or the current spec on update): only
/// what the request sets changes, as swarmkit merges.
fn spec_from_api(a: Option<SwarmSpec>, mut s: ClusterSpec) -> Result<ClusterSpec> {
    let Some(a) = a else { return Ok(s) };
    if let Some(n) = a.name.filter(|n| !n.is_empty()) {
        s.name = n;
    }
    if let Some(l) = a.labels {
        s.labels = l.into_iter().collect();
    }
    if let Some(v) = a.orchestration.and_then(|o| o.task_history_retention_limit).filter(|v| *v != 0) {
        s.task_history_limit = v;
    }
    if let Some(r) = a.raft {
        // Go's zero means unset: the daemon's default stays.
        let set = |v: Option<u64>, d: u64| v.filter(|v| *v > 0).unwrap_or(d);
        s.snapshot_interval = set(r.snapshot_interval, s.snapshot_interval);
        s.keep_old_snapshots = r.keep_old_snapshots.unwrap_or(s.keep_old_snapshots);
        s.log_entries_for_slow_followers = set(r.log_entries_for_slow_followers, s.log_entries_for_slow_followers);
        s.election_tick = r.election_tick.filter(|v| *v > 0).map_or(s.election_tick, |v| v as u32);
        s.heartbeat_tick = r.heartbeat_tick.filter(|v| *v > 0).map_or(s.heartbeat_tick, |v| v as u32);
    }
    if let Some(p) = a.dispatcher.and_then(|d| d.heartbeat_period).filter(|p| *p > 0) {
        s.dispatcher_heartbeat_ns = p;
    }
    if let Some(ca) = a.ca_config {
        if let Some(e) = ca.node_cert_expiry.filter(|e| *e > 0) {
            if e < 3_600_000_000_000 {
                return Err(EngineError::invalid("minimum certificate expiry time is 1h0m0s"));
            }
            s.cert_expiry_ns = e;
        }
        if ca.external_cas.is_some_and(|c| !c.is_empty()) {
            return Err(EngineError::invalid(
                "external CAs (--external-ca, a CFSSL signing endpoint) are not supported by skiff; give the root's certificate and key with `docker swarm ca --rotate --ca-cert --ca-key`",
            ));
        }
        if let Some(f) = ca.force_rotate {
            s.ca_force_rotate = f;
        }
    }
    if let Some(on) = a.encryption_config.and_then(|e| e.auto_lock_managers) {
        s.autolock = on;
    }
    Ok(s)
}

/// `TLSInfo`: the root trusted (PEM), and the subject and public key (base64 DER) of the CA that
/// issued a node's certificate — for the cluster, of the CA that issues now (the new root while
/// one rotates in), which is what `docker swarm ca --rotate` watches nodes converge to.
fn tls_info(trust_root_pem: &str, issuer_pem: &str) -> Option<TlsInfo> {
    use base64::Engine as _;
    let issuer = skiff_cluster::ca::RootCa::from_pem(issuer_pem, None).ok()?;
    let (subject, key) = skiff_cluster::ca::subject_and_key(issuer.cert_der()).ok()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(TlsInfo {
        trust_root: Some(trust_root_pem.to_string()),
        cert_issuer_subject: Some(b64.encode(subject)),
        cert_issuer_public_key: Some(b64.encode(key)),
    })
}

/// The cluster object as `docker info` shows it (overlay networks' address pool and data port
/// are Docker's defaults: skiff has no overlay networks yet).
fn cluster_info(c: &ct::Cluster) -> ClusterInfo {
    ClusterInfo {
        id: Some(c.id.clone()),
        version: Some(ObjectVersion { index: Some(c.version) }),
        created_at: Some(time(c.created_at)),
        updated_at: Some(time(c.updated_at)),
        spec: Some(spec_to_api(&c.spec)),
        tls_info: tls_info(&c.root_ca_cert, &c.issuer().cert),
        root_rotation_in_progress: Some(c.rotation.is_some()),
        data_path_port: Some(4789),
        default_addr_pool: Some(vec!["10.0.0.0/8".into()]),
        subnet_size: Some(24),
    }
}

fn role_api(r: StoredRole) -> NodeSpecRoleEnum {
    match r {
        StoredRole::Manager => NodeSpecRoleEnum::MANAGER,
        StoredRole::Worker => NodeSpecRoleEnum::WORKER,
    }
}

fn node_to_api(n: &ct::Node, managers: &[(skiff_cluster::rpc::ManagerPeer, bool)], root: Option<&str>) -> Node {
    // Nodes from before root rotation was built hold certificates from the root.
    let node_tls = match (&n.tls, root) {
        (Some(t), _) => tls_info(&t.trust_root, &t.issuer),
        (None, Some(r)) => tls_info(r, r),
        (None, None) => None,
    };
    let state = match n.state {
        ct::NodeState::Unknown => NodeState::UNKNOWN,
        ct::NodeState::Down => NodeState::DOWN,
        ct::NodeState::Ready => NodeState::READY,
        ct::NodeState::Disconnected => NodeState::DISCONNECTED,
    };
    let availability = match n.spec.availability {
        Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
        Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
        Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
    };
    let manager_status = managers.iter().find(|(p, _)| p.node_id == n.id).map(|(p, leads)| ManagerStatus {
        leader: Some(*leads),
        reachability: Some(if n.state == ct::NodeState::Down {
            Reachability::UNREACHABLE
        } else {
            Reachability::REACHABLE
        }),
        addr: Some(p.addr.clone()),
    });
    let d = &n.description;
    Node {
        id: Some(n.id.clone()),
        version: Some(ObjectVersion { index: Some(n.version) }),
        created_at: Some(time(n.created_at)),
        updated_at: Some(time(n.updated_at)),
        spec: Some(NodeSpec {
            name: Some(n.spec.name.clone()).filter(|s| !s.is_empty()),
            labels: Some(n.spec.labels.clone().into_iter().collect()),
            role: Some(role_api(n.spec.role)),
            availability: Some(availability),
        }),
        description: Some(NodeDescription {
            hostname: Some(d.hostname.clone()),
            platform: Some(Platform { architecture: Some(d.architecture.clone()), os: Some(d.os.clone()) }),
            resources: Some(ResourceObject {
                nano_cpus: Some(d.nano_cpus),
                memory_bytes: Some(d.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(EngineDescription {
                engine_version: Some(d.engine_version.clone()),
                labels: Some(d.engine_labels.clone().into_iter().collect()),
                plugins: Some(Vec::new()),
            }),
            tls_info: node_tls,
        }),
        status: Some(NodeStatus { state: Some(state), message: Some(n.message.clone()), addr: Some(n.addr.clone()) }),
        manager_status,
    }
}

/// `docker node ls -f`: `id` (prefix), `name` (hostname or name, prefix), `role`, `membership`
/// (accepted), `node.label`.
fn node_matches(n: &Node, filters: &HashMap<String, HashMap<String, bool>>) -> Result<bool> {
    for (key, values) in filters {
        let wanted: Vec<&str> = values.iter().filter(|(_, on)| **on).map(|(v, _)| v.as_str()).collect();
        if wanted.is_empty() {
            continue;
        }
        let spec = n.spec.clone().unwrap_or_default();
        let host = n.description.as_ref().and_then(|d| d.hostname.clone()).unwrap_or_default();
        let ok = match key.as_str() {
            "id" => wanted.iter().any(|w| n.id.as_deref().is_some_and(|id| id.starts_with(w))),
            "name" => {
                wanted.iter().any(|w| host.starts_with(w) || spec.name.as_deref().is_some_and(|s| s.starts_with(w)))
            }
            "role" => wanted.iter().any(|w| spec.role.map(|r| r.to_string()).as_deref() == Some(*w)),
            "membership" => wanted.contains(&"accepted"),
            "node.label" | "label" => wanted.iter().any(|w| {
                let labels = spec.labels.clone().unwrap_or_default();
                match w.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(*w),
                }
            }),
            other => return Err(EngineError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A service's network targets (names, IDs or ID prefixes) as network IDs.
async fn resolve_networks(m: &skiff_swarm::Manager, task: &mut ct::TaskSpec) -> Result<()> {
    for a in &mut task.networks {
        let n = m.network(&a.target).await.map_err(err)?;
        if n.spec.ingress {
            return Err(EngineError::invalid(format!(
                "The ingress network {} cannot be used with services; it is for the routing mesh only",
                n.spec.name
            )));
        }
        a.target = n.id;
    }
    Ok(())
}

impl SwarmBackend for SwarmApi {
    async fn info(&self) -> SwarmInfo {
        let i = self.swarm.info().await;
        let local = match i.local {
            LocalState::Inactive => LocalNodeState::INACTIVE,
            LocalState::Pending => LocalNodeState::PENDING,
            LocalState::Active => LocalNodeState::ACTIVE,
            LocalState::Error => LocalNodeState::ERROR,
            LocalState::Locked => LocalNodeState::LOCKED,
        };
        let cluster = i.cluster.as_ref().map(cluster_info);
        SwarmInfo {
            node_id: Some(i.node_id),
            node_addr: Some(i.node_addr),
            local_node_state: Some(local),
            control_available: Some(i.control_available),
            error: Some(i.error),
            remote_managers: Some(
                i.remote_managers
                    .into_iter()
                    .map(|p| PeerNode { node_id: Some(p.node_id), addr: Some(p.addr) })
                    .collect(),
            ),
            nodes: Some(i.nodes as i64),
            managers: Some(i.managers as i64),
            cluster,
        }
    }

    async fn init(&self, req: SwarmInitRequest) -> Result<String> {
        if req.data_path_addr.as_deref().is_some_and(|a| !a.is_empty())
            || req.default_addr_pool.is_some_and(|p| !p.is_empty())
        {
            tracing::warn!(
                "--data-path-addr and --default-addr-pool are kept for overlay networks, which skiff does not have yet"
            );
        }
        let given_root = req.spec.as_ref().and_then(|s| s.ca_config.as_ref()).and_then(|c| c.signing_ca_cert.as_ref());
        if given_root.is_some_and(|c| !c.is_empty()) {
            return Err(EngineError::invalid(
                "skiff makes the root CA at init; move the swarm to your own with `docker swarm ca --rotate --ca-cert --ca-key`",
            ));
        }
        let spec = spec_from_api(req.spec, ClusterSpec::default())?;
        let o = InitOptions {
            listen_addr: req.listen_addr.unwrap_or_default(),
            advertise_addr: req.advertise_addr.unwrap_or_default(),
            force_new_cluster: req.force_new_cluster.unwrap_or(false),
            spec,
        };
        self.swarm.init(o).await.map_err(err)
    }

    async fn join(&self, req: SwarmJoinRequest) -> Result<()> {
        let o = JoinOptions {
            listen_addr: req.listen_addr.unwrap_or_default(),
            advertise_addr: req.advertise_addr.unwrap_or_default(),
            remote_addrs: req.remote_addrs.unwrap_or_default(),
            token: req.join_token.unwrap_or_default(),
        };
        self.swarm.join(o).await.map_err(err)
    }

    async fn leave(&self, force: bool) -> Result<()> {
        self.swarm.leave(force).await.map_err(err)
    }

    async fn inspect(&self) -> Result<Swarm> {
        let m = self.swarm.manager().await.map_err(err)?;
        let c = m
            .read()
            .await
            .map_err(err)?
            .cluster
            .ok_or_else(|| EngineError::new(Kind::Unavailable, "the swarm has no cluster object yet"))?;
        // `Swarm` is `ClusterInfo` with the join tokens (a manager's view).
        let ClusterInfo {
            id,
            version,
            created_at,
            updated_at,
            spec,
            tls_info,
            root_rotation_in_progress,
            data_path_port,
            default_addr_pool,
            subnet_size,
        } = cluster_info(&c);
        Ok(Swarm {
            id,
            version,
            created_at,
            updated_at,
            spec,
            tls_info,
            root_rotation_in_progress,
            data_path_port,
            default_addr_pool,
            subnet_size,
            join_tokens: Some(JoinTokens { worker: Some(c.worker_token), manager: Some(c.manager_token) }),
        })
    }

    async fn update(&self, version: u64, spec: SwarmSpec, rotate: TokenRotation) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        let current =
            m.read().await.map_err(err)?.cluster.ok_or_else(|| EngineError::new(Kind::Unavailable, "no cluster"))?;
        let ca = spec.ca_config.clone().unwrap_or_default();
        let signing = match (ca.signing_ca_cert.filter(|c| !c.is_empty()), ca.signing_ca_key.filter(|k| !k.is_empty()))
        {
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                return Err(EngineError::invalid(
                    "a root CA certificate without its key needs an external CA, which skiff does not support",
                ));
            }
            _ => None,
        };
        let new = spec_from_api(Some(spec), current.spec.clone())?;
        if new != current.spec || current.version != version || (rotate.unlock_key && new.autolock) || signing.is_some()
        {
            let signing = signing.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            m.update_cluster(version, new, rotate.unlock_key, signing).await.map_err(err)?;
        }
        if rotate.worker {
            m.rotate_token(StoredRole::Worker).await.map_err(err)?;
        }
        if rotate.manager {
            m.rotate_token(StoredRole::Manager).await.map_err(err)?;
        }
        Ok(())
    }

    async fn unlock_key(&self) -> Result<String> {
        self.swarm.unlock_key().await.map_err(err)
    }

    async fn unlock(&self, key: &str) -> Result<()> {
        self.swarm.unlock(key).await.map_err(err)
    }

    async fn nodes(&self, filters: Option<&str>) -> Result<Vec<Node>> {
        let m = self.swarm.manager().await.map_err(err)?;
        let f: HashMap<String, HashMap<String, bool>> = match filters.filter(|f| !f.is_empty()) {
            Some(f) => serde_json::from_str(f).map_err(|e| EngineError::invalid(format!("invalid filters: {e}")))?,
            None => HashMap::new(),
        };
        let state = m.read().await.map_err(err)?;
        let managers = m.managers();
        let root = state.cluster.as_ref().map(|c| c.root_ca_cert.as_str());
        let mut out = Vec::new();
        for n in state.nodes.values() {
            let api = node_to_api(n, &managers, root);
            if node_matches(&api, &f)? {
                out.push(api);
            }
        }
        Ok(out)
    }

    async fn node(&self, id: &str) -> Result<Node> {
        let m = self.swarm.manager().await.map_err(err)?;
        let n = m.node(id).await.map_err(err)?;
        let root = m.sm_state().await.cluster.map(|c| c.root_ca_cert);
        Ok(node_to_api(&n, &m.managers(), root.as_deref()))
    }

    async fn update_node(&self, id: &str, version: u64, spec: NodeSpec) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        let n = m.node(id).await.map_err(err)?;
        let role = match spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => StoredRole::Manager,
            Some(NodeSpecRoleEnum::WORKER) => StoredRole::Worker,
            _ => n.spec.role,
        };
        let availability = match spec.availability {
            Some(NodeSpecAvailabilityEnum::ACTIVE) => Availability::Active,
            Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => n.spec.availability,
        };
        let new = ct::NodeSpec {
            name: spec.name.unwrap_or_default(),
            labels: spec.labels.unwrap_or_default().into_iter().collect(),
            role,
            availability,
        };
        m.update_node(&n.id, version, new).await.map_err(err)
    }

    async fn remove_node(&self, id: &str, force: bool) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        m.remove_node(id, force).await.map_err(err)
    }

    async fn services(&self, filters: Option<&str>, status: bool) -> Result<Vec<bollard_stubs::models::Service>> {
        let m = self.swarm.manager().await.map_err(err)?;
        let f = crate::swarm_filters::parse_filters(filters)?;
        let state = m.read().await.map_err(err)?;
        let mut out = Vec::new();
        for s in state.services.values() {
            if crate::swarm_filters::service_matches(s, &f)? {
                out.push(services_api::service_to_api(s, status.then_some(&state.tasks)));
            }
        }
        Ok(out)
    }

    async fn service(&self, id: &str) -> Result<bollard_stubs::models::Service> {
        let m = self.swarm.manager().await.map_err(err)?;
        Ok(services_api::service_to_api(&m.service(id).await.map_err(err)?, None))
    }

    async fn create_service(
        &self,
        spec: bollard_stubs::models::ServiceSpec,
        auth: Option<String>,
    ) -> Result<bollard_stubs::models::ServiceCreateResponse> {
        let m = self.swarm.manager().await.map_err(err)?;
        let mut spec = services_api::spec_from_api(spec, skiff_engine::container::names::generate)?;
        spec.task.pull_auth = services_api::registry_auth(auth)?;
        resolve_networks(&m, &mut spec.task).await?;
        let id = m.create_service(spec).await.map_err(err)?;
        Ok(bollard_stubs::models::ServiceCreateResponse { id: Some(id), warnings: None })
    }

    async fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: bollard_stubs::models::ServiceSpec,
        rollback: bool,
        auth: ServiceAuth,
    ) -> Result<bollard_stubs::models::ServiceUpdateResponse> {
        let m = self.swarm.manager().await.map_err(err)?;
        if rollback {
            m.rollback_service(id, version).await.map_err(err)?;
        } else {
            let current = m.service(id).await.map_err(err)?;
            let mut new = services_api::spec_from_api(spec, || current.spec.name.clone())?;
            resolve_networks(&m, &mut new.task).await?;
            new.task.pull_auth = match auth {
                ServiceAuth::Given(a) => services_api::registry_auth(Some(a))?,
                ServiceAuth::FromSpec => current.spec.task.pull_auth.clone(),
                ServiceAuth::FromPreviousSpec => current.previous_spec.as_ref().and_then(|p| p.task.pull_auth.clone()),
            };
            m.update_service(&current.id, version, new).await.map_err(err)?;
        }
        Ok(bollard_stubs::models::ServiceUpdateResponse { warnings: None })
    }

    async fn remove_service(&self, id: &str) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        m.remove_service(id).await.map_err(err)
    }

    async fn tasks(&self, filters: Option<&str>) -> Result<Vec<bollard_stubs::models::Task>> {
        let m = self.swarm.manager().await.map_err(err)?;
        let f = crate::swarm_filters::parse_filters(filters)?;
        let state = m.read().await.map_err(err)?;
        let mut out = Vec::new();
        for t in state.tasks.values() {
            if crate::swarm_filters::task_matches(t, &state, &f)? {
                out.push(services_api::task_to_api(t));
            }
        }
        Ok(out)
    }

    async fn task(&self, id: &str) -> Result<bollard_stubs::models::Task> {
        let m = self.swarm.manager().await.map_err(err)?;
        Ok(services_api::task_to_api(&m.task(id).await.map_err(err)?))
    }

    async fn blobs(&self, kind: BlobKind, filters: Option<&str>) -> Result<Vec<bollard_stubs::models::Secret>> {
        let m = self.swarm.manager().await.map_err(err)?;
        let f = crate::swarm_filters::parse_filters(filters)?;
        let state = m.read().await.map_err(err)?;
        let kind = crate::blobs_api::blob_kind(kind);
        let mut out = Vec::new();
        for b in state.blobs(kind).values() {
            if crate::swarm_filters::blob_matches(b, &f)? {
                out.push(crate::blobs_api::blob_to_api(kind, b));
            }
        }
        Ok(out)
    }

    async fn blob(&self, kind: BlobKind, id: &str) -> Result<bollard_stubs::models::Secret> {
        let m = self.swarm.manager().await.map_err(err)?;
        let kind = crate::blobs_api::blob_kind(kind);
        Ok(crate::blobs_api::blob_to_api(kind, &m.blob(kind, id).await.map_err(err)?))
    }

    async fn create_blob(&self, kind: BlobKind, spec: bollard_stubs::models::SecretSpec) -> Result<String> {
        let m = self.swarm.manager().await.map_err(err)?;
        let (name, labels, data) = crate::blobs_api::blob_spec(spec)?;
        m.create_blob(crate::blobs_api::blob_kind(kind), &name, labels, data.unwrap_or_default()).await.map_err(err)
    }

    async fn update_blob(
        &self,
        kind: BlobKind,
        id: &str,
        version: u64,
        spec: bollard_stubs::models::SecretSpec,
    ) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        let (name, labels, data) = crate::blobs_api::blob_spec(spec)?;
        m.update_blob(crate::blobs_api::blob_kind(kind), id, version, &name, labels, data.as_deref()).await.map_err(err)
    }

    async fn remove_blob(&self, kind: BlobKind, id: &str) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        m.remove_blob(crate::blobs_api::blob_kind(kind), id).await.map_err(err)
    }

    async fn service_logs(
        &self,
        id: &str,
        task: bool,
        opts: skiff_engine::container::logs::LogOptions,
    ) -> Result<(bool, tokio::sync::mpsc::Receiver<skiff_engine::container::logs::LogLine>)> {
        let m = self.swarm.manager().await.map_err(err)?;
        let (tasks, tty) = if task {
            let t = m.task(id).await.map_err(err)?;
            let tty = t.spec.container.tty;
            (vec![t], tty)
        } else {
            let s = m.service(id).await.map_err(err)?;
            let state = m.read().await.map_err(err)?;
            let tasks: Vec<ct::Task> =
                state.tasks.values().filter(|t| t.service_id == s.id && !t.node_id.is_empty()).cloned().collect();
            (tasks, s.spec.task.container.tty)
        };
        let nanos = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        };
        let req = skiff_swarm::LogRequest {
            follow: opts.follow,
            tail: opts.tail.map(|t| t as u64),
            since_ns: opts.since.map_or(0, nanos),
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let mut stream = m.subscribe_logs(&tasks, req).await.map_err(err)?;
        let attrs: HashMap<String, std::collections::BTreeMap<String, String>> = tasks
            .iter()
            .map(|t| {
                let a = [
                    ("com.docker.swarm.node.id", t.node_id.clone()),
                    ("com.docker.swarm.service.id", t.service_id.clone()),
                    ("com.docker.swarm.task.id", t.id.clone()),
                ];
                (t.id.clone(), a.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            })
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                // The client's leaving ends the subscription now, not at the next line.
                let ev = tokio::select! {
                    ev = stream.rx.recv() => match ev {
                        Some(ev) => ev,
                        None => break,
                    },
                    () = tx.closed() => break,
                };
                let stream_kind = if ev.record.stream == 2 {
                    skiff_engine::types::Stream::Stderr
                } else {
                    skiff_engine::types::Stream::Stdout
                };
                let line = skiff_engine::container::logs::LogLine {
                    stream: stream_kind,
                    time: ev.record.time,
                    data: ev.record.data.into(),
                    attrs: attrs.get(&ev.task_id).cloned(),
                };
                if tx.send(line).await.is_err() {
                    break;
                }
            }
            // Dropping the stream ends the subscription.
            drop(stream);
        });
        Ok((tty, rx))
    }

    async fn networks(&self) -> Result<Vec<skiff_engine::network::NetworkRecord>> {
        let Ok(m) = self.swarm.manager().await else { return Ok(Vec::new()) };
        let state = m.read().await.map_err(err)?;
        Ok(state.networks.values().map(crate::networks_api::network_record).collect())
    }

    async fn network(&self, key: &str) -> Result<Option<skiff_engine::network::NetworkRecord>> {
        let Ok(m) = self.swarm.manager().await else { return Ok(None) };
        match m.network(key).await {
            Ok(n) => Ok(Some(crate::networks_api::network_record(&n))),
            Err(e) if e.kind == skiff_swarm::Kind::NotFound => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn create_network(&self, req: bollard_stubs::models::NetworkCreateRequest) -> Result<String> {
        let m = self.swarm.manager().await.map_err(|e| match e.kind {
            skiff_swarm::Kind::Unavailable => EngineError::new(
                Kind::Unavailable,
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
            ),
            _ => err(e),
        })?;
        let spec = crate::networks_api::network_spec(req)?;
        m.create_network(spec).await.map_err(err)
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        let m = self.swarm.manager().await.map_err(err)?;
        m.remove_network(id).await.map_err(err)
    }
}
