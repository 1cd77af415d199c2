//! `POST /containers/{id}/wait`: `not-running`, `next-exit` or `removed`.

use std::sync::Arc;

use super::{Containers, Status};
use crate::error::{EngineError, Result};

/// What a wait waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaitCondition {
    /// The container is not running (now, or at its next exit).
    #[default]
    NotRunning,
    /// Its next exit, even if it is not running now.
    NextExit,
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = EngineError;
    /// The API's words (`""` is `not-running`); anything else is dockerd's error.
    fn from_str(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::invalid(format!("invalid condition: {other:?}"))),
        }
    }
}

impl Containers {
    /// `POST /containers/{id}/wait`.
    pub async fn wait(self: &Arc<Self>, key: &str, condition: WaitCondition) -> Result<(i64, Option<String>)> {
        let c = self.get(key)?;
        let mut rx = c.subscribe();
        let start = *rx.borrow_and_update();
        loop {
            let g = *rx.borrow_and_update();
            let rec = c.record();
            let done = match condition {
                WaitCondition::NextExit => g.exits > start.exits || g.removed,
                WaitCondition::Removed => g.removed,
                // As dockerd: a container that exits while we wait ends the wait even when its
                // restart policy brings it back (Restarting); one already restarting when the
                // wait begins counts as running until its next exit.
                WaitCondition::NotRunning => {
                    !rec.state.status.is_live() && rec.state.status != Status::Restarting
                        || g.exits > start.exits
                        || g.removed
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

#[cfg(test)]
mod tests {
    use super::WaitCondition;

    #[test]
    fn conditions_parse_as_the_api_names_them() {
        assert_eq!("".parse::<WaitCondition>().unwrap(), WaitCondition::NotRunning);
        assert_eq!("not-running".parse::<WaitCondition>().unwrap(), WaitCondition::NotRunning);
        assert_eq!("next-exit".parse::<WaitCondition>().unwrap(), WaitCondition::NextExit);
        assert_eq!("removed".parse::<WaitCondition>().unwrap(), WaitCondition::Removed);
        let e = "stopped".parse::<WaitCondition>().unwrap_err();
        assert_eq!(e.message, "invalid condition: \"stopped\"");
    }
}
