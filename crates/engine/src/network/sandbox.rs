//! Sandboxes: the network namespace of a running container, its interfaces on networks, its
//! published ports; attaching at start, detaching at exit, connecting and disconnecting while
//! it runs, and re-adopting after a daemon restart.
//!
//! The path of one attach (in turn with the container's other network operations; the
//! networks' data is locked only to read and record, never across the netlink requests):
//! 1. IPAM: an address per network (requested or the next free one), recorded in the network
//! 2. bring up the bridges that are not up yet (once per daemon)
//! 3. create the namespace, pinned at `<exec-root>/netns/<container>`
//! 4. a veth pair per network: host end on the bridge, container end created inside the
//!    namespace as `ethN`
//! 5. inside the namespace: `lo` up, addresses, default route
//! 6. host ports reserved (sockets) and the firewall chains rewritten if the rules changed
//! 7. `<exec-root>/netns/<container>.json` records all of it: a daemon killed at any later
//!    point finds it at restart, so running containers keep their addresses and nobody else
//!    gets them
//!
//! Any failure undoes what was done.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skiff_net::dns;
use skiff_net::firewall::Proto;
use skiff_net::ipam;
use skiff_net::link::{self, IfaceConfig};

use skiff_net::ports::{self, Mapping};

use super::{MemberView, NetworkRecord, Networks, find};
use crate::error::{EngineError, Kind, Result};

mod attach;
mod bridges;
mod lifecycle;
mod live;
mod resolver;
pub use resolver::dns_names;

/// A container's connection to one network, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Requested address (`--ip`).
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// Requested MAC address (`--mac-address`).
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub links: Vec<String>,
    /// Requested link-local addresses (`--link-local-ip`): kept and shown as dockerd shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    /// Driver options of the endpoint (`--driver-opt` of `network connect`): kept and shown.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub driver_opts: std::collections::BTreeMap<String, String>,
    /// Set while the container runs.
    #[serde(default)]
    pub live: Option<EndpointState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// Inside the container (`eth0`).
    pub iface: String,
    /// On the host.
    pub host_veth: String,
}

/// What a running container's record keeps of its sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SandboxState {
    pub path: PathBuf,
    pub ports: Vec<Mapping>,
}

/// What `<exec-root>/netns/<id>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxFile {
    container_id: String,
    name: String,
    endpoints: Vec<Endpoint>,
    ports: Vec<Mapping>,
    dns: Vec<IpAddr>,
    /// The container's hostname (it resolves to itself through the embedded DNS).
    #[serde(default)]
    hostname: String,
}

pub struct AttachRequest {
    pub container_id: String,
    /// Container name (DNS).
    pub name: String,
    /// In order; the first non-internal one carries the default route and published ports.
    pub endpoints: Vec<Endpoint>,
    pub publish: Vec<ports::Requested>,
    /// The container's `--dns` servers (the embedded DNS forwards to them).
    pub dns: Vec<IpAddr>,
    pub hostname: String,
}

#[derive(Debug, Clone)]
pub struct Attached {
    pub sandbox: SandboxState,
    pub endpoints: Vec<Endpoint>,
}

struct Live {
    name: String,
    sandbox: PathBuf,
    endpoints: Vec<Endpoint>,
    ports: Vec<(Mapping, Option<ports::Hold>)>,
    dns: Vec<IpAddr>,
    hostname: String,
}

impl Live {
    fn file(&self, id: &str) -> SandboxFile {
        SandboxFile {
            container_id: id.to_string(),
            name: self.name.clone(),
            endpoints: self.endpoints.clone(),
            ports: self.ports.iter().map(|(m, _)| m.clone()).collect(),
            dns: self.dns.clone(),
            hostname: self.hostname.clone(),
        }
    }
}

