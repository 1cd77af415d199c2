//! Ship: skiff's registry and the pull/push client, driven with the docker CLI, skopeo and curl.
//!
//! Every registry here listens on 127.0.0.1 on a free port; a hostile registry is a small
//! in-test HTTP server that lies about digests, truncates blobs, sends oversized manifests or
//! redirects forever.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use skiff_e2e::{Daemon, Out, bin_dir, require_root, unique_dir};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &str, args: &[&str]) -> Out {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn curl(args: &[&str]) -> Out {
    let mut a = vec!["-s", "-S", "-m", "10"];
    a.extend_from_slice(args);
    run("curl", &a)
}

fn wait_port(port: u16) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

/// A standalone `skiff registry serve`.
struct Registry {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Registry {
    fn start(extra: &[&str]) -> Registry {
        let dir = unique_dir();
        let port = free_port();
        let mut r = Registry { child: None, port, dir, args: extra.iter().map(|s| s.to_string()).collect() };
        r.spawn();
        r
    }
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let child = Command::new(bin_dir().join("skiff"))
            .args(["registry", "serve", "--addr", &format!("127.0.0.1:{}", self.port), "--root"])
            .arg(self.dir.join("root"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_port(self.port);
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    /// The generated login's password (a registry started without `--htpasswd`).
    fn password(&self) -> String {
        login_password(&self.dir.join("root"))
    }
    /// `docker login` to this registry with its generated login.
    fn login(&self, d: &Daemon) {
        login(d, &self.addr(), &self.password());
    }
}

fn login_password(root: &Path) -> String {
    std::fs::read_to_string(root.join("auth/password")).expect("the registry's generated password").trim().to_string()
}

fn login(d: &Daemon, server: &str, password: &str) {
    let mut args = vec!["login", "-u", "skiff", "--password-stdin"];
    if !server.is_empty() {
        args.push(server);
    }
    let out = d.docker_stdin(&args, password.as_bytes()).ok();
    assert!(out.contains("Login Succeeded"), "{out}");
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy() == name {
            out.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(files_named(&p, name));
        }
    }
    out
}

#[test]
fn push_pull_run_through_the_daemons_own_registry() {
    require_root!();
    let port = free_port();
    let d = Daemon::start_with(&["--registry-addr", &format!("127.0.0.1:{port}")]);
    wait_port(port);
    let name = format!("127.0.0.1:{port}/team/bb:v1");
    d.docker(&["tag", "busybox", &name]).ok();
    // Writes need the registry's login (generated at first start, readable by root only).
    let anon = d.docker(&["push", &name]);
    assert_ne!(anon.code, 0, "an anonymous push was accepted: {}", anon.stdout);
    assert!(anon.stderr.contains("unauthorized") || anon.stderr.contains("authentication required"), "{}", anon.stderr);
    let pass = login_password(&d.data_root().join("registry"));
    login(&d, &format!("127.0.0.1:{port}"), &pass);
    let out = d.docker(&["push", &name]).ok();
    assert!(out.contains("Pushed"), "{out}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    let digest = out.split("digest: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    // Pushing again: every blob is already there.
    let again = d.docker(&["push", &name]).ok();
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(again.contains(&digest), "same digest on re-push: {again}");
    // Compressed while uploaded, nothing kept: an empty registry gets the layer compressed
    // again, to the same bytes (the same manifest digest).
    let reg2 = Registry::start(&[]);
    reg2.login(&d);
    let name2 = format!("{}/team/bb:v1", reg2.addr());
    d.docker(&["tag", &name, &name2]).ok();
    let out2 = d.docker(&["push", &name2]).ok();
    assert!(out2.contains("Pushed") && out2.contains(&digest), "{out2}");
    d.docker(&["rmi", &name2]).ok();
    // The registry lists it.
    let cat = curl(&["-u", &format!("skiff:{pass}"), &format!("http://127.0.0.1:{port}/v2/_catalog")]).ok();
    assert!(cat.contains("team/bb"), "{cat}");
    let tags = curl(&[&format!("http://127.0.0.1:{port}/v2/team/bb/tags/list")]).ok();
    assert!(tags.contains("\"v1\""), "{tags}");
    // Remove every local trace, pull it back (anyone may pull), run it.
    d.docker(&["logout", &format!("127.0.0.1:{port}")]).ok();
    d.docker(&["rmi", &name, "busybox"]).ok();
    let pulled = d.docker(&["pull", &name]).ok();
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert!(pulled.contains("Status: Downloaded newer image"), "{pulled}");
    // Nothing of it was left locally: the layer really came over the wire.
    assert!(pulled.contains("Pull complete") && !pulled.contains("Already exists"), "{pulled}");
    assert!(d.log().contains("downloaded"), "the daemon logged the download");
    assert_eq!(d.docker(&["run", "--rm", &name, "echo", "shipped"]).ok(), "shipped");
    let rd = d.docker(&["inspect", "-f", "{{json .RepoDigests}}", &name]).ok();
    assert!(rd.contains(&format!("127.0.0.1:{port}/team/bb@{digest}")), "{rd}");
    // Up to date the second time; by digest works too.
    let up = d.docker(&["pull", &name]).ok();
    assert!(up.contains("Image is up to date"), "{up}");
    d.docker(&["pull", &format!("127.0.0.1:{port}/team/bb@{digest}")]).ok();
    // A missing tag is a clear 404-style error.
    let miss = d.docker(&["pull", &format!("127.0.0.1:{port}/team/bb:nope")]);
    assert_ne!(miss.code, 0);
    assert!(miss.stderr.contains("not found") || miss.stderr.contains("MANIFEST_UNKNOWN"), "{}", miss.stderr);
    // The skiff CLI too (with the same login).
    login(&d, &format!("127.0.0.1:{port}"), &pass);
    let s = d.skiff(&["push", &name]).ok();
    assert!(s.contains("digest"), "{s}");
    // Another repository on the same registry: the layer is mounted, not uploaded again.
    let other = format!("127.0.0.1:{port}/team/copy:v1");
    d.docker(&["tag", &name, &other]).ok();
    let m = d.docker(&["push", &other]).ok();
    assert!(m.contains("Mounted from team/bb"), "{m}");
}

#[test]
fn docker_io_names_remapped_to_a_local_registry() {
    require_root!();
    let reg = Registry::start(&[]);
    let dir = unique_dir();
    let conf = dir.join("registries.toml");
    std::fs::write(&conf, format!("[[registry]]\nprefix = \"docker.io\"\nlocation = \"{}\"\n", reg.addr())).unwrap();
    let d = Daemon::start_with(&["--registries-config", conf.to_str().unwrap()]);
    // Logging in to docker.io logs in where docker.io now lives.
    login(&d, "", &reg.password());
    // As the seed writes it: no registry in the name.
    d.docker(&["tag", "busybox", "strongjz/example-httpd"]).ok();
    let out = d.docker(&["push", "strongjz/example-httpd"]).ok();
    assert!(out.contains("docker.io/strongjz/example-httpd"), "{out}");
    let cat = curl(&["-u", &format!("skiff:{}", reg.password()), &reg.url("/v2/_catalog")]).ok();
    assert!(cat.contains("strongjz/example-httpd"), "{cat}");
    d.docker(&["rmi", "strongjz/example-httpd", "busybox"]).ok();
    let miss = d.docker(&["pull", "busybox"]);
    assert_ne!(miss.code, 0, "library/busybox was never pushed there");
    assert!(miss.stderr.contains("not found"), "{}", miss.stderr);
    let p = d.docker(&["pull", "strongjz/example-httpd"]).ok();
    assert!(p.contains("Downloaded newer image for strongjz/example-httpd:latest"), "{p}");
    assert_eq!(d.docker(&["run", "--rm", "strongjz/example-httpd", "echo", "ok"]).ok(), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn skopeo_copies_both_ways() {
    require_root!();
    if run("sh", &["-c", "command -v skopeo"]).code != 0 {
        eprintln!("skipping: skopeo not installed");
        return;
    }
    let reg = Registry::start(&[]);
    let creds = format!("skiff:{}", reg.password());
    let d = Daemon::start();
    let dir = unique_dir();
    let archive = dir.join("bb.tar");
    d.docker(&["save", "-o", archive.to_str().unwrap(), "busybox"]).ok();
    // skopeo → skiff registry
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{}/sk/bb:1", reg.addr()),
        ],
    )
    .ok();
    // skiff registry → skopeo (OCI layout), and inspect
    let oci = dir.join("oci");
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/sk/bb:1", reg.addr()),
            &format!("oci:{}:x", oci.display()),
        ],
    )
    .ok();
    assert!(oci.join("index.json").exists());
    let insp = run("skopeo", &["inspect", "--tls-verify=false", &format!("docker://{}/sk/bb:1", reg.addr())]).ok();
    assert!(insp.contains("\"Layers\""), "{insp}");
    // registry → registry (cross-repository), then the daemon pulls what skopeo pushed
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("docker://{}/sk/bb:1", reg.addr()),
            &format!("docker://{}/other/bb:2", reg.addr()),
        ],
    )
    .ok();
    let name = format!("{}/other/bb:2", reg.addr());
    d.docker(&["pull", &name]).ok();
    assert_eq!(d.docker(&["run", "--rm", &name, "echo", "via-skopeo"]).ok(), "via-skopeo");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An htpasswd file in `dir` with one user, written by `skiff registry htpasswd` (password on stdin).
