//! Images in and out of the daemon: import, load and save archives; pull, push and log in to
//! registries.

use std::io::{Read, Write};
use std::sync::Arc;

use skiff_image::archive::{self, LoadResult, SaveItem};
use skiff_image::store::{Image, NewImage};
use skiff_image::{Digest, Reference};

use super::Images;
use crate::error::{EngineError, Result};
use crate::events::{Event, EventKind};

/// Archives (import, load, save).
impl Images {
    /// `docker import`: a rootfs tar (plain or compressed) as a one-layer image, for the
    /// host's platform or the one `--platform` names (any architecture; Linux only, as
    /// dockerd on Linux).
    pub fn import(
        &self,
        r: &mut dyn Read,
        reference: Option<Reference>,
        changes: &[String],
        message: Option<String>,
        platform: Option<&str>,
    ) -> Result<String> {
        let platform = match platform.filter(|p| !p.is_empty()) {
            Some(p) => {
                let p = skiff_image::spec::Platform::parse(p).map_err(EngineError::invalid)?;
                if p.os != "linux" {
                    return Err(EngineError::invalid(format!("{}: operating system is not supported", p.os)));
                }
                Some(p)
            }
            None => None,
        };
        let mut run = skiff_image::spec::RunConfig::default();
        crate::build::apply_changes(&mut run, changes)?;
        let img = self.store.create_image(
            NewImage {
                parent: None,
                run_config: run,
                author: None,
                comment: Some(message.filter(|m| !m.is_empty()).unwrap_or_else(|| "Imported from -".into())),
                created_by: None,
                extra: Default::default(),
                platform,
            },
            Some(skiff_image::NewLayer::Tar(r)),
        )?;
        if let Some(r) = &reference {
            self.store.tag(r, img.id())?;
        }
        self.events.publish(Event::new(EventKind::Image, "import", img.id().to_string()));
        Ok(img.id().to_string())
    }

    pub fn load(&self, r: impl Read) -> Result<LoadResult> {
        // As `docker load`: the archive may come gzip- or zstd-compressed.
        let (_, r) = skiff_image::layer::decompress(r)?;
        let res = archive::load(&self.store, r)?;
        for id in &res.images {
            self.events.publish(Event::new(EventKind::Image, "load", id.to_string()));
        }
        Ok(res)
    }

    /// `docker save`: names are references or IDs.
    pub fn save<W: Write>(&self, names: &[String], w: W) -> Result<W> {
        let items = self.save_items(names)?;
        self.write_save(&items, w)
    }

    /// Writes what [`Images::save_items`] chose as a docker-archive.
    pub fn write_save<W: Write>(&self, items: &[SaveItem], w: W) -> Result<W> {
        Ok(archive::save(&self.store, items, w)?)
    }

    /// What `docker save NAMES…` saves: the images and the names each carries (an unknown
    /// name is an error before anything is written).
    pub fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>> {
        let mut items: Vec<SaveItem> = Vec::new();
        let mut add = |img: Arc<Image>, refs: Vec<Reference>| {
            if let Some(existing) = items.iter_mut().find(|i| i.image.id() == img.id()) {
                for r in refs {
                    if !existing.refs.contains(&r) {
                        existing.refs.push(r);
                    }
                }
            } else {
                items.push(SaveItem { image: img, refs });
            }
        };
        for n in names {
            // As dockerd: a bare name saves every tag of that repository (each with its own
            // image); `name:tag` that tag; an ID (or a prefix) no names.
            if let Ok(r) = Reference::parse_normalized(n)
                && r.tag().is_none()
                && r.digest().is_none()
            {
                let repo = r.repository();
                let mut tagged: Vec<(Reference, Digest)> = self
                    .store
                    .all_refs()
                    .into_iter()
                    .filter(|(t, _)| t.tag().is_some() && t.repository() == repo)
                    .collect();
                tagged.sort_by_key(|(r, _)| r.to_string());
                if !tagged.is_empty() {
                    for (t, id) in tagged {
                        if let Some(i) = self.store.get(&id) {
                            self.events.publish(Event::new(EventKind::Image, "save", i.id().to_string()));
                            add(i, vec![t]);
                        }
                    }
                    continue;
                }
            }
            let img = self.store.resolve(n)?;
            self.events.publish(Event::new(EventKind::Image, "save", img.id().to_string()));
            let by_id = img.id().hex().starts_with(n.strip_prefix("sha256:").unwrap_or(n));
            match Reference::parse_normalized(n) {
                Ok(r) if !by_id && r.tag().is_some() => add(img, vec![r]),
                _ => add(img, vec![]),
            }
        }
        Ok(items)
    }
}

/// Registry operations (pull, push, login).
impl Images {
    /// Pulls an image; progress goes to `sink`. Emits Docker's `pull` event.
    pub async fn pull(
        &self,
        r: &Reference,
        platform: Option<&str>,
        creds: Option<skiff_distribution::Credentials>,
        sink: skiff_distribution::Sink,
    ) -> Result<skiff_distribution::pull::PullOutcome> {
        let platform = match platform.filter(|p| !p.is_empty()) {
            Some(p) => Some(skiff_distribution::pull::parse_platform(p)?),
            None => None,
        };
        let out =
            skiff_distribution::pull::pull(self.store.clone(), &self.registries(), r, platform, creds, sink).await?;
        self.events.publish(Event::new(EventKind::Image, "pull", r.familiar()).attr("name", r.familiar()));
        Ok(out)
    }

    /// Pushes a repository's tag (every tag when `r` has none). Emits Docker's `push` event.
    pub async fn push(
        &self,
        r: &Reference,
        creds: Option<skiff_distribution::Credentials>,
        sink: skiff_distribution::Sink,
    ) -> Result<Vec<skiff_distribution::push::PushOutcome>> {
        let out = skiff_distribution::push::push(self.store.clone(), &self.registries(), r, creds, sink).await?;
        self.events.publish(Event::new(EventKind::Image, "push", r.familiar()).attr("name", r.familiar()));
        Ok(out)
    }

    /// Checks credentials against a registry (`docker login`).
    pub async fn login(&self, server: &str, creds: skiff_distribution::Credentials) -> Result<()> {
        let host = server.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let domain = match host {
            "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
            h => h,
        };
        let ep = self
            .registries()
            .endpoints(domain, "library/x", true)
            .map_err(EngineError::invalid)?
            .pop()
            .ok_or_else(|| EngineError::invalid("no registry endpoint"))?;
        let reg = skiff_distribution::client::Registry::new(
            skiff_distribution::client::Transport::shared()?,
            ep,
            Some(creds),
        );
        reg.login().await?;
        Ok(())
    }
}