pub(super) struct Inner {
    pub(super) nets: BTreeMap<String, NetworkRecord>,
    live: HashMap<String, Live>,
    /// The embedded DNS servers of user networks, and what they answer.
    pub(super) servers: HashMap<String, dns::DnsServer>,
    directory: dns::Directory,
    /// The daemon's `--dns` (upstreams of the embedded servers when set).
    pub(super) default_dns: Vec<IpAddr>,
    /// Bridges known to be up, with their link index.
    pub(super) ready_bridges: HashMap<String, u32>,
    /// Overlays' VXLAN links and the peers they flood to, by network ID.
    pub(super) tunnels: HashMap<String, super::overlay::Tunnel>,
    /// Overlays' cluster-wide names (services, tasks) by network ID, as the managers sent them.
    pub(super) cluster_names: HashMap<String, Vec<(String, Vec<Ipv4Addr>)>>,
    /// The routing mesh's ports, by (ingress) network ID.
    pub(super) mesh: HashMap<String, Vec<super::overlay::MeshPort>>,
    /// Services' virtual IPs and their backends, by overlay network ID.
    pub(super) vips: HashMap<String, Vec<(Ipv4Addr, Vec<Ipv4Addr>)>>,
    /// Overlays the managers no longer list but containers here still use: removed as their
    /// last container leaves.
    pub(super) retired: HashSet<String>,
}

impl Inner {
    pub(super) fn new(nets: BTreeMap<String, NetworkRecord>, default_dns: Vec<IpAddr>) -> Inner {
        Inner {
            nets,
            live: HashMap::new(),
            servers: HashMap::new(),
            directory: dns::Directory::default(),
            default_dns,
            ready_bridges: HashMap::new(),
            tunnels: HashMap::new(),
            cluster_names: HashMap::new(),
            mesh: HashMap::new(),
            vips: HashMap::new(),
            retired: HashSet::new(),
        }
    }

