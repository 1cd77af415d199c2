//! The cluster's root CA and the certificates it issues.
//!
//! A node makes its own key and sends a CSR; the manager takes only the public key from it
//! (the CSR's signature proves the node holds the key) and writes the subject itself: the node
//! ID it chose, the role the join token or the cluster's state grants, the cluster's ID.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::identity::NodeIdentity;
use crate::{ClusterError, Result};

/// How long a root CA made by `swarm init` lasts (as swarmkit's: 20 years).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// `--cert-expiry`'s default: 90 days.
pub const DEFAULT_NODE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates start this long before they are issued, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster's root CA: its certificate, and on managers its key.
pub struct RootCa {
    cert: CertificateDer<'static>,
    pem: String,
    key: Option<KeyPair>,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa").field("digest", &self.digest_hex()).field("signs", &self.key.is_some()).finish()
    }
}

fn time_after(d: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() + d
}

impl RootCa {
    /// A new self-signed root (ECDSA P-256, CN `swarm-ca`).
    pub fn generate() -> Result<RootCa> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "swarm-ca");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = OffsetDateTime::now_utc() - BACKDATE;
        p.not_after = time_after(ROOT_VALIDITY);
        p.serial_number = Some(random_serial());
        let cert = p.self_signed(&key)?;
        Ok(RootCa { cert: cert.der().clone(), pem: cert.pem(), key: Some(key) })
    }

    /// A root from PEM: the certificate, and the key where this node signs (managers, or an
    /// operator's external root given with `swarm ca --cert --key`).
    pub fn from_pem(cert_pem: &str, key_pem: Option<&str>) -> Result<RootCa> {
        use rustls_pki_types::pem::PemObject;
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| ClusterError::NotANodeCertificate(format!("root CA PEM: {e}")))?;
        let key = key_pem.map(KeyPair::from_pem).transpose()?;
        if let Some(k) = &key {
            check_subject(&cert)?;
            // The key must be the certificate's: a mismatched pair would issue certificates
            // nobody can verify.
            Issuer::from_ca_cert_der(&cert, k)?;
            let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
                .map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
            if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(k).as_slice() {
                return Err(ClusterError::NotANodeCertificate("the key is not the root certificate's".into()));
            }
        }
        Ok(RootCa { cert, pem: cert_pem.trim().to_string() + "\n", key })
    }

    /// An operator's root for `swarm ca --rotate --ca-cert --ca-key`: the pair must match and
    /// the certificate must be a CA's, still valid.
    pub fn operator_root(cert_pem: &str, key_pem: &str) -> Result<RootCa> {
        let ca = RootCa::from_pem(cert_pem, Some(key_pem))?;
        let (_, c) = x509_parser::parse_x509_certificate(&ca.cert)
            .map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
        let is_ca = c.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca);
        if !is_ca {
            return Err(ClusterError::NotANodeCertificate("the certificate is not a CA certificate".into()));
        }
        if !c.validity().is_valid() {
            return Err(ClusterError::NotANodeCertificate("the CA certificate is expired or not yet valid".into()));
        }
        Ok(ca)
    }

    /// `next`'s subject and key, signed by this root (PEM): the intermediate through which
    /// nodes that still trust this root accept the certificates `next` issues, while a
    /// cluster moves from this root to `next`.
    pub fn cross_sign(&self, next: &RootCa) -> Result<String> {
        let key = self.key.as_ref().ok_or_else(|| ClusterError::Verifier("this node's root CA cannot sign".into()))?;
        let next_key = next.key.as_ref().ok_or_else(|| ClusterError::Verifier("the new root has no key".into()))?;
        let issuer = Issuer::from_ca_cert_der(&self.cert, key)?;
        let (_, c) = x509_parser::parse_x509_certificate(&next.cert)
            .map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
        let mut p = CertificateParams::default();
        p.distinguished_name = subject_dn(c.subject())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = OffsetDateTime::now_utc() - BACKDATE;
        p.not_after = c.validity().not_after.to_datetime();
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(next_key, &issuer)?.pem())
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The root certificate, PEM (as `docker swarm ca` prints it).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The signing key, PEM; `None` where this node does not sign.
    pub fn key_pem(&self) -> Option<String> {
        self.key.as_ref().map(KeyPair::serialize_pem)
    }

    /// SHA-256 of the root certificate (DER): what join tokens pin.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.cert).into()
    }

    fn digest_hex(&self) -> String {
        self.digest().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Issues `who` a certificate for the key in `csr`, valid for `validity`. Nothing but the
    /// key is taken from the CSR.
    pub fn issue(&self, csr: &[u8], who: &NodeIdentity, validity: Duration) -> Result<NodeCert> {
        let key = self.key.as_ref().ok_or_else(|| ClusterError::Verifier("this node's root CA cannot sign".into()))?;
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr))?;
        let issuer = Issuer::from_ca_cert_der(&self.cert, key)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, who.node_id.as_str());
        p.distinguished_name.push(DnType::OrganizationalUnitName, who.role.ou());
        p.distinguished_name.push(DnType::OrganizationName, who.cluster_id.as_str());
        p.subject_alt_names =
            vec![SanType::DnsName(who.role.ou().try_into()?), SanType::DnsName(who.node_id.as_str().try_into()?)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = OffsetDateTime::now_utc() - BACKDATE;
        p.not_after = time_after(validity);
        p.serial_number = Some(random_serial());
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&csr.public_key, &issuer)?;
        Ok(NodeCert { cert: cert.der().clone(), pem: cert.pem() })
    }
}

