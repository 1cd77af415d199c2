//! Networks: the built-in `bridge`, `host` and `none`, user-defined bridge networks, and the
//! sandboxes (network namespaces) of running containers attached to them.
//!
//! [`Networks`] owns everything network-related the daemon holds: the persisted network
//! records (with their address allocations, the single source of truth of IPAM), the live
//! attachments of running containers, their published ports (and the sockets that reserve the
//! host ports), the embedded DNS servers of user networks and the firewall chains. Containers
//! keep their own view (which networks they are connected to and, while running, their
//! addresses) in their records; [`sandbox`] is the interface between the two.
//!
//! Locks, and what they order (none is held across a netlink request but `topology`'s):
//! - `state`, the data (records, allocations, live sandboxes, DNS directory): a plain mutex
//!   held in short synchronous sections only — the compiler refuses one held across an await
//!   in the daemon's futures —, so IPAM never hands out an address twice and a `network ls`
//!   never waits for a veth to be made;
//! - `topology`, changes of the host's links other than containers' veths: bridges and VXLAN
//!   links, network create and remove, the swarm's overlays, DNS servers, reconciliation and
//!   shutdown, one at a time (an attach takes it only to bring up a bridge not up yet);
//! - `per_container`: a container's attach, detach, connect, disconnect and rename in turn,
//!   while different containers' run side by side;
//! - `firewall`: applies of the chains in turn, each rendering the state as it is then.
//!
//! Allocations are persisted before an address is used, and the reconciliation at daemon
//! start releases those whose container is gone.

mod create;
mod keyed;
pub mod overlay;
pub mod sandbox;

pub use create::CreateRequest;
pub use overlay::{MeshPort, OverlaySpec};
pub use skiff_net::ipam::Ipv4Net;

/// `addr/prefix` as a subnet (host bits dropped); `None` for a prefix past 32.
pub fn ipv4_net(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(addr, prefix).ok().map(|n| n.trunc())
}

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_image::db::{Db, Durability};
use skiff_net::firewall::Firewall;
use skiff_net::ipam;
use skiff_net::link::Netlink;

use crate::error::{EngineError, Kind, Result};
use crate::events::{Event, EventKind, Events};

const TABLE: &str = "networks";

/// Daemon-wide network settings (skiffd flags).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The default bridge's link name (`-b`).
    pub default_bridge: String,
    /// The default bridge's address and prefix (`--bip`).
    pub bip: Option<Ipv4Net>,
    /// Where subnets of new networks come from (`--default-address-pool`).
    pub pools: Vec<(Ipv4Net, u8)>,
    /// Inter-container communication on the default bridge (`--icc`).
    pub icc: bool,
    /// Manage firewall rules (`--iptables`).
    pub iptables: bool,
    pub mtu: Option<u32>,
    /// DNS servers for containers that name none (`--dns`); empty: the host's.
    pub dns: Vec<std::net::IpAddr>,
    /// What `host-gateway` in `--add-host` means (`--host-gateway-ip`); default: the default
    /// bridge's gateway.
    pub host_gateway_ip: Option<Ipv4Addr>,
    /// Where published ports without a host address bind on the default bridge (dockerd's
    /// `--ip`); none: every address.
    pub default_bind_ip: Option<Ipv4Addr>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            default_bridge: "skiff0".into(),
            bip: None,
            pools: ipam::default_pools(),
            icc: true,
            iptables: true,
            mtu: None,
            dns: Vec::new(),
            host_gateway_ip: None,
            default_bind_ip: None,
        }
    }
}

impl NetConfig {
    /// `-b none`: no default bridge; containers on the default network get only loopback.
    pub fn bridge_disabled(&self) -> bool {
        self.default_bridge == "none"
    }

    /// The firewall chains' prefix: `SKIFF` for the default bridge name, otherwise derived
    /// from it, so that daemons with different bridges never share chains.
    pub fn chain_prefix(&self) -> String {
        if self.default_bridge == "skiff0" {
            "SKIFF".into()
        } else {
            format!("SKIFF-{}", self.default_bridge.to_ascii_uppercase())
        }
    }
}

/// A network's driver, stored as dockerd names it (`bridge`, `host`, `null`, `overlay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    /// A bridge on this host (the default network and user networks).
    Bridge,
    /// The host's own namespace (`--network host`).
    Host,
    /// No network but loopback (`--network none`).
    Null,
    /// A swarm overlay: a bridge with a VXLAN port (see [`overlay`]).
    Overlay,
}

