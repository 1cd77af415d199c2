//! A stage's state and the instructions that only change its config.

use super::*;

/// The state of one stage while it builds.
pub(super) struct StageState {
    pub(super) image: Option<ImageInfo>,
    pub(super) run: RunConfig,
    /// Declared ARGs in scope with their values.
    pub(super) args: BTreeMap<String, Option<String>>,
}

impl StageState {
    pub(super) fn env(&self) -> Vec<String> {
        self.run.env.clone().unwrap_or_default()
    }
    pub(super) fn lookup(&self, k: &str) -> Option<String> {
        env_lookup(&self.run, k).or_else(|| self.args.get(k).cloned().flatten())
    }
    pub(super) fn expand(&self, w: &str, esc: char) -> Result<String> {
        shell::expand(w, esc, &|k| self.lookup(k)).map_err(|e| invalid(e.0))
    }
    pub(super) fn shell(&self) -> Vec<String> {
        self.run.shell.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
    pub(super) fn workdir(&self) -> String {
        self.run.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }
}

/// A variable of a config's environment (the last definition wins).
pub(super) fn env_lookup(run: &RunConfig, k: &str) -> Option<String> {
    run.env.iter().flatten().rev().find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

fn set_env(run: &mut RunConfig, k: &str, v: &str) {
    let env = run.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.split_once('=').map(|(a, _)| a) != Some(k));
    env.push(format!("{k}={v}"));
}

/// Applies an instruction that only changes the image config (ENV, LABEL, MAINTAINER, EXPOSE,
/// VOLUME, USER, STOPSIGNAL, SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD, WORKDIR) and returns
/// how the image history describes it; `None` for the others (RUN, COPY, ADD, ARG). `shell` is
/// the stage's shell for CMD and ENTRYPOINT in shell form; `expand` substitutes variables in a
/// word, seeing the config as it is before the instruction. The builder and `docker commit`/
/// `docker import --change` share it.
pub fn apply_meta(
    run: &mut RunConfig,
    ins: &Instruction,
    shell: &[String],
    expand: &dyn Fn(&RunConfig, &str) -> Result<String>,
) -> Result<Option<String>> {
    let desc = match ins {
        Instruction::Env(kv) => {
            // Every value sees the environment from before this instruction, as in Docker.
            let mut pairs = Vec::new();
            for (k, v) in kv {
                pairs.push((expand(run, k)?, expand(run, v)?));
            }
            let mut desc = Vec::new();
            for (k, v) in pairs {
                set_env(run, &k, &v);
                desc.push(format!("{k}={v}"));
            }
            format!("ENV {}", desc.join(" "))
        }
        Instruction::Label(kv) => {
            let mut labels = run.labels.clone().unwrap_or_default();
            for (k, v) in kv {
                labels.insert(expand(run, k)?, expand(run, v)?);
            }
            run.labels = Some(labels);
            "LABEL".into()
        }
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
        Instruction::Expose(ports) => {
            expose(run, ports, expand)?;
            format!("EXPOSE {}", ports.join(" "))
        }
        Instruction::Volume(v) => {
            let mut vols = run.volumes.clone().unwrap_or_default();
            for p in v {
                let p = expand(run, p)?;
                if p.is_empty() {
                    return Err(invalid("VOLUME specified can not be an empty string"));
                }
                vols.insert(p, serde_json::json!({}));
            }
            run.volumes = Some(vols);
            format!("VOLUME {v:?}")
        }
        Instruction::User(u) => {
            run.user = Some(expand(run, u)?);
            format!("USER {u}")
        }
        Instruction::StopSignal(s) => {
            let sig = expand(run, s)?;
            skiff_common::signal::parse(&sig).map_err(|e| invalid(e.to_string()))?;
            run.stop_signal = Some(sig);
            format!("STOPSIGNAL {s}")
        }
        Instruction::Shell(s) => {
            run.shell = Some(s.clone());
            format!("SHELL {s:?}")
        }
        Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
            let argv = match c {
                Command::Exec(v) => v.clone(),
                Command::Shell(s) => {
                    let mut v = shell.to_vec();
                    v.push(s.clone());
                    v
                }
            };
            if matches!(ins, Instruction::Cmd(_)) {
                run.cmd = Some(argv.clone());
                format!("CMD {argv:?}")
            } else {
                run.entrypoint = Some(argv.clone());
                // A new entrypoint resets an inherited CMD, as Docker does.
                run.cmd = None;
                format!("ENTRYPOINT {argv:?}")
            }
        }
        Instruction::Healthcheck(h) => {
            run.healthcheck = Some(health_config(h)?);
            "HEALTHCHECK".into()
        }
        Instruction::Onbuild(t) => {
            run.on_build.get_or_insert_with(Vec::new).push(t.clone());
            format!("ONBUILD {t}")
        }
        Instruction::Workdir(w) => {
            let w = expand(run, w)?;
            let base = run.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
            let abs = if w.starts_with('/') { w } else { format!("{}/{}", base.trim_end_matches('/'), w) };
            run.working_dir = Some(abs.clone());
            format!("WORKDIR {abs}")
        }
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Arg(_) => return Ok(None),
    };
    Ok(Some(desc))
}

/// EXPOSE's ports (`80`, `53/udp`, ranges as `8000-8010/tcp`, after variable expansion) added
/// to the config, as Docker does.
fn expose(run: &mut RunConfig, ports: &[String], expand: &dyn Fn(&RunConfig, &str) -> Result<String>) -> Result<()> {
    let mut e = run.exposed_ports.clone().unwrap_or_default();
    for p in ports {
        let p = expand(run, p)?;
        let p = if p.contains('/') { p.to_ascii_lowercase() } else { format!("{p}/tcp") };
        let (num, proto) = p.split_once('/').unwrap_or((&p, ""));
        let bad = || invalid(format!("invalid containerPort: {p}"));
        let (lo, hi) = match num.split_once('-') {
            Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
            None => {
                let n = num.parse::<u16>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if hi < lo || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(bad());
        }
        // A range exposes each of its ports, as Docker does.
        for n in lo..=hi {
            e.insert(format!("{n}/{proto}"), serde_json::json!({}));
        }
    }
    run.exposed_ports = Some(e);
    Ok(())
}

/// HEALTHCHECK's test and options as the image config holds them.
fn health_config(h: &Health) -> Result<HealthConfig> {
    Ok(match h {
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
    })
}

/// `5s`, `1m30s`, `100ms` → nanoseconds.
pub(super) fn parse_duration(s: &str) -> Result<i64> {
    skiff_common::units::parse_go_duration(s).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), 5_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("100ms").unwrap(), 100_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
