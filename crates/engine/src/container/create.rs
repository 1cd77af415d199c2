//! `docker create`: merge the request with the image's config, validate, resolve mounts,
//! prepare the snapshot, persist.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig, MountTypeEnum, RestartPolicyNameEnum};
use skiff_image::db::Durability;
use skiff_image::store::Image;

use super::{Container, ContainerRecord, Containers, MountKind, MountSpec, State, names};
use crate::error::{EngineError, Result};
use crate::volumes::hex_id;

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
fn merge_config(body: &ContainerCreateBody, image: &Image) -> ContainerConfig {
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

fn validate_host_config(hc: &HostConfig) -> Result<Vec<String>> {
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
    for o in hc.security_opt.iter().flatten() {
        let ok = o.starts_with("seccomp=")
            || o.starts_with("seccomp:")
            || o.starts_with("no-new-privileges")
            || o.starts_with("apparmor=")
            || o.starts_with("apparmor:")
            || o.starts_with("label=")
            || o.starts_with("label:");
        if !ok {
            return Err(EngineError::invalid(format!("invalid --security-opt 2: {o:?}")));
        }
        if o.starts_with("apparmor") && !o.ends_with("unconfined") {
            warnings.push(format!("AppArmor is not enabled on this host; ignoring {o}"));
        }
    }
    if let Some(lc) = &hc.log_config {
        match lc.typ.as_deref() {
            None | Some("") | Some("json-file") | Some("none") => {}
            Some(other) => {
                return Err(EngineError::invalid(format!(
                    "failed to create logger: logger: no log driver named '{other}' is registered"
                )));
            }
        }
        log_rotation(hc)?;
    }
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
    Ok(warnings)
}

fn clean_dest(d: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(EngineError::invalid(format!("invalid mount config: mount path must be absolute: {d}")));
    }
    let mut out = Vec::new();
    for c in d.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Parses `-v SRC:DST[:OPTS]` / `-v DST`.
fn parse_bind(spec: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(EngineError::invalid(format!("invalid volume specification: '{spec}'")));
        }
    };
    if dst.is_empty() {
        return Err(EngineError::invalid(format!("invalid volume specification: '{spec}'")));
    }
    let destination = clean_dest(dst)?;
    if destination == "/" {
        return Err(EngineError::invalid(format!("invalid volume specification: '{spec}': destination can't be '/'")));
    }
    let mut rw = true;
    let mut propagation = String::new();
    let mut copy_up = true;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            "z" | "Z" => {}
            "nocopy" => copy_up = false,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => propagation = o.to_string(),
            _ => return Err(EngineError::invalid(format!("invalid mode: {o}"))),
        }
    }
    let kind = if src.is_empty() || !src.starts_with('/') { MountKind::Volume } else { MountKind::Bind };
    if kind == MountKind::Volume && !src.is_empty() && !crate::volumes::valid_name(src) {
        return Err(EngineError::invalid(format!(
            "create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(MountSpec {
        kind,
        source: src.to_string(),
        destination,
        rw,
        mode: opts.to_string(),
        propagation: if kind == MountKind::Bind && propagation.is_empty() { "rprivate".into() } else { propagation },
        options: Vec::new(),
        copy_up,
        anonymous: src.is_empty(),
    })
}

fn parse_mount(m: &bollard_stubs::models::Mount) -> Result<MountSpec> {
    let target = m.target.clone().unwrap_or_default();
    if target.is_empty() {
        return Err(EngineError::invalid("invalid mount config: Target must not be empty"));
    }
    let destination = clean_dest(&target)?;
    let rw = m.read_only != Some(true);
    let src = m.source.clone().unwrap_or_default();
    match m.typ {
        Some(MountTypeEnum::BIND) => {
            if src.is_empty() {
                return Err(EngineError::invalid(
                    "invalid mount config for type \"bind\": field Source must not be empty",
                ));
            }
            if !Path::new(&src).exists() {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                )));
            }
            let propagation = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation.as_ref())
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".into());
            Ok(MountSpec {
                kind: MountKind::Bind,
                source: src,
                destination,
                rw,
                mode: String::new(),
                propagation,
                options: vec![],
                copy_up: false,
                anonymous: false,
            })
        }
        Some(MountTypeEnum::VOLUME) => {
            if !src.is_empty() && !crate::volumes::valid_name(&src) {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"volume\": invalid volume name {src:?}"
                )));
            }
            let nocopy = m.volume_options.as_ref().and_then(|v| v.no_copy).unwrap_or(false);
            Ok(MountSpec {
                kind: MountKind::Volume,
                anonymous: src.is_empty(),
                source: src,
                destination,
                rw,
                mode: if rw { "z".into() } else { "ro".into() },
                propagation: String::new(),
                options: vec![],
                copy_up: !nocopy,
            })
        }
        Some(MountTypeEnum::TMPFS) => {
            if !src.is_empty() {
                return Err(EngineError::invalid(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified",
                ));
            }
            let mut options = Vec::new();
            if let Some(t) = &m.tmpfs_options {
                if let Some(s) = t.size_bytes.filter(|s| *s > 0) {
                    options.push(format!("size={s}"));
                }
                if let Some(mode) = t.mode.filter(|m| *m > 0) {
                    options.push(format!("mode={mode:o}"));
                }
            }
            Ok(MountSpec {
                kind: MountKind::Tmpfs,
                source: String::new(),
                destination,
                rw,
                mode: String::new(),
                propagation: String::new(),
                options,
                copy_up: false,
                anonymous: false,
            })
        }
        other => Err(EngineError::invalid(format!("invalid mount config: mount type {other:?} is not supported"))),
    }
}

