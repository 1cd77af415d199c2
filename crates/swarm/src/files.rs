//! What a node keeps of its membership, written atomically in a directory only root can enter:
//!
//! - `state.json`: the node file (IDs, role, addresses, managers);
//! - `certs/ca.pem`, `certs/node.pem`: the root and the node's certificate;
//! - `certs/node.key`: the node's TLS key — in the clear (PEM `PRIVATE KEY`), or under autolock
//!   sealed with the unlock key together with the data key (PEM `SKIFF LOCKED NODE KEY`);
//! - `certs/raft.dek`: a manager's data key (which seals its raft database), in the clear
//!   only when the node is not locked.
//!
//! Sealing writes the sealed key file before it removes the clear data key, and loading a
//! sealed key file removes a clear data key a crash left behind; unsealing writes the data key
//! first. So a crash at any point leaves either a sealed node or a clear one, never a locked
//! node whose data key is readable.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use skiff_cluster::seal::{Key, SealError};
use skiff_cluster::tls::Credentials;
use skiff_common::fsutil::atomic_write;

use crate::NodeFile;

const LOCKED_LABEL: &str = "SKIFF LOCKED NODE KEY";
const LOCKED_CONTEXT: &[u8] = b"skiff node key";

/// The node's PEMs and keys as it holds them in memory.
#[derive(Clone)]
pub(crate) struct Keys {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// A manager's data key; `None` on workers.
    pub dek: Option<Arc<Key>>,
    /// The unlock key the files are sealed with (autolock), or `None` for clear files.
    pub kek: Option<Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("sealed", &self.kek.is_some()).finish_non_exhaustive()
    }
}

impl Keys {
    /// The credentials TLS takes.
    pub fn credentials(&self) -> std::io::Result<Credentials> {
        let key = match PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(std::io::Error::other)? {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => return Err(std::io::Error::other("the node key is not PKCS#8")),
        };
        Credentials::from_pem(&self.ca_pem, &self.cert_pem, key).map_err(std::io::Error::other)
    }
}

/// A locked node's files: what it can read before the unlock key is given.
#[derive(Debug, Clone)]
pub(crate) struct LockedKeys {
    pub ca_pem: String,
    pub cert_pem: String,
    pub sealed: Vec<u8>,
}

/// What the sealed key file holds.
#[derive(Serialize, Deserialize)]
struct Sealed {
    key_pem: String,
    dek: Option<String>,
}

impl LockedKeys {
    /// Opens the sealed key file with `kek`.
    pub fn unlock(&self, kek: &Key) -> Result<Keys, SealError> {
        let plain = kek.open(&self.sealed, LOCKED_CONTEXT)?;
        let s: Sealed = serde_json::from_slice(&plain).map_err(|_| SealError::Open)?;
        let dek = s.dek.map(|d| decode_key(&d).map(Arc::new)).transpose().map_err(|_| SealError::Open)?;
        Ok(Keys {
            ca_pem: self.ca_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: s.key_pem,
            dek,
            kek: Some(kek.clone()),
        })
    }
}

/// What [`load`] found.
pub(crate) enum Loaded {
    Open(NodeFile, Keys),
    Locked(NodeFile, LockedKeys),
}

fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

fn encode_key(k: &Key) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.as_bytes())
}

