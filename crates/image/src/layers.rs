//! The layer store: each layer unpacked once, in a directory named by its chain ID.
//!
//! With overlayfs every layer directory holds only that layer's changes (whiteouts as overlay
//! markers), and a container mounts them stacked. With the copying driver every layer directory
//! holds the whole tree up to that layer. A layer is unpacked into `tmp-*` and renamed into
//! place only once complete and verified; a crash leaves a `tmp-*` that the next open removes.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::content::{ContentError, ContentStore};
use crate::db::{Db, DbError, Durability};
use crate::digest::{Digest, HashingReader};
use crate::layer::{self, UnpackError, UnpackOptions, WhiteoutMode};
use crate::spec::Descriptor;
use skiff_common::fsutil;

const TABLE: &str = "layers";
/// diff ID → a compressed blob of the same layer made for (or seen in) a registry.
const DIST: &str = "dist_blobs";
/// blob digest → repositories (`host/repo`) known to hold it, for cross-repository mounts.
const SOURCES: &str = "blob_sources";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("layer diff ID mismatch: config says {expected}, content is {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("layer {0} not found")]
    NotFound(Digest),
    #[error("layer store i/o at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io { path: path.to_path_buf(), source }
}

/// How layers and container snapshots are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Overlay,
    Copy,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay2",
            Driver::Copy => "vfs",
        }
    }
}

/// A layer as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// The blob this layer came from (compressed or not), kept for save and push.
    pub blob: Descriptor,
    /// Bytes of file content in this layer.
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
    driver: Driver,
    db: Arc<Db>,
    content: ContentStore,
    /// Bytes of file content an image's layers may unpack to, all together.
    max_image_size: Option<u64>,
    /// Held while a layer is made visible: two writers of the same layer (parallel build
    /// stages committing identical steps, concurrent pulls) publish it once, and neither
    /// removes the other's.
    publishing: Arc<std::sync::Mutex<()>>,
}

