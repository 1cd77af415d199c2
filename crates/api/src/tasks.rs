//! Tasks the API leaves running after a handler returns: the producers of streamed bodies
//! (logs, stats, events, pull and build progress), the relays of upgraded (attach, exec)
//! connections, and the connections themselves. The server owns them: at shutdown it stops
//! taking requests, cancels these tasks (which ends their responses) and waits for them, with
//! a bound, before the engine shuts down.
//!
//! Handlers spawn with [`spawn`], which finds the server's [`ApiTasks`] in a task-local set
//! around each request; outside a server (unit tests) it is a plain `tokio::spawn`.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

tokio::task_local! {
    static CURRENT: ApiTasks;
}

#[derive(Clone, Debug, Default)]
pub struct ApiTasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl ApiTasks {
    /// Runs `f` (and what it spawns) owned by these tasks, dropped when they are cancelled.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(CURRENT.scope(self.clone(), async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = f => {}
            }
        }));
    }

    /// Runs `f` owned by these tasks but not dropped at cancellation: `f` watches
    /// [`ApiTasks::cancelled`] and ends itself (a connection finishing its request in flight).
    pub fn track<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(CURRENT.scope(self.clone(), f));
    }

    /// Runs `f` with these tasks as the current ones (what [`spawn`] uses).
    pub async fn scope<F: Future>(&self, f: F) -> F::Output {
        CURRENT.scope(self.clone(), f).await
    }

    /// Resolves when shutdown began.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Cancels every task and waits up to `grace` for them to end; returns how many did not.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.tracker.len()
    }
}

/// Spawns `f` owned by the current server's tasks (see the module docs).
pub fn spawn<F>(f: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match CURRENT.try_with(ApiTasks::clone) {
        Ok(tasks) => tasks.spawn(f),
        Err(_) => {
            tokio::spawn(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_cancels_what_requests_left_running() {
        let tasks = ApiTasks::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        tasks
            .scope(async {
                spawn(async move {
                    // A stream producer that never ends by itself (a `logs -f`), and one it
                    // spawned in turn.
                    spawn(std::future::pending());
                    let _tx = tx;
                    std::future::pending::<()>().await;
                });
            })
            .await;
        tokio::task::yield_now().await;
        assert_eq!(tasks.tracker.len(), 2, "both are owned");
        assert_eq!(tasks.shutdown(Duration::from_secs(5)).await, 0);
        assert_eq!(rx.recv().await, None, "the producer's channel closed: its response ends");
    }
}
