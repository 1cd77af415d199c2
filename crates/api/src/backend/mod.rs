//! What the routers need from the daemon, one narrow trait per router (as moby's routers each
//! declare their backend). Handlers see only these traits: [`engine`] implements them on
//! [`skiff_engine::Engine`], and the handlers' unit tests implement them with fakes.

pub mod engine;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary, ContainerTopResponse,
    ContainerUpdateBody, EndpointSettings, ExecConfig, ExecInspectResponse, FilesystemChange, HistoryResponseItem,
    ImageDeleteResponseItem, ImageInspect, ImagePruneResponse, ImageSummary, SystemDataUsageResponse, SystemInfo,
    SystemVersion,
};
use skiff_engine::Result;
use skiff_engine::build::{BuildContext, BuildRequest, ImageInfo, Out};
use skiff_engine::container::WaitCondition;
use skiff_engine::container::archive::PathStat;
use skiff_engine::container::attach::AttachHandle;
use skiff_engine::container::commit::CommitOptions;
use skiff_engine::container::list::{ListOptions, PruneReport};
use skiff_engine::container::logs::{LogLine, LogOptions};
use skiff_engine::container::stats::Sample;
use skiff_engine::events::Event;
use skiff_engine::images::ImageFilters;
use skiff_engine::network::{CreateRequest, MemberView, NetworkFilters, NetworkRecord};
use skiff_engine::types::Streams;
use skiff_engine::types::{Credentials, LoadResult, Reference, SaveItem, Sink};
use skiff_engine::volume_ops::VolumePruneReport;
use skiff_engine::volumes::VolumeRecord;
use tokio::sync::{broadcast, mpsc};

/// A writer the backend streams an archive into (the response body's pipe).
pub type ArchiveWriter<'a> = &'a mut (dyn Write + Send);
/// A reader the backend extracts an archive from: the request body, whose reads block (read it
/// off the async workers).
pub type ArchiveReader = Box<dyn Read + Send>;

