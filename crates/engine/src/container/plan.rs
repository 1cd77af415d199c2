//! The pure half of `docker create`: what the daemon's settings add to a request's host config
//! and which mounts the container gets. Nothing here touches the kernel, the disk or another
//! container; what it needs of the daemon comes in a [`Daemon`] and a donor lookup, so it is
//! unit-tested as is (and `create.rs` commits what it decides).

use std::collections::HashSet;
use std::path::Path;

use bollard_stubs::models::{
    ContainerConfig, HostConfig, HostConfigCgroupnsModeEnum as Ns, HostConfigLogConfig, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::logopts::log_rotation;
use super::mounts::{clean_dest, parse_bind, parse_mount, parse_tmpfs};
use super::secopts::SecurityOpts;
use super::{Defaults, MountKind, MountSpec};
use crate::error::{EngineError, Result};

/// What the daemon contributes to a create.
#[derive(Debug, Clone)]
pub(super) struct Daemon<'a> {
    pub defaults: &'a Defaults,
    /// The daemon's log driver and options (`--log-driver`, `--log-opt`, daemon.json).
    pub log: HostConfigLogConfig,
    pub cgroup_v2: bool,
    /// Whether the memory controller is mounted (v1; always on v2).
    pub memory_controller: bool,
}

/// Fills in what dockerd fills in (inspect shows it): masked and read-only paths, IPC mode,
/// runtime, log driver, restart policy, cgroup namespace. Returns the warnings dockerd gives.
pub(super) fn host_defaults(hc: &mut HostConfig, sec: &SecurityOpts, d: &Daemon<'_>) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    security_defaults(hc, sec, d.defaults)?;
    hc.log_config = Some(merged_log(hc.log_config.clone().unwrap_or_default(), &d.log));
    log_rotation(hc)?;
    if hc.restart_policy.is_none() {
        hc.restart_policy = Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: Some(0) });
    }
    // As dockerd: a container that names no cgroup namespace gets the daemon's default (private
    // on cgroup v2, host on v1, or --default-cgroupns-mode) — but a privileged one on v1 stays
    // in the host's.
    if matches!(hc.cgroupns_mode, None | Some(Ns::EMPTY)) {
        let privileged = hc.privileged == Some(true);
        hc.cgroupns_mode = Some(match d.defaults.cgroupns_mode.as_str() {
            _ if privileged && !d.cgroup_v2 => Ns::HOST,
            "private" => Ns::PRIVATE,
            "host" => Ns::HOST,
            _ if d.cgroup_v2 => Ns::PRIVATE,
            _ => Ns::HOST,
        });
    }
    if hc.memory.unwrap_or(0) > 0 && !d.memory_controller {
        warnings.push("Your kernel does not support memory limit capabilities. Limitation discarded.".into());
    }
    Ok(warnings)
}

/// Masked and read-only paths (none with `systempaths=unconfined` or `--privileged`), the IPC
/// mode (the daemon's default when none is asked), the runtime (only `runc`).
fn security_defaults(hc: &mut HostConfig, sec: &SecurityOpts, defaults: &Defaults) -> Result<()> {
    if sec.systempaths_unconfined {
        hc.masked_paths = Some(Vec::new());
        hc.readonly_paths = Some(Vec::new());
    }
    if hc.privileged != Some(true) {
        if hc.masked_paths.is_none() {
            hc.masked_paths = Some(crate::security::MASKED_PATHS.iter().map(|s| s.to_string()).collect());
        }
        if hc.readonly_paths.is_none() {
            hc.readonly_paths = Some(crate::security::READONLY_PATHS.iter().map(|s| s.to_string()).collect());
        }
    }
    match hc.ipc_mode.as_deref().unwrap_or("") {
        "" => {
            let d = defaults.ipc_mode.as_str();
            hc.ipc_mode = Some(if d.is_empty() { "private" } else { d }.into())
        }
        "private" | "none" | "host" | "shareable" => {}
        m if m.strip_prefix("container:").is_some_and(|c| !c.is_empty()) => {}
        m => return Err(EngineError::invalid(format!("invalid IPC mode: {m}"))),
    }
    match hc.runtime.as_deref() {
        None | Some("") => hc.runtime = Some("runc".into()),
        Some("runc") => {}
        Some(other) => return Err(EngineError::invalid(format!("Unknown runtime specified {other}"))),
    }
    Ok(())
}

