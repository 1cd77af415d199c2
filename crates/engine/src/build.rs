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
    /// Remove intermediate containers of failed steps too.
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

/// The state of one stage while it builds.
struct StageState {
    image: Option<Arc<Image>>,
    run: RunConfig,
    /// Declared ARGs in scope with their values.
    args: BTreeMap<String, Option<String>>,
}

impl StageState {
    fn env(&self) -> Vec<String> {
        self.run.env.clone().unwrap_or_default()
    }
    fn lookup(&self, k: &str) -> Option<String> {
        for e in self.env().iter().rev() {
            if let Some(v) = e.strip_prefix(k).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
        self.args.get(k).cloned().flatten()
    }
    fn expand(&self, w: &str, esc: char) -> Result<String> {
        shell::expand(w, esc, &|k| self.lookup(k)).map_err(|e| invalid(e.0))
    }
    fn set_env(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        env.retain(|e| e.split_once('=').map(|(a, _)| a) != Some(k));
        env.push(format!("{k}={v}"));
        self.run.env = Some(env);
    }
    fn shell(&self) -> Vec<String> {
        self.run.shell.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
    fn workdir(&self) -> String {
        self.run.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }
}

fn hash_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// `5s`, `1m30s`, `100ms` → nanoseconds.
fn parse_duration(s: &str) -> Result<i64> {
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        if (c == 'u' || c == 'n') && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let v: f64 = num.parse().map_err(|_| invalid(format!("invalid duration {s:?}")))?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" => 1e3,
            "ns" => 1.0,
            _ => return Err(invalid(format!("invalid duration {s:?}"))),
        };
    }
    if !num.is_empty() {
        return Err(invalid(format!("invalid duration {s:?}: missing unit")));
    }
    Ok(total as i64)
}

/// One file to copy, found in a source tree.
struct Entry {
    /// Path under the source root.
    src: PathBuf,
    /// Name in the destination directory (may contain '/').
    name: String,
    meta: std::fs::Metadata,
}

/// What to copy: entries and where to put them.
struct CopyPlan {
    /// Destination directory in the image (absolute), where entries are unpacked.
    dest_dir: String,
    entries: Vec<Entry>,
    /// Files whose content comes from a heredoc: (name in dest_dir, content).
    inline: Vec<(String, Vec<u8>)>,
}

/// Collects a source and, if it is a directory, what is below it (not following symlinks),
/// in sorted depth-first order. An explicit stack: a context's depth is the client's choice.
fn walk(root: &Path, rel: &Path, name: &str, ignore: Option<&ignore::Matcher>, out: &mut Vec<Entry>) -> Result<()> {
    let mut stack = vec![(rel.to_path_buf(), name.to_string())];
    while let Some((rel, name)) = stack.pop() {
        let p = root.join(&rel);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| invalid(format!("{}: {e}", rel.display())))?;
        let is_dir = meta.is_dir();
        if !name.is_empty() {
            out.push(Entry { src: p.clone(), name: name.clone(), meta });
        }
        if !is_dir {
            continue;
        }
        let mut kids: Vec<_> = std::fs::read_dir(&p)?.flatten().map(|e| e.file_name()).collect();
        kids.sort();
        for k in kids.into_iter().rev() {
            let krel = rel.join(&k);
            if let Some(m) = ignore
                && m.excluded(&krel.to_string_lossy())
                && !m.has_exceptions()
            {
                continue;
            }
            let kname = if name.is_empty() {
                k.to_string_lossy().into_owned()
            } else {
                format!("{name}/{}", k.to_string_lossy())
            };
            stack.push((krel, kname));
        }
    }
    if let Some(m) = ignore
        && m.has_exceptions()
    {
        out.retain(|e| {
            let r = e.src.strip_prefix(root).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
            !m.excluded(&r) || e.meta.is_dir()
        });
    }
    Ok(())
}

/// Lists the context-relative paths matching a glob (files and directories).
fn glob_sources(root: &Path, pattern: &str, ignore: Option<&ignore::Matcher>) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { n } else { format!("{rel}/{n}") };
            all.push(r.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(r);
            }
        }
    }
    let mut m: Vec<String> =
        all.into_iter().filter(|r| ignore::glob_match(pattern, r) && ignore.is_none_or(|i| !i.excluded(r))).collect();
    m.sort();
    m
}

