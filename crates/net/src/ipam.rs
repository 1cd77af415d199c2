//! IPv4 address management: subnets, picking a subnet that collides with nothing on the host,
//! and handing out addresses so that none is given twice.
//!
//! Allocation is serial (the next free address after the last one handed out, wrapping
//! around), as Docker's IPAM does: a released address is not reused at once, so a stale
//! connection or ARP entry never reaches a new container by accident.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid CIDR address: {0}")]
    Cidr(String),
    #[error("no available IPv4 addresses on network {0}")]
    Exhausted(String),
    #[error("address {ip} is not in subnet {subnet}")]
    OutOfRange { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    )]
    NoPool,
}

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, IpamError> {
        if prefix > 32 {
            return Err(IpamError::Cidr(format!("{addr}/{prefix}")));
        }
        Ok(Ipv4Net { addr, prefix })
    }
    /// The address as written (may have host bits, e.g. a bridge's `172.18.0.1/16`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// The same network with host bits cleared.
    pub fn trunc(&self) -> Ipv4Net {
        Ipv4Net { addr: self.network(), prefix: self.prefix }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
    /// The first usable host address (conventionally the gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).saturating_add(1))
    }
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.split_once('/').ok_or_else(|| IpamError::Cidr(s.to_string()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| IpamError::Cidr(s.to_string()))?;
        let prefix: u8 = p.parse().map_err(|_| IpamError::Cidr(s.to_string()))?;
        Ipv4Net::new(addr, prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The pools default networks are carved from (as Docker's defaults, leaving 172.17/16 to a
/// docker0 that may run beside us).
pub fn default_pools() -> Vec<(Ipv4Net, u8)> {
    let mut v = Vec::new();
    for b in 18..=31u8 {
        v.push((Ipv4Net { addr: Ipv4Addr::new(172, b, 0, 0), prefix: 16 }, 16));
    }
    v.push((Ipv4Net { addr: Ipv4Addr::new(192, 168, 0, 0), prefix: 16 }, 20));
    v
}

/// The first subnet of `size` bits from the pools that overlaps nothing in `used`.
pub fn pick_subnet(pools: &[(Ipv4Net, u8)], used: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    for (pool, size) in pools {
        let step = 1u64 << (32 - *size as u32);
        let mut cur = u32::from(pool.network()) as u64;
        let end = cur + pool.size();
        while cur + step <= end {
            let cand = Ipv4Net { addr: Ipv4Addr::from(cur as u32), prefix: *size };
            if !used.iter().any(|u| u.overlaps(&cand)) {
                return Ok(cand);
            }
            cur += step;
        }
    }
    Err(IpamError::NoPool)
}

/// Hands out the next free address after `last` (serially), skipping the network and broadcast
/// addresses and everything in `taken` (gateway and allocated addresses).
pub fn allocate(
    subnet: &Ipv4Net,
    range: Option<&Ipv4Net>,
    taken: &BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    let pool = range.copied().unwrap_or(*subnet);
    let lo = u32::from(pool.network()).max(u32::from(subnet.network()) + 1);
    let hi = u32::from(pool.broadcast()).min(u32::from(subnet.broadcast()).saturating_sub(1));
    if lo > hi {
        return Err(IpamError::Exhausted(subnet.to_string()));
    }
    let span = (hi - lo) as u64 + 1;
    let start = match last.map(u32::from) {
        Some(l) if l >= lo && l < hi => l + 1,
        _ => lo,
    };
    for i in 0..span {
        let cand = lo + (((start - lo) as u64 + i) % span) as u32;
        let ip = Ipv4Addr::from(cand);
        if !taken.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(IpamError::Exhausted(subnet.to_string()))
}

/// Checks a requested static address.
pub fn reserve(subnet: &Ipv4Net, ip: Ipv4Addr, taken: &BTreeSet<Ipv4Addr>) -> Result<(), IpamError> {
    if !subnet.contains(ip) || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(IpamError::OutOfRange { ip, subnet: *subnet });
    }
    if taken.contains(&ip) {
        return Err(IpamError::InUse(ip));
    }
    Ok(())
}

/// A locally administered MAC derived from the address (Docker's 02:42:<ip> scheme).
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().ok()?;
    let mac: [u8; 6] = parts.try_into().ok()?;
    // Unicast only.
    if mac[0] & 1 == 1 { None } else { Some(mac) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_math() {
        let n: Ipv4Net = "172.18.5.9/16".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(172, 18, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(172, 18, 255, 255));
        assert_eq!(n.first_host(), Ipv4Addr::new(172, 18, 0, 1));
        assert!(n.contains(Ipv4Addr::new(172, 18, 200, 1)));
        assert!(!n.contains(Ipv4Addr::new(172, 19, 0, 1)));
        for bad in ["", "1.2.3.4", "1.2.3.4/33", "1.2.3/8", "a.b.c.d/8", "1.2.3.4/-1"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_a_free_subnet() {
        let used =
            vec!["172.17.0.0/16".parse().unwrap(), "172.18.0.0/16".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        assert_eq!(pick_subnet(&default_pools(), &used).unwrap().to_string(), "172.19.0.0/16");
        let all: Vec<Ipv4Net> = vec!["172.16.0.0/12".parse().unwrap(), "192.168.0.0/16".parse().unwrap()];
        assert_eq!(pick_subnet(&default_pools(), &all), Err(IpamError::NoPool));
    }

    #[test]
    fn serial_allocation_never_repeats_until_wrapping() {
        let n: Ipv4Net = "10.9.0.0/29".parse().unwrap(); // .1-.6 usable
        let mut taken: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(10, 9, 0, 1)].into();
        let a = allocate(&n, None, &taken, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        taken.insert(a);
        let b = allocate(&n, None, &taken, Some(a)).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 9, 0, 3));
        // .2 released: the next one is still .4, not .2.
        taken.remove(&a);
        taken.insert(b);
        assert_eq!(allocate(&n, None, &taken, Some(b)).unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        for i in 4..=6 {
            taken.insert(Ipv4Addr::new(10, 9, 0, i));
        }
        assert_eq!(allocate(&n, None, &taken, Some(Ipv4Addr::new(10, 9, 0, 6))).unwrap(), Ipv4Addr::new(10, 9, 0, 2));
        taken.insert(Ipv4Addr::new(10, 9, 0, 2));
        assert!(allocate(&n, None, &taken, None).is_err());
    }

    #[test]
    fn ranges_and_reservations() {
        let n: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        let r: Ipv4Net = "10.1.5.0/24".parse().unwrap();
        let taken = BTreeSet::new();
        assert_eq!(allocate(&n, Some(&r), &taken, None).unwrap(), Ipv4Addr::new(10, 1, 5, 0));
        assert!(reserve(&n, Ipv4Addr::new(10, 2, 0, 1), &taken).is_err());
        assert!(reserve(&n, Ipv4Addr::new(10, 1, 0, 0), &taken).is_err());
        assert!(reserve(&n, Ipv4Addr::new(10, 1, 0, 9), &taken).is_ok());
        assert_eq!(mac_string(&mac_for(Ipv4Addr::new(172, 18, 0, 2))), "02:42:ac:12:00:02");
        assert!(parse_mac("02:42:ac:12:00:02").is_some());
        assert!(parse_mac("01:00:5e:00:00:01").is_none());
        assert!(parse_mac("zz").is_none());
    }
}
