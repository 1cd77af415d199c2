//! Overlay networks on this node, as the swarm's managers allocate them: a bridge per network
//! (`ov-<id>`, holding the node's own address on the network, where its embedded DNS answers)
//! with a VXLAN port (`vx-<id>`, the network's ID, tunnels from the node's data-path address
//! on UDP 4789) whose broadcast and unknown frames go to every other node with tasks on the
//! network; MAC learning does the rest. Tasks' containers join the bridge through veths as on
//! a bridge network, with the address the managers gave the task, and without a default route
//! through it: their way out is the default bridge (`docker_gwbridge` in dockerd).
//!
//! The engine keeps these networks as records of driver `overlay` (so a container's record
//! names them as any network, and they are back after a restart with their tunnels); the
//! swarm's worker says which should exist with [`Networks::sync_overlays`] after each
//! assignment, with the names the embedded DNS answers on each (services, `tasks.NAME`,
//! aliases and task names, cluster-wide).
//!
//! A service in VIP mode has one virtual IP per network: every node holds it as a /32 address
//! of the network's bridge and its firewall sends each connection to it to one of the service's
//! running tasks (`skiff_net::firewall::VipRule`), masqueraded like the mesh's.
//!
//! The ingress network carries the routing mesh: every node has it, and its firewall sends a
//! published port's connections (on any local address) to the service's tasks on the ingress
//! network — wherever they run —, balanced per connection, masqueraded to the node's own
//! address there so replies come back through it (`skiff_net::firewall::IngressRule`; dockerd
//! does this with IPVS, which this kernel lacks).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use skiff_net::ipam::Ipv4Net;

use super::{NetworkRecord, Networks, Topology};
use crate::error::{EngineError, Result};

/// The overlay's MTU: 1500 less VXLAN's 50 bytes of headers.
pub const OVERLAY_MTU: u32 = 1450;
const VXLAN_PORT: u16 = 4789;
const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// An overlay network as this node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    pub id: String,
    pub name: String,
    /// The network's subnet, with its prefix.
    pub subnet: Ipv4Net,
    /// This node's address on it.
    pub local_addr: Ipv4Addr,
    pub vni: u32,
    /// This node's data-path address.
    pub vtep: Ipv4Addr,
    /// The data-path addresses of the other nodes with tasks on it.
    pub peers: Vec<Ipv4Addr>,
    pub internal: bool,
    /// The routing mesh's network.
    pub ingress: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// What the embedded DNS answers on it, besides this node's containers' own names.
    pub names: Vec<(String, Vec<Ipv4Addr>)>,
    /// On the ingress network: the routing mesh's ports.
    pub mesh: Vec<MeshPort>,
    /// Services' virtual IPs on it, each with its running tasks' addresses.
    pub vips: Vec<(Ipv4Addr, Vec<Ipv4Addr>)>,
}

/// A port of the swarm's routing mesh on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPort {
    pub proto: skiff_net::firewall::Proto,
    pub port: u16,
    pub target_port: u16,
    /// Tasks' addresses on the ingress network.
    pub backends: Vec<Ipv4Addr>,
}

/// What the node's VXLAN link of an overlay floods to.
#[derive(Debug, Default, Clone)]
pub(super) struct Tunnel {
    pub(super) index: u32,
    pub(super) peers: BTreeSet<Ipv4Addr>,
    /// The virtual IPs held on the bridge.
    pub(super) vips: BTreeSet<Ipv4Addr>,
}

fn link_names(id: &str) -> (String, String) {
    let short = &id[..id.len().min(12)];
    (format!("ov-{short}"), format!("vx-{short}"))
}