/// `/containers/...` and `/commit`. Keys are what the client wrote: an ID, a unique ID prefix
/// or a name. Methods that touch the disk may block: the router calls them off the async
/// workers (see `stream::blocking_body`) or they are async.
pub trait ContainerBackend: Send + Sync + 'static {
    /// Whether containers get cgroup v2 resources (API adaptations of HostConfig differ).
    fn cgroup_v2(&self) -> bool;
    /// `opts`: the create's `?platform=` (an image for another platform is not found) and
    /// what the client's API version implies.
    fn create(
        &self,
        name: Option<String>,
        body: ContainerCreateBody,
        opts: skiff_engine::container::create::CreateOptions,
    ) -> impl Future<Output = Result<(String, Vec<String>)>> + Send;
    fn list(&self, opts: ListOptions) -> Result<Vec<ContainerSummary>>;
    fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspectResponse>;
    /// Resolves a key (a 404 before a streaming answer starts).
    fn exists(&self, key: &str) -> Result<()>;
    fn start(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<String>) -> impl Future<Output = Result<()>> + Send;
    fn restart(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn kill(&self, key: &str, signal: Option<String>) -> impl Future<Output = Result<()>> + Send;
    /// Pauses (`true`) or unpauses.
    fn pause(&self, key: &str, pause: bool) -> impl Future<Output = Result<()>> + Send;
    fn remove(&self, key: &str, force: bool, volumes: bool) -> impl Future<Output = Result<()>> + Send;
    fn remove_link(&self, parent: &str, alias: &str) -> Result<()>;
    fn rename(&self, key: &str, name: &str) -> Result<()>;
    /// Waits for `condition`: exit code and error.
    fn wait(&self, key: &str, condition: WaitCondition) -> impl Future<Output = Result<(i64, Option<String>)>> + Send;
    fn attach(&self, key: &str, streams: Streams) -> impl Future<Output = Result<AttachHandle>> + Send;
    /// Whether the container has a terminal, and its log lines.
    fn logs(&self, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<LogLine>)>;
    fn resize(&self, key: &str, height: u16, width: u16) -> impl Future<Output = Result<()>> + Send;
    fn top(&self, key: &str) -> Result<ContainerTopResponse>;
    fn changes(&self, key: &str) -> impl Future<Output = Result<Vec<FilesystemChange>>> + Send;
    /// Blocking: the whole filesystem as a tar stream.
    fn export(&self, key: &str, w: ArchiveWriter<'_>) -> Result<()>;
    /// One reading of the container's counters (`None` when it is not running).
    fn sample(&self, key: &str) -> Result<Option<Sample>>;
    fn stats(&self, key: &str, cur: Option<&Sample>, pre: Option<&Sample>) -> Result<ContainerStatsResponse>;
    /// skiff's own fields of a reading (run-queue wait, throttling, OOM kills, pressure), sent
    /// under `"skiff"` beside Docker's.
    fn skiff_stats(&self, cur: &Sample, pre: Option<&Sample>) -> Option<serde_json::Value> {
        let _ = (cur, pre);
        None
    }
    fn update(&self, key: &str, body: ContainerUpdateBody) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn stat_path(&self, key: &str, path: &str) -> impl Future<Output = Result<PathStat>> + Send;
    /// Blocking: `path` as a tar stream.
    fn archive_path(&self, key: &str, path: &str, w: ArchiveWriter<'_>) -> Result<PathStat>;
    fn extract_to(
        &self,
        key: &str,
        path: &str,
        r: ArchiveReader,
        copy_uid_gid: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    fn prune(
        &self,
        filters: std::collections::BTreeMap<String, Vec<String>>,
    ) -> impl Future<Output = Result<PruneReport>> + Send;
    fn commit(&self, key: &str, opts: CommitOptions) -> impl Future<Output = Result<String>> + Send;
}

/// `/volumes/...`.
pub trait VolumeBackend: Send + Sync + 'static {
    fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord>;
    /// `filters`: `name`, `driver`, `dangling`, `label` (an unknown one is an error).
    fn list(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<VolumeRecord>>;
    fn inspect(&self, name: &str) -> Result<VolumeRecord>;
    /// Refused (conflict) while a container mounts it.
    fn remove(&self, name: &str) -> Result<()>;
    fn prune(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<VolumePruneReport>;
}

/// `/networks/...`.
pub trait NetworkBackend: Send + Sync + 'static {
    /// Networks with the containers attached to each.
    fn list(
        &self,
        filters: &NetworkFilters,
    ) -> impl Future<Output = Result<Vec<(NetworkRecord, Vec<MemberView>)>>> + Send;
    fn inspect(&self, key: &str) -> impl Future<Output = Result<(NetworkRecord, Vec<MemberView>)>> + Send;
    fn create(&self, req: CreateRequest) -> impl Future<Output = Result<NetworkRecord>> + Send;
    fn remove(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Names of the networks removed.
    fn prune(&self, filters: &NetworkFilters) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn connect(
        &self,
        network: &str,
        container: &str,
        settings: Option<EndpointSettings>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn disconnect(&self, network: &str, container: &str, force: bool) -> impl Future<Output = Result<()>> + Send;
}

/// `/containers/{id}/exec` and `/exec/...`.
pub trait ExecBackend: Send + Sync + 'static {
    /// Creates an exec instance in a running container; its ID.
    fn create(&self, container: &str, config: ExecConfig) -> Result<String>;
    /// The configuration the instance was created with.
    fn config(&self, id: &str) -> Result<ExecConfig>;
    /// Whether it may start now (not run yet, its container running).
    fn startable(&self, id: &str) -> Result<()>;
    /// Starts it; unless `detach`, the handle of its streams.
    fn start(
        &self,
        id: &str,
        detach: bool,
        tty: Option<bool>,
        console_size: Option<(u16, u16)>,
    ) -> impl Future<Output = Result<Option<AttachHandle>>> + Send;
    fn resize(&self, id: &str, height: u16, width: u16) -> impl Future<Output = Result<()>> + Send;
    fn inspect(&self, id: &str) -> Result<ExecInspectResponse>;
}

/// `/_ping`, `/version`, `/info`, `/events`, `/system/df`.
pub trait SystemBackend: Send + Sync + 'static {
    fn version(&self) -> SystemVersion;
    fn info(&self) -> SystemInfo;
    /// Blocking (it walks the disk): `docker system df`.
    fn df(&self) -> Result<SystemDataUsageResponse>;
    /// The events kept so far and the live ones from now on.
    fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);
}

/// `/images/...` and `/auth`.
pub trait ImageBackend: Send + Sync + 'static {
    fn list(&self, all: bool, filters: &ImageFilters) -> Result<Vec<ImageSummary>>;
    fn inspect(&self, name: &str) -> Result<ImageInspect>;
    fn history(&self, name: &str) -> Result<Vec<HistoryResponseItem>>;
    fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()>;
    fn remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>>;
    /// Unused images: dangling ones, or all unused with `all`.
    fn prune(&self, all: bool) -> Result<ImagePruneResponse>;
    /// `docker import` of a root filesystem tar; the new image's ID. `platform`: the
    /// request's `?platform=` as given.
    fn import(
        &self,
        r: ArchiveReader,
        reference: Option<Reference>,
        changes: Vec<String>,
        message: Option<String>,
        platform: Option<String>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn load(&self, r: ArchiveReader) -> impl Future<Output = Result<LoadResult>> + Send;
    /// What `save` of these names writes (an unknown name is an error before anything is).
    fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>>;
    /// Blocking: the archive of `items`.
    fn save(&self, items: &[SaveItem], w: ArchiveWriter<'_>) -> Result<()>;
    fn pull(
        &self,
        r: &Reference,
        platform: Option<&str>,
        creds: Option<Credentials>,
        sink: Sink,
    ) -> impl Future<Output = Result<()>> + Send;
    fn push(&self, r: &Reference, creds: Option<Credentials>, sink: Sink) -> impl Future<Output = Result<()>> + Send;
    /// Checks credentials against a registry (`docker login`).
    fn login(&self, server: &str, creds: Credentials) -> impl Future<Output = Result<()>> + Send;
}

/// `/build` and `/build/prune`.
pub trait BuildBackend: Send + Sync + 'static {
    /// Whether the daemon runs with experimental features (squash's error differs).
    fn experimental(&self) -> bool;
    /// Unpacks an untrusted context tar (maybe compressed) path-safely into a private
    /// directory; `BuildContext::remove` takes it away.
    fn unpack_context(&self, r: ArchiveReader) -> impl Future<Output = Result<BuildContext>> + Send;
    /// Runs a build to its end, saying what it does through `out`; it owns itself (the router
    /// runs it in a task of its own, cancelled through the request's token).
    fn build(self: Arc<Self>, req: BuildRequest, out: Out) -> impl Future<Output = Result<ImageInfo>> + Send;
    /// Removes every build cache entry; how many.
    fn prune(&self) -> Result<usize>;
}

/// `/swarm*` and `/nodes*`, and the Swarm section of `/info`. Implemented by skiffd over its
/// swarm membership; the API knows only the Engine API's shapes.
pub trait SwarmBackend: Send + Sync + 'static {
    /// The Swarm section of `docker info`.
    fn info(&self) -> impl Future<Output = bollard_stubs::models::SwarmInfo> + Send;
    /// The new node's ID.
    fn init(&self, req: bollard_stubs::models::SwarmInitRequest) -> impl Future<Output = Result<String>> + Send;
    fn join(&self, req: bollard_stubs::models::SwarmJoinRequest) -> impl Future<Output = Result<()>> + Send;
    fn leave(&self, force: bool) -> impl Future<Output = Result<()>> + Send;
    fn inspect(&self) -> impl Future<Output = Result<bollard_stubs::models::Swarm>> + Send;
    fn update(
        &self,
        version: u64,
        spec: bollard_stubs::models::SwarmSpec,
        rotate: TokenRotation,
    ) -> impl Future<Output = Result<()>> + Send;
    fn unlock_key(&self) -> impl Future<Output = Result<String>> + Send;
    fn unlock(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// `filters` as the query carries it (JSON).
    fn nodes(&self, filters: Option<&str>) -> impl Future<Output = Result<Vec<bollard_stubs::models::Node>>> + Send;
    fn node(&self, id: &str) -> impl Future<Output = Result<bollard_stubs::models::Node>> + Send;
    fn update_node(
        &self,
        id: &str,
        version: u64,
        spec: bollard_stubs::models::NodeSpec,
    ) -> impl Future<Output = Result<()>> + Send;
    fn remove_node(&self, id: &str, force: bool) -> impl Future<Output = Result<()>> + Send;
    /// `GET /services`; with `status`, each service's running and desired task counts.
    fn services(
        &self,
        filters: Option<&str>,
        status: bool,
    ) -> impl Future<Output = Result<Vec<bollard_stubs::models::Service>>> + Send;
    fn service(&self, id: &str) -> impl Future<Output = Result<bollard_stubs::models::Service>> + Send;
    /// `auth`: the client's `X-Registry-Auth` (`--with-registry-auth`).
    fn create_service(
        &self,
        spec: bollard_stubs::models::ServiceSpec,
        auth: Option<String>,
    ) -> impl Future<Output = Result<bollard_stubs::models::ServiceCreateResponse>> + Send;
    /// `rollback`: return to the previous spec (`?rollback=previous`).
    fn update_service(
        &self,
        id: &str,
        version: u64,
        spec: bollard_stubs::models::ServiceSpec,
        rollback: bool,
        auth: ServiceAuth,
    ) -> impl Future<Output = Result<bollard_stubs::models::ServiceUpdateResponse>> + Send;
    fn remove_service(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    fn tasks(&self, filters: Option<&str>) -> impl Future<Output = Result<Vec<bollard_stubs::models::Task>>> + Send;
    fn task(&self, id: &str) -> impl Future<Output = Result<bollard_stubs::models::Task>> + Send;
    /// `/secrets` and `/configs` (a config in the shape of a secret, without `Driver`; a
    /// secret's data is never shown).
    fn blobs(
        &self,
        kind: BlobKind,
        filters: Option<&str>,
    ) -> impl Future<Output = Result<Vec<bollard_stubs::models::Secret>>> + Send;
    fn blob(&self, kind: BlobKind, id: &str) -> impl Future<Output = Result<bollard_stubs::models::Secret>> + Send;
    /// The new object's ID.
    fn create_blob(
        &self,
        kind: BlobKind,
        spec: bollard_stubs::models::SecretSpec,
    ) -> impl Future<Output = Result<String>> + Send;
    fn update_blob(
        &self,
        kind: BlobKind,
        id: &str,
        version: u64,
        spec: bollard_stubs::models::SecretSpec,
    ) -> impl Future<Output = Result<()>> + Send;
    fn remove_blob(&self, kind: BlobKind, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `GET /services/{id}/logs` (or, with `task`, `/tasks/{id}/logs`): whether the service
    /// has a TTY, and the lines of its tasks, each with its swarm attributes (`--details`).
    fn service_logs(
        &self,
        id: &str,
        task: bool,
        opts: LogOptions,
    ) -> impl Future<Output = Result<(bool, mpsc::Receiver<LogLine>)>> + Send;
    /// The swarm's networks as the managers keep them (none on a node that is not a manager).
    fn networks(&self) -> impl Future<Output = Result<Vec<NetworkRecord>>> + Send;
    /// A swarm network by ID, name or ID prefix; `None` when there is none such (or this node
    /// is not a manager).
    fn network(&self, key: &str) -> impl Future<Output = Result<Option<NetworkRecord>>> + Send;
    /// `docker network create -d overlay` (on a manager): the new network's ID.
    fn create_network(
        &self,
        req: bollard_stubs::models::NetworkCreateRequest,
    ) -> impl Future<Output = Result<String>> + Send;
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// The registry credentials an updated service keeps: the client's (`X-Registry-Auth`), or,
/// without them, those of the current spec or of the previous one (`registryAuthFrom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAuth {
    Given(String),
    FromSpec,
    FromPreviousSpec,
}

/// Secrets or configs (the same calls serve both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Secret,
    Config,
}

/// What `POST /swarm/update` asks to rotate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenRotation {
    pub worker: bool,
    pub manager: bool,
    pub unlock_key: bool,
}

/// `/skiff/*`: skiff's own performance analysis (`skiff top`, `skiff diagnose`). Implemented by
/// skiffd over `skiff-analysis`; the API passes its JSON through.
pub trait AnalysisBackend: Send + Sync + 'static {
    /// Samples a container and the host for `seconds`: the report (`skiff_analysis::verdict`).
    fn diagnose(&self, key: &str, seconds: f64) -> impl Future<Output = Result<serde_json::Value>> + Send;
    /// Every running container and the host over `interval`.
    fn top(&self, interval: std::time::Duration) -> impl Future<Output = Result<serde_json::Value>> + Send;
}
