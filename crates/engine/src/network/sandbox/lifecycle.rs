//! The networks' part of the daemon's life: the built-in networks at first start, taking back
//! running containers' sandboxes after a restart (or a crash), and what goes at shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use skiff_net::ipam;
use skiff_net::ports;

use super::super::{NetworkDriver, NetworkRecord, Networks};
use super::{Attached, Live, SandboxFile, SandboxState, io_err};
use crate::error::Result;

impl Networks {
    /// Creates the built-in networks on first start, and the default bridge's record from
    /// `--bip` (or a subnet that collides with nothing on the host).
    pub async fn ensure_builtin(&self) -> Result<()> {
        let t = self.topology().await;
        for (name, driver) in [("host", NetworkDriver::Host), ("none", NetworkDriver::Null)] {
            if !self.state().nets.values().any(|n| n.builtin && n.name == name) {
                let rec = builtin_record(name, driver);
                self.db.put(super::super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Sync)?;
                self.state().nets.insert(rec.id.clone(), rec);
            }
        }
        if self.cfg.bridge_disabled() {
            // `-b none`: no "bridge" network while so started (its record stays on disk for a
            // later start with a bridge).
            self.state().nets.retain(|_, n| !(n.builtin && n.name == "bridge"));
            return Ok(());
        }
        let others: Vec<NetworkRecord> = self.state().nets.values().cloned().collect();
        let existing = others.iter().find(|n| n.builtin && n.name == "bridge").cloned();
        let wanted_subnet = match self.cfg.bip {
            Some(bip) => Some((bip.trunc(), bip.addr())),
            None => self.default_subnet(existing.as_ref(), &others).await?,
        };
        let mut rec = existing.unwrap_or_else(|| builtin_record("bridge", NetworkDriver::Bridge));
        let before = rec.clone();
        if let Some((subnet, gw)) = wanted_subnet {
            if rec.subnet != Some(subnet) {
                rec.last_ip = None;
            }
            rec.subnet = Some(subnet);
            rec.gateway = Some(gw);
        }
        if rec.bridge != self.cfg.default_bridge {
            // Another link than the one we may have made before: ours only if we make it
            // (bring_up below decides).
            rec.own_bridge = false;
        }
        rec.bridge = self.cfg.default_bridge.clone();
        rec.icc = self.cfg.icc;
        rec.options = BTreeMap::from([
            ("com.docker.network.bridge.default_bridge".into(), "true".into()),
            ("com.docker.network.bridge.enable_icc".into(), self.cfg.icc.to_string()),
            ("com.docker.network.bridge.enable_ip_masquerade".into(), "true".into()),
            (
                "com.docker.network.bridge.host_binding_ipv4".into(),
                self.cfg.default_bind_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
            ),
            ("com.docker.network.bridge.name".into(), self.cfg.default_bridge.clone()),
            ("com.docker.network.driver.mtu".into(), self.cfg.mtu.unwrap_or(1500).to_string()),
        ]);
        if rec != before {
            self.db.put(super::super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Sync)?;
        }
        self.state().nets.insert(rec.id.clone(), rec.clone());
        // Up now (as docker0 is): its route claims the subnet, so another daemon starting
        // beside us picks a different one.
        self.bring_up(&t, &rec).await?;
        Ok(())
    }

    /// The default bridge's subnet without `--bip`: the one it had (`None`), unless another
    /// link now holds an overlapping one and no container runs that may have an address in it —
    /// then, as dockerd elects docker0's addresses anew, a free one from the pools.
    async fn default_subnet(
        &self,
        existing: Option<&NetworkRecord>,
        others: &[NetworkRecord],
    ) -> Result<Option<(ipam::Ipv4Net, std::net::Ipv4Addr)>> {
        let nl = self.netlink().await?;
        let index = nl.index_of(&self.cfg.default_bridge).await.map_err(io_err)?;
        let ours_before = existing.is_some_and(|e| e.bridge == self.cfg.default_bridge);
        // A bridge of that name met for the first time that already has an address: its
        // subnet is the default network's, as dockerd takes an existing docker0's. (Picking
        // another and adding it made a bridge that daemons kept killed and started with fresh
        // data roots gather an address per start, until the pools ran out.)
        if !ours_before
            && let Some(index) = index
            && let Some(have) = nl.ipv4_addresses(index).await.map_err(io_err)?.first()
        {
            return Ok(Some((have.trunc(), have.addr())));
        }
        // The bridge's own routes are no collision once it is ours from an earlier start.
        let ours = if ours_before { index } else { None };
        let mut used = nl.used_networks_except(ours).await.map_err(io_err)?;
        if ours_before && let Some(s) = existing.and_then(|e| e.subnet) {
            if !used.iter().any(|u| u.overlaps(&s)) {
                return Ok(None);
            }
            if self.has_sandboxes() {
                tracing::warn!(subnet = %s, "another link holds the default bridge's subnet; kept while containers run on it");
                return Ok(None);
            }
            tracing::warn!(subnet = %s, "another link now holds the default bridge's subnet: picking another");
        }
        used.extend(others.iter().filter(|n| !(n.builtin && n.name == "bridge")).filter_map(|n| n.subnet));
        let s = ipam::pick_subnet(&self.cfg.pools, &used).map_err(io_err)?;
        Ok(Some((s, s.first_host())))
    }

