//! Where a reference's repository really lives: registries configuration in the spirit of
//! podman's registries.conf.
//!
//! ```toml
//! insecure = ["10.0.0.5:5000"]          # plain HTTP / unverified TLS allowed (loopback always is)
//! [[registry]]
//! prefix = "docker.io"                  # domain, or domain/path prefix
//! location = "127.0.0.1:5000"           # replaces the prefix (push and pull)
//! insecure = true
//! mirrors = [{ location = "mirror.local:5000", insecure = true }]   # tried first for pulls
//! blocked = false
//! ```
//!
//! With `prefix = "docker.io"` and `location = "127.0.0.1:5000"`, `docker push strongjz/app`
//! (docker.io/strongjz/app) lands in 127.0.0.1:5000/strongjz/app.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// The host Docker Hub's `docker.io` names really live on.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub insecure: Vec<String>,
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistryEntry>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub prefix: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub mirrors: Vec<Mirror>,
    #[serde(default)]
    pub blocked: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// One place to talk to: a registry host and the repository path on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// host[:port] as used in URLs.
    pub host: String,
    /// Repository path on that host.
    pub repo: String,
    /// Plain HTTP and unverified TLS allowed.
    pub insecure: bool,
    pub mirror: bool,
}

/// Loopback registries need no opt-in, as with Docker.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host_part(host);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` or `[v6]:port` without the port.
fn host_part(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map(|(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
            .unwrap_or(host),
    }
}

/// An insecure-registry entry written as a CIDR (`10.0.0.0/8`), as dockerd's
/// `--insecure-registry` accepts: (network, prefix length).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    let bits = |ip: IpAddr| -> (u128, u32) {
        match ip {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    };
    let ((a, wa), (b, wb)) = (bits(ip), bits(net));
    if wa != wb {
        return false;
    }
    let shift = wa - len as u32;
    shift >= wa || (a >> shift) == (b >> shift)
}

impl RegistriesConfig {
    pub fn from_file(path: &Path) -> Result<RegistriesConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<RegistriesConfig, String> {
        let c: RegistriesConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &c.registries {
            if r.prefix.is_empty() || r.prefix.contains("://") {
                return Err(format!("invalid registry prefix {:?} (want a domain or domain/path)", r.prefix));
            }
            if let Some(l) = &r.location
                && (l.is_empty() || l.contains("://"))
            {
                return Err(format!("invalid registry location {l:?} (want host[:port][/path])"));
            }
        }
        Ok(c)
    }

    fn host_insecure(&self, host: &str) -> bool {
        let ip = host_part(host).parse::<IpAddr>().ok();
        is_loopback_host(host)
            || self
                .insecure
                .iter()
                .any(|i| i == host || matches!((ip, parse_cidr(i)), (Some(ip), Some(net)) if in_cidr(ip, net)))
    }

    /// The endpoints for a repository `domain/path`, mirrors first (pull) then the location.
    /// Err if the configuration blocks it.
    pub fn endpoints(&self, domain: &str, path: &str, for_push: bool) -> Result<Vec<Endpoint>, String> {
        let full = format!("{domain}/{path}");
        let entry = self
            .registries
            .iter()
            .filter(|r| full == r.prefix || full.starts_with(&format!("{}/", r.prefix.trim_end_matches('/'))))
            .max_by_key(|r| r.prefix.len());
        let split = |loc: &str, rest: &str| -> (String, String) {
            let joined = if rest.is_empty() { loc.to_string() } else { format!("{loc}/{rest}") };
            match joined.split_once('/') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (joined, String::new()),
            }
        };
        let mut out = Vec::new();
        match entry {
            Some(e) => {
                if e.blocked {
                    return Err(format!("registry {} is blocked by the registries configuration", e.prefix));
                }
                let rest = full[e.prefix.trim_end_matches('/').len()..].trim_start_matches('/').to_string();
                if !for_push {
                    for m in &e.mirrors {
                        let (host, repo) = split(&m.location, &rest);
                        let insecure = m.insecure || self.host_insecure(&host);
                        out.push(Endpoint { host, repo, insecure, mirror: true });
                    }
                }
                let loc = e.location.clone().unwrap_or_else(|| e.prefix.clone());
                let (mut host, repo) = split(&loc, &rest);
                if host == "docker.io" {
                    host = DOCKER_HUB_HOST.to_string();
                }
                let insecure = e.insecure || self.host_insecure(&host);
                out.push(Endpoint { host, repo, insecure, mirror: false });
            }
            None => {
                let host = if domain == "docker.io" { DOCKER_HUB_HOST.to_string() } else { domain.to_string() };
                let insecure = self.host_insecure(&host);
                out.push(Endpoint { host, repo: path.to_string(), insecure, mirror: false });
            }
        }
        for e in &out {
            if e.repo.is_empty() {
                return Err(format!("registries configuration maps {full} to an empty repository"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_and_mirrors() {
        let c = RegistriesConfig::from_toml(
            r#"
insecure = ["10.1.1.1:5000"]
[[registry]]
prefix = "docker.io"
location = "127.0.0.1:5000"
mirrors = [{ location = "mirror:5000/hub", insecure = true }]
[[registry]]
prefix = "docker.io/secret"
blocked = true
[[registry]]
prefix = "quay.io/team"
location = "10.1.1.1:5000/quay"
"#,
        )
        .unwrap();
        let e = c.endpoints("docker.io", "strongjz/example-httpd", true).unwrap();
        assert_eq!(
            e,
            vec![Endpoint {
                host: "127.0.0.1:5000".into(),
                repo: "strongjz/example-httpd".into(),
                insecure: true,
                mirror: false
            }]
        );
        let e = c.endpoints("docker.io", "library/busybox", false).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].host.as_str(), e[0].repo.as_str(), e[0].mirror), ("mirror:5000", "hub/library/busybox", true));
        assert!(c.endpoints("docker.io", "secret/x", false).is_err());
        let e = c.endpoints("quay.io", "team/app", false).unwrap();
        assert_eq!((e[0].host.as_str(), e[0].repo.as_str(), e[0].insecure), ("10.1.1.1:5000", "quay/app", true));
        // quay.io/teamx is not under quay.io/team
        let e = c.endpoints("quay.io", "teamx/app", false).unwrap();
        assert_eq!((e[0].host.as_str(), e[0].insecure), ("quay.io", false));
        let e = RegistriesConfig::default().endpoints("docker.io", "library/busybox", false).unwrap();
        assert_eq!(e[0].host, DOCKER_HUB_HOST);
    }

    #[test]
    fn loopback() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.5.5.5", "[::1]:5000"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "localhost.evil.com"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn insecure_cidrs() {
        let c = RegistriesConfig { insecure: vec!["10.20.0.0/16".into(), "fd00::/8".into()], ..Default::default() };
        assert!(c.host_insecure("10.20.3.4:5000"));
        assert!(c.host_insecure("10.20.255.1"));
        assert!(!c.host_insecure("10.21.0.1:5000"));
        assert!(c.host_insecure("[fd12::1]:5000"));
        assert!(!c.host_insecure("registry.example:5000"), "names are not in networks");
        assert!(RegistriesConfig { insecure: vec!["0.0.0.0/0".into()], ..Default::default() }.host_insecure("8.8.8.8"));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("host:5000"), None);
    }

    #[test]
    fn hostile_config() {
        for bad in [
            "[[registry]]\nprefix = \"\"",
            "[[registry]]\nprefix=\"a\"\nlocation=\"http://x\"",
            "nope = 1",
            "[[registry]]",
        ] {
            assert!(RegistriesConfig::from_toml(bad).is_err(), "{bad}");
        }
    }
}
