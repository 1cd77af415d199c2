//! `docker create`: merge the request with the image's config, validate, resolve mounts,
//! prepare the snapshot, persist.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use skiff_image::db::Durability;
use skiff_image::store::Image;

use super::{Container, ContainerRecord, Containers, MountKind, MountSpec, State, names};
use crate::error::{EngineError, Result};
use crate::volumes::hex_id;

use super::request::{merge_config, validate_config, validate_host_config};

/// What a create decided ([`Containers::plan_create`]), before anything is made.
struct CreatePlan {
    id: String,
    name: String,
    image_ref: String,
    image: Arc<Image>,
    config: ContainerConfig,
    hc: HostConfig,
    path: String,
    argv: Vec<String>,
    /// Anonymous volumes have no name yet.
    mounts: Vec<MountSpec>,
    networks: Vec<crate::network::sandbox::Endpoint>,
    warnings: Vec<String>,
    security: super::secopts::SecurityOpts,
    builder: bool,
}

/// One thing a create made, and how to take it back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    AnonymousVolume(String),
    Name(String),
    /// The snapshot and the container directory of this ID.
    Snapshot(String),
}

/// What a create made so far, undone in reverse order if a later step fails.
#[derive(Debug, Default)]
struct Undo(Vec<Step>);

impl Undo {
    fn anonymous_volumes(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|s| match s {
                Step::AnonymousVolume(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    fn run(self, c: &Containers) {
        for step in self.0.into_iter().rev() {
            match step {
                Step::AnonymousVolume(v) => {
                    if let Err(e) = c.volumes.remove(&v) {
                        tracing::warn!(volume = %v, error = %e, "removing the volume of a failed create");
                    }
                }
                Step::Name(n) => c.release_name(&n),
                Step::Snapshot(id) => {
                    let _ = c.images.snapshots().remove(&id);
                    let _ = skiff_common::fsutil::remove_all(&c.container_dir(&id));
                }
            }
        }
    }
}

/// How a create request is read, beyond its body.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `?platform=`: an image for another platform is not the image asked for.
    pub platform: Option<String>,
    /// The client speaks an API older than 1.44: its read-only binds are read-only at their
    /// top only, mounts below their sources staying writable (what dockerd keeps for such
    /// clients; from 1.44 they are read-only all the way down where the kernel can).
    pub read_only_non_recursive: bool,
}

impl Containers {
    /// Creates a container; returns its ID and warnings.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
        opts: CreateOptions,
    ) -> Result<(String, Vec<String>)> {
        let image = body.image.clone().unwrap_or_default();
        let have = self.images.resolve(&image).ok().map(|img| skiff_image::spec::Platform::of(&img.config));
        let mut mismatch = None;
        match (&opts.platform, have) {
            // An image for another platform is not the image asked for (dockerd: not found).
            (Some(pl), Some(have)) => {
                let want = crate::types::Platform::parse(pl).map_err(EngineError::invalid)?;
                if !want.matches(&have) {
                    return Err(EngineError::not_found(format!(
                        "No such image: {image} (it is for {}/{}, not {pl})",
                        have.os, have.architecture
                    )));
                }
            }
            (Some(pl), None) => {
                crate::types::Platform::parse(pl).map_err(EngineError::invalid)?;
            }
            // None asked for: an image for another platform runs, with dockerd's warning.
            (None, Some(have)) => {
                let host = skiff_image::spec::Platform::host();
                if !host.matches(&have) {
                    mismatch = Some(format!(
                        "The requested image's platform ({have}) does not match the detected host platform ({host}) and no specific platform was requested"
                    ));
                }
            }
            (None, None) => {}
        }
        let (id, mut warnings) = self.create_as(name, body, false, opts.read_only_non_recursive).await?;
        warnings.extend(mismatch);
        Ok((id, warnings))
    }

    /// A builder's RUN container (marked so a restarted daemon removes it).
    pub(crate) async fn create_for_build(self: &Arc<Self>, body: ContainerCreateBody) -> Result<(String, Vec<String>)> {
        self.create_as(None, body, true, false).await
    }

    /// A builder's RUN container the build keeps (`rm=false`, or a failed step without
    /// `forcerm`): no longer marked, so a restarted daemon keeps it as dockerd does.
    pub(crate) fn keep_build_container(&self, id: &str) {
        if let Ok(c) = self.get(id) {
            let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| r.builder = false);
        }
    }

