//! The replicated state's commands, applied as every manager applies them.
use super::*;

fn node(id: &str, role: StoredRole) -> Node {
    Node {
        id: id.into(),
        version: 0,
        created_at: 0,
        updated_at: 0,
        spec: NodeSpec { name: String::new(), labels: BTreeMap::new(), role, availability: Availability::Active },
        description: NodeDescription::default(),
        state: NodeState::Ready,
        message: String::new(),
        addr: String::new(),
        manager_addr: None,
        cert_role: role,
        tls: None,
    }
}

fn cluster() -> Cluster {
    Cluster {
        id: "c".into(),
        version: 0,
        created_at: 0,
        updated_at: 0,
        spec: ClusterSpec::default(),
        root_ca_cert: String::new(),
        root_ca_key: String::new(),
        worker_token: "w".into(),
        manager_token: "m".into(),
        unlock_key: String::new(),
        rotation: None,
        root_cross_signed: String::new(),
    }
}

#[test]
fn commands_apply_in_order_with_versions_from_the_log() {
    let mut s = ClusterState::default();
    let init = Command::Init { cluster: Box::new(cluster()), node: Box::new(node("m1", StoredRole::Manager)) };
    assert_eq!(s.apply(1, 100, &init), Applied::default());
    assert!(s.apply(2, 101, &init).error.is_some(), "a second init is refused");
    assert_eq!(s.cluster.as_ref().unwrap().version, 1);
    let add = Command::AddNode { node: Box::new(node("w1", StoredRole::Worker)) };
    assert_eq!(s.apply(3, 102, &add).error, None);
    let mut spec = s.nodes["w1"].spec.clone();
    spec.availability = Availability::Drain;
    let stale = Command::UpdateNode { id: "w1".into(), version: 1, spec: spec.clone() };
    assert!(s.apply(4, 103, &stale).error.unwrap().contains("out of sequence"));
    let ok = Command::UpdateNode { id: "w1".into(), version: 3, spec };
    assert_eq!(s.apply(5, 104, &ok).error, None);
    assert_eq!(s.nodes["w1"].version, 5);
    assert_eq!(s.nodes["w1"].updated_at, 104);
    assert_eq!(s.apply(6, 105, &Command::RemoveNode { id: "w1".into() }).error, None);
    assert!(s.apply(7, 106, &add).error.is_some(), "a removed node cannot come back under its ID");
}

#[test]
fn autolock_keeps_a_key_while_on_and_drops_it_when_off() {
    let mut s = ClusterState::default();
    s.apply(1, 1, &Command::Init { cluster: Box::new(cluster()), node: Box::new(node("m1", StoredRole::Manager)) });
    let mut spec = ClusterSpec { autolock: true, ..ClusterSpec::default() };
    let keyless = Command::UpdateCluster { version: 1, spec: spec.clone(), unlock_key: None, rotation: None };
    assert!(s.apply(2, 2, &keyless).error.unwrap().contains("unlock key"));
    let on = Command::UpdateCluster {
        version: 1,
        spec: spec.clone(),
        unlock_key: Some("SWMKEY-1-a".into()),
        rotation: None,
    };
    assert_eq!(s.apply(3, 3, &on).error, None);
    assert_eq!(s.cluster.as_ref().unwrap().unlock_key, "SWMKEY-1-a");
    let kept = Command::UpdateCluster { version: 3, spec: spec.clone(), unlock_key: None, rotation: None };
    assert_eq!(s.apply(4, 4, &kept).error, None);
    assert_eq!(s.cluster.as_ref().unwrap().unlock_key, "SWMKEY-1-a", "other updates keep the key");
    spec.autolock = false;
    assert_eq!(
        s.apply(5, 5, &Command::UpdateCluster { version: 4, spec, unlock_key: None, rotation: None }).error,
        None
    );
    assert_eq!(s.cluster.as_ref().unwrap().unlock_key, "");
}

