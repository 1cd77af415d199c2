//! The step cache: a step's key is the parent image, the instruction after substitution, the
//! build args it can see and, for COPY/ADD, a hash of what it copies; the worker maps keys to
//! the images those steps made.

use sha2::{Digest as _, Sha256};

use super::Builder;
use crate::worker::{ImageInfo, Worker};

/// A cache key from its parts (each ends with a NUL, so parts cannot run into each other).
pub(super) fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Whether `id` is `from` or one of its ancestors.
fn in_history<W: Worker>(w: &W, from: &ImageInfo, id: &str) -> bool {
    let mut cur = Some(from.id.clone());
    for _ in 0..10_000 {
        let Some(c) = cur else { return false };
        if c == id {
            return true;
        }
        cur = w.image(&c).and_then(|i| i.parent);
    }
    false
}

impl<W: Worker> Builder<W> {
    /// The image a step's cache key found, if any; with `cache_from`, only if it is one of those
    /// images or in their history.
    pub(super) fn cached(&self, key: &str, cache_from: &[String]) -> Option<ImageInfo> {
        let img = self.worker.cache_get(key).and_then(|id| self.worker.image(&id))?;
        if cache_from.is_empty() {
            return Some(img);
        }
        cache_from
            .iter()
            .filter_map(|f| self.worker.local_image(f).ok())
            .any(|src| in_history(&*self.worker, &src, &img.id))
            .then_some(img)
    }

    pub(super) fn remember(&self, key: &str, img: &ImageInfo) {
        self.worker.cache_put(key, &img.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cannot_run_into_each_other() {
        assert_ne!(hash_key(&["ab", "c"]), hash_key(&["a", "bc"]));
        assert_eq!(hash_key(&["a", "b"]), hash_key(&["a", "b"]));
        assert_eq!(hash_key(&["x"]).len(), 64);
    }
}