impl NetworkDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkDriver::Bridge => "bridge",
            NetworkDriver::Host => "host",
            NetworkDriver::Null => "null",
            NetworkDriver::Overlay => "overlay",
        }
    }
}

impl std::fmt::Display for NetworkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: NetworkDriver,
    pub created: String,
    /// `bridge`, `host`, `none`: cannot be removed.
    pub builtin: bool,
    /// The bridge link (bridge driver).
    #[serde(default)]
    pub bridge: String,
    /// skiffd made the bridge link, so it removes it (at `network rm`, and the default bridge at
    /// shutdown). A bridge that existed before (made by the administrator, `-b br0` or
    /// `com.docker.network.bridge.name`) is used and left in place, as dockerd leaves it.
    /// Records written before this field existed were always made by skiffd.
    #[serde(default = "made_by_us")]
    pub own_bridge: bool,
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    /// Reserved addresses (`--aux-address`).
    #[serde(default)]
    pub aux: BTreeMap<String, Ipv4Addr>,
    /// The subnet was chosen by the user.
    #[serde(default)]
    pub user_subnet: bool,
    pub internal: bool,
    pub attachable: bool,
    pub icc: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The last address handed out (allocation is serial).
    #[serde(default)]
    pub last_ip: Option<Ipv4Addr>,
    /// Addresses in use: address → container ID.
    #[serde(default)]
    pub allocations: BTreeMap<Ipv4Addr, String>,
    /// Overlay: the swarm's routing mesh network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ingress: bool,
    /// Overlay: the VXLAN ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Overlay: this node's data-path address (the tunnels' local end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<Ipv4Addr>,
    /// Overlay: the other nodes' data-path addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Ipv4Addr>,
}

fn made_by_us() -> bool {
    true
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == NetworkDriver::Bridge
    }

    pub fn is_overlay(&self) -> bool {
        self.driver == NetworkDriver::Overlay
    }

    /// Containers join it through a bridge on this host (bridge and overlay networks).
    pub fn has_bridge(&self) -> bool {
        self.is_bridge() || self.is_overlay()
    }

    /// Addresses IPAM must not hand out.
    fn taken(&self) -> std::collections::BTreeSet<Ipv4Addr> {
        let mut t: std::collections::BTreeSet<Ipv4Addr> = self.allocations.keys().copied().collect();
        t.extend(self.gateway);
        t.extend(self.aux.values().copied());
        t
    }

    /// The gateway with the subnet's prefix (the bridge's own address).
    fn gateway_net(&self) -> Option<Ipv4Net> {
        Ipv4Net::new(self.gateway?, self.subnet?.prefix()).ok()
    }
}

/// Filters of `docker network ls` / `prune`.
#[derive(Debug, Default, Clone)]
pub struct NetworkFilters {
    pub name: Vec<String>,
    pub id: Vec<String>,
    pub driver: Vec<String>,
    /// `key` or `key=value`.
    pub label: Vec<String>,
    pub label_not: Vec<String>,
    /// `custom` or `builtin`.
    pub typ: Vec<String>,
    pub dangling: Option<bool>,
    /// Created before this many seconds since the epoch (prune).
    pub until: Option<i64>,
}

impl NetworkFilters {
    /// Whether network `rec` (with no running member when `unused`) passes the filters.
    pub fn matches(&self, rec: &NetworkRecord, unused: bool) -> bool {
        let f = self;
        if !f.name.is_empty() && !f.name.iter().any(|n| rec.name.contains(n.as_str())) {
            return false;
        }
        if !f.id.is_empty() && !f.id.iter().any(|i| rec.id.starts_with(i.as_str())) {
            return false;
        }
        if !f.driver.is_empty() && !f.driver.iter().any(|d| d == rec.driver.as_str()) {
            return false;
        }
        if !f.label.iter().all(|l| labels_match(&rec.labels, l))
            || f.label_not.iter().any(|l| labels_match(&rec.labels, l))
        {
            return false;
        }
        if !f.typ.is_empty() {
            let t = if rec.builtin { "builtin" } else { "custom" };
            if !f.typ.iter().any(|x| x == t) {
                return false;
            }
        }
        if let Some(d) = f.dangling
            && (rec.builtin || unused != d)
        {
            return false;
        }
        if let Some(u) = f.until
            && skiff_common::timefmt::parse(&rec.created)
                .map(|t| skiff_common::timefmt::split(t).0 >= u)
                .unwrap_or(false)
        {
            return false;
        }
        true
    }
}

