//! Image operations as the Engine API offers them: list, inspect, history, tag, remove (with
//! Docker's conflict rules), prune; import, load, save, pull and push are in `transfer`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bollard_stubs::models::{
    HistoryResponseItem, ImageConfig as ApiImageConfig, ImageDeleteResponseItem, ImageInspect, ImageInspectRootFs,
    ImagePruneResponse, ImageSummary,
};
use skiff_image::store::Image;
use skiff_image::{Digest, ImageStore, Reference};

use crate::container::Containers;
use crate::error::{EngineError, Kind, Result};
use crate::events::{Event, EventKind, Events};

mod transfer;

pub struct Images {
    pub store: Arc<ImageStore>,
    pub events: Arc<Events>,
    /// Where names' repositories live; replaced whole when the daemon reloads its configuration.
    pub registries: std::sync::RwLock<Arc<skiff_distribution::RegistriesConfig>>,
}

impl From<skiff_distribution::DistError> for EngineError {
    fn from(e: skiff_distribution::DistError) -> Self {
        use skiff_distribution::DistError as D;
        let kind = match &e {
            D::NotFound(_) => Kind::NotFound,
            D::Unauthorized(_) => Kind::Unauthorized,
            D::Invalid(_) | D::Config(_) | D::TooLarge(_) | D::DigestMismatch { .. } => Kind::Invalid,
            D::Transport(_) | D::Registry { .. } => Kind::Unavailable,
            D::Store(_) | D::Io { .. } => Kind::Internal,
        };
        EngineError::new(kind, e.to_string())
    }
}

fn created_secs(img: &Image) -> i64 {
    img.config
        .created
        .as_deref()
        .and_then(skiff_common::timefmt::parse)
        .map(|t| skiff_common::timefmt::split(t).0)
        .unwrap_or(0)
}

/// Filters of `docker images --filter`.
#[derive(Debug, Default, Clone)]
pub struct ImageFilters {
    pub dangling: Option<bool>,
    pub labels: Vec<String>,
    pub references: Vec<String>,
    pub before: Option<String>,
    pub since: Option<String>,
    /// `until=`: images created before a time (RFC 3339, Unix seconds, or a duration ago).
    pub until: Option<String>,
}

/// Glob match for `reference=` filters (`*` and `?`).
fn glob(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && t[0] != '/' && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(&p, &t)
}

/// A `reference=` pattern against a familiar reference (`name:tag` or `name@digest`): the whole
/// of it or its name alone, as dockerd matches.
fn reference_matches(pattern: &str, r: &str) -> bool {
    let name_end = r.find('@').unwrap_or_else(|| match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => i,
        _ => r.len(),
    });
    glob(pattern, r) || glob(pattern, &r[..name_end])
}

fn api_config(img: &Image) -> ApiImageConfig {
    let rc = img.run_config();
    ApiImageConfig {
        user: rc.user.clone(),
        exposed_ports: rc.exposed_ports.clone().map(|p| p.into_keys().map(|k| (k, HashMap::new())).collect()),
        env: rc.env.clone(),
        cmd: rc.cmd.clone(),
        healthcheck: rc.healthcheck.as_ref().map(|h| bollard_stubs::models::HealthConfig {
            test: h.test.clone(),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
            start_interval: h.start_interval,
        }),
        args_escaped: rc.args_escaped,
        volumes: rc.volumes.clone().map(|v| v.into_keys().map(|k| (k, HashMap::new())).collect()),
        working_dir: rc.working_dir.clone(),
        entrypoint: rc.entrypoint.clone(),
        on_build: rc.on_build.clone(),
        labels: rc.labels.clone().map(|l| l.into_iter().collect()),
        stop_signal: rc.stop_signal.clone(),
        shell: rc.shell.clone(),
        ..Default::default()
    }
}

