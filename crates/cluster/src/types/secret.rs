//! Secrets and configs (swarmkit's `Secret` and `Config`): named blobs kept in the replicated
//! store — sealed there like every entry, and under autolock's key — and sent, over mutual TLS,
//! only to the nodes that run a task using them. A node keeps them in memory and on a tmpfs
//! while the task runs; they are never written to its disk.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which of the two a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Secret,
    Config,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Secret => "secret",
            BlobKind::Config => "config",
        }
    }
}

/// Bytes as base64 in JSON.
pub(crate) mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A secret or a config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub id: String,
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// A secret or config a task's container gets as a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    /// The object's name (as the service spec names it).
    pub name: String,
    /// Where: a file name under `/run/secrets` for a secret, or an absolute path.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl FileRef {
    /// The path inside the container.
    pub fn path(&self, kind: BlobKind) -> String {
        if self.target.starts_with('/') {
            self.target.clone()
        } else if kind == BlobKind::Secret {
            format!("/run/secrets/{}", self.target)
        } else {
            format!("/{}", self.target)
        }
    }
}

/// A blob as a node receives it for its tasks.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub kind: BlobKind,
    pub id: String,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivered").field("kind", &self.kind).field("id", &self.id).finish_non_exhaustive()
    }
}

impl super::ClusterState {
    pub fn blobs(&self, kind: BlobKind) -> &BTreeMap<String, Blob> {
        match kind {
            BlobKind::Secret => &self.secrets,
            BlobKind::Config => &self.configs,
        }
    }

    fn blobs_mut(&mut self, kind: BlobKind) -> &mut BTreeMap<String, Blob> {
        match kind {
            BlobKind::Secret => &mut self.secrets,
            BlobKind::Config => &mut self.configs,
        }
    }

    /// The services whose spec uses blob `id`.
    pub fn blob_users(&self, kind: BlobKind, id: &str) -> Vec<String> {
        self.services
            .values()
            .filter(|s| {
                let c = &s.spec.task.container;
                let refs = match kind {
                    BlobKind::Secret => &c.secrets,
                    BlobKind::Config => &c.configs,
                };
                refs.iter().any(|r| r.id == id)
            })
            .map(|s| s.spec.name.clone())
            .collect()
    }

    /// Applies a secret or config command (see [`super::Command`]).
    pub(super) fn apply_blob(&mut self, index: u64, now: i64, cmd: &super::Command) -> Result<(), String> {
        use super::Command;
        match cmd {
            Command::CreateBlob { kind, blob } => {
                let map = self.blobs_mut(*kind);
                if map.values().any(|b| b.name == blob.name) || map.contains_key(&blob.id) {
                    return Err(format!(
                        "rpc error: code = AlreadyExists desc = {} {} already exists",
                        kind.as_str(),
                        blob.name
                    ));
                }
                let mut b = (**blob).clone();
                (b.version, b.created_at, b.updated_at) = (index, now, now);
                map.insert(b.id.clone(), b);
            }
            Command::UpdateBlob { kind, id, version, labels } => {
                let b = self.blobs_mut(*kind).get_mut(id).ok_or_else(|| format!("{} {id} not found", kind.as_str()))?;
                if b.version != *version {
                    return Err("rpc error: code = Unknown desc = update out of sequence".into());
                }
                b.labels = labels.clone();
                (b.version, b.updated_at) = (index, now);
            }
            Command::RemoveBlob { kind, id } => {
                let users = self.blob_users(*kind, id);
                let b = self.blobs(*kind).get(id).ok_or_else(|| format!("{} {id} not found", kind.as_str()))?;
                if !users.is_empty() {
                    return Err(format!(
                        "rpc error: code = InvalidArgument desc = {} '{}' is in use by the following service{}: {}",
                        kind.as_str(),
                        b.name,
                        if users.len() == 1 { "" } else { "s" },
                        users.join(", ")
                    ));
                }
                self.blobs_mut(*kind).remove(id);
            }
            _ => return Err("not a secret or config command".into()),
        }
        Ok(())
    }
}