    async fn create_as(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
        builder: bool,
        legacy_ro: bool,
    ) -> Result<(String, Vec<String>)> {
        let this = self.clone();
        self.to_completion(async move { this.create_now(name, body, builder, legacy_ro).await }).await
    }

    async fn create_now(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
        builder: bool,
        legacy_ro: bool,
    ) -> Result<(String, Vec<String>)> {
        let plan = self.plan_create(name, body, builder, legacy_ro).await?;
        self.commit_create(plan).await
    }

    /// Everything a create decides, with nothing made yet: a request that fails here leaves
    /// no trace.
    async fn plan_create(
        &self,
        name: Option<String>,
        body: ContainerCreateBody,
        builder: bool,
        legacy_ro: bool,
    ) -> Result<CreatePlan> {
        let image_ref = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| EngineError::invalid("config cannot be empty in order to create a container"))?;
        let image = self.images.resolve(&image_ref).map_err(|e| match e {
            skiff_image::ImageError::NotFound(_) => {
                let shown = skiff_image::Reference::parse_normalized(&image_ref)
                    .map(|r| r.with_default_tag().familiar())
                    .unwrap_or(image_ref.clone());
                EngineError::not_found(format!("No such image: {shown}"))
            }
            other => other.into(),
        })?;
        let mut hc = body.host_config.clone().unwrap_or_default();
        validate_config(&body)?;
        let (mut warnings, security) = validate_host_config(&hc)?;
        let mut config = merge_config(&body, &image);
        let entrypoint = config.entrypoint.clone().unwrap_or_default();
        let cmd = config.cmd.clone().unwrap_or_default();
        let mut argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() {
            return Err(EngineError::invalid("no command specified"));
        }
        let path = argv.remove(0);

        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_string();
                names::validate(&n)?;
                n
            }
            None => loop {
                let n = names::generate();
                if self.get(&n).is_err() {
                    break n;
                }
            },
        };
        let id = hex_id();
        if config.hostname.is_none() {
            // On the host's network a container is named as the host (as with dockerd).
            let host_net = hc.network_mode.as_deref() == Some("host");
            config.hostname = Some(match rustix::system::uname().nodename().to_str() {
                Ok(h) if host_net && !h.is_empty() => h.to_string(),
                _ => id[..12].to_string(),
            });
        }
        let mut mounts = super::plan::mounts(&hc, &config, &self.data_root, |name| {
            let donor = self.get(name).map_err(|_| EngineError::invalid(format!("No such container: {name}")))?;
            Ok(donor.with(|r| r.mounts.clone()))
        })?;
        if legacy_ro {
            super::plan::read_only_binds_non_recursive(&mut mounts);
        }
        if hc.network_mode.as_deref().is_none_or(|m| m.is_empty() || m == "default") {
            hc.network_mode = Some("bridge".into());
        }
        if let Some(m) = hc.network_mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
            let other = self.get(m)?;
            if other.id == id {
                return Err(EngineError::invalid("cannot join own network"));
            }
        }
        if let Some(l) = hc.links.clone().filter(|l| !l.is_empty()) {
            hc.links = Some(self.normalize_links(&name, &l)?);
        }
        let networks =
            self.endpoints_for_create(&mut hc, body.networking_config.as_ref(), body.mac_address.as_deref()).await?;
        if networks.is_empty() && hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
            if matches!(super::net::mode_of(&hc), super::net::Mode::Host) {
                warnings.push("Published ports are discarded when using host network mode".into());
            }
            hc.port_bindings = None;
        }
        // Bad port specifications fail here, not at start.
        Self::requested_ports(&hc, &config)?;
        let daemon = super::plan::Daemon {
            defaults: &self.defaults,
            log: self.default_log(),
            cgroup_v2: self.layout.is_v2(),
            memory_controller: self.layout_has("memory"),
        };
        warnings.extend(super::plan::host_defaults(&mut hc, &security, &daemon)?);

        Ok(CreatePlan {
            id,
            name,
            image_ref,
            image,
            config,
            hc,
            path,
            argv,
            mounts,
            networks,
            warnings,
            security,
            builder,
        })
    }

    /// Makes what the plan says — volumes, the name, the snapshot, the record — undoing what
    /// was made if a later step fails.
    async fn commit_create(self: &Arc<Self>, plan: CreatePlan) -> Result<(String, Vec<String>)> {
        let CreatePlan {
            id,
            name,
            image_ref,
            image,
            config,
            hc,
            path,
            argv,
            mut mounts,
            networks,
            warnings,
            security,
            builder,
        } = plan;
        let mut undo = Undo::default();
        let made = self.make_mounts(&id, &mut mounts, &mut undo);
        if let Err(e) = made {
            undo.run(self);
            return Err(e);
        }
        if let Err(e) = self.reserve_name(&name, &id) {
            undo.run(self);
            return Err(e);
        }
        undo.0.push(Step::Name(name.clone()));
        let rec = ContainerRecord {
            schema: super::record::SCHEMA,
            id: id.clone(),
            name: name.clone(),
            created: std::time::SystemTime::now(),
            image_ref,
            image_id: image.id().clone(),
            top_layer: image.top_layer().cloned(),
            config,
            host_config: hc,
            path,
            args: argv,
            mounts,
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            driver: self.images.driver().name().to_string(),
            exec_ids: Vec::new(),
            networks,
            sandbox: None,
            builder,
            paused_for_commit: false,
            security,
        };
        let this = self.clone();
        let rec2 = rec.clone();
        undo.0.push(Step::Snapshot(id.clone()));
        let prepared = tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(this.container_dir(&rec2.id))?;
            this.images.snapshots().prepare(&rec2.id, rec2.top_layer.as_ref())?;
            Ok(())
        })
        .await
        .map_err(EngineError::from_cause)
        .and_then(|r| r)
        .and_then(|()| Ok(self.db.put(super::TABLE, &id, &rec, Durability::Sync)?));
        if let Err(e) = prepared {
            undo.run(self);
            return Err(e);
        }
        // The record holds the volumes now.
        for v in undo.anonymous_volumes() {
            self.volumes.adopted(&v);
        }
        let c = Container::new(rec.clone());
        self.map.write().expect("map lock").insert(id.clone(), c);
        self.publish(&rec, "create");
        Ok((id, warnings))
    }

    /// Creates the plan's volumes (anonymous ones named now) and missing bind sources.
    fn make_mounts(&self, id: &str, mounts: &mut [MountSpec], undo: &mut Undo) -> Result<()> {
        for m in mounts.iter_mut() {
            match m.kind {
                MountKind::Volume if m.anonymous => {
                    // Marked as made for this container until its record is committed, so a
                    // daemon killed in between removes it at restart.
                    let v = self.volumes.create_anonymous_for(id)?;
                    undo.0.push(Step::AnonymousVolume(v.name.clone()));
                    m.source = v.name;
                }
                MountKind::Volume => {
                    // Named volumes may be shared: made if missing, never undone (as dockerd).
                    let v = self.volumes.create(Some(&m.source), None, BTreeMap::new(), BTreeMap::new())?;
                    m.source = v.name;
                }
                MountKind::Bind => {
                    if !Path::new(&m.source).exists() {
                        // `-v /host/path:/x` creates a missing host directory, as Docker does.
                        std::fs::create_dir_all(&m.source).map_err(|e| {
                            EngineError::invalid(format!("error while creating mount source path '{}': {e}", m.source))
                        })?;
                    }
                }
                MountKind::Tmpfs => {}
            }
        }
        Ok(())
    }

    fn layout_has(&self, subsystem: &str) -> bool {
        match &self.layout {
            skiff_runtime::cgroups::Layout::V1 { mounts } => mounts.contains_key(subsystem),
            skiff_runtime::cgroups::Layout::V2 { .. } => true,
        }
    }
}
