//! The executor against a fake worker: images are plain directories, a RUN "runs" by writing
//! what it was asked to run into its container's directory. Planning, the cache, --rm and
//! --force-rm, multi-stage copies, errors and cancellation without a kernel or a daemon.

use std::sync::Mutex;

use super::*;
use crate::worker::{Change, Mounted, RunSpec};

#[derive(Default)]
struct State {
    images: HashMap<String, (ImageInfo, PathBuf)>,
    names: HashMap<String, String>,
    cache: HashMap<String, String>,
    containers: HashMap<String, (RunSpec, PathBuf)>,
    created: Vec<String>,
    removed: Vec<String>,
    kept: Vec<String>,
    tags: Vec<(String, String)>,
    n: usize,
}

struct Fake {
    dir: tempfile::TempDir,
    st: Mutex<State>,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let ok = std::process::Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().unwrap();
    assert!(ok.success());
}

impl Fake {
    fn new() -> Arc<Fake> {
        let f = Arc::new(Fake { dir: tempfile::tempdir().unwrap(), st: Mutex::default() });
        let root = f.fresh("base");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/:/bin/sh\n").unwrap();
        let cfg = RunConfig { cmd: Some(vec!["sh".into()]), ..Default::default() };
        let img = f.add(None, cfg, root);
        f.st.lock().unwrap().names.insert("busybox".into(), img.id);
        f
    }
    fn fresh(&self, what: &str) -> PathBuf {
        let mut st = self.st.lock().unwrap();
        st.n += 1;
        let p = self.dir.path().join(format!("{what}-{}", st.n));
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn add(&self, parent: Option<&ImageInfo>, config: RunConfig, root: PathBuf) -> ImageInfo {
        let mut st = self.st.lock().unwrap();
        st.n += 1;
        let id = format!("sha256:{:064x}", st.n);
        let img = ImageInfo { id: id.clone(), parent: parent.map(|p| p.id.clone()), config };
        st.images.insert(id, (img.clone(), root));
        img
    }
    fn root_of(&self, id: &str) -> PathBuf {
        self.st.lock().unwrap().images[id].1.clone()
    }
    fn copy_of(&self, image: Option<&ImageInfo>) -> PathBuf {
        let p = self.fresh("root");
        if let Some(i) = image {
            copy_tree(&self.root_of(&i.id), &p);
        }
        p
    }
}

impl Worker for Fake {
    async fn base_image(&self, name: &str, _pull: bool, _out: &Out) -> Result<ImageInfo> {
        self.local_image(name)
    }
    fn local_image(&self, name: &str) -> Result<ImageInfo> {
        let st = self.st.lock().unwrap();
        let id = st.names.get(name).cloned().unwrap_or_else(|| name.to_string());
        st.images
            .get(&id)
            .map(|i| i.0.clone())
            .ok_or_else(|| BuildError::new(crate::ErrorKind::NotFound, format!("No such image: {name}")))
    }
    fn image(&self, id: &str) -> Option<ImageInfo> {
        self.st.lock().unwrap().images.get(id).map(|i| i.0.clone())
    }
    fn commit_config(&self, parent: Option<&ImageInfo>, config: &RunConfig, _by: String) -> Result<ImageInfo> {
        let root = self.copy_of(parent);
        Ok(self.add(parent, config.clone(), root))
    }
    fn with_rootfs(&self, image: Option<&ImageInfo>, f: Change<'_>) -> Result<()> {
        let root = self.copy_of(image);
        f(&root)
    }
    fn commit_change(
        &self,
        parent: Option<&ImageInfo>,
        config: &RunConfig,
        _by: String,
        f: Change<'_>,
    ) -> Result<ImageInfo> {
        let root = self.copy_of(parent);
        f(&root)?;
        Ok(self.add(parent, config.clone(), root))
    }
    fn mount_image(&self, image: &ImageInfo) -> Result<Mounted> {
        Ok(Mounted { key: image.id.clone(), root: self.root_of(&image.id) })
    }
    fn unmount_image(&self, _key: &str) {}
    async fn create_container(&self, spec: RunSpec) -> Result<String> {
        let root = self.copy_of(Some(&spec.image));
        let mut st = self.st.lock().unwrap();
        let id = format!("{:064x}", 1_000_000 + st.created.len());
        st.created.push(id.clone());
        st.containers.insert(id.clone(), (spec, root));
        Ok(id)
    }
    async fn run_container(&self, id: &str, out: &Out) -> Result<i64> {
        let (spec, root) = self.st.lock().unwrap().containers[id].clone();
        let script = spec.argv.join(" ");
        if script.contains("sleep") {
            std::future::pending::<()>().await;
        }
        out(BuildOut::Stream(format!("ran {script}\n")));
        std::fs::write(root.join("ran"), format!("{script}\n{}", spec.env.join("\n"))).unwrap();
        Ok(script.strip_prefix("/bin/sh -c exit ").and_then(|c| c.parse().ok()).unwrap_or(0))
    }
    fn commit_container(
        &self,
        id: &str,
        parent: &ImageInfo,
        config: &RunConfig,
        _by: String,
        _skip: &[String],
    ) -> Result<ImageInfo> {
        let root = self.st.lock().unwrap().containers[id].1.clone();
        Ok(self.add(Some(parent), config.clone(), root))
    }
    async fn remove_container(&self, id: &str) {
        self.st.lock().unwrap().removed.push(id.to_string());
    }
    fn keep_container(&self, id: &str) {
        self.st.lock().unwrap().kept.push(id.to_string());
    }
    fn cache_get(&self, key: &str) -> Option<String> {
        self.st.lock().unwrap().cache.get(key).cloned()
    }
    fn cache_put(&self, key: &str, image_id: &str) {
        self.st.lock().unwrap().cache.insert(key.to_string(), image_id.to_string());
    }
    fn tag(&self, reference: &Reference, image_id: &str) -> Result<()> {
        self.st.lock().unwrap().tags.push((reference.familiar(), image_id.to_string()));
        Ok(())
    }
    fn cache_mount_dir(&self) -> PathBuf {
        self.dir.path().join("cache-mounts")
    }
}

struct Run {
    result: Result<ImageInfo>,
    output: String,
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

fn request(ctx: &tempfile::TempDir) -> BuildRequest {
    BuildRequest {
        context: ctx.path().to_path_buf(),
        dockerfile: "Dockerfile".into(),
        remove: true,
        ..Default::default()
    }
}

async fn build(w: &Arc<Fake>, req: BuildRequest) -> Run {
    let text = Arc::new(Mutex::new(String::new()));
    let t2 = text.clone();
    let out: Out = Arc::new(move |o| {
        if let BuildOut::Stream(s) = o {
            t2.lock().unwrap().push_str(&s);
        }
    });
    let result = Builder::new(w.clone()).build(req, out).await;
    let output = text.lock().unwrap().clone();
    Run { result, output }
}

#[tokio::test]
async fn steps_run_copy_and_hit_the_cache_the_second_time() {
    let w = Fake::new();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nENV A=1\nRUN echo $A\nCOPY f /srv/\nUSER www\nCOPY --chown=www g /g\n"),
        ("f", "hello"),
        ("g", "owned"),
    ]);
    let r = build(&w, BuildRequest { tags: vec![Reference::parse_normalized("x:1").unwrap()], ..request(&ctx) }).await;
    let img = r.result.unwrap();
    assert_eq!(img.config.user.as_deref(), Some("www"));
    assert!(img.config.env.as_ref().unwrap().contains(&"A=1".to_string()));
    let root = w.root_of(&img.id);
    assert_eq!(std::fs::read_to_string(root.join("srv/f")).unwrap(), "hello");
    assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap().lines().next(), Some("/bin/sh -c echo $A"));
    assert!(r.output.contains("Step 6/6 : COPY --chown=www g /g"), "{}", r.output);
    assert!(r.output.contains("Successfully tagged x:1"));
    {
        let st = w.st.lock().unwrap();
        assert_eq!(st.created.len(), 1);
        assert_eq!(st.removed, st.created, "--rm removes the step's container");
        assert_eq!(st.tags, vec![("x:1".to_string(), img.id.clone())]);
    }
    // Same inputs: every step from the cache, the same image, nothing run.
    let again = build(&w, request(&ctx)).await;
    assert_eq!(again.result.unwrap().id, img.id);
    assert_eq!(again.output.matches("Using cache").count(), 5, "{}", again.output);
    assert_eq!(w.st.lock().unwrap().created.len(), 1);
    // A changed source: the steps before it still hit, the COPY and what follows do not.
    std::fs::write(ctx.path().join("f"), "changed").unwrap();
    let changed = build(&w, request(&ctx)).await;
    let img2 = changed.result.unwrap();
    assert_ne!(img2.id, img.id);
    assert_eq!(changed.output.matches("Using cache").count(), 2, "{}", changed.output);
    assert_eq!(std::fs::read_to_string(w.root_of(&img2.id).join("srv/f")).unwrap(), "changed");
    // --no-cache runs everything again.
    let nc = build(&w, BuildRequest { no_cache: true, ..request(&ctx) }).await;
    nc.result.unwrap();
    assert!(!nc.output.contains("Using cache"));
    assert_eq!(w.st.lock().unwrap().created.len(), 2);
}

