//! Mutual TLS between nodes (rustls with ring, TLS 1.3 only).
//!
//! - A manager serves with its certificate and the root; it asks every client for a
//!   certificate from the cluster's CA but lets a client without one finish the handshake, so
//!   that a joining node can present its token — every other request checks [`peer_identity`].
//! - A node dials a manager by the name `swarm-manager`, which only managers' certificates hold:
//!   a worker's certificate cannot pose as a manager.
//! - A joining node, which does not have the root yet, dials with [`joining_client`]: the
//!   manager's chain must contain the root whose digest the join token names, and the manager's
//!   certificate must verify against that root.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::identity::{NodeIdentity, Role};
use crate::{ClusterError, Result};

/// The name a node dials a manager by.
pub fn manager_name() -> ServerName<'static> {
    ServerName::try_from(Role::Manager.ou()).expect("a valid DNS name")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut r = RootCertStore::empty();
    r.add(ca.clone())?;
    Ok(Arc::new(r))
}

/// What a node presents: its certificate (and, while the cluster moves to a new root, the new
/// root cross-signed by the old one), the root it trusts, and its key (PKCS#8 DER).
#[derive(Clone)]
pub struct Credentials {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub intermediates: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// Credentials from PEM: the root, the node's certificate followed by its intermediates
    /// (as issued), and the key (PKCS#8 DER).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key: Vec<u8>) -> Result<Credentials> {
        use rustls::pki_types::pem::PemObject;
        let bad = |e: rustls::pki_types::pem::Error| ClusterError::NotANodeCertificate(e.to_string());
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(bad)?;
        let mut certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes());
        let cert =
            certs.next().ok_or_else(|| ClusterError::NotANodeCertificate("no certificate".into()))?.map_err(bad)?;
        let intermediates = certs.collect::<std::result::Result<Vec<_>, _>>().map_err(bad)?;
        Ok(Credentials { ca, cert, intermediates, key })
    }

    /// What a node sends in a handshake: its certificate, intermediates, and the root (so a
    /// joining node can find the root its token pins).
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut c = vec![self.cert.clone()];
        c.extend(self.intermediates.iter().cloned());
        c.push(self.ca.clone());
        c
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// A manager's server side.
pub fn server(creds: &Credentials) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&creds.ca)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ClusterError::Verifier(e.to_string()))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain(), creds.key())?;
    Ok(Arc::new(cfg))
}

/// A member's client side, for dialling a manager by [`manager_name`].
pub fn client(creds: &Credentials) -> Result<Arc<ClientConfig>> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&creds.ca)?)
        .with_client_auth_cert(creds.chain(), creds.key())?;
    Ok(Arc::new(cfg))
}

