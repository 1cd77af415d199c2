//! A network as the daemon records it (its driver, addresses, options and allocations), the
//! `network ls` filters over records, and what `network inspect` shows of a member.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use skiff_net::ipam::Ipv4Net;

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
    pub(super) fn taken(&self) -> std::collections::BTreeSet<Ipv4Addr> {
        let mut t: std::collections::BTreeSet<Ipv4Addr> = self.allocations.keys().copied().collect();
        t.extend(self.gateway);
        t.extend(self.aux.values().copied());
        t
    }

    /// The gateway with the subnet's prefix (the bridge's own address).
    pub(super) fn gateway_net(&self) -> Option<Ipv4Net> {
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

fn labels_match(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(filter),
    }
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