fn htpasswd(dir: &Path, user: &str, password: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let htp = dir.join("htpasswd");
    let mut c = Command::new(bin_dir().join("skiff"))
        .args(["registry", "htpasswd", htp.to_str().unwrap(), user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(password).unwrap();
    assert!(c.wait().unwrap().success());
    htp
}

#[test]
fn token_auth_login_push_pull() {
    require_root!();
    let dir = unique_dir();
    let htp = htpasswd(&dir, "alice", b"s3cret\n");
    let reg = Registry::start(&["--htpasswd", htp.to_str().unwrap(), "--token-auth"]);
    let d = Daemon::start();
    let name = format!("{}/alice/bb:1", reg.addr());
    d.docker(&["tag", "busybox", &name]).ok();
    // Anonymous: refused.
    let anon = d.docker(&["push", &name]);
    assert_ne!(anon.code, 0, "{}", anon.stdout);
    assert!(anon.stderr.to_lowercase().contains("unauthorized"), "{}", anon.stderr);
    let base = curl(&["-o", "/dev/null", "-w", "%{http_code}", &reg.url("/v2/")]).ok();
    assert_eq!(base, "401");
    // Wrong password: refused, nothing stored.
    let bad = d.docker_stdin(&["login", "-u", "alice", "--password-stdin", &reg.addr()], b"wrong\n");
    assert_ne!(bad.code, 0);
    let good = d.docker_stdin(&["login", "-u", "alice", "--password-stdin", &reg.addr()], b"s3cret\n").ok();
    assert!(good.contains("Login Succeeded"), "{good}");
    d.docker(&["push", &name]).ok();
    d.docker(&["rmi", &name]).ok();
    d.docker(&["pull", &name]).ok();
    // A token is scoped: curl with a pull token for alice/bb cannot push elsewhere.
    let tok =
        curl(&["-u", "alice:s3cret", &reg.url("/token?service=skiff-registry&scope=repository:alice/bb:pull")]).ok();
    let v: serde_json::Value = serde_json::from_str(&tok).unwrap();
    let t = v["token"].as_str().unwrap();
    let ok = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {t}"),
        &reg.url("/v2/alice/bb/tags/list"),
    ])
    .ok();
    assert_eq!(ok, "200");
    let denied = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {t}"),
        &reg.url("/v2/alice/bb/blobs/uploads/"),
    ])
    .ok();
    assert_eq!(denied, "401");
    // skiff logout removes the stored credentials.
    d.skiff(&["logout", &reg.addr()]).ok();
    let cfg = std::fs::read_to_string(d.dir.join("docker-config/config.json")).unwrap();
    assert!(!cfg.contains(&reg.addr()), "{cfg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn basic_auth_with_skopeo_creds() {
    require_root!();
    if run("sh", &["-c", "command -v skopeo"]).code != 0 {
        return;
    }
    let dir = unique_dir();
    let htp = htpasswd(&dir, "bob", b"pw");
    let reg = Registry::start(&["--htpasswd", htp.to_str().unwrap()]);
    let d = Daemon::start();
    let archive = dir.join("bb.tar");
    d.docker(&["save", "-o", archive.to_str().unwrap(), "busybox"]).ok();
    let dst = format!("docker://{}/bob/bb:1", reg.addr());
    let src = format!("docker-archive:{}", archive.display());
    let denied = run("skopeo", &["copy", "--dest-tls-verify=false", &src, &dst]);
    assert_ne!(denied.code, 0);
    run("skopeo", &["copy", "--dest-tls-verify=false", "--dest-creds", "bob:pw", &src, &dst]).ok();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_registry_restarts_clean_and_gc_frees_blobs() {
    require_root!();
    let mut reg = Registry::start(&["--anonymous-push"]);
    // A chunked upload half done when the registry dies.
    let hdrs = curl(&["-D", "-", "-o", "/dev/null", "-X", "POST", &reg.url("/v2/r/blobs/uploads/")]).ok();
    let loc = hdrs
        .lines()
        .find(|l| l.to_lowercase().starts_with("location:"))
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .to_string();
    let data = b"0123456789abcdefghij";
    curl(&["-X", "PATCH", "-H", "Content-Range: 0-9", "--data-binary", "0123456789", &reg.url(&loc)]).ok();
    reg.kill();
    reg.spawn();
    let digest = sha(data);
    let head = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-I", &reg.url(&format!("/v2/r/blobs/{digest}"))]).ok();
    assert_eq!(head, "404", "no partial blob is visible");
    // The session resumes where it stopped.
    let st = curl(&["-D", "-", "-o", "/dev/null", &reg.url(&loc)]).ok();
    assert!(st.contains("204") && st.to_lowercase().contains("range: 0-9"), "{st}");
    let put = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "-H",
        "Content-Range: 10-19",
        "--data-binary",
        "abcdefghij",
        &reg.url(&format!("{loc}?digest={digest}")),
    ])
    .ok();
    assert_eq!(put, "201");
    let body = curl(&[&reg.url(&format!("/v2/r/blobs/{digest}"))]).ok();
    assert_eq!(body.as_bytes(), data);
    // Unreferenced: gc removes it (grace 0); a dry run only reports.
    let root = reg.dir.join("root");
    let dry = run(
        bin_dir().join("skiff").to_str().unwrap(),
        &["registry", "gc", "--root", root.to_str().unwrap(), "--grace", "0", "-n"],
    )
    .ok();
    assert!(dry.contains(&format!("would remove {digest}")), "{dry}");
    let gc = run(
        bin_dir().join("skiff").to_str().unwrap(),
        &["registry", "gc", "--root", root.to_str().unwrap(), "--grace", "0"],
    )
    .ok();
    assert!(gc.contains(&format!("removed {digest}")), "{gc}");
    let head = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-I", &reg.url(&format!("/v2/r/blobs/{digest}"))]).ok();
    assert_eq!(head, "404");
    // Hostile names never reach the filesystem.
    for bad in ["/v2/../../etc/tags/list", "/v2/a/..%2f..%2fx/tags/list", "/v2/_r/tags/list", "/v2/A/tags/list"] {
        let code = curl(&["-o", "/dev/null", "-w", "%{http_code}", "--path-as-is", &reg.url(bad)]).ok();
        assert!(code == "400" || code == "404", "{bad}: {code}");
    }
}