/// A joining node's client side: no certificate yet, the root pinned by the token's digest.
pub fn joining_client(ca_digest: [u8; 32]) -> Result<Arc<ClientConfig>> {
    let verifier = Arc::new(PinnedRoot { digest: ca_digest, provider: provider() });
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The root a manager sent in its chain, if it is the pinned one (what a joining node keeps).
pub fn pinned_root(chain: &[CertificateDer<'_>], digest: &[u8; 32]) -> Option<CertificateDer<'static>> {
    chain.iter().find(|c| Sha256::digest(c.as_ref()).as_slice() == digest).map(|c| c.clone().into_owned())
}

/// Whether `leaf` (a manager's certificate) verifies under `root` through `intermediates`, as a
/// node dialling it would check.
pub fn chains_to(
    root: &CertificateDer<'static>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> bool {
    let Ok(store) = roots(root) else { return false };
    let Ok(v) = WebPkiServerVerifier::builder_with_provider(store, provider()).build() else { return false };
    v.verify_server_cert(leaf, intermediates, &manager_name(), &[], UnixTime::now()).is_ok()
}

/// Who the peer of a connection is; `None` for a client that presented no certificate (a
/// joining node). Verification against the root was the handshake's.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Result<Option<NodeIdentity>> {
    match certs.and_then(|c| c.first()) {
        None => Ok(None),
        Some(leaf) => NodeIdentity::from_cert(leaf).map(Some),
    }
}

/// Verifies a server against the root the join token pins, taken from the server's own chain.
#[derive(Debug)]
struct PinnedRoot {
    digest: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedRoot {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let root = pinned_root(intermediates, &self.digest).ok_or_else(|| {
            rustls::Error::General("the remote CA does not match the fingerprint in the join token".into())
        })?;
        let mut store = RootCertStore::empty();
        store.add(root)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::ca::{DEFAULT_NODE_VALIDITY, NodeKey, RootCa};
    use crate::identity::new_id;

    fn node(ca: &RootCa, role: Role, cluster: &str) -> (Credentials, NodeIdentity) {
        let key = NodeKey::generate().unwrap();
        let who = NodeIdentity { node_id: new_id(), role, cluster_id: cluster.to_string() };
        let cert = ca.issue(&key.csr().unwrap(), &who, DEFAULT_NODE_VALIDITY).unwrap();
        (Credentials { ca: ca.cert_der().clone(), cert: cert.cert, intermediates: Vec::new(), key: key.der() }, who)
    }

    /// Handshakes `client` against `server` over an in-memory pipe; returns who the server saw.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> std::result::Result<Option<NodeIdentity>, String> {
        let (a, b) = tokio::io::duplex(64 << 10);
        let srv = tokio::spawn(async move {
            let mut s = TlsAcceptor::from(server).accept(a).await.map_err(|e| e.to_string())?;
            let who = peer_identity(s.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            s.write_all(&buf).await.map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(who)
        });
        let cli = async {
            let mut c = TlsConnector::from(client).connect(manager_name(), b).await.map_err(|e| e.to_string())?;
            c.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(buf)
        };
        let c = cli.await;
        let s = srv.await.map_err(|e| e.to_string())?;
        c?;
        s
    }

    #[tokio::test]
    async fn members_of_one_cluster_talk_and_know_who_is_calling() {
        let ca = RootCa::generate().unwrap();
        let cluster = new_id();
        let (mgr, _) = node(&ca, Role::Manager, &cluster);
        let (wrk, wrk_id) = node(&ca, Role::Worker, &cluster);
        let seen = handshake(server(&mgr).unwrap(), client(&wrk).unwrap()).await.unwrap();
        assert_eq!(seen, Some(wrk_id));
    }

    #[tokio::test]
    async fn a_worker_cannot_pose_as_a_manager() {
        let ca = RootCa::generate().unwrap();
        let cluster = new_id();
        let (w1, _) = node(&ca, Role::Worker, &cluster);
        let (w2, _) = node(&ca, Role::Worker, &cluster);
        let e = handshake(server(&w1).unwrap(), client(&w2).unwrap()).await.unwrap_err();
        assert!(e.contains("NotValidForName") || e.contains("not valid for"), "{e}");
    }

    #[tokio::test]
    async fn another_clusters_certificate_is_refused_both_ways() {
        let ca = RootCa::generate().unwrap();
        let evil = RootCa::generate().unwrap();
        let (mgr, _) = node(&ca, Role::Manager, &new_id());
        let (intruder, _) = node(&evil, Role::Manager, &new_id());
        assert!(handshake(server(&mgr).unwrap(), client(&intruder).unwrap()).await.is_err());
        assert!(handshake(server(&intruder).unwrap(), client(&mgr).unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn a_joining_node_accepts_only_the_root_its_token_pins() {
        let ca = RootCa::generate().unwrap();
        let (mgr, _) = node(&ca, Role::Manager, &new_id());
        let seen = handshake(server(&mgr).unwrap(), joining_client(ca.digest()).unwrap()).await.unwrap();
        assert_eq!(seen, None, "a joining node has no identity yet");
        // A man in the middle with his own root, or the right root's digest but his own chain.
        let evil = RootCa::generate().unwrap();
        let (mitm, _) = node(&evil, Role::Manager, &new_id());
        assert!(handshake(server(&mitm).unwrap(), joining_client(ca.digest()).unwrap()).await.is_err());
        let forged = Credentials { ca: ca.cert_der().clone(), ..mitm };
        let e = handshake(server(&forged).unwrap(), joining_client(ca.digest()).unwrap()).await.unwrap_err();
        assert!(!e.is_empty());
    }
}