impl LayerStore {
    pub fn open(root: PathBuf, driver: Driver, db: Arc<Db>, content: ContentStore) -> Result<LayerStore, LayerError> {
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        for e in fs::read_dir(&root).map_err(io_err(&root))?.flatten() {
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                let _ = fsutil::remove_all(&e.path());
            }
        }
        fs::create_dir_all(root.join("empty")).map_err(io_err(&root))?;
        let store = LayerStore { root, driver, db, content, max_image_size: None, publishing: Arc::default() };
        store.reconcile()?;
        Ok(store)
    }

    /// Makes records and directories agree after a crash: a record whose directory is gone (a
    /// removal cut short by an older skiffd, which moved the directory first) would make a pull
    /// reuse a layer that is not there, so it goes — the next pull unpacks the layer again; a
    /// layer directory with no record (a removal cut short after its record went) is removed.
    fn reconcile(&self) -> Result<(), LayerError> {
        let records = self.list()?;
        for rec in &records {
            if !self.dir(&rec.chain_id).is_dir() {
                tracing::warn!(layer = %rec.chain_id, "a layer record without its files: dropped");
                self.db.delete(TABLE, rec.chain_id.hex())?;
            }
        }
        let known: std::collections::HashSet<String> = records.iter().map(|r| r.chain_id.hex().to_string()).collect();
        for e in fs::read_dir(&self.root).map_err(io_err(&self.root))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let chain_named = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if chain_named && !known.contains(&name) {
                tracing::warn!(layer = %name, "layer files without a record: removed");
                let _ = fsutil::remove_all(&e.path());
            }
        }
        Ok(())
    }

    /// Limits how many bytes of file content an image's layers may unpack to (a gzip bomb or
    /// a sparse entry of terabytes is refused, and leaves nothing behind).
    pub fn with_max_image_size(mut self, max: Option<u64>) -> LayerStore {
        self.max_image_size = max;
        self
    }

    pub fn max_image_size(&self) -> Option<u64> {
        self.max_image_size
    }

    /// What a layer on top of `parent` may still unpack to under the image size limit.
    fn budget(&self, parent: Option<&Digest>) -> Result<Option<u64>, LayerError> {
        let Some(max) = self.max_image_size else { return Ok(None) };
        let mut used = 0u64;
        let mut cur = parent.cloned();
        while let Some(c) = cur {
            let rec = self.get(&c)?.ok_or_else(|| LayerError::NotFound(c.clone()))?;
            used = used.saturating_add(rec.size);
            cur = rec.parent;
        }
        if used > max {
            return Err(LayerError::Unpack(UnpackError::TooLarge { limit: max }));
        }
        Ok(Some(max - used))
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The directory holding a layer's files (its diff, or its full tree when copying).
    pub fn dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("diff")
    }

    /// An empty directory, the lower layer of an image with no layers.
    pub fn empty_dir(&self) -> PathBuf {
        self.root.join("empty")
    }

    pub fn get(&self, chain_id: &Digest) -> Result<Option<LayerRecord>, LayerError> {
        let rec: Option<LayerRecord> = self.db.get(TABLE, chain_id.hex())?;
        Ok(rec.filter(|_| self.dir(chain_id).exists()))
    }

    pub fn list(&self) -> Result<Vec<LayerRecord>, LayerError> {
        Ok(self.db.list::<LayerRecord>(TABLE)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Unpacks a layer blob already in the content store on top of `parent`, verifying both its
    /// blob digest (done by the store) and its diff ID. Returns the existing record if the
    /// layer is already there.
    pub fn register(
        &self,
        parent: Option<&Digest>,
        blob: &Descriptor,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerRecord, LayerError> {
        if let Some(d) = expected_diff_id {
            let chain = chain_of(parent, d);
            if let Some(rec) = self.get(&chain)? {
                return Ok(rec);
            }
        }
        let f = self.content.open_blob(&blob.digest)?;
        let reader = io::BufReader::with_capacity(256 << 10, f);
        let (diff_id, size, tmp) = self.unpack_to_tmp(parent, reader)?;
        if let Some(e) = expected_diff_id
            && *e != diff_id
        {
            let _ = fsutil::remove_all(&tmp);
            return Err(LayerError::DiffIdMismatch { expected: e.clone(), actual: diff_id });
        }
        self.publish(parent, diff_id, blob.clone(), size, tmp)
    }

    fn unpack_to_tmp(&self, parent: Option<&Digest>, reader: impl Read) -> Result<(Digest, u64, PathBuf), LayerError> {
        let tmp = self.root.join(fsutil::random_name("tmp"));
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).map_err(io_err(&diff))?;
        let result = (|| {
            let mode = match self.driver {
                Driver::Overlay => WhiteoutMode::Overlay,
                Driver::Copy => {
                    if let Some(p) = parent {
                        copy_tree(&self.dir(p), &diff).map_err(io_err(&diff))?;
                    }
                    WhiteoutMode::Apply
                }
            };
            let (_, tar_stream) = layer::decompress(reader).map_err(UnpackError::Read)?;
            let mut hashing = HashingReader::new(tar_stream);
            let opts = UnpackOptions { whiteouts: mode, max_bytes: self.budget(parent)?, ..Default::default() };
            let stats = layer::unpack(&mut hashing, &diff, &opts)?;
            // The tar reader stops at the end-of-archive marker; the diff ID covers every byte.
            io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
            let (diff_id, _) = hashing.finish();
            Ok((diff_id, stats.bytes))
        })();
        match result {
            Ok((d, n)) => Ok((d, n, tmp)),
            Err(e) => {
                let _ = fsutil::remove_all(&tmp);
                Err(e)
            }
        }
    }

    fn publish(
        &self,
        parent: Option<&Digest>,
        diff_id: Digest,
        blob: Descriptor,
        size: u64,
        tmp: PathBuf,
    ) -> Result<LayerRecord, LayerError> {
        let chain_id = chain_of(parent, &diff_id);
        let rec = LayerRecord { chain_id: chain_id.clone(), diff_id, parent: parent.cloned(), blob, size };
        let dest = self.root.join(chain_id.hex());
        let _publishing = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        if dest.join("diff").exists() {
            let _ = fsutil::remove_all(&tmp);
        } else {
            if dest.exists() {
                fsutil::remove_all(&dest).map_err(io_err(&dest))?;
            }
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        }
        self.db.put(TABLE, chain_id.hex(), &rec, Durability::Sync)?;
        Ok(rec)
    }

    /// The compressed blob kept for a layer (made once for a push, or the one it was pulled as).
    pub fn dist_blob(&self, diff_id: &Digest) -> Result<Option<Descriptor>, LayerError> {
        let d: Option<Descriptor> = self.db.get(DIST, diff_id.hex())?;
        Ok(d.filter(|d| self.content.contains(&d.digest)))
    }

    /// The compressed blob last pushed for a layer, whether or not its content is kept here
    /// (a push compresses while uploading and keeps only the digest).
    pub fn dist_digest(&self, diff_id: &Digest) -> Result<Option<Descriptor>, LayerError> {
        Ok(self.db.get(DIST, diff_id.hex())?)
    }

    /// Remembers a compressed blob for a layer (its content may or may not be kept).
    pub fn set_dist_blob(&self, diff_id: &Digest, blob: &Descriptor) -> Result<(), LayerError> {
        self.db.put(DIST, diff_id.hex(), blob, Durability::Sync)?;
        Ok(())
    }

    /// Forgets the compressed blob kept for a diff ID; returns it (the caller deletes the content).
    pub fn take_dist_blob(&self, diff_id: &Digest) -> Result<Option<Descriptor>, LayerError> {
        let d: Option<Descriptor> = self.db.get(DIST, diff_id.hex())?;
        if d.is_some() {
            self.db.delete(DIST, diff_id.hex())?;
        }
        Ok(d)
    }

    /// Repositories (`host/repo`) a blob is known to be in.
    pub fn blob_sources(&self, blob: &Digest) -> Vec<String> {
        self.db.get::<Vec<String>>(SOURCES, blob.hex()).ok().flatten().unwrap_or_default()
    }

    /// Remembers that a repository holds a blob (the most recent few are kept).
    pub fn add_blob_source(&self, blob: &Digest, repo: &str) -> Result<(), LayerError> {
        let mut v = self.blob_sources(blob);
        if v.first().map(String::as_str) == Some(repo) {
            return Ok(());
        }
        v.retain(|r| r != repo);
        v.insert(0, repo.to_string());
        v.truncate(8);
        self.db.put(SOURCES, blob.hex(), &v, Durability::Lazy)?;
        Ok(())
    }

    /// Stores a layer tar given as a stream (import, commit, load): the bytes are kept as a blob
    /// and unpacked. Compressed streams are accepted and keep their compression.
    pub fn create_from_tar(&self, parent: Option<&Digest>, tar: &mut dyn Read) -> Result<LayerRecord, LayerError> {
        let (digest, size) = self.content.put_reader(tar, None)?;
        let f = self.content.open_blob(&digest)?;
        let (c, _) = layer::compress::peek(f).map_err(io_err(&self.content.path(&digest)))?;
        let media_type = match c {
            layer::Compression::None => crate::spec::media::OCI_LAYER,
            layer::Compression::Gzip => crate::spec::media::OCI_LAYER_GZIP,
            layer::Compression::Zstd => crate::spec::media::OCI_LAYER_ZSTD,
        };
        let expected = (c == layer::Compression::None).then(|| digest.clone());
        let r = self.register(parent, &Descriptor::new(media_type, digest.clone(), size), expected.as_ref());
        if r.is_err() {
            // A refused layer leaves nothing: its blob goes unless a layer already holds it.
            let held = self.list().map(|l| l.iter().any(|rec| rec.blob.digest == digest)).unwrap_or(true);
            if !held {
                let _ = self.content.delete(&digest);
            }
        }
        r
    }

    /// Makes a layer on top of `parent` from an overlay snapshot's upper directory (unmounted,
    /// nothing writing to it) without unpacking it again: the directory is packed once into an
    /// uncompressed blob, whose digest is the diff ID, and then moved into place as the layer's
    /// files — as containerd's overlay snapshotter commits. Entries named in `skip` (mount points
    /// the runtime made) are left out of both. The directory is consumed either way (moved, or
    /// left for its snapshot's removal when the layer already exists). Overlay driver only; the
    /// blob and the directory may differ in what a tar cannot carry (sockets, sub-second times).
    pub fn create_from_upper(
        &self,
        parent: Option<&Digest>,
        upper: &Path,
        skip: &[&str],
    ) -> Result<LayerRecord, LayerError> {
        if self.driver != Driver::Overlay {
            return Err(LayerError::Io {
                path: upper.to_path_buf(),
                source: io::Error::other("adopting an upper directory needs the overlay driver"),
            });
        }
        let w = io::BufWriter::with_capacity(256 << 10, self.content.writer()?);
        let w = layer::pack_overlay_diff(upper, w, skip).map_err(io_err(upper))?;
        let w = w.into_inner().map_err(|e| LayerError::Io { path: upper.to_path_buf(), source: e.into_error() })?;
        let blob_size = w.len();
        let diff_id = w.commit(None)?;
        let blob = Descriptor::new(crate::spec::media::OCI_LAYER, diff_id.clone(), blob_size);
        if let Some(rec) = self.get(&chain_of(parent, &diff_id))? {
            return Ok(rec);
        }
        for s in skip {
            let p = upper.join(s);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fsutil::remove_all(&p).map_err(io_err(&p))?,
                Ok(_) => fs::remove_file(&p).map_err(io_err(&p))?,
                Err(_) => {}
            }
        }
        let tmp = self.root.join(fsutil::random_name("tmp"));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        if let Err(e) = fs::rename(upper, tmp.join("diff")) {
            let _ = fs::remove_dir(&tmp);
            if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) {
                // Another filesystem: unpack the blob just written instead.
                return self.register(parent, &blob, Some(&diff_id));
            }
            return Err(io_err(upper)(e));
        }
        let size = fsutil::tree_size(&tmp.join("diff"));
        self.publish(parent, diff_id, blob, size, tmp)
    }

    /// Opens the layer as an uncompressed tar stream (its diff ID's content).
    pub fn open_tar(&self, rec: &LayerRecord) -> Result<Box<dyn Read + Send>, LayerError> {
        let f = self.content.open_blob(&rec.blob.digest)?;
        let (c, r) = layer::compress::peek(f).map_err(io_err(&self.content.path(&rec.blob.digest)))?;
        Ok(match c {
            layer::Compression::None => Box::new(r),
            layer::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(r))),
            layer::Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(r).map_err(io_err(&self.content.path(&rec.blob.digest)))?)
            }
        })
    }

    /// Removes a layer's record, then its files (its blob stays until garbage-collected by the
    /// caller). In that order: a crash between the two leaves files without a record, which
    /// the next open removes — never a record without files, which a pull would reuse.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), LayerError> {
        let _publishing = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        self.db.delete(TABLE, chain_id.hex())?;
        let dir = self.root.join(chain_id.hex());
        let trash = self.root.join(fsutil::random_name("tmp"));
        if dir.exists() {
            fs::rename(&dir, &trash).map_err(io_err(&dir))?;
        }
        fsutil::remove_all(&trash).map_err(io_err(&trash))?;
        Ok(())
    }
}

