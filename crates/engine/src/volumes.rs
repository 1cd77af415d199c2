//! Volumes with the `local` driver: a directory per volume under `<data-root>/volumes/<name>/_data`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use skiff_common::{fsutil, timefmt};
use skiff_image::db::{Db, Durability};

use crate::error::{EngineError, Result};
use crate::events::{Event, EventKind, Events};

const TABLE: &str = "volumes";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Created for a container's `-v /path` or image VOLUME; removed with `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
    /// The container whose create made this volume, until that container's record is
    /// committed: a daemon killed in between finds it at restart and removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_for: Option<String>,
}

pub struct Volumes {
    root: PathBuf,
    db: Arc<Db>,
    events: Arc<Events>,
    lock: Mutex<()>,
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Volumes {
    pub fn open(root: PathBuf, db: Arc<Db>, events: Arc<Events>) -> Result<Volumes> {
        std::fs::create_dir_all(&root)?;
        Ok(Volumes { root, db, events, lock: Mutex::new(()) })
    }

    pub fn get(&self, name: &str) -> Result<Option<VolumeRecord>> {
        Ok(self.db.get(TABLE, name)?)
    }

    pub fn inspect(&self, name: &str) -> Result<VolumeRecord> {
        self.get(name)?.ok_or_else(|| EngineError::not_found(format!("get {name}: no such volume")))
    }

    pub fn list(&self) -> Result<Vec<VolumeRecord>> {
        Ok(self.db.list::<VolumeRecord>(TABLE)?.into_iter().map(|(_, v)| v).collect())
    }

    /// A new anonymous volume for the container `id` being created (see `pending_for`).
    pub fn create_anonymous_for(&self, id: &str) -> Result<VolumeRecord> {
        let labels = BTreeMap::from([("com.docker.volume.anonymous".to_string(), String::new())]);
        self.create_record(None, labels, Some(id.to_string()))
    }

    /// The container whose create made `name` is committed: the volume is its from now on.
    pub fn adopted(&self, name: &str) {
        let _g = self.lock.lock().expect("volumes lock");
        if let Ok(Some(mut rec)) = self.get(name)
            && rec.pending_for.take().is_some()
            && let Err(e) = self.db.put(TABLE, name, &rec, Durability::Lazy)
        {
            tracing::warn!(volume = %name, error = %e, "recording a volume's container");
        }
    }

    /// At daemon start: volumes whose container's create never committed are removed (the
    /// caller says which containers exist), the others adopted; directories with no record
    /// (a create killed before its record) are removed.
    pub fn collect(&self, container_exists: &dyn Fn(&str) -> bool) {
        let Ok(list) = self.list() else { return };
        for v in &list {
            match &v.pending_for {
                Some(c) if container_exists(c) => self.adopted(&v.name),
                Some(c) => {
                    tracing::info!(volume = %v.name, container = %c, "removing the volume of an interrupted create");
                    let _ = self.remove(&v.name);
                }
                None => {}
            }
        }
        let known: std::collections::HashSet<&str> = list.iter().map(|v| v.name.as_str()).collect();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !known.contains(n.as_str()) {
                    tracing::info!(dir = %e.path().display(), "removing a volume directory with no record");
                    let _ = fsutil::remove_all(&e.path());
                }
            }
        }
    }

    /// Creates a volume, or returns the existing one of that name (as Docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord> {
        let driver = driver.filter(|d| !d.is_empty()).unwrap_or("local");
        if driver != "local" {
            return Err(EngineError::not_found(format!(
                "error looking up volume plugin {driver}: plugin {driver:?} not found"
            )));
        }
        if let Some(k) = options.keys().find(|k| !matches!(k.as_str(), "type" | "device" | "o")) {
            return Err(EngineError::invalid(format!("invalid option key: {k:?}")));
        }
        if !options.is_empty() {
            return Err(EngineError::invalid("mount options for the local volume driver are not supported yet"));
        }
        self.create_record(name, labels, None)
    }

    fn create_record(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        pending_for: Option<String>,
    ) -> Result<VolumeRecord> {
        let options = BTreeMap::new();
        let anonymous = name.is_none();
        let name = match name {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => hex_id(),
        };
        if !valid_name(&name) {
            return Err(EngineError::invalid(format!(
                "create {name}: volume name is invalid: only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        let _g = self.lock.lock().expect("volumes lock");
        if let Some(existing) = self.get(&name)? {
            return Ok(existing);
        }
        let dir = self.root.join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data)?;
        let rec = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: data,
            created_at: timefmt::now(),
            labels,
            options,
            anonymous,
            pending_for,
        };
        self.db.put(TABLE, &name, &rec, Durability::Sync)?;
        self.events.publish(Event::new(EventKind::Volume, "create", &name).attr("driver", "local"));
        Ok(rec)
    }

    /// Removes a volume; the caller has checked that no container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _g = self.lock.lock().expect("volumes lock");
        if self.get(name)?.is_none() {
            return Err(EngineError::not_found(format!("get {name}: no such volume")));
        }
        self.db.delete(TABLE, name)?;
        fsutil::remove_all(&self.root.join(name))?;
        self.events.publish(Event::new(EventKind::Volume, "destroy", name).attr("driver", "local"));
        Ok(())
    }

    pub fn size(&self, rec: &VolumeRecord) -> u64 {
        fsutil::tree_size(&rec.mountpoint)
    }
}

/// A random 64-hex ID (containers, anonymous volumes, execs).
pub fn hex_id() -> String {
    let a: [u64; 4] = rand::random();
    format!("{:016x}{:016x}{:016x}{:016x}", a[0], a[1], a[2], a[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("data"));
        assert!(valid_name("my_vol.1-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("/abs"));
        assert!(!valid_name("_x"));
    }

    #[test]
    fn create_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("m.redb")).unwrap());
        let v = Volumes::open(dir.path().join("volumes"), db, Arc::new(Events::default())).unwrap();
        let a = v.create(Some("data"), None, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(a.mountpoint.exists());
        let again = v.create(Some("data"), None, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert_eq!(a, again);
        let anon = v.create(None, None, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(anon.anonymous && anon.name.len() == 64);
        assert_eq!(v.list().unwrap().len(), 2);
        assert!(v.create(Some("../x"), None, BTreeMap::new(), BTreeMap::new()).is_err());
        v.remove("data").unwrap();
        assert!(!a.mountpoint.exists());
        assert!(v.remove("data").is_err());
    }
}
