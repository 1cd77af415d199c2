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
        self.spawn_owned(async move {
            // Waiting is cancelled at shutdown (the container outlives the daemon with live
            // restore, and the next daemon re-adopts it); recording an exit that came is not.
            let wait = async {
                loop {
                    match conn.response().await {
                        Ok(Some(Response::Exited { status })) => return Some(status),
                        Ok(Some(_)) => continue,
                        _ => return None,
                    }
                }
            };
            let status = tokio::select! {
                s = wait => s,
                () = this.cancelled() => return,
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

    /// The container's process is gone: record it, then restart or auto-remove. A container
    /// that will restart goes straight to `restarting` (never seen `exited` in between).
    pub(crate) async fn on_exit(self: &Arc<Self>, c: Arc<Container>, status: ExitStatus, ran: Duration) {
        // What the run held goes back first: the container is seen stopped only once its
        // networks, /dev/shm and root filesystem are released, so a `docker start` (or the
        // daemon's own restart at boot) right after a `docker stop` cannot race this cleanup
        // and lose its fresh sandbox or root filesystem to it.
        self.detach_networks(&c).await;
        let this = self.clone();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            this.release_shm(&id);
            this.images.snapshots().unmount(&id)
        })
        .await;
        // The restart decision reads the record as it is now: a `docker stop` that came
        // during the cleanup above still keeps the container down.
        let shutting_down = self.shutting_down.load(std::sync::atomic::Ordering::SeqCst);
        let mut restart = None;
        let rec = match self.update(&c, Durability::Lazy, |r| {
            restart = restart_after(
                r.host_config.restart_policy.as_ref(),
                status.code,
                r.restart_count,
                r.manually_stopped || shutting_down,
                ran,
            );
            let at = skiff_common::timefmt::parse(&status.finished_at).unwrap_or_else(std::time::SystemTime::now);
            r.state.exited(status.code, at, status.oom_killed, restart.is_some());
            if restart.is_some() {
                r.restart_count += 1;
            }
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(container = %c.id, error = %e, "recording exit");
                c.record()
            }
        };
        c.bump(true, false);
        if status.oom_killed {
            self.publish(&rec, "oom");
        }
        self.publish_with(&rec, "die", &[("exitCode", status.code.to_string())]);

        if let Some(delay) = restart {
            let this = self.clone();
            self.spawn_cancellable(async move {
                tokio::time::sleep(delay).await;
                // An exit settled while the daemon starts: its restart waits for the
                // networks' reconciliation.
                this.restored().await;
                let _op = c.ops.lock().await;
                if c.status() != Status::Restarting {
                    return;
                }
                if let Err(e) = this.start_locked(&c).await {
                    tracing::warn!(container = %c.id, error = %e, "restart failed");
                    let _ = this.update(&c, Durability::Lazy, |r| r.state.status = Status::Exited);
                    c.bump(false, false);
                    return;
                }
                let rec = c.record();
                this.publish(&rec, "restart");
            });
            return;
        }
        if rec.host_config.auto_remove == Some(true) {
            let this = self.clone();
            self.spawn_owned(async move {
                if let Err(e) = this.remove(&c.id, true, true).await {
                    tracing::warn!(container = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }
}

/// Whether an exited container restarts and after how long: Docker's policies (`always`,
/// `unless-stopped`, `on-failure[:N]`; never after `docker stop`), and its back-off (100 ms,
/// doubling per restart, back to 100 ms once the container ran 10 s; at most a minute).
pub(crate) fn restart_after(
    policy: Option<&bollard_stubs::models::RestartPolicy>,
    exit_code: i32,
    restarts_so_far: i64,
    manually_stopped: bool,
    ran: Duration,
) -> Option<Duration> {
    if manually_stopped {
        return None;
    }
    let name = policy.and_then(|p| p.name).unwrap_or(RestartPolicyNameEnum::NO);
    let max = policy.and_then(|p| p.maximum_retry_count).unwrap_or(0);
    let restart = match name {
        RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED => true,
        RestartPolicyNameEnum::ON_FAILURE => exit_code != 0 && (max == 0 || restarts_so_far < max),
        _ => false,
    };
    if !restart {
        return None;
    }
    let attempt = if ran > Duration::from_secs(10) { 0 } else { restarts_so_far.clamp(0, 12) as u32 };
    Some(Duration::from_millis(100u64 << attempt).min(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::RestartPolicy;

    fn p(name: RestartPolicyNameEnum, max: i64) -> RestartPolicy {
        RestartPolicy { name: Some(name), maximum_retry_count: Some(max) }
    }

    #[test]
    fn restart_policies_as_docker_applies_them() {
        let short = Duration::from_secs(1);
        assert_eq!(restart_after(None, 1, 0, false, short), None);
        assert_eq!(restart_after(Some(&p(RestartPolicyNameEnum::NO, 0)), 1, 0, false, short), None);
        let always = p(RestartPolicyNameEnum::ALWAYS, 0);
        assert_eq!(restart_after(Some(&always), 0, 0, false, short), Some(Duration::from_millis(100)));
        assert_eq!(restart_after(Some(&always), 0, 0, true, short), None, "docker stop ends it");
        let unless = p(RestartPolicyNameEnum::UNLESS_STOPPED, 0);
        assert!(restart_after(Some(&unless), 0, 3, false, short).is_some());
        let onf = p(RestartPolicyNameEnum::ON_FAILURE, 3);
        assert_eq!(restart_after(Some(&onf), 0, 0, false, short), None, "success is not a failure");
        assert!(restart_after(Some(&onf), 2, 2, false, short).is_some());
        assert_eq!(restart_after(Some(&onf), 2, 3, false, short), None, "three restarts, no more");
        let unlimited = p(RestartPolicyNameEnum::ON_FAILURE, 0);
        assert!(restart_after(Some(&unlimited), 1, 1000, false, short).is_some());
    }

    #[test]
    fn back_off_doubles_and_resets_after_a_long_run() {
        let always = p(RestartPolicyNameEnum::ALWAYS, 0);
        let d = |n, ran| restart_after(Some(&always), 0, n, false, ran).unwrap();
        assert_eq!(d(0, Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(d(1, Duration::from_secs(1)), Duration::from_millis(200));
        assert_eq!(d(4, Duration::from_secs(1)), Duration::from_millis(1600));
        assert_eq!(d(50, Duration::from_secs(1)), Duration::from_secs(60), "capped");
        assert_eq!(d(9, Duration::from_secs(11)), Duration::from_millis(100), "reset after 10 s of running");
    }
}
