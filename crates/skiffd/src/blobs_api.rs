//! Secrets and configs between the Engine API and the cluster's `Blob`s: a create or update
//! request read (data decoded, what skiff cannot keep refused with words), a blob as the API
//! shows it (a secret's data never).

use std::collections::BTreeMap;

use bollard_stubs::models::ObjectVersion;
use skiff_cluster::types::{self as ct};
use skiff_common::timefmt::format_unix_nanos as time;
use skiff_engine::{EngineError, Result};

fn unsupported(what: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!("rpc error: code = InvalidArgument desc = {what}"))
}

pub fn blob_kind(k: skiff_api::backend::BlobKind) -> ct::BlobKind {
    match k {
        skiff_api::backend::BlobKind::Secret => ct::BlobKind::Secret,
        skiff_api::backend::BlobKind::Config => ct::BlobKind::Config,
    }
}

/// A secret or config as the API shows it: a secret's data never, a config's in base64.
pub fn blob_to_api(kind: ct::BlobKind, b: &ct::Blob) -> bollard_stubs::models::Secret {
    use base64::Engine as _;
    bollard_stubs::models::Secret {
        id: Some(b.id.clone()),
        version: Some(ObjectVersion { index: Some(b.version) }),
        created_at: Some(time(b.created_at)),
        updated_at: Some(time(b.updated_at)),
        spec: Some(bollard_stubs::models::SecretSpec {
            name: Some(b.name.clone()),
            labels: Some(b.labels.clone().into_iter().collect()),
            data: (kind == ct::BlobKind::Config).then(|| base64::engine::general_purpose::STANDARD.encode(&b.data)),
            driver: None,
            templating: None,
        }),
    }
}

/// A secret's or config's name, labels and data (decoded; none when the request has none).
pub type BlobSpec = (String, BTreeMap<String, String>, Option<Vec<u8>>);

/// A create or update request's name, labels and data.
pub fn blob_spec(spec: bollard_stubs::models::SecretSpec) -> Result<BlobSpec> {
    use base64::Engine as _;
    if spec.driver.as_ref().is_some_and(|d| !d.name.is_empty()) {
        return Err(unsupported("secret drivers are not supported: the data goes in the request"));
    }
    if spec.templating.as_ref().is_some_and(|d| !d.name.is_empty()) {
        return Err(unsupported("templated secrets and configs are not supported"));
    }
    let data = match spec.data {
        None => None,
        Some(d) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(d.as_bytes())
                .map_err(|e| EngineError::invalid(format!("invalid data: not base64: {e}")))?,
        ),
    };
    Ok((spec.name.unwrap_or_default(), spec.labels.unwrap_or_default().into_iter().collect(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_config_requests_refuse_what_they_cannot_keep() {
        let spec = |v: serde_json::Value| serde_json::from_value::<bollard_stubs::models::SecretSpec>(v).unwrap();
        let (name, labels, data) =
            blob_spec(spec(serde_json::json!({"Name": "pw", "Labels": {"a": "b"}, "Data": "czNj"}))).unwrap();
        assert_eq!((name.as_str(), labels["a"].as_str(), data.as_deref()), ("pw", "b", Some(&b"s3c"[..])));
        for bad in [
            serde_json::json!({"Name": "pw", "Data": "not base64!"}),
            serde_json::json!({"Name": "pw", "Data": "czNj", "Driver": {"Name": "vault"}}),
            serde_json::json!({"Name": "pw", "Data": "czNj", "Templating": {"Name": "golang"}}),
        ] {
            let e = blob_spec(spec(bad.clone())).unwrap_err();
            assert_eq!(e.kind, skiff_engine::Kind::Invalid, "{bad}: {}", e.message);
        }
    }
}