    /// Running containers on a network.
    pub(super) fn members(&self, net_id: &str) -> Vec<MemberView> {
        let mut out = Vec::new();
        for (cid, l) in &self.live {
            for e in &l.endpoints {
                if e.network_id == net_id
                    && let Some(s) = &e.live
                {
                    out.push(MemberView {
                        container_id: cid.clone(),
                        name: l.name.clone(),
                        endpoint_id: s.endpoint_id.clone(),
                        mac: s.mac.clone(),
                        ip: s.ip,
                        prefix: s.prefix,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn taken_ports(&self) -> HashSet<(Proto, u16)> {
        self.live.values().flat_map(|l| l.ports.iter().map(|(m, _)| (m.proto, m.host_port))).collect()
    }
}

fn host_veth_name(container_id: &str, n: usize) -> String {
    format!("sk{}{n}", &container_id[..10])
}

fn io_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::internal(e.to_string())
}

impl Networks {
    fn sandbox_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    fn sandbox_file(&self, id: &str) -> PathBuf {
        self.netns_dir.join(format!("{id}.json"))
    }

    /// Releases every address `container_id` holds; persists the networks that changed.
    fn release_all(&self, container_id: &str) {
        let changed: Vec<NetworkRecord> = {
            let mut inner = self.state();
            let mut changed = Vec::new();
            for n in inner.nets.values_mut() {
                let before = n.allocations.len();
                n.allocations.retain(|_, owner| owner != container_id);
                if n.allocations.len() != before {
                    changed.push(n.clone());
                }
            }
            changed
        };
        for rec in changed {
            if let Err(e) = self.db.put(super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Lazy) {
                tracing::warn!(network = %rec.name, error = %e, "persisting a release");
            }
        }
    }

    /// Picks (and records) an address for `container_id` on a network.
    fn allocate(&self, net_id: &str, container_id: &str, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        let (ip, rec) = {
            let mut inner = self.state();
            let n = inner
                .nets
                .get_mut(net_id)
                .ok_or_else(|| EngineError::not_found(format!("network {net_id} not found")))?;
            let subnet = n.subnet.ok_or_else(|| EngineError::invalid(format!("network {} has no subnet", n.name)))?;
            let taken = n.taken();
            let ip = match requested {
                Some(ip) => {
                    ipam::reserve(&subnet, ip, &taken).map_err(|e| match e {
                        ipam::IpamError::InUse(_) => {
                            EngineError::new(Kind::Forbidden, format!("Address already in use: {ip}"))
                        }
                        other => EngineError::invalid(other.to_string()),
                    })?;
                    ip
                }
                None => {
                    let ip = ipam::allocate(&subnet, n.ip_range.as_ref(), &taken, n.last_ip)
                        .map_err(|e| EngineError::new(Kind::Forbidden, e.to_string()))?;
                    n.last_ip = Some(ip);
                    ip
                }
            };
            n.allocations.insert(ip, container_id.to_string());
            (ip, n.clone())
        };
        // Lazy: a daemon killed before this commit lands finds the address again in the
        // sandbox file (written before the container runs).
        self.db.put(super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Lazy)?;
        Ok(ip)
    }

    /// Sets up one interface of a sandbox (steps 1, 2, 4 of the module's path).
    async fn plug(
        &self,
        container_id: &str,
        sandbox: &Path,
        ep: &mut Endpoint,
        n: usize,
    ) -> Result<(IfaceConfig, bool)> {
        let rec = find(&self.state().nets, &ep.network_id)?.clone();
        if !rec.has_bridge() {
            return Err(EngineError::invalid(format!(
                "container cannot be connected to network {} (driver {})",
                rec.name, rec.driver
            )));
        }
        ep.network_id = rec.id.clone();
        ep.network_name = rec.name.clone();
        let bridge = self.bridge_of(&rec).await?;
        let ip = self.allocate(&rec.id, container_id, ep.ipv4)?;
        let mac = match ep.mac.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => ipam::parse_mac(m).ok_or_else(|| EngineError::invalid(format!("invalid MAC address {m}")))?,
            None => ipam::mac_for(ip),
        };
        let subnet = rec.subnet.expect("bridge networks have a subnet");
        let iface = format!("eth{n}");
        let host_veth = host_veth_name(container_id, n);
        let nl = self.netlink().await?;
        let mtu = rec.options.get("com.docker.network.driver.mtu").and_then(|m| m.parse().ok());
        // A veth left by a crash under the same name goes first.
        let _ = nl.delete_link(&host_veth).await;
        if let Err(e) = nl.add_veth(&host_veth, bridge, &iface, sandbox, mac, mtu).await {
            // The bridge may have been deleted (by hand, or by another daemon using its name)
            // since we cached its index: make it again and retry once.
            tracing::warn!(bridge = %rec.bridge, error = %e, "creating a veth failed; checking the bridge");
            self.state().ready_bridges.remove(&rec.bridge);
            let bridge = self.bridge_of(&rec).await?;
            let _ = nl.delete_link(&host_veth).await;
            nl.add_veth(&host_veth, bridge, &iface, sandbox, mac, mtu).await.map_err(io_err)?;
        }
        if let Err(e) = link::set_hairpin(&host_veth) {
            tracing::debug!(veth = %host_veth, "hairpin mode: {e}");
        }
        ep.live = Some(EndpointState {
            endpoint_id: crate::volumes::hex_id(),
            ip,
            prefix: subnet.prefix(),
            gateway: rec.gateway,
            mac: ipam::mac_string(&mac),
            iface: iface.clone(),
            host_veth,
        });
        let addr = ipam::Ipv4Net::new(ip, subnet.prefix()).map_err(io_err)?;
        // An overlay never carries the default route or published ports (see `overlay`).
        Ok((IfaceConfig { name: iface, addr, default_gateway: None }, rec.internal || rec.is_overlay()))
    }
}

/// A network's outgoing addressing from its driver options (dockerd's names).
fn outgoing_of(options: &BTreeMap<String, String>) -> skiff_net::firewall::Outgoing {
    use skiff_net::firewall::Outgoing;
    if options.get("com.docker.network.bridge.enable_ip_masquerade").is_some_and(|v| v == "false") {
        return Outgoing::AsIs;
    }
    match options.get("com.docker.network.host_ipv4").and_then(|ip| ip.parse().ok()) {
        Some(ip) => Outgoing::Snat(ip),
        None => Outgoing::Masquerade,
    }
}
