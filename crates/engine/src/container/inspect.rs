//! Containers as the Engine API shows them: `inspect`, the `ps` summary and its status line.

use std::collections::HashMap;
use std::time::SystemTime;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, DriverData, EndpointIpamConfig, EndpointSettings,
    Health, HealthStatusEnum, HealthcheckResult, MountPoint, MountPointTypeEnum, NetworkSettings, Port, PortBinding,
    PortTypeEnum,
};
use skiff_common::timefmt;

use super::{ContainerRecord, Containers, MountKind, Status};

fn state_enum(s: Status) -> ContainerStateStatusEnum {
    match s {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

fn ago(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let d = SystemTime::now().duration_since(t).unwrap_or_default();
    timefmt::human_duration(d)
}

/// `Up 5 minutes`, `Exited (0) 2 seconds ago`, … as `docker ps` prints.
pub fn status_line(r: &ContainerRecord) -> String {
    let s = &r.state;
    let health = match s.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)",
        Some("healthy") => " (healthy)",
        Some("unhealthy") => " (unhealthy)",
        _ => "",
    };
    match s.status {
        Status::Running => format!("Up {}{health}", ago(s.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, ago(s.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created => "Created".into(),
        Status::Exited => {
            if s.finished_at.is_none() {
                "Created".into()
            } else {
                format!("Exited ({}) {} ago", s.exit_code, ago(s.finished_at))
            }
        }
    }
}

fn mount_points(c: &Containers, r: &ContainerRecord) -> Vec<MountPoint> {
    // `--tmpfs` (HostConfig.Tmpfs) mounts are not listed, as dockerd does not list them.
    let legacy_tmpfs = |m: &&super::MountSpec| {
        m.kind == MountKind::Tmpfs
            && r.host_config
                .tmpfs
                .as_ref()
                .is_some_and(|t| t.keys().any(|d| super::mounts::clean_dest(d).is_ok_and(|d| d == m.destination)))
    };
    r.mounts
        .iter()
        .filter(|m| !legacy_tmpfs(m))
        .map(|m| match m.kind {
            MountKind::Bind => MountPoint {
                typ: Some(MountPointTypeEnum::BIND),
                name: None,
                source: Some(m.source.clone()),
                destination: Some(m.destination.clone()),
                driver: None,
                mode: Some(m.mode.clone()),
                rw: Some(m.rw),
                propagation: Some(super::mounts::effective_propagation(m, &c.data_root).to_string()),
            },
            MountKind::Volume => MountPoint {
                typ: Some(MountPointTypeEnum::VOLUME),
                name: Some(m.source.clone()),
                source: c.volumes.get(&m.source).ok().flatten().map(|v| v.mountpoint.display().to_string()),
                destination: Some(m.destination.clone()),
                driver: Some("local".into()),
                mode: Some(m.mode.clone()),
                rw: Some(m.rw),
                propagation: Some(String::new()),
            },
            MountKind::Tmpfs => MountPoint {
                typ: Some(MountPointTypeEnum::TMPFS),
                name: None,
                source: Some(String::new()),
                destination: Some(m.destination.clone()),
                driver: None,
                mode: Some(m.mode.clone()),
                rw: Some(m.rw),
                propagation: Some(String::new()),
            },
        })
        .collect()
}

fn endpoint_settings(r: &ContainerRecord, e: &crate::network::sandbox::Endpoint) -> EndpointSettings {
    let live = e.live.as_ref();
    let user_net = e.network_name != "bridge";
    EndpointSettings {
        ipam_config: (e.ipv4.is_some() || !e.link_local_ips.is_empty()).then(|| EndpointIpamConfig {
            ipv4_address: e.ipv4.map(|ip| ip.to_string()),
            ipv6_address: None,
            link_local_ips: Some(e.link_local_ips.clone()).filter(|l| !l.is_empty()),
        }),
        links: if e.links.is_empty() { None } else { Some(e.links.clone()) },
        mac_address: Some(live.map(|s| s.mac.clone()).or(e.mac.clone()).unwrap_or_default()),
        aliases: if e.aliases.is_empty() { None } else { Some(e.aliases.clone()) },
        driver_opts: Some(e.driver_opts.clone().into_iter().collect())
            .filter(|d: &HashMap<String, String>| !d.is_empty()),
        gw_priority: Some(0),
        network_id: Some(e.network_id.clone()),
        endpoint_id: Some(live.map(|s| s.endpoint_id.clone()).unwrap_or_default()),
        gateway: Some(live.and_then(|s| s.gateway).map(|g| g.to_string()).unwrap_or_default()),
        ip_address: Some(live.map(|s| s.ip.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(live.map(|s| s.prefix as i64).unwrap_or(0)),
        ipv6_gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        dns_names: if user_net { Some(crate::network::sandbox::dns_names(&r.id, &r.name, &e.aliases)) } else { None },
    }
}

/// `NetworkSettings.Ports`: every exposed or published port, with its host bindings while
/// the container runs (`null` for ports that are exposed only).
pub(crate) fn port_map(r: &ContainerRecord) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if r.sandbox.is_none() {
        return ports;
    }
    for k in r.config.exposed_ports.clone().unwrap_or_default().into_keys() {
        let k = if k.contains('/') { k } else { format!("{k}/tcp") };
        ports.insert(k, None);
    }
    for m in r.sandbox.iter().flat_map(|s| s.ports.iter()) {
        let k = format!("{}/{}", m.container_port, m.proto.as_str());
        let b = PortBinding {
            host_ip: Some(m.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into())),
            host_port: Some(m.host_port.to_string()),
        };
        ports.entry(k).or_insert(None).get_or_insert_with(Vec::new).push(b);
    }
    ports
}

fn network_settings(r: &ContainerRecord) -> NetworkSettings {
    let mut networks = HashMap::new();
    for e in &r.networks {
        networks.insert(e.network_name.clone(), endpoint_settings(r, e));
    }
    match super::net::mode_of(&r.host_config) {
        super::net::Mode::Host => {
            networks.insert("host".into(), EndpointSettings::default());
        }
        super::net::Mode::None => {
            networks.insert("none".into(), EndpointSettings::default());
        }
        _ => {}
    }
    // The default bridge's endpoint also fills the deprecated top-level fields.
    let default = r.networks.iter().find(|e| e.network_name == "bridge").and_then(|e| e.live.as_ref());
    let sandbox_key = match (&r.sandbox, r.state.pid) {
        (Some(s), _) => s.path.display().to_string(),
        (None, pid) if pid > 0 && r.state.status.is_live() => format!("/proc/{pid}/ns/net"),
        _ => String::new(),
    };
    NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: Some(if sandbox_key.is_empty() { String::new() } else { r.id.clone() }),
        sandbox_key: Some(sandbox_key),
        hairpin_mode: Some(false),
        link_local_ipv6_address: Some(String::new()),
        link_local_ipv6_prefix_len: Some(0),
        ports: Some(port_map(r)),
        secondary_ip_addresses: None,
        secondary_ipv6_addresses: None,
        endpoint_id: Some(default.map(|s| s.endpoint_id.clone()).unwrap_or_default()),
        gateway: Some(default.and_then(|s| s.gateway).map(|g| g.to_string()).unwrap_or_default()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ip_address: Some(default.map(|s| s.ip.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(default.map(|s| s.prefix as i64).unwrap_or(0)),
        ipv6_gateway: Some(String::new()),
        mac_address: Some(default.map(|s| s.mac.clone()).unwrap_or_default()),
        networks: Some(networks),
    }
}

/// `ps`'s ports: published ones with their host side, exposed ones without.
fn summary_ports(r: &ContainerRecord) -> Vec<Port> {
    let mut out = Vec::new();
    for (k, bindings) in port_map(r) {
        let (port, proto) = k.split_once('/').unwrap_or((&k, "tcp"));
        let Ok(private_port) = port.parse::<u16>() else { continue };
        let typ = match proto {
            "udp" => PortTypeEnum::UDP,
            "sctp" => PortTypeEnum::SCTP,
            _ => PortTypeEnum::TCP,
        };
        match bindings {
            None => out.push(Port { ip: None, private_port, public_port: None, typ: Some(typ) }),
            Some(list) => {
                for b in list {
                    out.push(Port {
                        ip: b.host_ip.clone(),
                        private_port,
                        public_port: b.host_port.as_deref().and_then(|p| p.parse().ok()),
                        typ: Some(typ),
                    });
                }
            }
        }
    }
    out.sort_by_key(|p| (p.private_port, p.public_port));
    out
}

impl Containers {
    pub fn inspect(&self, key: &str, size: bool) -> crate::error::Result<ContainerInspectResponse> {
        let c = self.get(key)?;
        let r = c.record();
        let s = &r.state;
        let dir = self.container_dir(&r.id);
        let health = s.health.as_ref().map(|h| Health {
            status: Some(match h.status {
                super::HealthStatus::Healthy => HealthStatusEnum::HEALTHY,
                super::HealthStatus::Unhealthy => HealthStatusEnum::UNHEALTHY,
                super::HealthStatus::Starting => HealthStatusEnum::STARTING,
            }),
            failing_streak: Some(h.failing_streak),
            log: Some(
                h.log
                    .iter()
                    .map(|l| HealthcheckResult {
                        start: Some(timefmt::format(l.start)),
                        end: Some(timefmt::format(l.end)),
                        exit_code: Some(l.exit_code),
                        output: Some(l.output.clone()),
                    })
                    .collect(),
            ),
        });
        let snap = self.images.snapshots();
        let mut graph = HashMap::new();
        let sdir = snap.rootfs(&r.id);
        graph.insert("MergedDir".to_string(), sdir.display().to_string());
        if let Some(p) = sdir.parent() {
            graph.insert("UpperDir".to_string(), p.join("upper").display().to_string());
            graph.insert("WorkDir".to_string(), p.join("work").display().to_string());
        }
        let (size_rw, size_root) = if size {
            let rw = snap.size_rw(&r.id) as i64;
            let img = self.images.get(&r.image_id).map(|i| i.record.size as i64).unwrap_or(0);
            (Some(rw), Some(rw + img))
        } else {
            (None, None)
        };
        Ok(ContainerInspectResponse {
            id: Some(r.id.clone()),
            created: Some(timefmt::format(r.created)),
            path: Some(r.path.clone()),
            args: Some(r.args.clone()),
            state: Some(ContainerState {
                status: Some(state_enum(s.status)),
                running: Some(s.status.is_live()),
                paused: Some(s.status == Status::Paused),
                restarting: Some(s.status == Status::Restarting),
                oom_killed: Some(s.oom_killed),
                dead: Some(s.status == Status::Dead),
                pid: Some(s.pid as i64),
                exit_code: Some(s.exit_code as i64),
                error: Some(s.error.clone()),
                started_at: Some(s.started_at.map_or_else(|| timefmt::ZERO.into(), timefmt::format)),
                finished_at: Some(s.finished_at.map_or_else(|| timefmt::ZERO.into(), timefmt::format)),
                health,
            }),
            image: Some(r.image_id.to_string()),
            resolv_conf_path: Some(dir.join("resolv.conf").display().to_string()),
            hostname_path: Some(dir.join("hostname").display().to_string()),
            hosts_path: Some(dir.join("hosts").display().to_string()),
            log_path: Some(self.log_path(&r.id).display().to_string()),
            name: Some(format!("/{}", r.name)),
            restart_count: Some(r.restart_count),
            driver: Some(r.driver.clone()),
            platform: Some("linux".into()),
            image_manifest_descriptor: None,
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: {
                let ids = self.execs.of_container(&r.id);
                if ids.is_empty() { None } else { Some(ids) }
            },
            host_config: Some(r.host_config.clone()),
            graph_driver: Some(DriverData { name: r.driver.clone(), data: graph }),
            size_rw,
            size_root_fs: size_root,
            mounts: Some(mount_points(self, &r)),
            config: Some(r.config.clone()),
            network_settings: Some(network_settings(&r)),
        })
    }

    pub fn summary(&self, r: &ContainerRecord, size: bool) -> ContainerSummary {
        let mut command = r.path.clone();
        for a in &r.args {
            command.push(' ');
            command.push_str(a);
        }
        let created = timefmt::split(r.created).0;
        let (size_rw, size_root) = if size {
            let rw = self.images.snapshots().size_rw(&r.id) as i64;
            let img = self.images.get(&r.image_id).map(|i| i.record.size as i64).unwrap_or(0);
            (Some(rw), Some(rw + img))
        } else {
            (None, None)
        };
        ContainerSummary {
            id: Some(r.id.clone()),
            names: Some(std::iter::once(format!("/{}", r.name)).chain(self.link_names(r)).collect()),
            image: Some(r.image_ref.clone()),
            image_id: Some(r.image_id.to_string()),
            image_manifest_descriptor: None,
            command: Some(command),
            created: Some(created),
            ports: Some(summary_ports(r)),
            size_rw,
            size_root_fs: size_root,
            labels: Some(r.config.labels.clone().unwrap_or_default()),
            state: Some(summary_state(r.state.status)),
            status: Some(status_line(r)),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: r.host_config.network_mode.clone(),
                annotations: None,
            }),
            network_settings: Some(ContainerSummaryNetworkSettings { networks: network_settings(r).networks }),
            mounts: Some(mount_points(self, r)),
        }
    }
}