#[tokio::test]
async fn a_failed_run_names_its_line_and_exit_code_and_keeps_its_container_unless_forced() {
    let w = Fake::new();
    let ctx = context(&[("Dockerfile", "FROM busybox\n\nRUN exit 3\n")]);
    let r = build(&w, request(&ctx)).await;
    let e = r.result.unwrap_err();
    assert_eq!(e.message, "Dockerfile:3: The command '/bin/sh -c exit 3' returned a non-zero code: 3");
    assert_eq!(e.code, Some(3));
    assert_eq!(e.kind, crate::ErrorKind::Invalid);
    {
        let st = w.st.lock().unwrap();
        assert!(st.removed.is_empty());
        assert_eq!(st.kept.len(), 1, "rm without forcerm keeps a failed step's container");
    }
    build(&w, BuildRequest { force_rm: true, ..request(&ctx) }).await.result.unwrap_err();
    assert_eq!(w.st.lock().unwrap().removed.len(), 1);
}

#[tokio::test]
async fn stages_build_up_to_the_target_and_copy_from_each_other() {
    let w = Fake::new();
    let df = "ARG V=1\nFROM busybox AS one\nARG V\nRUN echo $V > /x\nFROM scratch AS two\nCOPY --from=one /ran /out\n\
              FROM busybox AS three\nRUN never\n";
    let ctx = context(&[("Dockerfile", df)]);
    let r = build(
        &w,
        BuildRequest {
            target: Some("two".into()),
            build_args: [("V".into(), "7".into()), ("W".into(), "x".into())].into(),
            ..request(&ctx)
        },
    )
    .await;
    let img = r.result.unwrap();
    let ran = std::fs::read_to_string(w.root_of(&img.id).join("out")).unwrap();
    assert!(ran.lines().any(|l| l == "V=7"), "the ARG reached the RUN's environment: {ran}");
    assert!(!r.output.contains("never"));
    assert!(r.output.contains("[Warning] One or more build-args [W] were not consumed"), "{}", r.output);
    assert_eq!(w.st.lock().unwrap().created.len(), 1);
    let bad = context(&[("Dockerfile", "FROM busybox\nCOPY --from=nope /a /b\n")]);
    let e = build(&w, request(&bad)).await.result.unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::NotFound, "{}", e.message);
}

