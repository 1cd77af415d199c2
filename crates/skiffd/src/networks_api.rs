//! Swarm networks between the Engine API and skiff's cluster: a `network create -d overlay`
//! request as a cluster `NetworkSpec` (what skiff cannot do yet refused with words), a cluster
//! network as the engine's network record the API shows, and an assignment from the managers as
//! the engine's overlay spec.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bollard_stubs::models::NetworkCreateRequest;
use skiff_cluster::rpc::NetworkAssignment;
use skiff_cluster::types::{self as ct};
use skiff_common::timefmt::format_unix_nanos as time;
use skiff_engine::network::{MeshPort, NetworkRecord, OverlaySpec};
use skiff_engine::{EngineError, Result};

fn unsupported(what: &str) -> EngineError {
    EngineError::invalid(format!("{what} (skiff's overlay networks)"))
}

/// A `docker network create -d overlay` request as the cluster keeps it.
pub fn network_spec(req: NetworkCreateRequest) -> Result<ct::NetworkSpec> {
    if req.enable_ipv6.unwrap_or(false) {
        return Err(unsupported("IPv6 is not supported"));
    }
    if req.config_only.unwrap_or(false)
        || req.config_from.as_ref().and_then(|c| c.network.as_ref()).is_some_and(|n| !n.is_empty())
    {
        return Err(unsupported("config-only networks are not supported"));
    }
    let ipam = req.ipam.unwrap_or_default();
    if ipam.driver.as_deref().is_some_and(|d| !d.is_empty() && d != "default") {
        return Err(EngineError::not_found(format!("plugin \"{}\" not found", ipam.driver.unwrap_or_default())));
    }
    let configs = ipam.config.unwrap_or_default();
    if configs.len() > 1 {
        return Err(unsupported("one subnet per network is supported"));
    }
    let (mut subnet, mut gateway) = (None, None);
    if let Some(c) = configs.into_iter().next() {
        if c.ip_range.as_deref().is_some_and(|r| !r.is_empty())
            || c.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(unsupported("--ip-range and --aux-address are not supported"));
        }
        if let Some(s) = c.subnet.filter(|s| !s.is_empty()) {
            subnet = Some(ct::Subnet::parse(&s).map_err(EngineError::invalid)?);
        }
        if let Some(g) = c.gateway.filter(|g| !g.is_empty()) {
            let ip: Ipv4Addr = g.parse().map_err(|_| EngineError::invalid(format!("invalid gateway {g}")))?;
            gateway = Some(ip);
        }
    }
    if gateway.is_some() && subnet.is_none() {
        return Err(EngineError::invalid("a gateway needs a subnet"));
    }
    Ok(ct::NetworkSpec {
        name: req.name,
        labels: req.labels.unwrap_or_default().into_iter().collect(),
        options: req.options.unwrap_or_default().into_iter().collect(),
        attachable: req.attachable.unwrap_or(false),
        internal: req.internal.unwrap_or(false),
        ingress: req.ingress.unwrap_or(false),
        subnet,
        gateway,
    })
}

/// A cluster network as the API shows it (through the engine's record type).
pub fn network_record(n: &ct::Network) -> NetworkRecord {
    let mut options = n.spec.options.clone();
    options.insert("com.docker.network.driver.overlay.vxlanid_list".into(), n.vni.to_string());
    NetworkRecord {
        id: n.id.clone(),
        name: n.spec.name.clone(),
        driver: skiff_engine::network::NetworkDriver::Overlay,
        created: time(n.created_at),
        builtin: false,
        bridge: String::new(),
        own_bridge: false,
        subnet: n.subnet.and_then(|s| skiff_engine::network::ipv4_net(s.addr, s.prefix)),
        gateway: n.gateway,
        ip_range: None,
        aux: BTreeMap::new(),
        user_subnet: n.spec.subnet.is_some(),
        internal: n.spec.internal,
        attachable: n.spec.attachable,
        icc: true,
        labels: n.spec.labels.clone(),
        options,
        last_ip: None,
        allocations: BTreeMap::new(),
        ingress: n.spec.ingress,
        vni: Some(n.vni),
        vtep: None,
        peers: Vec::new(),
    }
}