    /// Whether any container's sandbox is recorded (running, or left by a crash).
    fn has_sandboxes(&self) -> bool {
        std::fs::read_dir(&self.netns_dir)
            .map(|d| d.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.')))
            .unwrap_or(false)
    }

    /// After the containers were re-adopted: takes back the sandboxes of running containers
    /// (`running` → name), releases everything else (addresses, namespaces, veths), brings up
    /// the user networks' bridges and DNS servers and rewrites the firewall chains.
    /// Returns what each running container has, to refresh their records.
    ///
    /// `unmanaged`: containers whose records this daemon cannot read; their sandboxes are
    /// kept as they are (the container may still run, with its address and ports).
    pub async fn reconcile(
        &self,
        running: &HashMap<String, String>,
        unmanaged: &HashSet<String>,
    ) -> HashMap<String, Attached> {
        let mut adopted = HashMap::new();
        let entries: Vec<PathBuf> = std::fs::read_dir(&self.netns_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        for p in entries {
            let Some(fname) = p.file_name().and_then(|f| f.to_str()).map(str::to_string) else { continue };
            if fname.starts_with('.') {
                let _ = std::fs::remove_file(&p);
                continue;
            }
            let id = fname.strip_suffix(".json").unwrap_or(&fname).to_string();
            if !seen.insert(id.clone()) || self.state().live.contains_key(&id) {
                continue;
            }
            let file =
                std::fs::read(self.sandbox_file(&id)).ok().and_then(|b| serde_json::from_slice::<SandboxFile>(&b).ok());
            let name = running
                .get(&id)
                .cloned()
                .or_else(|| unmanaged.contains(&id).then(|| file.as_ref().map(|f| f.name.clone()).unwrap_or_default()));
            match (name, file) {
                (Some(name), Some(f)) if self.sandbox_path(&id).exists() => {
                    let attached = self.adopt(&id, name, f);
                    adopted.insert(id, attached);
                }
                _ => self.detach_now(&id).await,
            }
        }
        self.release_orphans();
        // (Not before: a detach above may take it to remove an overlay.)
        let t = self.topology().await;
        // Bridges: every network's.
        let mut up: Vec<NetworkRecord> = self.state().nets.values().filter(|n| n.has_bridge()).cloned().collect();
        up.sort_by(|a, b| a.name.cmp(&b.name));
        for rec in &up {
            if let Err(e) = self.bring_up(&t, rec).await {
                tracing::warn!(network = %rec.name, error = %e, "bringing up the bridge");
            }
            self.start_dns(&t, rec).await;
        }
        // A bridge deleted while we were away (by hand, or by another daemon using its name)
        // was made again above: put the running containers' veths back on it.
        if let Ok(nl) = self.netlink().await {
            let plugs: Vec<(String, u32)> = {
                let inner = self.state();
                inner
                    .live
                    .values()
                    .flat_map(|l| l.endpoints.iter())
                    .filter_map(|e| {
                        let bridge = &inner.nets.get(&e.network_id)?.bridge;
                        Some((e.live.as_ref()?.host_veth.clone(), *inner.ready_bridges.get(bridge)?))
                    })
                    .collect()
            };
            for (veth, index) in plugs {
                if let Err(e) = nl.attach_to(&veth, index).await {
                    tracing::warn!(%veth, bridge = index, error = %e, "re-attaching a veth to its bridge");
                }
            }
        }
        drop(t);
        self.sync_firewall(true).await;
        adopted
    }

    /// Takes back a running container's sandbox as its file describes it: its addresses and
    /// published ports (their sockets bound again).
    fn adopt(&self, id: &str, name: String, f: SandboxFile) -> Attached {
        let mut ports = Vec::new();
        for m in f.ports {
            let hold = match ports::hold(m.proto, m.host_ip, m.host_port) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(container = %id, port = m.host_port, "re-reserving a published port: {e}");
                    None
                }
            };
            ports.push((m, hold));
        }
        let live = Live {
            name,
            sandbox: self.sandbox_path(id),
            endpoints: f.endpoints,
            ports,
            dns: f.dns,
            hostname: f.hostname,
        };
        let attached = Attached {
            sandbox: SandboxState {
                path: live.sandbox.clone(),
                ports: live.ports.iter().map(|(m, _)| m.clone()).collect(),
            },
            endpoints: live.endpoints.clone(),
        };
        let mut inner = self.state();
        for e in &live.endpoints {
            if let (Some(s), Some(n)) = (&e.live, inner.nets.get_mut(&e.network_id)) {
                n.allocations.insert(s.ip, id.to_string());
            }
        }
        inner.live.insert(id.to_string(), live);
        attached
    }