#[tokio::test]
async fn bad_requests_fail_before_anything_runs() {
    let w = Fake::new();
    for (df, want) in [
        ("", "cannot be empty"),
        ("# only a comment\n", "file with no instructions"),
        ("FROM busybox\nFROBNICATE x\n", "dockerfile parse error"),
        ("FROM busybox\nCOPY missing /x\n", "not found"),
        ("FROM busybox\nCOPY ../../etc/passwd /x\n", "not found"),
        ("FROM busybox\nRUN --mount=type=ssh true\n", "not supported"),
        ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", "Invalid signal"),
    ] {
        let ctx = context(&[("Dockerfile", df)]);
        let e = build(&w, request(&ctx)).await.result.unwrap_err();
        assert!(e.message.contains(want), "{df:?}: {}", e.message);
    }
    let ctx = context(&[("Dockerfile", "FROM busybox\n")]);
    let e = build(&w, BuildRequest { dockerfile: "../x".into(), ..request(&ctx) }).await.result.unwrap_err();
    assert!(e.message.contains("Cannot locate") || e.message.contains("inside the build context"), "{}", e.message);
    assert!(w.st.lock().unwrap().created.is_empty());
}

#[tokio::test]
async fn a_cancelled_build_removes_its_running_step() {
    let w = Fake::new();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN sleep 1000\n")]);
    let req = BuildRequest { remove: false, ..request(&ctx) };
    let cancel = req.cancel.clone();
    let h = tokio::spawn({
        let w = w.clone();
        async move { build(&w, req).await.result }
    });
    while w.st.lock().unwrap().created.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let e = h.await.unwrap().unwrap_err();
    assert!(e.message.contains("cancelled"), "{}", e.message);
    let st = w.st.lock().unwrap();
    assert_eq!(st.removed, st.created, "cancelled: removed even with rm=false");
}

#[tokio::test]
async fn cache_from_limits_the_cache_to_those_images_history() {
    let w = Fake::new();
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN one\n")]);
    build(&w, request(&ctx)).await.result.unwrap();
    let other = build(&w, BuildRequest { cache_from: vec!["busybox".into()], ..request(&ctx) }).await;
    assert!(!other.output.contains("Using cache"), "busybox's history has no RUN one");
    let second = other.result.unwrap();
    let hit = build(&w, BuildRequest { cache_from: vec![second.id.clone()], ..request(&ctx) }).await;
    assert!(hit.output.contains("Using cache"), "{}", hit.output);
    assert_eq!(hit.result.unwrap().id, second.id);
}
