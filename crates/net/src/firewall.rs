//! The daemon's iptables chains (nf_tables backend through `iptables`, as Docker does).
//!
//! Three chains, named from a per-daemon prefix so that several daemons (and a dockerd, with
//! its DOCKER chains) coexist:
//! - `nat <P>-DNAT` — published ports (`DNAT` to the container), jumped to from PREROUTING and
//!   OUTPUT for local destinations (OUTPUT too, so 127.0.0.1 works: the bridge has
//!   `route_localnet`);
//! - `nat <P>-POST` — masquerading of outbound traffic, of loopback-sourced traffic into a
//!   bridge, and of hairpin traffic (a container reaching its own published port);
//! - `filter <P>-FWD` — isolation between networks, internal networks, inter-container policy
//!   and accepting published ports, jumped to first from FORWARD.
//!
//! The chains are always rewritten whole from the daemon's state (one `iptables-restore
//! --noflush`), so reconciling after a restart or a crash is the same operation as any update.

use std::fmt::Write as _;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::ipam::Ipv4Net;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" | "" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

/// A bridge network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    /// Inter-container communication on this bridge.
    pub icc: bool,
    /// Outgoing traffic: masqueraded (the default), sent from this address
    /// (`com.docker.network.host_ipv4`), or neither (`enable_ip_masquerade=false`).
    pub outgoing: Outgoing,
}

/// How a network's traffic leaving the host is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outgoing {
    #[default]
    Masquerade,
    Snat(Ipv4Addr),
    AsIs,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    /// `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    pub bridge: String,
}

/// A port of the swarm's routing mesh: published on every local address, balanced over
/// backends (tasks' addresses on the ingress overlay, whose bridge is `bridge`) per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub proto: Proto,
    pub port: u16,
    pub target_port: u16,
    pub backends: Vec<Ipv4Addr>,
    pub bridge: String,
}

/// A swarm service's virtual IP on an overlay (an address of the overlay's bridge on every
/// node): connections to it go to one of its backends, balanced per connection, whatever the
/// protocol and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipRule {
    pub vip: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
    pub bridge: String,
}

