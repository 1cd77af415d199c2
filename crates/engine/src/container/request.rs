//! A create request as dockerd reads it: merged with the image's config (Cmd/Entrypoint/Env
//! rules) and checked (dockerd's messages) before anything is planned.

use std::collections::HashMap;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig, RestartPolicyNameEnum};
use skiff_image::store::Image;

use super::logopts::log_rotation;
use crate::error::{EngineError, Result};

const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Replaces or appends `KEY=value` entries by key.
fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in over {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(slot) = out.iter_mut().find(|x| x.split('=').next() == Some(key)) {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

/// The container's config: the request over the image's defaults (Docker's merge rules).
pub(super) fn merge_config(body: &ContainerCreateBody, image: &Image) -> ContainerConfig {
    let ic = image.run_config();
    let mut cmd = body.cmd.clone().filter(|c| !c.is_empty());
    let mut entrypoint = body.entrypoint.clone();
    if entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if cmd.is_none() {
            cmd = ic.cmd.clone();
        }
        if entrypoint.is_none() {
            entrypoint = ic.entrypoint.clone();
        }
    }
    // `--entrypoint ""` resets the entrypoint.
    if entrypoint.as_ref().is_some_and(|e| e.len() == 1 && e[0].is_empty()) {
        entrypoint = Some(Vec::new());
    }
    let env = merge_env(&ic.env.clone().unwrap_or_default(), &body.env.clone().unwrap_or_default());
    let mut labels: HashMap<String, String> = ic.labels.clone().unwrap_or_default().into_iter().collect();
    labels.extend(body.labels.clone().unwrap_or_default());
    let mut exposed: HashMap<String, HashMap<(), ()>> =
        ic.exposed_ports.clone().unwrap_or_default().into_keys().map(|k| (k, HashMap::new())).collect();
    exposed.extend(body.exposed_ports.clone().unwrap_or_default());
    let mut volumes: HashMap<String, HashMap<(), ()>> =
        ic.volumes.clone().unwrap_or_default().into_keys().map(|k| (k, HashMap::new())).collect();
    volumes.extend(body.volumes.clone().unwrap_or_default());
    let healthcheck = body.healthcheck.clone().or_else(|| {
        ic.healthcheck.as_ref().map(|h| bollard_stubs::models::HealthConfig {
            test: h.test.clone(),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
            start_interval: h.start_interval,
        })
    });
    ContainerConfig {
        hostname: body.hostname.clone().filter(|h| !h.is_empty()),
        domainname: body.domainname.clone().filter(|d| !d.is_empty()),
        user: body.user.clone().filter(|u| !u.is_empty()).or(ic.user.clone()).or(Some(String::new())),
        attach_stdin: Some(body.attach_stdin.unwrap_or(false)),
        attach_stdout: Some(body.attach_stdout.unwrap_or(false)),
        attach_stderr: Some(body.attach_stderr.unwrap_or(false)),
        exposed_ports: if exposed.is_empty() { None } else { Some(exposed) },
        tty: Some(body.tty.unwrap_or(false)),
        open_stdin: Some(body.open_stdin.unwrap_or(false)),
        stdin_once: Some(body.stdin_once.unwrap_or(false)),
        env: Some(env),
        cmd,
        healthcheck,
        args_escaped: None,
        image: body.image.clone(),
        volumes: if volumes.is_empty() { None } else { Some(volumes) },
        working_dir: body
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or(ic.working_dir.clone())
            .or(Some(String::new())),
        entrypoint,
        network_disabled: body.network_disabled,
        mac_address: None,
        on_build: ic.on_build.clone(),
        labels: Some(labels),
        stop_signal: body.stop_signal.clone().filter(|s| !s.is_empty()).or(ic.stop_signal.clone()),
        stop_timeout: body.stop_timeout,
        shell: body.shell.clone().or(ic.shell.clone()),
    }
}

/// What dockerd checks of the request's container config: environment entries and
/// healthcheck durations (Docker's minimum is 1 ms).
pub(super) fn validate_config(body: &ContainerCreateBody) -> Result<()> {
    for e in body.env.iter().flatten() {
        if e.is_empty() || e.starts_with('=') {
            return Err(EngineError::invalid(format!("invalid environment variable: {e}")));
        }
    }
    if let Some(h) = &body.healthcheck {
        const MIN: i64 = 1_000_000;
        let too_short = |v: Option<i64>| v.is_some_and(|v| v != 0 && v < MIN);
        if too_short(h.interval) || h.interval.is_some_and(|v| v < 0) {
            return Err(EngineError::invalid("Interval in Healthcheck cannot be less than 1ms"));
        }
        if too_short(h.timeout) || h.timeout.is_some_and(|v| v < 0) {
            return Err(EngineError::invalid("Timeout in Healthcheck cannot be less than 1ms"));
        }
        if h.retries.is_some_and(|r| r < 0) {
            return Err(EngineError::invalid("Retries in Healthcheck cannot be negative"));
        }
        if too_short(h.start_period) || h.start_period.is_some_and(|v| v < 0) {
            return Err(EngineError::invalid("StartPeriod in Healthcheck cannot be less than 1ms"));
        }
        if too_short(h.start_interval) || h.start_interval.is_some_and(|v| v < 0) {
            return Err(EngineError::invalid("StartInterval in Healthcheck cannot be less than 1ms"));
        }
    }
    Ok(())
}

/// Checks a request's host config as dockerd does; returns the warnings for the client and the
/// security options, parsed.
pub(super) fn validate_host_config(hc: &HostConfig) -> Result<(Vec<String>, super::secopts::SecurityOpts)> {
    let mut warnings = Vec::new();
    let mem = hc.memory.unwrap_or(0);
    if mem > 0 && mem < MIN_MEMORY {
        return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
    }
    if let Some(swap) = hc.memory_swap.filter(|s| *s > 0) {
        if mem == 0 {
            return Err(EngineError::invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        if swap < mem {
            return Err(EngineError::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
        }
    }
    let ncpu = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    if let Some(n) = hc.nano_cpus.filter(|n| *n != 0) {
        if hc.cpu_quota.unwrap_or(0) > 0 || hc.cpu_period.unwrap_or(0) > 0 {
            return Err(EngineError::invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set"));
        }
        if n < 10_000_000 || n > ncpu * 1_000_000_000 {
            return Err(EngineError::invalid(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    if let Some(p) = &hc.restart_policy {
        let name = p.name.unwrap_or(RestartPolicyNameEnum::EMPTY);
        if hc.auto_remove == Some(true) && !matches!(name, RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO) {
            return Err(EngineError::invalid("can't create 'AutoRemove' container with restart policy"));
        }
        if p.maximum_retry_count.unwrap_or(0) < 0 {
            return Err(EngineError::invalid("maximum retry count cannot be negative"));
        }
        if p.maximum_retry_count.unwrap_or(0) > 0 && name != RestartPolicyNameEnum::ON_FAILURE {
            return Err(EngineError::invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string(),
            ));
        }
    }
    for c in hc.cap_add.iter().flatten().chain(hc.cap_drop.iter().flatten()) {
        crate::security::caps::normalize(c).map_err(EngineError::invalid)?;
    }
    let (security, w) = super::secopts::SecurityOpts::parse(hc.security_opt.as_deref().unwrap_or_default())
        .map_err(EngineError::invalid)?;
    warnings.extend(w);
    // The driver's name, then its options.
    log_rotation(hc)?;
    for u in hc.ulimits.iter().flatten() {
        let n = u.name.clone().unwrap_or_default();
        if !matches!(
            n.as_str(),
            "core"
                | "cpu"
                | "data"
                | "fsize"
                | "locks"
                | "memlock"
                | "msgqueue"
                | "nice"
                | "nofile"
                | "nproc"
                | "rss"
                | "rtprio"
                | "rttime"
                | "sigpending"
                | "stack"
                | "as"
        ) {
            return Err(EngineError::invalid(format!("invalid ulimit type: {n}")));
        }
    }
    Ok((warnings, security))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_config_validation() {
        let hc = HostConfig { memory: Some(1024), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig { memory: Some(64 << 20), memory_swap: Some(32 << 20), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig { security_opt: Some(vec!["evil".into()]), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig {
            log_config: Some(bollard_stubs::models::HostConfigLogConfig { typ: Some("asdf".into()), config: None }),
            ..Default::default()
        };
        assert_eq!(validate_host_config(&hc).unwrap_err().message, "logger: no log driver named 'asdf' is registered");
        let hc = HostConfig {
            auto_remove: Some(true),
            restart_policy: Some(bollard_stubs::models::RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        assert!(validate_host_config(&hc).is_err());
        assert!(validate_host_config(&HostConfig::default()).is_ok());
    }

    #[test]
    fn env_merge() {
        assert_eq!(merge_env(&["A=1".into(), "B=2".into()], &["B=3".into(), "C=4".into()]), vec!["A=1", "B=3", "C=4"]);
    }
}