/// What a hostile registry does with the layer blob or the manifest.
#[derive(Clone, Copy, Debug)]
enum Lie {
    WrongBytes,
    Truncated,
    HugeManifest,
    RedirectLoop,
}

/// A registry that serves one image and lies in one way.
fn hostile_registry(lie: Lie) -> (u16, String) {
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let layer_d = sha(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_d}"]}}}}"#
    );
    let config_d = sha(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_d}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","size":{},"digest":"{layer_d}"}}]}}"#,
        config.len(),
        layer.len()
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let layer_hex = layer_d.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (manifest, config, config_d, layer, layer_hex) =
                (manifest.clone(), config.clone(), config_d.clone(), layer.clone(), layer_hex.clone());
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                // A TLS hello (the client tries HTTPS first) is not a request line: hang up.
                if r.read_line(&mut line).is_err() || !line.starts_with(|c: char| c.is_ascii_uppercase()) {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = |s: &mut TcpStream, status: &str, ct: &str, body: &[u8], extra: &str| {
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                };
                if path == "/v2/" {
                    reply(&mut s, "200 OK", "application/json", b"{}", "");
                } else if path.contains("/manifests/") {
                    match lie {
                        Lie::HugeManifest => {
                            let big = vec![b' '; 5 << 20];
                            reply(&mut s, "200 OK", "application/vnd.docker.distribution.manifest.v2+json", &big, "");
                        }
                        Lie::RedirectLoop => {
                            reply(&mut s, "302 Found", "text/plain", b"", &format!("Location: {path}\r\n"))
                        }
                        _ => reply(
                            &mut s,
                            "200 OK",
                            "application/vnd.docker.distribution.manifest.v2+json",
                            manifest.as_bytes(),
                            "",
                        ),
                    }
                } else if path.ends_with(&config_d) {
                    reply(&mut s, "200 OK", "application/octet-stream", config.as_bytes(), "");
                } else if path.ends_with(&layer_hex) {
                    match lie {
                        Lie::WrongBytes => {
                            let mut bad = layer.clone();
                            bad[600] ^= 0xff;
                            reply(&mut s, "200 OK", "application/octet-stream", &bad, "");
                        }
                        _ => {
                            // Announce everything, send half, hang up.
                            let _ = write!(
                                s,
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                layer.len()
                            );
                            let _ = s.write_all(&layer[..layer.len() / 2]);
                        }
                    }
                } else {
                    reply(
                        &mut s,
                        "404 Not Found",
                        "application/json",
                        br#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#,
                        "",
                    );
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
            });
        }
    });
    (port, layer_d)
}