/// Writes the copy plan as a tar (owners and modes applied) and hashes what it copies.
/// With `w`, writes the plan as a tar; without, only hashes it.
fn write_tar<W: Write>(plan: &CopyPlan, owner: Option<(u32, u32)>, chmod: Option<u32>, w: Option<W>) -> Result<String> {
    let mut hash = Sha256::new();
    let mut b = w.map(|w| {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        b
    });
    let (uid, gid) = owner.unwrap_or((0, 0));
    for (name, content) in &plan.inline {
        let mode = chmod.unwrap_or(0o644);
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        if let Some(b) = b.as_mut() {
            b.append_data(&mut h, name, &content[..])?;
        }
        hash.update(format!("inline {name} {mode:o} {uid}:{gid} {}\n", Digest::of(content)).as_bytes());
    }
    for e in &plan.entries {
        let ft = e.meta.file_type();
        let mut h = tar::Header::new_gnu();
        let mode = chmod.unwrap_or(e.meta.permissions().mode() & 0o7777);
        h.set_mode(mode);
        h.set_uid(owner.map(|o| o.0).unwrap_or(e.meta.uid()) as u64);
        h.set_gid(owner.map(|o| o.1).unwrap_or(e.meta.gid()) as u64);
        if owner.is_none() {
            // COPY without --chown: root, as Docker does.
            h.set_uid(0);
            h.set_gid(0);
        }
        h.set_mtime(e.meta.mtime().max(0) as u64);
        let (u, g) = (h.uid()?, h.gid()?);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            if let Some(b) = b.as_mut() {
                b.append_data(&mut h, format!("{}/", e.name), std::io::empty())?;
            }
            hash.update(format!("dir {} {mode:o} {u}:{g}\n", e.name).as_bytes());
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&e.src)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            if let Some(b) = b.as_mut() {
                b.append_link(&mut h, &e.name, &target)?;
            }
            hash.update(format!("link {} {} {u}:{g}\n", e.name, target.display()).as_bytes());
        } else if ft.is_file() {
            let mut f = std::fs::File::open(&e.src)?;
            let mut ch = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                ch.update(&buf[..n]);
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(e.meta.len());
            if let Some(b) = b.as_mut() {
                b.append_data(&mut h, &e.name, std::fs::File::open(&e.src)?)?;
            }
            hash.update(format!("file {} {mode:o} {u}:{g} {}\n", e.name, hex::encode(ch.finalize())).as_bytes());
        }
        // Sockets, fifos and devices in a context are skipped, as Docker does.
    }
    if let Some(mut b) = b {
        b.finish()?;
    }
    Ok(hex::encode(hash.finalize()))
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
        if text.trim().is_empty() {
            return Err(invalid(format!("the Dockerfile ({name}) cannot be empty")));
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
        let mut needed = vec![false; df.stages.len()];
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); df.stages.len()];
        let mut stack = vec![target];
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

    #[allow(clippy::too_many_arguments)]
    async fn step(
        self: &Arc<Self>,
        req: &BuildRequest,
        st: &mut StageState,
        ins: &Instruction,
        esc: char,
        global: &BTreeMap<String, Option<String>>,
        results: &HashMap<usize, Arc<Image>>,
        df: &dockerfile::Dockerfile,
        ignore: Option<&ignore::Matcher>,
        used_args: &mut std::collections::HashSet<String>,
        out: &Out,
    ) -> Result<Arc<Image>> {
        let parent = st.image.as_ref().map(|i| i.id().to_string()).unwrap_or_default();
        let args_seen: String = st
            .args
            .iter()
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n");
        let nop = |s: String| format!("/bin/sh -c #(nop)  {s}");
        // Metadata instructions: change the config, key on the resulting config.
        let meta = |st: &mut StageState, desc: String, this: &Arc<Engine>| -> Result<Arc<Image>> {
            let cfg = serde_json::to_string(&st.run).unwrap_or_default();
            let key = hash_key(&[&parent, &desc, &cfg]);
            if !req.no_cache
                && let Some(img) = this.cached(&key, &req.cache_from)
            {
                say(out, " ---> Using cache\n");
                return Ok(img);
            }
            let img = this.meta_step(st, nop(desc))?;
            this.remember(&key, &img);
            Ok(img)
        };
        match ins {
            Instruction::Env(kv) => {
                // Every value sees the environment from before this instruction, as in Docker.
                let mut pairs = Vec::new();
                for (k, v) in kv {
                    pairs.push((st.expand(k, esc)?, st.expand(v, esc)?));
                }
                let mut desc = Vec::new();
                for (k, v) in pairs {
                    st.set_env(&k, &v);
                    desc.push(format!("{k}={v}"));
                }
                meta(st, format!("ENV {}", desc.join(" ")), self)
            }
            Instruction::Label(kv) => {
                let mut labels = st.run.labels.clone().unwrap_or_default();
                for (k, v) in kv {
                    labels.insert(st.expand(k, esc)?, st.expand(v, esc)?);
                }
                st.run.labels = Some(labels);
                meta(st, "LABEL".into(), self)
            }
            Instruction::Maintainer(m) => meta(st, format!("MAINTAINER {m}"), self),
            Instruction::Expose(ports) => {
                let mut e = st.run.exposed_ports.clone().unwrap_or_default();
                for p in ports {
                    let p = st.expand(p, esc)?;
                    let p = if p.contains('/') { p.to_ascii_lowercase() } else { format!("{p}/tcp") };
                    e.insert(p, serde_json::json!({}));
                }
                st.run.exposed_ports = Some(e);
                meta(st, format!("EXPOSE {}", ports.join(" ")), self)
            }
            Instruction::Volume(v) => {
                let mut vols = st.run.volumes.clone().unwrap_or_default();
                for p in v {
                    vols.insert(st.expand(p, esc)?, serde_json::json!({}));
                }
                st.run.volumes = Some(vols);
                meta(st, format!("VOLUME {v:?}"), self)
            }
            Instruction::User(u) => {
                st.run.user = Some(st.expand(u, esc)?);
                meta(st, format!("USER {u}"), self)
            }
            Instruction::StopSignal(s) => {
                st.run.stop_signal = Some(st.expand(s, esc)?);
                meta(st, format!("STOPSIGNAL {s}"), self)
            }
            Instruction::Shell(s) => {
                st.run.shell = Some(s.clone());
                meta(st, format!("SHELL {s:?}"), self)
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                let argv = match c {
                    Command::Exec(v) => v.clone(),
                    Command::Shell(s) => {
                        let mut v = st.shell();
                        v.push(s.clone());
                        v
                    }
                };
                if matches!(ins, Instruction::Cmd(_)) {
                    st.run.cmd = Some(argv.clone());
                    meta(st, format!("CMD {argv:?}"), self)
                } else {
                    st.run.entrypoint = Some(argv.clone());
                    // A new entrypoint resets an inherited CMD, as Docker does.
                    st.run.cmd = None;
                    meta(st, format!("ENTRYPOINT {argv:?}"), self)
                }
            }
            Instruction::Healthcheck(h) => {
                st.run.healthcheck = Some(match h {
                    Health::None => HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() },
                    Health::Check { command, interval, timeout, start_period, start_interval, retries } => {
                        let test = match command {
                            Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let d = |x: &Option<String>| x.as_deref().map(parse_duration).transpose();
                        HealthConfig {
                            test: Some(test),
                            interval: d(interval)?,
                            timeout: d(timeout)?,
                            start_period: d(start_period)?,
                            start_interval: d(start_interval)?,
                            retries: retries
                                .as_deref()
                                .map(|r| r.parse::<i64>().map_err(|_| invalid(format!("invalid --retries {r:?}"))))
                                .transpose()?,
                        }
                    }
                });
                meta(st, "HEALTHCHECK".into(), self)
            }
            Instruction::Onbuild(t) => {
                let mut ob = st.run.on_build.clone().unwrap_or_default();
                ob.push(t.clone());
                st.run.on_build = Some(ob);
                meta(st, format!("ONBUILD {t}"), self)
            }
            Instruction::Arg(decls) => {
                for d in decls {
                    used_args.insert(d.name.clone());
                    let def = match &d.default {
                        Some(v) => Some(st.expand(v, esc)?),
                        None => global.get(&d.name).cloned().flatten(),
                    };
                    let v = req.build_args.get(&d.name).cloned().or(def);
                    st.args.insert(d.name.clone(), v);
                }
                let args: String = st
                    .args
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ");
                meta(st, format!("ARG {args}"), self)
            }
            Instruction::Workdir(w) => {
                let w = st.expand(w, esc)?;
                let abs = if w.starts_with('/') { w } else { format!("{}/{}", st.workdir().trim_end_matches('/'), w) };
                st.run.working_dir = Some(abs.clone());
                let key = hash_key(&[&parent, "WORKDIR", &abs, &serde_json::to_string(&st.run).unwrap_or_default()]);
                if !req.no_cache
                    && let Some(img) = self.cached(&key, &req.cache_from)
                {
                    say(out, " ---> Using cache\n");
                    return Ok(img);
                }
                let this = self.clone();
                let st2 = StageState { image: st.image.clone(), run: st.run.clone(), args: st.args.clone() };
                let img = tokio::task::spawn_blocking(move || {
                    this.layer_step(&st2, nop(format!("WORKDIR {abs}")), |root| {
                        rootfs::mkdir_all(root, Path::new(&abs), 0, 0)?;
                        Ok(())
                    })
                })
                .await
                .map_err(|e| EngineError::internal(e.to_string()))??;
                self.remember(&key, &img);
                Ok(img)
            }
            Instruction::Run(r) => {
                let mut mounts = Vec::new();
                for m in &r.mounts {
                    match self.run_mount(req, &st.expand(m, esc)?, df, results) {
                        Ok(x) => mounts.push(x),
                        Err(e) => {
                            self.release_mounts(&mounts);
                            return Err(e);
                        }
                    }
                }
                let mounts_key: Vec<String> = mounts.iter().map(|m| m.key.clone()).collect();
                if r.security.is_some() {
                    return Err(invalid("RUN --security is not supported"));
                }
                let argv = match &r.command {
                    Command::Exec(v) => v.clone(),
                    Command::Shell(s) => {
                        let mut v = st.shell();
                        let t = s.trim();
                        if r.heredocs.len() == 1
                            && (t == format!("<<{}", r.heredocs[0].name) || t == format!("<<-{}", r.heredocs[0].name))
                        {
                            v.push(r.heredocs[0].content.clone());
                        } else {
                            let mut script = s.clone();
                            for h in &r.heredocs {
                                script.push('\n');
                                script.push_str(&h.content);
                                script.push_str(&h.name);
                            }
                            v.push(script);
                        }
                        v
                    }
                };
                let network = r.network.clone().or_else(|| req.network.clone()).unwrap_or_else(|| "default".into());
                let key = hash_key(&[
                    &parent,
                    "RUN",
                    &serde_json::to_string(&argv).unwrap_or_default(),
                    &args_seen,
                    &network,
                    &mounts_key.join("\n"),
                ]);
                if !req.no_cache
                    && let Some(img) = self.cached(&key, &req.cache_from)
                {
                    self.release_mounts(&mounts);
                    say(out, " ---> Using cache\n");
                    return Ok(img);
                }
                let r = self.run_step(st, argv, &network, &mounts, req, out).await;
                self.release_mounts(&mounts);
                let img = r?;
                self.remember(&key, &img);
                Ok(img)
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(ins, Instruction::Add(_));
                self.copy_step(req, st, c, add, esc, results, df, ignore, out).await
            }
        }
    }

    async fn run_step(
        self: &Arc<Self>,
        st: &StageState,
        argv: Vec<String>,
        network: &str,
        mounts: &[RunMount],
        req: &BuildRequest,
        out: &Out,
    ) -> Result<Arc<Image>> {
        let image =
            st.image.clone().ok_or_else(|| invalid("RUN needs a base image with a shell (FROM scratch has none)"))?;
        let mut env = st.env();
        for (k, v) in &st.args {
            if let Some(v) = v
                && !env.iter().any(|e| e.split_once('=').map(|(a, _)| a) == Some(k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        let body = ContainerCreateBody {
            image: Some(image.id().to_string()),
            cmd: Some(argv.clone()),
            entrypoint: Some(vec![]),
            env: Some(env),
            working_dir: st.run.working_dir.clone(),
            user: st.run.user.clone(),
            host_config: Some(HostConfig {
                network_mode: Some(if network == "default" { "bridge".into() } else { network.to_string() }),
                binds: Some(mounts.iter().filter_map(|m| m.bind.clone()).collect()),
                tmpfs: Some(mounts.iter().filter_map(|m| m.tmpfs.clone()).collect()),
                extra_hosts: Some(req.extra_hosts.clone()).filter(|h| !h.is_empty()),
                memory: req.run_limits.memory,
                memory_swap: req.run_limits.memory_swap,
                cpu_shares: req.run_limits.cpu_shares,
                cpuset_cpus: req.run_limits.cpuset_cpus.clone(),
                cpu_period: req.run_limits.cpu_period,
                cpu_quota: req.run_limits.cpu_quota,
                shm_size: req.run_limits.shm_size,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (id, _) = self.containers.create_for_build(body).await?;
        say(out, format!(" ---> Running in {}\n", &id[..12]));
        let result = async {
            let ran = async {
                self.containers.start(&id).await?;
                let (_, mut logs) = self.containers.logs(
                    &id,
                    crate::container::logs::LogOptions {
                        stdout: true,
                        stderr: true,
                        follow: true,
                        tail: None,
                        since: None,
                        until: None,
                    },
                )?;
                while let Some(l) = logs.recv().await {
                    say(out, String::from_utf8_lossy(&l.data).into_owned());
                }
                self.containers.wait(&id, "not-running").await
            };
            let (code, _) = tokio::select! {
                r = ran => r?,
                () = req.cancel.cancelled() => return Err(cancelled()),
            };
            if code != 0 {
                return Err(invalid(format!("The command '{}' returned a non-zero code: {code}", argv.join(" ")))
                    .with_code(code));
            }
            // Mount targets are not content of the step (their mountpoints stay out of the layer).
            let mut skip: Vec<String> = crate::container::RUNTIME_FILES.iter().map(|s| s.to_string()).collect();
            for m in mounts {
                let t = m
                    .bind
                    .as_deref()
                    .and_then(|b| b.split(':').nth(1))
                    .map(str::to_string)
                    .or_else(|| m.tmpfs.as_ref().map(|t| t.0.clone()));
                if let Some(t) = t {
                    skip.push(t.trim_start_matches('/').to_string());
                }
            }
            let this = self.clone();
            let (id2, st2) =
                (id.clone(), StageState { image: st.image.clone(), run: st.run.clone(), args: BTreeMap::new() });
            let created_by = argv.join(" ");
            tokio::task::spawn_blocking(move || -> Result<Arc<Image>> {
                let c = this.containers.get(&id2)?;
                let rec = c.record();
                // The step's processes are gone; its root filesystem may still be mounted
                // until the exit handling gets to it.
                this.images.store.snapshots().unmount(&rec.id)?;
                let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
                this.commit_snapshot(&rec.id, rec.top_layer.as_ref(), &st2, created_by, &skip)
            })
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
        }
        .await;
        // As Docker's --rm (default) and --force-rm: a failed step's container stays unless forced.
        if result.is_ok() || req.force_rm || req.cancel.is_cancelled() {
            let _ = self.containers.remove(&id, true, true).await;
            say(out, format!(" ---> Removed intermediate container {}\n", &id[..12]));
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        self: &Arc<Self>,
        req: &BuildRequest,
        st: &mut StageState,
        c: &dockerfile::CopySpec,
        add: bool,
        esc: char,
        results: &HashMap<usize, Arc<Image>>,
        df: &dockerfile::Dockerfile,
        ignore: Option<&ignore::Matcher>,
        out: &Out,
    ) -> Result<Arc<Image>> {
        if c.checksum.is_some() || c.keep_git_dir.is_some() {
            return Err(invalid(
                "ADD --checksum and --keep-git-dir apply to remote sources, which this builder cannot fetch",
            ));
        }
        let dest = st.expand(&c.dest, esc)?;
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{}", st.workdir().trim_end_matches('/'), dest)
        };
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(st.expand(s, esc)?);
        }
        // Where sources come from: the context, or a stage's or an image's filesystem.
        let from_image = match &c.from {
            None => None,
            Some(f) => {
                let f = st.expand(f, esc)?;
                let idx = df
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(&f.to_ascii_lowercase()))
                    .or_else(|| f.parse::<usize>().ok());
                match idx.and_then(|i| results.get(&i).cloned()) {
                    Some(img) => Some(img),
                    None if idx.is_some() => {
                        return Err(invalid(format!("COPY --from={f}: that stage has not been built before this one")));
                    }
                    None => Some(self.base_image(&f, false, out).await?),
                }
            }
        };
        for s in &sources {
            if add && (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")) {
                return Err(invalid(format!(
                    "ADD {s}: fetching remote sources needs network access this builder does not have"
                )));
            }
        }
        let chown = match &c.chown {
            Some(o) => Some(st.expand(o, esc)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8).map_err(|_| invalid(format!("invalid --chmod {m:?} (octal expected)")))?,
            ),
            None => None,
        };
        let heredocs = c.heredocs.clone();
        let parents = c.parents;
        let mut excl = Vec::new();
        for e in &c.exclude {
            excl.push(st.expand(e, esc)?);
        }
        let excludes = ignore::Matcher::new(&excl.join("\n"));
        let context = req.context.clone();
        let this = self.clone();
        let parent_img = st.image.clone();
        let run = st.run.clone();
        let no_cache = req.no_cache;
        let cache_from = req.cache_from.clone();
        let ignore = ignore.cloned();
        let kw = if add { "ADD" } else { "COPY" };
        let out2 = out.clone();
        let parent = parent_img.as_ref().map(|i| i.id().to_string()).unwrap_or_default();
        let task = move || -> Result<Arc<Image>> {
            // Resolve --chown names in the image being built.
            let owner = match &chown {
                None => None,
                Some(spec) => Some(this.with_snapshot(parent_img.as_ref(), |root| {
                    let u = rootfs::resolve_user(root, spec, &[])?;
                    Ok((u.uid, u.gid))
                })?),
            };
            let collect = |root: &Path, use_ignore: bool| -> Result<CopyPlan> {
                // .dockerignore (context only) plus --exclude patterns.
                let mut merged =
                    if use_ignore { ignore.clone().unwrap_or_default() } else { ignore::Matcher::default() };
                merged.extend(&excludes);
                let ign = if merged.is_empty() { None } else { Some(&merged) };
                let dir_dest =
                    parents || dest.ends_with('/') || sources.len() > 1 || ignore::has_glob(&sources.join(" "));
                let mut plan = CopyPlan { dest_dir: dest_abs.clone(), entries: Vec::new(), inline: Vec::new() };
                let (dest_dir, single_name) = if dir_dest {
                    (dest_abs.clone(), None)
                } else {
                    let p = Path::new(&dest_abs);
                    (
                        p.parent().map(|x| x.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()),
                        p.file_name().map(|x| x.to_string_lossy().into_owned()),
                    )
                };
                plan.dest_dir = dest_dir;
                for s in &sources {
                    if let Some(h) =
                        s.strip_prefix("<<").and_then(|n| heredocs.iter().find(|h| h.name == n.trim_start_matches('-')))
                    {
                        let content = if h.expand {
                            shell::expand(&h.content, esc, &|k| {
                                run.env.iter().flatten().rev().find_map(|e| {
                                    e.strip_prefix(k).and_then(|r| r.strip_prefix('=')).map(str::to_string)
                                })
                            })
                            .unwrap_or_else(|_| h.content.clone())
                        } else {
                            h.content.clone()
                        };
                        let name = single_name.clone().unwrap_or_else(|| h.name.clone());
                        plan.inline.push((name, content.into_bytes()));
                        continue;
                    }
                    let matches = if ignore::has_glob(s) {
                        let m = glob_sources(root, &ignore::clean(s), ign);
                        if m.is_empty() {
                            return Err(invalid(format!("no source files were specified (no match for {s})")));
                        }
                        m
                    } else {
                        vec![ignore::clean(s)]
                    };
                    for rel in matches {
                        // Never outside the root: `..` was cleaned away lexically; symlinks are
                        // checked against the root's real path.
                        let p = root.join(&rel);
                        let real = std::fs::canonicalize(&p)
                            .map_err(|_| invalid(format!("failed to compute cache key: \"/{rel}\": not found")))?;
                        let real_root = std::fs::canonicalize(root)?;
                        if !real.starts_with(&real_root) {
                            return Err(invalid(format!("forbidden path outside the build context: {s}")));
                        }
                        if ign.is_some_and(|m| m.excluded(&rel)) && !rel.is_empty() {
                            return Err(invalid(format!(
                                "failed to compute cache key: \"/{rel}\": not found (excluded by .dockerignore)"
                            )));
                        }
                        let rel_real = real.strip_prefix(&real_root).unwrap_or(Path::new("")).to_path_buf();
                        let meta = std::fs::metadata(&real)?;
                        // --parents keeps the path below the context (or below a `/./` pivot).
                        let kept = if parents {
                            let pivot = s.find("/./").map(|p| ignore::clean(&s[..p]));
                            let kept = match &pivot {
                                Some(pv) if !pv.is_empty() => {
                                    rel.strip_prefix(pv.as_str()).unwrap_or(&rel).trim_start_matches('/')
                                }
                                _ => rel.as_str(),
                            };
                            Some(kept.to_string())
                        } else {
                            None
                        };
                        if meta.is_dir() {
                            // A directory's contents go into the destination, which is a
                            // directory even without a trailing slash (`COPY . /src`).
                            if !dir_dest {
                                plan.dest_dir = dest_abs.clone();
                            }
                            walk(&real_root, &rel_real, kept.as_deref().unwrap_or(""), ign, &mut plan.entries)?;
                        } else {
                            let base = Path::new(&rel)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let name = kept.clone().or_else(|| single_name.clone()).unwrap_or(base);
                            if add && is_archive(&real) {
                                plan.inline.push((format!("\0archive:{}", real.display()), Vec::new()));
                                continue;
                            }
                            plan.entries.push(Entry { src: real.clone(), name, meta });
                        }
                    }
                }
                Ok(plan)
            };
            let build = |root: &Path, use_ignore: bool| -> Result<Arc<Image>> {
                let plan = collect(root, use_ignore)?;
                let archives: Vec<PathBuf> =
                    plan.inline.iter().filter_map(|(n, _)| n.strip_prefix("\0archive:").map(PathBuf::from)).collect();
                let plan = CopyPlan {
                    inline: plan.inline.into_iter().filter(|(n, _)| !n.starts_with('\0')).collect(),
                    ..plan
                };
                // Hash first (reading sources once); write the tar only on a cache miss.
                let hash = write_tar(&plan, owner, chmod, None::<std::io::Sink>)?;
                let mut arch_hash = String::new();
                for a in &archives {
                    arch_hash.push_str(&Digest::of(&std::fs::read(a)?).to_string());
                }
                let key = hash_key(&[&parent, kw, &plan.dest_dir, &hash, &arch_hash, &format!("{owner:?}{chmod:?}")]);
                if !no_cache && let Some(img) = this.cached(&key, &cache_from) {
                    out2(BuildOut::Stream(" ---> Using cache\n".into()));
                    return Ok(img);
                }
                let st2 = StageState { image: parent_img.clone(), run: run.clone(), args: BTreeMap::new() };
                let r = this.layer_step(
                    &st2,
                    format!(
                        "/bin/sh -c #(nop) {kw} {}:{} in {} ",
                        if plan.entries.len() == 1 { "file" } else { "dir" },
                        &hash[..16],
                        plan.dest_dir
                    ),
                    |img_root| {
                        rootfs::mkdir_all(img_root, Path::new(&plan.dest_dir), 0, 0)?;
                        let fd = rootfs::open_in(
                            img_root,
                            Path::new(&plan.dest_dir),
                            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
                        )?;
                        let target = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
                        let opts =
                            UnpackOptions { whiteouts: WhiteoutMode::Literal, same_owner: true, ..Default::default() };
                        // The sources go through a pipe as a tar (owners, modes, links set as
                        // the unpacker sets them, every write confined to the image's root).
                        let (rx, tx) = std::io::pipe()?;
                        std::thread::scope(|s| -> Result<()> {
                            let writer = s.spawn(|| {
                                write_tar(&plan, owner, chmod, Some(std::io::BufWriter::with_capacity(256 << 10, tx)))
                            });
                            let unpacked =
                                layer::unpack(std::io::BufReader::with_capacity(256 << 10, rx), &target, &opts);
                            let written = writer.join().map_err(|_| EngineError::internal("COPY writer panicked"))?;
                            match (unpacked, written) {
                                (Ok(_), w) => w.map(|_| ()),
                                // The stream ended early because reading a source failed.
                                (Err(layer::UnpackError::Read(_)), Err(w)) => Err(w),
                                (Err(e), _) => Err(invalid(e.to_string())),
                            }
                        })?;
                        for a in &archives {
                            let (_, r) = layer::decompress(std::fs::File::open(a)?)?;
                            layer::unpack(r, &target, &opts)
                                .map_err(|e| invalid(format!("ADD {}: {e}", a.display())))?;
                        }
                        Ok(())
                    },
                );
                let img = r?;
                this.remember(&key, &img);
                Ok(img)
            };
            match &from_image {
                None => build(&context, true),
                Some(img) => this.with_snapshot(Some(img), |root| build(root, false)),
            }
        };
        let img = tokio::task::spawn_blocking(task).await.map_err(|e| EngineError::internal(e.to_string()))??;
        Ok(img)
    }
}

impl Engine {
    fn release_mounts(&self, mounts: &[RunMount]) {
        for m in mounts {
            if let Some(k) = &m.snapshot {
                let _ = self.images.store.snapshots().unmount(k);
                let _ = self.images.store.snapshots().remove(k);
            }
        }
    }
}

/// A `RUN --mount` turned into what the step's container gets.
struct RunMount {
    bind: Option<String>,
    tmpfs: Option<(String, String)>,
    /// A snapshot mounted for `type=bind,from=…`, released after the step.
    snapshot: Option<String>,
    /// What the step's cache key must include.
    key: String,
}

impl Engine {
    /// `type=cache|bind|tmpfs,target=…` (BuildKit's syntax). Cache mounts are directories
    /// under the data root kept across builds (by `id`, default the target); bind mounts come
    /// from the context, read-only unless `rw`; tmpfs mounts are fresh.
    fn run_mount(
        &self,
        req: &BuildRequest,
        spec: &str,
        df: &dockerfile::Dockerfile,
        results: &HashMap<usize, Arc<Image>>,
    ) -> Result<RunMount> {
        let mut kind = "bind".to_string();
        let mut opts: BTreeMap<String, String> = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "type" => kind = v.to_string(),
                "target" | "dst" | "destination" => {
                    opts.insert("target".into(), v.into());
                }
                "source" | "src" => {
                    opts.insert("source".into(), v.into());
                }
                "ro" | "readonly" => {
                    opts.insert("ro".into(), if v.is_empty() { "true".into() } else { v.into() });
                }
                "rw" | "readwrite" => {
                    opts.insert("ro".into(), if v == "false" { "true".into() } else { "false".into() });
                }
                "id" | "from" | "sharing" | "mode" | "uid" | "gid" | "size" | "required" => {
                    opts.insert(k.into(), v.into());
                }
                other => return Err(invalid(format!("RUN --mount: unknown option {other:?}"))),
            }
        }
        if kind == "ssh" {
            return Err(invalid("RUN --mount=type=ssh is not supported (no SSH agent forwarding in this builder)"));
        }
        if kind == "secret" {
            // Secrets come with `skiff build --secret`; a file bind-mounted read-only for the step.
            let id = opts.get("id").cloned().or_else(|| {
                opts.get("target").and_then(|t| Path::new(t).file_name()).map(|n| n.to_string_lossy().into_owned())
            });
            let id = id.ok_or_else(|| invalid("RUN --mount=type=secret needs id= (or target=)"))?;
            if id.is_empty() || id.contains('/') || id.starts_with('.') {
                return Err(invalid(format!("invalid secret id {id:?}")));
            }
            let target = opts.get("target").cloned().unwrap_or_else(|| format!("/run/secrets/{id}"));
            let required = opts.get("required").is_some_and(|v| v.is_empty() || v == "true");
            let src = req.secrets.as_ref().map(|d| d.join(&id)).filter(|p| p.is_file());
            return match src {
                Some(src) => Ok(RunMount {
                    bind: Some(format!("{}:{target}:ro", src.display())),
                    tmpfs: None,
                    snapshot: None,
                    key: format!("secret {id} {target}"),
                }),
                None if required => Err(invalid(format!(
                    "secret {id} not found (pass it with `skiff build --secret id={id},src=FILE`; the docker CLI's legacy builder cannot send secrets)"
                ))),
                None => Ok(RunMount { bind: None, tmpfs: None, snapshot: None, key: format!("secret {id} absent") }),
            };
        }
        let target =
            opts.get("target").cloned().ok_or_else(|| invalid(format!("RUN --mount {spec:?}: target is required")))?;
        if !target.starts_with('/') {
            return Err(invalid(format!("RUN --mount target must be absolute: {target}")));
        }
        match kind.as_str() {
            "cache" => {
                let id = opts.get("id").cloned().unwrap_or_else(|| target.clone());
                let dir = self.config.data_root.join("build-cache-mounts").join(hash_key(&[&id]));
                std::fs::create_dir_all(&dir)?;
                if let (Some(u), Some(g)) = (opts.get("uid"), opts.get("gid")) {
                    let _ = std::os::unix::fs::chown(&dir, u.parse::<u32>().ok(), g.parse::<u32>().ok());
                }
                if let Some(m) = opts.get("mode").and_then(|m| u32::from_str_radix(m, 8).ok()) {
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m));
                }
                let ro = opts.get("ro").is_some_and(|v| v == "true");
                Ok(RunMount {
                    bind: Some(format!("{}:{target}{}", dir.display(), if ro { ":ro" } else { "" })),
                    tmpfs: None,
                    snapshot: None,
                    key: format!("cache {id} {target} {ro}"),
                })
            }
            "tmpfs" => {
                let size = opts.get("size").map(|s| format!("size={s}")).unwrap_or_default();
                Ok(RunMount {
                    bind: None,
                    tmpfs: Some((target.clone(), size.clone())),
                    snapshot: None,
                    key: format!("tmpfs {target} {size}"),
                })
            }
            "bind" => {
                if let Some(from) = opts.get("from") {
                    // A stage built before, or a local image: its filesystem, mounted for the step.
                    let idx = df
                        .stages
                        .iter()
                        .position(|s| s.name.as_deref() == Some(&from.to_ascii_lowercase()))
                        .or_else(|| from.parse::<usize>().ok());
                    let img = match idx.and_then(|i| results.get(&i).cloned()) {
                        Some(i) => i,
                        None => self.images.store.resolve(from).map_err(|_| {
                            invalid(format!("RUN --mount from={from}: no such stage built before, or local image"))
                        })?,
                    };
                    let snaps = self.images.store.snapshots();
                    let key = fsutil::random_name("buildmnt");
                    snaps.prepare(&key, img.top_layer())?;
                    let root = snaps.mount(&key, img.top_layer())?;
                    let src = opts.get("source").map(String::as_str).unwrap_or("/");
                    let real = rootfs::resolve(&root, Path::new(src))?;
                    if !real.exists() {
                        let _ = snaps.unmount(&key);
                        let _ = snaps.remove(&key);
                        return Err(invalid(format!("RUN --mount from={from}: {src} not found")));
                    }
                    let ro = opts.get("ro").is_none_or(|v| v == "true");
                    return Ok(RunMount {
                        bind: Some(format!("{}:{target}{}", real.display(), if ro { ":ro" } else { "" })),
                        tmpfs: None,
                        snapshot: Some(key),
                        key: format!("bindfrom {} {src} {target} {ro}", img.id()),
                    });
                }
                let rel = ignore::clean(opts.get("source").map(String::as_str).unwrap_or("."));
                let root = std::fs::canonicalize(&req.context)?;
                let real = std::fs::canonicalize(root.join(&rel))
                    .map_err(|e| invalid(format!("RUN --mount source {rel:?}: {e}")))?;
                if !real.starts_with(&root) {
                    return Err(invalid(format!("RUN --mount source {rel:?} is outside the build context")));
                }
                let ro = opts.get("ro").is_none_or(|v| v == "true");
                // The step depends on what it can read.
                let mut entries = Vec::new();
                let relp = real.strip_prefix(&root).unwrap_or(Path::new("")).to_path_buf();
                walk(&root, &relp, "x", None, &mut entries)?;
                let plan = CopyPlan { dest_dir: String::new(), entries, inline: Vec::new() };
                let content = write_tar(&plan, Some((0, 0)), None, None::<std::io::Sink>)?;
                Ok(RunMount {
                    bind: Some(format!("{}:{target}{}", real.display(), if ro { ":ro" } else { "" })),
                    tmpfs: None,
                    snapshot: None,
                    key: format!("bind {rel} {target} {ro} {content}"),
                })
            }
            other => Err(invalid(format!("RUN --mount: unknown type {other:?}"))),
        }
    }
}

/// A local tar archive (plain, gzip, zstd) that ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(p) else { return false };
    let mut head = [0u8; 512];
    let n = f.read(&mut head).unwrap_or(0);
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b]) || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || (n >= 262 && &h[257..262] == b"ustar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), 5_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("100ms").unwrap(), 100_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
