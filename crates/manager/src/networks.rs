//! Overlay networks on the managers: `docker network create -d overlay / rm / inspect` as
//! commands through the leader (the allocations are the store's, see
//! `skiff_cluster::types::network`), and what each node is sent of the networks its tasks are on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use skiff_cluster::identity::new_id;
use skiff_cluster::rpc::{IngressPort, NetworkAssignment};
use skiff_cluster::types::{ClusterState, Command, Network, NetworkSpec, NodeState, PublishMode, TaskState};

use crate::error::{Kind, ManagerError, Result};
use crate::manager::Manager;

/// Network names as dockerd takes them.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ManagerError::new(
            Kind::Invalid,
            format!(
                "rpc error: code = InvalidArgument desc = invalid network name {name:?}: [a-zA-Z0-9][a-zA-Z0-9_.-]* only"
            ),
        ))
    }
}

/// The ingress network `swarm init` makes (dockerd's: 10.0.0.0/24, named `ingress`).
pub fn ingress_spec() -> NetworkSpec {
    NetworkSpec {
        name: "ingress".into(),
        ingress: true,
        subnet: Some(skiff_cluster::types::Subnet { addr: Ipv4Addr::new(10, 0, 0, 0), prefix: 24 }),
        ..Default::default()
    }
}

impl Manager {
    /// `docker network create -d overlay`: the new network's ID.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<String> {
        check_name(&spec.name)?;
        let id = new_id();
        self.write(Command::CreateNetwork { network: Box::new(Network::new(&id, spec)) }).await?;
        Ok(id)
    }

    /// `docker network rm` of a swarm network (refused while in use).
    pub async fn remove_network(&self, key: &str) -> Result<()> {
        let n = self.network(key).await?;
        self.write(Command::RemoveNetwork { id: n.id }).await
    }

    /// A swarm network by ID, name or unique ID prefix.
    pub async fn network(&self, key: &str) -> Result<Network> {
        let state = self.read().await?;
        crate::control::resolve("network", key, &state.networks, |n| n.spec.name == key)
    }
}

/// The networks `node_id`'s tasks are on, as the node needs them.
pub(crate) fn for_node(state: &ClusterState, node_id: &str) -> Vec<NetworkAssignment> {
    let Some(node) = state.nodes.get(node_id) else { return Vec::new() };
    state
        .networks
        .values()
        .filter_map(|n| {
            let local_addr = *n.node_addrs.get(node_id)?;
            let subnet = n.subnet?;
            let peers: BTreeSet<String> = n
                .node_addrs
                .keys()
                .filter(|id| *id != node_id)
                .filter_map(|id| state.nodes.get(id))
                .filter(|p| p.state != NodeState::Down && !p.addr.is_empty())
                .map(|p| p.addr.clone())
                .collect();
            Some(NetworkAssignment {
                id: n.id.clone(),
                name: n.spec.name.clone(),
                subnet,
                vni: n.vni,
                internal: n.spec.internal,
                ingress: n.spec.ingress,
                labels: n.spec.labels.clone(),
                options: n.spec.options.clone(),
                local_addr,
                vtep: node.addr.clone(),
                peers: peers.into_iter().collect(),
                names: names(state, &n.id),
                ingress_ports: if n.spec.ingress { ingress_ports(state, &n.id) } else { Vec::new() },
                vips: vips(state, &n.id),
            })
        })
        .collect()
}

/// The routing mesh's ports: each service's ingress ports, balanced over its running tasks'
/// addresses on the ingress network `id`.
fn ingress_ports(state: &ClusterState, id: &str) -> Vec<IngressPort> {
    let mut out = Vec::new();
    for s in state.services.values() {
        let backends = backends(state, s, id);
        for p in s.endpoint_ports.iter().filter(|p| p.mode == PublishMode::Ingress) {
            out.push(IngressPort {
                protocol: p.protocol.clone(),
                published_port: p.published_port,
                target_port: p.target_port,
                backends: backends.clone(),
            });
        }
    }
    out.sort_by(|a, b| (&a.protocol, a.published_port).cmp(&(&b.protocol, b.published_port)));
    out
}