/// The container's log configuration, merged as moby does: a container naming no driver gets
/// the daemon's, and with the daemon's driver the daemon's options fill in those it did not set.
fn merged_log(mut lc: HostConfigLogConfig, daemon: &HostConfigLogConfig) -> HostConfigLogConfig {
    if lc.typ.as_deref().is_none_or(str::is_empty) {
        lc.typ = Some(daemon.typ.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "json-file".into()));
    }
    let mut opts = lc.config.take().unwrap_or_default();
    if lc.typ == daemon.typ {
        for (k, v) in daemon.config.iter().flatten() {
            opts.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    lc.config = Some(opts);
    lc
}

/// For a client older than API 1.44: read-only binds that ask nothing of their recursion are
/// read-only at their top only (dockerd's behaviour for such clients).
pub(super) fn read_only_binds_non_recursive(mounts: &mut [MountSpec]) {
    use super::mounts::{RO_FORCE_RECURSIVE, RO_NON_RECURSIVE};
    for m in mounts.iter_mut().filter(|m| m.kind == super::MountKind::Bind && !m.rw) {
        if !m.options.iter().any(|o| o == RO_NON_RECURSIVE || o == RO_FORCE_RECURSIVE) {
            m.options.push(RO_NON_RECURSIVE.to_string());
        }
    }
}

/// The container's mounts: `-v`, `--mount`, `--tmpfs`, then `--volumes-from` (the donor's
/// volumes and binds where nothing else is mounted; `donor` answers a container's mounts), then
/// the image's VOLUMEs not covered by them (anonymous volumes, named when the create commits).
pub(super) fn mounts(
    hc: &HostConfig,
    config: &ContainerConfig,
    data_root: &Path,
    donor: impl Fn(&str) -> Result<Vec<MountSpec>>,
) -> Result<Vec<MountSpec>> {
    let mut mounts: Vec<MountSpec> = Vec::new();
    for b in hc.binds.iter().flatten() {
        mounts.push(parse_bind(b)?);
    }
    for m in hc.mounts.iter().flatten() {
        mounts.push(parse_mount(m)?);
    }
    for (d, o) in hc.tmpfs.iter().flatten() {
        mounts.push(parse_tmpfs(d, o)?);
    }
    let mut seen = HashSet::new();
    for m in &mounts {
        super::mounts::check_daemon_root(m, data_root)?;
        if !seen.insert(m.destination.clone()) {
            return Err(EngineError::invalid(format!("Duplicate mount point: {}", m.destination)));
        }
    }
    for vf in hc.volumes_from.iter().flatten() {
        let (name, mode) = match vf.rsplit_once(':') {
            Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m == "rw")),
            _ => (vf.as_str(), None),
        };
        for m in donor(name)? {
            if m.kind == MountKind::Tmpfs || !seen.insert(m.destination.clone()) {
                continue;
            }
            let rw = mode.unwrap_or(m.rw);
            mounts.push(MountSpec { rw, copy_up: false, anonymous: false, ..m });
        }
    }
    let mut image_vols: Vec<&String> = config.volumes.iter().flat_map(|v| v.keys()).collect();
    image_vols.sort();
    for v in image_vols {
        let d = clean_dest(v)?;
        if seen.insert(d.clone()) {
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
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn daemon<'a>(defaults: &'a Defaults, v2: bool) -> Daemon<'a> {
        Daemon { defaults, log: HostConfigLogConfig::default(), cgroup_v2: v2, memory_controller: true }
    }

    #[test]
    fn defaults_are_written_into_the_host_config_as_dockerd_does() {
        let defaults = Defaults::default();
        let mut hc = HostConfig::default();
        let warnings = host_defaults(&mut hc, &SecurityOpts::default(), &daemon(&defaults, false)).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(hc.ipc_mode.as_deref(), Some("private"));
        assert_eq!(hc.runtime.as_deref(), Some("runc"));
        assert_eq!(hc.cgroupns_mode, Some(Ns::HOST), "host on cgroup v1");
        assert_eq!(hc.restart_policy.as_ref().and_then(|r| r.name), Some(RestartPolicyNameEnum::NO));
        assert_eq!(hc.log_config.as_ref().and_then(|l| l.typ.as_deref()), Some("json-file"));
        assert!(hc.masked_paths.as_ref().is_some_and(|m| m.iter().any(|p| p == "/proc/kcore")));
        assert!(hc.readonly_paths.as_ref().is_some_and(|m| !m.is_empty()));

        let mut hc = HostConfig::default();
        host_defaults(&mut hc, &SecurityOpts::default(), &daemon(&defaults, true)).unwrap();
        assert_eq!(hc.cgroupns_mode, Some(Ns::PRIVATE), "private on cgroup v2");
    }

    #[test]
    fn cgroup_namespace_follows_the_daemon_default_except_privileged_on_v1() {
        let defaults = Defaults { cgroupns_mode: "private".into(), ..Defaults::default() };
        let mut hc = HostConfig { privileged: Some(true), ..HostConfig::default() };
        host_defaults(&mut hc, &SecurityOpts::default(), &daemon(&defaults, false)).unwrap();
        assert_eq!(hc.cgroupns_mode, Some(Ns::HOST));
        assert_eq!(hc.masked_paths, None, "privileged containers have nothing masked");
        let mut hc = HostConfig::default();
        host_defaults(&mut hc, &SecurityOpts::default(), &daemon(&defaults, false)).unwrap();
        assert_eq!(hc.cgroupns_mode, Some(Ns::PRIVATE));
        let mut hc = HostConfig { cgroupns_mode: Some(Ns::HOST), ..HostConfig::default() };
        host_defaults(&mut hc, &SecurityOpts::default(), &daemon(&defaults, true)).unwrap();
        assert_eq!(hc.cgroupns_mode, Some(Ns::HOST), "what the request names stays");
    }

    #[test]
    fn bad_modes_and_runtimes_are_refused_and_unconfined_masks_nothing() {
        let defaults = Defaults { ipc_mode: "shareable".into(), ..Defaults::default() };
        let d = daemon(&defaults, false);
        for (ipc, ok) in [("", true), ("host", true), ("container:abc", true), ("container:", false), ("bogus", false)]
        {
            let mut hc = HostConfig { ipc_mode: Some(ipc.into()), ..HostConfig::default() };
            assert_eq!(host_defaults(&mut hc, &SecurityOpts::default(), &d).is_ok(), ok, "ipc {ipc:?}");
        }
        let mut hc = HostConfig::default();
        host_defaults(&mut hc, &SecurityOpts::default(), &d).unwrap();
        assert_eq!(hc.ipc_mode.as_deref(), Some("shareable"), "the daemon's default IPC mode");
        let mut hc = HostConfig { runtime: Some("kata".into()), ..HostConfig::default() };
        let e = host_defaults(&mut hc, &SecurityOpts::default(), &d).unwrap_err();
        assert!(e.to_string().contains("Unknown runtime specified kata"), "{e}");
        let mut hc = HostConfig::default();
        let sec = SecurityOpts { systempaths_unconfined: true, ..SecurityOpts::default() };
        host_defaults(&mut hc, &sec, &d).unwrap();
        assert_eq!(hc.masked_paths, Some(vec![]));
        assert_eq!(hc.readonly_paths, Some(vec![]));
    }

    #[test]
    fn log_options_merge_with_the_daemons_only_for_its_driver() {
        let defaults = Defaults::default();
        let mut d = daemon(&defaults, false);
        d.log = HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
        };
        let mut hc = HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: None,
                config: Some(HashMap::from([("max-size".into(), "1m".into())])),
            }),
            ..HostConfig::default()
        };
        host_defaults(&mut hc, &SecurityOpts::default(), &d).unwrap();
        let lc = hc.log_config.unwrap();
        assert_eq!(lc.typ.as_deref(), Some("json-file"));
        let opts = lc.config.unwrap();
        assert_eq!(opts.get("max-size").map(String::as_str), Some("1m"), "the container's own option wins");
        assert_eq!(opts.get("max-file").map(String::as_str), Some("3"), "the daemon's fills in");

        let mut hc = HostConfig {
            log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
            ..HostConfig::default()
        };
        host_defaults(&mut hc, &SecurityOpts::default(), &d).unwrap();
        assert_eq!(hc.log_config.unwrap().config, Some(HashMap::new()), "another driver takes none of them");
        let mut hc = HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([("max-size".into(), "lots".into())])),
            }),
            ..HostConfig::default()
        };
        assert!(
            host_defaults(&mut hc, &SecurityOpts::default(), &d).is_err(),
            "a bad rotation option is refused at create"
        );
    }

    #[test]
    fn a_memory_limit_without_the_controller_is_a_warning() {
        let defaults = Defaults::default();
        let mut d = daemon(&defaults, false);
        d.memory_controller = false;
        let mut hc = HostConfig { memory: Some(64 << 20), ..HostConfig::default() };
        let w = host_defaults(&mut hc, &SecurityOpts::default(), &d).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
    }

    fn spec(dest: &str, kind: MountKind, rw: bool) -> MountSpec {
        MountSpec {
            kind,
            source: format!("src-of-{dest}"),
            destination: dest.into(),
            rw,
            mode: String::new(),
            propagation: String::new(),
            options: vec![],
            copy_up: false,
            anonymous: false,
        }
    }

    #[test]
    fn mounts_in_dockerds_order_with_volumes_from_and_image_volumes_filling_gaps() {
        let hc = HostConfig {
            binds: Some(vec!["/srv/data:/data:ro".into()]),
            tmpfs: Some(HashMap::from([("/scratch".into(), "size=1m".into())])),
            volumes_from: Some(vec!["donor:ro".into()]),
            ..HostConfig::default()
        };
        let config = ContainerConfig {
            volumes: Some(HashMap::from([
                ("/var/lib/db".into(), HashMap::new()),
                ("/data".into(), HashMap::new()),
                ("/shared".into(), HashMap::new()),
            ])),
            ..ContainerConfig::default()
        };
        let donor = |name: &str| -> Result<Vec<MountSpec>> {
            assert_eq!(name, "donor");
            Ok(vec![
                spec("/shared", MountKind::Volume, true),
                spec("/data", MountKind::Bind, true),
                spec("/tmp", MountKind::Tmpfs, true),
            ])
        };
        let m = mounts(&hc, &config, Path::new("/var/lib/skiff"), donor).unwrap();
        let dests: Vec<_> = m.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/data", "/scratch", "/shared", "/var/lib/db"]);
        assert!(!m[0].rw, "the bind's :ro");
        assert!(!m[2].rw && !m[2].anonymous, "--volumes-from donor:ro makes the donor's volume read-only");
        assert!(m[3].anonymous && m[3].copy_up, "an image VOLUME nothing covers: anonymous, copied up");
    }

    #[test]
    fn hostile_mounts_are_refused() {
        let none = |_: &str| -> Result<Vec<MountSpec>> { Err(EngineError::invalid("No such container: x")) };
        let cases = [
            HostConfig { binds: Some(vec!["/a:/x".into(), "/b:/x".into()]), ..HostConfig::default() },
            HostConfig { binds: Some(vec!["/var/lib/skiff/c:/x:private".into()]), ..HostConfig::default() },
            HostConfig { volumes_from: Some(vec!["x".into()]), ..HostConfig::default() },
            HostConfig { binds: Some(vec!["/x:/y:bogus".into()]), ..HostConfig::default() },
        ];
        for hc in cases {
            let r = mounts(&hc, &ContainerConfig::default(), Path::new("/var/lib/skiff"), none);
            assert!(r.is_err(), "{hc:?} was accepted: {r:?}");
        }
    }

    /// API 1.44's read-only recursion: recursive by default where the kernel can, bind-only
    /// when asked (or for an older client), forced or refused; never for writable mounts.
    #[test]
    fn read_only_recursion_as_asked_and_as_the_kernel_allows() {
        use super::super::mounts::{parse_bind, parse_mount, read_only_recursion};
        use bollard_stubs::models::{Mount, MountBindOptions, MountTypeEnum};
        let rro = |m: &MountSpec, kernel: bool| read_only_recursion(m, kernel).map_err(|e| e.message);
        let ro = parse_bind("/tmp:/x:ro").unwrap();
        assert_eq!(rro(&ro, true), Ok(Some("rro")));
        assert_eq!(rro(&ro, false), Ok(None));
        assert_eq!(rro(&parse_bind("/tmp:/x").unwrap(), true), Ok(None));
        assert_eq!(rro(&parse_bind("/tmp:/x:ro-non-recursive").unwrap(), true), Ok(None));
        let forced = parse_bind("/tmp:/x:rro").unwrap();
        assert_eq!(rro(&forced, true), Ok(Some("rro")));
        assert!(rro(&forced, false).is_err(), "forced recursion on a kernel without it");
        // An older client's read-only binds stay bind-only; a forced one stays forced.
        let mut old = vec![ro.clone(), forced.clone(), parse_bind("/tmp:/y").unwrap()];
        super::read_only_binds_non_recursive(&mut old);
        assert_eq!(rro(&old[0], true), Ok(None));
        assert_eq!(rro(&old[1], true), Ok(Some("rro")));
        assert_eq!(rro(&old[2], true), Ok(None));
        // --mount: the options, and the combinations dockerd refuses.
        let bind = |ro: bool, b: MountBindOptions| Mount {
            typ: Some(MountTypeEnum::BIND),
            source: Some("/tmp".into()),
            target: Some("/x".into()),
            read_only: Some(ro),
            bind_options: Some(b),
            ..Default::default()
        };
        let writable_below = MountBindOptions { read_only_non_recursive: Some(true), ..Default::default() };
        assert_eq!(rro(&parse_mount(&bind(true, writable_below.clone())).unwrap(), true), Ok(None));
        assert!(parse_mount(&bind(false, writable_below)).is_err(), "ReadOnlyNonRecursive without ReadOnly");
        let both = MountBindOptions {
            read_only_non_recursive: Some(true),
            read_only_force_recursive: Some(true),
            ..Default::default()
        };
        assert!(parse_mount(&bind(true, both)).is_err());
        let shared = MountBindOptions {
            read_only_force_recursive: Some(true),
            propagation: Some(bollard_stubs::models::MountBindOptionsPropagationEnum::RSHARED),
            ..Default::default()
        };
        assert!(parse_mount(&bind(true, shared)).is_err(), "forced recursion with shared propagation");
        assert!(parse_bind("vol:/x:rro").is_err(), "a recursion mode on a volume");
    }
}