impl OverlaySpec {
    fn record(&self, previous: Option<&NetworkRecord>) -> NetworkRecord {
        let (bridge, _) = link_names(&self.id);
        let mut options = self.options.clone();
        options.insert(VNI_OPTION.into(), self.vni.to_string());
        options.entry(MTU_OPTION.into()).or_insert_with(|| OVERLAY_MTU.to_string());
        NetworkRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            driver: super::NetworkDriver::Overlay,
            created: previous.map_or_else(skiff_common::timefmt::now, |p| p.created.clone()),
            builtin: false,
            bridge,
            own_bridge: true,
            subnet: Some(self.subnet.trunc()),
            gateway: Some(self.local_addr),
            ip_range: None,
            aux: BTreeMap::new(),
            user_subnet: true,
            internal: self.internal,
            attachable: false,
            icc: true,
            labels: self.labels.clone(),
            options,
            last_ip: None,
            allocations: previous.map(|p| p.allocations.clone()).unwrap_or_default(),
            ingress: self.ingress,
            vni: Some(self.vni),
            vtep: Some(self.vtep),
            peers: self.peers.clone(),
        }
    }
}

impl Networks {
    /// Makes this node's overlay networks those of `specs`: new ones made, changed ones
    /// brought in line (peers added and removed, names replaced), and the others removed once
    /// no container uses them.
    pub async fn sync_overlays(&self, specs: Vec<OverlaySpec>) -> Result<()> {
        let t = self.topology().await;
        let wanted: HashSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        let gone: Vec<String> = {
            let mut inner = self.state();
            let unwanted: Vec<String> = inner
                .nets
                .values()
                .filter(|n| n.is_overlay() && !wanted.contains(n.id.as_str()))
                .map(|n| n.id.clone())
                .collect();
            // Those still in use go with their last container (`remove_retired`).
            let (gone, in_use): (Vec<String>, Vec<String>) =
                unwanted.into_iter().partition(|id| inner.members(id).is_empty());
            inner.retired = in_use.into_iter().collect();
            gone
        };
        for id in gone {
            self.remove_overlay(&t, &id).await;
        }
        let mut first_error = None;
        for spec in specs {
            if let Err(e) = self.ensure_overlay(&t, &spec).await {
                tracing::warn!(network = %spec.name, error = %e, "setting up an overlay network");
                first_error.get_or_insert(e);
            }
        }
        self.state().refresh_dns();
        drop(t);
        self.sync_firewall(false).await;
        first_error.map_or(Ok(()), Err)
    }

    async fn ensure_overlay(&self, t: &Topology<'_>, spec: &OverlaySpec) -> Result<()> {
        let (previous, in_use) = {
            let inner = self.state();
            (inner.nets.get(&spec.id).cloned(), !inner.members(&spec.id).is_empty())
        };
        let rec = spec.record(previous.as_ref());
        let moved = previous.as_ref().is_some_and(|p| {
            p.gateway != rec.gateway || p.subnet != rec.subnet || p.vni != rec.vni || p.vtep != rec.vtep
        });
        if moved {
            // Its address, subnet or tunnel changed (the network was made again under the same
            // ID, or the node's address moved): made afresh.
            if in_use {
                return Err(EngineError::invalid(format!(
                    "overlay network {} changed while containers use it here",
                    spec.name
                )));
            }
            self.remove_overlay(t, &spec.id).await;
        }
        if moved || previous.as_ref() != Some(&rec) {
            self.persist(&rec)?;
            self.state().nets.insert(rec.id.clone(), rec.clone());
        }
        let bridge = self.bring_up(t, &rec).await?;
        let mut tunnel = self.state().tunnels.get(&rec.id).cloned().unwrap_or_default();
        let r = self.steer_tunnel(&mut tunnel, bridge, spec).await;
        {
            // What was done is recorded, whether or not all of it could be.
            let mut inner = self.state();
            inner.tunnels.insert(rec.id.clone(), tunnel);
            r?;
            if spec.vips.is_empty() {
                inner.vips.remove(&rec.id);
            } else {
                inner.vips.insert(rec.id.clone(), spec.vips.clone());
            }
            inner.cluster_names.insert(rec.id.clone(), spec.names.clone());
            if spec.mesh.is_empty() {
                inner.mesh.remove(&rec.id);
            } else {
                inner.mesh.insert(rec.id.clone(), spec.mesh.clone());
            }
        }
        self.start_dns(t, &rec).await;
        Ok(())
    }

