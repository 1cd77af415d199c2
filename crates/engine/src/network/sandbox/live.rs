//! A running container's sandbox changing under it: `docker network connect` and
//! `disconnect` (an interface added or removed live), and a rename its DNS name follows.

use std::collections::HashSet;

use skiff_net::link;

use super::super::{Networks, find};
use super::{Endpoint, host_veth_name, io_err};
use crate::error::{EngineError, Kind, Result};

impl Networks {
    /// A running container was renamed: its DNS name follows.
    pub async fn rename(&self, container_id: &str, name: &str) {
        let _turn = self.per_container.lock(container_id).await;
        let file = {
            let mut inner = self.state();
            let Some(live) = inner.live.get_mut(container_id) else { return };
            live.name = name.to_string();
            let file = serde_json::to_vec(&live.file(container_id));
            inner.refresh_dns();
            file
        };
        if let Ok(file) = file {
            let _ = skiff_common::fsutil::replace_file(&self.sandbox_file(container_id), &file);
        }
    }

    /// `docker network connect` on a running container: a new interface in its sandbox.
    pub async fn connect_live(&self, container_id: &str, mut ep: Endpoint) -> Result<Endpoint> {
        let _turn = self.per_container.lock(container_id).await;
        let (net, path, has_gateway, n) = {
            let inner = self.state();
            let Some(live) = inner.live.get(container_id) else {
                return Err(EngineError::conflict(format!("container {container_id} has no network sandbox")));
            };
            let net = find(&inner.nets, &ep.network_id)?.clone();
            if live.endpoints.iter().any(|e| e.network_id == net.id) {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("endpoint with name {} already exists in network {}", live.name, net.name),
                ));
            }
            let used: HashSet<usize> = live
                .endpoints
                .iter()
                .filter_map(|e| e.live.as_ref()?.iface.strip_prefix("eth")?.parse().ok())
                .collect();
            let has_gateway = live.endpoints.iter().any(|e| inner.nets.get(&e.network_id).is_some_and(|n| !n.internal));
            let n = (0..).find(|i| !used.contains(i)).expect("a free index");
            (net, live.sandbox.clone(), has_gateway, n)
        };
        let (mut cfg, internal) = match self.plug(container_id, &path, &mut ep, n).await {
            Ok(x) => x,
            Err(e) => {
                self.unplug_failed(container_id, &net.id, n).await;
                return Err(e);
            }
        };
        if !internal && !has_gateway {
            cfg.default_gateway = ep.live.as_ref().and_then(|s| s.gateway);
        }
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || link::configure(&p, vec![cfg]))
            .await
            .map_err(io_err)
            .and_then(|r| r.map_err(|e| EngineError::internal(format!("configuring the container's interface: {e}"))));
        if let Err(e) = r {
            self.unplug_failed(container_id, &net.id, n).await;
            return Err(e);
        }
        // Still live: its detach waits for this connect (the container's turn); if it is gone
        // all the same, the new interface is taken back rather than recorded.
        let file = {
            let mut inner = self.state();
            inner.live.get_mut(container_id).map(|live| {
                live.endpoints.push(ep.clone());
                serde_json::to_vec(&live.file(container_id)).map_err(io_err)
            })
        };
        let Some(file) = file else {
            self.unplug_failed(container_id, &net.id, n).await;
            return Err(EngineError::conflict(format!("container {container_id} has no network sandbox")));
        };
        self.state().refresh_dns();
        skiff_common::fsutil::replace_file(&self.sandbox_file(container_id), &file?)?;
        self.sync_firewall(false).await;
        self.publish(&net, "connect", &[("container", container_id.to_string())]);
        Ok(ep)
    }

    async fn unplug_failed(&self, container_id: &str, net_id: &str, n: usize) {
        if let Ok(nl) = self.netlink().await {
            let _ = nl.delete_link(&host_veth_name(container_id, n)).await;
        }
        let rec = self.state().nets.get_mut(net_id).map(|net| {
            net.allocations.retain(|_, owner| owner != container_id);
            net.clone()
        });
        if let Some(rec) = rec {
            let _ = self.db.put(super::super::TABLE, &rec.id, &rec, skiff_image::db::Durability::Lazy);
        }
    }

    /// `docker network disconnect` on a running container.
    pub async fn disconnect_live(&self, container_id: &str, net_id: &str) -> Result<()> {
        let _turn = self.per_container.lock(container_id).await;
        let (ep, path, file) = {
            let mut inner = self.state();
            let Some(live) = inner.live.get_mut(container_id) else {
                return Err(EngineError::conflict(format!("container {container_id} has no network sandbox")));
            };
            let Some(pos) = live.endpoints.iter().position(|e| e.network_id == net_id) else {
                return Err(EngineError::new(
                    Kind::Forbidden,
                    format!("container {container_id} is not connected to network {net_id}"),
                ));
            };
            let ep = live.endpoints.remove(pos);
            let file = serde_json::to_vec(&live.file(container_id)).map_err(io_err)?;
            (ep, live.sandbox.clone(), file)
        };
        if let Some(s) = &ep.live {
            let iface = s.iface.clone();
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || link::remove_in(&p, &iface)).await.map_err(io_err)?;
            if let Err(e) = r {
                tracing::warn!(container = %container_id, "removing {}: {e}", s.iface);
                let _ = self.netlink().await?.delete_link(&s.host_veth).await;
            }
        }
        skiff_common::fsutil::replace_file(&self.sandbox_file(container_id), &file)?;
        let rec = {
            let mut inner = self.state();
            let rec = inner.nets.get_mut(net_id).map(|net| {
                net.allocations.retain(|_, owner| owner != container_id);
                net.clone()
            });
            inner.refresh_dns();
            rec
        };
        if let Some(rec) = &rec {
            self.db.put(super::super::TABLE, &rec.id, rec, skiff_image::db::Durability::Lazy)?;
        }
        self.sync_firewall(false).await;
        if let Some(rec) = &rec {
            self.publish(rec, "disconnect", &[("container", container_id.to_string())]);
        }
        Ok(())
    }
}