/// A running container on a network, for `network inspect`.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub container_id: String,
    pub name: String,
    pub endpoint_id: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

pub struct Networks {
    db: Arc<Db>,
    events: Arc<Events>,
    pub cfg: NetConfig,
    /// Where sandboxes (pinned network namespaces) live.
    netns_dir: PathBuf,
    firewall: Firewall,
    netlink: tokio::sync::OnceCell<Netlink>,
    state: std::sync::Mutex<sandbox::Inner>,
    topology: tokio::sync::Mutex<()>,
    per_container: keyed::KeyedLocks,
    /// The firewall text last applied (`None`: unknown, apply whatever comes next).
    firewall_applied: tokio::sync::Mutex<Option<String>>,
    host_sysctls: std::sync::Once,
}

/// Proof that the caller holds the topology lock (see the module docs).
pub(crate) struct Topology<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

fn labels_match(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(filter),
    }
}

impl Networks {
    /// Loads the persisted networks (the built-in ones are created by [`Networks::restore`]).
    pub fn open(db: Arc<Db>, events: Arc<Events>, cfg: NetConfig, exec_root: &std::path::Path) -> Result<Networks> {
        let mut nets = BTreeMap::new();
        for (id, bytes) in db.list_raw(TABLE)? {
            // A record this daemon cannot read (a newer daemon's driver) is left as it is and
            // unused; it never keeps the daemon down.
            match serde_json::from_slice::<NetworkRecord>(&bytes) {
                Ok(rec) => {
                    nets.insert(id, rec);
                }
                Err(e) => {
                    tracing::warn!(network = %id, error = %e, "a network record this daemon cannot read is ignored")
                }
            }
        }
        let netns_dir = exec_root.join("netns");
        std::fs::create_dir_all(&netns_dir)?;
        Ok(Networks {
            db,
            events,
            firewall: Firewall::new(&cfg.chain_prefix()),
            state: std::sync::Mutex::new(sandbox::Inner::new(nets, cfg.dns.clone())),
            topology: tokio::sync::Mutex::new(()),
            per_container: keyed::KeyedLocks::default(),
            firewall_applied: tokio::sync::Mutex::new(None),
            host_sysctls: std::sync::Once::new(),
            cfg,
            netns_dir,
            netlink: tokio::sync::OnceCell::new(),
        })
    }

    /// The networks' data, for a short synchronous section (a panic elsewhere does not make it
    /// unusable: every section leaves it consistent before anything can fail).
    fn state(&self) -> std::sync::MutexGuard<'_, sandbox::Inner> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn topology(&self) -> Topology<'_> {
        Topology(self.topology.lock().await)
    }

    async fn netlink(&self) -> Result<&Netlink> {
        self.netlink
            .get_or_try_init(|| async { Netlink::new().map_err(|e| EngineError::internal(format!("netlink: {e}"))) })
            .await
    }

    fn persist(&self, rec: &NetworkRecord) -> Result<()> {
        self.db.put(TABLE, &rec.id, rec, Durability::Sync)?;
        Ok(())
    }

    fn publish(&self, rec: &NetworkRecord, action: &str, extra: &[(&str, String)]) {
        let mut e =
            Event::new(EventKind::Network, action, &rec.id).attr("name", &rec.name).attr("type", rec.driver.as_str());
        for (k, v) in extra {
            e = e.attr(k, v.clone());
        }
        self.events.publish(e);
    }

    /// Finds a network by ID, name, or unique ID prefix (Docker's order).
    pub async fn get(&self, key: &str) -> Result<NetworkRecord> {
        find(&self.state().nets, key).cloned()
    }