/// A node certificate as issued.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub cert: CertificateDer<'static>,
    pub pem: String,
}

impl NodeCert {}

/// A subject as rcgen writes it when it names an issuer (one attribute per RDN; printable,
/// UTF-8 and IA5 strings), so that a cross-signed root's subject is byte for byte the issuer
/// name in the certificates the root issues.
fn subject_dn(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let unsupported = |why: &str| ClusterError::NotANodeCertificate(format!("root CA subject: {why}"));
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let [attr] = rdn.iter().collect::<Vec<_>>()[..] else {
            return Err(unsupported("one attribute per name component is supported"));
        };
        let oid: Vec<u64> = attr.attr_type().iter().ok_or_else(|| unsupported("attribute type"))?.collect();
        let data = std::str::from_utf8(attr.attr_value().data).map_err(|_| unsupported("not text"))?;
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => rcgen::DnValue::PrintableString(data.try_into()?),
            Tag::Utf8String => rcgen::DnValue::Utf8String(data.to_string()),
            Tag::Ia5String => rcgen::DnValue::Ia5String(data.try_into()?),
            _ => return Err(unsupported("a string type other than printable, UTF-8 or IA5")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Refuses a certificate whose subject rcgen cannot take as an issuer's (it would fail, or
/// for an empty name component panic, when asked to sign with it).
fn check_subject(der: &[u8]) -> Result<()> {
    let (_, c) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
    subject_dn(c.subject()).map(drop)
}

/// A certificate's validity (not before, not after), as seconds since the epoch.
pub fn validity(der: &[u8]) -> Result<(i64, i64)> {
    let (_, c) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
    Ok((c.validity().not_before.timestamp(), c.validity().not_after.timestamp()))
}

/// A certificate's subject and public key (SubjectPublicKeyInfo), DER: what the Engine API's
/// `TLSInfo` shows of a root as `CertIssuerSubject` and `CertIssuerPublicKey`.
pub fn subject_and_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let (_, c) =
        x509_parser::parse_x509_certificate(der).map_err(|e| ClusterError::NotANodeCertificate(e.to_string()))?;
    Ok((c.subject().as_raw().to_vec(), c.public_key().raw.to_vec()))
}

/// A node's own key, made on the node and never sent anywhere.
pub struct NodeKey(KeyPair);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

impl NodeKey {
    pub fn generate() -> Result<NodeKey> {
        Ok(NodeKey(KeyPair::generate()?))
    }

    pub fn from_pem(pem: &str) -> Result<NodeKey> {
        Ok(NodeKey(KeyPair::from_pem(pem)?))
    }

    pub fn pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// PKCS#8 DER, as rustls takes it.
    pub fn der(&self) -> Vec<u8> {
        self.0.serialize_der()
    }

    /// A CSR for this key; its subject is left for the CA to write.
    pub fn csr(&self) -> Result<Vec<u8>> {
        let p = CertificateParams::default();
        Ok(p.serialize_request(&self.0)?.der().to_vec())
    }
}

fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, new_id};

    fn who(role: Role) -> NodeIdentity {
        NodeIdentity { node_id: new_id(), role, cluster_id: new_id() }
    }

    #[test]
    fn an_issued_certificate_names_the_node_the_manager_chose() {
        let ca = RootCa::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        let w = who(Role::Worker);
        let cert = ca.issue(&key.csr().unwrap(), &w, DEFAULT_NODE_VALIDITY).unwrap();
        assert_eq!(NodeIdentity::from_cert(&cert.cert).unwrap(), w);
        let left = validity(&cert.cert).unwrap().1 - OffsetDateTime::now_utc().unix_timestamp();
        assert!((89 * 86400..=90 * 86400).contains(&left), "{left}");
    }

    #[test]
    fn a_csr_asking_for_a_role_gets_only_what_the_manager_grants() {
        let ca = RootCa::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "attacker");
        p.distinguished_name.push(DnType::OrganizationalUnitName, "swarm-manager");
        let csr = p.serialize_request(&key.0).unwrap().der().to_vec();
        let w = who(Role::Worker);
        let cert = ca.issue(&csr, &w, DEFAULT_NODE_VALIDITY).unwrap();
        assert_eq!(NodeIdentity::from_cert(&cert.cert).unwrap().role, Role::Worker);
    }

    #[test]
    fn hostile_csrs_and_keys_are_refused() {
        let ca = RootCa::generate().unwrap();
        let key = NodeKey::generate().unwrap();
        let mut csr = key.csr().unwrap();
        let last = csr.len() - 1;
        csr[last] ^= 1; // the signature no longer verifies
        assert!(ca.issue(&csr, &who(Role::Worker), DEFAULT_NODE_VALIDITY).is_err());
        assert!(ca.issue(b"", &who(Role::Worker), DEFAULT_NODE_VALIDITY).is_err());
        assert!(ca.issue(&[0x30; 64], &who(Role::Worker), DEFAULT_NODE_VALIDITY).is_err());
        let other = RootCa::generate().unwrap();
        let err = RootCa::from_pem(ca.cert_pem(), other.key_pem().as_deref()).unwrap_err();
        assert!(err.to_string().contains("not the root certificate's"), "{err}");
        assert!(RootCa::from_pem("garbage", None).is_err());
    }

    #[test]
    fn a_certificate_from_a_new_root_verifies_under_the_old_one_through_the_cross_signed_root() {
        let (old, new) = (RootCa::generate().unwrap(), RootCa::generate().unwrap());
        let cross = old.cross_sign(&new).unwrap();
        let cross = CertificateDer::from(x509_parser::pem::parse_x509_pem(cross.as_bytes()).unwrap().1.contents);
        let key = NodeKey::generate().unwrap();
        let leaf = new.issue(&key.csr().unwrap(), &who(Role::Manager), DEFAULT_NODE_VALIDITY).unwrap();
        let verify = |root: &RootCa, intermediates: &[CertificateDer<'static>]| {
            crate::tls::chains_to(root.cert_der(), &leaf.cert, intermediates)
        };
        assert!(verify(&old, std::slice::from_ref(&cross)), "old root, through the cross-signed new root");
        assert!(verify(&new, std::slice::from_ref(&cross)), "new root, directly");
        assert!(!verify(&old, &[]), "old root, without the intermediate");
        let stranger = RootCa::generate().unwrap();
        assert!(!verify(&stranger, std::slice::from_ref(&cross)));
        // An operator's root must be a CA whose key it is.
        assert!(RootCa::operator_root(new.cert_pem(), &new.key_pem().unwrap()).is_ok());
        assert!(RootCa::operator_root(&leaf.pem, &key.pem()).is_err(), "a leaf is not a root");
        assert!(RootCa::operator_root(new.cert_pem(), &old.key_pem().unwrap()).is_err());
    }

    #[test]
    fn a_root_survives_pem_and_keeps_its_digest() {
        let ca = RootCa::generate().unwrap();
        let again = RootCa::from_pem(ca.cert_pem(), ca.key_pem().as_deref()).unwrap();
        assert_eq!(ca.digest(), again.digest());
        let key = NodeKey::generate().unwrap();
        let cert = again.issue(&key.csr().unwrap(), &who(Role::Manager), DEFAULT_NODE_VALIDITY).unwrap();
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        let verifier_only = RootCa::from_pem(ca.cert_pem(), None).unwrap();
        assert!(verifier_only.issue(&key.csr().unwrap(), &who(Role::Worker), DEFAULT_NODE_VALIDITY).is_err());
    }
}
