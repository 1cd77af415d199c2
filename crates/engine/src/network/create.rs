//! `docker network create`: the request, the bridge driver's options, and the plan of the
//! network's addresses (IPAM) checked against the other networks before anything is made.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use skiff_net::ipam::{self, Ipv4Net};

use super::{NetworkRecord, Networks};
use crate::error::{EngineError, Kind, Result};

/// Checks a bridge network's driver options (dockerd's names); returns whether containers on
/// it may talk to each other (`enable_icc`).
fn check_bridge_options(options: &BTreeMap<String, String>) -> Result<bool> {
    let icc = match options.get("com.docker.network.bridge.enable_icc").map(String::as_str) {
        None => true,
        Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(o) => return Err(EngineError::invalid(format!("invalid enable_icc value {o:?}"))),
    };
    if let Some(ip) = options.get("com.docker.network.host_ipv4")
        && ip.parse::<Ipv4Addr>().is_err()
    {
        return Err(EngineError::invalid(format!("invalid com.docker.network.host_ipv4 {ip:?}: an IPv4 address")));
    }
    if let Some(v) = options.get("com.docker.network.bridge.enable_ip_masquerade")
        && !matches!(v.as_str(), "true" | "false")
    {
        return Err(EngineError::invalid(format!("invalid enable_ip_masquerade value {v:?}")));
    }
    if let Some(ip) = options.get("com.docker.network.bridge.host_binding_ipv4")
        && ip.parse::<Ipv4Addr>().is_err()
    {
        return Err(EngineError::invalid(format!("invalid host_binding_ipv4 {ip:?}: an IPv4 address")));
    }
    Ok(icc)
}

/// A request to create a network (the API's body, validated here).
#[derive(Debug, Default, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub driver: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux: BTreeMap<String, String>,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A network's addresses as planned at create.
struct Ipam {
    subnet: Ipv4Net,
    user_subnet: bool,
    gateway: Ipv4Addr,
    ip_range: Option<Ipv4Net>,
    aux: BTreeMap<String, Ipv4Addr>,
}

