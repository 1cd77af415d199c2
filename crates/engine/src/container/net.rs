//! Containers on networks: which networks a container is connected to (decided at create,
//! changed by `network connect`/`disconnect`), its sandbox while it runs, and the files that
//! tell the container about its network (/etc/hosts, /etc/resolv.conf).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, EndpointSettings, HostConfig, NetworkingConfig};
use skiff_image::db::Durability;
use skiff_net::ports::{self, Requested};

use super::{Container, ContainerRecord, Containers};
use crate::error::{EngineError, Kind, Result};
use crate::network::sandbox::{AttachRequest, Attached, Endpoint};

/// What `HostConfig.NetworkMode` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The default bridge or a user network (by name or ID).
    Network(String),
    Host,
    None,
    Container(String),
}

pub fn mode_of(hc: &HostConfig) -> Mode {
    match hc.network_mode.as_deref() {
        None | Some("") | Some("default") | Some("bridge") => Mode::Network("bridge".into()),
        Some("host") => Mode::Host,
        Some("none") => Mode::None,
        Some(m) if m.starts_with("container:") => Mode::Container(m["container:".len()..].to_string()),
        Some(other) => Mode::Network(other.to_string()),
    }
}

fn endpoint_from(settings: Option<&EndpointSettings>, legacy_mac: Option<&str>) -> Result<Endpoint> {
    let mut ep = Endpoint::default();
    if let Some(s) = settings {
        ep.aliases = s.aliases.clone().unwrap_or_default().into_iter().filter(|a| !a.is_empty()).collect();
        ep.links = s.links.clone().unwrap_or_default();
        if let Some(ip) = s.ipam_config.as_ref().and_then(|c| c.ipv4_address.as_deref()).filter(|i| !i.is_empty()) {
            ep.ipv4 =
                Some(ip.parse::<Ipv4Addr>().map_err(|_| EngineError::invalid(format!("invalid IPv4 address: {ip}")))?);
        }
        if s.ipam_config.as_ref().and_then(|c| c.ipv6_address.as_deref()).is_some_and(|i| !i.is_empty()) {
            return Err(EngineError::invalid("IPv6 addresses are not supported by skiff yet"));
        }
        ep.mac = s.mac_address.clone().filter(|m| !m.is_empty());
        for ip in s.ipam_config.as_ref().and_then(|c| c.link_local_ips.clone()).unwrap_or_default() {
            ip.parse::<std::net::IpAddr>().map_err(|_| EngineError::invalid(format!("invalid link-local IP: {ip}")))?;
            ep.link_local_ips.push(ip);
        }
        ep.driver_opts = s.driver_opts.clone().unwrap_or_default().into_iter().collect();
    }
    if ep.mac.is_none() {
        ep.mac = legacy_mac.filter(|m| !m.is_empty()).map(str::to_string);
    }
    if let Some(m) = &ep.mac
        && skiff_net::ipam::parse_mac(m).is_none()
    {
        return Err(EngineError::invalid(format!("invalid MAC address: {m}")));
    }
    Ok(ep)
}

/// An overlay network is joined by swarm tasks only, with the address the managers gave them.
fn task_only(net: &crate::network::NetworkRecord, ep: &Endpoint) -> Result<()> {
    if net.is_overlay() && ep.ipv4.is_none() {
        return Err(EngineError::invalid(format!(
            "overlay network {} is joined by swarm services' tasks only (skiff does not attach plain containers to overlays yet)",
            net.name
        )));
    }
    Ok(())
}

