//! Overlay networks (swarmkit's `Network` object and its allocator): a subnet and a VXLAN ID per
//! network, an address per task attached to it and one per node that runs such a task (the
//! node's end of the network: its bridge's address, where the node's embedded DNS answers).
//!
//! Every allocation happens while a command is applied, from the replicated state alone, so all
//! managers make the same choices and no address is handed out twice: a network's subnet and
//! VXLAN ID when it is created, a task's addresses when it is created, a node's address when a
//! task that needs it is assigned there. Addresses are handed out in turn after the last one
//! (as dockerd's IPAM does), so an address a task just gave up is not reused at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{ClusterState, EndpointMode, PortConfig, PublishMode, ServiceSpec, TaskState};

/// Where published ports the managers choose come from (swarmkit's dynamic range).
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Where subnets of networks made without one come from (dockerd's `--default-addr-pool`
/// default), and their size.
pub const DEFAULT_POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 0, 0), 8);
pub const DEFAULT_SUBNET_SIZE: u8 = 24;
/// The first VXLAN ID handed out (swarmkit's).
pub const FIRST_VNI: u32 = 4097;
/// UDP port of VXLAN between nodes (`--data-path-port` default).
pub const DATA_PATH_PORT: u16 = 4789;

/// An IPv4 subnet: an address with its prefix length (the address's host bits are zero, the
/// prefix 8–30). Stored and sent as `a.b.c.d/n`, checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n` (host bits must be zero).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s}: no prefix length"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid subnet {s}: bad address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("invalid subnet {s}: bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("invalid subnet {s}: the prefix length must be between 8 and 30"));
        }
        let n = Subnet { addr, prefix };
        if u32::from(addr) & !n.mask() != 0 {
            return Err(format!("invalid subnet {s}: host bits are set"));
        }
        Ok(n)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.first()
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first() + 1)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Subnet, String> {
        Subnet::parse(&s)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What an operator sets on a network (`docker network create -d overlay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options, kept and shown.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Plain containers may join it (`--attachable`).
    #[serde(default)]
    pub attachable: bool,
    /// No route out of it (`--internal`).
    #[serde(default)]
    pub internal: bool,
    /// The routing mesh's network.
    #[serde(default)]
    pub ingress: bool,
    /// `--subnet`; none: one from the default pool.
    #[serde(default)]
    pub subnet: Option<Subnet>,
    /// `--gateway`; none: the subnet's first address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// A network as the managers keep it, with what was allocated to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub spec: NetworkSpec,
    /// Set when applied.
    #[serde(default)]
    pub subnet: Option<Subnet>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub vni: u32,
    /// The last address handed out (allocation goes on after it).
    #[serde(default)]
    pub last_ip: Option<Ipv4Addr>,
    /// Each node's address on the network, for the nodes that run a task on it.
    #[serde(default)]
    pub node_addrs: BTreeMap<String, Ipv4Addr>,
}

impl Network {
    /// A network as it is created (allocations, versions and times are set when applied).
    pub fn new(id: &str, spec: NetworkSpec) -> Network {
        Network {
            id: id.to_string(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            spec,
            subnet: None,
            gateway: None,
            vni: 0,
            last_ip: None,
            node_addrs: BTreeMap::new(),
        }
    }
}

/// A service's wish to be on a network (`--network name=N,alias=A`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachmentSpec {
    /// The network's ID.
    pub target: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A task's address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAddress {
    pub network_id: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl ClusterState {
    /// Applies a network command.
    pub(super) fn apply_network(&mut self, index: u64, now: i64, cmd: &super::Command) -> Result<(), String> {
        use super::Command;
        match cmd {
            Command::CreateNetwork { network } => {
                if self.networks.values().any(|n| n.spec.name == network.spec.name) {
                    return Err(format!(
                        "rpc error: code = AlreadyExists desc = network with name {} already exists",
                        network.spec.name
                    ));
                }
                if self.networks.contains_key(&network.id) {
                    return Err(format!("network {} already exists", network.id));
                }
                if network.spec.ingress && self.networks.values().any(|n| n.spec.ingress) {
                    return Err("rpc error: code = AlreadyExists desc = ingress network already present".into());
                }
                let mut n = (**network).clone();
                let subnet = match n.spec.subnet {
                    Some(s) => {
                        if let Some(o) = self.networks.values().find(|o| o.subnet.is_some_and(|os| os.overlaps(&s))) {
                            return Err(format!(
                                "rpc error: code = InvalidArgument desc = subnet {s} overlaps network {}'s",
                                o.spec.name
                            ));
                        }
                        s
                    }
                    None => self.free_subnet()?,
                };
                let gateway = n.spec.gateway.unwrap_or_else(|| subnet.first_host());
                if !subnet.contains(gateway) {
                    return Err(format!(
                        "rpc error: code = InvalidArgument desc = gateway {gateway} is not in {subnet}"
                    ));
                }
                let used: BTreeSet<u32> = self.networks.values().map(|n| n.vni).collect();
                n.vni = (FIRST_VNI..).find(|v| !used.contains(v)).unwrap_or(FIRST_VNI);
                (n.subnet, n.gateway, n.last_ip) = (Some(subnet), Some(gateway), None);
                n.node_addrs.clear();
                (n.version, n.created_at, n.updated_at) = (index, now, now);
                let (id, ingress) = (n.id.clone(), n.spec.ingress);
                self.networks.insert(id.clone(), n);
                if ingress {
                    // The routing mesh is on every node.
                    let nodes: Vec<String> = self.nodes.keys().cloned().collect();
                    for node in nodes {
                        self.allocate_node_addrs(&node, std::slice::from_ref(&id));
                    }
                }
            }
            Command::RemoveNetwork { id } => {
                let n = self.networks.get(id).ok_or_else(|| format!("network {id} not found"))?;
                let uses = |s: &super::Service| {
                    s.spec.task.networks.iter().any(|a| a.target == *id)
                        || (n.spec.ingress && s.endpoint_ports.iter().any(|p| p.mode == PublishMode::Ingress))
                };
                if let Some(s) = self.services.values().find(|s| uses(s)) {
                    return Err(format!(
                        "rpc error: code = FailedPrecondition desc = network {} is in use by service {}",
                        n.spec.name, s.id
                    ));
                }
                // Tasks on their way out (their service removed) do not hold it: they stop
                // on their own, and their nodes drop the network after them (as swarmkit).
                if let Some(t) = self
                    .tasks
                    .values()
                    .find(|t| t.wanted() && holds_address(t) && t.networks.iter().any(|a| a.network_id == *id))
                {
                    return Err(format!(
                        "rpc error: code = FailedPrecondition desc = network {} is in use by task {}",
                        n.spec.name, t.id
                    ));
                }
                self.networks.remove(id);
            }
            _ => return Err("not a network command".into()),
        }
        Ok(())
    }

    /// The ingress network, if there is one.
    pub fn ingress(&self) -> Option<&Network> {
        self.networks.values().find(|n| n.spec.ingress)
    }

    /// A new node's address on the ingress network (the routing mesh is on every node).
    pub(super) fn join_ingress(&mut self, node_id: &str) {
        if let Some(id) = self.ingress().map(|n| n.id.clone()) {
            self.allocate_node_addrs(node_id, &[id]);
        }
    }

    /// Service `id`'s ingress ports for `spec`: published ports it names, checked against
    /// every other service's; those it leaves 0 keep what `previous` had for the same target,
    /// or get the lowest free port of [`DYNAMIC_PORTS`].
    pub(super) fn ingress_ports(
        &self,
        id: &str,
        spec: &ServiceSpec,
        previous: &[PortConfig],
    ) -> Result<Vec<PortConfig>, String> {
        let wanted: Vec<&PortConfig> = spec.task.ports.iter().filter(|p| p.mode == PublishMode::Ingress).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        if self.ingress().is_none() {
            return Err("rpc error: code = InvalidArgument desc = service needs ingress network, but no ingress network is present".into());
        }
        let taken = |proto: &str, port: u16| {
            self.services
                .values()
                .filter(|s| s.id != id)
                .find(|s| s.endpoint_ports.iter().any(|p| p.protocol == proto && p.published_port == port))
        };
        let mut out: Vec<PortConfig> = Vec::new();
        for p in &wanted {
            if p.published_port == 0 {
                continue;
            }
            if let Some(s) = taken(&p.protocol, p.published_port) {
                return Err(format!(
                    "rpc error: code = InvalidArgument desc = port '{}' is already in use by service '{}' ({}) as an ingress port",
                    p.published_port, s.spec.name, s.id
                ));
            }
            if out.iter().any(|o| o.protocol == p.protocol && o.published_port == p.published_port) {
                return Err(format!(
                    "rpc error: code = InvalidArgument desc = duplicate published ports provided: {}",
                    p.published_port
                ));
            }
            out.push((*p).clone());
        }
        for p in wanted.iter().filter(|p| p.published_port == 0) {
            let free = |port: u16| {
                taken(&p.protocol, port).is_none()
                    && !out.iter().any(|o| o.protocol == p.protocol && o.published_port == port)
            };
            let kept = previous
                .iter()
                .find(|o| o.protocol == p.protocol && o.target_port == p.target_port && free(o.published_port))
                .map(|o| o.published_port);
            let port = kept.or_else(|| DYNAMIC_PORTS.into_iter().find(|port| free(*port))).ok_or_else(|| {
                "rpc error: code = ResourceExhausted desc = no free port left in the dynamic range".to_string()
            })?;
            out.push(PortConfig { published_port: port, ..(*p).clone() });
        }
        // In the spec's order.
        out.sort_by_key(|o| wanted.iter().position(|p| p.protocol == o.protocol && p.target_port == o.target_port));
        Ok(out)
    }

    /// The first subnet of the default size in the default pool that no network overlaps.
    fn free_subnet(&self) -> Result<Subnet, String> {
        let pool = Subnet { addr: DEFAULT_POOL.0, prefix: DEFAULT_POOL.1 };
        let step = 1u32 << (32 - u32::from(DEFAULT_SUBNET_SIZE));
        let mut at = pool.first();
        while at <= pool.last() {
            let s = Subnet { addr: Ipv4Addr::from(at), prefix: DEFAULT_SUBNET_SIZE };
            if !self.networks.values().any(|n| n.subnet.is_some_and(|o| o.overlaps(&s))) {
                return Ok(s);
            }
            at += step;
        }
        Err("rpc error: code = ResourceExhausted desc = no free subnet left in the address pool".into())
    }

    /// Addresses on network `id` that may not be handed out: its gateway, its nodes' and those
    /// of tasks that still hold theirs.
    fn taken_on(&self, id: &str) -> BTreeSet<Ipv4Addr> {
        let mut taken = BTreeSet::new();
        if let Some(n) = self.networks.get(id) {
            taken.extend(n.gateway);
            taken.extend(n.node_addrs.values().copied());
        }
        for t in self.tasks.values().filter(|t| holds_address(t)) {
            taken.extend(t.networks.iter().filter(|a| a.network_id == id).map(|a| a.addr));
        }
        taken.extend(self.services.values().filter_map(|s| s.vips.get(id)));
        taken
    }

    /// The next free address on network `id` after its last one handed out (nothing changes).
    fn peek_on(&self, id: &str) -> Result<(Ipv4Addr, u8), String> {
        let taken = self.taken_on(id);
        let n = self.networks.get(id).ok_or_else(|| format!("network {id} not found"))?;
        let subnet = n.subnet.ok_or_else(|| format!("network {} has no subnet", n.spec.name))?;
        // Hosts are first+1 ..= last-1; start after the last one handed out.
        let (lo, hi) = (subnet.first() + 1, subnet.last() - 1);
        let start = n.last_ip.map(u32::from).filter(|ip| (lo..=hi).contains(ip)).map_or(lo, |ip| ip + 1);
        let size = hi - lo + 1;
        (0..size)
            .map(|k| Ipv4Addr::from(lo + (start - lo + k) % size))
            .find(|ip| !taken.contains(ip))
            .map(|ip| (ip, subnet.prefix))
            .ok_or_else(|| format!("no address left on network {}", n.spec.name))
    }

    /// Hands out the next free address on network `id` (after its last one).
    pub(super) fn allocate_on(&mut self, id: &str) -> Result<(Ipv4Addr, u8), String> {
        let (ip, prefix) = self.peek_on(id)?;
        if let Some(n) = self.networks.get_mut(id) {
            n.last_ip = Some(ip);
        }
        Ok((ip, prefix))
    }

    /// A service's virtual IPs for `spec`: one per network it is on in VIP mode (kept from
    /// `previous` where it stays on the network), none in DNS round-robin mode. Nothing changes
    /// until [`ClusterState::commit_vips`].
    pub(super) fn plan_vips(
        &self,
        spec: &ServiceSpec,
        previous: &BTreeMap<String, Ipv4Addr>,
    ) -> Result<BTreeMap<String, Ipv4Addr>, String> {
        let mut out = BTreeMap::new();
        if spec.endpoint_mode == EndpointMode::Dnsrr {
            if spec.task.ports.iter().any(|p| p.mode == PublishMode::Ingress) {
                return Err("rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode".into());
            }
            return Ok(out);
        }
        for a in &spec.task.networks {
            let vip = match previous.get(&a.target) {
                Some(v) => *v,
                None => self.peek_on(&a.target)?.0,
            };
            out.insert(a.target.clone(), vip);
        }
        Ok(out)
    }

    /// Records the new addresses of `vips` as handed out.
    pub(super) fn commit_vips(&mut self, vips: &BTreeMap<String, Ipv4Addr>, previous: &BTreeMap<String, Ipv4Addr>) {
        for (net, vip) in vips {
            if previous.get(net) != Some(vip)
                && let Some(n) = self.networks.get_mut(net)
            {
                n.last_ip = Some(*vip);
            }
        }
    }

    /// Gives node `node_id` an address on each network of `networks` it has none on.
    pub(super) fn allocate_node_addrs(&mut self, node_id: &str, networks: &[String]) {
        for id in networks {
            if self.networks.get(id).is_none_or(|n| n.node_addrs.contains_key(node_id)) {
                continue;
            }
            if let Ok((ip, _)) = self.allocate_on(id)
                && let Some(n) = self.networks.get_mut(id)
            {
                n.node_addrs.insert(node_id.to_string(), ip);
            }
        }
    }
}

/// Whether a task still holds its addresses: until it has ended (its container then has left the
/// network).
fn holds_address(t: &super::Task) -> bool {
    t.status.state <= TaskState::Running
}
