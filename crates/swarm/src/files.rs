//! What a node keeps of its membership: `state.json` and `certs/{ca,node}.pem`, `certs/node.key`,
//! written atomically in a directory only root can enter.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use skiff_cluster::tls::Credentials;
use skiff_common::fsutil::atomic_write;

use crate::NodeFile;

fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

/// Writes the node's state and credentials.
pub(crate) fn save(dir: &Path, file: &NodeFile, ca: &str, cert: &str, key: &str) -> std::io::Result<()> {
    private_dir(dir)?;
    private_dir(&dir.join("certs"))?;
    atomic_write(&dir.join("certs/ca.pem"), ca.as_bytes())?;
    atomic_write(&dir.join("certs/node.pem"), cert.as_bytes())?;
    atomic_write(&dir.join("certs/node.key"), key.as_bytes())?;
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    atomic_write(&dir.join("state.json"), &json)
}

/// Reads them back; `None` when this node is in no swarm.
pub(crate) fn load(dir: &Path) -> std::io::Result<Option<(NodeFile, Credentials)>> {
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
    let read = |n: &str| std::fs::read(dir.join("certs").join(n));
    let ca = CertificateDer::from_pem_slice(&read("ca.pem")?).map_err(std::io::Error::other)?;
    let cert = CertificateDer::from_pem_slice(&read("node.pem")?).map_err(std::io::Error::other)?;
    let key = match PrivateKeyDer::from_pem_slice(&read("node.key")?).map_err(std::io::Error::other)? {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => return Err(std::io::Error::other("the node key is not PKCS#8")),
    };
    Ok(Some((file, Credentials { ca, cert, key })))
}
