//! The builder's executor: runs a parsed Dockerfile (`skiff_build::dockerfile`) against the
//! image store and the container runtime, the way Docker's classic builder does — every step
//! is an image; RUN runs in a container of the step's image (same isolation as `run`) and its
//! filesystem diff becomes the next layer; COPY/ADD unpack a tar of the sources into a
//! snapshot of the step's image (path-safe: the image's own symlinks cannot lead outside it)
//! and take the diff; the rest only changes the config.
//!
//! Cache: a step's key is the parent image, the instruction after substitution, the values of
//! the build args it can see, and for COPY/ADD a hash of what it copies (paths, types, modes,
//! owners, contents — not modification times). Keys live in the metadata database, so the cache
//! survives restarts; a hit reuses the image the step produced before.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_stubs::models::{ContainerCreateBody, HostConfig};
use sha2::{Digest as _, Sha256};
use skiff_build::dockerfile::{self, Command, Health, Instruction, Stage};
use skiff_build::{ignore, shell};
use skiff_image::digest::Digest;
use skiff_image::layer::{self, UnpackOptions, WhiteoutMode};
use skiff_image::spec::{HealthConfig, RunConfig};
use skiff_image::store::{Image, NewImage};
use skiff_image::{NewLayer, Reference, fsutil};

use crate::Engine;
use crate::container::rootfs;
use crate::error::{EngineError, Result};

const CACHE: &str = "build_cache";

/// What `POST /build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The extracted context.
    pub context: PathBuf,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub target: Option<String>,
    pub pull: bool,
    /// Remove the containers of successful RUN steps (`rm`, Docker's default).
    pub remove: bool,
    /// Remove the containers of failed RUN steps too (`forcerm`; implies `remove`).
    pub force_rm: bool,
    pub network: Option<String>,
    /// Directory of build secrets (`<id>` files), outside the context; never in any layer.
    pub secrets: Option<PathBuf>,
    /// Cancelled when the client goes away: the build stops at the next step, a running step's
    /// container is killed and removed.
    pub cancel: tokio_util::sync::CancellationToken,
    /// `--add-host` entries for RUN steps' /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// Resource limits of RUN steps (`--memory`, `--cpu-shares`, `--shm-size`…), as a host
    /// config's fields.
    pub run_limits: bollard_stubs::models::HostConfig,
    /// `--cache-from`: when set, a cached step is used only if its image is one of these
    /// images or in their history (as the classic builder limits its cache).
    pub cache_from: Vec<String>,
}

fn cancelled() -> EngineError {
    EngineError::invalid("the build was cancelled (its client went away)")
}

/// Progress output: text for the `stream` field, or an `aux` object.
pub enum BuildOut {
    Stream(String),
    Aux(serde_json::Value),
}

pub type Out = Arc<dyn Fn(BuildOut) + Send + Sync>;

fn say(out: &Out, s: impl Into<String>) {
    out(BuildOut::Stream(s.into()));
}

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::invalid(m)
}

pub mod changes;
mod copy;
mod meta;
mod run;
mod step;

use copy::{CopyPlan, walk, write_tar};
use meta::{StageState, apply_meta, env_lookup};

fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl Engine {
    /// Mounts a throwaway snapshot of `image` and runs `f` on its root.
    fn with_snapshot<T>(&self, image: Option<&Arc<Image>>, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let snaps = self.images.store.snapshots();
        let key = fsutil::random_name("build");
        let top = image.and_then(|i| i.top_layer().cloned());
        snaps.prepare(&key, top.as_ref())?;
        let r = (|| {
            let root = snaps.mount(&key, top.as_ref())?;
            f(&root)
        })();
        let _ = snaps.unmount(&key);
        let _ = snaps.remove(&key);
        r
    }

    /// Applies a filesystem change made by `f` on a snapshot of the step's image, and records
    /// the diff as a new image.
    fn layer_step(
        &self,
        st: &StageState,
        created_by: String,
        f: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Arc<Image>> {
        let snaps = self.images.store.snapshots();
        let key = fsutil::random_name("build");
        let top = st.image.as_ref().and_then(|i| i.top_layer().cloned());
        snaps.prepare(&key, top.as_ref())?;
        let r = (|| {
            let root = snaps.mount(&key, top.as_ref())?;
            f(&root)?;
            snaps.unmount(&key)?;
            self.commit_snapshot(&key, top.as_ref(), st, created_by, &[])
        })();
        let _ = snaps.unmount(&key);
        let _ = snaps.remove(&key);
        r
    }

    /// Records an unmounted snapshot's changes as a new image on top of the step's image. With
    /// overlay the upper directory becomes the layer as it is (packed once for its digest);
    /// otherwise the diff goes through a tar. `skip`: mount points left out.
    fn commit_snapshot(
        &self,
        key: &str,
        top: Option<&Digest>,
        st: &StageState,
        created_by: String,
        skip: &[&str],
    ) -> Result<Arc<Image>> {
        let snaps = self.images.store.snapshots();
        let new = NewImage {
            parent: st.image.as_ref().map(|i| i.id().clone()),
            run_config: st.run.clone(),
            created_by: Some(created_by),
            ..Default::default()
        };
        if let Some(dir) = snaps.upper_dir(key) {
            return Ok(self.images.store.create_image(new, Some(NewLayer::Upper { dir: &dir, skip }))?);
        }
        let tmp = self.images.store.tmp_dir().join(fsutil::random_name("layer"));
        let r = (|| -> Result<Arc<Image>> {
            let file = std::fs::File::create(&tmp)?;
            snaps.diff(key, top, std::io::BufWriter::new(file), skip)?.flush()?;
            let mut reader = std::io::BufReader::new(std::fs::File::open(&tmp)?);
            Ok(self.images.store.create_image(new, Some(NewLayer::Tar(&mut reader)))?)
        })();
        let _ = std::fs::remove_file(&tmp);
        r
    }

    fn meta_step(&self, st: &StageState, created_by: String) -> Result<Arc<Image>> {
        Ok(self.images.store.create_image(
            NewImage {
                parent: st.image.as_ref().map(|i| i.id().clone()),
                run_config: st.run.clone(),
                created_by: Some(created_by),
                ..Default::default()
            },
            None,
        )?)
    }

    /// The image a step's cache key found, if any; with `cache_from`, only if it is one of those
    /// images or in their history.
    fn cached(&self, key: &str, cache_from: &[String]) -> Option<Arc<Image>> {
        let id: Option<Digest> = self.db.get(CACHE, key).ok().flatten();
        let img = id.and_then(|id| self.images.store.get(&id))?;
        if cache_from.is_empty() {
            return Some(img);
        }
        for f in cache_from {
            let Ok(src) = self.images.store.resolve(f) else { continue };
            let mut cur = Some(src.id().clone());
            for _ in 0..10_000 {
                let Some(c) = cur else { break };
                if &c == img.id() {
                    return Some(img);
                }
                cur = self.images.store.get(&c).and_then(|i| i.record.parent.clone());
            }
        }
        None
    }

    fn remember(&self, key: &str, img: &Image) {
        let _ = self.db.put(CACHE, key, img.id(), skiff_image::db::Durability::Lazy);
    }

    /// Removes every build cache entry; returns how many.
    pub fn builder_prune(&self) -> Result<usize> {
        let all: Vec<(String, Digest)> = self.db.list(CACHE)?;
        for (k, _) in &all {
            self.db.delete(CACHE, k)?;
        }
        Ok(all.len())
    }

    /// Runs a build; returns the final image.
    pub async fn build(self: &Arc<Self>, req: BuildRequest, out: Out) -> Result<Arc<Image>> {
        let df_path = req.context.join(ignore::clean(&req.dockerfile));
        if !df_path.starts_with(&req.context) {
            return Err(invalid("the Dockerfile must be inside the build context"));
        }
        let name = if req.dockerfile.is_empty() { "Dockerfile".to_string() } else { req.dockerfile.clone() };
        let text = std::fs::read_to_string(&df_path)
            .map_err(|e| invalid(format!("Cannot locate specified Dockerfile: {name} ({e})")))?;
        if text.is_empty() {
            return Err(invalid(format!("the Dockerfile ({name}) cannot be empty")));
        }
        if text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#')) {
            return Err(invalid(format!("dockerfile parse error on {name}: file with no instructions")));
        }
        let df = dockerfile::parse(&text, &name).map_err(|e| invalid(format!("dockerfile parse error {e}")))?;
        let ignore = std::fs::read_to_string(req.context.join(".dockerignore")).ok().map(|t| ignore::Matcher::new(&t));
        let esc = df.directives.escape;
        // Global ARGs (usable in FROM lines).
        let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
        let predefined = [
            ("TARGETPLATFORM", "linux/amd64"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "amd64"),
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDOS", "linux"),
            ("BUILDARCH", "amd64"),
        ];
        for a in &df.global_args {
            let lookup = |k: &str| global.get(k).cloned().flatten();
            let def = match &a.value.default {
                Some(d) => Some(shell::expand(d, esc, &lookup).map_err(|e| invalid(e.0))?),
                None => None,
            };
            let v = req.build_args.get(&a.value.name).cloned().or(def);
            global.insert(a.value.name.clone(), v);
        }
        let global_lookup = |k: &str| {
            global
                .get(k)
                .cloned()
                .flatten()
                .or_else(|| predefined.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        };
        // Which stages the target needs.
        let target = match &req.target {
            Some(t) => df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
                .ok_or_else(|| invalid(format!("failed to reach build target {t} in Dockerfile")))?,
            None => df.stages.len() - 1,
        };
        let stage_index = |name: &str| -> Option<usize> {
            let n = name.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(&n))
                .or_else(|| n.parse::<usize>().ok().filter(|i| *i < df.stages.len()))
        };
        // As the classic builder: every stage up to the target builds (each one's image ID is
        // reported), stages that do not depend on each other at the same time.
        let mut needed = vec![false; df.stages.len()];
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); df.stages.len()];
        let mut stack: Vec<usize> = (0..=target).collect();
        while let Some(i) = stack.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            let s = &df.stages[i];
            let base = shell::expand(&s.image, esc, &global_lookup).map_err(|e| invalid(e.0))?;
            if let Some(j) = stage_index(&base).filter(|j| *j < i) {
                deps[i].push(j);
                stack.push(j);
            }
            for ins in &s.instructions {
                let mut froms: Vec<String> = Vec::new();
                match &ins.value {
                    Instruction::Copy(c) => froms.extend(c.from.clone()),
                    Instruction::Run(r) => {
                        for m in &r.mounts {
                            froms.extend(
                                m.split(',').filter_map(|p| p.trim().strip_prefix("from=")).map(str::to_string),
                            );
                        }
                    }
                    _ => {}
                }
                for f in froms {
                    if let Some(j) = stage_index(&f).filter(|j| *j < i) {
                        deps[i].push(j);
                        stack.push(j);
                    }
                }
            }
        }
        let total: usize =
            df.stages.iter().enumerate().filter(|(i, _)| needed[*i]).map(|(_, s)| s.instructions.len() + 1).sum();
        // Step numbers are fixed per stage, so output stays readable when stages run together.
        let mut first_step = vec![0usize; df.stages.len()];
        let mut n = 1;
        for (i, st) in df.stages.iter().enumerate() {
            if needed[i] {
                first_step[i] = n;
                n += st.instructions.len() + 1;
            }
        }
        let mut results: HashMap<usize, Arc<Image>> = HashMap::new();
        let mut used_args: std::collections::HashSet<String> = std::collections::HashSet::new();
        // Stages whose dependencies are built run concurrently, wave by wave.
        let mut done = vec![false; df.stages.len()];
        loop {
            let wave: Vec<usize> =
                (0..df.stages.len()).filter(|&i| needed[i] && !done[i] && deps[i].iter().all(|d| done[*d])).collect();
            if wave.is_empty() {
                break;
            }
            let futs = wave.iter().map(|&i| {
                self.build_stage(
                    &req,
                    &df,
                    &df.stages[i],
                    i,
                    esc,
                    &global,
                    &global_lookup,
                    &results,
                    first_step[i],
                    total,
                    ignore.as_ref(),
                    &out,
                )
            });
            let outs = futures_util::future::join_all(futs).await;
            for (&i, r) in wave.iter().zip(outs) {
                let (img, used) = r?;
                used_args.extend(used);
                if i != target {
                    out(BuildOut::Aux(serde_json::json!({ "ID": img.id().to_string() })));
                }
                results.insert(i, img);
                done[i] = true;
            }
        }
        let mut img = results.remove(&target).ok_or_else(|| EngineError::internal("target stage did not build"))?;
        if !req.labels.is_empty() {
            let mut run = img.run_config();
            let mut l = run.labels.unwrap_or_default();
            l.extend(req.labels.clone());
            run.labels = Some(l);
            let st = StageState { image: Some(img.clone()), run, args: BTreeMap::new() };
            img = self.meta_step(&st, "/bin/sh -c #(nop)  LABEL (build labels)".into())?;
        }
        let unused: Vec<&String> =
            req.build_args.keys().filter(|k| !used_args.contains(*k) && !global.contains_key(*k)).collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            say(&out, format!("[Warning] One or more build-args [{}] were not consumed\n", names.join(" ")));
        }
        out(BuildOut::Aux(serde_json::json!({ "ID": img.id().to_string() })));
        say(&out, format!("Successfully built {}\n", img.id().short()));
        for t in &req.tags {
            self.images.store.tag(t, img.id())?;
            say(&out, format!("Successfully tagged {}\n", t.familiar()));
        }
        Ok(img)
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_stage(
        self: &Arc<Self>,
        req: &BuildRequest,
        df: &dockerfile::Dockerfile,
        stage: &Stage,
        index: usize,
        esc: char,
        global: &BTreeMap<String, Option<String>>,
        global_lookup: &(dyn Fn(&str) -> Option<String> + Sync),
        results: &HashMap<usize, Arc<Image>>,
        first_step: usize,
        total: usize,
        ignore: Option<&ignore::Matcher>,
        out: &Out,
    ) -> Result<(Arc<Image>, std::collections::HashSet<String>)> {
        let mut used_args = std::collections::HashSet::new();
        let mut step = first_step;
        say(out, format!("Step {}/{} : {}\n", step, total, stage.text));
        let base = shell::expand(&stage.image, esc, global_lookup).map_err(|e| invalid(e.0))?;
        let by_stage = df.stages[..index]
            .iter()
            .position(|s| s.name.as_deref() == Some(&base.to_ascii_lowercase()))
            .and_then(|j| results.get(&j).cloned());
        let image = if let Some(img) = by_stage {
            Some(img)
        } else if base.eq_ignore_ascii_case("scratch") {
            None
        } else {
            Some(self.base_image(&base, req.pull, out).await?)
        };
        match &image {
            Some(i) => say(out, format!(" ---> {}\n", i.id().short())),
            None => say(out, " ---> (scratch)\n"),
        }
        let mut run = image.as_ref().map(|i| i.run_config()).unwrap_or_default();
        // As Docker's builders do: a base without PATH gets the default one.
        if !run.env.iter().flatten().any(|e| e.starts_with("PATH=")) {
            let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
            env.extend(run.env.take().unwrap_or_default());
            run.env = Some(env);
        }
        let mut st = StageState { image, run, args: BTreeMap::new() };
        // ONBUILD triggers of the base run first.
        let triggers = st.run.on_build.take().unwrap_or_default();
        let mut instrs: Vec<dockerfile::Located<Instruction>> = Vec::new();
        for t in &triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"), "ONBUILD")
                .map_err(|e| invalid(format!("ONBUILD trigger: {e}")))?;
            instrs.extend(parsed.stages[0].instructions.iter().cloned());
        }
        if !triggers.is_empty() {
            say(out, format!("# Executing {} build trigger(s)\n", triggers.len()));
        }
        let n_triggers = instrs.len();
        instrs.extend(stage.instructions.iter().cloned());
        for (k, ins) in instrs.iter().enumerate() {
            if req.cancel.is_cancelled() {
                return Err(cancelled());
            }
            if k >= n_triggers {
                step += 1;
                say(out, format!("Step {}/{} : {}\n", step, total, ins.text));
            }
            let r = self.step(req, &mut st, &ins.value, esc, global, results, df, ignore, &mut used_args, out).await;
            let img = r.map_err(|e| EngineError {
                message: format!(
                    "{name}:{line}: {msg}",
                    name = if req.dockerfile.is_empty() { "Dockerfile" } else { &req.dockerfile },
                    line = ins.line,
                    msg = e.message
                ),
                ..e
            })?;
            say(out, format!(" ---> {}\n", img.id().short()));
            st.image = Some(img);
        }
        let img = match st.image {
            Some(i) => i,
            None => self.meta_step(&st, "/bin/sh -c #(nop) FROM scratch".into())?,
        };
        Ok((img, used_args))
    }

    async fn base_image(self: &Arc<Self>, name: &str, pull: bool, out: &Out) -> Result<Arc<Image>> {
        let r = Reference::parse_normalized(name).map_err(|e| invalid(e.to_string()))?.with_default_tag();
        if !pull && let Ok(i) = self.images.store.resolve(name) {
            return Ok(i);
        }
        let out2 = out.clone();
        let sink: skiff_distribution::Sink = Arc::new(move |p| {
            if let skiff_distribution::Progress::Status(s) = p {
                out2(BuildOut::Stream(format!("{s}\n")));
            }
        });
        match self.images.pull(&r, None, None, sink).await {
            Ok(o) => Ok(o.image),
            Err(e) => match self.images.store.resolve(name) {
                Ok(i) if pull => Ok(i),
                _ => Err(e),
            },
        }
    }
}
