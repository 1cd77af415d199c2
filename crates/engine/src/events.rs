//! The event bus behind `docker events`: a broadcast channel plus a bounded history, so that
//! `--since` can replay recent events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

const HISTORY: usize = 1024;

/// What an event is about (the Engine API's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Container,
    Image,
    Volume,
    Network,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Container => "container",
            EventKind::Image => "image",
            EventKind::Volume => "volume",
            EventKind::Network => "network",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: EventKind, action: impl Into<String>, id: impl Into<String>) -> Event {
        let (s, n) = skiff_common::timefmt::split(SystemTime::now());
        Event {
            kind,
            action: action.into(),
            id: id.into(),
            attributes: BTreeMap::new(),
            time_nano: s * 1_000_000_000 + n as i64,
        }
    }
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Event {
        self.attributes.insert(k.to_string(), v.into());
        self
    }
}

pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    history: Mutex<VecDeque<Arc<Event>>>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Events { tx, history: Mutex::new(VecDeque::with_capacity(HISTORY)) }
    }
}

impl Events {
    pub fn publish(&self, e: Event) {
        let e = Arc::new(e);
        {
            let mut h = self.history.lock().expect("events lock");
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// Past events (oldest first) and a receiver for new ones, taken atomically.
    /// Clients following the events now (`docker events`).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let h = self.history.lock().expect("events lock");
        let rx = self.tx.subscribe();
        (h.iter().cloned().collect(), rx)
    }
}

/// `docker events --filter` semantics: values of one key are OR'ed, keys are AND'ed.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.filters.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "type" => v == e.kind.as_str(),
                "event" | "action" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.kind == EventKind::Container
                        && (e.id.starts_with(v.as_str()) || e.attributes.get("name") == Some(v))
                }
                "image" => {
                    e.attributes.get("image") == Some(v)
                        || (e.kind == EventKind::Image && (e.id == *v || e.id.contains(v.as_str())))
                }
                "volume" => e.kind == EventKind::Volume && e.id == *v,
                "network" => {
                    e.kind == EventKind::Network
                        && (e.id.starts_with(v.as_str()) || e.attributes.get("name") == Some(v))
                }
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).map(|x| x == lv).unwrap_or(false),
                    None => e.attributes.contains_key(v.as_str()),
                },
                "scope" => v == "local",
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_filters() {
        let ev = Events::default();
        ev.publish(Event::new(EventKind::Container, "start", "abc").attr("name", "web"));
        ev.publish(Event::new(EventKind::Image, "tag", "sha256:1"));
        let (h, _rx) = ev.subscribe();
        assert_eq!(h.len(), 2);
        let mut f = EventFilter::default();
        f.filters.insert("type".into(), vec!["container".into()]);
        f.filters.insert("container".into(), vec!["web".into()]);
        assert!(f.matches(&h[0]));
        assert!(!f.matches(&h[1]));
    }
}
