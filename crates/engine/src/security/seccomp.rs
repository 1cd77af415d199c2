//! Docker's seccomp profile format, resolved into an OCI `linux.seccomp` section.
//!
//! A Docker profile has rules with `includes`/`excludes` on capabilities, architectures and a
//! minimum kernel; the runtime needs a plain list. We resolve once per capability set (the
//! default set is resolved at daemon start and reused by every container).

use std::collections::BTreeSet;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::Deserialize;

/// Docker's default profile (moby `profiles/seccomp/default.json`, Apache-2.0).
pub const DEFAULT_PROFILE: &str = include_str!("seccomp-default.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    architectures: Vec<Arch>,
    #[serde(default, deserialize_with = "nullable")]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default, deserialize_with = "nullable")]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default, deserialize_with = "nullable")]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default, deserialize_with = "nullable")]
    includes: Filter,
    #[serde(default, deserialize_with = "nullable")]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "nullable")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Docker's profiles write `null` for empty lists.
fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("invalid seccomp profile: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("invalid seccomp profile: {0}")]
    Build(String),
}

/// The host architecture in the profile's terms (`amd64`, `arm64`, …) and libseccomp's.
fn host_arch() -> (&'static str, Arch) {
    match std::env::consts::ARCH {
        "aarch64" => ("arm64", Arch::ScmpArchAarch64),
        "x86" => ("386", Arch::ScmpArchX86),
        "arm" => ("arm", Arch::ScmpArchArm),
        "powerpc64" => ("ppc64le", Arch::ScmpArchPpc64le),
        "s390x" => ("s390x", Arch::ScmpArchS390x),
        "riscv64" => ("riscv64", Arch::ScmpArchRiscv64),
        _ => ("amd64", Arch::ScmpArchX86_64),
    }
}

fn kernel_version() -> (u32, u32) {
    let rel = rustix::system::uname().release().to_string_lossy().into_owned();
    let mut it = rel.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Whether the kernel executes x32-ABI system calls (probed once with an x32 `getpid`, which
/// answers ENOSYS where the ABI is not built in or is disabled).
fn kernel_runs_x32() -> bool {
    static X32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *X32.get_or_init(|| {
        if cfg!(not(target_arch = "x86_64")) {
            return false;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and has no effect.
        let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
        r > 0
    })
}

fn kernel_at_least(min: &str) -> bool {
    let mut it = min.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let want = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    kernel_version() >= want
}

impl Profile {
    pub fn parse(json: &str) -> Result<Profile, SeccompError> {
        Ok(serde_json::from_str(json)?)
    }

    pub fn default_profile() -> Profile {
        Profile::parse(DEFAULT_PROFILE).expect("the bundled seccomp profile parses")
    }

    /// Resolves the profile for a container with capability set `caps`.
    pub fn resolve(&self, caps: &BTreeSet<String>) -> Result<LinuxSeccomp, SeccompError> {
        let (arch_name, arch) = host_arch();
        let mut arches = Vec::new();
        if let Some(m) = self.arch_map.iter().find(|m| m.architecture == arch) {
            arches.push(m.architecture);
            arches.extend(m.sub_architectures.iter().copied());
        } else {
            arches.extend(self.architectures.iter().copied());
        }
        // Every architecture in a filter costs libseccomp about 4 ms to compile at each
        // container start. A kernel without the x32 ABI cannot run x32 code at all, so the
        // filter leaves it out: an x32 system call then meets the filter's bad-architecture
        // action instead of the kernel's ENOSYS.
        if !kernel_runs_x32() {
            arches.retain(|a| *a != Arch::ScmpArchX32);
        }
        let mut rules = Vec::new();
        'rules: for r in &self.syscalls {
            if !r.includes.arches.is_empty() && !r.includes.arches.iter().any(|a| a == arch_name) {
                continue;
            }
            for c in &r.includes.caps {
                if !caps.contains(c) {
                    continue 'rules;
                }
            }
            if let Some(k) = &r.includes.min_kernel
                && !kernel_at_least(k)
            {
                continue;
            }
            if r.excludes.arches.iter().any(|a| a == arch_name) || r.excludes.caps.iter().any(|c| caps.contains(c)) {
                continue;
            }
            let mut names = r.names.clone();
            if let Some(n) = &r.name {
                names.push(n.clone());
            }
            if names.is_empty() {
                continue;
            }
            let mut sc = LinuxSyscall::default();
            sc.set_names(names);
            sc.set_action(r.action);
            sc.set_errno_ret(r.errno_ret);
            sc.set_args(r.args.clone());
            rules.push(sc);
        }
        let mut s = LinuxSeccomp::default();
        s.set_default_action(self.default_action);
        s.set_default_errno_ret(self.default_errno_ret);
        s.set_architectures(Some(arches));
        s.set_syscalls(Some(rules));
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_profile_blocks_mount_without_sys_admin() {
        let p = Profile::default_profile();
        let plain = p.resolve(&caps(crate::security::caps::DEFAULT)).unwrap();
        let allowed = |s: &LinuxSeccomp, name: &str| {
            s.syscalls()
                .as_ref()
                .unwrap()
                .iter()
                .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.names().iter().any(|n| n == name))
        };
        assert!(allowed(&plain, "read"));
        assert!(!allowed(&plain, "mount"));
        assert!(!allowed(&plain, "init_module"));
        assert_eq!(plain.default_action(), LinuxSeccompAction::ScmpActErrno);
        let mut with_admin = caps(crate::security::caps::DEFAULT);
        with_admin.insert("CAP_SYS_ADMIN".into());
        assert!(allowed(&p.resolve(&with_admin).unwrap(), "mount"));
    }

    #[test]
    fn filters_the_abis_the_kernel_runs() {
        let s = Profile::default_profile().resolve(&caps(&[])).unwrap();
        let arches = s.architectures().clone().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(arches[0], Arch::ScmpArchX86_64);
            assert!(arches.contains(&Arch::ScmpArchX86), "32-bit code stays filtered");
            assert_eq!(arches.contains(&Arch::ScmpArchX32), kernel_runs_x32());
        }
    }

    #[test]
    fn rejects_bad_profiles() {
        assert!(Profile::parse("").is_err());
        assert!(Profile::parse(r#"{"defaultAction":"SCMP_ACT_NUKE"}"#).is_err());
        assert!(Profile::parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"]}]}"#).is_err());
    }
}