impl Networks {
    /// `docker network create`.
    pub async fn create(&self, req: CreateRequest) -> Result<NetworkRecord> {
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(EngineError::invalid("network name cannot be empty"));
        }
        // dockerd takes any name that is not blank (spaces included); control characters and
        // '/' (which could never be named in a URL path) are refused.
        if name.chars().any(|c| c.is_control() || c == '/') {
            return Err(EngineError::invalid(format!(
                "invalid network name {name:?}: control characters and '/' are not allowed"
            )));
        }
        match req.driver.as_deref().unwrap_or("bridge") {
            "bridge" | "" => {}
            "host" | "null" => {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("only one instance of \"{}\" network is allowed", req.driver.as_deref().unwrap_or("")),
                ));
            }
            other => return Err(EngineError::not_found(format!("plugin \"{other}\" not found"))),
        }
        if req.enable_ipv6 {
            return Err(EngineError::invalid("IPv6 networks are not supported by skiff yet"));
        }
        let id = crate::volumes::hex_id();
        let t = self.topology().await;
        // Creates are in turn (the topology lock): the names, bridges and subnets checked
        // against here stay as they are until this one is in.
        let others: Vec<NetworkRecord> = self.state().nets.values().cloned().collect();
        if others.iter().any(|n| n.name == name) {
            return Err(EngineError::conflict(format!("network with name {name} already exists")));
        }
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) => {
                if b.is_empty() || b.len() > 15 || b.contains('/') || b.contains(char::is_whitespace) {
                    return Err(EngineError::invalid(format!("invalid bridge name {b:?}")));
                }
                if others.iter().any(|n| &n.bridge == b) {
                    return Err(EngineError::conflict(format!("bridge name {b} is already in use")));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };
        let icc = check_bridge_options(&req.options)?;
        let nl = self.netlink().await?;
        let Ipam { subnet, user_subnet, gateway, ip_range, aux } = self.plan_ipam(&others, &req, nl).await?;
        let own_bridge = nl.index_of(&bridge).await.map_err(EngineError::from_cause)?.is_none();
        let rec = NetworkRecord {
            id: id.clone(),
            name,
            driver: super::NetworkDriver::Bridge,
            created: skiff_common::timefmt::now(),
            builtin: false,
            bridge,
            own_bridge,
            subnet: Some(subnet),
            gateway: Some(gateway),
            ip_range,
            aux,
            user_subnet,
            internal: req.internal,
            attachable: req.attachable,
            icc,
            labels: req.labels,
            options: req.options,
            last_ip: None,
            allocations: BTreeMap::new(),
            ingress: false,
            vni: None,
            vtep: None,
            peers: Vec::new(),
        };
        self.bring_up(&t, &rec).await?;
        if let Err(e) = self.persist(&rec) {
            if rec.own_bridge {
                let _ = nl.delete_link(&rec.bridge).await;
            }
            self.state().ready_bridges.remove(&rec.bridge);
            return Err(e);
        }
        self.state().nets.insert(id.clone(), rec.clone());
        self.start_dns(&t, &rec).await;
        drop(t);
        self.sync_firewall(false).await;
        self.publish(&rec, "create", &[]);
        Ok(rec)
    }

    /// The network's addresses: the requested subnet (or a free one from the pools), gateway,
    /// allocation range and reserved addresses, checked against each other and other networks.
    async fn plan_ipam(
        &self,
        others: &[NetworkRecord],
        req: &CreateRequest,
        nl: &skiff_net::link::Netlink,
    ) -> Result<Ipam> {
        let parse_net = |what: &str, s: &str| -> Result<Ipv4Net> {
            s.parse::<Ipv4Net>().map_err(|_| EngineError::invalid(format!("invalid {what} {s:?}")))
        };
        let (subnet, user_subnet) = match req.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let n = parse_net("subnet", s)?.trunc();
                if let Some(other) = others.iter().find(|o| o.subnet.is_some_and(|x| x.overlaps(&n))) {
                    return Err(EngineError::new(
                        Kind::Forbidden,
                        format!(
                            "invalid pool request: Pool overlaps with other one on this address space ({})",
                            other.name
                        ),
                    ));
                }
                (n, true)
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(EngineError::invalid("no matching subnet for gateway or range"));
                }
                let mut used = nl.used_networks().await.map_err(EngineError::from_cause)?;
                used.extend(others.iter().filter_map(|n| n.subnet));
                (
                    ipam::pick_subnet(&self.cfg.pools, &used)
                        .map_err(|e| EngineError::new(Kind::Forbidden, e.to_string()))?,
                    false,
                )
            }
        };
        let gateway = match req.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => {
                let ip: Ipv4Addr = g.parse().map_err(|_| EngineError::invalid(format!("invalid gateway {g:?}")))?;
                if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
                    return Err(EngineError::invalid(format!("gateway {ip} is not in subnet {subnet}")));
                }
                ip
            }
            None => subnet.first_host(),
        };
        let ip_range = match req.ip_range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let r = parse_net("ip range", r)?.trunc();
                if r.prefix() < subnet.prefix() || !subnet.contains(r.network()) {
                    return Err(EngineError::invalid(format!("ip range {r} is not within subnet {subnet}")));
                }
                Some(r)
            }
            None => None,
        };
        let mut aux = BTreeMap::new();
        for (k, v) in &req.aux {
            let ip: Ipv4Addr =
                v.parse().map_err(|_| EngineError::invalid(format!("invalid auxiliary address {k}={v}")))?;
            if !subnet.contains(ip) {
                return Err(EngineError::invalid(format!("auxiliary address {ip} is not in subnet {subnet}")));
            }
            aux.insert(k.clone(), ip);
        }
        Ok(Ipam { subnet, user_subnet, gateway, ip_range, aux })
    }
}
