//! Progress of a pull or push, as events the API turns into Docker's JSON progress stream
//! and the CLI into bars.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A line without an id ("Digest: …", "Status: …").
    Status(String),
    /// A line about one item (a layer's short id, or a tag).
    Item { id: String, status: String, current: Option<u64>, total: Option<u64> },
    /// Machine-readable result (push: Tag, Digest, Size).
    Aux(serde_json::Value),
}

pub type Sink = Arc<dyn Fn(Progress) + Send + Sync>;

pub fn item(sink: &Sink, id: &str, status: &str) {
    sink(Progress::Item { id: id.to_string(), status: status.to_string(), current: None, total: None });
}

/// Rate-limits byte progress of one item to about ten events a second.
pub struct Meter {
    sink: Sink,
    id: String,
    status: &'static str,
    total: u64,
    pub done: u64,
    last: Instant,
}

impl Meter {
    pub fn new(sink: Sink, id: &str, status: &'static str, total: u64) -> Meter {
        Meter { sink, id: id.to_string(), status, total, done: 0, last: Instant::now() - Duration::from_secs(1) }
    }
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.last.elapsed() >= Duration::from_millis(100) || self.done >= self.total {
            self.last = Instant::now();
            (self.sink)(Progress::Item {
                id: self.id.clone(),
                status: self.status.to_string(),
                current: Some(self.done),
                total: Some(self.total),
            });
        }
    }
}
