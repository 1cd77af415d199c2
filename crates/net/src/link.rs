//! Links, addresses and routes over netlink (rtnetlink): bridges on the host, veth pairs whose
//! container end is created directly inside the container's namespace, and the configuration
//! of that end from a thread inside the namespace. No `ip` commands are run.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder};

use crate::ipam::Ipv4Net;
use crate::netns;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: {context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let context = context.into();
    move |source| LinkError::Netlink { context, source }
}

fn is_errno(e: &rtnetlink::Error, code: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -code || m.raw_code() == code)
}

/// A netlink connection in the host's network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

/// The IPv4 addresses an address message carries, with its prefix length.
fn v4_addresses(a: &rtnetlink::packet_route::address::AddressMessage) -> impl Iterator<Item = Ipv4Net> + '_ {
    a.attributes.iter().filter_map(move |attr| match attr {
        rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) => {
            Ipv4Net::new(*ip, a.header.prefix_len).ok()
        }
        _ => None,
    })
}

impl Netlink {
    /// Opens the connection; its task runs on the current tokio runtime.
    pub fn new() -> std::io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut s = self.handle.link().get().match_name(name.to_string()).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(m.header.index)),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(nl(format!("looking up {name}"))(e)),
        }
    }

    /// Creates (or reuses) a bridge with `gateway` (address/prefix) on it, up.
    pub async fn ensure_bridge(&self, name: &str, gateway: Ipv4Net, mtu: Option<u32>) -> Result<u32, LinkError> {
        let index = match self.index_of(name).await? {
            Some(i) => i,
            None => {
                // A fixed random address: otherwise the bridge takes the lowest of its ports'
                // and changes it as containers come and go (stale ARP entries).
                let mut mac: [u8; 6] = rand::random();
                mac[0] = (mac[0] & 0xfe) | 0x02;
                let mut b = LinkBridge::new(name).address(mac.to_vec());
                if let Some(m) = mtu {
                    b = b.mtu(m);
                }
                match self.handle.link().add(b.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::EEXIST) => {}
                    Err(e) => return Err(nl(format!("creating bridge {name}"))(e)),
                }
                self.index_of(name).await?.ok_or_else(|| std::io::Error::other(format!("bridge {name} vanished")))?
            }
        };
        match self.handle.address().add(index, IpAddr::V4(gateway.addr()), gateway.prefix()).execute().await {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("adding {gateway} to {name}"))(e)),
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bringing {name} up")))?;
        Ok(index)
    }

    pub async fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.index_of(name).await? else { return Ok(()) };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(nl(format!("deleting {name}"))(e)),
        }
    }

    /// Puts an existing link (a container's host-side veth) on a bridge, up. Nothing to do if
    /// the link is gone (its namespace went with its container).
    pub async fn attach_to(&self, link: &str, bridge: u32) -> Result<(), LinkError> {
        let Some(index) = self.index_of(link).await? else { return Ok(()) };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(bridge).up().build())
            .execute()
            .await
            .map_err(nl(format!("attaching {link} to its bridge")))
    }

    /// Creates a veth pair: `host` attached to the bridge, `peer` created inside the namespace
    /// at `netns` with the given MAC address (both with `mtu`, if given).
    pub async fn add_veth(
        &self,
        host: &str,
        bridge: u32,
        peer: &str,
        netns: &Path,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<(), LinkError> {
        let ns = std::fs::File::open(netns)?;
        let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .address(mac.to_vec())
            .setns_by_fd(ns.as_raw_fd());
        let mut host_msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth).name(host.to_string());
        if let Some(m) = mtu {
            (peer_msg, host_msg) = (peer_msg.mtu(m), host_msg.mtu(m));
        }
        let msg =
            host_msg.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build()))).controller(bridge).up().build();
        self.handle.link().add(msg).execute().await.map_err(nl(format!("creating veth {host}")))?;
        drop(ns);
        Ok(())
    }

    /// Adds `ip/32` to link `index` (one already there is fine).
    pub async fn add_host_address(&self, index: u32, ip: Ipv4Addr) -> Result<(), LinkError> {
        match self.handle.address().add(index, IpAddr::V4(ip), 32).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl(format!("adding {ip}/32"))(e)),
        }
    }

    /// Removes `ip/32` from link `index` (one not there is fine).
    pub async fn del_host_address(&self, index: u32, ip: Ipv4Addr) -> Result<(), LinkError> {
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
            let is_it = a.header.prefix_len == 32
                && a.attributes.iter().any(|x| {
                    matches!(x, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(v)) if *v == ip)
                });
            if is_it {
                return match self.handle.address().del(a).execute().await {
                    Ok(()) => Ok(()),
                    Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) => Ok(()),
                    Err(e) => Err(nl(format!("removing {ip}/32"))(e)),
                };
            }
        }
        Ok(())
    }

    /// Creates VXLAN link `name` (ID `vni`, tunnels from `local` on UDP `port`, MAC learning on)
    /// as a port of `bridge`, up; one that exists is deleted first, so its forwarding entries
    /// are only those [`Netlink::add_flood_peer`] adds from then on.
    pub async fn recreate_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        bridge: u32,
        mtu: u32,
    ) -> Result<u32, LinkError> {
        self.delete_link(name).await?;
        let msg =
            LinkVxlan::new(name, vni).local(local).port(port).learning(true).mtu(mtu).controller(bridge).up().build();
        self.handle.link().add(msg).execute().await.map_err(nl(format!("creating VXLAN link {name} (ID {vni})")))?;
        self.index_of(name).await?.ok_or_else(|| std::io::Error::other(format!("VXLAN link {name} vanished")).into())
    }

    /// Adds (`add`) or removes a forwarding entry on VXLAN link `index` that sends broadcast
    /// and unknown frames to `peer` too (`bridge fdb append 00:00:00:00:00:00 dst PEER`): each
    /// node's tunnel reaches every other node with tasks on the network.
    pub async fn flood_peer(&self, index: u32, peer: Ipv4Addr, add: bool) -> Result<(), LinkError> {
        use futures_util::StreamExt as _;
        use rtnetlink::packet_core::{
            NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
        };
        use rtnetlink::packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        };
        use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.flags = NeighbourFlags::Own;
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(peer)));
        let (msg, flags) = if add {
            (RouteNetlinkMessage::NewNeighbour(m), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND)
        } else {
            (RouteNetlinkMessage::DelNeighbour(m), NLM_F_REQUEST | NLM_F_ACK)
        };
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let what = if add { "adding" } else { "removing" };
        let mut handle = self.handle.clone();
        let mut response = handle.request(req).map_err(nl(format!("{what} VXLAN peer {peer}")))?;
        while let Some(message) = response.next().await {
            if let NetlinkPayload::Error(err) = message.payload {
                let e = rtnetlink::Error::NetlinkError(err);
                if (add && is_errno(&e, libc::EEXIST)) || (!add && is_errno(&e, libc::ENOENT)) {
                    return Ok(());
                }
                return Err(nl(format!("{what} VXLAN peer {peer}"))(e));
            }
        }
        Ok(())
    }

    /// IPv4 destinations of the host's routes, and its addresses' networks (to avoid subnets
    /// that are in use).
    pub async fn used_networks(&self) -> Result<Vec<Ipv4Net>, LinkError> {
        self.used_networks_except(None).await
    }

    /// The IPv4 addresses on link `index`, with their prefix lengths, in the kernel's order.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, LinkError> {
        let mut out = Vec::new();
        let mut addrs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
            if a.header.index == index {
                out.extend(v4_addresses(&a));
            }
        }
        Ok(out)
    }

    /// [`Netlink::used_networks`] but for those of the link with index `skip` (its own routes
    /// and addresses are no collision for it).
    pub async fn used_networks_except(&self, skip: Option<u32>) -> Result<Vec<Ipv4Net>, LinkError> {
        let mut out = Vec::new();
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
            let prefix = r.header.destination_prefix_length;
            if prefix == 0 {
                continue;
            }
            if skip.is_some() && r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if Some(*i) == skip)) {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Destination(rtnetlink::packet_route::route::RouteAddress::Inet(ip)) = a
                    && let Ok(n) = Ipv4Net::new(*ip, prefix)
                {
                    out.push(n.trunc());
                }
            }
        }
        let mut addrs = self.handle.address().get().execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
            if skip != Some(a.header.index) {
                out.extend(v4_addresses(&a).map(|n| n.trunc()));
            }
        }
        Ok(out)
    }

    /// Names of links whose name starts with `prefix` (cleanup of our veths and bridges).
    pub async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(m) = s.try_next().await.map_err(nl("listing links"))? {
            for a in &m.attributes {
                if let LinkAttribute::IfName(n) = a
                    && n.starts_with(prefix)
                {
                    out.push(n.clone());
                }
            }
        }
        Ok(out)
    }
}

