//! `docker commit`: a container's changes as a new image, with its configuration.

use std::sync::Arc;

use bollard_stubs::models::ContainerConfig;
use skiff_image::spec::{HealthConfig, RunConfig};
use skiff_image::store::NewImage;

use super::{Containers, RUNTIME_FILES};
use crate::error::{EngineError, Result};
use crate::events::{Event, EventKind};

/// What `POST /commit` asks for besides the container.
#[derive(Debug, Default)]
pub struct CommitOptions {
    pub reference: Option<skiff_image::Reference>,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// Dockerfile instructions applied to the configuration (`--change`).
    pub changes: Vec<String>,
    /// A configuration sent with the request: the base for the changes (none: the container's).
    pub config: Option<ContainerConfig>,
    /// Pause a running container while its filesystem is read.
    pub pause: bool,
}

impl Containers {
    /// `docker commit`: the container's changes as a new image.
    pub async fn commit(self: &Arc<Self>, id: &str, opts: CommitOptions) -> Result<String> {
        let CommitOptions { reference, author, comment, changes, config, pause } = opts;
        let c = self.get(id)?;
        let rec = c.record();
        let mut paused_here = pause && rec.state.status == super::Status::Running;
        if paused_here {
            // Recorded first: a daemon killed during the commit resumes the container.
            self.update(&c, skiff_image::db::Durability::Sync, |r| r.paused_for_commit = true)?;
            if let Err(e) = self.pause(&rec.id, true).await {
                let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| r.paused_for_commit = false);
                // A container that exits as we pause it (its monitor already gone) needs no
                // pause: dockerd commits it as it is.
                if !self.wait_stopped(&c, std::time::Duration::from_secs(2)).await {
                    return Err(e);
                }
                paused_here = false;
            }
        }
        let this = self.clone();
        let rec2 = rec.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<String> {
            let image = this
                .images
                .get(&rec2.image_id)
                .ok_or_else(|| EngineError::not_found(format!("No such image: {}", rec2.image_id)))?;
            let mut run = image.run_config();
            // The container's own settings become the new image's defaults.
            run.cmd = rec2.config.cmd.clone();
            run.entrypoint = rec2.config.entrypoint.clone();
            run.env = rec2.config.env.clone();
            run.working_dir = rec2.config.working_dir.clone().filter(|w| !w.is_empty());
            run.user = rec2.config.user.clone().filter(|u| !u.is_empty());
            run.labels = rec2.config.labels.clone().map(|l| l.into_iter().collect());
            run.exposed_ports =
                rec2.config.exposed_ports.clone().map(|p| p.into_keys().map(|k| (k, serde_json::json!({}))).collect());
            // A config sent with the commit is the base the changes apply to; what it leaves
            // out comes from the container (as dockerd merges them).
            match config {
                None => crate::build::apply_changes(&mut run, &changes)?,
                Some(user) => {
                    let mut mine = run_config_of(&user);
                    crate::build::apply_changes(&mut mine, &changes)?;
                    merge(&mut mine, &run);
                    run = mine;
                }
            }
            // The diff goes through a temporary file, not memory (a layer may be gigabytes).
            let tmp = this.images.tmp_dir().join(skiff_image::fsutil::random_name("commit"));
            let _cleanup = RemoveOnDrop(tmp.clone());
            {
                let f = std::fs::File::create(&tmp)?;
                let w = std::io::BufWriter::with_capacity(256 << 10, f);
                let mut w = this.images.snapshots().diff(&rec2.id, rec2.top_layer.as_ref(), w, RUNTIME_FILES)?;
                std::io::Write::flush(&mut w)?;
            }
            let mut tar = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(&tmp)?);
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("container".to_string(), serde_json::Value::String(rec2.id.clone()));
            let img = this.images.create_image(
                NewImage {
                    parent: Some(rec2.image_id.clone()),
                    run_config: run,
                    author,
                    comment,
                    created_by: Some(format!("{} {}", rec2.path, rec2.args.join(" ")).trim().to_string()),
                    extra,
                    platform: None,
                },
                Some(skiff_image::NewLayer::Tar(&mut tar)),
            )?;
            if let Some(r) = &reference {
                this.images.tag(r, img.id())?;
            }
            Ok(img.id().to_string())
        })
        .await
        .map_err(EngineError::from_cause);
        if paused_here {
            let _ = self.pause(&rec.id, false).await;
            let _ = self.update(&c, skiff_image::db::Durability::Lazy, |r| r.paused_for_commit = false);
        }
        let id = result??;
        self.publish(&rec, "commit");
        self.events.publish(Event::new(EventKind::Image, "commit", &id));
        Ok(id)
    }
}

