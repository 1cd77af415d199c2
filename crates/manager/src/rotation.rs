//! Root CA rotation (`docker swarm ca --rotate`), as swarmkit does it: a new root, and that
//! root's certificate signed by the current one (the cross-signed root). Managers issue from the
//! new root at once, each certificate travelling with the cross-signed root, so nodes that
//! still trust only the current root accept it; heartbeats tell every node to renew. When every
//! node that is up holds a certificate from the new root, the leader makes it the root (and
//! re-makes the join tokens, which pin the root); nodes renew once more to trust it alone.
//! Nodes stay Ready throughout. A node down for the whole rotation must rejoin.

use skiff_cluster::ca::RootCa;
use skiff_cluster::token::JoinToken;
use skiff_cluster::types::{Cluster, Command, NodeState, RootRotation};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;

/// The rotation to `signing` (an operator's root, certificate and key) or to a new root.
pub(crate) fn prepare(current: &Cluster, signing: Option<(&str, &str)>) -> Result<RootRotation> {
    let invalid = |e: skiff_cluster::ClusterError| ManagerError::new(Kind::Invalid, e.to_string());
    let next = match signing {
        Some((cert, key)) => RootCa::operator_root(cert, key).map_err(invalid)?,
        None => RootCa::generate().map_err(ManagerError::internal)?,
    };
    let old = RootCa::from_pem(&current.root_ca_cert, Some(&current.root_ca_key)).map_err(ManagerError::internal)?;
    if next.digest() == old.digest() {
        return Err(ManagerError::new(Kind::Invalid, "the new root CA is the current one"));
    }
    let cross_signed = old.cross_sign(&next).map_err(invalid)?;
    // What the nodes will check, checked first: a certificate from the new root verifies
    // under the current root through the cross-signed root, and under the new root alone.
    let probe = skiff_cluster::ca::NodeKey::generate().map_err(ManagerError::internal)?;
    let who = skiff_cluster::identity::NodeIdentity {
        node_id: skiff_cluster::identity::new_id(),
        role: skiff_cluster::identity::Role::Manager,
        cluster_id: current.id.clone(),
    };
    let csr = probe.csr().map_err(ManagerError::internal)?;
    let leaf = next.issue(&csr, &who, std::time::Duration::from_secs(60)).map_err(invalid)?;
    let creds = skiff_cluster::tls::Credentials::from_pem(next.cert_pem(), &(leaf.pem + &cross_signed), probe.der())
        .map_err(invalid)?;
    let chains = skiff_cluster::tls::chains_to(old.cert_der(), &creds.cert, &creds.intermediates)
        && skiff_cluster::tls::chains_to(next.cert_der(), &creds.cert, &creds.intermediates);
    if !chains {
        return Err(ManagerError::new(Kind::Invalid, "certificates from the new root CA would not verify"));
    }
    let key = next.key_pem().ok_or_else(|| ManagerError::internal("the new root has no key"))?;
    Ok(RootRotation { cert: next.cert_pem().to_string(), key, cross_signed })
}

/// On the leader: when every node that is not down holds a certificate from the rotation's
/// root, that root becomes the cluster's.
pub(crate) async fn finish_when_converged(m: &Manager) -> Result<()> {
    if !m.is_leader() {
        return Ok(());
    }
    let ready =
        m.sm.with(|s| {
            let c = s.cluster.as_ref()?;
            let r = c.rotation.as_ref()?;
            let done = s
                .nodes
                .values()
                .filter(|n| n.state != NodeState::Down)
                .all(|n| n.tls.as_ref().is_some_and(|t| t.issuer == r.cert));
            done.then(|| (r.cert.clone(), c.worker_token.clone(), c.manager_token.clone()))
        })
        .await;
    let Some((root, worker, manager)) = ready else { return Ok(()) };
    let next = RootCa::from_pem(&root, None).map_err(ManagerError::internal)?;
    let repin = |t: &str| -> Result<String> {
        let mut t = JoinToken::parse(t).map_err(ManagerError::internal)?;
        t.ca_digest = next.digest();
        Ok(t.to_string())
    };
    let cmd = Command::FinishRootRotation { worker_token: repin(&worker)?, manager_token: repin(&manager)? };
    m.write(cmd).await?;
    tracing::info!("every node holds a certificate from the new root CA: it is the cluster's root now");
    Ok(())
}
