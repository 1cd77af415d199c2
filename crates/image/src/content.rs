//! The content store: blobs addressed by their sha256 digest.
//!
//! A blob becomes visible only after its digest has been verified and its bytes are on disk:
//! data goes to a private temp file under `ingest/`, is hashed while written, fsync'd, and then
//! renamed to `blobs/sha256/<hex>`. A crash leaves at most a temp file, removed at next open.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use skiff_common::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("blob larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("content store i/o at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContentError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
        move |source| ContentError::Io { path: path.to_path_buf(), source }
    }
}

/// A blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) a store, removing temp files a crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<ContentStore, ContentError> {
        let root = root.into();
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(ContentError::io(&blobs))?;
        let ingest = root.join("ingest");
        if ingest.exists() {
            fsutil::remove_all(&ingest).map_err(ContentError::io(&ingest))?;
        }
        fs::create_dir_all(&ingest).map_err(ContentError::io(&ingest))?;
        Ok(ContentStore { root })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    pub fn size(&self, d: &Digest) -> Result<u64, ContentError> {
        let p = self.path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(d.clone())),
            Err(e) => Err(ContentError::Io { path: p, source: e }),
        }
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        let p = self.path(d);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(d.clone())),
            Err(e) => Err(ContentError::Io { path: p, source: e }),
        }
    }

    /// Reads a whole (small) blob, refusing blobs over `limit` bytes.
    pub fn read(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, ContentError> {
        let mut f = self.open_blob(d)?;
        let mut buf = Vec::new();
        (&mut f).take(limit + 1).read_to_end(&mut buf).map_err(ContentError::io(&self.path(d)))?;
        if buf.len() as u64 > limit {
            return Err(ContentError::TooLarge(limit));
        }
        Ok(buf)
    }

    /// Stores bytes, returning their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, ContentError> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(ContentError::io(&w.tmp_path))?;
        w.commit(None)
    }

    /// Stores what a reader yields; if `expected` is given the blob is kept only if it matches.
    /// Zeros in the stream become holes in the file (a blob of zeros takes no disk).
    pub fn put_reader(&self, r: &mut dyn Read, expected: Option<&Digest>) -> Result<(Digest, u64), ContentError> {
        let mut w = self.writer()?;
        let mut tee = HashTee { inner: r, hasher: &mut w.hasher };
        let file = w.file.as_ref().expect("a new blob writer holds its file");
        let mut buf = vec![0u8; 256 << 10];
        skiff_common::tree::copy_sparse(&mut tee, file, &mut buf).map_err(ContentError::io(&w.tmp_path))?;
        let size = w.hasher.len();
        Ok((w.commit(expected)?, size))
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        let tmp_path = self.root.join("ingest").join(fsutil::random_name("blob"));
        let file = File::options().write(true).create_new(true).open(&tmp_path).map_err(ContentError::io(&tmp_path))?;
        Ok(BlobWriter { file: Some(file), tmp_path, hasher: Hasher::new(), store: self.clone() })
    }

    pub fn delete(&self, d: &Digest) -> Result<(), ContentError> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::Io { path: p, source: e }),
        }
    }

    /// Every blob digest in the store.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(ContentError::io(&dir))? {
            let e = e.map_err(ContentError::io(&dir))?;
            if let Some(d) = e.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Hashes what passes through a reader.
struct HashTee<'a> {
    inner: &'a mut dyn Read,
    hasher: &'a mut Hasher,
}

impl Read for HashTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A blob being written. Dropped without commit, it leaves nothing behind.
pub struct BlobWriter {
    file: Option<File>,
    tmp_path: PathBuf,
    hasher: Hasher,
    store: ContentStore,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Verifies the digest (if one is expected), syncs and publishes the blob.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest, ContentError> {
        let actual = std::mem::take(&mut self.hasher).finish();
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ContentError::DigestMismatch { expected: e.clone(), actual });
        }
        let file = self.file.take().expect("blob writer committed once");
        file.sync_all().map_err(ContentError::io(&self.tmp_path))?;
        drop(file);
        let dest = self.store.path(&actual);
        fs::rename(&self.tmp_path, &dest).map_err(ContentError::io(&dest))?;
        fsutil::sync_dir(dest.parent().expect("blob path has a parent")).map_err(ContentError::io(&dest))?;
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("blob writer open").write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let d = s.put(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert!(s.contains(&d));
        assert_eq!(s.read(&d, 100).unwrap(), b"hello");
        assert!(matches!(s.read(&d, 2), Err(ContentError::TooLarge(2))));
        assert_eq!(s.list().unwrap(), vec![d.clone()]);
        s.delete(&d).unwrap();
        assert!(!s.contains(&d));
    }

    #[test]
    fn wrong_digest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let wrong = Digest::of(b"other");
        let err = s.put_reader(&mut &b"hello"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        assert!(!s.contains(&wrong));
        assert!(!s.contains(&Digest::of(b"hello")));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn reopen_cleans_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        let mut w = s.writer().unwrap();
        w.write_all(b"partial").unwrap();
        std::mem::forget(w); // as if the process died mid-write
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 1);
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }
}
