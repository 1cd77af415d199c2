//! Containers: the persisted record, the live object, and the store that finds them.
//!
//! A [`ContainerRecord`] is what survives a daemon restart (in the metadata database); a
//! [`Container`] wraps it with what only lives in memory: the operation lock, waiters, attach
//! streams waiting for a start. Lifecycle operations are in the submodules, one per concern.

pub mod archive;
pub mod attach;
pub mod commit;
pub mod create;
mod etc;
pub mod exec;
mod exit;
pub mod health;
pub mod inspect;
pub mod links;
pub mod list;
pub mod logopts;
pub mod logs;
pub mod monitor_client;
pub mod mounts;
pub mod names;
pub mod net;
mod plan;
pub mod record;
mod remove;
mod rename;
mod request;
mod restore;
pub mod rootfs;
pub mod secopts;
pub mod spec;
pub mod start;
pub mod stats;
pub mod stop;
mod update;
mod wait;
pub use remove::RemoveRefused;
pub use wait::WaitCondition;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use skiff_image::db::{Db, Durability};
use skiff_image::{Digest, ImageStore};
use skiff_runtime::cgroups::Layout;
use skiff_runtime::config::MonitorDir;
use tokio::sync::watch;

use crate::error::{EngineError, Result};
use crate::events::{Event, EventKind, Events};
use crate::security::seccomp::Profile;
use crate::volumes::Volumes;

pub use record::{ContainerRecord, HealthLog, HealthState, HealthStatus, MountKind, MountSpec, State, Status};

const TABLE: &str = "containers";

/// What waiters are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    pub changes: u64,
    pub exits: u64,
    pub removed: bool,
}

pub struct Container {
    pub id: String,
    rec: Mutex<ContainerRecord>,
    /// Serializes lifecycle operations (start, stop, kill, rm, restart, pause).
    pub ops: tokio::sync::Mutex<()>,
    generation: watch::Sender<Generation>,
    /// Attach streams registered before the container started (connected at start).
    pending_attach: Mutex<Vec<attach::PendingAttach>>,
}

impl Container {
    fn new(rec: ContainerRecord) -> Arc<Container> {
        let (generation, _) = watch::channel(Generation::default());
        Arc::new(Container {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            ops: tokio::sync::Mutex::new(()),
            generation,
            pending_attach: Mutex::new(Vec::new()),
        })
    }

    /// A copy of the record.
    pub fn record(&self) -> ContainerRecord {
        self.rec.lock().expect("container lock").clone()
    }

    pub fn with<R>(&self, f: impl FnOnce(&ContainerRecord) -> R) -> R {
        f(&self.rec.lock().expect("container lock"))
    }

    pub fn status(&self) -> Status {
        self.with(|r| r.state.status)
    }

    pub fn name(&self) -> String {
        self.with(|r| r.name.clone())
    }

    pub fn subscribe(&self) -> watch::Receiver<Generation> {
        self.generation.subscribe()
    }

    fn bump(&self, exit: bool, removed: bool) {
        self.generation.send_modify(|g| {
            g.changes += 1;
            if exit {
                g.exits += 1;
            }
            if removed {
                g.removed = true;
            }
        });
    }
}

/// Everything container operations need, and the set of containers.
/// The daemon's defaults for what a container's HostConfig leaves empty (dockerd's
/// `--default-ipc-mode` and `--default-cgroupns-mode`).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// `private` or `shareable`; empty: `private`.
    pub ipc_mode: String,
    /// `host` or `private`; empty: `private` on cgroup v2, `host` on v1 (as dockerd).
    pub cgroupns_mode: String,
    /// Containers keep running across daemon restarts. When false (dockerd's default), the
    /// daemon stops them at shutdown and stops any it finds running at start; restart policies
    /// then bring back those that ask for it.
    pub live_restore: bool,
}

impl Defaults {
    /// Checks the values as dockerd does at start.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.ipc_mode.as_str(), "" | "private" | "shareable") {
            return Err(EngineError::invalid(format!(
                "invalid default IPC mode: {} (private or shareable)",
                self.ipc_mode
            )));
        }
        if !matches!(self.cgroupns_mode.as_str(), "" | "host" | "private") {
            return Err(EngineError::invalid(format!(
                "invalid default cgroup namespace mode: {} (host or private)",
                self.cgroupns_mode
            )));
        }
        Ok(())
    }
}

