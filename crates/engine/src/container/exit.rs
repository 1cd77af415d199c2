//! Exit handling: the watcher of a running container, the exit's record, then the restart
//! policy (with Docker's back-off) or `--rm`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard_stubs::models::RestartPolicyNameEnum;
use skiff_image::db::Durability;
use skiff_runtime::protocol::{ExitStatus, Response};

use super::monitor_client;
use super::{Container, Containers, Status};

impl Containers {
    /// Step 5: the watcher waits for the monitor's `Exited`.
    pub(super) fn watch_exit(self: &Arc<Self>, c: Arc<Container>, mut conn: monitor_client::Conn, started: Instant) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = loop {
                match conn.response().await {
                    Ok(Some(Response::Exited { status })) => break Some(status),
                    Ok(Some(_)) => continue,
                    _ => break None,
                }
            };
            let status = match status {
                Some(s) => s,
                None => this.exit_from_file(&c.id),
            };
            this.on_exit(c, status, started.elapsed()).await;
        });
    }

    /// What a monitor recorded (or, if it vanished without a word, a failure).
    pub(super) fn exit_from_file(&self, id: &str) -> ExitStatus {
        let dir = self.monitor_dir(id);
        std::fs::read(dir.exit_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(ExitStatus {
            code: 255,
            oom_killed: false,
            finished_at: skiff_common::timefmt::now(),
        })
    }

    /// The container's process is gone: record it, then restart or auto-remove.
    pub(crate) async fn on_exit(self: &Arc<Self>, c: Arc<Container>, status: ExitStatus, ran: Duration) {
        let rec = match self.update(&c, Durability::Lazy, |r| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = status.code;
            r.state.finished_at = Some(status.finished_at.clone());
            r.state.oom_killed = status.oom_killed;
            if let Some(h) = &mut r.state.health {
                h.status = "unhealthy".into();
            }
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(container = %c.id, error = %e, "recording exit");
                c.record()
            }
        };
        self.detach_networks(&c).await;
        c.bump(true, false);
        if status.oom_killed {
            self.publish(&rec, "oom");
        }
        self.publish_with(&rec, "die", &[("exitCode", status.code.to_string())]);
        let this = self.clone();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || this.images.snapshots().unmount(&id)).await;

        let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
        let name = policy.name.unwrap_or(RestartPolicyNameEnum::NO);
        let max = policy.maximum_retry_count.unwrap_or(0);
        let restart = !rec.manually_stopped
            && match name {
                RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED => true,
                RestartPolicyNameEnum::ON_FAILURE => status.code != 0 && (max == 0 || rec.restart_count < max),
                _ => false,
            };
        if restart {
            // Docker's back-off: 100 ms doubling, reset when the container ran for 10 s.
            let attempt = if ran > Duration::from_secs(10) { 0 } else { rec.restart_count.min(12) };
            let delay = Duration::from_millis(100u64 << attempt).min(Duration::from_secs(60));
            let _ = self.update(&c, Durability::Lazy, |r| {
                r.state.status = Status::Restarting;
                r.restart_count += 1;
            });
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.ops.lock().await;
                if c.status() != Status::Restarting {
                    return;
                }
                let _ = this.update(&c, Durability::Lazy, |r| r.state.status = Status::Exited);
                if let Err(e) = this.start_locked(&c).await {
                    tracing::warn!(container = %c.id, error = %e, "restart failed");
                    let _ = this.update(&c, Durability::Lazy, |r| r.state.status = Status::Exited);
                }
                let rec = c.record();
                this.publish(&rec, "restart");
            });
            return;
        }
        if rec.host_config.auto_remove == Some(true) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.remove(&c.id, true, true).await {
                    tracing::warn!(container = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }
}
