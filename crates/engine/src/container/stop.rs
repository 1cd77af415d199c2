//! Signals: `docker stop` (the stop signal, then SIGKILL), `kill`, `restart`, `pause`.

use std::sync::Arc;
use std::time::Duration;

use skiff_image::db::Durability;
use skiff_runtime::protocol::Request;

use super::monitor_client;
use super::{Container, Containers, Status};
use crate::error::{EngineError, Kind, Result};

/// Signal numbers by name (`SIGTERM`, `TERM`, `15`); see [`skiff_common::signal::parse`].
pub fn parse_signal(s: &str) -> Result<i32> {
    skiff_common::signal::parse(s).map_err(|e| EngineError::invalid(e.to_string()))
}

impl Containers {
    /// Sends a signal through the monitor.
    pub(super) async fn signal(&self, c: &Container, sig: i32) -> Result<()> {
        monitor_client::call(&self.monitor_dir(&c.id), Request::Signal { signal: sig }).await.map(|_| ())
    }

    /// Waits until the container is not running, up to `timeout`. True if it stopped.
    pub(super) async fn wait_stopped(&self, c: &Container, timeout: Duration) -> bool {
        let mut rx = c.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !c.status().is_live() {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return !c.status().is_live(),
                Err(_) => return false,
            }
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after the timeout.
    /// Runs to its end even if the client goes (as dockerd's): a stop whose request is cancelled
    /// after the stop signal still kills the container when the grace period is over.
    pub async fn stop(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        let this = self.clone();
        self.to_completion(async move {
            let _op = c.ops.lock().await;
            this.stop_locked(&c, timeout, signal).await
        })
        .await
    }

    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<String>,
    ) -> Result<()> {
        self.stop_inner(c, timeout, signal, true).await
    }

    /// Stops every running container at once, as the daemon does when it stops (or finds
    /// containers running at start) with live restore off: not "by hand", so restart policies
    /// bring them back with the daemon.
    pub async fn stop_all(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        self.shutting_down.store(true, Ordering::SeqCst);
        let mut tasks = tokio::task::JoinSet::new();
        // Every container, its status read under its operation lock: a start still going
        // (its caller gone, it runs to its end) finishes first, and what it started is stopped.
        for c in self.all() {
            let this = self.clone();
            tasks.spawn(async move {
                let _op = c.ops.lock().await;
                if !c.status().is_live() {
                    return;
                }
                match this.stop_inner(&c, None, None, false).await {
                    Ok(()) => {}
                    Err(e) if e.kind == Kind::NotModified => {}
                    Err(e) => tracing::warn!(container = %c.id, error = %e, "stopping at daemon shutdown"),
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        self.shutting_down.store(false, Ordering::SeqCst);
    }

    async fn stop_inner(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<String>,
        by_hand: bool,
    ) -> Result<()> {
        let rec = c.record();
        if rec.state.status == Status::Restarting {
            self.update(c, Durability::Lazy, |r| {
                r.manually_stopped = by_hand;
                r.state.status = Status::Exited;
            })?;
            return Ok(());
        }
        if !rec.state.status.is_live() {
            return Err(EngineError::not_modified());
        }
        if by_hand {
            self.update(c, Durability::Sync, |r| r.manually_stopped = true)?;
        }
        let sig = match signal.or(rec.config.stop_signal.clone()).filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => 15,
        };
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let paused = rec.state.status == Status::Paused;
        if sig != 9 {
            if let Err(e) = self.signal(c, sig).await {
                tracing::debug!(container = %c.id, error = %e, "stop signal not delivered");
            }
            if paused {
                let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
            }
            let t =
                if timeout < 0 { Duration::from_secs(u32::MAX as u64) } else { Duration::from_secs(timeout as u64) };
            if self.wait_stopped(c, t).await {
                self.publish(&c.record(), "stop");
                return Ok(());
            }
        }
        self.publish_with(&c.record(), "kill", &[("signal", "9".into())]);
        let _ = self.signal(c, 9).await;
        if paused {
            let _ = monitor_client::call(&self.monitor_dir(&c.id), Request::Resume).await;
        }
        if !self.wait_stopped(c, Duration::from_secs(30)).await {
            return Err(EngineError::internal(format!("container {} did not stop after SIGKILL", c.id)));
        }
        self.publish(&c.record(), "stop");
        Ok(())
    }

    /// `docker kill`. Without the operation lock: as with dockerd, a signal goes at once, even
    /// while a `docker stop` waits out its grace period.
    pub async fn kill(self: &Arc<Self>, key: &str, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        if !c.status().is_live() {
            return Err(EngineError::conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, c.id
            )));
        }
        let sig = parse_signal(signal.as_deref().filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
        // The container's own stop signal asks it to stop: its restart policy does not bring it
        // back (as dockerd's ExitOnNext).
        let stop_signal = c
            .with(|r| r.config.stop_signal.clone())
            .filter(|s| !s.is_empty())
            .map(|s| parse_signal(&s))
            .transpose()?
            .unwrap_or(15);
        if sig == stop_signal {
            self.update(&c, Durability::Lazy, |r| r.manually_stopped = true)?;
        }
        self.signal(&c, sig).await?;
        self.publish_with(&c.record(), "kill", &[("signal", sig.to_string())]);
        if sig == 9 {
            self.wait_stopped(&c, Duration::from_secs(30)).await;
        }
        Ok(())
    }

    /// `docker restart`.
    /// Runs to its end even if the client goes: a restart cut between its stop and its start
    /// would leave the container down.
    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        let c = self.get(key)?;
        let this = self.clone();
        self.to_completion(async move {
            let _op = c.ops.lock().await;
            match this.stop_locked(&c, timeout, signal).await {
                Ok(()) => {}
                Err(e) if e.kind == Kind::NotModified => {}
                Err(e) => return Err(e),
            }
            this.start_locked(&c).await?;
            this.update(&c, Durability::Lazy, |r| r.manually_stopped = false)?;
            this.publish(&c.record(), "restart");
            Ok(())
        })
        .await
    }

    /// `docker pause` / `unpause`.
    pub async fn pause(self: &Arc<Self>, key: &str, pause: bool) -> Result<()> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        c.with(|r| r.state.check_pause(&c.id, pause)).map_err(EngineError::conflict)?;
        let req = if pause { Request::Pause } else { Request::Resume };
        monitor_client::call(&self.monitor_dir(&c.id), req).await?;
        let rec = self.update(&c, Durability::Lazy, |r| r.state.paused(pause))?;
        self.publish(&rec, if pause { "pause" } else { "unpause" });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), 35);
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }
}