/// DNAT rules spreading connections over `backends`: the k-th of n takes 1/(n-k) of what the
/// ones before left (each connection once, by conntrack). `matcher` selects the traffic,
/// `port` (if any) is the backends'.
fn balance(s: &mut String, chain: &str, matcher: &str, backends: &[Ipv4Addr], port: Option<u16>) {
    let n = backends.len();
    for (k, ip) in backends.iter().enumerate() {
        let pick = if k + 1 < n {
            format!("-m statistic --mode random --probability {:.8} ", 1.0 / (n - k) as f64)
        } else {
            String::new()
        };
        let to = port.map_or_else(|| ip.to_string(), |p| format!("{ip}:{p}"));
        let _ = writeln!(s, "-A {chain} {matcher} {pick}-j DNAT --to-destination {to}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

#[derive(Debug, Clone)]
pub struct Firewall {
    prefix: String,
}

fn run(args: &[&str]) -> Result<bool, FirewallError> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| FirewallError::Spawn { cmd: format!("iptables {}", args.join(" ")), source })?;
    Ok(out.status.success())
}

fn run_checked(args: &[&str]) -> Result<(), FirewallError> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| FirewallError::Spawn { cmd: format!("iptables {}", args.join(" ")), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Failed {
            cmd: format!("iptables {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Firewall {
    /// `prefix` names the chains (`SKIFF` → `SKIFF-DNAT`, …); at most 23 characters.
    pub fn new(prefix: &str) -> Firewall {
        let prefix: String =
            prefix.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(23).collect();
        Firewall { prefix }
    }

    pub fn chain(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// The jump rules from the built-in chains: (table, chain, rule, insert first).
    fn jumps(&self) -> Vec<(&'static str, &'static str, Vec<String>, bool)> {
        let dnat = self.chain("DNAT");
        let local = |c: &str| {
            vec!["-m".into(), "addrtype".into(), "--dst-type".into(), "LOCAL".into(), "-j".into(), c.to_string()]
        };
        vec![
            ("nat", "PREROUTING", local(&dnat), false),
            ("nat", "OUTPUT", local(&dnat), false),
            ("nat", "POSTROUTING", vec!["-j".into(), self.chain("POST")], false),
            ("filter", "FORWARD", vec!["-j".into(), self.chain("FWD")], true),
        ]
    }

    /// The whole desired content of our chains, in iptables-restore format.
    pub fn render(
        &self,
        nets: &[NetworkRules],
        ports: &[PortRule],
        ingress: &[IngressRule],
        vips: &[VipRule],
    ) -> String {
        let (dnat, post, fwd) = (self.chain("DNAT"), self.chain("POST"), self.chain("FWD"));
        let mut s = String::new();
        let _ = writeln!(s, "*nat\n:{dnat} - [0:0]\n:{post} - [0:0]");
        // The routing mesh, and services' virtual IPs: replies come back through this node,
        // whose address on the overlay the connections are masqueraded to.
        for r in ingress {
            let proto = r.proto.as_str();
            balance(
                &mut s,
                &dnat,
                &format!("-p {proto} -m {proto} --dport {}", r.port),
                &r.backends,
                Some(r.target_port),
            );
        }
        for v in vips {
            balance(&mut s, &dnat, &format!("-d {}/32", v.vip), &v.backends, None);
        }
        let mut meshes: Vec<&str> = ingress.iter().map(|r| r.bridge.as_str()).collect();
        meshes.sort_unstable();
        meshes.dedup();
        let mut balanced: Vec<&str> = meshes.iter().copied().chain(vips.iter().map(|v| v.bridge.as_str())).collect();
        balanced.sort_unstable();
        balanced.dedup();
        for br in &balanced {
            let _ = writeln!(s, "-A {post} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE");
        }
        for p in ports {
            let dst = p.host_ip.map(|ip| format!("-d {ip}/32 ")).unwrap_or_default();
            let proto = p.proto.as_str();
            let _ = writeln!(
                s,
                "-A {dnat} {dst}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}",
                p.host_port, p.container_ip, p.container_port
            );
        }
        for n in nets {
            let subnet = n.subnet.trunc();
            match n.outgoing {
                _ if n.internal => {}
                Outgoing::Masquerade => {
                    let _ = writeln!(s, "-A {post} -s {subnet} ! -o {} -j MASQUERADE", n.bridge);
                }
                Outgoing::Snat(ip) => {
                    let _ = writeln!(s, "-A {post} -s {subnet} ! -o {} -j SNAT --to-source {ip}", n.bridge);
                }
                Outgoing::AsIs => {}
            }
            // Connections from the host itself (127.0.0.1 and the host's addresses) to a
            // published port, and hairpin connections (a container to a published port of its
            // own network): replies must come back through the host to be un-NATed.
            let _ = writeln!(s, "-A {post} -o {} -m addrtype --src-type LOCAL -j MASQUERADE", n.bridge);
            let _ = writeln!(s, "-A {post} -s {subnet} -o {} -m conntrack --ctstate DNAT -j MASQUERADE", n.bridge);
        }
        let _ = writeln!(s, "COMMIT\n*filter\n:{fwd} - [0:0]");
        // Into the mesh only what was DNATed to it, and back out its replies (before the
        // isolation below, which keeps an overlay's other traffic on it).
        for br in &meshes {
            let _ = writeln!(
                s,
                "-A {fwd} -o {br} -m conntrack --ctstate DNAT -j ACCEPT\n-A {fwd} -i {br} ! -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            );
        }
        for a in nets {
            for b in nets {
                if a.bridge != b.bridge {
                    let _ = writeln!(s, "-A {fwd} -i {} -o {} -j DROP", a.bridge, b.bridge);
                }
            }
        }
        for n in nets.iter().filter(|n| n.internal) {
            let _ =
                writeln!(s, "-A {fwd} -i {br} ! -o {br} -j DROP\n-A {fwd} -o {br} ! -i {br} -j DROP", br = n.bridge);
        }
        for n in nets {
            let _ = writeln!(s, "-A {fwd} -o {} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", n.bridge);
        }
        for p in ports {
            let proto = p.proto.as_str();
            let _ = writeln!(
                s,
                "-A {fwd} -d {}/32 ! -i {br} -o {br} -p {proto} -m {proto} --dport {} -j ACCEPT",
                p.container_ip,
                p.container_port,
                br = p.bridge
            );
        }
        for n in nets.iter().filter(|n| !n.internal) {
            let _ = writeln!(s, "-A {fwd} -i {br} ! -o {br} -j ACCEPT", br = n.bridge);
        }
        for n in nets {
            let verdict = if n.icc { "ACCEPT" } else { "DROP" };
            let _ = writeln!(s, "-A {fwd} -i {br} -o {br} -j {verdict}", br = n.bridge);
        }
        s.push_str("COMMIT\n");
        s
    }

    /// Rewrites our chains to the given state and makes sure the built-in chains jump to them.
    pub fn apply(
        &self,
        nets: &[NetworkRules],
        ports: &[PortRule],
        ingress: &[IngressRule],
        vips: &[VipRule],
    ) -> Result<(), FirewallError> {
        let input = self.render(nets, ports, ingress, vips);
        let mut child = Command::new("iptables-restore")
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FirewallError::Spawn { cmd: "iptables-restore".into(), source })?;
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(input.as_bytes())
            .map_err(|source| FirewallError::Spawn { cmd: "iptables-restore".into(), source })?;
        let out = child
            .wait_with_output()
            .map_err(|source| FirewallError::Spawn { cmd: "iptables-restore".into(), source })?;
        if !out.status.success() {
            return Err(FirewallError::Failed {
                cmd: "iptables-restore".into(),
                stderr: format!("{}\n{input}", String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        for (table, chain, rule, first) in self.jumps() {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            let mut check = vec!["-t", table, "-C", chain];
            check.extend(&rule);
            if !run(&check)? {
                let mut add = vec!["-t", table, if first { "-I" } else { "-A" }, chain];
                if first {
                    add.push("1");
                }
                add.extend(&rule);
                run_checked(&add)?;
            }
        }
        Ok(())
    }

    /// Removes our jumps and chains (daemon shutdown with nothing running, or tests).
    pub fn remove_all(&self) -> Result<(), FirewallError> {
        for (table, chain, rule, _) in self.jumps() {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            let mut del = vec!["-t", table, "-D", chain];
            del.extend(&rule);
            // Delete every copy (a crash between insertions could leave two).
            while run(&del)? {}
        }
        for (table, chain) in [("nat", self.chain("DNAT")), ("nat", self.chain("POST")), ("filter", self.chain("FWD"))]
        {
            if run(&["-t", table, "-F", &chain])? {
                run(&["-t", table, "-X", &chain])?;
            }
        }
        Ok(())
    }

    /// Whether any of our chains exists (for checks and tests).
    pub fn present(&self) -> Result<bool, FirewallError> {
        Ok(run(&["-t", "nat", "-S", &self.chain("DNAT")])? || run(&["-t", "filter", "-S", &self.chain("FWD")])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rules() {
        let fw = Firewall::new("SKT");
        let nets = vec![
            NetworkRules {
                bridge: "skt0".into(),
                subnet: "172.30.0.1/16".parse().unwrap(),
                internal: false,
                icc: true,
                outgoing: Outgoing::Masquerade,
            },
            NetworkRules {
                bridge: "br-1".into(),
                subnet: "172.31.0.0/16".parse().unwrap(),
                internal: true,
                icc: false,
                outgoing: Outgoing::Masquerade,
            },
            NetworkRules {
                bridge: "br-2".into(),
                subnet: "172.32.0.0/16".parse().unwrap(),
                internal: false,
                icc: true,
                outgoing: Outgoing::Snat(Ipv4Addr::new(10, 0, 0, 9)),
            },
        ];
        let ports = vec![PortRule {
            proto: Proto::Tcp,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 8080,
            container_ip: Ipv4Addr::new(172, 30, 0, 2),
            container_port: 80,
            bridge: "skt0".into(),
        }];
        let r = fw.render(&nets, &ports, &[], &[]);
        assert!(
            r.contains("-A SKT-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.30.0.2:80")
        );
        assert!(r.contains("-A SKT-POST -s 172.30.0.0/16 ! -o skt0 -j MASQUERADE"));
        assert!(!r.contains("-s 172.31.0.0/16 ! -o br-1 -j MASQUERADE"), "internal networks are not masqueraded");
        assert!(r.contains("-A SKT-POST -s 172.32.0.0/16 ! -o br-2 -j SNAT --to-source 10.0.0.9"));
        assert!(!r.contains("-s 172.32.0.0/16 ! -o br-2 -j MASQUERADE"));
        assert!(r.contains("-A SKT-FWD -i skt0 -o br-1 -j DROP"));
        assert!(r.contains("-A SKT-FWD -i br-1 -o br-1 -j DROP"));
        assert!(r.contains("-A SKT-POST -s 172.30.0.0/16 -o skt0 -m conntrack --ctstate DNAT -j MASQUERADE"));
        assert!(r.ends_with("COMMIT\n"));
    }

    #[test]
    fn the_routing_mesh_balances_over_its_backends_and_is_let_through_its_overlay() {
        let fw = Firewall::new("SKT");
        let mesh = NetworkRules {
            bridge: "ov-ing".into(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            internal: true,
            icc: true,
            outgoing: Outgoing::AsIs,
        };
        let b = |d| Ipv4Addr::new(10, 0, 0, d);
        let rule = IngressRule {
            proto: Proto::Tcp,
            port: 8080,
            target_port: 80,
            backends: vec![b(2), b(3), b(4)],
            bridge: "ov-ing".into(),
        };
        let vip = VipRule { vip: b(9), backends: vec![b(2)], bridge: "ov-ing".into() };
        let r = fw.render(std::slice::from_ref(&mesh), &[], &[rule], &[vip]);
        assert!(r.contains("-A SKT-DNAT -d 10.0.0.9/32 -j DNAT --to-destination 10.0.0.2\n"), "{r}");
        let masq =
            r.lines().filter(|l| *l == "-A SKT-POST -o ov-ing -m conntrack --ctstate DNAT -j MASQUERADE").count();
        assert_eq!(masq, 1, "once per bridge");
        let dnat: Vec<&str> = r.lines().filter(|l| l.contains("--dport 8080")).collect();
        assert_eq!(
            dnat,
            [
                "-A SKT-DNAT -p tcp -m tcp --dport 8080 -m statistic --mode random --probability 0.33333333 -j DNAT --to-destination 10.0.0.2:80",
                "-A SKT-DNAT -p tcp -m tcp --dport 8080 -m statistic --mode random --probability 0.50000000 -j DNAT --to-destination 10.0.0.3:80",
                "-A SKT-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.4:80",
            ]
        );
        assert!(r.contains("-A SKT-POST -o ov-ing -m conntrack --ctstate DNAT -j MASQUERADE"));
        // Accepted before the overlay's isolation drops it.
        let accept = r.find("-A SKT-FWD -o ov-ing -m conntrack --ctstate DNAT -j ACCEPT").unwrap();
        let back =
            r.find("-A SKT-FWD -i ov-ing ! -o ov-ing -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT").unwrap();
        let drop = r.find("-A SKT-FWD -o ov-ing ! -i ov-ing -j DROP").unwrap();
        assert!(accept < drop && back < drop, "{r}");
        let none = IngressRule {
            backends: Vec::new(),
            ..IngressRule {
                proto: Proto::Udp,
                port: 53,
                target_port: 53,
                backends: Vec::new(),
                bridge: "ov-ing".into(),
            }
        };
        assert!(!fw.render(&[mesh], &[], &[none], &[]).contains("--dport 53"), "no backend, no rule");
    }

    #[test]
    fn prefixes_are_sanitized() {
        assert_eq!(Firewall::new("A B;rm -rf /").chain("DNAT"), "ABrm-rf-DNAT");
    }
}
