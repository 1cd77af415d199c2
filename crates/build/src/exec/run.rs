//! RUN: a container of the step's image, its diff the next layer; RUN --mount.

use super::*;
use crate::frontend::dockerfile::Run as RunInstruction;
use crate::worker::RunSpec;

impl<W: Worker> Builder<W> {
    pub(super) async fn run_instruction(
        &self,
        cx: &StageCtx<'_>,
        st: &StageState,
        r: &RunInstruction,
        parent: &str,
    ) -> Result<ImageInfo> {
        let (req, out) = (cx.req, cx.out);
        let esc = cx.df.directives.escape;
        let args_seen: String = st
            .args
            .iter()
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n");
        let mut mounts = Vec::new();
        for m in &r.mounts {
            match st.expand(m, esc).and_then(|m| self.run_mount(cx, &m)) {
                Ok(x) => mounts.push(x),
                Err(e) => {
                    self.release_mounts(&mounts);
                    return Err(e);
                }
            }
        }
        let mounts_key: Vec<String> = mounts.iter().map(|m| m.key.clone()).collect();
        if r.security.is_some() {
            self.release_mounts(&mounts);
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
            parent,
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
        let r = self.run_step(st, argv, network, &mounts, req, out).await;
        self.release_mounts(&mounts);
        let img = r?;
        self.remember(&key, &img);
        Ok(img)
    }

    async fn run_step(
        &self,
        st: &StageState,
        argv: Vec<String>,
        network: String,
        mounts: &[RunMount],
        req: &BuildRequest,
        out: &Out,
    ) -> Result<ImageInfo> {
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
        let spec = RunSpec {
            image: image.clone(),
            argv: argv.clone(),
            env,
            working_dir: st.run.working_dir.clone(),
            user: st.run.user.clone(),
            network,
            binds: mounts.iter().filter_map(|m| m.bind.clone()).collect(),
            tmpfs: mounts.iter().filter_map(|m| m.tmpfs.clone()).collect(),
            extra_hosts: req.extra_hosts.clone(),
            limits: req.run_limits.clone(),
        };
        let id = self.worker.create_container(spec).await?;
        say(out, format!(" ---> Running in {}\n", &id[..id.len().min(12)]));
        let result = async {
            let code = tokio::select! {
                r = self.worker.run_container(&id, out) => r?,
                () = req.cancel.cancelled() => return Err(BuildError::cancelled()),
            };
            if code != 0 {
                return Err(invalid(format!("The command '{}' returned a non-zero code: {code}", argv.join(" ")))
                    .with_code(code));
            }
            // Mount targets are not content of the step (their mountpoints stay out of the layer;
            // the worker leaves out the files its runtime adds).
            let mut skip: Vec<String> = Vec::new();
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
            let (id2, run) = (id.clone(), st.run.clone());
            let created_by = argv.join(" ");
            self.blocking(move |b| b.worker.commit_container(&id2, &image, &run, created_by, &skip)).await
        }
        .await;
        // As Docker's --rm (default) and --force-rm: a failed step's container stays unless
        // forced, and with --rm=false every step's container stays (a container like any other
        // from then on: a restarted daemon keeps it).
        let remove = if result.is_ok() { req.remove } else { req.force_rm };
        if remove || req.cancel.is_cancelled() {
            self.worker.remove_container(&id).await;
            say(out, format!(" ---> Removed intermediate container {}\n", &id[..id.len().min(12)]));
        } else {
            self.worker.keep_container(&id);
        }
        result
    }

    fn release_mounts(&self, mounts: &[RunMount]) {
        for m in mounts {
            if let Some(k) = &m.snapshot {
                self.worker.unmount_image(k);
            }
        }
    }
}

/// A `RUN --mount` turned into what the step's container gets.
pub(super) struct RunMount {
    pub(super) bind: Option<String>,
    pub(super) tmpfs: Option<(String, String)>,
    /// A snapshot mounted for `type=bind,from=…`, released after the step.
    pub(super) snapshot: Option<String>,
    /// What the step's cache key must include.
    pub(super) key: String,
}

impl<W: Worker> Builder<W> {
    /// `type=cache|bind|tmpfs,target=…` (BuildKit's syntax). Cache mounts are directories
    /// under the data root kept across builds (by `id`, default the target); bind mounts come
    /// from the context, read-only unless `rw`; tmpfs mounts are fresh.
    fn run_mount(&self, cx: &StageCtx<'_>, spec: &str) -> Result<RunMount> {
        let (req, df, results) = (cx.req, cx.df, cx.results);
        let (kind, opts) = mount_options(spec)?;
        if kind == "ssh" {
            return Err(invalid("RUN --mount=type=ssh is not supported (no SSH agent forwarding in this builder)"));
        }
        if kind == "secret" {
            return secret_mount(req, &opts);
        }
        let target =
            opts.get("target").cloned().ok_or_else(|| invalid(format!("RUN --mount {spec:?}: target is required")))?;
        if !target.starts_with('/') {
            return Err(invalid(format!("RUN --mount target must be absolute: {target}")));
        }
        match kind.as_str() {
            "cache" => {
                let id = opts.get("id").cloned().unwrap_or_else(|| target.clone());
                let dir = self.worker.cache_mount_dir().join(hash_key(&[&id]));
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
                        None => self.worker.local_image(from).map_err(|_| {
                            invalid(format!("RUN --mount from={from}: no such stage built before, or local image"))
                        })?,
                    };
                    let m = self.worker.mount_image(&img)?;
                    let src = opts.get("source").map(String::as_str).unwrap_or("/");
                    let real = match rootfs::resolve(&m.root, Path::new(src)) {
                        Ok(r) if r.exists() => r,
                        r => {
                            self.worker.unmount_image(&m.key);
                            r?;
                            return Err(invalid(format!("RUN --mount from={from}: {src} not found")));
                        }
                    };
                    let ro = opts.get("ro").is_none_or(|v| v == "true");
                    return Ok(RunMount {
                        bind: Some(format!("{}:{target}{}", real.display(), if ro { ":ro" } else { "" })),
                        tmpfs: None,
                        snapshot: Some(m.key),
                        key: format!("bindfrom {} {src} {target} {ro}", img.id),
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

/// A `RUN --mount` value's type (default `bind`) and options, under their canonical names
/// (`dst`/`destination` → `target`, `src` → `source`, `readonly`/`rw` → `ro`).
fn mount_options(spec: &str) -> Result<(String, BTreeMap<String, String>)> {
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
    Ok((kind, opts))
}

/// `type=secret`: the file `skiff build --secret id=…` gave, bind-mounted read-only for the step.
fn secret_mount(req: &BuildRequest, opts: &BTreeMap<String, String>) -> Result<RunMount> {
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
    match src {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_take_buildkits_spellings() {
        let (kind, o) = mount_options("type=cache,dst=/root/.cache,readonly,id=go").unwrap();
        assert_eq!(kind, "cache");
        assert_eq!(o.get("target").map(String::as_str), Some("/root/.cache"));
        assert_eq!(o.get("ro").map(String::as_str), Some("true"));
        assert_eq!(o.get("id").map(String::as_str), Some("go"));
        let (kind, o) = mount_options(" target=/src , src=app ,rw ").unwrap();
        assert_eq!(kind, "bind", "bind when no type is given");
        assert_eq!(o.get("source").map(String::as_str), Some("app"));
        assert_eq!(o.get("ro").map(String::as_str), Some("false"));
        for bad in ["type=bind,target=/x,exec=1", "=,", "target=/x,\u{0}=1"] {
            assert!(mount_options(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secret_ids_cannot_name_other_files() {
        let req = BuildRequest::default();
        for id in ["../etc/passwd", ".hidden", "a/b", ""] {
            let opts = BTreeMap::from([("id".to_string(), id.to_string())]);
            assert!(secret_mount(&req, &opts).is_err(), "{id:?} accepted");
        }
        let opts = BTreeMap::from([("id".to_string(), "token".to_string())]);
        let m = secret_mount(&req, &opts).unwrap();
        assert_eq!(m.bind, None, "an absent optional secret mounts nothing");
        let opts = BTreeMap::from([("id".to_string(), "token".to_string()), ("required".to_string(), String::new())]);
        assert!(secret_mount(&req, &opts).is_err());
    }
}