fn decode_key(s: &str) -> std::io::Result<Key> {
    let raw = base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(std::io::Error::other)?;
    let b: [u8; 32] = raw.try_into().map_err(|_| std::io::Error::other("a data key is 32 bytes"))?;
    Ok(Key::from_bytes(b))
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

fn pem_unwrap(label: &str, text: &str) -> Option<Vec<u8>> {
    let body = text.trim().strip_prefix(&format!("-----BEGIN {label}-----"))?;
    let body = body.strip_suffix(&format!("-----END {label}-----"))?;
    let joined: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(joined).ok()
}

/// Writes the node's state and keys: sealed with `keys.kek` when it is set.
pub(crate) fn save(dir: &Path, file: &NodeFile, keys: &Keys) -> std::io::Result<()> {
    private_dir(dir)?;
    let certs = dir.join("certs");
    private_dir(&certs)?;
    atomic_write(&certs.join("ca.pem"), keys.ca_pem.as_bytes())?;
    atomic_write(&certs.join("node.pem"), keys.cert_pem.as_bytes())?;
    match &keys.kek {
        Some(kek) => {
            let inner = Sealed { key_pem: keys.key_pem.clone(), dek: keys.dek.as_deref().map(encode_key) };
            let plain = serde_json::to_vec(&inner).map_err(std::io::Error::other)?;
            let sealed = kek.seal(&plain, LOCKED_CONTEXT);
            atomic_write(&certs.join("node.key"), pem_wrap(LOCKED_LABEL, &sealed).as_bytes())?;
            remove_if_present(&certs.join("raft.dek"))?;
        }
        None => {
            match &keys.dek {
                Some(dek) => atomic_write(&certs.join("raft.dek"), encode_key(dek).as_bytes())?,
                None => remove_if_present(&certs.join("raft.dek"))?,
            }
            atomic_write(&certs.join("node.key"), keys.key_pem.as_bytes())?;
        }
    }
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    atomic_write(&dir.join("state.json"), &json)
}

/// Reads them back; `None` when this node is in no swarm. A manager from before encryption at
/// rest gets a data key now (its clear rows stay readable).
pub(crate) fn load(dir: &Path) -> std::io::Result<Option<Loaded>> {
    let state = match std::fs::read(dir.join("state.json")) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let file: NodeFile = serde_json::from_slice(&state).map_err(std::io::Error::other)?;
    if file.schema > 1 {
        return Err(std::io::Error::other(format!(
            "swarm state of schema {} is newer than this skiffd's",
            file.schema
        )));
    }
    let certs = dir.join("certs");
    let read = |n: &str| std::fs::read_to_string(certs.join(n));
    let (ca_pem, cert_pem, key_text) = (read("ca.pem")?, read("node.pem")?, read("node.key")?);
    if let Some(sealed) = pem_unwrap(LOCKED_LABEL, &key_text) {
        remove_if_present(&certs.join("raft.dek"))?;
        return Ok(Some(Loaded::Locked(file, LockedKeys { ca_pem, cert_pem, sealed })));
    }
    let dek = match read("raft.dek") {
        Ok(t) => Some(Arc::new(decode_key(&t)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut keys = Keys { ca_pem, cert_pem, key_pem: key_text, dek, kek: None };
    keys.credentials()?;
    if file.role == skiff_cluster::types::StoredRole::Manager && keys.dek.is_none() {
        keys.dek = Some(Arc::new(Key::generate()));
        save(dir, &file, &keys)?;
    }
    Ok(Some(Loaded::Open(file, keys)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::types::StoredRole;

    fn node_file() -> NodeFile {
        NodeFile {
            schema: 1,
            node_id: "n".into(),
            cluster_id: "c".into(),
            role: StoredRole::Manager,
            listen_addr: "0.0.0.0:2377".into(),
            advertise_addr: "10.0.0.1:2377".into(),
            managers: Vec::new(),
            ca_generation: String::new(),
        }
    }

    fn keys() -> Keys {
        let ca = skiff_cluster::ca::RootCa::generate().unwrap();
        let key = skiff_cluster::ca::NodeKey::generate().unwrap();
        let who = skiff_cluster::identity::NodeIdentity {
            node_id: "n".into(),
            role: skiff_cluster::identity::Role::Manager,
            cluster_id: "c".into(),
        };
        let cert = ca.issue(&key.csr().unwrap(), &who, skiff_cluster::ca::DEFAULT_NODE_VALIDITY).unwrap();
        Keys {
            ca_pem: ca.cert_pem().into(),
            cert_pem: cert.pem,
            key_pem: key.pem(),
            dek: Some(Arc::new(Key::generate())),
            kek: None,
        }
    }

    fn everything_in(dir: &Path) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir.join("certs")).unwrap() {
            all.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        all
    }

    #[test]
    fn a_sealed_node_keeps_neither_key_readable_and_opens_only_with_its_unlock_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = keys();
        save(dir.path(), &node_file(), &k).unwrap();
        let Some(Loaded::Open(_, clear)) = load(dir.path()).unwrap() else { panic!("open") };
        assert_eq!(clear.dek, k.dek);
        assert!(clear.credentials().is_ok());

        let kek = Key::generate();
        k.kek = Some(kek.clone());
        save(dir.path(), &node_file(), &k).unwrap();
        let disk = everything_in(dir.path());
        let dek = encode_key(k.dek.as_ref().unwrap());
        let find = |n: &[u8]| disk.windows(n.len()).any(|w| w == n);
        assert!(!find(b"PRIVATE KEY") && !find(dek.as_bytes()), "no key in the clear once sealed");
        assert!(!dir.path().join("certs/raft.dek").exists());
        let Some(Loaded::Locked(_, locked)) = load(dir.path()).unwrap() else { panic!("locked") };
        assert_eq!(locked.unlock(&Key::generate()).unwrap_err(), SealError::Open, "a wrong key");
        let opened = locked.unlock(&kek).unwrap();
        assert_eq!((opened.key_pem.as_str(), &opened.dek), (k.key_pem.as_str(), &k.dek));

        // Back to clear (autolock off): the data key is written before the key file.
        k.kek = None;
        save(dir.path(), &node_file(), &k).unwrap();
        assert!(matches!(load(dir.path()).unwrap(), Some(Loaded::Open(..))));
    }

    #[test]
    fn a_clear_data_key_left_beside_a_sealed_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = keys();
        k.kek = Some(Key::generate());
        save(dir.path(), &node_file(), &k).unwrap();
        // A crash between writing the sealed file and removing the clear data key.
        atomic_write(&dir.path().join("certs/raft.dek"), encode_key(k.dek.as_ref().unwrap()).as_bytes()).unwrap();
        assert!(matches!(load(dir.path()).unwrap(), Some(Loaded::Locked(..))));
        assert!(!dir.path().join("certs/raft.dek").exists());
    }

    #[test]
    fn damaged_key_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = keys();
        let kek = Key::generate();
        k.kek = Some(kek.clone());
        save(dir.path(), &node_file(), &k).unwrap();
        let path = dir.path().join("certs/node.key");
        let text = std::fs::read_to_string(&path).unwrap();
        for bad in [
            text.replace('A', "B"),
            format!("-----BEGIN {LOCKED_LABEL}-----\n!!!\n-----END {LOCKED_LABEL}-----\n"),
            format!("-----BEGIN {LOCKED_LABEL}-----\n-----END {LOCKED_LABEL}-----\n"),
        ] {
            std::fs::write(&path, bad).unwrap();
            match load(dir.path()) {
                Ok(Some(Loaded::Locked(_, l))) => assert!(l.unlock(&kek).is_err()),
                Ok(Some(Loaded::Open(..))) => panic!("a damaged sealed file read as clear"),
                _ => {}
            }
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
