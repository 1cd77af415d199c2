//! One Dockerfile instruction of a stage.

use super::*;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn step(
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
            // The rest only change the config.
            _ => {
                let args = &st.args;
                let shell = st.shell();
                let expand = |run: &RunConfig, w: &str| {
                    shell::expand(w, esc, &|k| env_lookup(run, k).or_else(|| args.get(k).cloned().flatten()))
                        .map_err(|e| invalid(e.0))
                };
                let desc = apply_meta(&mut st.run, ins, &shell, &expand)?
                    .ok_or_else(|| EngineError::internal("not a metadata instruction"))?;
                meta(st, desc, self)
            }
        }
    }
}
