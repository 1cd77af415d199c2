//! The registry's filesystem storage.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                       content, shared by every repository
//! <root>/uploads/<id>/{data,repo}                 upload sessions in progress
//! <root>/repos/<name>/_r/blobs/<hex>              "this repository holds that blob" (empty file)
//! <root>/repos/<name>/_r/manifests/<hex>          manifest record (media type, artifact type, subject)
//! <root>/repos/<name>/_r/tags/<tag>               the digest a tag points at
//! <root>/repos/<name>/_r/referrers/<subject>/<hex> descriptor of a manifest whose subject is <subject>
//! ```
//!
//! A blob becomes visible only by a rename after its digest was verified and its data fsync'd, so a
//! killed registry never shows a partial blob; two clients finishing the same blob at once both
//! rename identical bytes onto the same name. Records are written with temp + fsync + rename.
//! Repository names are validated before they reach a path (see `names`): no component can be
//! `..` or start with `_`, so `_r` can never be confused with a repository component.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{Algo, Digest, Hasher};
use serde::{Deserialize, Serialize};
use skiff_common::fsutil;

/// What we remember about a stored manifest beside its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRecord {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An OCI descriptor as the referrers API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Storage {
    /// Opens (creating) a storage root. Upload sessions survive a restart (their data is rehashed
    /// when resumed); temp files of interrupted record writes are removed.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Storage> {
        let root = root.into();
        for d in ["blobs/sha256", "blobs/sha512", "uploads", "repos"] {
            fs::create_dir_all(root.join(d))?;
        }
        // Interrupted blob renames leave nothing (rename is atomic); stray temp files may exist.
        if let Ok(rd) = fs::read_dir(root.join("blobs/sha256")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Storage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algo().name()).join(d.hex())
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repos").join(name).join("_r")
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo(name).is_dir()
    }

    /// The size of a blob the repository holds, or None.
    pub fn repo_blob(&self, name: &str, d: &Digest) -> Option<u64> {
        if !self.repo(name).join("blobs").join(d.hex()).exists() {
            return None;
        }
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Records that the repository holds a blob (which must exist). Touches the blob so that a
    /// concurrent garbage collection sees it as young.
    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        let dir = self.repo(name).join("blobs");
        fs::create_dir_all(&dir)?;
        let link = dir.join(d.hex());
        if !link.exists() {
            fsutil::atomic_write(&link, b"")?;
        }
        touch(&self.blob_path(d));
        Ok(())
    }

    /// Removes a repository's link to a blob; the data stays until garbage collection.
    pub fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.repo(name).join("blobs").join(d.hex())) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- uploads ----

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Starts an upload session for a repository and returns its id.
    pub fn new_upload(&self, name: &str) -> io::Result<String> {
        let id = random_id();
        let dir = self.upload_dir(&id);
        fs::create_dir(&dir)?;
        File::create(dir.join("data"))?;
        fs::write(dir.join("repo"), name)?;
        Ok(id)
    }

    /// The repository an upload belongs to and its data file, if the session exists.
    pub fn upload(&self, id: &str) -> Option<(String, PathBuf)> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let dir = self.upload_dir(id);
        let repo = fs::read_to_string(dir.join("repo")).ok()?;
        Some((repo, dir.join("data")))
    }

    /// Rehashes an upload's data (to resume a session the registry no longer holds in memory,
    /// or to check it against a digest of another algorithm).
    pub fn rehash_upload(&self, id: &str, algo: Algo) -> io::Result<Hasher> {
        let mut f = File::open(self.upload_dir(id).join("data"))?;
        let mut h = Hasher::new(algo);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                return Ok(h);
            }
            h.update(&buf[..n]);
        }
    }

    /// Makes a finished upload's data the blob `d` (already verified by the caller), then ends the
    /// session. If the blob exists already the upload's copy is dropped.
    pub fn commit_upload(&self, id: &str, d: &Digest) -> io::Result<()> {
        let dir = self.upload_dir(id);
        let data = dir.join("data");
        let dst = self.blob_path(d);
        if dst.exists() {
            touch(&dst);
        } else {
            File::open(&data)?.sync_all()?;
            fs::rename(&data, &dst)?;
            fsutil::sync_dir(dst.parent().unwrap_or(Path::new("/")))?;
        }
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }

    pub fn remove_upload(&self, id: &str) {
        let _ = fs::remove_dir_all(self.upload_dir(id));
    }

    /// Upload sessions untouched for longer than `age` (abandoned by their clients).
    pub fn stale_uploads(&self, age: std::time::Duration) -> Vec<String> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(self.root.join("uploads")) {
            for e in rd.flatten() {
                let m = e.path().join("data").metadata().or_else(|_| e.metadata());
                let old = m.and_then(|m| m.modified()).map(|t| now.duration_since(t).unwrap_or_default() > age);
                if old.unwrap_or(true) {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    /// Stores a small blob (a manifest) directly.
    pub fn put_small_blob(&self, bytes: &[u8], algo: Algo) -> io::Result<Digest> {
        let d = Digest::of(algo, bytes);
        let dst = self.blob_path(&d);
        if dst.exists() {
            touch(&dst);
        } else {
            fsutil::atomic_write(&dst, bytes)?;
        }
        Ok(d)
    }

    // ---- manifests and tags ----

    pub fn put_manifest(
        &self,
        name: &str,
        bytes: &[u8],
        algo: Algo,
        rec: &ManifestRecord,
        tag: Option<&str>,
    ) -> io::Result<Digest> {
        let d = self.put_small_blob(bytes, algo)?;
        let repo = self.repo(name);
        for sub in ["manifests", "tags", "blobs"] {
            fs::create_dir_all(repo.join(sub))?;
        }
        self.link_blob(name, &d)?;
        if let Some(subject) = &rec.subject {
            let dir = repo.join("referrers").join(subject.hex());
            fs::create_dir_all(&dir)?;
            let desc = Descriptor {
                media_type: rec.media_type.clone(),
                digest: d.clone(),
                size: rec.size,
                artifact_type: rec.artifact_type.clone(),
                annotations: rec.annotations.clone(),
            };
            fsutil::atomic_write(&dir.join(d.hex()), &serde_json::to_vec(&desc).map_err(io::Error::other)?)?;
        }
        fsutil::atomic_write(
            &repo.join("manifests").join(d.hex()),
            &serde_json::to_vec(rec).map_err(io::Error::other)?,
        )?;
        if let Some(tag) = tag {
            fsutil::atomic_write(&repo.join("tags").join(tag), d.to_string().as_bytes())?;
        }
        Ok(d)
    }

    pub fn manifest_record(&self, name: &str, d: &Digest) -> Option<ManifestRecord> {
        let b = fs::read(self.repo(name).join("manifests").join(d.hex())).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn resolve_tag(&self, name: &str, tag: &str) -> Option<Digest> {
        fs::read_to_string(self.repo(name).join("tags").join(tag)).ok()?.trim().parse().ok()
    }

    /// Deletes a manifest from a repository: its record, every tag pointing at it and its
    /// referrer entry. Returns false if the repository did not hold it.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let repo = self.repo(name);
        let Some(rec) = self.manifest_record(name, d) else { return Ok(false) };
        for (tag, td) in self.tag_list(name) {
            if &td == d {
                let _ = fs::remove_file(repo.join("tags").join(tag));
            }
        }
        if let Some(s) = &rec.subject {
            let dir = repo.join("referrers").join(s.hex());
            let _ = fs::remove_file(dir.join(d.hex()));
            let _ = fs::remove_dir(&dir);
        }
        fs::remove_file(repo.join("manifests").join(d.hex()))?;
        let _ = self.unlink_blob(name, d);
        Ok(true)
    }

    pub fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        match fs::remove_file(self.repo(name).join("tags").join(tag)) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn tag_list(&self, name: &str) -> Vec<(String, Digest)> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(self.repo(name).join("tags")) {
            for e in rd.flatten() {
                let tag = e.file_name().to_string_lossy().into_owned();
                if tag.starts_with(".tmp") {
                    continue;
                }
                if let Some(d) = fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse().ok()) {
                    out.push((tag, d));
                }
            }
        }
        out
    }

    /// A repository's tags, sorted; None if the repository does not exist.
    pub fn tags(&self, name: &str) -> Option<Vec<String>> {
        if !self.repo_exists(name) {
            return None;
        }
        let mut t: Vec<String> = self.tag_list(name).into_iter().map(|(t, _)| t).collect();
        t.sort();
        Some(t)
    }

    /// Digests of every manifest a repository holds.
    pub fn manifests(&self, name: &str) -> Vec<Digest> {
        hex_entries(&self.repo(name).join("manifests"))
    }

    /// Digests of every blob a repository links.
    pub fn blob_links(&self, name: &str) -> Vec<Digest> {
        hex_entries(&self.repo(name).join("blobs"))
    }

    /// Descriptors of the manifests whose subject is `d`, sorted by digest.
    pub fn referrers(&self, name: &str, d: &Digest) -> Vec<Descriptor> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(self.repo(name).join("referrers").join(d.hex())) {
            for e in rd.flatten() {
                if let Some(desc) = fs::read(e.path()).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
                    out.push(desc);
                }
            }
        }
        out.sort_by(|a: &Descriptor, b| a.digest.cmp(&b.digest));
        out
    }

    /// Every repository name, sorted.
    pub fn catalog(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if n == "_r" {
                    if !prefix.is_empty() {
                        out.push(prefix.to_string());
                    }
                    continue;
                }
                let p = if prefix.is_empty() { n } else { format!("{prefix}/{n}") };
                walk(&e.path(), &p, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root.join("repos"), "", &mut out);
        out.sort();
        out
    }

    /// Every blob in the store with its modification time.
    pub fn all_blobs(&self) -> Vec<(Digest, SystemTime)> {
        let mut out = Vec::new();
        for algo in ["sha256", "sha512"] {
            let Ok(rd) = fs::read_dir(self.root.join("blobs").join(algo)) else { continue };
            for e in rd.flatten() {
                let Ok(d) = Digest::from_hex(&e.file_name().to_string_lossy()) else { continue };
                if d.algo().name() != algo {
                    continue;
                }
                let t = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::now());
                out.push((d, t));
            }
        }
        out
    }
}

