//! Manifests: resolve, get, put (with its checks and tags), delete.

use super::*;

impl Registry {
    pub(super) fn resolve(&self, name: &str, reference: &str) -> Result<Digest> {
        if reference.contains(':') {
            let d = parse_digest(reference)?;
            if self.storage.manifest_record(name, &d).is_none() {
                return Err(manifest_unknown(reference));
            }
            Ok(d)
        } else if valid_tag(reference) {
            self.storage.resolve_tag(name, reference).ok_or_else(|| manifest_unknown(reference))
        } else {
            // No manifest can have an invalid tag: unknown, as the conformance suite expects.
            Err(manifest_unknown(reference))
        }
    }

    pub(super) fn get_manifest(&self, name: &str, reference: &str, head: bool) -> Result<Response<Body>> {
        if !self.storage.repo_exists(name) {
            return Err(name_unknown(name));
        }
        let d = self.resolve(name, reference)?;
        let rec = self.storage.manifest_record(name, &d).ok_or_else(|| manifest_unknown(reference))?;
        let bytes = std::fs::read(self.storage.blob_path(&d)).map_err(io_err)?;
        let b = resp(StatusCode::OK)
            .header(header::CONTENT_TYPE, &rec.media_type)
            .header(header::CONTENT_LENGTH, bytes.len())
            .header("Docker-Content-Digest", d.to_string())
            .header(header::ETAG, format!("\"{d}\""));
        b.body(if head { empty() } else { full(bytes) }).done()
    }

    pub(super) async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Body>> {
        let ct = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string);
        let q = query(&req);
        let (by_digest, tag) = if reference.contains(':') {
            (Some(parse_digest(reference)?), None)
        } else if valid_tag(reference) {
            (None, Some(reference.to_string()))
        } else {
            return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
        };
        let mut extra_tags = Vec::new();
        for (k, v) in &q {
            if k == "tag" {
                if !valid_tag(v) {
                    return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {v:?}")));
                }
                extra_tags.push(v.clone());
            }
        }
        let bytes = read_limited(req.into_body(), MAX_MANIFEST).await?;
        let parsed = manifest::parse(&bytes, ct.as_deref())
            .map_err(|m| RegError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m))?;
        // By digest, the manifest is addressed in the algorithm the client chose; by tag, sha256.
        // Re-pushing a tag with the very bytes it points at keeps that digest's algorithm.
        let algo = match (&by_digest, &tag) {
            (Some(d), _) => d.algo(),
            (None, Some(t)) => match self.storage.resolve_tag(name, t) {
                Some(cur) if cur.algo() != Algo::Sha256 && Digest::of(cur.algo(), &bytes) == cur => cur.algo(),
                _ => Algo::Sha256,
            },
            (None, None) => Algo::Sha256,
        };
        let digest = Digest::of(algo, &bytes);
        if let Some(d) = &by_digest
            && d != &digest
        {
            return Err(digest_invalid(format!("manifest digest {digest} does not match {d}")));
        }
        for r in &parsed.refs {
            let present = if r.manifest {
                self.storage.manifest_record(name, &r.digest).is_some()
            } else {
                self.storage.repo_blob(name, &r.digest).is_some()
            };
            if !present {
                return Err(RegError::new(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("manifest references {} which this repository does not hold", r.digest),
                ));
            }
        }
        let rec = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size: bytes.len() as u64,
            artifact_type: parsed.artifact_type.clone(),
            subject: parsed.subject.clone(),
            annotations: parsed.annotations.clone(),
        };
        let tags_set = if by_digest.is_some() { extra_tags.clone() } else { Vec::new() };
        let st = self.storage.clone();
        let name2 = name.to_string();
        let d = tokio::task::spawn_blocking(move || -> io::Result<Digest> {
            let d = st.put_manifest(&name2, &bytes, algo, &rec, tag.as_deref())?;
            for t in &extra_tags {
                st.put_manifest(&name2, &bytes, algo, &rec, Some(t))?;
            }
            Ok(d)
        })
        .await
        .map_err(|e| io_err(io::Error::other(e)))?
        .map_err(io_err)?;
        let mut b = resp(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/manifests/{d}"))
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0);
        if let Some(s) = &parsed.subject {
            b = b.header("OCI-Subject", s.to_string());
        }
        for t in &tags_set {
            b = b.header("OCI-Tag", t);
        }
        b.body(empty()).done()
    }

    pub(super) fn delete_manifest(&self, name: &str, reference: &str) -> Result<Response<Body>> {
        if !self.settings.delete {
            return Err(unsupported("deletes are disabled on this registry"));
        }
        if !self.storage.repo_exists(name) {
            return Err(name_unknown(name));
        }
        let ok = if reference.contains(':') {
            let d = parse_digest(reference)?;
            self.storage.delete_manifest(name, &d).map_err(io_err)?
        } else if valid_tag(reference) {
            self.storage.delete_tag(name, reference).map_err(io_err)?
        } else {
            return Err(RegError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
        };
        if !ok {
            return Err(manifest_unknown(reference));
        }
        resp(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0).body(empty()).done()
    }

    // ---- blobs ----
}