    /// Every network, with its running members.
    pub async fn list(&self, f: &NetworkFilters) -> Result<Vec<(NetworkRecord, Vec<MemberView>)>> {
        let inner = self.state();
        let mut out = Vec::new();
        for rec in inner.nets.values() {
            let members = inner.members(&rec.id);
            if !f.matches(rec, members.is_empty()) {
                continue;
            }
            out.push((rec.clone(), members));
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// `docker network rm`.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let t = self.topology().await;
        let (rec, server) = {
            let mut inner = self.state();
            let rec = find(&inner.nets, key)?.clone();
            if rec.builtin {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("{} is a pre-defined network and cannot be removed", rec.name),
                ));
            }
            if rec.is_overlay() {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("{} is a swarm network: remove it with `docker network rm` on a manager", rec.name),
                ));
            }
            // An address handed out is a container running on it or starting (its attach has
            // the address but is not live yet).
            if !inner.members(&rec.id).is_empty() || !rec.allocations.is_empty() {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("error while removing network: network {} id {} has active endpoints", rec.name, rec.id),
                ));
            }
            // Gone for new attaches from here; put back if its bridge cannot be removed.
            inner.nets.remove(&rec.id);
            let server = inner.servers.remove(&rec.id);
            inner.refresh_dns();
            (rec, server)
        };
        if let Some(s) = server {
            s.stop().await;
        }
        if rec.own_bridge
            && let Err(e) = self.delete_bridge(&rec).await
        {
            self.state().nets.insert(rec.id.clone(), rec.clone());
            return Err(e);
        }
        self.state().ready_bridges.remove(&rec.bridge);
        if let Err(e) = self.db.delete(TABLE, &rec.id) {
            self.state().nets.insert(rec.id.clone(), rec.clone());
            return Err(e.into());
        }
        drop(t);
        self.sync_firewall(false).await;
        self.publish(&rec, "destroy", &[]);
        Ok(())
    }

    async fn delete_bridge(&self, rec: &NetworkRecord) -> Result<()> {
        self.netlink().await?.delete_link(&rec.bridge).await.map_err(EngineError::from_cause)
    }

    /// `docker network prune`: user networks no running container uses.
    pub async fn prune(&self, f: &NetworkFilters) -> Result<Vec<String>> {
        let mut f = f.clone();
        f.typ = vec!["custom".into()];
        f.dangling = Some(true);
        let mut removed = Vec::new();
        for (rec, _) in self.list(&f).await? {
            match self.remove(&rec.id).await {
                Ok(()) => removed.push(rec.name),
                Err(e) => tracing::debug!(network = %rec.name, error = %e, "prune skipped a network"),
            }
        }
        Ok(removed)
    }

    /// The default bridge network's gateway (`--add-host name:host-gateway`).
    pub async fn host_gateway(&self) -> Option<Ipv4Addr> {
        if let Some(ip) = self.cfg.host_gateway_ip {
            return Some(ip);
        }
        self.state().nets.values().find(|n| n.builtin && n.name == "bridge").and_then(|n| n.gateway)
    }
}

fn find<'a>(nets: &'a BTreeMap<String, NetworkRecord>, key: &str) -> Result<&'a NetworkRecord> {
    if let Some(n) = nets.get(key) {
        return Ok(n);
    }
    if let Some(n) = nets.values().find(|n| n.name == key) {
        return Ok(n);
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<_> = nets.values().filter(|n| n.id.starts_with(key)).collect();
        match hits.len() {
            1 => return Ok(hits[0]),
            0 => {}
            _ => {
                return Err(EngineError::invalid(format!("network {key} is ambiguous ({} matches found)", hits.len())));
            }
        }
    }
    Err(EngineError::not_found(format!("network {key} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_are_stored_as_dockerd_names_them() {
        for (json, driver) in [
            ("bridge", NetworkDriver::Bridge),
            ("host", NetworkDriver::Host),
            ("null", NetworkDriver::Null),
            ("overlay", NetworkDriver::Overlay),
        ] {
            // Records written before the enum stored these strings.
            let rec: NetworkRecord = serde_json::from_value(serde_json::json!({
                "id": "n1", "name": "x", "driver": json, "created": "2026-12-07T00:00:00Z", "builtin": false,
                "internal": false, "attachable": false, "icc": true
            }))
            .unwrap();
            assert_eq!(rec.driver, driver);
            assert_eq!(serde_json::to_value(&rec).unwrap()["driver"], json);
            assert_eq!(driver.to_string(), json);
        }
        let unknown = serde_json::json!({"id": "n", "name": "x", "driver": "macvlan", "created": "", "builtin": false,
            "internal": false, "attachable": false, "icc": true});
        assert!(serde_json::from_value::<NetworkRecord>(unknown).is_err());
        let mut f = NetworkFilters { driver: vec!["overlay".into()], ..Default::default() };
        let rec: NetworkRecord =
            serde_json::from_value(serde_json::json!({"id": "n", "name": "x", "driver": "overlay",
            "created": "", "builtin": false, "internal": false, "attachable": false, "icc": true}))
            .unwrap();
        assert!(f.matches(&rec, true));
        f.driver = vec!["bridge".into()];
        assert!(!f.matches(&rec, true));
    }
}