    /// Brings a VXLAN link's flood list and its bridge's virtual IPs to `spec`'s: what the
    /// managers no longer list goes.
    async fn steer_tunnel(&self, tunnel: &mut Tunnel, bridge: u32, spec: &OverlaySpec) -> Result<()> {
        let nl = self.netlink().await?;
        let want: BTreeSet<Ipv4Addr> = spec.peers.iter().copied().collect();
        for p in want.difference(&tunnel.peers.clone()) {
            nl.flood_peer(tunnel.index, *p, true).await.map_err(EngineError::from_cause)?;
            tunnel.peers.insert(*p);
        }
        for p in tunnel.peers.clone().difference(&want) {
            nl.flood_peer(tunnel.index, *p, false).await.map_err(EngineError::from_cause)?;
            tunnel.peers.remove(p);
        }
        // Virtual IPs: addresses of the bridge (so the node answers for them and its firewall
        // balances them).
        let want: BTreeSet<Ipv4Addr> = spec.vips.iter().map(|(v, _)| *v).collect();
        for v in want.difference(&tunnel.vips.clone()) {
            nl.add_host_address(bridge, *v).await.map_err(EngineError::from_cause)?;
            tunnel.vips.insert(*v);
        }
        for v in tunnel.vips.clone().difference(&want) {
            nl.del_host_address(bridge, *v).await.map_err(EngineError::from_cause)?;
            tunnel.vips.remove(v);
        }
        Ok(())
    }

    /// Makes an overlay's VXLAN link afresh on its bridge (`index`) and floods to its peers:
    /// once per daemon and network, as its bridge comes up.
    pub(super) async fn bring_up_tunnel(&self, _t: &Topology<'_>, rec: &NetworkRecord, index: u32) -> Result<()> {
        let (Some(vni), Some(vtep)) = (rec.vni, rec.vtep) else {
            return Err(EngineError::internal(format!(
                "overlay network {} has no VXLAN ID or local address",
                rec.name
            )));
        };
        let (_, vx) = link_names(&rec.id);
        let nl = self.netlink().await?;
        let vx_index =
            nl.recreate_vxlan(&vx, vni, vtep, VXLAN_PORT, index, OVERLAY_MTU).await.map_err(EngineError::from_cause)?;
        let mut tunnel = Tunnel { index: vx_index, peers: BTreeSet::new(), vips: BTreeSet::new() };
        let mut r = Ok(());
        for p in &rec.peers {
            if let Err(e) = nl.flood_peer(vx_index, *p, true).await {
                r = Err(EngineError::from_cause(e));
                break;
            }
            tunnel.peers.insert(*p);
        }
        self.state().tunnels.insert(rec.id.clone(), tunnel);
        r
    }

    /// Removes overlays the managers dropped whose last container here has just left.
    pub(super) async fn remove_retired(&self, ids: &[String]) {
        let t = self.topology().await;
        for id in ids {
            // Checked again in turn: a sync may have wanted it back meanwhile.
            let still = {
                let inner = self.state();
                inner.retired.contains(id) && inner.members(id).is_empty()
            };
            if still {
                self.remove_overlay(&t, id).await;
            }
        }
    }

    /// Removes an overlay's links, DNS server and record.
    async fn remove_overlay(&self, _t: &Topology<'_>, id: &str) {
        let (rec, server) = {
            let mut inner = self.state();
            let Some(rec) = inner.nets.get(id).cloned() else { return };
            (rec, inner.servers.remove(id))
        };
        if let Some(s) = server {
            s.stop().await;
        }
        if let Ok(nl) = self.netlink().await {
            let (bridge, vx) = link_names(id);
            for link in [vx, bridge] {
                if let Err(e) = nl.delete_link(&link).await {
                    tracing::warn!(network = %rec.name, %link, error = %e, "removing an overlay's link");
                }
            }
        }
        if let Err(e) = self.db.delete(super::TABLE, id) {
            tracing::warn!(network = %rec.name, error = %e, "removing an overlay's record");
        }
        {
            let mut inner = self.state();
            inner.ready_bridges.remove(&rec.bridge);
            inner.tunnels.remove(id);
            inner.cluster_names.remove(id);
            inner.mesh.remove(id);
            inner.vips.remove(id);
            inner.retired.remove(id);
            inner.nets.remove(id);
        }
        self.publish(&rec, "destroy", &[]);
    }
}
