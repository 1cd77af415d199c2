//! What survives a daemon restart about a container: its record in the metadata database.
//!
//! The record is versioned: [`SCHEMA`] numbers its format, [`decode`] reads every format
//! this daemon has ever written (migrating older ones) and refuses newer ones rather than
//! dropping what it does not understand. The round-trip test pins the stored form, so a change
//! to it (or to the pinned API model types it embeds) is seen, and comes with a migration.

use std::time::SystemTime;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use skiff_image::Digest;

/// Times stored as Docker writes them (RFC 3339, nanoseconds, trailing zeros trimmed): the
/// stored form of every format so far; in memory a `SystemTime`, so comparisons and sorts are
/// by time (as strings, `…:05Z` sorted after `…:05.1Z`).
mod stamp {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&skiff_common::timefmt::format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        skiff_common::timefmt::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("bad time {text:?}")))
    }

    pub mod opt {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => skiff_common::timefmt::parse(&text)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom(format!("bad time {text:?}"))),
                None => Ok(None),
            }
        }
    }
}

/// The format this daemon writes. 1: `schema` itself; health status as an enum (same words).
pub const SCHEMA: u32 = 1;

/// Why a stored record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("written by a newer skiffd (record format {0}, this one reads up to {SCHEMA})")]
    Newer(u32),
    #[error("unreadable record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("unreadable record: {0}")]
    Invalid(String),
}

/// Reads a stored record, migrating older formats to [`SCHEMA`].
pub fn decode(bytes: &[u8]) -> Result<ContainerRecord, RecordError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    let schema = v.get("schema").and_then(|s| s.as_u64()).unwrap_or(0);
    if schema > u64::from(SCHEMA) {
        return Err(RecordError::Newer(u32::try_from(schema).unwrap_or(u32::MAX)));
    }
    // 0 → 1: no change of shape (the health words parse as the enum).
    let mut rec: ContainerRecord = serde_json::from_value(v)?;
    rec.schema = SCHEMA;
    rec.security = super::secopts::SecurityOpts::parse(rec.host_config.security_opt.as_deref().unwrap_or_default())
        .map_err(RecordError::Invalid)?
        .0;
    Ok(rec)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// Whether a process of the container exists.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthLog {
    #[serde(with = "stamp")]
    pub start: SystemTime,
    #[serde(with = "stamp")]
    pub end: SystemTime,
    pub exit_code: i64,
    pub output: String,
}

/// A healthcheck's verdict (the Engine API's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    pub failing_streak: i64,
    pub log: Vec<HealthLog>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    #[serde(with = "stamp::opt")]
    pub started_at: Option<SystemTime>,
    #[serde(with = "stamp::opt")]
    pub finished_at: Option<SystemTime>,
    pub oom_killed: bool,
    pub health: Option<HealthState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: None,
            finished_at: None,
            oom_killed: false,
            health: None,
        }
    }
}

/// The state changes of a container's life, as methods: each sets every field the change
/// implies, so no caller forgets one (a restart that keeps an old exit code, a stop that keeps
/// a pid).
impl State {
    /// The process runs (`pid`, started at `started_at`); a healthcheck, if any, starts over.
    pub fn started(&mut self, pid: i32, started_at: SystemTime, health: Option<HealthState>) {
        self.status = Status::Running;
        self.pid = pid;
        self.started_at = Some(started_at);
        self.exit_code = 0;
        self.error.clear();
        self.oom_killed = false;
        self.health = health;
    }

    /// The process ended; `restarting` when a restart policy brings it back (it goes straight
    /// to `restarting`, never seen `exited` in between). Its health is `unhealthy` from now.
    pub fn exited(&mut self, code: i32, finished_at: SystemTime, oom_killed: bool, restarting: bool) {
        self.status = if restarting { Status::Restarting } else { Status::Exited };
        self.pid = 0;
        self.exit_code = code;
        self.finished_at = Some(finished_at);
        self.oom_killed = oom_killed;
        if let Some(h) = &mut self.health {
            h.status = HealthStatus::Unhealthy;
        }
    }

    /// Whether `pause` (or unpause, when false) may happen now; the error is dockerd's words.
    pub fn check_pause(&self, id: &str, pause: bool) -> Result<(), String> {
        match (self.status, pause) {
            (Status::Running, true) | (Status::Paused, false) => Ok(()),
            (Status::Paused, true) => Err(format!("Container {id} is already paused")),
            (Status::Running, false) => Err(format!("Container {id} is not paused")),
            _ => Err(format!("Container {id} is not running")),
        }
    }

