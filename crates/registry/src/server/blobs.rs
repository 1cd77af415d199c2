//! Blobs and uploads: get (with ranges), start/patch/status/finish an upload, and the
//! streaming receive that hashes as it appends; nothing is visible under `blobs/` until its
//! digest matched.

use super::*;

impl Registry {
    pub(super) async fn get_blob(
        &self,
        name: &str,
        d: &Digest,
        req: &Request<Incoming>,
        head: bool,
    ) -> Result<Response<Body>> {
        let size = self.storage.repo_blob(name, d).ok_or_else(|| blob_unknown(d))?;
        let mut b = resp(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("Docker-Content-Digest", d.to_string())
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{d}\""));
        let range = match header_str(req.headers(), header::RANGE) {
            Some(r) => match parse_range(r, size) {
                Some(x) => Some(x),
                None => {
                    return Err(RegError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UNKNOWN",
                        format!("range {r:?} not satisfiable for {size} bytes"),
                    )
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}")));
                }
            },
            None => None,
        };
        let (start, len) = match range {
            Some((a, z)) => {
                b = b
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {a}-{z}/{size}"));
                (a, z - a + 1)
            }
            None => (0, size),
        };
        b = b.header(header::CONTENT_LENGTH, len);
        if head {
            return b.body(empty()).done();
        }
        let mut f = tokio::fs::File::open(self.storage.blob_path(d)).await.map_err(|_| blob_unknown(d))?;
        if start > 0 {
            f.seek(io::SeekFrom::Start(start)).await.map_err(io_err)?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
        let body = StreamBody::new(stream.map(|r| r.map(Frame::data)));
        b.body(BodyExt::boxed(body)).done()
    }

    pub(super) fn upload_state(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<Hasher>>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default().clone()
    }

    pub(super) fn forget_upload(&self, id: &str) {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    pub(super) fn upload_location(name: &str, id: &str) -> String {
        format!("/v2/{name}/blobs/uploads/{id}")
    }

    pub(super) fn accepted(name: &str, id: &str, size: u64) -> Response<Body> {
        resp(StatusCode::ACCEPTED)
            .header(header::LOCATION, Self::upload_location(name, id))
            .header(header::RANGE, format!("0-{}", size.saturating_sub(1)))
            .header("Docker-Upload-UUID", id)
            .header(header::CONTENT_LENGTH, 0)
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()))
    }

    pub(super) fn created(name: &str, d: &Digest) -> Response<Body> {
        resp(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
            .header("Docker-Content-Digest", d.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()))
    }

    pub(super) async fn start_upload(
        &self,
        name: &str,
        q: &[(String, String)],
        req: Request<Incoming>,
        access: &Access,
        from: Option<String>,
    ) -> Result<Response<Body>> {
        if let Some(mount) = q1(q, "mount") {
            let d = parse_digest(mount)?;
            // Mount from the named repository if the client may pull from it; a mount that
            // cannot be honoured falls back to an ordinary upload session, as the spec says.
            let from_ok = from
                .as_deref()
                .filter(|f| valid_name(f) && access.allows(&Scope::repo(f, "pull")))
                .is_some_and(|f| self.storage.repo_blob(f, &d).is_some());
            if from_ok {
                self.storage.link_blob(name, &d).map_err(io_err)?;
                return Ok(Self::created(name, &d));
            }
        }
        let id = self.storage.new_upload(name).map_err(io_err)?;
        if let Some(digest) = q1(q, "digest") {
            // Monolithic upload: the body is the whole blob.
            let d = parse_digest(digest)?;
            let (_, path) = self.storage.upload(&id).ok_or_else(upload_unknown)?;
            let r = self.receive(path, Hasher::new(d.algo()), req.into_body()).await;
            let h = match r {
                Ok(h) => h,
                Err(e) => {
                    self.storage.remove_upload(&id);
                    return Err(e);
                }
            };
            return self.commit(name, &id, &d, h).await;
        }
        Ok(Self::accepted(name, &id, 0))
    }

    pub(super) async fn patch_upload(&self, name: &str, id: &str, req: Request<Incoming>) -> Result<Response<Body>> {
        let (repo, path) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let hasher = self.current_hash(id, &mut guard)?;
        let have = hasher.len();
        if let Some(cr) = header_str(req.headers(), header::CONTENT_RANGE) {
            match parse_content_range(cr) {
                Some((a, _)) if a == have => {}
                _ => {
                    return Err(RegError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "BLOB_UPLOAD_INVALID",
                        format!("Content-Range {cr:?} does not continue the upload at {have}"),
                    )
                    .with_header(header::LOCATION, Self::upload_location(name, id))
                    .with_header(header::RANGE, format!("0-{}", have.saturating_sub(1))));
                }
            }
        }
        let h = self.receive(path, hasher, req.into_body()).await;
        match h {
            Ok(h) => {
                let size = h.len();
                *guard = Some(h);
                Ok(Self::accepted(name, id, size))
            }
            Err(e) => {
                // What was appended is unknown now: rehash on next use.
                *guard = None;
                Err(e)
            }
        }
    }

    pub(super) fn current_hash(&self, id: &str, slot: &mut Option<Hasher>) -> Result<Hasher> {
        if let Some(h) = slot {
            return Ok(h.clone());
        }
        let h = self.storage.rehash_upload(id, Algo::Sha256).map_err(|_| upload_unknown())?;
        *slot = Some(h.clone());
        Ok(h)
    }

    pub(super) async fn upload_status(&self, name: &str, id: &str) -> Result<Response<Body>> {
        let (repo, _) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let h = self.current_hash(id, &mut guard)?;
        let mut r = Self::accepted(name, id, h.len());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    }

    pub(super) async fn finish_upload(
        &self,
        name: &str,
        id: &str,
        q: &[(String, String)],
        req: Request<Incoming>,
    ) -> Result<Response<Body>> {
        let (repo, path) = self.storage.upload(id).ok_or_else(upload_unknown)?;
        if repo != name {
            return Err(upload_unknown());
        }
        let d = parse_digest(q1(q, "digest").ok_or_else(|| digest_invalid("PUT needs ?digest="))?)?;
        let state = self.upload_state(id);
        let mut guard = state.lock().await;
        let hasher = self.current_hash(id, &mut guard)?;
        if let Some(cr) = header_str(req.headers(), header::CONTENT_RANGE)
            && parse_content_range(cr).is_none_or(|(a, _)| a != hasher.len())
        {
            return Err(RegError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                format!("Content-Range {cr:?} does not continue the upload"),
            ));
        }
        let h = match self.receive(path, hasher, req.into_body()).await {
            Ok(h) => h,
            Err(e) => {
                *guard = None;
                return Err(e);
            }
        };
        let r = self.commit(name, id, &d, h).await;
        *guard = None;
        self.forget_upload(id);
        r
    }

    pub(super) async fn commit(&self, name: &str, id: &str, d: &Digest, h: Hasher) -> Result<Response<Body>> {
        // Sessions hash in sha256 as data arrives; a sha512 digest named only at the end is
        // checked by hashing the data once more.
        let actual = if h.algo() == d.algo() {
            h.finish()
        } else {
            let (st, id2, algo) = (self.storage.clone(), id.to_string(), d.algo());
            tokio::task::spawn_blocking(move || st.rehash_upload(&id2, algo))
                .await
                .map_err(|e| io_err(io::Error::other(e)))?
                .map_err(io_err)?
                .finish()
        };
        if &actual != d {
            self.storage.remove_upload(id);
            return Err(digest_invalid(format!("uploaded content has digest {actual}, not {d}")));
        }
        let st = self.storage.clone();
        let (id2, d2, name2) = (id.to_string(), d.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            st.commit_upload(&id2, &d2)?;
            st.link_blob(&name2, &d2)
        })
        .await
        .map_err(|e| io_err(io::Error::other(e)))?
        .map_err(io_err)?;
        Ok(Self::created(name, d))
    }

    /// Streams a request body onto an upload's data file, hashing on a blocking thread.
    pub(super) async fn receive(&self, path: PathBuf, hasher: Hasher, mut body: Incoming) -> Result<Hasher> {
        let max = self.settings.max_blob;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(32);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<Hasher> {
            let mut sink = BlobSink::open(&path, hasher)?;
            while let Some(b) = rx.blocking_recv() {
                sink.write(&b)?;
            }
            Ok(sink.hasher)
        });
        let mut total = 0u64;
        let mut err = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        total += data.len() as u64;
                        if total > max {
                            err = Some(RegError::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "SIZE_INVALID",
                                format!("blob larger than this registry's limit of {max} bytes"),
                            ));
                            break;
                        }
                        if tx.send(data).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    err = Some(RegError::new(
                        StatusCode::BAD_REQUEST,
                        "BLOB_UPLOAD_INVALID",
                        format!("reading the request body: {e}"),
                    ));
                    break;
                }
            }
        }
        drop(tx);
        let h = writer.await.map_err(|e| io_err(io::Error::other(e)))?.map_err(io_err)?;
        match err {
            Some(e) => Err(e),
            None => Ok(h),
        }
    }
}