pub fn chain_of(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Copies a tree preserving owners, modes, times, links, devices and hard links (the copying
/// driver's snapshot, a volume's first content). `dst` must exist. The walk uses descriptors
/// only, so any depth copies; holes in sparse files stay holes.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    use skiff_common::tree::{self, Event, Walker};
    use std::collections::HashMap;
    use std::ffi::OsStr;
    use std::os::fd::{AsFd, OwnedFd};

    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let dst_root = tree::open_dir(dst)?;
    let mut w = Walker::open(src)?;
    // The destination directory matching the walk's current one; climbs back are checked.
    let mut d: OwnedFd = dst_root.try_clone()?;
    let mut ups: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; 128 << 10];
    while let Some(ev) = w.next()? {
        match ev {
            Event::Entry(e) => {
                let st = &e.stat;
                let name = e.name.as_os_str();
                if st.is_dir() {
                    if !w.same_fs_dir(&e) {
                        continue;
                    }
                    rustix::fs::mkdirat(&d, name, rustix::fs::Mode::from_raw_mode(0o700))?;
                    let sub = tree::open_dir_at(&d, name)?;
                    let here = tree::stat_at(&d, OsStr::new(""))?;
                    ups.push((here.dev, here.ino));
                    w.descend()?;
                    d = sub;
                    continue;
                }
                if st.is_file() && st.nlink > 1 {
                    let key = (st.dev, st.ino);
                    if let Some(first) = links.get(&key) {
                        rustix::fs::linkat(&dst_root, first, &d, name, rustix::fs::AtFlags::empty())?;
                        continue;
                    }
                    links.insert(key, w.path_of(name));
                }
                match st.file_type() {
                    rustix::fs::FileType::RegularFile => {
                        let from = rustix::fs::openat(
                            w.dir(),
                            name,
                            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::empty(),
                        )?;
                        let to = rustix::fs::openat(
                            &d,
                            name,
                            rustix::fs::OFlags::WRONLY
                                | rustix::fs::OFlags::CREATE
                                | rustix::fs::OFlags::EXCL
                                | rustix::fs::OFlags::NOFOLLOW
                                | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::from_raw_mode(0o600),
                        )?;
                        copy_file(from, to, &mut buf)?;
                    }
                    rustix::fs::FileType::Symlink => {
                        let target = rustix::fs::readlinkat(w.dir(), name, Vec::new())?;
                        rustix::fs::symlinkat(target.as_c_str(), &d, name)?;
                    }
                    kind => {
                        rustix::fs::mknodat(&d, name, kind, rustix::fs::Mode::from_raw_mode(st.perm()), st.rdev)?;
                    }
                }
                set_attrs(d.as_fd(), name, st)?;
            }
            Event::Leave(e) => {
                let up = tree::open_dir_at(&d, OsStr::new(".."))?;
                let st = tree::stat_at(&up, OsStr::new(""))?;
                if Some((st.dev, st.ino)) != ups.pop() {
                    return Err(io::Error::other("the destination tree changed during the copy"));
                }
                d = up;
                set_attrs(d.as_fd(), &e.name, &e.stat)?;
            }
        }
    }
    Ok(())
}

