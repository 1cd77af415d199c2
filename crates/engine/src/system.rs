//! `docker info`, `docker version`, `docker system df`.

use std::collections::HashMap;

use bollard_stubs::models::{
    ImageSummary, SystemDataUsageResponse, SystemInfo, SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum,
    SystemVersion, SystemVersionComponents, SystemVersionPlatform, Volume, VolumeUsageData,
};

use crate::Engine;
use crate::container::Status;

/// The newest Engine API version we serve, and the oldest.
pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.12";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn kernel() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

fn os_release() -> (String, String) {
    let s = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let get =
        |k: &str| s.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(|v| v.trim_matches('"').to_string());
    (get("PRETTY_NAME").unwrap_or_else(|| "Linux".into()), get("VERSION_ID").unwrap_or_default())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        a => a,
    }
}

fn go_arch() -> String {
    skiff_image::spec::Platform::host().architecture
}

impl Engine {
    pub fn version(&self) -> SystemVersion {
        SystemVersion {
            platform: Some(SystemVersionPlatform { name: "skiff".into() }),
            components: Some(vec![SystemVersionComponents {
                name: "Engine".into(),
                version: VERSION.into(),
                details: Some(HashMap::from([
                    ("ApiVersion".to_string(), API_VERSION.to_string()),
                    ("MinAPIVersion".to_string(), MIN_API_VERSION.to_string()),
                    ("Os".to_string(), "linux".to_string()),
                    ("Arch".to_string(), go_arch()),
                    ("KernelVersion".to_string(), kernel()),
                ])),
            }]),
            version: Some(VERSION.into()),
            api_version: Some(API_VERSION.into()),
            min_api_version: Some(MIN_API_VERSION.into()),
            git_commit: Some(option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown").into()),
            go_version: Some(format!("rust{}", option_env!("CARGO_PKG_RUST_VERSION").unwrap_or(""))),
            os: Some("linux".into()),
            arch: Some(go_arch()),
            kernel_version: Some(kernel()),
            experimental: Some(self.config.experimental),
            build_time: None,
        }
    }

    pub fn info(&self) -> SystemInfo {
        let all = self.containers.all();
        let count = |s: Status| all.iter().filter(|c| c.status() == s).count() as i64;
        let running = count(Status::Running);
        let paused = count(Status::Paused);
        let (os, os_version) = os_release();
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                })
            })
            .flatten()
            .unwrap_or(0)
            * 1024;
        let v2 = self.containers.layout.is_v2();
        let hostname = rustix::system::uname().nodename().to_string_lossy().into_owned();
        SystemInfo {
            id: Some(self.id.clone()),
            containers: Some(all.len() as i64),
            containers_running: Some(running),
            containers_paused: Some(paused),
            containers_stopped: Some(all.len() as i64 - running - paused),
            images: Some(self.images.store.list().len() as i64),
            driver: Some(self.images.store.driver().name().into()),
            driver_status: Some(vec![vec!["Backing Filesystem".into(), "extfs".into()]]),
            docker_root_dir: Some(self.config.data_root.display().to_string()),
            memory_limit: Some(true),
            swap_limit: Some(true),
            cpu_cfs_period: Some(true),
            cpu_cfs_quota: Some(true),
            cpu_shares: Some(true),
            cpu_set: Some(true),
            pids_limit: Some(true),
            oom_kill_disable: Some(!v2),
            bridge_nf_iptables: Some(false),
            debug: Some(self.config.debug),
            nfd: Some(std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0)),
            // The daemon's live tasks stand for dockerd's goroutines.
            n_goroutines: Some(
                tokio::runtime::Handle::try_current().map(|h| h.metrics().num_alive_tasks() as i64).unwrap_or(0),
            ),
            system_time: Some(skiff_common::timefmt::now()),
            logging_driver: Some(
                self.containers.default_log().typ.filter(|t| !t.is_empty()).unwrap_or_else(|| "json-file".into()),
            ),
            // What `docker info` lists under Plugins: the drivers skiff has.
            plugins: Some(bollard_stubs::models::PluginsInfo {
                volume: Some(vec!["local".into()]),
                network: Some(["bridge", "host", "none", "overlay"].map(String::from).to_vec()),
                authorization: None,
                log: Some(["json-file", "local", "none"].map(String::from).to_vec()),
            }),
            cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
            cgroup_version: Some(if v2 { SystemInfoCgroupVersionEnum::_2 } else { SystemInfoCgroupVersionEnum::_1 }),
            n_events_listener: Some(self.events.listeners() as i64),
            kernel_version: Some(kernel()),
            operating_system: Some(os),
            os_version: Some(os_version),
            os_type: Some("linux".into()),
            architecture: Some(arch().into()),
            ncpu: Some(std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1)),
            mem_total: Some(mem_total),
            index_server_address: Some("https://index.docker.io/v1/".into()),
            registry_config: Some(registry_config(&self.images.registries())),
            name: Some(hostname),
            labels: Some(vec![]),
            experimental_build: Some(false),
            server_version: Some(VERSION.into()),
            runtimes: Some(HashMap::from([(
                "skiff".to_string(),
                bollard_stubs::models::Runtime {
                    path: Some(self.config.monitor_bin.display().to_string()),
                    ..Default::default()
                },
            )])),
            default_runtime: Some("skiff".into()),
            live_restore_enabled: Some(self.config.container_defaults.live_restore),
            init_binary: Some("tini".into()),
            security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
            warnings: Some(vec![]),
            ..Default::default()
        }
    }

    /// `docker system df`.
    pub fn df(&self) -> crate::error::Result<SystemDataUsageResponse> {
        let containers = self.containers.all();
        let images: Vec<ImageSummary> = self.images.list(true, &Default::default(), &self.containers)?;
        let mut layer_users: HashMap<skiff_image::Digest, usize> = HashMap::new();
        for img in self.images.store.list() {
            for c in &img.chain {
                *layer_users.entry(c.clone()).or_default() += 1;
            }
        }
        let layers_size: i64 = self.images.store.layers().list()?.iter().map(|l| l.size as i64).sum();
        let images = images
            .into_iter()
            .map(|mut s| {
                if let Some(img) = s.id.parse().ok().and_then(|d: skiff_image::Digest| self.images.store.get(&d)) {
                    let unique = self.images.store.unique_size(&img, &layer_users) as i64;
                    s.shared_size = s.size - unique;
                }
                s
            })
            .collect();
        let summaries = containers.iter().map(|c| self.containers.summary(&c.record(), true)).collect();
        let in_use = self.containers.volumes_in_use();
        let volumes = self
            .volumes
            .list()?
            .into_iter()
            .map(|v| Volume {
                name: v.name.clone(),
                driver: v.driver.clone(),
                mountpoint: v.mountpoint.display().to_string(),
                created_at: Some(v.created_at.clone()),
                status: None,
                labels: v.labels.clone().into_iter().collect(),
                scope: Some(bollard_stubs::models::VolumeScopeEnum::LOCAL),
                cluster_volume: None,
                options: v.options.clone().into_iter().collect(),
                usage_data: Some(VolumeUsageData {
                    size: self.volumes.size(&v) as i64,
                    ref_count: if in_use.contains(&v.name) { 1 } else { 0 },
                }),
            })
            .collect();
        Ok(SystemDataUsageResponse {
            layers_size: Some(layers_size),
            images: Some(images),
            containers: Some(summaries),
            volumes: Some(volumes),
            build_cache: Some(vec![]),
        })
    }
}

