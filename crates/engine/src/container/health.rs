//! Healthchecks (`HEALTHCHECK` / `--health-cmd`): the test runs as an exec at each interval;
//! `retries` consecutive failures make the container unhealthy, failures during the start
//! period do not count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_image::db::Durability;

use super::{Container, Containers, HealthLog, HealthState, Status};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
const KEEP_LOGS: usize = 5;

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// Whether a container's config asks for health checks (a test other than `NONE`).
pub(crate) fn has_check(config: &bollard_stubs::models::ContainerConfig) -> bool {
    config.healthcheck.as_ref().is_some_and(|h| {
        h.test.as_ref().is_some_and(|t| !t.is_empty() && t.first().map(String::as_str) != Some("NONE"))
    })
}

/// The health a container has when its checks (re)start: `starting`, no streak, no log.
pub(crate) fn starting() -> super::HealthState {
    super::HealthState { status: super::HealthStatus::Starting, failing_streak: 0, log: vec![] }
}

/// Starts the healthcheck loop of a container that has one.
pub fn spawn(containers: Arc<Containers>, c: Arc<Container>) {
    let (hc, started) = c.with(|r| (r.config.healthcheck.clone(), r.state.started_at));
    let Some(hc) = hc else { return };
    let test = hc.test.clone().unwrap_or_default();
    let cmd: Vec<String> = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => return, // NONE, or empty (inherit: nothing to inherit here)
    };
    if cmd.is_empty() {
        return;
    }
    let interval = dur(hc.interval, DEFAULT_INTERVAL);
    let timeout = dur(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = dur(hc.start_period, Duration::ZERO);
    let start_interval = dur(hc.start_interval, DEFAULT_START_INTERVAL);
    let retries = hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
    let owner = containers.clone();
    owner.spawn_cancellable(async move {
        let t0 = Instant::now();
        loop {
            let in_start = t0.elapsed() < start_period;
            tokio::time::sleep(if in_start { start_interval.min(interval) } else { interval }).await;
            let still = c.with(|r| r.state.status == Status::Running && r.state.started_at == started);
            if !still {
                // A paused container is checked again once it runs.
                if c.status() == Status::Paused {
                    continue;
                }
                return;
            }
            let start = std::time::SystemTime::now();
            let (code, output) = match containers.exec_collect(&c.id, cmd.clone(), timeout).await {
                Ok(r) => r,
                Err(e) => (-1, e.message),
            };
            let end = std::time::SystemTime::now();
            let in_start = t0.elapsed() < start_period;
            let mut changed = None;
            let _ = containers.update(&c, Durability::Lazy, |r| {
                let h = r.state.health.get_or_insert(HealthState {
                    status: super::HealthStatus::Starting,
                    failing_streak: 0,
                    log: vec![],
                });
                h.log.push(HealthLog { start, end, exit_code: code, output });
                if h.log.len() > KEEP_LOGS {
                    h.log.remove(0);
                }
                let old = h.status;
                if code == 0 {
                    h.failing_streak = 0;
                    h.status = super::HealthStatus::Healthy;
                } else if !in_start || h.status != super::HealthStatus::Starting {
                    h.failing_streak += 1;
                    if h.failing_streak >= retries {
                        h.status = super::HealthStatus::Unhealthy;
                    }
                }
                if h.status != old {
                    changed = Some(h.status);
                }
            });
            if let Some(s) = changed {
                containers.publish(&c.record(), &format!("health_status: {s}"));
            }
        }
    });
}
