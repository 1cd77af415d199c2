//! Image formats: OCI and Docker schema2 manifests, indexes and image configs.
//!
//! Configs are parsed into our own types but never re-serialized to compute an ID: the image ID
//! is the digest of the config bytes as stored. Unknown fields are kept (`extra`) so that a config
//! we derive from another (commit, build) loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Whether a media type names an image layer we can unpack.
    pub fn is_layer(mt: &str) -> bool {
        matches!(
            mt,
            OCI_LAYER
                | OCI_LAYER_GZIP
                | OCI_LAYER_ZSTD
                | OCI_LAYER_NONDIST
                | OCI_LAYER_NONDIST_GZIP
                | DOCKER_LAYER
                | DOCKER_LAYER_GZIP
                | DOCKER_LAYER_FOREIGN_GZIP
        )
    }
    pub fn is_manifest(mt: &str) -> bool {
        matches!(mt, OCI_MANIFEST | DOCKER_MANIFEST)
    }
    pub fn is_index(mt: &str) -> bool {
        matches!(mt, OCI_INDEX | DOCKER_MANIFEST_LIST)
    }
}

/// Size limit for manifests, indexes and configs we parse (the distribution spec suggests 4 MiB).
pub const MAX_JSON_BLOB: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of the machine we run on, in OCI terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: if architecture == "arm64" { Some("v8".to_string()) } else { None },
            os_version: None,
        }
    }

    /// Parses a platform specifier as Docker's tools do: `os`, `arch`, `os/arch` or
    /// `os/arch/variant`, normalized (`x86_64` → `amd64`, `aarch64` → `arm64`, `macos` →
    /// `darwin`). A single word must name a known OS or architecture.
    pub fn parse(s: &str) -> Result<Platform, String> {
        const OSES: &[&str] = &[
            "aix",
            "android",
            "darwin",
            "dragonfly",
            "freebsd",
            "hurd",
            "illumos",
            "ios",
            "js",
            "linux",
            "nacl",
            "netbsd",
            "openbsd",
            "plan9",
            "solaris",
            "windows",
            "zos",
        ];
        const ARCHES: &[&str] = &[
            "386",
            "amd64",
            "amd64p32",
            "arm",
            "armbe",
            "arm64",
            "arm64be",
            "loong64",
            "mips",
            "mipsle",
            "mips64",
            "mips64le",
            "mips64p32",
            "mips64p32le",
            "ppc",
            "ppc64",
            "ppc64le",
            "riscv",
            "riscv64",
            "s390",
            "s390x",
            "sparc",
            "sparc64",
            "wasm",
        ];
        if s.is_empty() {
            return Err("invalid platform \"\": an empty specifier".into());
        }
        let parts: Vec<String> = s.split('/').map(|p| p.to_ascii_lowercase()).collect();
        for p in &parts {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!(
                    "{p:?} is an invalid component of {s:?}: platform specifier component must match \"^[A-Za-z0-9_-]+$\""
                ));
            }
        }
        let os = |o: &str| if o == "macos" { "darwin".to_string() } else { o.to_string() };
        let arch = |a: &str, v: Option<&str>| -> (String, Option<String>) {
            let (a, v) = match (a, v) {
                ("i386", _) => ("386", None),
                ("x86_64" | "x86-64" | "amd64", _) => ("amd64", v),
                ("aarch64" | "arm64", Some("8" | "v8")) | ("aarch64" | "arm64", None) => ("arm64", None),
                ("aarch64", v) => ("arm64", v),
                ("armhf", _) => ("arm", Some("v7")),
                ("armel", _) => ("arm", Some("v6")),
                ("arm", Some(v)) if v.len() == 1 => return ("arm".into(), Some(format!("v{v}"))),
                ("arm", None) => ("arm", Some("v7")),
                (a, v) => (a, v),
            };
            (a.to_string(), v.map(str::to_string))
        };
        let host = Platform::host();
        let (os, (architecture, variant)) = match parts.as_slice() {
            [one] if OSES.contains(&os(one).as_str()) => (os(one), (host.architecture.clone(), host.variant.clone())),
            [one] if ARCHES.contains(&arch(one, None).0.as_str()) => ("linux".into(), arch(one, None)),
            [_] => return Err(format!("{s:?}: unknown operating system or architecture: invalid argument")),
            [o, a] => (os(o), arch(a, None)),
            [o, a, v] => (os(o), arch(a, Some(v))),
            _ => return Err(format!("{s:?}: cannot parse platform specifier: invalid argument")),
        };
        // arm/v7 is arm's default variant: written without it, as containerd does.
        let variant =
            if architecture == "arm" && variant.as_deref() == Some("v7") && parts.len() < 3 { None } else { variant };
        Ok(Platform { architecture, os, variant, os_version: None })
    }

    /// The platform an image config says it is for.
    pub fn of(config: &ImageConfig) -> Platform {
        Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
            os_version: None,
        }
    }

    /// Whether an image made for `have` runs where `self` is wanted (a variant left out on
    /// either side matches any).
    pub fn matches(&self, have: &Platform) -> bool {
        self.os == have.os
            && self.architecture == have.architecture
            && (self.variant.is_none() || have.variant.is_none() || self.variant == have.variant)
    }
}