pub struct Containers {
    pub db: Arc<Db>,
    pub images: Arc<ImageStore>,
    pub volumes: Arc<Volumes>,
    pub networks: Arc<crate::network::Networks>,
    pub events: Arc<Events>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub monitor_bin: PathBuf,
    pub layout: Layout,
    pub seccomp: Profile,
    pub caps_held: std::collections::BTreeSet<String>,
    /// The daemon's default log driver and options (replaced by a configuration reload).
    default_log: RwLock<bollard_stubs::models::HostConfigLogConfig>,
    /// IPC and cgroup namespace modes for containers that name none.
    pub defaults: Defaults,
    /// Set while the daemon stops its containers (live restore off): their exits do not count
    /// for restart policies and do not mark them stopped by hand.
    shutting_down: std::sync::atomic::AtomicBool,
    /// Set once the daemon's start has re-adopted its containers and reconciled their
    /// networks: restarts wait for it (the reconciliation releases every sandbox whose
    /// container is not running, one a restart is making included).
    restored: tokio::sync::watch::Sender<bool>,
    map: RwLock<HashMap<String, Arc<Container>>>,
    names: RwLock<HashMap<String, String>>,
    /// Records found at start that this daemon cannot read (damaged, or written by a newer
    /// skiffd): left as they are, and so are their directories, snapshots, volumes and
    /// monitors, for a daemon that can read them.
    pub(crate) unreadable: HashSet<String>,
    pub execs: exec::ExecStore,
    /// Every task a container operation leaves running (exit watchers, restart timers,
    /// health checks, auto-removals, exec relays, restarts at daemon start): owned here, so
    /// the daemon's shutdown cancels the ones that wait and waits for the ones that finish
    /// work ([`Containers::shutdown_tasks`]).
    tasks: tokio_util::task::TaskTracker,
    cancel: tokio_util::sync::CancellationToken,
}

/// The services containers are made of (shared with the rest of the engine).
pub struct Deps {
    pub db: Arc<Db>,
    pub images: Arc<ImageStore>,
    pub volumes: Arc<Volumes>,
    pub networks: Arc<crate::network::Networks>,
    pub events: Arc<Events>,
}

/// Where containers live and how they are made by default.
pub struct Settings {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The `skiff-monitor` binary.
    pub monitor_bin: PathBuf,
    /// The daemon's default log driver and options.
    pub default_log: bollard_stubs::models::HostConfigLogConfig,
    pub defaults: Defaults,
}

