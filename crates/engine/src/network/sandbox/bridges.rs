//! Bridges and the firewall: bringing a network's bridge up (once per daemon) and rewriting
//! the daemon's chains from the networks and published ports.

use skiff_net::firewall::{IngressRule, NetworkRules, PortRule, VipRule};
use std::path::Path;

use skiff_net::link;

use super::super::{NetworkRecord, Networks, Topology};
use super::{io_err, outgoing_of};
use crate::error::{EngineError, Result};

impl Networks {
    /// Host settings every bridge needs: forwarding, and bridged traffic through iptables
    /// (published ports reached from the same bridge, `--icc=false`).
    fn host_sysctls(&self) {
        self.host_sysctls.call_once(Self::set_host_sysctls);
    }

    fn set_host_sysctls() {
        if let Err(e) = link::sysctl("net/ipv4/ip_forward", "1") {
            tracing::warn!("enabling IPv4 forwarding: {e}");
        }
        if !Path::new("/proc/sys/net/bridge").exists() {
            let _ = std::process::Command::new("modprobe")
                .arg("br_netfilter")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Err(e) = link::sysctl("net/bridge/bridge-nf-call-iptables", "1") {
            tracing::warn!(
                "br_netfilter is not available ({e}): containers reaching published ports of their own network and --icc=false may not work"
            );
        }
    }

    /// A network's bridge, brought up first if it is not yet (taking the topology lock).
    pub(in crate::network) async fn bridge_of(&self, rec: &NetworkRecord) -> Result<u32> {
        if let Some(i) = self.state().ready_bridges.get(&rec.bridge) {
            return Ok(*i);
        }
        let t = self.topology().await;
        self.bring_up(&t, rec).await
    }

    /// Creates a network's bridge (if needed) with its gateway address, up.
    pub(in crate::network) async fn bring_up(&self, t: &Topology<'_>, rec: &NetworkRecord) -> Result<u32> {
        if let Some(i) = self.state().ready_bridges.get(&rec.bridge) {
            return Ok(*i);
        }
        self.host_sysctls();
        let gw =
            rec.gateway_net().ok_or_else(|| EngineError::internal(format!("network {} has no gateway", rec.name)))?;
        let mtu = rec.options.get("com.docker.network.driver.mtu").and_then(|m| m.parse().ok()).or(self.cfg.mtu);
        let nl = self.netlink().await?;
        if !rec.own_bridge && nl.index_of(&rec.bridge).await.map_err(io_err)?.is_none() {
            // Not there (any more): the bridge we make is ours to remove. Recorded before it
            // is made, so a crash in between cannot leave a bridge nobody removes.
            let known = self.state().nets.get_mut(&rec.id).map(|known| {
                known.own_bridge = true;
                known.clone()
            });
            if let Some(known) = known {
                self.db.put(super::super::TABLE, &known.id, &known, skiff_image::db::Durability::Sync)?;
            }
        }
        let index = nl.ensure_bridge(&rec.bridge, gw, mtu).await.map_err(io_err)?;
        // Published ports on 127.0.0.1: DNATed packets keep their loopback source on the way
        // to the bridge.
        if let Err(e) = link::sysctl(&format!("net/ipv4/conf/{}/route_localnet", rec.bridge), "1") {
            tracing::warn!(bridge = %rec.bridge, "route_localnet: {e}");
        }
        if rec.is_overlay() {
            self.bring_up_tunnel(t, rec, index).await?;
        }
        self.state().ready_bridges.insert(rec.bridge.clone(), index);
        Ok(index)
    }

    /// Rewrites the firewall chains if the rules changed (always when `force`).
    pub(in crate::network) async fn sync_firewall(&self, force: bool) {
        if !self.cfg.iptables {
            return;
        }
        // Held while applying: applies go in turn, and each renders the state as it is when
        // its turn comes, so the last one applied is never older than a change made before it.
        let mut applied = self.firewall_applied.lock().await;
        let (nets, rules, mesh, vips) = self.firewall_inputs();
        let text = self.firewall.render(&nets, &rules, &mesh, &vips);
        if !force && applied.as_deref() == Some(text.as_str()) {
            return;
        }
        let fw = self.firewall.clone();
        let r = tokio::task::spawn_blocking(move || fw.apply(&nets, &rules, &mesh, &vips)).await;
        match r {
            Ok(Ok(())) => *applied = Some(text),
            Ok(Err(e)) => {
                tracing::error!("applying firewall rules: {e}");
                *applied = None;
            }
            Err(e) => tracing::error!("applying firewall rules: {e}"),
        }
    }

    /// What the firewall chains are made from: the bridge networks, the published ports of
    /// running containers, the routing mesh's ports and the services' virtual IPs.
    fn firewall_inputs(&self) -> (Vec<NetworkRules>, Vec<PortRule>, Vec<IngressRule>, Vec<VipRule>) {
        let inner = self.state();
        let nets: Vec<NetworkRules> = inner
            .nets
            .values()
            .filter(|n| n.has_bridge())
            .filter_map(|n| {
                Some(NetworkRules {
                    bridge: n.bridge.clone(),
                    subnet: n.subnet?,
                    // An overlay's traffic stays on it (bridged between its containers and its
                    // tunnel); nothing is routed in or out through this host.
                    internal: n.internal || n.is_overlay(),
                    icc: n.icc,
                    outgoing: outgoing_of(&n.options),
                })
            })
            .collect();
        let mut rules = Vec::new();
        let mut ids: Vec<&String> = inner.live.keys().collect();
        ids.sort();
        for id in ids {
            let l = &inner.live[id];
            let Some((bridge, ip)) = l.endpoints.iter().find_map(|e| {
                let n = inner.nets.get(&e.network_id)?;
                (!n.internal && !n.is_overlay()).then_some((n.bridge.clone(), e.live.as_ref()?.ip))
            }) else {
                continue;
            };
            for (m, _) in &l.ports {
                rules.push(PortRule {
                    proto: m.proto,
                    host_ip: m.host_ip,
                    host_port: m.host_port,
                    container_ip: ip,
                    container_port: m.container_port,
                    bridge: bridge.clone(),
                });
            }
        }
        let mut mesh: Vec<IngressRule> = Vec::new();
        for (id, ports) in &inner.mesh {
            let Some(n) = inner.nets.get(id) else { continue };
            mesh.extend(ports.iter().map(|p| IngressRule {
                proto: p.proto,
                port: p.port,
                target_port: p.target_port,
                backends: p.backends.clone(),
                bridge: n.bridge.clone(),
            }));
        }
        mesh.sort_by_key(|r| (r.proto, r.port));
        let mut vips: Vec<VipRule> = Vec::new();
        for (id, list) in &inner.vips {
            let Some(n) = inner.nets.get(id) else { continue };
            vips.extend(list.iter().map(|(vip, backends)| VipRule {
                vip: *vip,
                backends: backends.clone(),
                bridge: n.bridge.clone(),
            }));
        }
        vips.sort_by_key(|v| v.vip);
        (nets, rules, mesh, vips)
    }
}