/// What to configure on one interface inside a container's namespace.
#[derive(Debug, Clone)]
pub struct IfaceConfig {
    pub name: String,
    pub addr: Ipv4Net,
    /// Add the default route through this gateway.
    pub default_gateway: Option<Ipv4Addr>,
}

async fn in_ns_connection() -> std::io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn index_in(handle: &Handle, name: &str) -> Result<u32, LinkError> {
    let mut s = handle.link().get().match_name(name.to_string()).execute();
    match s.try_next().await.map_err(nl(format!("looking up {name}")))? {
        Some(m) => Ok(m.header.index),
        None => Err(std::io::Error::other(format!("interface {name} not found")).into()),
    }
}

/// Brings up `lo` and configures interfaces inside the namespace at `netns`.
pub fn configure(netns: &Path, ifaces: Vec<IfaceConfig>) -> Result<(), LinkError> {
    netns::run_in(netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        rt.block_on(async move {
            let h = in_ns_connection().await?;
            let lo = index_in(&h, "lo").await.map_err(std::io::Error::other)?;
            h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(std::io::Error::other)?;
            for i in ifaces {
                let idx = index_in(&h, &i.name).await.map_err(std::io::Error::other)?;
                match h.address().add(idx, IpAddr::V4(i.addr.addr()), i.addr.prefix()).execute().await {
                    Ok(()) => {}
                    Err(e) if is_errno(&e, libc::EEXIST) => {}
                    Err(e) => return Err(std::io::Error::other(format!("adding {} to {}: {e}", i.addr, i.name))),
                }
                h.link()
                    .set(LinkUnspec::new_with_index(idx).up().build())
                    .execute()
                    .await
                    .map_err(|e| std::io::Error::other(format!("bringing {} up: {e}", i.name)))?;
                if let Some(gw) = i.default_gateway {
                    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
                    match h.route().add(route).execute().await {
                        Ok(()) => {}
                        Err(e) if is_errno(&e, libc::EEXIST) => {}
                        Err(e) => return Err(std::io::Error::other(format!("default route via {gw}: {e}"))),
                    }
                }
            }
            Ok(())
        })
    })
    .map_err(LinkError::from)
}