impl Containers {
    /// The networks a new container is connected to, from its network mode and
    /// `NetworkingConfig.EndpointsConfig` (the mode's network first).
    pub(crate) async fn endpoints_for_create(
        &self,
        hc: &mut HostConfig,
        nc: Option<&NetworkingConfig>,
        legacy_mac: Option<&str>,
    ) -> Result<Vec<Endpoint>> {
        let configs: HashMap<String, EndpointSettings> =
            nc.and_then(|n| n.endpoints_config.clone()).unwrap_or_default().into_iter().collect();
        let mode = mode_of(hc);
        let Mode::Network(primary) = mode else {
            if legacy_mac.is_some_and(|m| !m.is_empty()) && matches!(mode, Mode::Host | Mode::Container(_)) {
                return Err(EngineError::invalid("conflicting options: mac-address and the network mode"));
            }
            if let Some(k) = configs.keys().next() {
                return Err(EngineError::invalid(format!(
                    "container cannot be connected to network \"{k}\" with network mode {}",
                    hc.network_mode.as_deref().unwrap_or("")
                )));
            }
            return Ok(Vec::new());
        };
        if primary == "bridge" && self.networks.cfg.bridge_disabled() {
            // `-b none`: the default network is loopback only.
            return Ok(Vec::new());
        }
        let net = self.networks.get(&primary).await?;
        if !net.has_bridge() {
            // `--network <id of host or none>`.
            hc.network_mode = Some(net.name.clone());
            return Ok(Vec::new());
        }
        let is_default = net.builtin;
        hc.network_mode = Some(if is_default { "bridge".into() } else { net.name.clone() });
        let primary_key = configs
            .keys()
            .find(|k| {
                k.as_str() == net.name
                    || k.as_str() == net.id
                    || k.as_str() == primary
                    || (is_default && k.as_str() == "default")
            })
            .cloned();
        let mut ep = endpoint_from(primary_key.as_ref().and_then(|k| configs.get(k)), legacy_mac)?;
        if is_default {
            if ep.ipv4.is_some() {
                return Err(EngineError::invalid(
                    "user specified IP address is supported on user defined networks only",
                ));
            }
            if !ep.aliases.is_empty() {
                return Err(EngineError::invalid(
                    "network-scoped alias is supported only for containers in user defined networks",
                ));
            }
        }
        if is_default {
            // Legacy links live in the host config.
            for l in hc.links.clone().unwrap_or_default() {
                let target = l.split(':').next().unwrap_or(&l).trim_start_matches('/');
                self.get(target).map_err(|_| EngineError::invalid(format!("could not get container for {target}")))?;
                if !ep.links.contains(&l) {
                    ep.links.push(l);
                }
            }
        }
        ep.network_id = net.id.clone();
        ep.network_name = net.name.clone();
        task_only(&net, &ep)?;
        let mut out = vec![ep];
        let mut extra: Vec<&String> = configs.keys().filter(|k| Some(*k) != primary_key.as_ref()).collect();
        extra.sort();
        for k in extra {
            let n = self.networks.get(k).await?;
            if !n.has_bridge() || n.builtin {
                return Err(EngineError::invalid(format!(
                    "Container cannot be connected to network endpoints: {primary}, {k}"
                )));
            }
            if out.iter().any(|e| e.network_id == n.id) {
                continue;
            }
            let mut ep = endpoint_from(configs.get(k), None)?;
            ep.network_id = n.id.clone();
            ep.network_name = n.name.clone();
            task_only(&n, &ep)?;
            out.push(ep);
        }
        Ok(out)
    }

