//! The filters of `docker service ls`, `service ps` / `node ps`, `secret ls` and `config ls`:
//! parsed from the query as the CLI sends them, and matched against the cluster's objects.

use std::collections::{BTreeMap, HashMap};

use skiff_cluster::types::{self as ct};
use skiff_engine::{EngineError, Result};

/// Filters as the query carries them: `{"key": {"value": true}}` or `{"key": ["value"]}`.
pub fn parse_filters(raw: Option<&str>) -> Result<HashMap<String, Vec<String>>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(HashMap::new()) };
    let v: HashMap<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|e| EngineError::invalid(format!("invalid filters: {e}")))?;
    let mut out = HashMap::new();
    for (k, v) in v {
        let values: Vec<String> = match v {
            serde_json::Value::Object(m) => {
                m.into_iter().filter(|(_, on)| on.as_bool() != Some(false)).map(|(k, _)| k).collect()
            }
            serde_json::Value::Array(a) => a.into_iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => return Err(EngineError::invalid(format!("invalid filter '{k}'"))),
        };
        out.insert(k, values);
    }
    Ok(out)
}

fn label_matches(labels: &BTreeMap<String, String>, wanted: &[String]) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(w),
    })
}

/// `docker service ls -f`: `id` and `name` (prefixes), `label`, `mode`.
pub fn service_matches(s: &ct::Service, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    for (key, wanted) in f.iter().filter(|(_, w)| !w.is_empty()) {
        let ok = match key.as_str() {
            "id" => wanted.iter().any(|w| s.id.starts_with(w.as_str())),
            "name" => wanted.iter().any(|w| s.spec.name.starts_with(w.as_str())),
            "label" => label_matches(&s.spec.labels, wanted),
            "mode" => wanted.iter().any(|w| match s.spec.mode {
                ct::ServiceMode::Replicated { .. } => w == "replicated",
                ct::ServiceMode::Global => w == "global",
            }),
            other => return Err(EngineError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `docker service ps` / `node ps` filters: `id`, `name`, `service` (ID or name), `node` (ID or
/// hostname), `label`, `desired-state`, and the CLI's `_up-to-date`.
pub fn task_matches(t: &ct::Task, state: &ct::ClusterState, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    for (key, wanted) in f.iter().filter(|(_, w)| !w.is_empty()) {
        let ok = match key.as_str() {
            "id" => wanted.iter().any(|w| t.id.starts_with(w.as_str())),
            "name" => wanted.iter().any(|w| {
                t.name().starts_with(w.as_str()) || format!("{}.{}", t.service_name, t.slot).starts_with(w.as_str())
            }),
            "service" => wanted.iter().any(|w| {
                *w == t.service_id || *w == t.service_name || (w.len() >= 3 && t.service_id.starts_with(w.as_str()))
            }),
            "node" => wanted.iter().any(|w| {
                *w == t.node_id
                    || state.nodes.get(&t.node_id).is_some_and(|n| n.description.hostname == *w || n.spec.name == *w)
            }),
            "label" => label_matches(&t.spec.container.labels, wanted),
            // The CLI's progress watches the tasks of the service's current spec.
            "_up-to-date" => state.services.get(&t.service_id).is_some_and(|s| s.spec.task == t.spec),
            "desired-state" => wanted.iter().any(|w| match w.as_str() {
                "running" => t.desired_state == ct::TaskState::Running,
                "shutdown" => t.desired_state >= ct::TaskState::Shutdown,
                "accepted" => t.desired_state == ct::TaskState::Accepted,
                _ => false,
            }),
            other => return Err(EngineError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `docker secret ls -f` / `config ls -f`: `id`, `name` (prefixes), `label`.
pub fn blob_matches(b: &ct::Blob, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    for (key, wanted) in f.iter().filter(|(_, w)| !w.is_empty()) {
        let ok = match key.as_str() {
            "id" => wanted.iter().any(|w| b.id.starts_with(w.as_str())),
            "name" | "names" => wanted.iter().any(|w| b.name.starts_with(w.as_str())),
            "label" => label_matches(&b.labels, wanted),
            other => return Err(EngineError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_both_forms() {
        let f = parse_filters(Some(r#"{"service":{"web":true},"desired-state":["running"]}"#)).unwrap();
        assert_eq!(f["service"], vec!["web"]);
        assert_eq!(f["desired-state"], vec!["running"]);
        assert!(parse_filters(Some("{")).is_err());
        assert!(parse_filters(Some(r#"{"a":1}"#)).is_err());
    }
}