/// Removes an interface inside a namespace (disconnecting a running container).
pub fn remove_in(netns: &Path, name: &str) -> Result<(), LinkError> {
    let name = name.to_string();
    netns::run_in(netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        rt.block_on(async move {
            let h = in_ns_connection().await?;
            let idx = index_in(&h, &name).await.map_err(std::io::Error::other)?;
            h.link().del(idx).execute().await.map_err(std::io::Error::other)
        })
    })
    .map_err(LinkError::from)
}

/// Names of the interfaces inside a namespace (to pick the next `ethN`).
pub fn interfaces_in(netns: &Path) -> Result<Vec<String>, LinkError> {
    netns::run_in(netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
        rt.block_on(async move {
            let h = in_ns_connection().await?;
            let mut out = Vec::new();
            let mut s = h.link().get().execute();
            while let Some(m) = s.try_next().await.map_err(std::io::Error::other)? {
                for a in &m.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        out.push(n.clone());
                    }
                }
            }
            Ok(out)
        })
    })
    .map_err(LinkError::from)
}

/// Sets a sysctl under /proc/sys (e.g. `net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
}

/// Lets a bridge port send a frame back out of the port it came from (a container reaching
/// its own published port through the host).
pub fn set_hairpin(veth: &str) -> std::io::Result<()> {
    std::fs::write(format!("/sys/class/net/{veth}/brport/hairpin_mode"), "1")
}
