//! Containers as the Engine API shows them: `inspect`, the `ps` summary and its status line.

use std::collections::HashMap;
use std::time::SystemTime;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, DriverData, EndpointSettings, Health, HealthStatusEnum,
    HealthcheckResult, MountPoint, MountPointTypeEnum, NetworkSettings,
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

fn ago(t: Option<&str>) -> String {
    let Some(t) = t.and_then(timefmt::parse) else {
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
        Status::Running => format!("Up {}{health}", ago(s.started_at.as_deref())),
        Status::Paused => format!("Up {} (Paused)", ago(s.started_at.as_deref())),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, ago(s.finished_at.as_deref())),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created => "Created".into(),
        Status::Exited => {
            if s.finished_at.is_none() {
                "Created".into()
            } else {
                format!("Exited ({}) {} ago", s.exit_code, ago(s.finished_at.as_deref()))
            }
        }
    }
}

fn mount_points(c: &Containers, r: &ContainerRecord) -> Vec<MountPoint> {
    r.mounts
        .iter()
        .map(|m| match m.kind {
            MountKind::Bind => MountPoint {
                typ: Some(MountPointTypeEnum::BIND),
                name: None,
                source: Some(m.source.clone()),
                destination: Some(m.destination.clone()),
                driver: None,
                mode: Some(m.mode.clone()),
                rw: Some(m.rw),
                propagation: Some(m.propagation.clone()),
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

fn network_settings(r: &ContainerRecord) -> NetworkSettings {
    let mode = r.host_config.network_mode.clone().unwrap_or_else(|| "bridge".into());
    let mut networks = HashMap::new();
    if !mode.starts_with("container:") {
        networks.insert(mode.clone(), EndpointSettings::default());
    }
    NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: Some(String::new()),
        sandbox_key: Some(if r.state.pid > 0 { format!("/proc/{}/ns/net", r.state.pid) } else { String::new() }),
        ports: Some(HashMap::new()),
        networks: Some(networks),
        ..Default::default()
    }
}

impl Containers {
    pub fn inspect(&self, key: &str, size: bool) -> crate::error::Result<ContainerInspectResponse> {
        let c = self.get(key)?;
        let r = c.record();
        let s = &r.state;
        let dir = self.container_dir(&r.id);
        let health = s.health.as_ref().map(|h| Health {
            status: Some(match h.status.as_str() {
                "healthy" => HealthStatusEnum::HEALTHY,
                "unhealthy" => HealthStatusEnum::UNHEALTHY,
                _ => HealthStatusEnum::STARTING,
            }),
            failing_streak: Some(h.failing_streak),
            log: Some(
                h.log
                    .iter()
                    .map(|l| HealthcheckResult {
                        start: Some(l.start.clone()),
                        end: Some(l.end.clone()),
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
            created: Some(r.created.clone()),
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
                started_at: Some(s.started_at.clone().unwrap_or_else(|| timefmt::ZERO.into())),
                finished_at: Some(s.finished_at.clone().unwrap_or_else(|| timefmt::ZERO.into())),
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
        let created = r.created.as_str();
        let created = timefmt::parse(created).map(|t| timefmt::split(t).0).unwrap_or(0);
        let (size_rw, size_root) = if size {
            let rw = self.images.snapshots().size_rw(&r.id) as i64;
            let img = self.images.get(&r.image_id).map(|i| i.record.size as i64).unwrap_or(0);
            (Some(rw), Some(rw + img))
        } else {
            (None, None)
        };
        ContainerSummary {
            id: Some(r.id.clone()),
            names: Some(vec![format!("/{}", r.name)]),
            image: Some(r.image_ref.clone()),
            image_id: Some(r.image_id.to_string()),
            image_manifest_descriptor: None,
            command: Some(command),
            created: Some(created),
            ports: Some(vec![]),
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
