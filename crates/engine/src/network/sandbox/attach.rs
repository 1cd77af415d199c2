//! Attaching a starting container (the path in the module docs of `sandbox`) and detaching
//! one that exited, with the undo of a failed attach.

use std::path::Path;

use skiff_net::link;
use skiff_net::netns;
use skiff_net::ports::{self, Mapping};

use super::super::{NetworkRecord, Networks};
use super::{AttachRequest, Attached, Live, SandboxFile, host_veth_name, io_err};
use crate::error::{EngineError, Result};

impl Networks {
    /// Connects a starting container to its networks (see the module's path).
    pub async fn attach(&self, req: AttachRequest) -> Result<Attached> {
        let id = req.container_id.clone();
        let _turn = self.per_container.lock(&id).await;
        if self.state().live.contains_key(&id) {
            self.detach_now(&id).await;
        }
        let path = self.sandbox_path(&id);
        let r = self.attach_now(req, &path).await;
        match r {
            Ok(a) => Ok(a),
            Err(e) => {
                self.undo(&id, &path).await;
                Err(e)
            }
        }
    }

    async fn attach_now(&self, req: AttachRequest, path: &Path) -> Result<Attached> {
        let id = req.container_id.clone();
        let _ = netns::remove(path);
        let p = path.to_path_buf();
        tokio::task::spawn_blocking(move || netns::create(&p))
            .await
            .map_err(io_err)?
            .map_err(|e| EngineError::internal(format!("creating network namespace: {e}")))?;
        let mut endpoints = req.endpoints;
        let mut ifaces = Vec::new();
        let mut gateway_set = false;
        // Published ports without a host address bind where the network that carries them
        // says (`com.docker.network.bridge.host_binding_ipv4`, the default bridge's from --ip).
        let mut binding_ip = None;
        for (n, ep) in endpoints.iter_mut().enumerate() {
            let (mut cfg, internal) = self.plug(&id, path, ep, n).await?;
            if !internal && !gateway_set {
                cfg.default_gateway = ep.live.as_ref().and_then(|s| s.gateway);
                gateway_set = true;
                binding_ip = self
                    .state()
                    .nets
                    .get(&ep.network_id)
                    .and_then(|n| n.options.get("com.docker.network.bridge.host_binding_ipv4"))
                    .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                    .filter(|ip| !ip.is_unspecified());
            }
            ifaces.push(cfg);
        }
        let mut publish = req.publish;
        for r in &mut publish {
            if r.host_ip.is_none() {
                r.host_ip = binding_ip;
            }
        }
        let p = path.to_path_buf();
        tokio::task::spawn_blocking(move || link::configure(&p, ifaces))
            .await
            .map_err(io_err)?
            .map_err(|e| EngineError::internal(format!("configuring the container's interfaces: {e}")))?;
        let live = Live {
            name: req.name,
            sandbox: path.to_path_buf(),
            endpoints: endpoints.clone(),
            ports: Vec::new(),
            dns: req.dns,
            hostname: req.hostname,
        };
        // Host ports are taken (their sockets bound) and the container goes live in one
        // section: two starts never pick the same port.
        let (file, mappings, recs) = {
            let mut inner = self.state();
            let mut live = live;
            if !publish.is_empty() && gateway_set {
                live.ports = ports::allocate(&publish, &inner.taken_ports())
                    .map_err(|e| {
                        EngineError::internal(format!("driver failed programming external connectivity: {e}"))
                    })?
                    .into_iter()
                    .map(|(m, h)| (m, Some(h)))
                    .collect();
            }
            let file = serde_json::to_vec(&live.file(&id)).map_err(io_err)?;
            let mappings: Vec<Mapping> = live.ports.iter().map(|(m, _)| m.clone()).collect();
            inner.live.insert(id.clone(), live);
            inner.refresh_dns();
            let recs: Vec<NetworkRecord> =
                endpoints.iter().filter_map(|e| inner.nets.get(&e.network_id).cloned()).collect();
            (file, mappings, recs)
        };
        if let Err(e) = skiff_common::fsutil::replace_file(&self.sandbox_file(&id), &file) {
            let mut inner = self.state();
            inner.live.remove(&id);
            inner.refresh_dns();
            return Err(e.into());
        }
        self.sync_firewall(false).await;
        for rec in &recs {
            self.publish(rec, "connect", &[("container", id.clone())]);
        }
        Ok(Attached { sandbox: super::SandboxState { path: path.to_path_buf(), ports: mappings }, endpoints })
    }

    /// Undoes a failed attach.
    async fn undo(&self, id: &str, path: &Path) {
        if let Ok(nl) = self.netlink().await {
            for n in 0..8 {
                let _ = nl.delete_link(&host_veth_name(id, n)).await;
            }
        }
        let _ = netns::remove(path);
        let _ = std::fs::remove_file(self.sandbox_file(id));
        self.release_all(id);
    }

    /// Disconnects an exited (or removed) container from everything.
    pub async fn detach(&self, container_id: &str) {
        let _turn = self.per_container.lock(container_id).await;
        self.detach_now(container_id).await;
    }

    pub(super) async fn detach_now(&self, id: &str) {
        let live = self.state().live.remove(id);
        let endpoints = match &live {
            Some(l) => l.endpoints.clone(),
            None => std::fs::read(self.sandbox_file(id))
                .ok()
                .and_then(|b| serde_json::from_slice::<SandboxFile>(&b).ok())
                .map(|f| f.endpoints)
                .unwrap_or_default(),
        };
        // The veths go with the namespace: once it is unpinned and its last process is gone,
        // the kernel deletes both ends (deleting them here costs ~10 ms of RCU waits on the
        // path of every `run --rm`). A restart that finds a host end still there removes it.
        if let Err(e) = netns::remove(&self.sandbox_path(id)) {
            tracing::warn!(container = %id, "removing the network namespace: {e}");
        }
        let _ = std::fs::remove_file(self.sandbox_file(id));
        self.release_all(id);
        let had_ports = live.as_ref().is_some_and(|l| !l.ports.is_empty());
        // The ports' sockets close here.
        drop(live);
        let (recs, emptied) = {
            let inner = self.state();
            inner.refresh_dns();
            let recs: Vec<NetworkRecord> =
                endpoints.iter().filter_map(|e| inner.nets.get(&e.network_id).cloned()).collect();
            let emptied: Vec<String> = recs
                .iter()
                .filter(|n| inner.retired.contains(&n.id) && inner.members(&n.id).is_empty())
                .map(|n| n.id.clone())
                .collect();
            (recs, emptied)
        };
        for rec in &recs {
            self.publish(rec, "disconnect", &[("container", id.to_string())]);
        }
        if !emptied.is_empty() {
            self.remove_retired(&emptied).await;
        }
        if had_ports || !emptied.is_empty() {
            self.sync_firewall(false).await;
        }
    }
}
