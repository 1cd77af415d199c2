//! skiff-engine: containers, images, volumes and events, composed from the image store
//! (`skiff-image`) and the per-container monitor (`skiff-monitor`, via `skiff-runtime`).
//!
//! The engine never sees HTTP: the API layer turns requests into calls on the services held by
//! [`Engine`]. It never forks containers either: every container is created and supervised by
//! its own monitor process.

// No function past what a reader holds (clippy.toml sets the threshold).

pub mod build;
pub mod container;
pub mod error;
pub mod events;
pub mod images;
pub mod network;
pub mod security;
pub mod system;
pub mod types;
pub mod volume_ops;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use skiff_image::ImageStore;
use skiff_image::db::Db;
use skiff_image::layers::Driver;

pub use error::{EngineError, Kind, Result};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The `skiff-monitor` binary.
    pub monitor_bin: PathBuf,
    /// `overlay2` or `vfs`; detected when `None`.
    pub storage_driver: Option<String>,
    pub net: network::NetConfig,
    /// Where references' repositories live (mirrors, remaps, insecure registries).
    pub registries: skiff_distribution::RegistriesConfig,
    /// The default log driver (`json-file` or `none`) and its options, for containers that
    /// name none.
    pub default_log: bollard_stubs::models::HostConfigLogConfig,
    /// Bytes of file content one image may unpack to (pull, load, import); none: no limit.
    pub max_image_size: Option<u64>,
    /// IPC and cgroup namespace modes for containers that name none.
    pub container_defaults: container::Defaults,
    /// What `docker info` reports as Debug and Experimental.
    pub debug: bool,
    pub experimental: bool,
}

pub struct Engine {
    pub config: EngineConfig,
    /// Identifies this daemon's data root (stable across restarts).
    pub id: String,
    pub db: Arc<Db>,
    pub events: Arc<events::Events>,
    pub images: Arc<images::Images>,
    pub volumes: Arc<volumes::Volumes>,
    pub networks: Arc<network::Networks>,
    pub containers: Arc<container::Containers>,
}

impl Engine {
    /// Opens (creating if needed) the daemon's state. Call [`Engine::restore`] next, inside the
    /// async runtime.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        config.container_defaults.validate()?;
        std::fs::create_dir_all(&config.data_root)?;
        std::fs::create_dir_all(&config.exec_root)?;
        let db = Arc::new(Db::open(&config.data_root.join("metadata.redb"))?);
        let image_root = config.data_root.join("image");
        std::fs::create_dir_all(&image_root)?;
        let driver = match config.storage_driver.as_deref() {
            Some("overlay2") | Some("overlay") => Driver::Overlay,
            Some("vfs") => Driver::Copy,
            Some(other) => {
                return Err(EngineError::invalid(format!("unknown storage driver {other:?} (use overlay2 or vfs)")));
            }
            None => {
                // The layers already on disk decide; otherwise whether overlay works here.
                let marker = image_root.join("driver");
                match std::fs::read_to_string(&marker).ok().as_deref().map(str::trim) {
                    Some("vfs") => Driver::Copy,
                    Some("overlay2") => Driver::Overlay,
                    _ if skiff_image::snapshot::overlay_supported(&image_root) => Driver::Overlay,
                    _ => Driver::Copy,
                }
            }
        };
        skiff_common::fsutil::atomic_write(&image_root.join("driver"), driver.name().as_bytes())?;
        let store = Arc::new(ImageStore::open(image_root, driver, db.clone(), config.max_image_size)?);
        let events = Arc::new(events::Events::default());
        let volumes = Arc::new(volumes::Volumes::open(config.data_root.join("volumes"), db.clone(), events.clone())?);
        let networks =
            Arc::new(network::Networks::open(db.clone(), events.clone(), config.net.clone(), &config.exec_root)?);
        let containers = container::Containers::new(
            container::Deps {
                db: db.clone(),
                images: store.clone(),
                volumes: volumes.clone(),
                networks: networks.clone(),
                events: events.clone(),
            },
            container::Settings {
                data_root: config.data_root.clone(),
                exec_root: config.exec_root.clone(),
                monitor_bin: config.monitor_bin.clone(),
                default_log: config.default_log.clone(),
                defaults: config.container_defaults.clone(),
            },
        )?;
        // Build contexts and secrets of builds a killed daemon left behind.
        let scratch = config.data_root.join("tmp");
        let _ = skiff_common::fsutil::remove_all(&scratch);
        let id_file = config.data_root.join("engine-id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = volumes::hex_id();
                skiff_common::fsutil::atomic_write(&id_file, id.as_bytes())?;
                id
            }
        };
        let registries = std::sync::RwLock::new(Arc::new(config.registries.clone()));
        Ok(Engine {
            config,
            id,
            db,
            events: events.clone(),
            images: Arc::new(images::Images { store, events, registries }),
            volumes,
            networks,
            containers,
        })
    }

    /// Applies what a configuration reload may change while running: where registries are
    /// (mirrors, remaps, insecure hosts) and the default log driver and options (for
    /// containers created from now on).
    pub fn reload(
        &self,
        registries: skiff_distribution::RegistriesConfig,
        default_log: bollard_stubs::models::HostConfigLogConfig,
    ) {
        self.images.set_registries(registries);
        self.containers.set_default_log(default_log);
    }

    /// Re-adopts running containers and settles the ones that exited while we were away.
    pub async fn restore(&self) {
        if let Err(e) = self.networks.ensure_builtin().await {
            tracing::error!(error = %e, "setting up the built-in networks");
        }
        self.containers.restore().await;
        self.containers.reconcile_networks().await;
        self.containers.restart_at_boot().await;
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "flushing metadata after restore");
        }
    }

    /// At daemon shutdown: running containers keep running, unless live restore is off.
    pub async fn shutdown(&self) {
        if !self.config.container_defaults.live_restore {
            self.containers.stop_all().await;
        }
        let left = self.containers.shutdown_tasks(std::time::Duration::from_secs(10)).await;
        if left > 0 {
            tracing::warn!(tasks = left, "container tasks still running at shutdown");
        }
        self.networks.shutdown().await;
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "flushing metadata");
        }
    }
}
