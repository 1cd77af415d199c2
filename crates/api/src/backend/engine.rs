//! The backends on the real engine: one call (or a few) per method, nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ChangeType, ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
    ContainerTopResponse, ContainerUpdateBody, EndpointSettings, ExecConfig, ExecInspectResponse, FilesystemChange,
    HistoryResponseItem, ImageDeleteResponseItem, ImageInspect, ImagePruneResponse, ImageSummary,
    SystemDataUsageResponse, SystemInfo, SystemVersion,
};
use skiff_engine::build::{BuildContext, BuildRequest, ImageInfo, Out};
use skiff_engine::container::WaitCondition;
use skiff_engine::container::archive::PathStat;
use skiff_engine::container::attach::AttachHandle;
use skiff_engine::container::commit::CommitOptions;
use skiff_engine::container::create::CreateOptions;
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
use skiff_engine::{Engine, EngineError, Result};
use tokio::sync::{broadcast, mpsc};

use super::{
    ArchiveReader, ArchiveWriter, BuildBackend, ContainerBackend, ExecBackend, ImageBackend, NetworkBackend,
    SystemBackend, VolumeBackend,
};

/// Runs blocking work (walking a container's filesystem) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(EngineError::from_cause)?
}

impl ContainerBackend for Engine {
    fn cgroup_v2(&self) -> bool {
        self.containers.layout.is_v2()
    }

    async fn create(
        &self,
        name: Option<String>,
        body: ContainerCreateBody,
        opts: CreateOptions,
    ) -> Result<(String, Vec<String>)> {
        self.containers.create(name, body, opts).await
    }

    fn list(&self, opts: ListOptions) -> Result<Vec<ContainerSummary>> {
        self.containers.list(&opts)
    }

    fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspectResponse> {
        self.containers.inspect(key, size)
    }

    fn exists(&self, key: &str) -> Result<()> {
        self.containers.get(key).map(|_| ())
    }

    async fn start(&self, key: &str) -> Result<()> {
        self.containers.start(key).await
    }

    async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        self.containers.stop(key, timeout, signal).await
    }

    async fn restart(&self, key: &str, timeout: Option<i64>, signal: Option<String>) -> Result<()> {
        self.containers.restart(key, timeout, signal).await
    }

    async fn kill(&self, key: &str, signal: Option<String>) -> Result<()> {
        self.containers.kill(key, signal).await
    }

    async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        self.containers.pause(key, pause).await
    }

    async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        self.containers.remove(key, force, volumes).await
    }

    fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        self.containers.remove_link(parent, alias)
    }

    fn rename(&self, key: &str, name: &str) -> Result<()> {
        self.containers.rename(key, name)
    }

    async fn wait(&self, key: &str, condition: WaitCondition) -> Result<(i64, Option<String>)> {
        self.containers.wait(key, condition).await
    }

    async fn attach(&self, key: &str, streams: Streams) -> Result<AttachHandle> {
        self.containers.attach(key, streams).await
    }

    fn logs(&self, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<LogLine>)> {
        self.containers.logs(key, opts)
    }

    async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        self.containers.resize(key, height, width).await
    }

    fn top(&self, key: &str) -> Result<ContainerTopResponse> {
        self.containers.top(key)
    }

    async fn changes(&self, key: &str) -> Result<Vec<FilesystemChange>> {
        let (containers, key) = (self.containers.clone(), key.to_string());
        let changes = blocking(move || containers.changes(&key)).await?;
        Ok(changes
            .into_iter()
            .map(|c| FilesystemChange {
                path: c.path.display().to_string(),
                kind: match c.kind {
                    1 => ChangeType::_1,
                    2 => ChangeType::_2,
                    _ => ChangeType::_0,
                },
            })
            .collect())
    }

    fn export(&self, key: &str, w: ArchiveWriter<'_>) -> Result<()> {
        self.containers.export(key, w)
    }

    fn sample(&self, key: &str) -> Result<Option<Sample>> {
        self.containers.sample(key)
    }

    fn stats(&self, key: &str, cur: Option<&Sample>, pre: Option<&Sample>) -> Result<ContainerStatsResponse> {
        self.containers.stats_response(key, cur, pre)
    }

    fn skiff_stats(&self, cur: &Sample, pre: Option<&Sample>) -> Option<serde_json::Value> {
        serde_json::to_value(skiff_engine::container::Containers::skiff_stats(cur, pre)).ok()
    }

    async fn update(&self, key: &str, body: ContainerUpdateBody) -> Result<Vec<String>> {
        self.containers.update_resources(key, body).await
    }

    async fn stat_path(&self, key: &str, path: &str) -> Result<PathStat> {
        let (containers, key, path) = (self.containers.clone(), key.to_string(), path.to_string());
        blocking(move || containers.stat_path(&key, &path)).await
    }

    fn archive_path(&self, key: &str, path: &str, w: ArchiveWriter<'_>) -> Result<PathStat> {
        self.containers.archive_path(key, path, w)
    }

    async fn extract_to(
        &self,
        key: &str,
        path: &str,
        r: ArchiveReader,
        copy_uid_gid: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let (containers, key, path) = (self.containers.clone(), key.to_string(), path.to_string());
        blocking(move || containers.extract_to(&key, &path, r, copy_uid_gid, no_overwrite_dir_non_dir)).await
    }

    async fn prune(&self, filters: BTreeMap<String, Vec<String>>) -> Result<PruneReport> {
        self.containers.prune(&filters).await
    }

    async fn commit(&self, key: &str, opts: CommitOptions) -> Result<String> {
        self.containers.commit(key, opts).await
    }
}

