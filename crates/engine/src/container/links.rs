//! Legacy links (`--link NAME[:ALIAS]`): kept in the host config as dockerd keeps them,
//! `/TARGET:/PARENT/ALIAS`; the link's name `PARENT/ALIAS` names the target (lookups, the
//! target's `Names` in lists), and the linking container gets the target's address in its
//! `/etc/hosts` and Docker's `ALIAS_PORT_…` environment.

use std::sync::Arc;

use super::{ContainerRecord, Containers};
use crate::error::{EngineError, Result};

/// `(target name, alias)` of a stored or requested link (`/db:/app/mysql`, `db:mysql`, `db`).
pub fn split(link: &str) -> (&str, &str) {
    let (target, alias) = link.split_once(':').unwrap_or((link, link));
    (target.trim_start_matches('/'), alias.rsplit('/').next().unwrap_or(alias))
}

impl Containers {
    /// Links as dockerd stores them (`/TARGET:/PARENT/ALIAS`); every target must exist.
    pub(crate) fn normalize_links(&self, parent: &str, links: &[String]) -> Result<Vec<String>> {
        links
            .iter()
            .map(|l| {
                let (target, alias) = split(l);
                let t = self
                    .get(target)
                    .map_err(|_| EngineError::invalid(format!("could not get container for {target}")))?;
                Ok(format!("/{}:/{parent}/{alias}", t.name()))
            })
            .collect()
    }

    /// The names a container is known by in lists: its own, and `/PARENT/ALIAS` for every
    /// container linking to it.
    pub(crate) fn link_names(&self, target: &ContainerRecord) -> Vec<String> {
        let mut out = Vec::new();
        for c in self.all() {
            c.with(|r| {
                for l in r.host_config.links.iter().flatten() {
                    let (t, alias) = split(l);
                    if t == target.name {
                        out.push(format!("/{}/{alias}", r.name));
                    }
                }
            });
        }
        out.sort();
        out
    }

    /// A rename keeps links current: where the renamed container is a target, and where it is
    /// the parent.
    pub(crate) fn rename_links(self: &Arc<Self>, old: &str, new: &str) {
        for c in self.all() {
            let touched = c.with(|r| {
                r.host_config.links.iter().flatten().any(|l| {
                    let (t, _) = split(l);
                    t == old || r.name == new
                })
            });
            if !touched {
                continue;
            }
            let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| {
                let parent = r.name.clone();
                if let Some(links) = &mut r.host_config.links {
                    for l in links.iter_mut() {
                        let (t, alias) = split(l);
                        let t = if t == old { new.to_string() } else { t.to_string() };
                        *l = format!("/{t}:/{parent}/{}", alias);
                    }
                }
                for e in &mut r.networks {
                    for l in e.links.iter_mut() {
                        let (t, alias) = split(l);
                        let t = if t == old { new.to_string() } else { t.to_string() };
                        *l = format!("/{t}:/{parent}/{}", alias);
                    }
                }
            });
        }
    }

    /// Docker's link environment for a starting container: for each link, `ALIAS_NAME`, the
    /// target's exposed ports (`ALIAS_PORT`, `ALIAS_PORT_80_TCP`, `…_ADDR`, `…_PORT`, `…_PROTO`)
    /// and its environment (`ALIAS_ENV_KEY`).
    pub(crate) fn link_env(&self, rec: &ContainerRecord) -> Vec<String> {
        let mut env = Vec::new();
        for l in rec.host_config.links.iter().flatten() {
            let (target, alias) = split(l);
            let Ok(t) = self.get(target) else { continue };
            let (ip, ports, tenv) = t.with(|r| {
                let ip = r.networks.iter().find_map(|e| e.live.as_ref().map(|s| s.ip));
                let mut ports: Vec<String> = r.config.exposed_ports.clone().unwrap_or_default().into_keys().collect();
                ports.sort_by_key(|p| {
                    let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    (n.parse::<u32>().unwrap_or(0), proto.to_string())
                });
                (ip, ports, r.config.env.clone().unwrap_or_default())
            });
            let Some(ip) = ip else { continue };
            let a = alias.to_ascii_uppercase().replace('-', "_");
            env.push(format!("{a}_NAME=/{}/{alias}", rec.name));
            for (i, p) in ports.iter().enumerate() {
                let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                let base = format!("{a}_PORT_{port}_{}", proto.to_ascii_uppercase());
                if i == 0 {
                    env.push(format!("{a}_PORT={proto}://{ip}:{port}"));
                }
                env.push(format!("{base}={proto}://{ip}:{port}"));
                env.push(format!("{base}_ADDR={ip}"));
                env.push(format!("{base}_PORT={port}"));
                env.push(format!("{base}_PROTO={proto}"));
            }
            for e in tenv {
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                if matches!(k, "HOME" | "PATH" | "HOSTNAME") {
                    continue;
                }
                env.push(format!("{a}_ENV_{k}={v}"));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn links_in_every_form() {
        assert_eq!(split("db"), ("db", "db"));
        assert_eq!(split("db:mysql"), ("db", "mysql"));
        assert_eq!(split("/db:/app/mysql"), ("db", "mysql"));
        assert_eq!(split("db:/mysql"), ("db", "mysql"));
    }
}
