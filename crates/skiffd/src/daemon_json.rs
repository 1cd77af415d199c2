//! `daemon.json`: dockerd's configuration file keys (plus skiff's own flags by their long
//! names), read before the daemon starts. Each key sets the flag of the same name; a directive
//! given both as a flag and in the file, an unknown key or a value of the wrong type is an
//! error naming it, as with dockerd.

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// A value from the file for one flag (by its clap id), as the strings the flag would take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key as written in the file.
    pub key: String,
    /// The flag's id (the `Args` field name).
    pub id: &'static str,
    pub values: Vec<String>,
}

/// Keys taking one string, and the flag each sets.
const STRINGS: &[(&str, &str)] = &[
    ("data-root", "data_root"),
    ("exec-root", "exec_root"),
    ("log-level", "log_level"),
    ("storage-driver", "storage_driver"),
    ("pidfile", "pidfile"),
    ("bridge", "bridge"),
    ("bip", "bip"),
    ("log-driver", "log_driver"),
    ("monitor-path", "monitor_path"),
    ("registry-addr", "registry_addr"),
    ("metrics-addr", "metrics_addr"),
    ("registry-config", "registry_config"),
    ("registry-root", "registry_root"),
    ("registries-config", "registries_config"),
    ("max-unpacked-image-size", "max_unpacked_image_size"),
    ("default-ipc-mode", "default_ipc_mode"),
    ("default-cgroupns-mode", "default_cgroupns_mode"),
    ("host-gateway-ip", "host_gateway_ip"),
    ("ip", "ip"),
];

/// Keys taking a list of strings.
const LISTS: &[(&str, &str)] =
    &[("dns", "dns"), ("insecure-registries", "insecure_registry"), ("registry-mirrors", "registry_mirror")];