fn hex_entries(dir: &Path) -> Vec<Digest> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(d) = Digest::from_hex(&e.file_name().to_string_lossy()) {
                out.push(d);
            }
        }
    }
    out
}

fn touch(p: &Path) {
    if let Ok(f) = File::options().append(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A blob being written: appends to an upload's data file and hashes as it goes.
pub struct BlobSink {
    file: File,
    pub hasher: Hasher,
}

impl BlobSink {
    pub fn open(path: &Path, hasher: Hasher) -> io::Result<BlobSink> {
        let file = File::options().append(true).open(path)?;
        Ok(BlobSink { file, hasher })
    }
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        Ok(())
    }
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_commit_and_links() {
        let t = tempfile::tempdir().unwrap();
        let s = Storage::open(t.path()).unwrap();
        let id = s.new_upload("a/b").unwrap();
        let (repo, path) = s.upload(&id).unwrap();
        assert_eq!(repo, "a/b");
        let mut sink = BlobSink::open(&path, Hasher::new(Algo::Sha256)).unwrap();
        sink.write(b"hello").unwrap();
        let d = sink.hasher.clone().finish();
        assert_eq!(s.rehash_upload(&id, Algo::Sha256).unwrap().finish(), d);
        s.commit_upload(&id, &d).unwrap();
        assert!(s.upload(&id).is_none());
        assert_eq!(s.repo_blob("a/b", &d), None);
        s.link_blob("a/b", &d).unwrap();
        assert_eq!(s.repo_blob("a/b", &d), Some(5));
        assert!(s.unlink_blob("a/b", &d).unwrap());
        assert_eq!(s.repo_blob("a/b", &d), None);
        assert!(s.blob_path(&d).exists());
        // hostile upload ids never reach a path
        for bad in ["", "../x", "a/b", "..", "x\0"] {
            assert!(s.upload(bad).is_none());
        }
    }

    #[test]
    fn manifests_tags_referrers_catalog() {
        let t = tempfile::tempdir().unwrap();
        let s = Storage::open(t.path()).unwrap();
        let subject = Digest::of(Algo::Sha256, b"subject");
        let rec = |subject: Option<Digest>| ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 2,
            artifact_type: Some("x/y".into()),
            subject,
            annotations: None,
        };
        let d1 = s.put_manifest("r/one", b"{}", Algo::Sha256, &rec(None), Some("v1")).unwrap();
        s.put_manifest("r/one", b"{}", Algo::Sha256, &rec(None), Some("v2")).unwrap();
        let d2 = s.put_manifest("r/one", b"{ }", Algo::Sha256, &rec(Some(subject.clone())), None).unwrap();
        s.put_manifest("two", b"{}", Algo::Sha256, &rec(None), None).unwrap();
        assert_eq!(s.catalog(), vec!["r/one", "two"]);
        assert_eq!(s.tags("r/one").unwrap(), vec!["v1", "v2"]);
        assert_eq!(s.resolve_tag("r/one", "v1"), Some(d1.clone()));
        let refs = s.referrers("r/one", &subject);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].digest, d2);
        assert!(s.delete_tag("r/one", "v2").unwrap());
        assert!(s.delete_manifest("r/one", &d1).unwrap());
        assert_eq!(s.tags("r/one").unwrap(), Vec::<String>::new());
        assert!(s.delete_manifest("r/one", &d2).unwrap());
        assert!(s.referrers("r/one", &subject).is_empty());
        assert!(!s.delete_manifest("r/one", &d2).unwrap());
        assert!(s.tags("nope").is_none());
    }
}