/// `docker info`'s registry section: insecure registries and docker.io's mirrors.
fn registry_config(r: &skiff_distribution::RegistriesConfig) -> bollard_stubs::models::RegistryServiceConfig {
    use bollard_stubs::models::IndexInfo;
    let url = |m: &skiff_distribution::config::Mirror| {
        format!("{}://{}/", if m.insecure { "http" } else { "https" }, m.location)
    };
    let mirrors: Vec<String> =
        r.registries.iter().filter(|e| e.prefix == "docker.io").flat_map(|e| e.mirrors.iter().map(url)).collect();
    let mut index = HashMap::from([(
        "docker.io".to_string(),
        IndexInfo {
            name: Some("docker.io".into()),
            mirrors: Some(mirrors.clone()),
            secure: Some(true),
            official: Some(true),
        },
    )]);
    // As dockerd: loopback is always insecure (::1 too, though only 127.0.0.0/8 is listed).
    let mut cidrs = vec!["127.0.0.0/8".to_string()];
    for host in r.insecure.iter().chain(r.registries.iter().filter(|e| e.insecure).map(|e| &e.prefix)) {
        if skiff_distribution::config::parse_cidr(host).is_some() {
            if !cidrs.contains(host) {
                cidrs.push(host.clone());
            }
            continue;
        }
        index.insert(
            host.clone(),
            IndexInfo { name: Some(host.clone()), mirrors: Some(vec![]), secure: Some(false), official: Some(false) },
        );
    }
    bollard_stubs::models::RegistryServiceConfig {
        insecure_registry_cidrs: Some(cidrs),
        index_configs: Some(index),
        mirrors: Some(mirrors),
    }
}