impl VolumeBackend for Engine {
    fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord> {
        self.volumes.create(name, driver, labels, options)
    }

    fn list(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<VolumeRecord>> {
        self.list_volumes(filters)
    }

    fn inspect(&self, name: &str) -> Result<VolumeRecord> {
        self.volumes.inspect(name)
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.remove_volume(name)
    }

    fn prune(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<VolumePruneReport> {
        self.prune_volumes(filters)
    }
}

impl NetworkBackend for Engine {
    async fn list(&self, filters: &NetworkFilters) -> Result<Vec<(NetworkRecord, Vec<MemberView>)>> {
        self.networks.list(filters).await
    }

    async fn inspect(&self, key: &str) -> Result<(NetworkRecord, Vec<MemberView>)> {
        let rec = self.networks.get(key).await?;
        let only = NetworkFilters { id: vec![rec.id.clone()], ..Default::default() };
        self.networks
            .list(&only)
            .await?
            .into_iter()
            .find(|(n, _)| n.id == rec.id)
            .ok_or_else(|| EngineError::not_found(format!("network {key} not found")))
    }

    async fn create(&self, req: CreateRequest) -> Result<NetworkRecord> {
        self.networks.create(req).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.networks.remove(key).await
    }

    async fn prune(&self, filters: &NetworkFilters) -> Result<Vec<String>> {
        self.networks.prune(filters).await
    }

    async fn connect(&self, network: &str, container: &str, settings: Option<EndpointSettings>) -> Result<()> {
        self.containers.connect(network, container, settings).await
    }

    async fn disconnect(&self, network: &str, container: &str, force: bool) -> Result<()> {
        self.containers.disconnect(network, container, force).await
    }
}

impl ExecBackend for Engine {
    fn create(&self, container: &str, config: ExecConfig) -> Result<String> {
        self.containers.exec_create(container, config)
    }

    fn config(&self, id: &str) -> Result<ExecConfig> {
        Ok(self.containers.execs.get(id)?.config.clone())
    }

    fn startable(&self, id: &str) -> Result<()> {
        self.containers.exec_startable(id)
    }

    async fn start(
        &self,
        id: &str,
        detach: bool,
        tty: Option<bool>,
        console_size: Option<(u16, u16)>,
    ) -> Result<Option<AttachHandle>> {
        self.containers.exec_start(id, detach, tty, console_size).await
    }

    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        self.containers.exec_resize(id, height, width).await
    }

    fn inspect(&self, id: &str) -> Result<ExecInspectResponse> {
        self.containers.exec_inspect(id)
    }
}

impl SystemBackend for Engine {
    fn version(&self) -> SystemVersion {
        Engine::version(self)
    }

    fn info(&self) -> SystemInfo {
        Engine::info(self)
    }

    fn df(&self) -> Result<SystemDataUsageResponse> {
        Engine::df(self)
    }

    fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        self.events.subscribe()
    }
}

impl ImageBackend for Engine {
    fn list(&self, all: bool, filters: &ImageFilters) -> Result<Vec<ImageSummary>> {
        self.images.list(all, filters, &self.containers)
    }

    fn inspect(&self, name: &str) -> Result<ImageInspect> {
        self.images.inspect(name)
    }

    fn history(&self, name: &str) -> Result<Vec<HistoryResponseItem>> {
        self.images.history(name)
    }

    fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        self.images.tag(name, repo, tag)
    }

    fn remove(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteResponseItem>> {
        self.images.remove(name, force, &self.containers)
    }

    fn prune(&self, all: bool) -> Result<ImagePruneResponse> {
        self.images.prune(all, &self.containers)
    }

    async fn import(
        &self,
        mut r: ArchiveReader,
        reference: Option<Reference>,
        changes: Vec<String>,
        message: Option<String>,
        platform: Option<String>,
    ) -> Result<String> {
        let images = self.images.clone();
        blocking(move || images.import(&mut r, reference, &changes, message, platform.as_deref())).await
    }

    async fn load(&self, r: ArchiveReader) -> Result<LoadResult> {
        let images = self.images.clone();
        blocking(move || images.load(r)).await
    }

    fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>> {
        self.images.save_items(names)
    }

    fn save(&self, items: &[SaveItem], w: ArchiveWriter<'_>) -> Result<()> {
        self.images.write_save(items, w).map(|_| ())
    }

    async fn pull(&self, r: &Reference, platform: Option<&str>, creds: Option<Credentials>, sink: Sink) -> Result<()> {
        self.images.pull(r, platform, creds, sink).await.map(|_| ())
    }

    async fn push(&self, r: &Reference, creds: Option<Credentials>, sink: Sink) -> Result<()> {
        self.images.push(r, creds, sink).await.map(|_| ())
    }

    async fn login(&self, server: &str, creds: Credentials) -> Result<()> {
        self.images.login(server, creds).await
    }
}

impl BuildBackend for Engine {
    fn experimental(&self) -> bool {
        self.config.experimental
    }

    async fn unpack_context(&self, r: ArchiveReader) -> Result<BuildContext> {
        let root = self.config.data_root.clone();
        blocking(move || Engine::unpack_build_context(&root, r)).await
    }

    async fn build(self: Arc<Self>, req: BuildRequest, out: Out) -> Result<ImageInfo> {
        Engine::build(&self, req, out).await
    }

    fn prune(&self) -> Result<usize> {
        self.builder_prune()
    }
}
