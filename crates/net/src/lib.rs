//! skiff-net: container networking on one host.
//!
//! Network namespaces pinned per container ([`netns`]), bridges and veth pairs over netlink
//! ([`link`]), address management ([`ipam`]), the daemon's own iptables chains for NAT,
//! isolation and published ports ([`firewall`]), port specs ([`ports`]), and the embedded DNS
//! server of user-defined networks ([`dns`]). It knows nothing of images or HTTP.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod ports;
