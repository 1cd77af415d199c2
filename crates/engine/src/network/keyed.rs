//! One operation at a time per key (a container's ID), any number across keys: what keeps a
//! container's attach, detach, connect and disconnect in turn while other containers' run
//! beside them. An entry lives only while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Entry = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub(crate) struct KeyedLocks {
    map: Mutex<HashMap<String, Entry>>,
}

/// Held while one key's operation runs; the next one waiting for the key goes on its drop.
pub(crate) struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    entry: Entry,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let entry = self.map().entry(key.to_string()).or_default().clone();
        let guard = entry.clone().lock_owned().await;
        KeyedGuard { locks: self, key: key.to_string(), entry, guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // The map's reference and ours: nobody else holds or waits for the key (a waiter
        // takes its reference under the map's lock, so it cannot appear in between).
        if Arc::strong_count(&self.entry) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_at_a_time_per_key_and_none_between_keys() {
        let locks = Arc::new(KeyedLocks::default());
        let a = locks.lock("a").await;
        // Another key goes at once.
        let b = tokio::time::timeout(Duration::from_millis(100), locks.lock("b")).await;
        assert!(b.is_ok(), "another key is not held up");
        drop(b);
        // The same key waits for the holder.
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the same key waits");
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(locks.len(), 0, "entries go once nobody holds or waits for them");
    }
}
