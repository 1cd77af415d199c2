//! `docker ps` and `docker container prune`: which containers a filter selects.
//!
//! The filter is a pure function of a record (and of how image names resolve), so it is tested
//! here without containers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bollard_stubs::models::ContainerSummary;

use super::{ContainerRecord, Containers, Status};
use crate::error::{EngineError, Result};

/// The filters `GET /containers/json` knows (dockerd's names).
const KNOWN: &[&str] = &[
    "id", "name", "status", "exited", "label", "ancestor", "volume", "network", "health", "is-task", "before", "since",
];

/// What `GET /containers/json` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Stopped containers too (implied by a `status` filter or a limit, as dockerd does).
    pub all: bool,
    /// At most this many, newest first.
    pub limit: Option<usize>,
    /// Compute SizeRw/SizeRootFs.
    pub size: bool,
    pub filters: BTreeMap<String, Vec<String>>,
}

/// What `POST /containers/prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub reclaimed: u64,
}

/// Whether `r` passes every filter. `image_id` resolves an image name to its ID (for
/// `ancestor`). An unknown filter is an error, as dockerd's.
pub fn matches(
    r: &ContainerRecord,
    filters: &BTreeMap<String, Vec<String>>,
    image_id: &dyn Fn(&str) -> Option<String>,
) -> Result<bool> {
    for (k, vals) in filters {
        if !KNOWN.contains(&k.as_str()) {
            return Err(EngineError::invalid(format!("invalid filter '{k}'")));
        }
        let test = |v: &String| match k.as_str() {
            "id" => r.id.starts_with(v.as_str()),
            "name" => r.name.contains(v.trim_start_matches('/')),
            "status" => {
                r.state.status.as_str() == v
                    || (v == "created" && r.state.status == Status::Exited && r.state.started_at.is_none())
            }
            "exited" => r.state.status == Status::Exited && v.parse::<i32>().ok() == Some(r.state.exit_code),
            "label" => {
                let labels = r.config.labels.as_ref();
                match v.split_once('=') {
                    Some((lk, lv)) => labels.and_then(|l| l.get(lk)).is_some_and(|x| x == lv),
                    None => labels.is_some_and(|l| l.contains_key(v.as_str())),
                }
            }
            "ancestor" => r.image_ref == *v || image_id(v).is_some_and(|id| id == r.image_id.to_string()),
            "volume" => r.mounts.iter().any(|m| m.source == *v || m.destination == *v),
            "network" => {
                r.host_config.network_mode.as_deref() == Some(v.as_str())
                    || r.networks.iter().any(|n| n.network_name == *v || n.network_id.starts_with(v.as_str()))
            }
            "health" => r.state.health.as_ref().map(|h| h.status.as_str()).unwrap_or("none") == v,
            "is-task" => v == "false",
            // Applied by the caller: they name other containers.
            _ => true,
        };
        // Labels must all match; other filters match any of their values.
        let ok = if k == "label" { vals.iter().all(test) } else { vals.iter().any(test) };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Containers {
    fn image_id_of(&self, name: &str) -> Option<String> {
        self.images.resolve(name).ok().map(|i| i.id().to_string())
    }

    /// The creation time of the container a `before`/`since` filter names.
    fn created_of(&self, filters: &BTreeMap<String, Vec<String>>, key: &str) -> Result<Option<SystemTime>> {
        match filters.get(key).and_then(|v| v.first()) {
            Some(k) => Ok(Some(self.get(k)?.record().created)),
            None => Ok(None),
        }
    }

    /// `GET /containers/json`, newest first.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<ContainerSummary>> {
        let mut recs: Vec<ContainerRecord> = self.all().into_iter().map(|c| c.record()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let before = self.created_of(&opts.filters, "before")?;
        let since = self.created_of(&opts.filters, "since")?;
        let all = opts.all || opts.filters.contains_key("status") || opts.limit.is_some();
        let mut out = Vec::new();
        for r in recs {
            let listed = all || r.state.status.is_live() || r.state.status == Status::Restarting;
            if !listed || !matches(&r, &opts.filters, &|n| self.image_id_of(n))? {
                continue;
            }
            if before.as_ref().is_some_and(|b| r.created >= *b) || since.as_ref().is_some_and(|s| r.created <= *s) {
                continue;
            }
            out.push(self.summary(&r, opts.size));
            if opts.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `POST /containers/prune`: stopped containers that match the `label` and `until` filters.
    pub async fn prune(self: &Arc<Self>, filters: &BTreeMap<String, Vec<String>>) -> Result<PruneReport> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "until") {
                return Err(EngineError::invalid(format!("invalid filter '{k}'")));
            }
        }
        let labels: BTreeMap<String, Vec<String>> =
            filters.iter().filter(|(k, _)| k.as_str() == "label").map(|(k, v)| (k.clone(), v.clone())).collect();
        let unlabels = filters.get("label!").cloned().unwrap_or_default();
        let until = match filters.get("until").and_then(|v| v.first()) {
            Some(u) => Some(super::logs::parse_time(u)?),
            None => None,
        };
        let mut report = PruneReport::default();
        for c in self.all() {
            let r = c.record();
            if r.state.status.is_live() || r.state.status == Status::Restarting {
                continue;
            }
            if !matches(&r, &labels, &|_| None)? {
                continue;
            }
            let has_label = |l: &String| {
                matches(&r, &BTreeMap::from([("label".to_string(), vec![l.clone()])]), &|_| None).unwrap_or(false)
            };
            if unlabels.iter().any(has_label) {
                continue;
            }
            if let Some(t) = until
                && r.created > t
            {
                continue;
            }
            let size = self.size_rw(&r.id);
            if self.remove(&r.id, false, false).await.is_ok() {
                report.deleted.push(r.id.clone());
                report.reclaimed += size;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: serde_json::Value) -> ContainerRecord {
        let mut base = serde_json::json!({
            "id": "abc123", "name": "web", "created": "2026-12-07T00:00:00Z", "image_ref": "busybox",
            "image_id": format!("sha256:{}", "1".repeat(64)), "top_layer": null,
            "config": {}, "host_config": {}, "path": "sh", "args": [], "mounts": [],
            "state": {"status": "exited", "pid": 0, "exit_code": 3, "error": "", "started_at": "2026-12-07T00:00:01Z",
                "finished_at": null, "oom_killed": false, "health": null},
            "restart_count": 0, "manually_stopped": false, "driver": "overlay2"
        });
        if let (Some(b), Some(o)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).expect("a record")
    }

    fn f(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn no_images(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn filters_select_as_dockerd_does() {
        let r = record(serde_json::json!({"config": {"Labels": {"a": "1", "b": "2"}}}));
        let yes = |filters: &[(&str, &[&str])]| matches(&r, &f(filters), &no_images).unwrap();
        assert!(yes(&[]));
        assert!(yes(&[("id", &["abc"])]));
        assert!(!yes(&[("id", &["bc"])]), "id is a prefix");
        assert!(yes(&[("name", &["/we"])]), "name is a substring, a leading / ignored");
        assert!(yes(&[("status", &["exited"])]));
        assert!(yes(&[("exited", &["3"])]) && !yes(&[("exited", &["0"])]));
        assert!(yes(&[("label", &["a=1", "b"])]), "labels must all match");
        assert!(!yes(&[("label", &["a=1", "c"])]));
        assert!(yes(&[("status", &["running", "exited"])]), "other filters match any value");
        assert!(yes(&[("health", &["none"])]));
        assert!(yes(&[("is-task", &["false"])]) && !yes(&[("is-task", &["true"])]));
        assert!(yes(&[("ancestor", &["busybox"])]));
    }

    #[test]
    fn a_container_that_never_started_is_created() {
        let r = record(serde_json::json!({"state": {"status": "exited", "pid": 0, "exit_code": 0, "error": "",
            "started_at": null, "finished_at": null, "oom_killed": false, "health": null}}));
        assert!(matches(&r, &f(&[("status", &["created"])]), &no_images).unwrap());
    }

    #[test]
    fn ancestor_resolves_image_names_to_ids() {
        let r = record(serde_json::json!({}));
        let id = format!("sha256:{}", "1".repeat(64));
        let resolve = |n: &str| (n == "other:tag").then(|| id.clone());
        assert!(matches(&r, &f(&[("ancestor", &["other:tag"])]), &resolve).unwrap());
        assert!(!matches(&r, &f(&[("ancestor", &["nothing"])]), &resolve).unwrap());
    }

    #[test]
    fn unknown_filters_are_refused() {
        let r = record(serde_json::json!({}));
        let e = matches(&r, &f(&[("colour", &["red"])]), &no_images).unwrap_err();
        assert_eq!(e.kind, crate::Kind::Invalid);
        assert_eq!(e.message, "invalid filter 'colour'");
    }
}