impl Containers {
    /// Runs `f` as a task the engine owns; at shutdown it is waited for (bounded).
    pub(crate) fn spawn_owned<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(f);
    }

    /// Runs an operation to its end even if its caller goes — a client that disconnects
    /// mid-request, a swarm task cancelled at shutdown: dropped half-way, a start would leave a
    /// monitor running for a container recorded as created, a create its directories. The task
    /// is the engine's, so the daemon's shutdown waits for it (and `stop_all`, which takes each
    /// container's operation lock, stops what it started).
    pub(crate) async fn to_completion<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.tasks.spawn(f).await.map_err(|e| EngineError::internal(format!("container operation: {e}")))?
    }

    /// Runs `f` as a task the engine owns that is dropped at shutdown (a timer, a loop, a
    /// wait on a monitor that outlives the daemon).
    pub(crate) fn spawn_cancellable<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(self.cancel.clone().run_until_cancelled_owned(f));
    }

    /// Whether the daemon is shutting down its tasks.
    pub(crate) fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// At daemon shutdown: cancels the tasks that wait, then waits up to `limit` for the rest
    /// (an exit being recorded, a removal); returns how many were still running then.
    pub async fn shutdown_tasks(&self, limit: std::time::Duration) -> usize {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
        self.tasks.len()
    }

    /// The size of a container's writable layer, in bytes (0 if it has none).
    pub fn size_rw(&self, id: &str) -> u64 {
        self.images.snapshots().size_rw(id)
    }

    pub fn default_log(&self) -> bollard_stubs::models::HostConfigLogConfig {
        self.default_log.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_default_log(&self, lc: bollard_stubs::models::HostConfigLogConfig) {
        *self.default_log.write().unwrap_or_else(|p| p.into_inner()) = lc;
    }

    /// Opens the container store over the services it uses; loads every record it can read.
    pub fn new(deps: Deps, cfg: Settings) -> Result<Arc<Containers>> {
        let Deps { db, images, volumes, networks, events } = deps;
        let Settings { data_root, exec_root, monitor_bin, default_log, defaults } = cfg;
        let layout = Layout::detect()?;
        std::fs::create_dir_all(data_root.join("containers"))?;
        std::fs::create_dir_all(exec_root.join("containers"))?;
        std::fs::create_dir_all(exec_root.join("runtime"))?;
        let mut c = Containers {
            db,
            images,
            volumes,
            networks,
            events,
            data_root,
            exec_root,
            monitor_bin,
            layout,
            seccomp: Profile::default_profile(),
            caps_held: crate::security::caps::held(),
            default_log: RwLock::new(default_log),
            defaults,
            shutting_down: Default::default(),
            restored: tokio::sync::watch::Sender::new(false),
            map: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            unreadable: HashSet::new(),
            execs: exec::ExecStore::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        for (id, bytes) in c.db.list_raw(TABLE)? {
            // One record that cannot be read must not keep the daemon (and every other
            // container) down.
            match record::decode(&bytes) {
                Ok(rec) => c.insert(Container::new(rec)),
                Err(e) => {
                    tracing::error!(container = %id, error = %e, "container record left unread; the container is not managed");
                    c.unreadable.insert(id);
                }
            }
        }
        Ok(Arc::new(c))
    }

    /// IDs of every container this daemon knows of, managed or not ([`Containers::unreadable`]):
    /// what must not be collected as an orphan.
    fn known_ids(&self) -> HashSet<String> {
        let mut ids: HashSet<String> = self.all().iter().map(|c| c.id.clone()).collect();
        ids.extend(self.unreadable.iter().cloned());
        ids
    }

    fn insert(&self, c: Arc<Container>) {
        let name = c.name();
        self.names.write().expect("names lock").insert(name, c.id.clone());
        self.map.write().expect("map lock").insert(c.id.clone(), c);
    }

    /// Finds a container by full ID, name (`/name` or `name`), or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Arc<Container>> {
        let map = self.map.read().expect("map lock");
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = self.names.read().expect("names lock").get(name)
            && let Some(c) = map.get(id)
        {
            return Ok(c.clone());
        }
        // A legacy link's name, `PARENT/ALIAS`, names the linked container.
        if let Some((parent, alias)) = name.rsplit_once('/')
            && let Some(pid) = self.names.read().expect("names lock").get(parent.trim_start_matches('/'))
            && let Some(p) = map.get(pid)
        {
            let target = p.with(|r| {
                r.host_config.links.iter().flatten().find_map(|l| {
                    let (t, a) = links::split(l);
                    (a == alias).then(|| t.to_string())
                })
            });
            if let Some(t) = target
                && let Some(id) = self.names.read().expect("names lock").get(&t)
                && let Some(c) = map.get(id)
            {
                return Ok(c.clone());
            }
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = map.values().filter(|c| c.id.starts_with(key)).cloned().collect();
            match hits.len() {
                1 => return Ok(hits.into_iter().next().expect("one")),
                0 => {}
                _ => {
                    return Err(EngineError::invalid(format!("multiple IDs found with provided prefix: {key}")));
                }
            }
        }
        Err(EngineError::no_container(key))
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.map.read().expect("map lock").values().cloned().collect()
    }

    /// Persists a container's record after `f` changes it, and tells waiters.
    pub fn update(
        &self,
        c: &Container,
        durability: Durability,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let rec = {
            let mut r = c.rec.lock().expect("container lock");
            f(&mut r);
            r.clone()
        };
        self.db.put(TABLE, &rec.id, &rec, durability)?;
        c.bump(false, false);
        Ok(rec)
    }

    /// Containers using an image (by ID).
    pub fn using_image(&self, id: &Digest) -> Vec<Arc<Container>> {
        self.all().into_iter().filter(|c| c.with(|r| &r.image_id == id)).collect()
    }

    /// Volume names used by any container.
    pub fn volumes_in_use(&self) -> HashSet<String> {
        let mut s = HashSet::new();
        for c in self.all() {
            c.with(|r| {
                for m in &r.mounts {
                    if m.kind == MountKind::Volume {
                        s.insert(m.source.clone());
                    }
                }
            });
        }
        s
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }

    pub fn monitor_dir(&self, id: &str) -> MonitorDir {
        MonitorDir::new(self.exec_root.join("containers").join(id))
    }

    pub fn state_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    pub fn publish(&self, c: &ContainerRecord, action: &str) {
        let mut e = Event::new(EventKind::Container, action, &c.id).attr("name", &c.name).attr("image", &c.image_ref);
        if let Some(labels) = &c.config.labels {
            for (k, v) in labels {
                e = e.attr(k, v);
            }
        }
        self.events.publish(e);
    }

    pub fn publish_with(&self, c: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        let mut e = Event::new(EventKind::Container, action, &c.id).attr("name", &c.name).attr("image", &c.image_ref);
        if let Some(labels) = &c.config.labels {
            for (k, v) in labels {
                e = e.attr(k, v);
            }
        }
        for (k, v) in extra {
            e = e.attr(k, v.clone());
        }
        self.events.publish(e);
    }

    fn forget(&self, c: &Container) -> Result<()> {
        let name = c.name();
        self.db.delete(TABLE, &c.id)?;
        self.names.write().expect("names lock").remove(&name);
        self.map.write().expect("map lock").remove(&c.id);
        c.bump(false, true);
        Ok(())
    }

    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.images.snapshots().rootfs(id)
    }
}

/// Files the runtime bind-mounts into every container; not part of its changes.
pub const RUNTIME_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv"];