#[test]
fn hostile_registries_leave_nothing_behind() {
    require_root!();
    let d = Daemon::start_bare();
    for (lie, expect) in [
        (Lie::WrongBytes, "digest mismatch"),
        (Lie::Truncated, "truncated"),
        (Lie::HugeManifest, "limit"),
        (Lie::RedirectLoop, "too many redirects"),
    ] {
        let (port, layer_d) = hostile_registry(lie);
        let name = format!("127.0.0.1:{port}/evil/img:1");
        let out = d.docker(&["pull", &name]);
        assert_ne!(out.code, 0, "{lie:?}: {}", out.stdout);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.to_lowercase().contains(expect), "{lie:?}: expected {expect:?} in {all}");
        assert!(d.docker(&["images", "-q"]).ok().is_empty(), "{lie:?}: no image");
        let hex = layer_d.trim_start_matches("sha256:");
        assert!(files_named(&d.data_root(), hex).is_empty(), "{lie:?}: no layer blob stored");
        // No temp files left in the content store's ingest dir.
        let ingest = d.data_root().join("image/content/ingest");
        let left = std::fs::read_dir(&ingest).map(|r| r.count()).unwrap_or(0);
        assert_eq!(left, 0, "{lie:?}: ingest not empty");
    }
}

#[test]
fn dockerd_pushes_to_and_pulls_from_skiffs_registry() {
    require_root!();
    if run("sh", &["-c", "command -v dockerd && command -v containerd"]).code != 0 {
        eprintln!("skipping: Debian's dockerd not installed");
        return;
    }
    let reg = Registry::start(&[]);
    let d = Daemon::start();
    reg.login(&d);
    let dir = unique_dir();
    let archive = dir.join("bb.tar");
    d.docker(&["save", "-o", archive.to_str().unwrap(), "busybox"]).ok();
    // A private dockerd with no networking of its own (loopback registries need no config).
    let sock = dir.join("docker.sock");
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    let mut dockerd = Command::new("dockerd")
        .args(["--bridge", "none", "--iptables=false", "--ip-masq=false", "--data-root"])
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let dk = |args: &[&str]| -> Out {
        let o = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("DOCKER_CONFIG", dir.join("cfg"))
            .args(args)
            .output()
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    let t0 = Instant::now();
    while dk(&["version"]).code != 0 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dk(&["load", "-i", archive.to_str().unwrap()]).ok();
        dk(&["login", "-u", "skiff", "-p", &reg.password(), &reg.addr()]).ok();
        let name = format!("{}/from-dockerd/bb:1", reg.addr());
        dk(&["tag", "busybox", &name]).ok();
        let push = dk(&["push", &name]).ok();
        assert!(push.contains("digest: sha256:"), "{push}");
        dk(&["rmi", &name, "busybox"]).ok();
        dk(&["pull", &name]).ok();
        // And skiffd pulls what dockerd pushed; dockerd pulls what skiffd pushed.
        d.docker(&["pull", &name]).ok();
        let mine = format!("{}/from-skiff/bb:1", reg.addr());
        d.docker(&["tag", "busybox", &mine]).ok();
        d.docker(&["push", &mine]).ok();
        dk(&["pull", &mine]).ok();
    }));
    let _ = dockerd.kill();
    let _ = dockerd.wait();
    skiff_e2e::unmount_below(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn tls_registry_with_a_self_signed_certificate() {
    require_root!();
    if run("sh", &["-c", "command -v openssl"]).code != 0 {
        eprintln!("skipping: openssl not installed");
        return;
    }
    let dir = unique_dir();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    )
    .ok();
    let reg = Registry::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let url = format!("https://{}/v2/", reg.addr());
    let code = |extra: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.push(&url);
        curl(&a).ok()
    };
    assert_eq!(code(&[]), "401", "the base endpoint asks for the login");
    assert_eq!(code(&["-u", &format!("skiff:{}", reg.password())]), "200");
    // Plain HTTP to a TLS port is refused.
    assert_ne!(curl(&["-o", "/dev/null", &format!("http://{}/v2/", reg.addr())]).code, 0);
    // The daemon pushes and pulls over TLS (loopback registries are trusted as Docker does).
    let d = Daemon::start();
    reg.login(&d);
    let name = format!("{}/tls/bb:1", reg.addr());
    d.docker(&["tag", "busybox", &name]).ok();
    d.docker(&["push", &name]).ok();
    d.docker(&["rmi", &name]).ok();
    d.docker(&["pull", &name]).ok();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_clients_pushing_the_same_blob_at_once() {
    require_root!();
    let reg = Registry::start(&["--anonymous-push"]);
    let dir = unique_dir();
    let blob = dir.join("blob");
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&blob, &data).unwrap();
    let digest = sha(&data);
    let url = reg.url(&format!("/v2/same/blobs/uploads/?digest={digest}"));
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/octet-stream",
                    "--data-binary",
                ])
                .arg(format!("@{}", blob.display()))
                .arg(&url)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "201");
    }
    let got = Command::new("curl").args(["-s", &reg.url(&format!("/v2/same/blobs/{digest}"))]).output().unwrap().stdout;
    assert_eq!(sha(&got), digest);
    // Nothing left in uploads/.
    assert_eq!(std::fs::read_dir(reg.dir.join("root/uploads")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sha512_content_is_stored_and_served() {
    require_root!();
    let reg = Registry::start(&["--anonymous-push"]);
    let data = b"sha512 addressed content";
    let d512 = format!("sha512:{}", hex::encode(<sha2::Sha512 as sha2::Digest>::digest(data)));
    let post = |body: &str, digest: &str| {
        let url = reg.url(&format!("/v2/x/blobs/uploads/?digest={digest}"));
        curl(&["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data-binary", body, &url]).ok()
    };
    assert_eq!(post("sha512 addressed content", &d512), "201");
    let head = curl(&["-I", &reg.url(&format!("/v2/x/blobs/{d512}"))]).ok();
    assert!(head.to_lowercase().contains(&format!("docker-content-digest: {d512}")), "{head}");
    assert_eq!(curl(&[&reg.url(&format!("/v2/x/blobs/{d512}"))]).ok().as_bytes(), data);
    // A wrong sha512 is refused.
    let bad = format!("sha512:{}", "0".repeat(128));
    assert_eq!(post("other", &bad), "400");
}

#[test]
fn credential_helpers_shared_with_the_docker_cli() {
    require_root!();
    let dir = unique_dir();
    let htp = htpasswd(&dir, "alice", b"s3cret");
    let reg = Registry::start(&["--htpasswd", htp.to_str().unwrap(), "--token-auth"]);
    let d = Daemon::start();
    // A credential helper, as `docker-credential-pass` & co. are: one secret kept in a file.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-skifftest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nf=\"$(dirname \"$0\")/secret.json\"\ncase \"$1\" in\n\
         store) cat > \"$f\" ;;\n\
         get) read -r url; if [ -f \"$f\" ] && grep -q \"\\\"$url\\\"\" \"$f\"; then cat \"$f\"; \
         else echo 'credentials not found in native keychain'; exit 1; fi ;;\n\
         erase) rm -f \"$f\" ;;\n\
         *) exit 1 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = dir.join("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("config.json"), r#"{"credsStore": "skifftest"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = |prog: &Path, args: &[&str], stdin: &[u8]| {
        let mut c = Command::new(prog)
            .args(args)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &cfg_dir)
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = c.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let docker = skiff_e2e::docker_cli();
    let skiff = bin_dir().join("skiff");
    let name = format!("{}/alice/bb:1", reg.addr());
    d.docker(&["tag", "busybox", &name]).ok();
    // The docker CLI logs in through the helper; skiff finds the secret there.
    run(&docker, &["login", "-u", "alice", "--password-stdin", &reg.addr()], b"s3cret\n").ok();
    assert!(bin.join("secret.json").exists(), "the helper holds the secret");
    let cfg = std::fs::read_to_string(cfg_dir.join("config.json")).unwrap();
    assert!(!cfg.contains("\"auth\""), "no secret in config.json: {cfg}");
    let o = run(&skiff, &["push", &name], b"").ok();
    assert!(o.contains("digest"), "{o}");
    // skiff logs out through the helper; then the registry refuses it.
    run(&skiff, &["logout", &reg.addr()], b"").ok();
    assert!(!bin.join("secret.json").exists());
    let denied = run(&skiff, &["push", &name], b"");
    assert_ne!(denied.code, 0);
    // skiff logs in through the helper too, and the docker CLI's push uses it.
    run(&skiff, &["login", "-u", "alice", "--password-stdin", &reg.addr()], b"s3cret\n").ok();
    assert!(bin.join("secret.json").exists());
    run(&docker, &["push", &name], b"").ok();
    let _ = std::fs::remove_dir_all(&dir);
}
