//! `docker rm`.

use std::sync::Arc;
use std::time::Duration;

use skiff_image::db::Durability;
use skiff_runtime::protocol::Request;

use super::attach::take_pending;
use super::monitor_client;
use super::{Container, Containers, MountKind, Status};
use crate::error::{EngineError, Result};

impl Containers {
    /// `docker rm`.
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool, volumes: bool) -> Result<()> {
        let (this, key) = (self.clone(), key.to_string());
        self.to_completion(async move { this.remove_now(&key, force, volumes).await }).await
    }

    async fn remove_now(self: &Arc<Self>, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.get(key)?;
        if force && c.status() == Status::Running {
            // As dockerd: a forced removal kills at once, even while a `docker stop` holds the
            // operation lock waiting out its grace period (which then ends with the exit).
            self.update(&c, Durability::Lazy, |r| r.manually_stopped = true)?;
            let _ = self.signal(&c, 9).await;
        }
        let _op = c.ops.lock().await;
        let st = c.status();
        if st == Status::Removing {
            return Err(EngineError::conflict(format!("removal of container {} is already in progress", c.id)));
        }
        if st.is_live() || st == Status::Restarting {
            if !force {
                let name = format!("/{}", c.name().trim_start_matches('/'));
                let refused = RemoveRefused { id: c.id.clone(), name, status: st };
                return Err(EngineError::conflict(refused.to_string()).caused_by(refused));
            }
            self.update(&c, Durability::Lazy, |r| r.manually_stopped = true)?;
            if st != Status::Restarting {
                let _ = self.signal(&c, 9).await;
                if st == Status::Paused {
                    let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
                }
                if !self.wait_stopped(&c, Duration::from_secs(30)).await {
                    return Err(EngineError::internal(format!("could not kill container {}", c.id)));
                }
            }
        }
        if st == Status::Created {
            // A start killed with the daemon may have left a monitor waiting to be told.
            self.shutdown_monitor(&c.id).await;
        }
        let rec = self.update(&c, Durability::Sync, |r| r.state.status = Status::Removing)?;
        take_pending(&c);
        self.finish_remove(&c).await?;
        if volumes {
            for m in rec.mounts.iter().filter(|m| m.kind == MountKind::Volume && m.anonymous) {
                if !self.volumes_in_use().contains(&m.source)
                    && let Err(e) = self.volumes.remove(&m.source)
                {
                    tracing::warn!(volume = %m.source, error = %e, "removing anonymous volume");
                }
            }
        }
        self.publish(&rec, "destroy");
        Ok(())
    }

    /// The part of a removal that a restarted daemon finishes for a container found
    /// `Removing`: its network, snapshot and directories, then its record.
    pub(super) async fn finish_remove(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        self.detach_networks(c).await;
        let this = self.clone();
        let id = c.id.clone();
        let cleanup = tokio::task::spawn_blocking(move || -> Result<()> {
            this.release_shm(&id);
            this.images.snapshots().remove(&id)?;
            skiff_common::fsutil::remove_all(&this.container_dir(&id))?;
            skiff_common::fsutil::remove_all(this.monitor_dir(&id).path())?;
            Ok(())
        })
        .await
        .map_err(EngineError::from_cause)?;
        if let Err(e) = cleanup {
            let _ = self.update(c, Durability::Lazy, |r| r.state.status = Status::Dead);
            return Err(e);
        }
        self.forget(c)?;
        self.execs.forget_container(&c.id);
        Ok(())
    }

    /// Tells a monitor whose container never started to exit (none there is fine).
    pub(super) async fn shutdown_monitor(&self, id: &str) {
        let dir = self.monitor_dir(id);
        if dir.socket().exists()
            && let Ok(r) = monitor_client::call(&dir, Request::Shutdown).await
        {
            tracing::debug!(container = %id, reply = ?r, "monitor told to shut down");
        }
    }

    /// `docker rm --link /PARENT/ALIAS`: removes a legacy link from its parent (the linked
    /// container stays).
    pub fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        let p = self.get(parent).map_err(|_| {
            EngineError::not_found(format!("Cannot get parent /{parent} for link name /{parent}/{alias}"))
        })?;
        let matches = |l: &String| {
            let (target, a) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
            let a = a.rsplit('/').next().unwrap_or(a);
            a == alias || target.trim_start_matches('/') == alias
        };
        let linked = p.with(|r| {
            r.host_config.links.iter().flatten().any(matches) || r.networks.iter().any(|e| e.links.iter().any(matches))
        });
        if !linked {
            return Err(EngineError::not_found(format!("No such link: /{parent}/{alias}")));
        }
        self.update(&p, Durability::Sync, |r| {
            if let Some(l) = &mut r.host_config.links {
                l.retain(|x| !matches(x));
            }
            for e in &mut r.networks {
                e.links.retain(|x| !matches(x));
            }
        })?;
        Ok(())
    }
}

/// A removal refused because the container runs (or is paused, or restarting), without
/// `force`. Its text is what dockerd 25 and later say; [`RemoveRefused::legacy_words`] is what
/// dockerd before 25 said, which clients older than API 1.44 may match on.
#[derive(Debug, Clone)]
pub struct RemoveRefused {
    pub id: String,
    /// The container's name, with its leading slash.
    pub name: String,
    pub status: Status,
}

impl std::fmt::Display for RemoveRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot remove container {:?}: ", self.name)?;
        match self.status {
            Status::Paused => write!(f, "container is paused and must be unpaused first"),
            s => write!(f, "container is {}: stop the container before removing or force remove", s.as_str()),
        }
    }
}

impl std::error::Error for RemoveRefused {}

impl RemoveRefused {
    /// dockerd 20.10's words ("You cannot remove a running container …").
    pub fn legacy_words(&self) -> String {
        let what = if self.status == Status::Paused { "paused" } else { "running" };
        format!(
            "You cannot remove a {what} container {}. Stop the container before attempting removal or force remove",
            self.id
        )
    }
}
