//! One Dockerfile instruction of a stage.

use super::*;

impl<W: Worker> Builder<W> {
    /// A metadata instruction's image: the config changed, keyed on the resulting config.
    fn meta_cached(&self, cx: &StageCtx<'_>, st: &StageState, parent: &str, desc: String) -> Result<ImageInfo> {
        let cfg = serde_json::to_string(&st.run).unwrap_or_default();
        let key = hash_key(&[parent, &desc, &cfg]);
        if !cx.req.no_cache
            && let Some(img) = self.cached(&key, &cx.req.cache_from)
        {
            say(cx.out, " ---> Using cache\n");
            return Ok(img);
        }
        let img = self.meta_step(st, format!("/bin/sh -c #(nop)  {desc}"))?;
        self.remember(&key, &img);
        Ok(img)
    }

    pub(super) async fn step(
        &self,
        cx: &StageCtx<'_>,
        st: &mut StageState,
        ins: &Instruction,
        used_args: &mut HashSet<String>,
    ) -> Result<ImageInfo> {
        let (req, out) = (cx.req, cx.out);
        let esc = cx.df.directives.escape;
        let parent = st.image.as_ref().map(|i| i.id.clone()).unwrap_or_default();
        match ins {
            Instruction::Arg(decls) => {
                for d in decls {
                    used_args.insert(d.name.clone());
                    let def = match &d.default {
                        Some(v) => Some(st.expand(v, esc)?),
                        None => cx.plan.global.get(&d.name).cloned().flatten(),
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
                self.meta_cached(cx, st, &parent, format!("ARG {args}"))
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
                let (image, run) = (st.image.clone(), st.run.clone());
                let img = self
                    .blocking(move |b| {
                        let created_by = format!("/bin/sh -c #(nop)  WORKDIR {abs}");
                        b.worker.commit_change(image.as_ref(), &run, created_by, &mut |root| {
                            Ok(rootfs::mkdir_all(root, Path::new(&abs), 0, 0)?)
                        })
                    })
                    .await?;
                self.remember(&key, &img);
                Ok(img)
            }
            Instruction::Run(r) => self.run_instruction(cx, st, r, &parent).await,
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(ins, Instruction::Add(_));
                self.copy_step(cx, st, c, add).await
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
                    .ok_or_else(|| BuildError::internal("not a metadata instruction"))?;
                self.meta_cached(cx, st, &parent, desc)
            }
        }
    }
}