    /// Paused (`true`) or running again.
    pub fn paused(&mut self, pause: bool) {
        self.status = if pause { Status::Paused } else { Status::Running };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// A mount resolved at create time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path (bind), volume name (volume), empty (tmpfs).
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// The mode string as given (`ro`, `rw,z`, …) for inspect.
    pub mode: String,
    pub propagation: String,
    /// Extra mount options (tmpfs size, mode, …).
    pub options: Vec<String>,
    /// Copy the image's content at `destination` into an empty volume on first use.
    pub copy_up: bool,
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The record's format ([`SCHEMA`] when written by this daemon; 0 before formats were
    /// numbered).
    #[serde(default)]
    pub schema: u32,
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    #[serde(with = "stamp")]
    pub created: SystemTime,
    /// `Config.Image` as the user wrote it.
    pub image_ref: String,
    pub image_id: Digest,
    pub top_layer: Option<Digest>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub mounts: Vec<MountSpec>,
    pub state: State,
    pub restart_count: i64,
    /// `docker stop` was used: restart policies other than `always` leave it down.
    pub manually_stopped: bool,
    pub driver: String,
    #[serde(default)]
    pub exec_ids: Vec<String>,
    /// Networks the container is connected to, in order (empty with `--network
    /// host|none|container:`); while it runs each carries its address.
    #[serde(default)]
    pub networks: Vec<crate::network::sandbox::Endpoint>,
    /// The network namespace and published ports while it runs.
    #[serde(default)]
    pub sandbox: Option<crate::network::sandbox::SandboxState>,
    /// A builder's RUN step: removed when found after a daemon restart (its build is gone).
    #[serde(default)]
    pub builder: bool,
    /// Paused by `commit` (not by the user): resumed when found after a daemon restart.
    #[serde(default)]
    pub paused_for_commit: bool,
    /// `host_config.security_opt` parsed (at create, and by [`decode`]); not stored twice.
    #[serde(skip)]
    pub security: super::secopts::SecurityOpts,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A running container's record as this daemon stores it (format 1). If this test fails,
    /// the stored form changed: bump [`SCHEMA`], teach [`decode`] to migrate the old form, and
    /// add the old form here as a migration case.
    const STORED: &str = r#"{
        "schema": 1,
        "id": "4f6b1d1c9e0a4b7f8a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef01",
        "name": "web",
        "created": "2026-12-07T04:00:00.123456789Z",
        "image_ref": "busybox:latest",
        "image_id": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "top_layer": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
        "config": {
            "Hostname": "4f6b1d1c9e0a",
            "Env": ["PATH=/usr/bin:/bin", "A=1"],
            "Cmd": ["httpd", "-f"],
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000},
            "Image": "busybox:latest",
            "Labels": {"tier": "front"},
            "ExposedPorts": {"80/tcp": {}}
        },
        "host_config": {
            "Binds": ["/srv:/srv:ro"],
            "NetworkMode": "bridge",
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Memory": 67108864,
            "SecurityOpt": ["no-new-privileges"]
        },
        "path": "httpd",
        "args": ["-f"],
        "mounts": [{
            "kind": "bind", "source": "/srv", "destination": "/srv", "rw": false, "mode": "ro",
            "propagation": "rprivate", "options": [], "copy_up": false, "anonymous": false
        }],
        "state": {
            "status": "running", "pid": 4242, "exit_code": 0, "error": "",
            "started_at": "2026-12-07T04:00:01.000000001Z", "finished_at": null, "oom_killed": false,
            "health": {"status": "healthy", "failing_streak": 0, "log": [
                {"start": "2026-12-07T04:00:02Z", "end": "2026-12-07T04:00:02.1Z", "exit_code": 0, "output": ""}
            ]}
        },
        "restart_count": 1,
        "manually_stopped": false,
        "driver": "overlay2",
        "exec_ids": [],
        "networks": [{
            "network_id": "9a9a", "network_name": "bridge", "aliases": [], "ipv4": null, "mac": null,
            "links": [],
            "live": {"endpoint_id": "e1", "ip": "172.17.0.2", "prefix": 16, "gateway": "172.17.0.1",
                     "mac": "02:42:ac:11:00:02", "iface": "eth0", "host_veth": "sk4f6b1d1c9e"}
        }],
        "sandbox": {"path": "/run/skiff/netns/4f6b", "ports": []},
        "builder": false,
        "paused_for_commit": false
    }"#;

    fn value(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_stored_form_round_trips_unchanged() {
        let rec = decode(STORED.as_bytes()).unwrap();
        assert_eq!(rec.schema, SCHEMA);
        assert_eq!(rec.state.status, Status::Running);
        assert_eq!(rec.state.health.as_ref().unwrap().status, HealthStatus::Healthy);
        assert_eq!(rec.host_config.memory, Some(64 << 20));
        assert!(rec.security.no_new_privileges, "security options are parsed as the record is read");
        assert_eq!(rec.created, skiff_common::timefmt::parse("2026-12-07T04:00:00.123456789Z").unwrap());
        assert_eq!(serde_json::to_value(&rec).unwrap(), value(STORED));
    }

    #[test]
    fn records_from_before_formats_were_numbered_migrate() {
        let mut old = value(STORED);
        old.as_object_mut().unwrap().remove("schema");
        // Format 0 wrote the health status as a plain string: the same words.
        old["state"]["health"]["status"] = "unhealthy".into();
        let rec = decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(rec.schema, SCHEMA, "read into the current format");
        assert_eq!(rec.state.health.unwrap().status, HealthStatus::Unhealthy);
    }

    #[test]
    fn newer_or_damaged_records_are_refused_not_truncated() {
        let mut newer = value(STORED);
        newer["schema"] = 2.into();
        newer["something_new"] = "kept by the newer daemon".into();
        assert!(matches!(decode(&serde_json::to_vec(&newer).unwrap()), Err(RecordError::Newer(2))));
        for bad in [&b""[..], b"{", b"[]", b"{\"id\": 5}", &STORED.as_bytes()[..STORED.len() / 2]] {
            assert!(matches!(decode(bad), Err(RecordError::Corrupt(_))), "{}", String::from_utf8_lossy(bad));
        }
        let mut wrong = value(STORED);
        wrong["state"]["health"]["status"] = "so-so".into();
        assert!(decode(&serde_json::to_vec(&wrong).unwrap()).is_err());
        let mut wrong = value(STORED);
        wrong["created"] = "yesterday".into();
        assert!(matches!(decode(&serde_json::to_vec(&wrong).unwrap()), Err(RecordError::Corrupt(_))));
        let mut wrong = value(STORED);
        wrong["host_config"]["SecurityOpt"] = serde_json::json!(["evil"]);
        assert!(matches!(decode(&serde_json::to_vec(&wrong).unwrap()), Err(RecordError::Invalid(_))));
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    #[test]
    fn state_changes_set_everything_they_imply() {
        let mut s = State::default();
        s.started(42, t(1), Some(HealthState { status: HealthStatus::Starting, failing_streak: 0, log: vec![] }));
        assert_eq!((s.status, s.pid, s.started_at), (Status::Running, 42, Some(t(1))));
        s.exited(137, t(2), true, true);
        assert_eq!((s.status, s.pid, s.exit_code, s.oom_killed), (Status::Restarting, 0, 137, true));
        assert_eq!(s.health.as_ref().unwrap().status, HealthStatus::Unhealthy);
        s.error = "boom".into();
        s.started(43, t(3), None);
        assert_eq!((s.exit_code, s.error.as_str(), s.oom_killed), (0, "", false), "a start forgets the last exit");
        assert!(s.health.is_none());
        s.exited(0, t(4), false, false);
        assert_eq!(s.status, Status::Exited);
        assert_eq!(s.finished_at, Some(t(4)));
    }

    #[test]
    fn pausing_follows_dockerds_rules() {
        let mut s = State::default();
        assert_eq!(s.check_pause("c", true), Err("Container c is not running".into()));
        s.started(1, t(1), None);
        assert_eq!(s.check_pause("c", false), Err("Container c is not paused".into()));
        assert_eq!(s.check_pause("c", true), Ok(()));
        s.paused(true);
        assert_eq!(s.status, Status::Paused);
        assert_eq!(s.check_pause("c", true), Err("Container c is already paused".into()));
        assert_eq!(s.check_pause("c", false), Ok(()));
        s.paused(false);
        assert_eq!(s.status, Status::Running);
    }
}
