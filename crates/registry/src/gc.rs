//! Garbage collection: removes blobs no manifest references.
//!
//! Mark: every manifest record of every repository, and what it references (config, layers,
//! child manifests of an index, its subject's manifest is *not* kept alive by the referrer).
//! Sweep: blobs not marked whose modification time is older than the grace period. Blobs are
//! touched whenever a repository links them (upload, mount, manifest push), so a blob pushed
//! moments ago whose manifest has not arrived yet is young and survives a collection running
//! beside a push. Repository links to removed blobs are removed too.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;

use crate::manifest;
use crate::storage::Storage;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub marked: usize,
    pub removed: Vec<Digest>,
    pub freed_bytes: u64,
    pub stale_uploads: usize,
}

/// Runs a collection; with `dry_run` only reports what would go.
pub fn collect(st: &Storage, grace: Duration, dry_run: bool) -> std::io::Result<GcReport> {
    let mut keep: HashSet<Digest> = HashSet::new();
    let repos = st.catalog();
    for repo in &repos {
        for m in st.manifests(repo) {
            keep.insert(m.clone());
            let Some(rec) = st.manifest_record(repo, &m) else { continue };
            let Ok(bytes) = std::fs::read(st.blob_path(&m)) else { continue };
            // A manifest we stored parsed once; if it no longer does, keep what we can't see.
            if let Ok(p) = manifest::parse(&bytes, Some(&rec.media_type)) {
                keep.extend(p.refs.into_iter().map(|r| r.digest));
            }
        }
    }
    let mut report = GcReport { marked: keep.len(), ..Default::default() };
    let now = SystemTime::now();
    for (d, mtime) in st.all_blobs() {
        if keep.contains(&d) || now.duration_since(mtime).unwrap_or_default() < grace {
            continue;
        }
        let size = std::fs::metadata(st.blob_path(&d)).map(|m| m.len()).unwrap_or(0);
        if !dry_run {
            for repo in &repos {
                st.unlink_blob(repo, &d)?;
            }
            match std::fs::remove_file(st.blob_path(&d)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        report.freed_bytes += size;
        report.removed.push(d);
    }
    let stale = st.stale_uploads(grace.max(Duration::from_secs(3600)));
    report.stale_uploads = stale.len();
    if !dry_run {
        for id in stale {
            st.remove_upload(&id);
        }
    }
    report.removed.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algo;
    use crate::storage::ManifestRecord;

    #[test]
    fn keeps_referenced_and_young() {
        let t = tempfile::tempdir().unwrap();
        let st = Storage::open(t.path()).unwrap();
        let cfg = st.put_small_blob(b"config", Algo::Sha256).unwrap();
        let layer = st.put_small_blob(b"layer", Algo::Sha256).unwrap();
        let orphan = st.put_small_blob(b"orphan", Algo::Sha256).unwrap();
        st.link_blob("app", &cfg).unwrap();
        st.link_blob("app", &layer).unwrap();
        st.link_blob("app", &orphan).unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"c","digest":"{cfg}","size":6}},"layers":[{{"mediaType":"l","digest":"{layer}","size":5}}]}}"#,
            manifest::OCI_MANIFEST
        );
        let rec = ManifestRecord {
            media_type: manifest::OCI_MANIFEST.into(),
            size: m.len() as u64,
            artifact_type: None,
            subject: None,
            annotations: None,
        };
        let md = st.put_manifest("app", m.as_bytes(), Algo::Sha256, &rec, Some("v1")).unwrap();
        // young: nothing goes
        let r = collect(&st, Duration::from_secs(3600), false).unwrap();
        assert!(r.removed.is_empty());
        let r = collect(&st, Duration::ZERO, true).unwrap();
        assert_eq!(r.removed, vec![orphan.clone()]);
        assert!(st.blob_path(&orphan).exists());
        let r = collect(&st, Duration::ZERO, false).unwrap();
        assert_eq!(r.removed, vec![orphan.clone()]);
        assert!(!st.blob_path(&orphan).exists());
        assert!(st.repo_blob("app", &orphan).is_none());
        for d in [&cfg, &layer, &md] {
            assert!(st.blob_path(d).exists());
        }
        // deleting the manifest frees everything
        st.delete_manifest("app", &md).unwrap();
        let r = collect(&st, Duration::ZERO, false).unwrap();
        assert_eq!(r.removed.len(), 3);
    }
}