/// What the managers sent for one network, as the engine sets it up.
pub fn overlay_spec(a: &NetworkAssignment) -> std::result::Result<OverlaySpec, String> {
    let ip = |s: &str| s.parse::<Ipv4Addr>().map_err(|_| format!("network {}: bad node address {s:?}", a.name));
    let subnet = skiff_engine::network::ipv4_net(a.subnet.addr, a.subnet.prefix)
        .ok_or_else(|| format!("network {}: bad subnet {}", a.name, a.subnet))?;
    Ok(OverlaySpec {
        id: a.id.clone(),
        name: a.name.clone(),
        subnet,
        local_addr: a.local_addr,
        vni: a.vni,
        vtep: ip(&a.vtep)?,
        peers: a.peers.iter().map(|p| ip(p)).collect::<std::result::Result<_, _>>()?,
        internal: a.internal,
        ingress: a.ingress,
        labels: a.labels.clone(),
        options: a.options.clone(),
        names: a.names.clone(),
        mesh: a
            .ingress_ports
            .iter()
            .map(|p| {
                let proto = skiff_net::firewall::Proto::parse(&p.protocol)
                    .ok_or_else(|| format!("network {}: bad protocol {:?}", a.name, p.protocol))?;
                Ok(MeshPort { proto, port: p.published_port, target_port: p.target_port, backends: p.backends.clone() })
            })
            .collect::<std::result::Result<_, String>>()?,
        vips: a.vips.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> NetworkCreateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_requests_are_read_or_refused_with_words() {
        let s = network_spec(req(serde_json::json!({
            "Name": "front", "Driver": "overlay", "Attachable": true, "Labels": {"a": "b"},
            "IPAM": {"Config": [{"Subnet": "10.20.0.0/24", "Gateway": "10.20.0.254"}]}
        })))
        .unwrap();
        assert_eq!((s.name.as_str(), s.attachable, s.labels["a"].as_str()), ("front", true, "b"));
        assert_eq!(s.subnet.unwrap().to_string(), "10.20.0.0/24");
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 20, 0, 254)));
        for bad in [
            serde_json::json!({"Name": "x", "EnableIPv6": true}),
            serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "IPRange": "10.0.0.0/25"}]}}),
            serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.1/24"}]}}),
            serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}}),
            serde_json::json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24"}, {"Subnet": "10.1.0.0/24"}]}}),
            serde_json::json!({"Name": "x", "IPAM": {"Driver": "weird"}}),
        ] {
            assert!(network_spec(req(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_assignment_becomes_the_engines_spec() {
        let a = NetworkAssignment {
            id: "n1".into(),
            name: "front".into(),
            subnet: ct::Subnet::parse("10.0.1.0/24").unwrap(),
            vni: 4097,
            internal: false,
            ingress: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            local_addr: Ipv4Addr::new(10, 0, 1, 4),
            vtep: "192.0.2.1".into(),
            peers: vec!["192.0.2.2".into()],
            names: vec![("web".into(), vec![Ipv4Addr::new(10, 0, 1, 2)])],
            ingress_ports: Vec::new(),
            vips: Vec::new(),
        };
        let s = overlay_spec(&a).unwrap();
        assert_eq!(
            (s.vtep, s.peers.clone(), s.subnet.to_string()),
            (Ipv4Addr::new(192, 0, 2, 1), vec![Ipv4Addr::new(192, 0, 2, 2)], "10.0.1.0/24".to_string())
        );
        let bad = NetworkAssignment { peers: vec!["nope".into()], ..a };
        assert!(overlay_spec(&bad).unwrap_err().contains("bad node address"));
    }
}
