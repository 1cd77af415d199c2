//! Listen and advertise addresses as `docker swarm init/join` take them: `host[:port]` or
//! `interface[:port]`, the port defaulting to 2377; an advertise address, when none is given,
//! is the one the system uses towards its default gateway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use skiff_cluster::rpc::DEFAULT_PORT;
use skiff_manager::{Kind, ManagerError};

fn invalid(m: impl Into<String>) -> ManagerError {
    ManagerError::new(Kind::Invalid, m)
}

/// Splits `host[:port]`; the port defaults to `default_port`.
pub fn split(s: &str, default_port: u16) -> Result<(String, u16), ManagerError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(invalid("empty address"));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p.parse::<u16>().map_err(|_| invalid(format!("invalid port in address {s:?}")))?;
            if h.is_empty() {
                return Err(invalid(format!("invalid address {s:?}: no host")));
            }
            Ok((h.to_string(), port))
        }
        _ => Ok((s.to_string(), default_port)),
    }
}

/// The IPv4 address of an interface, if `host` names one (`eth0:2377`, as docker takes it).
fn interface_addr(host: &str) -> Option<Ipv4Addr> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    nix::ifaddrs::getifaddrs()
        .ok()?
        .find_map(|a| (a.interface_name == host).then(|| a.address?.as_sockaddr_in().map(|s| s.ip())).flatten())
}

/// The address the system reaches its default gateway from (no packet is sent).
fn default_route_addr() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let gw = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| u32::from_str_radix(f[2], 16).ok()).flatten()
    })?;
    let gw = Ipv4Addr::from(u32::from_be(gw));
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((gw, DEFAULT_PORT)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// The address to listen on.
pub fn listen(s: &str) -> Result<SocketAddr, ManagerError> {
    let (host, port) = split(if s.is_empty() { "0.0.0.0:2377" } else { s }, DEFAULT_PORT)?;
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => IpAddr::V4(
            interface_addr(&host).ok_or_else(|| invalid(format!("failed to listen on remote API address: {host}")))?,
        ),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The address other nodes reach this one at (`host:port`).
pub fn advertise(s: &str, listen: SocketAddr) -> Result<String, ManagerError> {
    if !s.is_empty() {
        let (host, port) = split(s, listen.port())?;
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                IpAddr::V4(interface_addr(&host).ok_or_else(|| invalid(format!("invalid advertise address {s:?}")))?)
            }
        };
        if ip.is_unspecified() {
            return Err(invalid("advertise address must be a non-zero IP address"));
        }
        return Ok(SocketAddr::new(ip, port).to_string());
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    let ip = default_route_addr()
        .ok_or_else(|| invalid("could not find the system's IP address - specify one with --advertise-addr"))?;
    Ok(SocketAddr::new(ip, listen.port()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_dockers_forms() {
        assert_eq!(split("10.0.0.1", 2377).unwrap(), ("10.0.0.1".into(), 2377));
        assert_eq!(split("10.0.0.1:4567", 2377).unwrap(), ("10.0.0.1".into(), 4567));
        assert_eq!(split("eth0:4567", 2377).unwrap(), ("eth0".into(), 4567));
        assert_eq!(split("[::1]:80", 2377).unwrap(), ("::1".into(), 80));
        for bad in ["", ":80", "10.0.0.1:x", "10.0.0.1:99999"] {
            assert!(split(bad, 2377).is_err(), "{bad:?}");
        }
        let l = listen("127.0.0.1:2400").unwrap();
        assert_eq!(advertise("", l).unwrap(), "127.0.0.1:2400");
        assert_eq!(advertise("127.0.0.2", l).unwrap(), "127.0.0.2:2400");
        assert!(advertise("0.0.0.0:1", l).is_err());
        assert!(listen("no-such-interface0:2377").is_err());
        assert_eq!(listen("lo:2401").unwrap(), "127.0.0.1:2401".parse().unwrap(), "an interface's address");
        assert_eq!(advertise("lo", l).unwrap(), "127.0.0.1:2400");
        assert_eq!(listen("").unwrap(), "0.0.0.0:2377".parse().unwrap());
    }
}
