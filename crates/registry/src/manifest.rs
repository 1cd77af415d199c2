//! What the registry needs to know about a pushed manifest: its media type, the content it refers
//! to (which must already be in the repository), its subject and artifact type (for the referrers
//! API). Parsing is strict about types and lenient about unknown fields, as the image spec asks.

use crate::digest::Digest;
use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest accepted (the spec's recommended minimum a registry must take is 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Desc>,
    #[serde(default)]
    layers: Option<Vec<Desc>>,
    #[serde(default)]
    manifests: Option<Vec<Desc>>,
    #[serde(default)]
    subject: Option<Desc>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A reference from a manifest to content the repository must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub digest: Digest,
    pub size: u64,
    /// A manifest (from an index) rather than a blob.
    pub manifest: bool,
}

#[derive(Debug)]
pub struct Parsed {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub refs: Vec<Ref>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

fn desc_ref(d: &Desc, manifest: bool) -> Result<Option<Ref>, String> {
    let digest: Digest = d.digest.parse()?;
    if d.size < 0 {
        return Err(format!("negative size for {}", d.digest));
    }
    // Foreign (non-distributable) layers live elsewhere.
    if d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
        return Ok(None);
    }
    Ok(Some(Ref { digest, size: d.size as u64, manifest }))
}

/// Parses a manifest pushed with the given Content-Type (if any).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if raw.schema_version != Some(2) {
        return Err("only schemaVersion 2 manifests are accepted".into());
    }
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !c.is_empty());
    let media_type = match (ct, raw.media_type.as_deref()) {
        (Some(c), Some(m)) if c != m => {
            return Err(format!("Content-Type {c} does not match the manifest's mediaType {m}"));
        }
        (Some(c), _) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    let mut refs = Vec::new();
    let artifact_type = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw.config.as_ref().ok_or("image manifest without config")?;
            let layers = raw.layers.as_ref().ok_or("image manifest without layers")?;
            refs.extend(desc_ref(config, false)?);
            for l in layers {
                refs.extend(desc_ref(l, false)?);
            }
            raw.artifact_type.clone().or_else(|| config.media_type.clone())
        }
        OCI_INDEX | DOCKER_LIST => {
            let ms = raw.manifests.as_ref().ok_or("index without manifests")?;
            for m in ms {
                refs.extend(desc_ref(m, true)?);
            }
            raw.artifact_type.clone()
        }
        other => return Err(format!("unsupported manifest media type {other:?}")),
    };
    let subject = match &raw.subject {
        Some(s) => Some(s.digest.parse().map_err(|e| format!("subject: {e}"))?),
        None => None,
    };
    Ok(Parsed { media_type, artifact_type, subject, refs, annotations: raw.annotations })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn image_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{D}","size":3}},
            "layers":[{{"mediaType":"l","digest":"{D}","size":3}},{{"mediaType":"f","digest":"{D}","size":1,"urls":["http://x"]}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":9}}}}"#
        );
        let p = parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.refs.len(), 2);
        assert_eq!(p.artifact_type.as_deref(), Some("a/b"));
        assert!(p.subject.is_some());
        assert!(parse(m.as_bytes(), Some(OCI_INDEX)).is_err());
        let p = parse(m.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
    }

    #[test]
    fn hostile() {
        for bad in [
            "",
            "null",
            "[]",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"x/y","config":{}}"#,
            r#"{"schemaVersion":2,"config":{"digest":"sha256:00","size":1},"layers":[]}"#,
            r#"{"schemaVersion":2,"manifests":[{"digest":"md5:x","size":1}]}"#,
            &format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":-1}},"layers":[]}}"#),
        ] {
            assert!(parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }
}