/// The addresses of service `s`'s running tasks on network `id`.
fn backends(state: &ClusterState, s: &skiff_cluster::types::Service, id: &str) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = state
        .tasks
        .values()
        .filter(|t| t.service_id == s.id && t.status.state == TaskState::Running && t.wanted())
        .filter_map(|t| t.networks.iter().find(|a| a.network_id == id).map(|a| a.addr))
        .collect();
    out.sort();
    out
}

/// The virtual IPs on network `id`, each with its service's running tasks there.
fn vips(state: &ClusterState, id: &str) -> Vec<(Ipv4Addr, Vec<Ipv4Addr>)> {
    let mut out: Vec<(Ipv4Addr, Vec<Ipv4Addr>)> =
        state.services.values().filter_map(|s| Some((*s.vips.get(id)?, backends(state, s, id)))).collect();
    out.sort();
    out
}

/// What the embedded DNS answers on network `id`: each service attached to it (by name,
/// `tasks.NAME` and its aliases) → the addresses of its running tasks, and each running task's
/// container name → its address. Sorted, so the same state gives the same list.
fn names(state: &ClusterState, id: &str) -> Vec<(String, Vec<Ipv4Addr>)> {
    let mut out: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for s in state.services.values() {
        let Some(a) = s.spec.task.networks.iter().find(|a| a.target == id) else { continue };
        // The service's own names: its virtual IP, or (DNS round-robin) its tasks' addresses.
        let mut names = vec![s.spec.name.clone()];
        names.extend(a.aliases.iter().cloned());
        let tasks = format!("tasks.{}", s.spec.name);
        for name in names.iter().chain([&tasks]) {
            out.entry(name.clone()).or_default();
        }
        let vip = s.vips.get(id).copied();
        if let Some(v) = vip {
            for name in &names {
                out.entry(name.clone()).or_default().insert(v);
            }
        }
        for t in state.tasks.values().filter(|t| t.service_id == s.id) {
            if t.status.state != TaskState::Running || !t.wanted() {
                continue;
            }
            let Some(addr) = t.networks.iter().find(|a| a.network_id == id).map(|a| a.addr) else { continue };
            out.entry(tasks.clone()).or_default().insert(addr);
            if vip.is_none() {
                for name in &names {
                    out.entry(name.clone()).or_default().insert(addr);
                }
            }
            out.entry(t.name()).or_default().insert(addr);
        }
    }
    out.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::types::{
        NetworkAttachmentSpec, Node, NodeDescription, Service, ServiceMode, ServiceSpec, StoredRole, Subnet, Task,
        TaskChange, TaskSpec, TaskStatus,
    };

    fn node(st: &mut ClusterState, id: &str, addr: &str) {
        let mut n = Node::new(id, StoredRole::Worker, NodeDescription::default(), addr.into(), None);
        n.state = NodeState::Ready;
        assert_eq!(st.apply(1, 1, &Command::AddNode { node: Box::new(n) }).error, None);
    }

    fn net(st: &mut ClusterState, id: &str, name: &str, subnet: Option<&str>) -> Option<String> {
        let spec =
            NetworkSpec { name: name.into(), subnet: subnet.map(|s| Subnet::parse(s).unwrap()), ..Default::default() };
        st.apply(2, 2, &Command::CreateNetwork { network: Box::new(Network::new(id, spec)) }).error
    }

    fn task(id: &str, service: &Service) -> Task {
        Task {
            id: id.into(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            service_id: service.id.clone(),
            service_name: service.spec.name.clone(),
            slot: 1,
            node_id: String::new(),
            spec: service.spec.task.clone(),
            spec_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            networks: Vec::new(),
        }
    }

    #[test]
    fn subnets_vnis_and_addresses_are_allocated_once_and_in_turn() {
        let mut st = ClusterState::default();
        node(&mut st, "n1", "192.0.2.1");
        node(&mut st, "n2", "192.0.2.2");
        assert_eq!(net(&mut st, "a", "front", None), None);
        assert_eq!(net(&mut st, "b", "back", None), None);
        assert!(net(&mut st, "c", "front", None).unwrap().contains("already exists"));
        assert!(net(&mut st, "c", "other", Some("10.0.1.128/25")).unwrap().contains("overlaps network back"));
        assert_eq!(net(&mut st, "c", "mine", Some("172.30.0.0/16")), None);
        let (a, b) = (&st.networks["a"], &st.networks["b"]);
        assert_eq!(
            (a.subnet.unwrap().to_string(), a.gateway.unwrap()),
            ("10.0.0.0/24".into(), Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(b.subnet.unwrap().to_string(), "10.0.1.0/24");
        assert_eq!((a.vni, b.vni, st.networks["c"].vni), (4097, 4098, 4099));

        let task_spec = TaskSpec {
            networks: vec![NetworkAttachmentSpec { target: "a".into(), aliases: vec!["www".into()] }],
            ..Default::default()
        };
        let spec = ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            task: task_spec.clone(),
            mode: ServiceMode::Replicated { replicas: 2 },
            update: Default::default(),
            rollback: Default::default(),
            endpoint_mode: skiff_cluster::types::EndpointMode::Dnsrr,
        };
        let svc = Service::new("s1", spec.clone());
        let mut missing = spec.clone();
        missing.task.networks[0].target = "zzz".into();
        let e = st.apply(3, 3, &Command::CreateService { service: Box::new(Service::new("s0", missing)) });
        assert!(e.error.unwrap().contains("network zzz not found"));
        assert_eq!(st.apply(3, 3, &Command::CreateService { service: Box::new(svc.clone()) }).error, None);
        let create = |id: &str| TaskChange::Create { task: Box::new(task(id, &svc)) };
        st.apply(4, 4, &Command::Tasks { changes: vec![create("t1"), create("t2")] });
        let addr = |st: &ClusterState, t: &str| st.tasks[t].networks[0].addr;
        assert_eq!((addr(&st, "t1"), addr(&st, "t2")), (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(st.tasks["t1"].networks[0].prefix, 24);
        // Assigned: each node gets its own address, once.
        let assign = |t: &str, n: &str| TaskChange::Assign { id: t.into(), node_id: n.into() };
        st.apply(5, 5, &Command::Tasks { changes: vec![assign("t1", "n1"), assign("t2", "n2")] });
        let a = &st.networks["a"];
        assert_eq!(a.node_addrs["n1"], Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(a.node_addrs["n2"], Ipv4Addr::new(10, 0, 0, 5));

        // What n1 is sent: its address, n2 as the peer, names of running tasks only.
        let report = |st: &mut ClusterState, node: &str, t: &str, state: TaskState| {
            let status = TaskStatus { state, ..Default::default() };
            st.apply(6, 6, &Command::ReportTasks { node_id: node.into(), reports: vec![(t.into(), status)] });
        };
        report(&mut st, "n1", "t1", TaskState::Running);
        let sent = for_node(&st, "n1");
        assert_eq!(sent.len(), 1, "only the network with tasks on n1");
        assert_eq!((sent[0].local_addr, sent[0].vtep.as_str()), (Ipv4Addr::new(10, 0, 0, 4), "192.0.2.1"));
        assert_eq!(sent[0].peers, vec!["192.0.2.2".to_string()]);
        let names: BTreeMap<_, _> = sent[0].names.iter().cloned().collect();
        let t1 = vec![Ipv4Addr::new(10, 0, 0, 2)];
        assert_eq!((&names["web"], &names["tasks.web"], &names["www"]), (&t1, &t1, &t1));
        assert_eq!(names[&st.tasks["t1"].name()], t1);
        assert!(for_node(&st, "n3").is_empty());

        // In use: neither the network nor (while t2 runs) the address can go.
        assert!(
            st.apply(7, 7, &Command::RemoveNetwork { id: "a".into() }).error.unwrap().contains("in use by service")
        );
        // An ended task's address comes back, but only after the rest of the subnet.
        report(&mut st, "n1", "t1", TaskState::Failed);
        st.apply(8, 8, &Command::Tasks { changes: vec![create("t3")] });
        assert_eq!(addr(&st, "t3"), Ipv4Addr::new(10, 0, 0, 6));
        // A task still wanted holds the network; tasks of a removed service do not.
        let orphan = Task { service_id: "gone".into(), ..task("t9", &svc) };
        st.apply(9, 9, &Command::Tasks { changes: vec![TaskChange::Create { task: Box::new(orphan) }] });
        st.apply(9, 9, &Command::RemoveService { id: "s1".into() });
        assert!(
            st.apply(10, 10, &Command::RemoveNetwork { id: "a".into() }).error.unwrap().contains("in use by task t9")
        );
        let stop = TaskChange::Desire { id: "t9".into(), state: TaskState::Shutdown };
        st.apply(11, 11, &Command::Tasks { changes: vec![stop] });
        assert_eq!(st.apply(12, 12, &Command::RemoveNetwork { id: "a".into() }).error, None);
        // Removing a node drops its addresses.
        st.apply(13, 13, &Command::RemoveNode { id: "n2".into() });
        assert!(st.networks.values().all(|n| !n.node_addrs.contains_key("n2")));
    }

    #[test]
    fn the_routing_mesh_allocates_published_ports_once_and_reaches_every_node() {
        use skiff_cluster::types::{PortConfig, PublishMode};
        let mut st = ClusterState::default();
        node(&mut st, "n1", "192.0.2.1");
        let port = |published: u16, target: u16| PortConfig {
            name: String::new(),
            protocol: "tcp".into(),
            target_port: target,
            published_port: published,
            mode: PublishMode::Ingress,
        };
        let spec = |name: &str, ports: Vec<PortConfig>| ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            task: TaskSpec { ports, ..Default::default() },
            mode: ServiceMode::Replicated { replicas: 1 },
            update: Default::default(),
            rollback: Default::default(),
            endpoint_mode: Default::default(),
        };
        let create = |st: &mut ClusterState, id: &str, s: ServiceSpec| {
            st.apply(3, 3, &Command::CreateService { service: Box::new(Service::new(id, s)) }).error
        };
        let e = create(&mut st, "s0", spec("early", vec![port(8080, 80)])).unwrap();
        assert!(e.contains("no ingress network is present"), "{e}");
        let ingress = Network::new("ing", crate::networks::ingress_spec());
        assert_eq!(st.apply(2, 2, &Command::CreateNetwork { network: Box::new(ingress) }).error, None);
        assert_eq!(st.networks["ing"].node_addrs["n1"], Ipv4Addr::new(10, 0, 0, 2), "every node is on it");
        node(&mut st, "n2", "192.0.2.2");
        assert_eq!(st.networks["ing"].node_addrs["n2"], Ipv4Addr::new(10, 0, 0, 3), "a node that joins later too");

        assert_eq!(create(&mut st, "s1", spec("web", vec![port(8080, 80), port(0, 443)])), None);
        let published: Vec<u16> = st.services["s1"].endpoint_ports.iter().map(|p| p.published_port).collect();
        assert_eq!(published, [8080, 30000]);
        let clash = create(&mut st, "s2", spec("other", vec![port(8080, 80)])).unwrap();
        assert!(clash.contains("port '8080' is already in use by service 'web' (s1) as an ingress port"), "{clash}");
        assert_eq!(create(&mut st, "s2", spec("other", vec![port(0, 80)])), None);
        assert_eq!(st.services["s2"].endpoint_ports[0].published_port, 30001);
        // An update keeps a chosen port; a rollback goes back to the previous spec's ports.
        let version = st.services["s1"].version;
        let upd = Command::UpdateService { id: "s1".into(), version, spec: Box::new(spec("web", vec![port(0, 443)])) };
        assert_eq!(st.apply(4, 4, &upd).error, None);
        let published: Vec<u16> = st.services["s1"].endpoint_ports.iter().map(|p| p.published_port).collect();
        assert_eq!(published, [30000]);
        let back = Command::RollbackService { id: "s1".into(), version: None, message: String::new() };
        assert_eq!(st.apply(5, 5, &back).error, None);
        assert_eq!(st.services["s1"].endpoint_ports.len(), 2);
        // The ingress network cannot go while a service publishes through it.
        let rm = st.apply(6, 6, &Command::RemoveNetwork { id: "ing".into() }).error.unwrap();
        assert!(rm.contains("in use by service"), "{rm}");

        // Tasks land on the ingress network; every node is sent the ports with their backends.
        let svc = st.services["s1"].clone();
        let mut t = task("t1", &svc);
        t.node_id = "n1".into();
        st.apply(7, 7, &Command::Tasks { changes: vec![TaskChange::Create { task: Box::new(t) }] });
        let addr = st.tasks["t1"].networks[0].clone();
        assert_eq!(addr.network_id, "ing");
        let status = TaskStatus { state: TaskState::Running, ..Default::default() };
        st.apply(8, 8, &Command::ReportTasks { node_id: "n1".into(), reports: vec![("t1".into(), status)] });
        let sent = for_node(&st, "n2");
        assert_eq!(sent.len(), 1, "n2 runs nothing, yet has the mesh");
        let ports: Vec<(u16, u16, Vec<Ipv4Addr>)> =
            sent[0].ingress_ports.iter().map(|p| (p.published_port, p.target_port, p.backends.clone())).collect();
        assert_eq!(ports, [(8080, 80, vec![addr.addr]), (30000, 443, vec![addr.addr]), (30001, 80, Vec::new())]);
    }

    #[test]
    fn services_in_vip_mode_get_one_address_per_network_named_in_dns() {
        use skiff_cluster::types::EndpointMode;
        let mut st = ClusterState::default();
        node(&mut st, "n1", "192.0.2.1");
        assert_eq!(net(&mut st, "a", "front", None), None);
        let spec = |mode: EndpointMode, nets: &[&str]| ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            task: TaskSpec {
                networks: nets
                    .iter()
                    .map(|n| NetworkAttachmentSpec { target: n.to_string(), aliases: vec!["www".into()] })
                    .collect(),
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas: 1 },
            update: Default::default(),
            rollback: Default::default(),
            endpoint_mode: mode,
        };
        let svc = Service::new("s1", spec(EndpointMode::Vip, &["a"]));
        assert_eq!(st.apply(3, 3, &Command::CreateService { service: Box::new(svc.clone()) }).error, None);
        let vip = st.services["s1"].vips["a"];
        assert_eq!(vip, Ipv4Addr::new(10, 0, 0, 2));
        // The VIP is taken: a task gets the next address.
        let mut t = task("t1", &st.services["s1"]);
        t.node_id = "n1".into();
        st.apply(4, 4, &Command::Tasks { changes: vec![TaskChange::Create { task: Box::new(t) }] });
        let taddr = st.tasks["t1"].networks[0].addr;
        assert_eq!(taddr, Ipv4Addr::new(10, 0, 0, 3));
        let status = TaskStatus { state: TaskState::Running, ..Default::default() };
        st.apply(5, 5, &Command::ReportTasks { node_id: "n1".into(), reports: vec![("t1".into(), status)] });
        let sent = for_node(&st, "n1");
        let names: BTreeMap<_, _> = sent[0].names.iter().cloned().collect();
        assert_eq!((&names["web"], &names["www"]), (&vec![vip], &vec![vip]), "the name and alias are the VIP");
        assert_eq!(names["tasks.web"], vec![taddr], "tasks.NAME stays the tasks");
        assert_eq!(sent[0].vips, vec![(vip, vec![taddr])]);
        // An update keeps the VIP; DNS round-robin drops it; dnsrr with a mesh port is refused.
        let version = st.services["s1"].version;
        let upd = |v, spec: ServiceSpec| Command::UpdateService { id: "s1".into(), version: v, spec: Box::new(spec) };
        assert_eq!(st.apply(6, 6, &upd(version, spec(EndpointMode::Vip, &["a"]))).error, None);
        assert_eq!(st.services["s1"].vips["a"], vip);
        let version = st.services["s1"].version;
        assert_eq!(st.apply(7, 7, &upd(version, spec(EndpointMode::Dnsrr, &["a"]))).error, None);
        assert!(st.services["s1"].vips.is_empty());
        let mut mesh = spec(EndpointMode::Dnsrr, &["a"]);
        mesh.task.ports = vec![skiff_cluster::types::PortConfig {
            name: String::new(),
            protocol: "tcp".into(),
            target_port: 80,
            published_port: 8080,
            mode: skiff_cluster::types::PublishMode::Ingress,
        }];
        let version = st.services["s1"].version;
        let e = st.apply(8, 8, &upd(version, mesh)).error.unwrap();
        assert!(e.contains("can't be used with dnsrr mode") || e.contains("no ingress network"), "{e}");
    }
}
