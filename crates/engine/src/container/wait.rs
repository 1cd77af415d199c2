//! `POST /containers/{id}/wait`: `not-running`, `next-exit` or `removed`.

use std::sync::Arc;

use super::{Containers, Status};
use crate::error::{EngineError, Result};

impl Containers {
    /// `POST /containers/{id}/wait`: `not-running` (default), `next-exit` or `removed`.
    pub async fn wait(self: &Arc<Self>, key: &str, condition: &str) -> Result<(i64, Option<String>)> {
        let c = self.get(key)?;
        let mut rx = c.subscribe();
        let start = *rx.borrow_and_update();
        loop {
            let g = *rx.borrow_and_update();
            let rec = c.record();
            let done = match condition {
                "next-exit" => g.exits > start.exits || g.removed,
                "removed" => g.removed,
                // As dockerd: a container that exits while we wait ends the wait even when its
                // restart policy brings it back (Restarting); one already restarting when the
                // wait begins counts as running until its next exit.
                "" | "not-running" => {
                    !rec.state.status.is_live() && rec.state.status != Status::Restarting
                        || g.exits > start.exits
                        || g.removed
                }
                other => {
                    return Err(EngineError::invalid(format!("invalid condition: {other:?}")));
                }
            };
            if done {
                // A start error is in inspect's State.Error; the wait result carries only the
                // exit code (the CLI would print the error a second time).
                return Ok((rec.state.exit_code as i64, None));
            }
            if rx.changed().await.is_err() {
                let rec = c.record();
                return Ok((rec.state.exit_code as i64, None));
            }
        }
    }
}
