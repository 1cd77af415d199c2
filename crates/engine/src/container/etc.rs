//! The files Docker writes for a container and bind-mounts over its image: `/etc/hostname`,
//! `/etc/hosts` (its names, links and `--add-host`s) and `/etc/resolv.conf` (the embedded DNS
//! server on user networks, otherwise the host's with `--dns*` applied).

use std::path::PathBuf;

use super::Containers;
use super::spec::NetNs;
use crate::error::Result;

/// The values of `search` / `options` lines of a resolv.conf.
fn host_lines(text: &str, key: &str) -> Option<Vec<String>> {
    let v: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key).filter(|r| r.starts_with(char::is_whitespace)))
        .flat_map(|r| r.split_whitespace().map(str::to_string))
        .collect();
    if v.is_empty() { None } else { Some(v) }
}

fn host_resolv_conf() -> String {
    // The container has its own network namespace: a resolver on the host's loopback is
    // unreachable from it, so such entries are dropped.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

impl Containers {
    pub(super) fn etc_files(
        &self,
        c: &super::ContainerRecord,
        netns: &NetNs,
        host_gateway: Option<std::net::Ipv4Addr>,
    ) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.container_dir(&c.id);
        let hostname = c.config.hostname.clone().unwrap_or_default();
        let mut files = Vec::new();
        if let super::net::Mode::Container(other) = super::net::mode_of(&c.host_config) {
            // Sharing another container's network: its view of the network too.
            let o = self.get(&other)?;
            let odir = self.container_dir(&o.id);
            for f in ["hostname", "hosts", "resolv.conf"] {
                if odir.join(f).exists() {
                    files.push((format!("/etc/{f}"), odir.join(f)));
                }
            }
            return Ok(files);
        }
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        files.push(("/etc/hostname".to_string(), dir.join("hostname")));
        if *netns == NetNs::Host {
            files.push(("/etc/hosts".to_string(), PathBuf::from("/etc/hosts")));
            files.push(("/etc/resolv.conf".to_string(), PathBuf::from("/etc/resolv.conf")));
            return Ok(files);
        }
        std::fs::write(dir.join("hosts"), self.hosts_file(c, host_gateway))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut dns = c.host_config.dns.clone().unwrap_or_default();
        if dns.is_empty() {
            dns = self.networks.cfg.dns.iter().map(|d| d.to_string()).collect();
        }
        let mut resolv = String::new();
        let mut search: Option<Vec<String>> = c.host_config.dns_search.clone().filter(|s| !s.is_empty());
        let mut options: Option<Vec<String>> = c.host_config.dns_options.clone().filter(|s| !s.is_empty());
        if let Some(gw) = self.embedded_dns(c) {
            // The network's embedded DNS server answers (and forwards to `--dns` servers).
            resolv.push_str(&format!("nameserver {gw}\n"));
            if search.is_none() {
                search = host_lines(&host, "search");
            }
            if options.is_none() {
                options = host_lines(&host, "options");
            }
        } else if dns.is_empty() {
            resolv.push_str(&host_resolv_conf());
        } else {
            for d in dns {
                resolv.push_str(&format!("nameserver {d}\n"));
            }
        }
        if let Some(s) = search {
            resolv.push_str(&format!("search {}\n", s.join(" ")));
        }
        if let Some(o) = options {
            resolv.push_str(&format!("options {}\n", o.join(" ")));
        }
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        files.push(("/etc/hosts".to_string(), dir.join("hosts")));
        files.push(("/etc/resolv.conf".to_string(), dir.join("resolv.conf")));
        Ok(files)
    }
}
