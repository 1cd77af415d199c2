//! A node's identity, as its certificate states it.
//!
//! As swarmkit's: the subject's CN is the node ID, its OU the role (`swarm-manager`,
//! `swarm-worker`), its O the cluster ID; the role is also a DNS name of the certificate, so a
//! node dialling a manager verifies the name `swarm-manager` and nothing else passes.

use std::fmt;

use rand::Rng;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{ClusterError, Result};

/// What a node is allowed to be in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    /// The OU, and the DNS name, of a certificate for this role.
    pub fn ou(self) -> &'static str {
        match self {
            Role::Manager => "swarm-manager",
            Role::Worker => "swarm-worker",
        }
    }

    /// The role an OU names.
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            "swarm-manager" => Some(Role::Manager),
            "swarm-worker" => Some(Role::Worker),
            _ => None,
        }
    }

    /// The Engine API's name (`manager`, `worker`).
    pub fn api_name(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// Who a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

/// The alphabet of node and cluster IDs (as swarmkit's: lowercase base 36).
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new random ID of 25 base-36 characters (at least 128 bits), as swarmkit's identity package
/// makes node, cluster, service and task IDs.
pub fn new_id() -> String {
    let mut n: u128 = rand::rng().random();
    let mut out = [b'0'; 25];
    for c in out.iter_mut().rev() {
        *c = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

/// Whether `s` could be an ID [`new_id`] made.
pub fn valid_id(s: &str) -> bool {
    s.len() == 25 && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl NodeIdentity {
    /// Reads the identity from a DER certificate (which the TLS layer has already verified
    /// against the cluster's CA).
    pub fn from_cert(der: &[u8]) -> Result<NodeIdentity> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
        let subject = cert.subject();
        let one = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>, what: &str| {
            let values: Vec<_> = it.collect();
            match values.as_slice() {
                [v] => v
                    .as_str()
                    .map(str::to_string)
                    .map_err(|_| ClusterError::NotANodeCertificate(format!("{what} is not a string"))),
                _ => Err(ClusterError::NotANodeCertificate(format!("{} {what} values", values.len()))),
            }
        };
        let node_id = one(&mut subject.iter_common_name(), "CN")?;
        let ou = one(&mut subject.iter_organizational_unit(), "OU")?;
        let cluster_id = one(&mut subject.iter_organization(), "O")?;
        let role =
            Role::from_ou(&ou).ok_or_else(|| ClusterError::NotANodeCertificate(format!("unknown role {ou:?}")))?;
        if !valid_id(&node_id) || !valid_id(&cluster_id) {
            return Err(ClusterError::NotANodeCertificate("malformed node or cluster ID".into()));
        }
        Ok(NodeIdentity { node_id, role, cluster_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_25_base36_characters_and_differ() {
        let a = new_id();
        let b = new_id();
        assert!(valid_id(&a) && valid_id(&b), "{a} {b}");
        assert_ne!(a, b);
        for bad in ["", "ABCDEFGHIJKLMNOPQRSTUVWXY", "0123456789abcdefghijklmn", "0123456789abcdefghijklmn/"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn what_is_not_a_node_certificate_is_refused() {
        assert!(NodeIdentity::from_cert(b"").is_err());
        assert!(NodeIdentity::from_cert(&[0x30, 0x82, 0xff, 0xff, 0]).is_err());
        // A certificate of the right root but without a node's subject (the root itself).
        let ca = crate::ca::RootCa::generate().unwrap();
        let e = NodeIdentity::from_cert(ca.cert_der()).unwrap_err();
        assert!(e.to_string().contains("not a node certificate"), "{e}");
    }

    #[test]
    fn roles_name_their_ou() {
        for r in [Role::Manager, Role::Worker] {
            assert_eq!(Role::from_ou(r.ou()), Some(r));
        }
        assert_eq!(Role::from_ou("swarm-admin"), None);
    }
}
