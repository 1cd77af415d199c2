//! Secrets and configs on the managers: `docker secret` and `docker config`, each a check and
//! a command through the leader. Their data goes out only in a node's assignments, for the
//! tasks that use them.

use std::collections::BTreeMap;

use skiff_cluster::identity::new_id;
use skiff_cluster::types::{Blob, BlobKind, ClusterState, Command, Delivered, ServiceSpec, Task};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;

/// The largest secret and config swarmkit takes.
const MAX_SECRET: usize = 500 * 1024;
const MAX_CONFIG: usize = 1000 * 1024;

fn invalid(msg: impl std::fmt::Display) -> ManagerError {
    ManagerError::new(Kind::Invalid, format!("rpc error: code = InvalidArgument desc = {msg}"))
}

/// Names as swarmkit takes them: 1–64 characters of `[a-zA-Z0-9_.-]`, starting and ending with
/// a letter or digit.
fn check_name(kind: BlobKind, name: &str) -> Result<()> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && edge(name.chars().next())
        && edge(name.chars().last());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9] ({} {name:?})",
            kind.as_str()
        )))
    }
}

/// Checks the secrets and configs a service spec uses: each exists, and no two land on one
/// path.
pub(crate) fn check_refs(state: &ClusterState, spec: &ServiceSpec) -> Result<()> {
    let c = &spec.task.container;
    let mut paths = std::collections::HashSet::new();
    for (kind, refs) in [(BlobKind::Secret, &c.secrets), (BlobKind::Config, &c.configs)] {
        for r in refs {
            if !state.blobs(kind).contains_key(&r.id) {
                return Err(invalid(format!("{} reference {} not found: {}", kind.as_str(), r.name, r.id)));
            }
            if r.target.is_empty() || r.target.split('/').any(|p| p == "..") {
                return Err(invalid(format!("{} {}: malformed file target {:?}", kind.as_str(), r.name, r.target)));
            }
            if !paths.insert(r.path(kind)) {
                return Err(invalid(format!("{} references '{}' have a conflicting target", kind.as_str(), r.target)));
            }
        }
    }
    Ok(())
}

/// The blobs `tasks` use (those still wanted running), for their node.
pub(crate) fn delivered(state: &ClusterState, tasks: &[Task]) -> Vec<Delivered> {
    let mut out: BTreeMap<(BlobKind, String), Delivered> = BTreeMap::new();
    for t in tasks.iter().filter(|t| t.wanted()) {
        let c = &t.spec.container;
        for (kind, refs) in [(BlobKind::Secret, &c.secrets), (BlobKind::Config, &c.configs)] {
            for r in refs {
                if let Some(b) = state.blobs(kind).get(&r.id) {
                    out.entry((kind, r.id.clone())).or_insert_with(|| Delivered {
                        kind,
                        id: r.id.clone(),
                        data: b.data.clone(),
                    });
                }
            }
        }
    }
    out.into_values().collect()
}

impl Manager {
    /// `docker secret create` / `docker config create`: the new object's ID.
    pub async fn create_blob(
        &self,
        kind: BlobKind,
        name: &str,
        labels: BTreeMap<String, String>,
        data: Vec<u8>,
    ) -> Result<String> {
        check_name(kind, name)?;
        let max = if kind == BlobKind::Secret { MAX_SECRET } else { MAX_CONFIG };
        if data.is_empty() || data.len() > max {
            return Err(invalid(format!(
                "{} data must be larger than 0 and less than {}KB",
                kind.as_str(),
                max / 1024
            )));
        }
        let id = new_id();
        let blob = Blob { id: id.clone(), version: 0, created_at: 0, updated_at: 0, name: name.into(), labels, data };
        self.write(Command::CreateBlob { kind, blob: Box::new(blob) }).await?;
        Ok(id)
    }