    /// Ports to publish: `PortBindings`, and with `-P` every exposed port not bound already.
    pub(crate) fn requested_ports(hc: &HostConfig, config: &ContainerConfig) -> Result<Vec<Requested>> {
        let mut out = Vec::new();
        let mut bound = std::collections::HashSet::new();
        let mut keys: Vec<(String, Vec<(String, String)>)> = hc
            .port_bindings
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let list = v
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| (b.host_ip.unwrap_or_default(), b.host_port.unwrap_or_default()))
                    .collect();
                (k, list)
            })
            .collect();
        keys.sort();
        for (k, list) in keys {
            let r = ports::parse_binding(&k, &list).map_err(|e| EngineError::invalid(e.to_string()))?;
            for x in &r {
                bound.insert((x.proto, x.container_port));
            }
            out.extend(r);
        }
        if hc.publish_all_ports == Some(true) {
            let mut exposed: Vec<String> = config.exposed_ports.clone().unwrap_or_default().into_keys().collect();
            exposed.sort();
            for k in exposed {
                for r in ports::parse_binding(&k, &[]).map_err(|e| EngineError::invalid(e.to_string()))? {
                    if bound.insert((r.proto, r.container_port)) {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Step 0 of a start: the sandbox, when the container is on networks.
    pub(crate) async fn attach_networks(&self, c: &Container) -> Result<Option<Attached>> {
        let rec = c.record();
        if rec.networks.is_empty() {
            return Ok(None);
        }
        let dns =
            rec.host_config.dns.clone().unwrap_or_default().iter().filter_map(|d| d.parse::<IpAddr>().ok()).collect();
        let req = AttachRequest {
            container_id: rec.id.clone(),
            name: rec.name.clone(),
            endpoints: rec.networks.iter().map(|e| Endpoint { live: None, ..e.clone() }).collect(),
            publish: Self::requested_ports(&rec.host_config, &rec.config)?,
            dns,
            hostname: rec.config.hostname.clone().unwrap_or_default(),
        };
        let attached = self.networks.attach(req).await?;
        let a = attached.clone();
        // Lazy is enough: the sandbox file under the exec root is what a restarted daemon
        // trusts.
        self.update(c, Durability::Lazy, move |r| {
            r.networks = a.endpoints;
            r.sandbox = Some(a.sandbox);
        })?;
        Ok(Some(attached))
    }

    /// The container's process is gone: its sandbox goes too.
    pub(crate) async fn detach_networks(&self, c: &Container) {
        let (has, id) = c.with(|r| (r.sandbox.is_some() || r.networks.iter().any(|e| e.live.is_some()), r.id.clone()));
        if !has {
            return;
        }
        self.networks.detach(&id).await;
        let _ = self.update(c, Durability::Lazy, |r| {
            r.sandbox = None;
            for e in &mut r.networks {
                e.live = None;
            }
        });
    }

    /// After re-adoption at daemon start: the sandboxes of running containers are taken
    /// back, everything else is released.
    pub(crate) async fn reconcile_networks(&self) {
        let running: HashMap<String, String> =
            self.all().into_iter().filter(|c| c.status().is_live()).map(|c| (c.id.clone(), c.name())).collect();
        let adopted = self.networks.reconcile(&running, &self.unreadable).await;
        for c in self.all() {
            let a = adopted.get(&c.id).cloned();
            let stale = c.with(|r| r.sandbox.is_some() || r.networks.iter().any(|e| e.live.is_some()));
            if a.is_none() && !stale {
                continue;
            }
            let _ = self.update(&c, Durability::Lazy, move |r| match a {
                Some(a) => {
                    // Keep the configured endpoints (including ones connected while stopped
                    // are not in the sandbox); refresh the live ones.
                    for e in &mut r.networks {
                        e.live = a.endpoints.iter().find(|x| x.network_id == e.network_id).and_then(|x| x.live.clone());
                    }
                    r.sandbox = Some(a.sandbox);
                }
                None => {
                    r.sandbox = None;
                    for e in &mut r.networks {
                        e.live = None;
                    }
                }
            });
        }
    }

    /// `docker network connect`.
    pub async fn connect(
        self: &Arc<Self>,
        net_key: &str,
        container: &str,
        settings: Option<EndpointSettings>,
    ) -> Result<()> {
        let net = self.networks.get(net_key).await?;
        let c = self.get(container)?;
        let _op = c.ops.lock().await;
        let rec = c.record();
        match mode_of(&rec.host_config) {
            Mode::Network(_) => {}
            _ => {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    "container sharing network namespace with another container or host cannot be connected to any other network".to_string(),
                ));
            }
        }
        task_only(&net, &Endpoint::default())?;
        if !net.is_bridge() {
            return Err(EngineError::new(
                Kind::Forbidden,
                "container cannot be disconnected from host network or connected to host network".to_string(),
            ));
        }
        if rec.networks.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::new(
                Kind::Forbidden,
                format!("endpoint with name {} already exists in network {}", rec.name, net.name),
            ));
        }
        let mut ep = endpoint_from(settings.as_ref(), None)?;
        if net.builtin && (ep.ipv4.is_some() || !ep.aliases.is_empty()) {
            return Err(EngineError::invalid(
                "user specified IP address and network-scoped aliases are supported on user defined networks only",
            ));
        }
        ep.network_id = net.id.clone();
        ep.network_name = net.name.clone();
        if rec.sandbox.is_some() && rec.state.status.is_live() {
            ep = self.networks.connect_live(&rec.id, ep).await?;
        }
        self.update(&c, Durability::Sync, move |r| r.networks.push(ep))?;
        Ok(())
    }

    /// `docker network disconnect`.
    pub async fn disconnect(self: &Arc<Self>, net_key: &str, container: &str, _force: bool) -> Result<()> {
        let net = self.networks.get(net_key).await?;
        let c = self.get(container)?;
        let _op = c.ops.lock().await;
        let rec = c.record();
        if !rec.networks.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::new(
                Kind::Forbidden,
                format!("container {} is not connected to network {}", rec.id, net.name),
            ));
        }
        if rec.sandbox.is_some() && rec.state.status.is_live() {
            self.networks.disconnect_live(&rec.id, &net.id).await?;
        }
        // The network mode stays as created (as Docker's): compose disconnects and reconnects
        // to set aliases.
        self.update(&c, Durability::Sync, |r| r.networks.retain(|e| e.network_id != net.id))?;
        Ok(())
    }

    /// /etc/hosts of a container on networks: its own address first, `--add-host`, links.
    pub(crate) fn hosts_file(&self, rec: &ContainerRecord, host_gateway: Option<Ipv4Addr>) -> String {
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for h in rec.host_config.extra_hosts.clone().unwrap_or_default() {
            // `name:ip` (the CLI's form) or `name=ip`.
            let Some((name, ip)) = h.split_once(':').or_else(|| h.split_once('=')) else { continue };
            let ip = if ip == "host-gateway" {
                match host_gateway {
                    Some(g) => g.to_string(),
                    None => continue,
                }
            } else {
                ip.to_string()
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        // Legacy links on the default bridge: `--link name:alias`.
        for e in &rec.networks {
            for l in &e.links {
                let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
                let target = target.trim_start_matches('/');
                let alias = alias.rsplit('/').next().unwrap_or(alias);
                if let Ok(t) = self.get(target) {
                    let ip = t.with(|r| r.networks.iter().find_map(|x| x.live.as_ref().map(|s| s.ip)));
                    if let Some(ip) = ip {
                        let tname = t.name();
                        if alias == tname {
                            hosts.push_str(&format!("{ip}\t{alias} {}\n", &t.id[..12]));
                        } else {
                            hosts.push_str(&format!("{ip}\t{alias} {} {tname}\n", &t.id[..12]));
                        }
                    }
                }
            }
        }
        if let Some(ip) = rec.networks.iter().find_map(|e| e.live.as_ref().map(|s| s.ip)) {
            let host = rec.config.hostname.clone().unwrap_or_default();
            match rec.config.domainname.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => hosts.push_str(&format!("{ip}\t{host}.{d} {host}\n")),
                None => hosts.push_str(&format!("{ip}\t{host}\n")),
            }
        }
        hosts
    }

    /// Whether the container's resolver is the embedded DNS server of a user network (its
    /// gateway), and which.
    pub(crate) fn embedded_dns(&self, rec: &ContainerRecord) -> Option<Ipv4Addr> {
        rec.networks.iter().find(|e| e.network_name != "bridge").and_then(|e| e.live.as_ref()?.gateway)
    }
}