fn parse_tmpfs(dest: &str, opts: &str) -> Result<MountSpec> {
    let destination = clean_dest(dest)?;
    let mut rw = true;
    let mut options = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            o if o.starts_with("size=")
                || o.starts_with("mode=")
                || o.starts_with("uid=")
                || o.starts_with("gid=")
                || o.starts_with("nr_inodes=") =>
            {
                options.push(o.to_string())
            }
            "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" | "atime" | "noatime" | "relatime"
            | "strictatime" | "nodiratime" => options.push(o.to_string()),
            _ => return Err(EngineError::invalid(format!("invalid tmpfs option {o:?}"))),
        }
    }
    Ok(MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        destination,
        rw,
        mode: opts.to_string(),
        propagation: String::new(),
        options,
        copy_up: false,
        anonymous: false,
    })
}

impl Containers {
    /// Creates a container; returns its ID and warnings.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>)> {
        let image_ref = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| EngineError::invalid("config cannot be empty in order to create a container"))?;
        let image = self.images.resolve(&image_ref).map_err(|e| match e {
            skiff_image::ImageError::NotFound(_) => {
                let shown = skiff_image::Reference::parse_normalized(&image_ref)
                    .map(|r| r.with_default_tag().familiar())
                    .unwrap_or(image_ref.clone());
                EngineError::not_found(format!("No such image: {shown}"))
            }
            other => other.into(),
        })?;
        let mut hc = body.host_config.clone().unwrap_or_default();
        let mut warnings = validate_host_config(&hc)?;
        let mut config = merge_config(&body, &image);
        let entrypoint = config.entrypoint.clone().unwrap_or_default();
        let cmd = config.cmd.clone().unwrap_or_default();
        let mut argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() {
            return Err(EngineError::invalid("no command specified"));
        }
        let path = argv.remove(0);

        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_string();
                names::validate(&n)?;
                n
            }
            None => loop {
                let n = names::generate();
                if self.get(&n).is_err() {
                    break n;
                }
            },
        };
        let id = hex_id();
        if config.hostname.is_none() {
            config.hostname = Some(id[..12].to_string());
        }

        // Mounts: -v, --mount, --tmpfs, then the image's VOLUMEs not covered by them.
        let mut mounts: Vec<MountSpec> = Vec::new();
        for b in hc.binds.clone().unwrap_or_default() {
            mounts.push(parse_bind(&b)?);
        }
        for m in hc.mounts.clone().unwrap_or_default() {
            mounts.push(parse_mount(&m)?);
        }
        for (d, o) in hc.tmpfs.clone().unwrap_or_default() {
            mounts.push(parse_tmpfs(&d, &o)?);
        }
        let mut seen = std::collections::HashSet::new();
        for m in &mounts {
            if !seen.insert(m.destination.clone()) {
                return Err(EngineError::invalid(format!("Duplicate mount point: {}", m.destination)));
            }
        }
        let mut image_vols: Vec<String> = config.volumes.clone().unwrap_or_default().into_keys().collect();
        image_vols.sort();
        for v in image_vols {
            let d = clean_dest(&v)?;
            if !seen.contains(&d) {
                seen.insert(d.clone());
                mounts.push(MountSpec {
                    kind: MountKind::Volume,
                    source: String::new(),
                    destination: d,
                    rw: true,
                    mode: String::new(),
                    propagation: String::new(),
                    options: vec![],
                    copy_up: true,
                    anonymous: true,
                });
            }
        }
        // Create volumes (named ones may exist; anonymous ones get a fresh name).
        for m in mounts.iter_mut() {
            match m.kind {
                MountKind::Volume => {
                    let mut labels = BTreeMap::new();
                    if m.anonymous {
                        labels.insert("com.docker.volume.anonymous".to_string(), String::new());
                    }
                    let v = self.volumes.create(
                        if m.source.is_empty() { None } else { Some(&m.source) },
                        None,
                        labels,
                        BTreeMap::new(),
                    )?;
                    m.source = v.name;
                }
                MountKind::Bind => {
                    if !Path::new(&m.source).exists() {
                        // `-v /host/path:/x` creates a missing host directory, as Docker does.
                        std::fs::create_dir_all(&m.source).map_err(|e| {
                            EngineError::invalid(format!("error while creating mount source path '{}': {e}", m.source))
                        })?;
                    }
                }
                MountKind::Tmpfs => {}
            }
        }
        if hc.network_mode.as_deref().is_none_or(|m| m.is_empty() || m == "default") {
            hc.network_mode = Some("bridge".into());
        }
        if let Some(m) = hc.network_mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
            let other = self.get(m)?;
            if other.id == id {
                return Err(EngineError::invalid("cannot join own network"));
            }
        }
        let networks =
            self.endpoints_for_create(&mut hc, body.networking_config.as_ref(), body.mac_address.as_deref()).await?;
        if networks.is_empty() && hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
            if matches!(super::net::mode_of(&hc), super::net::Mode::Host) {
                warnings.push("Published ports are discarded when using host network mode".into());
            }
            hc.port_bindings = None;
        }
        // Bad port specifications fail here, not at start.
        Self::requested_ports(&hc, &config)?;
        // The daemon's default driver and options (`--log-driver`, `--log-opt`, daemon.json),
        // merged as moby does: a container naming no driver gets the daemon's, and with the
        // daemon's driver the daemon's options fill in those the container did not set.
        let daemon_log = self.default_log();
        let mut lc = hc.log_config.clone().unwrap_or_default();
        if lc.typ.as_deref().is_none_or(str::is_empty) {
            lc.typ = Some(daemon_log.typ.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "json-file".into()));
        }
        let mut opts = lc.config.take().unwrap_or_default();
        if lc.typ == daemon_log.typ {
            for (k, v) in daemon_log.config.iter().flatten() {
                opts.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        lc.config = Some(opts);
        hc.log_config = Some(lc);
        log_rotation(&hc)?;
        if hc.restart_policy.is_none() {
            hc.restart_policy = Some(bollard_stubs::models::RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: Some(0),
            });
        }
        if hc.cgroupns_mode.is_none() {
            hc.cgroupns_mode = Some(if self.layout.is_v2() {
                bollard_stubs::models::HostConfigCgroupnsModeEnum::PRIVATE
            } else {
                bollard_stubs::models::HostConfigCgroupnsModeEnum::HOST
            });
        }
        if hc.memory.unwrap_or(0) > 0 && !self.layout_has("memory") {
            warnings.push("Your kernel does not support memory limit capabilities. Limitation discarded.".into());
        }

        self.reserve_name(&name, &id)?;
        let rec = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: skiff_common::timefmt::now(),
            image_ref,
            image_id: image.id().clone(),
            top_layer: image.top_layer().cloned(),
            config,
            host_config: hc,
            path,
            args: argv,
            mounts,
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            driver: self.images.driver().name().to_string(),
            exec_ids: Vec::new(),
            networks,
            sandbox: None,
        };
        let this = self.clone();
        let rec2 = rec.clone();
        let prepared = tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(this.container_dir(&rec2.id))?;
            this.images.snapshots().prepare(&rec2.id, rec2.top_layer.as_ref())?;
            Ok(())
        })
        .await
        .map_err(|e| EngineError::internal(e.to_string()))?;
        if let Err(e) = prepared {
            self.release_name(&name);
            let _ = self.images.snapshots().remove(&id);
            let _ = skiff_common::fsutil::remove_all(&self.container_dir(&id));
            return Err(e);
        }
        if let Err(e) = self.db.put(super::TABLE, &id, &rec, Durability::Sync) {
            self.release_name(&name);
            return Err(e.into());
        }
        let c = Container::new(rec.clone());
        self.map.write().expect("map lock").insert(id.clone(), c);
        self.publish(&rec, "create");
        Ok((id, warnings))
    }

    fn layout_has(&self, subsystem: &str) -> bool {
        match &self.layout {
            skiff_runtime::cgroups::Layout::V1 { mounts } => mounts.contains_key(subsystem),
            skiff_runtime::cgroups::Layout::V2 { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let m = parse_bind("/host:/ctr:ro").unwrap();
        assert_eq!(
            (m.kind, m.rw, m.source.as_str(), m.destination.as_str()),
            (MountKind::Bind, false, "/host", "/ctr")
        );
        let m = parse_bind("data:/var/lib/data").unwrap();
        assert_eq!((m.kind, m.rw, m.anonymous), (MountKind::Volume, true, false));
        let m = parse_bind("/only/dest").unwrap();
        assert!(m.anonymous && m.kind == MountKind::Volume);
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("data:relative").is_err());
        assert!(parse_bind("/x:/y:bogus").is_err());
        assert!(parse_bind("../etc:/x").is_err());
        assert!(parse_bind("/x:/").is_err());
        assert_eq!(parse_bind("/x:/a/../b/").unwrap().destination, "/b");
    }

    #[test]
    fn tmpfs_options() {
        let m = parse_tmpfs("/run", "rw,size=64m,mode=1777").unwrap();
        assert_eq!(m.options, vec!["size=64m", "mode=1777"]);
        assert!(parse_tmpfs("/run", "size=1m,evil=1").is_err());
    }

    #[test]
    fn host_config_validation() {
        let hc = HostConfig { memory: Some(1024), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig { memory: Some(64 << 20), memory_swap: Some(32 << 20), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
        let hc = HostConfig { security_opt: Some(vec!["evil".into()]), ..Default::default() };
        assert!(validate_host_config(&hc).is_err());
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

/// The json-file driver's `--log-opt`s, checked as Docker checks them: `max-size` (a positive
/// size, decimal units: `10m` is 10 000 000 bytes) and `max-file` (at least 1, default 1).
/// Options Docker's json-file accepts but skiff does not implement are refused by name.
pub fn log_rotation(hc: &HostConfig) -> Result<skiff_runtime::logfile::Rotation> {
    let mut rot = skiff_runtime::logfile::Rotation { max_size: None, max_files: 1 };
    let Some(lc) = &hc.log_config else { return Ok(rot) };
    let driver = lc.typ.as_deref().filter(|t| !t.is_empty()).unwrap_or("json-file");
    let opts = lc.config.clone().unwrap_or_default();
    if driver == "none" {
        return Ok(rot);
    }
    // Options of every driver: the delivery mode. The monitor writes the file as output
    // arrives, so a container never waits on a slow log consumer in either mode.
    let mode = opts.get("mode").map(String::as_str).unwrap_or("");
    if !matches!(mode, "" | "blocking" | "non-blocking") {
        return Err(EngineError::invalid(format!("logger: logging mode not supported: {mode}")));
    }
    if let Some(b) = opts.get("max-buffer-size") {
        if mode != "non-blocking" {
            return Err(EngineError::invalid(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'",
            ));
        }
        from_human_size(b).ok_or_else(|| {
            EngineError::invalid(format!("error parsing option max-buffer-size: invalid size: '{b}'"))
        })?;
    }
    for (k, v) in &opts {
        match k.as_str() {
            "mode" | "max-buffer-size" => {}
            "max-size" => {
                let n = from_human_size(v).ok_or_else(|| EngineError::invalid(format!("invalid size: '{v}'")))?;
                if n == 0 {
                    return Err(EngineError::invalid("max-size must be a positive number"));
                }
                rot.max_size = Some(n);
            }
            "max-file" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| EngineError::invalid(format!("strconv.Atoi: parsing \"{v}\": invalid syntax")))?;
                if n < 1 {
                    return Err(EngineError::invalid("max-file cannot be less than 1"));
                }
                rot.max_files = n.min(u32::MAX as i64) as u32;
            }
            "labels" | "env" => {}
            "tag" => {
                render_tag(v, &TagFields::default())?;
            }
            "compress" | "labels-regex" | "env-regex" => {
                return Err(EngineError::invalid(format!(
                    "log opt '{k}' of the json-file driver is not supported by skiff (max-size, max-file, labels, env and tag are)"
                )));
            }
            other => return Err(EngineError::invalid(format!("unknown log opt '{other}' for json-file log driver"))),
        }
    }
    Ok(rot)
}

/// What a log `tag` template may name (Docker's `{{.ID}}`, `{{.Name}}`, …).
#[derive(Debug, Default)]
pub struct TagFields {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
}

/// Renders a `--log-opt tag=` template: `{{.ID}}` (12 characters), `{{.FullID}}`, `{{.Name}}`,
/// `{{.ImageID}}` (12), `{{.ImageFullID}}`, `{{.ImageName}}`, `{{.DaemonName}}`; anything else
/// in braces is an error, as Go's template would make it.
pub fn render_tag(t: &str, f: &TagFields) -> Result<String> {
    let short = |s: &str| s.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| EngineError::invalid(format!("template: tag:1: unclosed action in {t:?}")))?;
        let value = match after[..j].trim() {
            ".ID" => short(&f.id),
            ".FullID" => f.id.clone(),
            ".Name" => f.name.trim_start_matches('/').to_string(),
            ".ImageID" => short(&f.image_id),
            ".ImageFullID" => f.image_id.clone(),
            ".ImageName" => f.image_name.clone(),
            ".DaemonName" => "docker".to_string(),
            other => {
                return Err(EngineError::invalid(format!("template: tag:1: can't evaluate {other:?} in a log tag")));
            }
        };
        out.push_str(&value);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The attributes `--log-opt labels=a,b env=X,Y tag=…` put on every log entry.
pub fn log_attrs(
    hc: &HostConfig,
    labels: Option<&HashMap<String, String>>,
    env: &[String],
    f: &TagFields,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut attrs = std::collections::BTreeMap::new();
    let Some(opts) = hc.log_config.as_ref().and_then(|l| l.config.as_ref()) else { return Ok(attrs) };
    for k in opts.get("labels").map(|l| l.split(',')).into_iter().flatten().filter(|k| !k.is_empty()) {
        if let Some(v) = labels.and_then(|l| l.get(k)) {
            attrs.insert(k.to_string(), v.clone());
        }
    }
    for k in opts.get("env").map(|l| l.split(',')).into_iter().flatten().filter(|k| !k.is_empty()) {
        if let Some(v) = env.iter().rev().find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('='))) {
            attrs.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(t) = opts.get("tag") {
        attrs.insert("tag".to_string(), render_tag(t, f)?);
    }
    Ok(attrs)
}

/// Docker's `units.FromHumanSize`: a number with an optional decimal unit (`k`, `m`, `g`, `t`,
/// `p`, optionally followed by `i` and/or `b`, any case): `1.5k` is 1500 bytes.
fn from_human_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod log_opt_tests {
    use super::*;

    fn hc(opts: &[(&str, &str)]) -> HostConfig {
        HostConfig {
            log_config: Some(bollard_stubs::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(from_human_size("10m"), Some(10_000_000));
        assert_eq!(from_human_size("10MB"), Some(10_000_000));
        assert_eq!(from_human_size("1.5k"), Some(1500));
        assert_eq!(from_human_size("2 g"), Some(2_000_000_000));
        assert_eq!(from_human_size("512"), Some(512));
        assert_eq!(from_human_size("1Mi"), Some(1_000_000));
        for bad in ["", "m", "-1m", "1x", "1.m", ".5m", "1e9", "99999999999999999999999p"] {
            assert_eq!(from_human_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn log_opts_checked_like_docker() {
        let r = log_rotation(&hc(&[("max-size", "1m"), ("max-file", "3")])).unwrap();
        assert_eq!((r.max_size, r.max_files), (Some(1_000_000), 3));
        assert_eq!(log_rotation(&hc(&[])).unwrap().max_files, 1);
        let err = |o: &[(&str, &str)]| log_rotation(&hc(o)).unwrap_err().message;
        assert!(err(&[("max-file", "0")]).contains("cannot be less than 1"));
        assert!(err(&[("max-size", "0")]).contains("positive"));
        assert!(err(&[("max-size", "lots")]).contains("invalid size"));
        assert!(err(&[("color", "blue")]).contains("unknown log opt 'color'"));
        assert!(log_rotation(&hc(&[("mode", "non-blocking"), ("max-buffer-size", "4m")])).is_ok());
        assert!(err(&[("mode", "fast")]).contains("mode not supported"));
        assert!(err(&[("max-buffer-size", "4m")]).contains("only supported with"));
        assert!(err(&[("compress", "true")]).contains("not supported"));
        assert!(log_rotation(&hc(&[("labels", "a,b"), ("env", "X"), ("tag", "{{.Name}}/{{.ID}}")])).is_ok());
        assert!(err(&[("tag", "{{.Secret}}")]).contains("can't evaluate"));
        assert!(err(&[("tag", "{{.Name")]).contains("unclosed"));
    }

    #[test]
    fn log_attrs_from_labels_env_and_tag() {
        let h = hc(&[("labels", "team,missing"), ("env", "STAGE"), ("tag", "{{.ImageName}}|{{.Name}}|{{.ID}}")]);
        let labels = HashMap::from([("team".to_string(), "web".to_string()), ("other".into(), "x".into())]);
        let env = vec!["STAGE=dev".to_string(), "STAGED=no".into(), "STAGE=prod".into()];
        let f = TagFields {
            id: "0123456789abcdef0123".into(),
            name: "/api".into(),
            image_id: "sha256:feedfacefeedface".into(),
            image_name: "busybox".into(),
        };
        let a = log_attrs(&h, Some(&labels), &env, &f).unwrap();
        assert_eq!(a.get("team").map(String::as_str), Some("web"));
        assert!(!a.contains_key("missing") && !a.contains_key("other"));
        assert_eq!(a.get("STAGE").map(String::as_str), Some("prod"), "the last setting wins");
        assert_eq!(a.get("tag").map(String::as_str), Some("busybox|api|0123456789ab"));
    }
}
