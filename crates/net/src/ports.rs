//! Published ports: `-p [ip:][hostPort:]containerPort[/proto]` as the API carries them
//! (`PortBindings`), host port allocation (fixed, ranges, random), and availability checks.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};

use serde::{Deserialize, Serialize};

use crate::firewall::Proto;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("invalid port specification: {0:?}")]
    Invalid(String),
    #[error("Bind for {ip}:{port} failed: port is already allocated")]
    Allocated { ip: String, port: u16 },
    #[error("listen {proto} {ip}:{port}: bind: address already in use")]
    InUse { proto: &'static str, ip: String, port: u16 },
    #[error("no free host port in {0}-{1}")]
    Exhausted(u16, u16),
}

/// A port the user asked to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<Ipv4Addr>,
    /// `None`: any free port.
    pub host_ports: Option<(u16, u16)>,
}

/// A published port with its host port decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mapping {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
}

fn port_range(s: &str) -> Result<(u16, u16), PortError> {
    let bad = || PortError::Invalid(s.to_string());
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a == 0 || b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p: u16 = s.parse().map_err(|_| bad())?;
            if p == 0 {
                return Err(bad());
            }
            Ok((p, p))
        }
    }
}

/// Parses one `PortBindings` entry: key `80/tcp`, values (HostIp, HostPort).
pub fn parse_binding(key: &str, bindings: &[(String, String)]) -> Result<Vec<Requested>, PortError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = Proto::parse(proto).ok_or_else(|| PortError::Invalid(key.to_string()))?;
    let (lo, hi) = port_range(port)?;
    let mut out = Vec::new();
    let list: Vec<(String, String)> =
        if bindings.is_empty() { vec![(String::new(), String::new())] } else { bindings.to_vec() };
    for (ip, hp) in list {
        let host_ip = match ip.as_str() {
            "" | "0.0.0.0" => None,
            "::" => continue, // IPv6 publishing is not supported yet; the IPv4 binding covers it
            other => Some(other.parse::<Ipv4Addr>().map_err(|_| PortError::Invalid(format!("{other}:{hp}")))?),
        };
        let host = if hp.is_empty() { None } else { Some(port_range(&hp)?) };
        for (i, cp) in (lo..=hi).enumerate() {
            let host_ports = match host {
                None => None,
                // A container range maps onto a host range of the same size, port by port.
                Some((a, b)) if hi > lo => {
                    if (b - a) != (hi - lo) {
                        return Err(PortError::Invalid(format!("{hp}:{port}")));
                    }
                    Some((a + i as u16, a + i as u16))
                }
                Some(r) => Some(r),
            };
            out.push(Requested { proto, container_port: cp, host_ip, host_ports });
        }
    }
    Ok(out)
}

/// The kernel's ephemeral port range (where random host ports come from).
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A host port reserved for a published port: a socket bound to it (TCP: bound, never
/// listening), so no other program can take the port while it is published. Traffic never
/// reaches it: DNAT rewrites packets before socket lookup.
#[derive(Debug)]
pub struct Hold {
    _fd: Option<OwnedFd>,
}

/// Reserves `port` on `ip` (all addresses when `None`).
pub fn hold(proto: Proto, ip: Option<Ipv4Addr>, port: u16) -> std::io::Result<Hold> {
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
        // No SCTP socket without the sctp module: SCTP ports are published unreserved.
        Proto::Sctp => return Ok(Hold { _fd: None }),
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)?;
    let addr = SockaddrIn::from(SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port));
    bind(fd.as_raw_fd(), &addr)?;
    Ok(Hold { _fd: Some(fd) })
}

/// Decides host ports and reserves them. `taken` holds what this daemon already published
/// (any address conflicts with a specific one on the same port).
pub fn allocate(requested: &[Requested], taken: &HashSet<(Proto, u16)>) -> Result<Vec<(Mapping, Hold)>, PortError> {
    let mut mine: HashSet<(Proto, u16)> = HashSet::new();
    let mut out = Vec::new();
    for r in requested {
        let ip_text = r.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into());
        let (lo, hi) = r.host_ports.unwrap_or_else(ephemeral_range);
        let random = r.host_ports.is_none();
        let start = if random { lo + (rand::random::<u16>() % (hi - lo + 1)) } else { lo };
        let span = (hi - lo) as u32 + 1;
        let mut chosen = None;
        let mut last_err = None;
        for i in 0..span {
            let p = lo + ((start - lo) as u32 + i).rem_euclid(span) as u16;
            if taken.contains(&(r.proto, p)) || mine.contains(&(r.proto, p)) {
                last_err = Some(PortError::Allocated { ip: ip_text.clone(), port: p });
                continue;
            }
            match hold(r.proto, r.host_ip, p) {
                Ok(h) => {
                    chosen = Some((p, h));
                    break;
                }
                Err(_) => {
                    last_err = Some(PortError::InUse { proto: r.proto.as_str(), ip: ip_text.clone(), port: p });
                }
            }
        }
        let Some((p, h)) = chosen else {
            return Err(if lo == hi {
                last_err.unwrap_or(PortError::Exhausted(lo, hi))
            } else {
                PortError::Exhausted(lo, hi)
            });
        };
        mine.insert((r.proto, p));
        out.push((Mapping { proto: r.proto, container_port: r.container_port, host_ip: r.host_ip, host_port: p }, h));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, port: &str) -> Vec<(String, String)> {
        vec![(ip.to_string(), port.to_string())]
    }

    #[test]
    fn parses_bindings() {
        let r = parse_binding("80/tcp", &b("127.0.0.1", "18080")).unwrap();
        assert_eq!(
            r,
            vec![Requested {
                proto: Proto::Tcp,
                container_port: 80,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_ports: Some((18080, 18080))
            }]
        );
        let r = parse_binding("53/udp", &b("", "")).unwrap();
        assert_eq!(r[0].host_ports, None);
        assert_eq!(r[0].proto, Proto::Udp);
        let r = parse_binding("80-81/tcp", &b("", "9080-9081")).unwrap();
        assert_eq!(r.iter().map(|x| x.host_ports.unwrap().0).collect::<Vec<_>>(), vec![9080, 9081]);
        assert!(parse_binding("80/icmp", &[]).is_err());
        assert!(parse_binding("0/tcp", &[]).is_err());
        assert!(parse_binding("80/tcp", &b("not-an-ip", "1")).is_err());
        assert!(parse_binding("80/tcp", &b("", "99999")).is_err());
        assert!(parse_binding("80-82/tcp", &b("", "9000-9001")).is_err());
        assert!(parse_binding("90-80/tcp", &[]).is_err());
    }

    #[test]
    fn allocates_and_refuses_taken_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = l.local_addr().unwrap().port();
        let req = vec![Requested {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_ports: Some((busy, busy)),
        }];
        assert!(matches!(allocate(&req, &HashSet::new()), Err(PortError::InUse { .. })));
        let req = vec![Requested {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_ports: None,
        }];
        let m = allocate(&req, &HashSet::new()).unwrap();
        let port = m[0].0.host_port;
        assert_ne!(port, 0);
        // The port is held while the mapping lives: nobody else can listen there.
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
        drop(m);
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        let taken: HashSet<_> = [(Proto::Tcp, 40123)].into();
        let req =
            vec![Requested { proto: Proto::Tcp, container_port: 80, host_ip: None, host_ports: Some((40123, 40123)) }];
        assert!(matches!(allocate(&req, &taken), Err(PortError::Allocated { .. })));
    }
}