impl Images {
    /// The registries configuration in force.
    pub fn registries(&self) -> Arc<skiff_distribution::RegistriesConfig> {
        self.registries.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_registries(&self, r: skiff_distribution::RegistriesConfig) {
        *self.registries.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }

    fn tags_of(&self, img: &Image) -> (Vec<String>, Vec<String>) {
        let mut tags = Vec::new();
        let mut digests = img.record.repo_digests.clone();
        for r in self.store.refs_of(img.id()) {
            if r.digest().is_some() {
                digests.push(r.familiar());
            } else {
                tags.push(r.familiar());
            }
        }
        tags.sort();
        digests.sort();
        digests.dedup();
        (tags, digests)
    }

    pub fn list(&self, all: bool, f: &ImageFilters, containers: &Containers) -> Result<Vec<ImageSummary>> {
        let mut usage: HashMap<Digest, i64> = HashMap::new();
        for c in containers.all() {
            *usage.entry(c.with(|r| r.image_id.clone())).or_default() += 1;
        }
        let before = f.before.as_deref().map(|b| self.store.resolve(b)).transpose()?.map(|i| created_secs(&i));
        let since = f.since.as_deref().map(|b| self.store.resolve(b)).transpose()?.map(|i| created_secs(&i));
        let until = f
            .until
            .as_deref()
            .map(|u| {
                crate::container::logs::parse_time(u)
                    .map(|t| skiff_common::timefmt::split(t).0)
                    .map_err(|_| EngineError::invalid(format!("invalid filter 'until={u}'")))
            })
            .transpose()?;
        let mut out = Vec::new();
        for img in self.store.list() {
            let (mut tags, mut digests) = self.tags_of(&img);
            if !f.references.is_empty() {
                // Only the references that match are listed (and an image with none is not).
                tags.retain(|t| f.references.iter().any(|p| reference_matches(p, t)));
                digests.retain(|t| f.references.iter().any(|p| reference_matches(p, t)));
                if tags.is_empty() && digests.is_empty() {
                    continue;
                }
            }
            let dangling = tags.is_empty() && digests.is_empty();
            if !all && dangling && !self.store.children_of(img.id()).is_empty() {
                continue; // intermediate image
            }
            if let Some(d) = f.dangling
                && d != dangling
            {
                continue;
            }
            let labels: HashMap<String, String> = img.run_config().labels.unwrap_or_default().into_iter().collect();
            if !f.labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
                None => labels.contains_key(l),
            }) {
                continue;
            }
            let created = created_secs(&img);
            if before.is_some_and(|b| created >= b)
                || since.is_some_and(|s| created <= s)
                || until.is_some_and(|u| created >= u)
            {
                continue;
            }
            out.push(ImageSummary {
                id: img.id().to_string(),
                parent_id: img.record.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                repo_tags: tags,
                repo_digests: digests,
                created,
                size: img.record.size as i64,
                shared_size: -1,
                virtual_size: Some(img.record.size as i64),
                labels,
                containers: usage.get(img.id()).copied().unwrap_or(0),
                manifests: None,
                descriptor: None,
            });
        }
        Ok(out)
    }

    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let img = self.store.resolve(name)?;
        let (tags, digests) = self.tags_of(&img);
        let mut graph = HashMap::new();
        let dirs: Vec<String> =
            img.chain.iter().rev().map(|c| self.store.layers().dir(c).display().to_string()).collect();
        if let Some((top, rest)) = dirs.split_first() {
            graph.insert("UpperDir".to_string(), top.clone());
            if !rest.is_empty() {
                graph.insert("LowerDir".to_string(), rest.join(":"));
            }
        }
        Ok(ImageInspect {
            id: Some(img.id().to_string()),
            repo_tags: Some(tags),
            repo_digests: Some(digests),
            parent: Some(img.record.parent.as_ref().map(|p| p.to_string()).unwrap_or_default()),
            comment: Some(img.config.comment.clone().unwrap_or_default()),
            created: img.config.created.clone(),
            docker_version: Some(String::new()),
            author: Some(img.config.author.clone().unwrap_or_default()),
            config: Some(api_config(&img)),
            architecture: Some(img.config.architecture.clone()),
            variant: img.config.variant.clone(),
            os: Some(img.config.os.clone()),
            os_version: None,
            size: Some(img.record.size as i64),
            virtual_size: Some(img.record.size as i64),
            graph_driver: Some(bollard_stubs::models::DriverData {
                name: self.store.driver().name().into(),
                data: graph,
            }),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".into(),
                layers: Some(img.config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect()),
            }),
            metadata: Some(bollard_stubs::models::ImageInspectMetadata { last_tag_time: None }),
            descriptor: None,
            manifests: None,
        })
    }

    pub fn history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        let img = self.store.resolve(name)?;
        let layers = self.store.image_layers(&img)?;
        let mut sizes = layers.iter().map(|l| l.size as i64);
        let mut out = Vec::new();
        for h in &img.config.history {
            let size = if h.empty_layer { 0 } else { sizes.next().unwrap_or(0) };
            out.push(HistoryResponseItem {
                id: "<missing>".into(),
                created: h
                    .created
                    .as_deref()
                    .and_then(skiff_common::timefmt::parse)
                    .map(|t| skiff_common::timefmt::split(t).0)
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: vec![],
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        if out.is_empty() {
            // No history recorded: one line per layer.
            for l in &layers {
                out.push(HistoryResponseItem {
                    id: "<missing>".into(),
                    created: created_secs(&img),
                    created_by: String::new(),
                    tags: vec![],
                    size: l.size as i64,
                    comment: String::new(),
                });
            }
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first.id = img.id().to_string();
            first.tags = self.tags_of(&img).0;
        }
        Ok(out)
    }

    pub fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let img = self.store.resolve(name)?;
        let r = Reference::parse_normalized(repo)?;
        if r.digest().is_some() {
            return Err(EngineError::invalid("refusing to create a tag with a digest reference"));
        }
        let r = match tag.filter(|t| !t.is_empty()) {
            Some(t) => r.with_tag(t)?,
            None => r.with_default_tag(),
        };
        self.store.tag(&r, img.id())?;
        self.events.publish(Event::new(EventKind::Image, "tag", img.id().to_string()).attr("name", r.familiar()));
        Ok(())
    }

    /// `docker rmi`.
    pub fn remove(&self, name: &str, force: bool, containers: &Containers) -> Result<Vec<ImageDeleteResponseItem>> {
        let img = self.store.resolve(name)?;
        let id = img.id().clone();
        let short = &id.hex()[..12];
        let refs = self.store.refs_of(&id);
        let mut out = Vec::new();
        let by_ref = {
            let hex = name.strip_prefix("sha256:").unwrap_or(name);
            !(id.hex().starts_with(hex) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let users = containers.using_image(&id);
        let running = users.iter().find(|c| c.status().is_live());
        let untag = |r: &Reference, out: &mut Vec<ImageDeleteResponseItem>| -> Result<()> {
            self.store.untag(r)?;
            out.push(ImageDeleteResponseItem { untagged: Some(r.familiar()), deleted: None });
            self.events.publish(Event::new(EventKind::Image, "untag", id.to_string()).attr("name", r.familiar()));
            Ok(())
        };
        if by_ref {
            let r = Reference::parse_normalized(name)?.with_default_tag();
            let target = refs.iter().find(|x| **x == r).cloned().unwrap_or(r);
            if refs.len() > 1 {
                untag(&target, &mut out)?;
                return Ok(out);
            }
            // The last reference: removing it deletes the image, unless a container uses it.
            if let Some(c) = users.first()
                && !force
            {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                    &c.id[..12]
                )));
            }
            untag(&target, &mut out)?;
            // Forced while containers use it: the image stays, untagged.
            if !users.is_empty() {
                return Ok(out);
            }
        } else {
            if let Some(c) = running {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                    &c.id[..12]
                )));
            }
            if refs.len() > 1 && !force {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                )));
            }
            if let Some(c) = users.first()
                && !force
            {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                    &c.id[..12]
                )));
            }
            for r in &refs {
                untag(r, &mut out)?;
            }
            if !users.is_empty() {
                return Ok(out);
            }
        }
        if !self.store.children_of(&id).is_empty() {
            if out.is_empty() {
                return Err(EngineError::conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image has dependent child images"
                )));
            }
            return Ok(out);
        }
        self.store.delete(&id)?;
        out.push(ImageDeleteResponseItem { untagged: None, deleted: Some(id.to_string()) });
        self.events.publish(Event::new(EventKind::Image, "delete", id.to_string()));
        Ok(out)
    }

    /// `docker image prune`: dangling images (or, with `all`, every unused image).
    pub fn prune(&self, all: bool, containers: &Containers) -> Result<ImagePruneResponse> {
        let used: HashSet<Digest> = containers.all().iter().map(|c| c.with(|r| r.image_id.clone())).collect();
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        // Repeat: deleting a child can make its parent prunable.
        loop {
            let mut progress = false;
            for img in self.store.list() {
                if used.contains(img.id()) || !self.store.children_of(img.id()).is_empty() {
                    continue;
                }
                let refs = self.store.refs_of(img.id());
                if !all && !refs.is_empty() {
                    continue;
                }
                for r in &refs {
                    self.store.untag(r)?;
                    deleted.push(ImageDeleteResponseItem { untagged: Some(r.familiar()), deleted: None });
                }
                reclaimed += img.record.size as i64;
                self.store.delete(img.id())?;
                deleted.push(ImageDeleteResponseItem { untagged: None, deleted: Some(img.id().to_string()) });
                self.events.publish(Event::new(EventKind::Image, "delete", img.id().to_string()));
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.events.publish(Event::new(EventKind::Image, "prune", "").attr("reclaimed", reclaimed.to_string()));
        Ok(ImagePruneResponse { images_deleted: Some(deleted), space_reclaimed: Some(reclaimed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("busy*", "busybox:latest"));
        assert!(glob("busybox", "busybox"));
        assert!(!glob("busy*", "library/busybox"));
        assert!(glob("*/x", "a/x"));
    }

    #[test]
    fn references_match_whole_or_by_name() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:v1", "busybox:v1"));
        assert!(!reference_matches("busybox:v1", "busybox:v2"));
        assert!(reference_matches("localhost:5000/app", "localhost:5000/app:1"));
        assert!(!reference_matches("localhost", "localhost:5000/app:1"));
        assert!(reference_matches("app", "app@sha256:abc"));
    }
}
