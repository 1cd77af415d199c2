//! COPY and ADD: a tar of the sources unpacked into a snapshot of the step's image.

use super::*;

/// One file to copy, found in a source tree.
pub(super) struct Entry {
    /// Path under the source root.
    src: PathBuf,
    /// Name in the destination directory (may contain '/').
    name: String,
    meta: std::fs::Metadata,
}

/// What to copy: entries and where to put them.
pub(super) struct CopyPlan {
    /// Destination directory in the image (absolute), where entries are unpacked.
    pub(super) dest_dir: String,
    pub(super) entries: Vec<Entry>,
    /// Files whose content comes from a heredoc: (name in dest_dir, content).
    pub(super) inline: Vec<(String, Vec<u8>)>,
}

/// Collects a source and, if it is a directory, what is below it (not following symlinks),
/// in sorted depth-first order. An explicit stack: a context's depth is the client's choice.
pub(super) fn walk(
    root: &Path,
    rel: &Path,
    name: &str,
    ignore: Option<&ignore::Matcher>,
    out: &mut Vec<Entry>,
) -> Result<()> {
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
pub(super) fn glob_sources(root: &Path, pattern: &str, ignore: Option<&ignore::Matcher>) -> Vec<String> {
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
pub(super) fn write_tar<W: Write>(
    plan: &CopyPlan,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
    w: Option<W>,
) -> Result<String> {
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

/// A COPY or ADD step with its variables expanded against the stage: what the blocking half
/// needs, owned.
struct CopyJob {
    kw: &'static str,
    add: bool,
    sources: Vec<String>,
    /// As written (after expansion) and made absolute against the stage's WORKDIR.
    dest: String,
    dest_abs: String,
    chown: Option<String>,
    chmod: Option<u32>,
    heredocs: Vec<dockerfile::Heredoc>,
    parents: bool,
    /// `--exclude` patterns.
    excludes: ignore::Matcher,
    /// `.dockerignore` (applies to the context only).
    ignore: Option<ignore::Matcher>,
    esc: char,
    parent_img: Option<ImageInfo>,
    run: RunConfig,
    no_cache: bool,
    cache_from: Vec<String>,
}

/// How a source lands in the destination: into it as a directory, or (one file) as its name.
#[derive(Clone, Copy)]
struct Placement<'a> {
    dir_dest: bool,
    single_name: Option<&'a str>,
}

impl CopyJob {
    fn new(cx: &StageCtx<'_>, st: &StageState, c: &dockerfile::CopySpec, add: bool) -> Result<CopyJob> {
        let esc = cx.df.directives.escape;
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
        let sources = c.sources.iter().map(|s| st.expand(s, esc)).collect::<Result<Vec<_>>>()?;
        for s in &sources {
            if add && (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")) {
                return Err(invalid(format!(
                    "ADD {s}: fetching remote sources needs network access this builder does not have"
                )));
            }
        }
        let chown = c.chown.as_ref().map(|o| st.expand(o, esc)).transpose()?;
        let chmod = c
            .chmod
            .as_ref()
            .map(|m| u32::from_str_radix(m, 8).map_err(|_| invalid(format!("invalid --chmod {m:?} (octal expected)"))))
            .transpose()?;
        let excl = c.exclude.iter().map(|e| st.expand(e, esc)).collect::<Result<Vec<_>>>()?;
        Ok(CopyJob {
            kw: if add { "ADD" } else { "COPY" },
            add,
            sources,
            dest,
            dest_abs,
            chown,
            chmod,
            heredocs: c.heredocs.clone(),
            parents: c.parents,
            excludes: ignore::Matcher::new(&excl.join("\n")),
            ignore: cx.ignore.cloned(),
            esc,
            parent_img: st.image.clone(),
            run: st.run.clone(),
            no_cache: cx.req.no_cache,
            cache_from: cx.req.cache_from.clone(),
        })
    }

    /// Whether the destination takes sources by their names: `.`, `..`, a trailing slash, or
    /// (one plain source) a directory that exists in the image, as Docker's builder decides.
    fn dest_is_dir<W: Worker>(&self, worker: &W) -> Result<bool> {
        let dest = &self.dest;
        if dest.ends_with('/') || Path::new(dest).file_name().is_none() || dest.ends_with("/.") || dest == "." {
            return Ok(true);
        }
        if self.parent_img.is_none() || self.parents || self.sources.len() != 1 || ignore::has_glob(&self.sources[0]) {
            return Ok(false);
        }
        inspect_rootfs(worker, self.parent_img.as_ref(), |root| {
            Ok(rootfs::open_in(
                root,
                Path::new(&self.dest_abs),
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            )
            .is_ok())
        })
    }

    /// What to copy from `root` (the context, or a stage's or image's filesystem).
    fn collect(&self, root: &Path, use_ignore: bool, dest_is_dir: bool) -> Result<CopyPlan> {
        // .dockerignore (context only) plus --exclude patterns.
        let mut merged = if use_ignore { self.ignore.clone().unwrap_or_default() } else { ignore::Matcher::default() };
        merged.extend(&self.excludes);
        let ign = if merged.is_empty() { None } else { Some(&merged) };
        let sources = &self.sources;
        let dir_dest = self.parents || dest_is_dir || sources.len() > 1 || ignore::has_glob(&sources.join(" "));
        let p = Path::new(&self.dest_abs);
        let (dest_dir, single_name) = if dir_dest {
            (self.dest_abs.clone(), None)
        } else {
            (
                p.parent().map(|x| x.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()),
                p.file_name().map(|x| x.to_string_lossy().into_owned()),
            )
        };
        let mut plan = CopyPlan { dest_dir, entries: Vec::new(), inline: Vec::new() };
        for s in sources {
            if let Some(h) =
                s.strip_prefix("<<").and_then(|n| self.heredocs.iter().find(|h| h.name == n.trim_start_matches('-')))
            {
                let name = single_name.clone().unwrap_or_else(|| h.name.clone());
                plan.inline.push((name, self.heredoc_content(h).into_bytes()));
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
                let to = Placement { dir_dest, single_name: single_name.as_deref() };
                self.add_source(root, s, &rel, ign, to, &mut plan)?;
            }
        }
        Ok(plan)
    }

    /// A heredoc's content, its variables expanded from the stage's ENV unless quoted.
    fn heredoc_content(&self, h: &dockerfile::Heredoc) -> String {
        if !h.expand {
            return h.content.clone();
        }
        shell::expand(&h.content, self.esc, &|k| {
            self.run
                .env
                .iter()
                .flatten()
                .rev()
                .find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')).map(str::to_string))
        })
        .unwrap_or_else(|_| h.content.clone())
    }

    /// One matched source path (`rel` below `root`, from source `s`) into the plan.
    fn add_source(
        &self,
        root: &Path,
        s: &str,
        rel: &str,
        ign: Option<&ignore::Matcher>,
        to: Placement<'_>,
        plan: &mut CopyPlan,
    ) -> Result<()> {
        let Placement { dir_dest, single_name } = to;
        // Never outside the root: `..` was cleaned away lexically; symlinks are checked against
        // the root's real path.
        let real = std::fs::canonicalize(root.join(rel))
            .map_err(|_| invalid(format!("failed to compute cache key: \"/{rel}\": not found")))?;
        let real_root = std::fs::canonicalize(root)?;
        if !real.starts_with(&real_root) {
            return Err(invalid(format!("forbidden path outside the build context: {s}")));
        }
        if ign.is_some_and(|m| m.excluded(rel)) && !rel.is_empty() {
            return Err(invalid(format!(
                "failed to compute cache key: \"/{rel}\": not found (excluded by .dockerignore)"
            )));
        }
        let rel_real = real.strip_prefix(&real_root).unwrap_or(Path::new("")).to_path_buf();
        let meta = std::fs::metadata(&real)?;
        // --parents keeps the path below the context (or below a `/./` pivot).
        let kept = self.parents.then(|| {
            let pivot = s.find("/./").map(|p| ignore::clean(&s[..p]));
            match &pivot {
                Some(pv) if !pv.is_empty() => rel.strip_prefix(pv.as_str()).unwrap_or(rel).trim_start_matches('/'),
                _ => rel,
            }
            .to_string()
        });
        if meta.is_dir() {
            // A directory's contents go into the destination, which is a directory even
            // without a trailing slash (`COPY . /src`).
            if !dir_dest {
                plan.dest_dir = self.dest_abs.clone();
            }
            return walk(&real_root, &rel_real, kept.as_deref().unwrap_or(""), ign, &mut plan.entries);
        }
        let base = Path::new(rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = kept.or_else(|| single_name.map(str::to_string)).unwrap_or(base);
        if self.add && is_archive(&real) {
            plan.inline.push((format!("\0archive:{}", real.display()), Vec::new()));
        } else {
            plan.entries.push(Entry { src: real.clone(), name, meta });
        }
        Ok(())
    }
}

impl<W: Worker> Builder<W> {
    pub(super) async fn copy_step(
        &self,
        cx: &StageCtx<'_>,
        st: &mut StageState,
        c: &dockerfile::CopySpec,
        add: bool,
    ) -> Result<ImageInfo> {
        let job = CopyJob::new(cx, st, c, add)?;
        // Where sources come from: the context, or a stage's or an image's filesystem.
        let from_image = match &c.from {
            None => None,
            Some(f) => {
                let f = st.expand(f, job.esc)?;
                let idx = cx
                    .df
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(&f.to_ascii_lowercase()))
                    .or_else(|| f.parse::<usize>().ok());
                match idx.and_then(|i| cx.results.get(&i).cloned()) {
                    Some(img) => Some(img),
                    None if idx.is_some() => {
                        return Err(invalid(format!("COPY --from={f}: that stage has not been built before this one")));
                    }
                    None => Some(self.worker.base_image(&f, false, cx.out).await?),
                }
            }
        };
        let (this, context, out) = (self.clone(), cx.req.context.clone(), cx.out.clone());
        let task = move || -> Result<ImageInfo> {
            // Resolve --chown names in the image being built.
            let owner = match &job.chown {
                None => None,
                Some(spec) => Some(inspect_rootfs(&*this.worker, job.parent_img.as_ref(), |root| {
                    let u = rootfs::resolve_user(root, spec, &[]).map_err(|e| invalid(e.0))?;
                    Ok((u.uid, u.gid))
                })?),
            };
            let dest_is_dir = job.dest_is_dir(&*this.worker)?;
            let copy = |root: &Path, use_ignore: bool| {
                let plan = job.collect(root, use_ignore, dest_is_dir)?;
                this.commit_copy(&job, plan, owner, &out)
            };
            match &from_image {
                None => copy(&context, true),
                Some(img) => inspect_rootfs(&*this.worker, Some(img), |root| copy(root, false)),
            }
        };
        tokio::task::spawn_blocking(task).await.map_err(|e| BuildError::internal(e.to_string()))?
    }

    /// The step's cache key from what it copies; on a miss, the copy committed as a layer.
    fn commit_copy(&self, job: &CopyJob, plan: CopyPlan, owner: Option<(u32, u32)>, out: &Out) -> Result<ImageInfo> {
        let archives: Vec<PathBuf> =
            plan.inline.iter().filter_map(|(n, _)| n.strip_prefix("\0archive:").map(PathBuf::from)).collect();
        let plan = CopyPlan { inline: plan.inline.into_iter().filter(|(n, _)| !n.starts_with('\0')).collect(), ..plan };
        let chmod = job.chmod;
        // Hash first (reading sources once); write the tar only on a cache miss.
        let hash = write_tar(&plan, owner, chmod, None::<std::io::Sink>)?;
        let mut arch_hash = String::new();
        for a in &archives {
            arch_hash.push_str(&Digest::of(&std::fs::read(a)?).to_string());
        }
        let parent = job.parent_img.as_ref().map(|i| i.id.clone()).unwrap_or_default();
        let key = hash_key(&[&parent, job.kw, &plan.dest_dir, &hash, &arch_hash, &format!("{owner:?}{chmod:?}")]);
        if !job.no_cache
            && let Some(img) = self.cached(&key, &job.cache_from)
        {
            out(BuildOut::Stream(" ---> Using cache\n".into()));
            return Ok(img);
        }
        let img = self.worker.commit_change(
            job.parent_img.as_ref(),
            &job.run,
            format!(
                "/bin/sh -c #(nop) {} {}:{} in {} ",
                job.kw,
                if plan.entries.len() == 1 { "file" } else { "dir" },
                &hash[..16],
                plan.dest_dir
            ),
            &mut |img_root| unpack_into(img_root, &plan, owner, chmod, &archives),
        )?;
        self.remember(&key, &img);
        Ok(img)
    }
}

/// Writes the plan (and ADD's archives) into the image's root: the sources go through a pipe as
/// a tar, so owners, modes and links are set as the unpacker sets them and every write stays
/// confined to the image's root.
fn unpack_into(
    img_root: &Path,
    plan: &CopyPlan,
    owner: Option<(u32, u32)>,
    chmod: Option<u32>,
    archives: &[PathBuf],
) -> Result<()> {
    rootfs::mkdir_all(img_root, Path::new(&plan.dest_dir), 0, 0)?;
    let fd =
        rootfs::open_in(img_root, Path::new(&plan.dest_dir), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY)?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    let opts = UnpackOptions { whiteouts: WhiteoutMode::Literal, same_owner: true, ..Default::default() };
    let (rx, tx) = std::io::pipe()?;
    std::thread::scope(|s| -> Result<()> {
        let writer = s.spawn(|| write_tar(plan, owner, chmod, Some(std::io::BufWriter::with_capacity(256 << 10, tx))));
        let unpacked = layer::unpack(std::io::BufReader::with_capacity(256 << 10, rx), &target, &opts);
        let written = writer.join().map_err(|_| BuildError::internal("COPY writer panicked"))?;
        match (unpacked, written) {
            (Ok(_), w) => w.map(|_| ()),
            // The stream ended early because reading a source failed.
            (Err(layer::UnpackError::Read(_)), Err(w)) => Err(w),
            (Err(e), _) => Err(invalid(e.to_string())),
        }
    })?;
    for a in archives {
        let (_, r) = layer::decompress(std::fs::File::open(a)?)?;
        layer::unpack(r, &target, &opts).map_err(|e| invalid(format!("ADD {}: {e}", a.display())))?;
    }
    Ok(())
}

/// A local tar archive (plain, gzip, zstd) that ADD unpacks.
pub(super) fn is_archive(p: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(p) else { return false };
    let mut head = [0u8; 512];
    let n = f.read(&mut head).unwrap_or(0);
    let h = &head[..n];
    h.starts_with(&[0x1f, 0x8b]) || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || (n >= 262 && &h[257..262] == b"ustar")
}
