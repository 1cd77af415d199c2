//! The volume operations that need to know which containers use a volume: `volume ls`
//! filters, `volume rm` of a volume in use, `volume prune`. The volume store itself
//! ([`crate::volumes`]) knows nothing of containers.

use std::collections::{BTreeMap, HashSet};

use crate::Engine;
use crate::error::{EngineError, Result};
use crate::volumes::VolumeRecord;

/// What `POST /volumes/prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumePruneReport {
    pub deleted: Vec<String>,
    pub reclaimed: u64,
}

fn label_matches(v: &VolumeRecord, l: &str) -> bool {
    match l.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(l),
    }
}

/// Whether `v` passes `docker volume ls`'s filters (each filter: any of its values).
pub fn matches(v: &VolumeRecord, filters: &BTreeMap<String, Vec<String>>, in_use: &HashSet<String>) -> Result<bool> {
    for (k, vals) in filters {
        let test = |val: &String| match k.as_str() {
            "name" => Ok(v.name.contains(val.as_str())),
            "driver" => Ok(v.driver == *val),
            "dangling" => match val.as_str() {
                "true" | "1" => Ok(!in_use.contains(&v.name)),
                "false" | "0" => Ok(in_use.contains(&v.name)),
                _ => Err(EngineError::invalid(format!("invalid filter 'dangling={val}'"))),
            },
            "label" => Ok(label_matches(v, val)),
            _ => Err(EngineError::invalid(format!("invalid filter '{k}'"))),
        };
        let mut any = false;
        for val in vals {
            any |= test(val)?;
        }
        if !any && !vals.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Engine {
    /// `GET /volumes`.
    pub fn list_volumes(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<VolumeRecord>> {
        let in_use = self.containers.volumes_in_use();
        let mut out = Vec::new();
        for v in self.volumes.list()? {
            if matches(&v, filters, &in_use)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// `DELETE /volumes/{name}`: refused while a container (running or not) mounts it.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.volumes.inspect(name)?;
        if let Some(c) =
            self.containers.all().into_iter().find(|c| c.with(|r| r.mounts.iter().any(|m| m.source == name)))
        {
            return Err(EngineError::conflict(format!("remove {name}: volume is in use - [{}]", c.id)));
        }
        self.volumes.remove(name)
    }

    /// `POST /volumes/prune`: unused anonymous volumes (all unused ones with `all=true`)
    /// matching the `label` filters.
    pub fn prune_volumes(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<VolumePruneReport> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "all") {
                return Err(EngineError::invalid(format!("invalid filter '{k}'")));
            }
        }
        let all = filters.get("all").is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
        let in_use = self.containers.volumes_in_use();
        let mut report = VolumePruneReport::default();
        for v in self.volumes.list()? {
            if in_use.contains(&v.name) || (!all && !v.anonymous) {
                continue;
            }
            if !filters.get("label").is_none_or(|ls| ls.iter().all(|l| label_matches(&v, l)))
                || filters.get("label!").is_some_and(|ls| ls.iter().any(|l| label_matches(&v, l)))
            {
                continue;
            }
            let size = self.volumes.size(&v);
            self.volumes.remove(&v.name)?;
            report.reclaimed += size;
            report.deleted.push(v.name);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, labels: &[(&str, &str)]) -> VolumeRecord {
        VolumeRecord {
            name: name.into(),
            driver: "local".into(),
            mountpoint: format!("/v/{name}/_data").into(),
            created_at: "2026-12-07T00:00:00Z".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            options: BTreeMap::new(),
            anonymous: false,
            pending_for: None,
        }
    }

    fn f(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn volume_filters() {
        let used: HashSet<String> = ["data".to_string()].into();
        let data = vol("data", &[("app", "db")]);
        let cache = vol("cache", &[]);
        let yes = |v: &VolumeRecord, filters: &[(&str, &[&str])]| matches(v, &f(filters), &used).unwrap();
        assert!(yes(&data, &[("name", &["at"])]));
        assert!(!yes(&cache, &[("name", &["at"])]));
        assert!(yes(&cache, &[("dangling", &["true"])]) && !yes(&data, &[("dangling", &["1"])]));
        assert!(yes(&data, &[("dangling", &["false"])]));
        assert!(yes(&data, &[("label", &["app=db"])]) && yes(&data, &[("label", &["app"])]));
        assert!(!yes(&cache, &[("label", &["app"])]));
        assert!(yes(&data, &[("driver", &["local"])]));
        assert!(matches(&data, &f(&[("colour", &["red"])]), &used).is_err());
        assert!(matches(&data, &f(&[("dangling", &["maybe"])]), &used).is_err());
    }
}
