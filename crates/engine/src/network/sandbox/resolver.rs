//! The embedded DNS of user networks: which names each container sees (its networks' members,
//! its own hostname, its legacy links' aliases) rebuilt from the running containers, and the
//! per-network servers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use skiff_net::dns;

use super::super::Topology;
use super::{Inner, NetworkRecord, Networks};

impl Inner {
    /// Rebuilds what the DNS servers answer from the running containers.
    pub(in crate::network) fn refresh_dns(&self) {
        if self.servers.is_empty() {
            return;
        }
        let host = if self.default_dns.is_empty() {
            host_upstreams()
        } else {
            self.default_dns.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()
        };
        let mut zones: HashMap<String, dns::NetworkZone> = HashMap::new();
        for n in self.nets.values().filter(|n| !n.builtin && n.has_bridge()) {
            let upstreams = if n.internal { Vec::new() } else { host.clone() };
            let mut entries = Vec::new();
            // An overlay's cluster-wide names: an entry per address, with every name it has.
            if let Some(names) = self.cluster_names.get(&n.id) {
                let mut by_ip: std::collections::BTreeMap<std::net::Ipv4Addr, Vec<String>> = Default::default();
                for (name, ips) in names {
                    for ip in ips {
                        by_ip.entry(*ip).or_default().push(name.clone());
                    }
                }
                entries.extend(by_ip.into_iter().map(|(ip, names)| dns::Entry { ip, names }));
            }
            zones.insert(n.id.clone(), dns::NetworkZone { entries, upstreams });
        }
        let mut clients = HashMap::new();
        for (cid, l) in &self.live {
            let networks: Vec<String> = l
                .endpoints
                .iter()
                .filter(|e| zones.contains_key(&e.network_id))
                .map(|e| e.network_id.clone())
                .collect();
            let upstreams =
                if l.dns.is_empty() { None } else { Some(l.dns.iter().map(|ip| SocketAddr::new(*ip, 53)).collect()) };
            for e in &l.endpoints {
                let (Some(s), Some(z)) = (&e.live, zones.get_mut(&e.network_id)) else { continue };
                z.entries.push(dns::Entry { ip: s.ip, names: dns_names(cid, &l.name, &e.aliases) });
                clients.insert(
                    (e.network_id.clone(), s.ip),
                    dns::Client {
                        networks: networks.clone(),
                        upstreams: upstreams.clone(),
                        hostname: Some(l.hostname.clone()).filter(|h| !h.is_empty()),
                        links: link_aliases(&e.links),
                    },
                );
            }
        }
        self.directory.replace(zones, clients);
    }
}

impl Networks {
    /// Starts the embedded DNS server of a user network.
    pub(in crate::network) async fn start_dns(&self, _t: &Topology<'_>, rec: &NetworkRecord) {
        if rec.builtin || !rec.has_bridge() {
            return;
        }
        let Some(gw) = rec.gateway else { return };
        let directory = {
            let inner = self.state();
            if inner.servers.contains_key(&rec.id) {
                return;
            }
            inner.directory.clone()
        };
        match dns::DnsServer::start(SocketAddr::new(IpAddr::V4(gw), 53), directory, &rec.id, &rec.bridge).await {
            Ok(s) => {
                // Servers start and stop under the topology lock: none came in between.
                let mut inner = self.state();
                inner.servers.insert(rec.id.clone(), s);
                inner.refresh_dns();
            }
            Err(e) => tracing::warn!(network = %rec.name, "embedded DNS server on {gw}:53: {e}"),
        }
    }
}

/// An endpoint's `target[:alias]` links as alias → target (lower case; the alias defaults to
/// the target's name).
fn link_aliases(links: &[String]) -> HashMap<String, String> {
    links
        .iter()
        .filter_map(|l| {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let target = target.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            (!target.is_empty() && !alias.is_empty()).then(|| (alias.to_ascii_lowercase(), target.to_string()))
        })
        .collect()
}

/// The DNS names a container has on a user network (inspect's `DNSNames`).
pub fn dns_names(container_id: &str, name: &str, aliases: &[String]) -> Vec<String> {
    let mut v = vec![name.to_string()];
    v.extend(aliases.iter().cloned());
    v.push(container_id[..12].to_string());
    v
}

fn host_upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    dns::nameservers(&text).into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
}
