//! Log options (`--log-opt`): json-file rotation, entry attributes, tag templates.

use std::collections::HashMap;

use bollard_stubs::models::HostConfig;

use crate::error::{EngineError, Result};

/// The log drivers skiff has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDriver {
    JsonFile,
    /// Docker's `local` driver: a file the daemon reads back, rotated by default (20 MB, five
    /// files, rotated files compressed). Its on-disk form is the driver's own business in
    /// Docker; skiff keeps the json-file form for it, so both read back the same way.
    Local,
    /// Nothing kept; `docker logs` refuses.
    None,
}

impl LogDriver {
    /// A host config's driver (json-file when it names none); any other name is dockerd's
    /// error.
    pub fn of(hc: &HostConfig) -> Result<LogDriver> {
        match hc.log_config.as_ref().and_then(|l| l.typ.as_deref()).unwrap_or("") {
            "" | "json-file" => Ok(LogDriver::JsonFile),
            "local" => Ok(LogDriver::Local),
            "none" => Ok(LogDriver::None),
            other => Err(EngineError::invalid(format!("logger: no log driver named '{other}' is registered"))),
        }
    }
}

/// The driver (see [`LogDriver::of`]) and its `--log-opt`s, checked as Docker checks them.
/// json-file: `max-size` (a positive size, decimal units: `10m` is 10 000 000 bytes),
/// `max-file` (at least 1, default 1), `compress` (rotated files gzipped; needs `max-size`
/// and two files or more), `labels`, `env`, `tag`. local: `max-size` (default 20m),
/// `max-file` (default 5), `compress` (default true). Options Docker accepts but skiff does
/// not implement are refused by name.
pub fn log_rotation(hc: &HostConfig) -> Result<skiff_runtime::logfile::Rotation> {
    let driver = LogDriver::of(hc)?;
    let mut rot = match driver {
        LogDriver::Local => {
            skiff_runtime::logfile::Rotation { max_size: Some(20 * 1024 * 1024), max_files: 5, compress: true }
        }
        _ => skiff_runtime::logfile::Rotation { max_size: None, max_files: 1, compress: false },
    };
    let Some(lc) = &hc.log_config else { return Ok(rot) };
    let opts = lc.config.clone().unwrap_or_default();
    if driver == LogDriver::None {
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
        skiff_common::units::from_human_size(b).ok_or_else(|| {
            EngineError::invalid(format!("error parsing option max-buffer-size: invalid size: '{b}'"))
        })?;
    }
    let name = if driver == LogDriver::Local { "local" } else { "json-file" };
    let mut compress = None;
    for (k, v) in &opts {
        match k.as_str() {
            "mode" | "max-buffer-size" => {}
            "max-size" => {
                let n = skiff_common::units::from_human_size(v)
                    .ok_or_else(|| EngineError::invalid(format!("invalid size: '{v}'")))?;
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
            "compress" => {
                compress = Some(parse_go_bool(v).ok_or_else(|| {
                    EngineError::invalid(format!("strconv.ParseBool: parsing \"{v}\": invalid syntax"))
                })?);
            }
            "labels" | "env" | "tag" if driver == LogDriver::JsonFile => {
                if k == "tag" {
                    render_tag(v, &TagFields::default())?;
                }
            }
            "labels-regex" | "env-regex" if driver == LogDriver::JsonFile => {
                return Err(EngineError::invalid(format!(
                    "log opt '{k}' of the json-file driver is not supported by skiff (max-size, max-file, compress, labels, env and tag are)"
                )));
            }
            other => return Err(EngineError::invalid(format!("unknown log opt '{other}' for {name} log driver"))),
        }
    }
    match (driver, compress) {
        (LogDriver::JsonFile, Some(true)) if rot.max_files < 2 || rot.max_size.is_none() => {
            return Err(EngineError::invalid(
                "compress cannot be true when max-file is less than 2 or max-size is not set",
            ));
        }
        (_, Some(c)) => rot.compress = c,
        _ => {}
    }
    // One file: nothing is ever rotated, so nothing to compress.
    rot.compress &= rot.max_files > 1;
    Ok(rot)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
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
        assert!(err(&[("compress", "true")]).contains("max-file is less than 2"));
        assert!(err(&[("compress", "true"), ("max-file", "3")]).contains("max-size is not set"));
        assert!(err(&[("compress", "yes")]).contains("ParseBool"));
        assert!(err(&[("labels-regex", "x")]).contains("not supported by skiff"));
        let r = log_rotation(&hc(&[("compress", "true"), ("max-file", "3"), ("max-size", "1k")])).unwrap();
        assert!(r.compress);
        assert!(log_rotation(&hc(&[("labels", "a,b"), ("env", "X"), ("tag", "{{.Name}}/{{.ID}}")])).is_ok());
        assert!(err(&[("tag", "{{.Secret}}")]).contains("can't evaluate"));
        assert!(err(&[("tag", "{{.Name")]).contains("unclosed"));
    }

    /// Docker's `local` driver: rotated and compressed by default; its own options only.
    #[test]
    fn the_local_driver_rotates_and_compresses_by_default() {
        let local = |opts: &[(&str, &str)]| {
            let mut h = hc(opts);
            h.log_config.as_mut().unwrap().typ = Some("local".into());
            log_rotation(&h)
        };
        let r = local(&[]).unwrap();
        assert_eq!((r.max_size, r.max_files, r.compress), (Some(20 * 1024 * 1024), 5, true));
        let r = local(&[("max-size", "10m"), ("max-file", "2"), ("compress", "false")]).unwrap();
        assert_eq!((r.max_size, r.max_files, r.compress), (Some(10_000_000), 2, false));
        assert!(!local(&[("max-file", "1")]).unwrap().compress, "one file: nothing rotated to compress");
        assert!(local(&[("tag", "x")]).unwrap_err().message.contains("unknown log opt 'tag' for local log driver"));
        assert!(local(&[("max-file", "0")]).is_err());
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