    /// `docker secret/config update`: labels only (the data of one cannot change).
    pub async fn update_blob(
        &self,
        kind: BlobKind,
        key: &str,
        version: u64,
        name: &str,
        labels: BTreeMap<String, String>,
        data: Option<&[u8]>,
    ) -> Result<()> {
        let b = self.blob(kind, key).await?;
        if name != b.name || data.is_some_and(|d| d != b.data.as_slice()) {
            return Err(invalid(format!("only updates to Labels are allowed ({} {})", kind.as_str(), b.name)));
        }
        self.write(Command::UpdateBlob { kind, id: b.id, version, labels }).await
    }

    /// `docker secret/config rm` (refused while a service uses it).
    pub async fn remove_blob(&self, kind: BlobKind, key: &str) -> Result<()> {
        let b = self.blob(kind, key).await?;
        self.write(Command::RemoveBlob { kind, id: b.id }).await
    }

    /// A secret or config by ID, name or unique ID prefix.
    pub async fn blob(&self, kind: BlobKind, key: &str) -> Result<Blob> {
        let state = self.read().await?;
        crate::control::resolve(kind.as_str(), key, state.blobs(kind), |b| b.name == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::types::{FileRef, ServiceMode, TaskSpec};

    fn blob(id: &str, name: &str) -> Blob {
        Blob {
            id: id.into(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            name: name.into(),
            labels: BTreeMap::new(),
            data: b"v".to_vec(),
        }
    }

    fn file(id: &str, target: &str) -> FileRef {
        FileRef { id: id.into(), name: id.into(), target: target.into(), uid: 0, gid: 0, mode: 0o444 }
    }

    #[test]
    fn names_references_and_removal_in_use_are_checked() {
        for bad in ["", "-a", "a-", "a b", &"x".repeat(65), "a/b"] {
            assert!(check_name(BlobKind::Secret, bad).is_err(), "{bad:?}");
        }
        check_name(BlobKind::Config, "app.conf-2").unwrap();

        let mut st = ClusterState::default();
        st.apply(1, 1, &Command::CreateBlob { kind: BlobKind::Secret, blob: Box::new(blob("s1", "pw")) });
        let again = st.apply(2, 2, &Command::CreateBlob { kind: BlobKind::Secret, blob: Box::new(blob("s2", "pw")) });
        assert!(again.error.unwrap().contains("already exists"));
        let mut task = TaskSpec::default();
        task.container.image = "busybox".into();
        task.container.secrets = vec![file("s1", "pw"), file("s1", "/run/secrets/pw")];
        let mut spec = ServiceSpec {
            name: "web".into(),
            labels: BTreeMap::new(),
            task,
            mode: ServiceMode::Global,
            update: Default::default(),
            rollback: Default::default(),
            endpoint_mode: Default::default(),
        };
        assert!(check_refs(&st, &spec).unwrap_err().message.contains("conflicting target"));
        spec.task.container.secrets.pop();
        check_refs(&st, &spec).unwrap();
        spec.task.container.configs = vec![file("nope", "app.conf")];
        assert!(check_refs(&st, &spec).unwrap_err().message.contains("not found"));
        spec.task.container.configs = vec![file("s1", "../../etc/shadow")];
        assert!(check_refs(&st, &spec).is_err(), "a config id that is a secret's, and a target climbing out");
        spec.task.container.configs.clear();

        let svc = skiff_cluster::types::Service::new("svc", spec);
        st.apply(3, 3, &Command::CreateService { service: Box::new(svc) });
        let rm = st.apply(4, 4, &Command::RemoveBlob { kind: BlobKind::Secret, id: "s1".into() });
        assert!(rm.error.unwrap().contains("'pw' is in use by the following service: web"));
        st.apply(5, 5, &Command::RemoveService { id: "svc".into() });
        assert_eq!(st.apply(6, 6, &Command::RemoveBlob { kind: BlobKind::Secret, id: "s1".into() }).error, None);
    }
}