pub fn parse(text: &str) -> anyhow::Result<Vec<Setting>> {
    // An empty file (or /dev/null) sets nothing.
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(text).context("invalid JSON")?;
    let Value::Object(map) = v else { bail!("the configuration must be a JSON object") };
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (key, val) in &map {
        let set = |id: &'static str, values: Vec<String>| Setting { key: key.clone(), id, values };
        let wrong = |what: &str| anyhow::anyhow!("{key}: {what} expected");
        if let Some((_, id)) = STRINGS.iter().find(|(k, _)| k == key) {
            let s = val.as_str().ok_or_else(|| wrong("a string"))?;
            out.push(set(id, vec![s.to_string()]));
            continue;
        }
        if let Some((_, id)) = LISTS.iter().find(|(k, _)| k == key) {
            out.push(set(id, strings(val).ok_or_else(|| wrong("a list of strings"))?));
            continue;
        }
        match key.as_str() {
            "hosts" => out.push(set("host", strings(val).ok_or_else(|| wrong("a list of strings"))?)),
            "mtu" => {
                let n = val.as_u64().filter(|n| *n <= u32::MAX as u64).ok_or_else(|| wrong("a number"))?;
                out.push(set("mtu", vec![n.to_string()]));
            }
            "icc" | "iptables" | "live-restore" | "debug" | "experimental" => {
                let b = val.as_bool().ok_or_else(|| wrong("true or false"))?;
                let id = match key.as_str() {
                    "icc" => "icc",
                    "iptables" => "iptables",
                    "live-restore" => "live_restore",
                    "debug" => "debug",
                    _ => "experimental",
                };
                out.push(set(id, vec![b.to_string()]));
            }
            "default-address-pools" => {
                let pools = val.as_array().ok_or_else(|| wrong("a list of {\"base\", \"size\"}"))?;
                let mut v = Vec::new();
                for p in pools {
                    let base = p.get("base").and_then(Value::as_str);
                    let size = p.get("size").and_then(Value::as_u64);
                    let (Some(base), Some(size)) = (base, size) else {
                        return Err(wrong("a list of {\"base\": CIDR, \"size\": N}"));
                    };
                    v.push(format!("base={base},size={size}"));
                }
                out.push(set("default_address_pool", v));
            }
            "log-opts" => {
                let m: &Map<String, Value> = val.as_object().ok_or_else(|| wrong("an object of strings"))?;
                let mut v = Vec::new();
                for (k, x) in m {
                    let x = x.as_str().ok_or_else(|| wrong("an object of strings"))?;
                    v.push(format!("{k}={x}"));
                }
                out.push(set("log_opt", v));
            }
            // dockerd's feature switches (`{"features": {"buildkit": false, "cdi": true}}`):
            // none changes what skiffd does (it has one builder, no CDI devices); accepted, as
            // dockerd accepts names it does not know, and checked for their shape.
            "features" => {
                let m = val.as_object().ok_or_else(|| wrong("an object of true/false"))?;
                if m.values().any(|v| !v.is_boolean()) {
                    return Err(wrong("an object of true/false"));
                }
                for (name, on) in m {
                    tracing::info!(feature = %name, enabled = %on, "daemon.json feature switch accepted; skiffd has no use for it");
                }
            }
            _ => unknown.push(key.clone()),
        }
    }
    if !unknown.is_empty() {
        bail!("the following directives don't match any configuration option: {}", unknown.join(", "));
    }
    Ok(out)
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|x| x.as_str().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_switches_are_accepted_and_checked() {
        assert!(parse(r#"{"features": {"buildkit": false, "cdi": true}}"#).unwrap().is_empty());
        assert!(parse(r#"{"features": {"cdi": "yes"}}"#).is_err());
        assert!(parse(r#"{"features": true}"#).is_err());
    }

    #[test]
    fn dockerd_keys_become_flags() {
        let s = parse(
            r#"{"data-root": "/srv/skiff", "hosts": ["unix:///run/x.sock"], "mtu": 1400, "icc": false,
                "debug": true, "live-restore": false, "default-ipc-mode": "shareable", "dns": ["10.0.0.2"], "registry-mirrors": ["http://m:5000"],
                "default-address-pools": [{"base": "10.10.0.0/16", "size": 24}],
                "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}"#,
        )
        .unwrap();
        let get = |id: &str| s.iter().find(|x| x.id == id).map(|x| x.values.clone()).unwrap();
        assert_eq!(get("data_root"), ["/srv/skiff"]);
        assert_eq!(get("host"), ["unix:///run/x.sock"]);
        assert_eq!(get("mtu"), ["1400"]);
        assert_eq!(get("icc"), ["false"]);
        assert_eq!(get("debug"), ["true"]);
        assert_eq!(get("registry_mirror"), ["http://m:5000"]);
        assert_eq!(get("live_restore"), ["false"]);
        assert_eq!(get("default_ipc_mode"), ["shareable"]);
        assert_eq!(get("default_address_pool"), ["base=10.10.0.0/16,size=24"]);
        let mut opts = get("log_opt");
        opts.sort();
        assert_eq!(opts, ["max-file=3", "max-size=10m"]);
    }

    #[test]
    fn bad_files_are_refused_by_key() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert!(err(r#"{"data-root": "/x", "experimental-turbo": true}"#).contains("experimental-turbo"));
        assert!(err(r#"{"live-restore": "no"}"#).contains("live-restore: true or false"));
        assert!(err(r#"{"mtu": "big"}"#).contains("mtu: a number"));
        assert!(err(r#"{"hosts": "unix:///a"}"#).contains("hosts: a list"));
        assert!(err(r#"{"log-opts": {"max-size": 10}}"#).contains("log-opts"));
        assert!(err(r#"{"default-address-pools": [{"base": "10.0.0.0/8"}]}"#).contains("default-address-pools"));
        assert!(err("[1, 2]").contains("JSON object"));
        assert!(err("{\"bridge\": ").contains("invalid JSON"));
        assert!(err(&"[".repeat(100_000)).contains("invalid JSON"), "deep nesting is an error, not a crash");
        assert!(parse("{}").unwrap().is_empty());
        assert!(parse(" \n").unwrap().is_empty());
    }
}
