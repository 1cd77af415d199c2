//! The executor: runs a parsed Dockerfile through a [`Worker`] the way Docker's classic
//! builder does — every step
//! is an image; RUN runs in a container of the step's image (same isolation as `run`) and its
//! filesystem diff becomes the next layer; COPY/ADD unpack a tar of the sources into a
//! snapshot of the step's image (path-safe: the image's own symlinks cannot lead outside it)
//! and take the diff; the rest only changes the config.
//!
//! Cache: a step's key is the parent image, the instruction after substitution, the values of
//! the build args it can see, and for COPY/ADD a hash of what it copies (paths, types, modes,
//! owners, contents — not modification times). The worker keeps the keys (skiffd in its metadata database, so the
//! cache survives restarts); a hit reuses the image the step produced before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use skiff_common::rootfs;
use skiff_image::Reference;
use skiff_image::digest::Digest;
use skiff_image::layer::{self, UnpackOptions, WhiteoutMode};
use skiff_image::spec::{HealthConfig, RunConfig};

use crate::error::{BuildError, Result, invalid};
use crate::frontend::dockerfile::{self, Command, Health, Instruction, Stage};
use crate::frontend::plan::Plan;
use crate::frontend::{ignore, shell};
use crate::worker::{ImageInfo, RunLimits, Worker, inspect_rootfs};

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
    /// Resource limits of RUN steps (`--memory`, `--cpu-shares`, `--shm-size`...).
    pub run_limits: RunLimits,
    /// `--cache-from`: when set, a cached step is used only if its image is one of these
    /// images or in their history (as the classic builder limits its cache).
    pub cache_from: Vec<String>,
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

mod cache;
pub mod changes;
mod copy;
mod meta;
mod run;
mod step;

pub use meta::apply_meta;

use cache::hash_key;
use copy::{CopyPlan, walk, write_tar};
use meta::{StageState, env_lookup};

/// Runs builds on a worker. Cheap to clone.
pub struct Builder<W> {
    worker: Arc<W>,
}

impl<W> Clone for Builder<W> {
    fn clone(&self) -> Self {
        Builder { worker: self.worker.clone() }
    }
}

/// What one stage's steps share: the request, the Dockerfile, the stages built so far.
struct StageCtx<'a> {
    req: &'a BuildRequest,
    df: &'a dockerfile::Dockerfile,
    plan: &'a Plan,
    results: &'a HashMap<usize, ImageInfo>,
    ignore: Option<&'a ignore::Matcher>,
    out: &'a Out,
}

impl<W: Worker> Builder<W> {
    pub fn new(worker: Arc<W>) -> Self {
        Builder { worker }
    }

    /// Runs `f` off the async threads with a clone of the builder.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(Builder<W>) -> Result<T> + Send + 'static) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this)).await.map_err(|e| BuildError::internal(e.to_string()))?
    }

    fn meta_step(&self, st: &StageState, created_by: String) -> Result<ImageInfo> {
        self.worker.commit_config(st.image.as_ref(), &st.run, created_by)
    }

    /// Runs a build; returns the final image.
    pub async fn build(&self, req: BuildRequest, out: Out) -> Result<ImageInfo> {
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
        let plan = Plan::new(&df, &req.build_args, req.target.as_deref())?;
        let mut results: HashMap<usize, ImageInfo> = HashMap::new();
        let mut used_args: HashSet<String> = HashSet::new();
        // As the classic builder: every stage up to the target builds (each one's image ID is
        // reported), stages that do not depend on each other at the same time.
        for wave in plan.waves() {
            let cx =
                StageCtx { req: &req, df: &df, plan: &plan, results: &results, ignore: ignore.as_ref(), out: &out };
            let outs = futures_util::future::join_all(wave.iter().map(|&i| self.build_stage(&cx, i))).await;
            for (&i, r) in wave.iter().zip(outs) {
                let (img, used) = r?;
                used_args.extend(used);
                if i != plan.target {
                    out(BuildOut::Aux(serde_json::json!({ "ID": img.id })));
                }
                results.insert(i, img);
            }
        }
        let mut img = results.remove(&plan.target).ok_or_else(|| BuildError::internal("target stage did not build"))?;
        if !req.labels.is_empty() {
            let mut run = img.config.clone();
            let mut l = run.labels.unwrap_or_default();
            l.extend(req.labels.clone());
            run.labels = Some(l);
            let st = StageState { image: Some(img.clone()), run, args: BTreeMap::new() };
            img = self.meta_step(&st, "/bin/sh -c #(nop)  LABEL (build labels)".into())?;
        }
        let unused: Vec<&str> = req
            .build_args
            .keys()
            .filter(|k| !used_args.contains(*k) && !plan.global.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            say(&out, format!("[Warning] One or more build-args [{}] were not consumed\n", unused.join(" ")));
        }
        out(BuildOut::Aux(serde_json::json!({ "ID": img.id })));
        say(&out, format!("Successfully built {}\n", img.short()));
        for t in &req.tags {
            self.worker.tag(t, &img.id)?;
            say(&out, format!("Successfully tagged {}\n", t.familiar()));
        }
        Ok(img)
    }

    async fn build_stage(&self, cx: &StageCtx<'_>, index: usize) -> Result<(ImageInfo, HashSet<String>)> {
        let (req, df, out) = (cx.req, cx.df, cx.out);
        let stage: &Stage = &df.stages[index];
        let esc = df.directives.escape;
        let mut used_args = HashSet::new();
        let mut step = cx.plan.first_step[index];
        say(out, format!("Step {}/{} : {}\n", step, cx.plan.total, stage.text));
        let base = shell::expand(&stage.image, esc, &|k| cx.plan.global_value(k)).map_err(|e| invalid(e.0))?;
        let by_stage = df.stages[..index]
            .iter()
            .position(|s| s.name.as_deref() == Some(&base.to_ascii_lowercase()))
            .and_then(|j| cx.results.get(&j).cloned());
        let image = if let Some(img) = by_stage {
            Some(img)
        } else if base.eq_ignore_ascii_case("scratch") {
            None
        } else {
            Some(self.worker.base_image(&base, req.pull, out).await?)
        };
        match &image {
            Some(i) => say(out, format!(" ---> {}\n", i.short())),
            None => say(out, " ---> (scratch)\n"),
        }
        let mut run = image.as_ref().map(|i| i.config.clone()).unwrap_or_default();
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
        let name = if req.dockerfile.is_empty() { "Dockerfile" } else { &req.dockerfile };
        for (k, ins) in instrs.iter().enumerate() {
            if req.cancel.is_cancelled() {
                return Err(BuildError::cancelled());
            }
            if k >= n_triggers {
                step += 1;
                say(out, format!("Step {}/{} : {}\n", step, cx.plan.total, ins.text));
            }
            let img = self
                .step(cx, &mut st, &ins.value, &mut used_args)
                .await
                .map_err(|e| e.context(format_args!("{name}:{}", ins.line)))?;
            say(out, format!(" ---> {}\n", img.short()));
            st.image = Some(img);
        }
        let img = match st.image {
            Some(i) => i,
            None => self.meta_step(&st, "/bin/sh -c #(nop) FROM scratch".into())?,
        };
        Ok((img, used_args))
    }
}

#[cfg(test)]
mod tests;