    /// Releases addresses whose owner is not running any more.
    fn release_orphans(&self) {
        let changed: Vec<NetworkRecord> = {
            let mut inner = self.state();
            let live_ids: HashSet<String> = inner.live.keys().cloned().collect();
            let mut changed = Vec::new();
            for n in inner.nets.values_mut() {
                let before = n.allocations.len();
                n.allocations.retain(|_, owner| live_ids.contains(owner));
                if n.allocations.len() != before {
                    changed.push(n.clone());
                }
            }
            changed
        };
        for rec in changed {
            if let Err(e) = self.db.put(super::super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Sync) {
                tracing::warn!(network = %rec.name, error = %e, "persisting released addresses");
            }
        }
    }

    /// At daemon shutdown: stops the DNS servers; with no container running, also removes
    /// the default bridge and the firewall chains (user networks' bridges stay with their
    /// networks).
    pub async fn shutdown(&self) {
        let _t = self.topology().await;
        let (servers, idle, bridge) = {
            let mut inner = self.state();
            let servers: Vec<_> = inner.servers.drain().map(|(_, s)| s).collect();
            // Only a bridge we made: one that was there before us (the administrator's, or
            // another daemon's) stays, as dockerd leaves it.
            let bridge = inner.nets.values().find(|n| n.builtin && n.name == "bridge" && n.own_bridge).cloned();
            (servers, inner.live.is_empty(), bridge)
        };
        for s in servers {
            s.stop().await;
        }
        if !idle {
            return;
        }
        if let Some(mut rec) = bridge
            && let Ok(nl) = self.netlink().await
        {
            match nl.delete_link(&rec.bridge).await {
                // Gone: a link of that name found at the next start is someone else's unless
                // we make it then.
                Ok(()) => {
                    rec.own_bridge = false;
                    self.state().nets.insert(rec.id.clone(), rec.clone());
                    if let Err(e) = self.db.put(super::super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Sync) {
                        tracing::warn!("recording the removal of {}: {e}", rec.bridge);
                    }
                }
                Err(e) => tracing::warn!("removing {}: {e}", rec.bridge),
            }
        }
        if self.cfg.iptables {
            let fw = self.firewall.clone();
            match tokio::task::spawn_blocking(move || fw.remove_all()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("removing firewall chains: {e}"),
                Err(e) => tracing::warn!("removing firewall chains: {e}"),
            }
        }
    }
}

fn builtin_record(name: &str, driver: NetworkDriver) -> NetworkRecord {
    NetworkRecord {
        id: crate::volumes::hex_id(),
        name: name.into(),
        driver,
        created: skiff_common::timefmt::now(),
        builtin: true,
        own_bridge: false,
        bridge: String::new(),
        subnet: None,
        gateway: None,
        ip_range: None,
        aux: BTreeMap::new(),
        user_subnet: false,
        internal: false,
        attachable: false,
        icc: true,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
        last_ip: None,
        allocations: BTreeMap::new(),
        ingress: false,
        vni: None,
        vtep: None,
        peers: Vec::new(),
    }
}