fn copy_file(from: std::os::fd::OwnedFd, to: std::os::fd::OwnedFd, buf: &mut [u8]) -> io::Result<()> {
    let mut from = fs::File::from(from);
    let to = fs::File::from(to);
    skiff_common::tree::copy_sparse(&mut from, &to, buf)?;
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then times, of `name` in `dir`.
fn set_attrs(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    st: &skiff_common::tree::Stat,
) -> io::Result<()> {
    use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid};
    rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(st.uid)),
        Some(Gid::from_raw(st.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !st.is_symlink() {
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(st.perm()), AtFlags::empty())?;
    }
    let ts = Timestamps {
        last_access: Timespec { tv_sec: st.atime.0, tv_nsec: st.atime.1 as _ },
        last_modification: Timespec { tv_sec: st.mtime.0, tv_nsec: st.mtime.1 as _ },
    };
    rustix::fs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> LayerStore {
        fs::create_dir_all(dir).unwrap();
        let db = Arc::new(Db::open(&dir.join("meta.redb")).unwrap());
        let content = ContentStore::open(dir.join("content")).unwrap();
        LayerStore::open(dir.join("layers"), Driver::Overlay, db, content).unwrap()
    }

    fn a_layer(s: &LayerStore, name: &str) -> LayerRecord {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        s.create_from_tar(None, &mut bytes.as_slice()).unwrap()
    }

    #[test]
    fn an_interrupted_removal_never_leaves_a_record_without_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (kept, orphan_record, orphan_files) = (a_layer(&s, "a"), a_layer(&s, "b"), a_layer(&s, "c"));
        // An older skiffd killed inside `remove`: the files moved away, the record left.
        fs::rename(dir.path().join("layers").join(orphan_record.chain_id.hex()), dir.path().join("layers/tmp-x"))
            .unwrap();
        // This one killed between its two steps: the record gone, the files left.
        s.db.delete(TABLE, orphan_files.chain_id.hex()).unwrap();
        drop(s);
        let s = store(dir.path());
        assert!(s.get(&kept.chain_id).unwrap().is_some() && s.dir(&kept.chain_id).is_dir());
        assert!(s.get(&orphan_record.chain_id).unwrap().is_none(), "a pull would reuse a layer that is not there");
        assert!(!dir.path().join("layers").join(orphan_files.chain_id.hex()).exists());
        assert!(!dir.path().join("layers/tmp-x").exists());
        // Removing now goes record first.
        s.remove(&kept.chain_id).unwrap();
        assert!(s.get(&kept.chain_id).unwrap().is_none() && !s.dir(&kept.chain_id).exists());
    }

    /// An overlay upper dir as a build step leaves it: a file, an opaque directory, a whiteout
    /// (root only: device nodes and trusted xattrs), and runtime mount points to leave out.
    fn make_upper(upper: &Path) -> bool {
        fs::create_dir_all(upper.join("app")).unwrap();
        fs::write(upper.join("app/main"), b"program").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), b"").unwrap();
        fs::write(upper.join(".dockerenv"), b"").unwrap();
        let root = rustix::process::geteuid().is_root();
        if root {
            fs::create_dir_all(upper.join("cache")).unwrap();
            fs::write(upper.join("cache/new"), b"n").unwrap();
            rustix::fs::setxattr(
                upper.join("cache").as_path(),
                layer::OVERLAY_OPAQUE_XATTR,
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                upper.join("gone").as_path(),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0),
                0,
            )
            .unwrap();
        }
        // Fixed times: two uppers made in different seconds are still the same change (a tar
        // carries mtimes; the test flaked when the second one crossed a second boundary).
        let at = rustix::fs::Timespec { tv_sec: 1_700_000_000, tv_nsec: 0 };
        let times = rustix::fs::Timestamps { last_access: at, last_modification: at };
        for p in ["app/main", "app", "etc/hosts", "etc", ".dockerenv", "cache/new", "cache", "gone", ""] {
            let path = upper.join(p);
            if fs::symlink_metadata(&path).is_ok() {
                rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
            }
        }
        root
    }

    #[test]
    fn an_upper_dir_becomes_the_layer_its_tar_would_make() {
        let dir = tempfile::tempdir().unwrap();
        let skip = ["etc/hosts", ".dockerenv"];
        let upper = dir.path().join("upper");
        let root = make_upper(&upper);
        let tar = layer::pack_overlay_diff(&upper, Vec::new(), &skip).unwrap();

        let s = store(&dir.path().join("a"));
        let rec = s.create_from_upper(None, &upper, &skip).unwrap();
        assert_eq!(rec.diff_id, Digest::of(&tar), "the blob is the diff's tar");
        assert_eq!(rec.blob.digest, rec.diff_id);
        assert!(s.content.contains(&rec.diff_id));
        assert!(!upper.exists(), "the directory was moved, not copied");
        let files = s.dir(&rec.chain_id);
        assert_eq!(fs::read(files.join("app/main")).unwrap(), b"program");
        assert!(files.join("etc").is_dir());
        assert!(!files.join("etc/hosts").exists() && !files.join(".dockerenv").exists());
        if root {
            use std::os::unix::fs::FileTypeExt;
            assert!(fs::symlink_metadata(files.join("gone")).unwrap().file_type().is_char_device());
        }

        // The same change unpacked from its tar elsewhere: the same layer.
        let t = store(&dir.path().join("b"));
        let rec2 = t.create_from_tar(None, &mut &tar[..]).unwrap();
        assert_eq!((rec2.diff_id, rec2.chain_id), (rec.diff_id.clone(), rec.chain_id.clone()));

        // A second identical change reuses the layer and leaves its directory alone.
        let again = dir.path().join("again");
        make_upper(&again);
        let rec3 = s.create_from_upper(None, &again, &skip).unwrap();
        assert_eq!(rec3.chain_id, rec.chain_id);
        assert!(again.join("app/main").exists());
    }

    #[test]
    fn a_copying_store_refuses_an_upper_dir() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("meta.redb")).unwrap());
        let content = ContentStore::open(dir.path().join("content")).unwrap();
        let s = LayerStore::open(dir.path().join("layers"), Driver::Copy, db, content).unwrap();
        fs::create_dir_all(dir.path().join("upper")).unwrap();
        assert!(s.create_from_upper(None, &dir.path().join("upper"), &[]).is_err());
        assert!(dir.path().join("upper").exists());
    }
}
