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
mod record;
pub mod sandbox;

pub use create::CreateRequest;
pub use overlay::{MeshPort, OverlaySpec};
pub use record::{MemberView, NetworkDriver, NetworkFilters, NetworkRecord};
pub use skiff_net::ipam::Ipv4Net;

/// `addr/prefix` as a subnet (host bits dropped); `None` for a prefix past 32.
pub fn ipv4_net(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(addr, prefix).ok().map(|n| n.trunc())
}

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

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
pub(crate) struct Topology<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
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
        Topology { _held: self.topology.lock().await }
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