/// `os/architecture[/variant]`, as containerd formats a platform.
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, SpecError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|source| SpecError::Json { what: "manifest", source })?;
        if m.schema_version != 2 {
            return Err(SpecError::Invalid { what: "manifest", why: format!("schemaVersion {}", m.schema_version) });
        }
        Ok(m)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    pub fn parse(bytes: &[u8]) -> Result<Index, SpecError> {
        let i: Index = serde_json::from_slice(bytes).map_err(|source| SpecError::Json { what: "index", source })?;
        if i.schema_version != 2 {
            return Err(SpecError::Invalid { what: "index", why: format!("schemaVersion {}", i.schema_version) });
        }
        Ok(i)
    }
}

/// A healthcheck as stored in image and container configs (nanosecond durations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The `config` section of an image config (Docker's superset of OCI's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image config (`application/vnd.oci.image.config.v1+json` or Docker's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, SpecError> {
        let c: ImageConfig =
            serde_json::from_slice(bytes).map_err(|source| SpecError::Json { what: "image config", source })?;
        if c.rootfs.kind != "layers" {
            return Err(SpecError::Invalid { what: "image config", why: format!("rootfs type {:?}", c.rootfs.kind) });
        }
        Ok(c)
    }

    /// Serializes a config we made; its digest is the new image's ID.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("image config serializes")
    }

    pub fn run_config(&self) -> RunConfig {
        self.config.clone().unwrap_or_default()
    }
}

/// The chain ID of a layer stack (OCI image-spec): chain(L0) = diff(L0),
/// chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_specifiers() {
        let p = |s: &str| Platform::parse(s).map(|p| (p.os, p.architecture, p.variant));
        let host = Platform::host();
        assert_eq!(p("linux/amd64").unwrap(), ("linux".into(), "amd64".into(), None));
        assert_eq!(p("Linux/x86_64").unwrap(), ("linux".into(), "amd64".into(), None));
        assert_eq!(p("linux/aarch64").unwrap(), ("linux".into(), "arm64".into(), None));
        assert_eq!(p("linux/arm/v6").unwrap(), ("linux".into(), "arm".into(), Some("v6".into())));
        assert_eq!(p("linux/arm").unwrap(), ("linux".into(), "arm".into(), None));
        assert_eq!(p("arm64").unwrap(), ("linux".into(), "arm64".into(), None));
        assert_eq!(p("windows").unwrap(), ("windows".into(), host.architecture, host.variant));
        assert_eq!(p("macos/arm64").unwrap().0, "darwin");
        for bad in ["foobar", "", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64", "linux/../x"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
        assert!(p("foobar").unwrap_err().contains("unknown operating system or architecture"));
        let want = Platform::parse("linux/arm64").unwrap();
        assert!(want.matches(&Platform { variant: Some("v8".into()), ..want.clone() }));
        assert!(!want.matches(&Platform::parse("linux/amd64").unwrap()));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn config_keeps_unknown_fields() {
        let raw = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"container":"abc","config":{"Cmd":["sh"],"Foo":1}}"#;
        let c = ImageConfig::parse(raw).unwrap();
        assert_eq!(c.extra.get("container").unwrap(), "abc");
        let again = ImageConfig::parse(&c.to_bytes()).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.config.unwrap().extra.get("Foo").unwrap(), 1);
    }

    #[test]
    fn rejects_hostile_json() {
        assert!(ImageConfig::parse(b"").is_err());
        assert!(ImageConfig::parse(b"{").is_err());
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"zfs"}}"#).is_err());
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":1,"config":{}}"#).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":2}"#).is_err());
        assert!(Index::parse(br#"{"schemaVersion":2,"manifests":[{"digest":"../x"}]}"#).is_err());
        let deep = "[".repeat(10000);
        assert!(ImageConfig::parse(deep.as_bytes()).is_err());
    }
}