#[test]
fn a_root_rotation_issues_from_the_new_root_then_makes_it_the_root() {
    let mut s = ClusterState::default();
    let mut c = cluster();
    c.root_ca_cert = "old".into();
    c.root_ca_key = "old-key".into();
    s.apply(1, 1, &Command::Init { cluster: Box::new(c), node: Box::new(node("m1", StoredRole::Manager)) });
    let before = s.cluster.clone().unwrap();
    assert!(
        s.apply(2, 2, &Command::FinishRootRotation { worker_token: "w".into(), manager_token: "m".into() })
            .error
            .unwrap()
            .contains("no root rotation")
    );
    let rotation = RootRotation { cert: "new".into(), key: "new-key".into(), cross_signed: "cross".into() };
    let start = Command::UpdateCluster {
        version: 1,
        spec: ClusterSpec { ca_force_rotate: 1, ..ClusterSpec::default() },
        unlock_key: None,
        rotation: Some(rotation),
    };
    assert_eq!(s.apply(3, 3, &start).error, None);
    let c = s.cluster.clone().unwrap();
    assert_eq!((c.issuer().cert.as_str(), c.issuer().intermediates.as_str()), ("new", "cross"));
    assert_eq!(c.root_ca_cert, "old", "the root stays until every node has a new certificate");
    assert_ne!(c.ca_generation(), before.ca_generation(), "nodes are told to renew");
    let finish = Command::FinishRootRotation { worker_token: "w2".into(), manager_token: "m2".into() };
    assert_eq!(s.apply(4, 4, &finish).error, None);
    let done = s.cluster.clone().unwrap();
    assert_eq!((done.root_ca_cert.as_str(), done.root_ca_key.as_str()), ("new", "new-key"));
    assert_eq!((done.worker_token.as_str(), done.rotation.is_none()), ("w2", true));
    assert_eq!(done.issuer().intermediates, "cross", "still sent to nodes trusting the old root");
    assert_ne!(done.ca_generation(), c.ca_generation(), "nodes renew again to trust the new root");
}

#[test]
fn stored_state_round_trips_and_newer_schemas_are_refused() {
    let mut s = ClusterState::default();
    s.apply(1, 1, &Command::Init { cluster: Box::new(cluster()), node: Box::new(node("m1", StoredRole::Manager)) });
    let bytes = serde_json::to_vec(&s).unwrap();
    assert_eq!(ClusterState::decode(&bytes).unwrap(), s);
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["schema"] = (SCHEMA + 1).into();
    assert!(ClusterState::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err().contains("newer"));
    assert!(ClusterState::decode(b"{").is_err());
}

#[test]
fn a_small_subnet_runs_out_with_words() {
    let mut st = ClusterState::default();
    let spec =
        NetworkSpec { name: "tiny".into(), subnet: Some(Subnet::parse("10.9.0.0/30").unwrap()), ..Default::default() };
    assert_eq!(st.apply(1, 1, &Command::CreateNetwork { network: Box::new(Network::new("a", spec)) }).error, None);
    // Hosts .1 (the gateway) and .2: one address to hand out.
    assert_eq!(st.allocate_on("a").unwrap().0, std::net::Ipv4Addr::new(10, 9, 0, 2));
    st.networks.get_mut("a").unwrap().node_addrs.insert("n".into(), std::net::Ipv4Addr::new(10, 9, 0, 2));
    assert!(st.allocate_on("a").unwrap_err().contains("no address left on network tiny"));
    assert!(Subnet::parse("10.9.0.1/24").unwrap_err().contains("host bits"));
    assert!(Subnet::parse("10.9.0.0/31").is_err());
    assert!(Subnet::parse("10.9.0.0").is_err());
    // Read as it is parsed: a stored or sent subnet cannot carry a prefix the allocator would
    // overflow on.
    assert_eq!(serde_json::to_string(&Subnet::parse("10.9.0.0/16").unwrap()).unwrap(), "\"10.9.0.0/16\"");
    for bad in ["\"10.0.0.0/0\"", "\"10.0.0.0/32\"", "\"10.0.0.0/99\"", "{\"addr\":\"10.0.0.0\",\"prefix\":0}"] {
        assert!(serde_json::from_str::<Subnet>(bad).is_err(), "{bad}");
    }
    let e = st.apply(
        2,
        2,
        &Command::CreateNetwork {
            network: Box::new(Network::new(
                "b",
                NetworkSpec {
                    name: "x y".into(),
                    gateway: Some(std::net::Ipv4Addr::new(1, 2, 3, 4)),
                    subnet: Some(Subnet::parse("10.8.0.0/24").unwrap()),
                    ..Default::default()
                },
            )),
        },
    );
    assert!(e.error.unwrap().contains("is not in 10.8.0.0/24"));
}
