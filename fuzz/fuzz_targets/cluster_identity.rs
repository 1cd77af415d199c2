//! What a cluster node accepts from strangers: join tokens (typed or sent by a joining node),
//! certificates presented in a handshake (their identity read after verification) and CSRs a
//! manager signs, unlock keys (`docker swarm unlock`) and sealed bytes read from disk. None may
//! panic; a token or unlock key that parses prints back as itself; no sealed bytes the fuzzer
//! makes open without the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_cluster::identity::NodeIdentity;
use skiff_cluster::seal::Key;
use skiff_cluster::token::JoinToken;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(t) = JoinToken::parse(s)
    {
        assert_eq!(JoinToken::parse(&t.to_string()).ok(), Some(t));
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(k) = Key::parse_unlock_key(s)
    {
        assert_eq!(Key::parse_unlock_key(&k.to_unlock_key()).ok(), Some(k));
    }
    thread_local! {
        static KEY: Key = Key::generate();
    }
    KEY.with(|k| assert!(k.open(data, b"fuzz").is_err(), "forged sealed bytes opened"));
    let _ = NodeIdentity::from_cert(data);
    thread_local! {
        static CA: skiff_cluster::ca::RootCa = skiff_cluster::ca::RootCa::generate().expect("a root");
    }
    CA.with(|ca| {
        let who = NodeIdentity {
            node_id: skiff_cluster::identity::new_id(),
            role: skiff_cluster::identity::Role::Worker,
            cluster_id: skiff_cluster::identity::new_id(),
        };
        if let Ok(cert) = ca.issue(data, &who, skiff_cluster::ca::DEFAULT_NODE_VALIDITY) {
            assert_eq!(NodeIdentity::from_cert(&cert.cert).ok(), Some(who));
        }
    });
});