/// A config from the API as an image's run config.
fn run_config_of(c: &ContainerConfig) -> RunConfig {
    let keys = |m: &Option<std::collections::HashMap<String, std::collections::HashMap<(), ()>>>| {
        m.as_ref().map(|m| m.keys().map(|k| (k.clone(), serde_json::json!({}))).collect())
    };
    RunConfig {
        user: c.user.clone().filter(|u| !u.is_empty()),
        exposed_ports: keys(&c.exposed_ports),
        env: c.env.clone().filter(|e| !e.is_empty()),
        entrypoint: c.entrypoint.clone().filter(|e| !e.is_empty()),
        cmd: c.cmd.clone().filter(|e| !e.is_empty()),
        volumes: keys(&c.volumes),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        labels: c.labels.clone().map(|l| l.into_iter().collect()),
        stop_signal: c.stop_signal.clone().filter(|s| !s.is_empty()),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: h.test.clone(),
            interval: h.interval,
            timeout: h.timeout,
            start_period: h.start_period,
            start_interval: h.start_interval,
            retries: h.retries,
        }),
        on_build: c.on_build.clone().filter(|o| !o.is_empty()),
        shell: c.shell.clone().filter(|s| !s.is_empty()),
        args_escaped: c.args_escaped,
        ..Default::default()
    }
}

/// Fills what `user` leaves out from `base`, as dockerd merges a commit's config with the
/// container's: env, labels, ports and volumes are unions (the user's values win); the command
/// comes from `base` only when the user set neither command nor entrypoint.
fn merge(user: &mut RunConfig, base: &RunConfig) {
    if user.user.is_none() {
        user.user = base.user.clone();
    }
    for (mine, theirs) in [(&mut user.exposed_ports, &base.exposed_ports), (&mut user.volumes, &base.volumes)] {
        if let Some(t) = theirs {
            let m = mine.get_or_insert_with(Default::default);
            for (k, v) in t {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    match &mut user.env {
        None => user.env = base.env.clone(),
        Some(env) => {
            for e in base.env.iter().flatten() {
                let key = e.split('=').next().unwrap_or("");
                if !env.iter().any(|u| u.split('=').next() == Some(key)) {
                    env.push(e.clone());
                }
            }
        }
    }
    if let Some(l) = &base.labels {
        let m = user.labels.get_or_insert_with(Default::default);
        for (k, v) in l {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if user.entrypoint.is_none() {
        if user.cmd.is_none() {
            user.cmd = base.cmd.clone();
            user.args_escaped = base.args_escaped;
        }
        user.entrypoint = base.entrypoint.clone();
    }
    match (&mut user.healthcheck, &base.healthcheck) {
        (None, Some(b)) => user.healthcheck = Some(b.clone()),
        (Some(u), Some(b)) => {
            if u.test.as_ref().is_none_or(|t| t.is_empty()) {
                u.test = b.test.clone();
            }
            u.interval = u.interval.filter(|d| *d != 0).or(b.interval);
            u.timeout = u.timeout.filter(|d| *d != 0).or(b.timeout);
            u.start_period = u.start_period.filter(|d| *d != 0).or(b.start_period);
            u.start_interval = u.start_interval.filter(|d| *d != 0).or(b.start_interval);
            u.retries = u.retries.filter(|d| *d != 0).or(b.retries);
        }
        _ => {}
    }
    if user.working_dir.is_none() {
        user.working_dir = base.working_dir.clone();
    }
    if user.stop_signal.is_none() {
        user.stop_signal = base.stop_signal.clone();
    }
}

/// Removes a temporary file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_config_is_merged_with_the_containers() {
        let base = RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            cmd: Some(vec!["top".into()]),
            labels: Some([("x".to_string(), "base".to_string())].into()),
            working_dir: Some("/srv".into()),
            ..Default::default()
        };
        let mut user = run_config_of(&ContainerConfig {
            env: Some(vec!["A=2".into(), "B=3".into()]),
            labels: Some([("x".to_string(), "user".to_string())].into()),
            ..Default::default()
        });
        merge(&mut user, &base);
        assert_eq!(user.env.unwrap(), vec!["A=2", "B=3", "PATH=/bin"]);
        assert_eq!(user.labels.unwrap()["x"], "user");
        assert_eq!(user.cmd.unwrap(), vec!["top"]);
        assert_eq!(user.working_dir.as_deref(), Some("/srv"));
        let mut user = run_config_of(&ContainerConfig { entrypoint: Some(vec!["sh".into()]), ..Default::default() });
        merge(&mut user, &base);
        assert_eq!(user.cmd, None, "an entrypoint of the user's own does not take the container's command");
    }
}
