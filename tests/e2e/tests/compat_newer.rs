//! What clients of API 1.44 and later (Docker 25 and newer) expect of a daemon, beside what
//! compat.rs checks against Docker's SDKs and older clients: read-only binds all the way down,
//! the `local` log driver, `import --platform`, and the JSON endpoints' answers to bad bodies.

use skiff_e2e::{Daemon, require_root, unique_dir};

/// Unmounts a test's mount when the test ends, failed or not.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// API 1.44 (Docker 25): a read-only bind is read-only all the way down — a mount below its
/// source is read-only inside the container too — unless asked otherwise
/// (`bind-recursive=writable`); clients older than 1.44 keep the bind-only behaviour they were
/// written for, and cannot ask for the forced form.
#[test]
fn read_only_binds_are_read_only_below_from_api_1_44() {
    require_root!();
    let d = Daemon::start();
    let dir = unique_dir();
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&sub).status().unwrap().success());
    let _unmount = Unmount(sub.clone());
    let src = dir.display().to_string();
    let probe = |api: Option<&str>, how: &[&str]| {
        let mut cmd = std::process::Command::new(skiff_e2e::docker_cli());
        cmd.env("DOCKER_HOST", format!("unix://{}", d.socket.display()));
        if let Some(v) = api {
            cmd.env("DOCKER_API_VERSION", v);
        }
        let script = "touch /ro/top 2>/dev/null && echo top-writable; \
                      touch /ro/sub/x 2>/dev/null && echo writable || echo read-only";
        let out = cmd.args(["run", "--rm"]).args(how).args(["busybox", "sh", "-c", script]).output().unwrap();
        assert!(out.status.success(), "{how:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let v = format!("{src}:/ro:ro");
    let m = format!("type=bind,src={src},dst=/ro,readonly");
    assert_eq!(probe(None, &["-v", &v]), "read-only");
    assert_eq!(probe(None, &["--mount", &m]), "read-only");
    assert_eq!(probe(None, &["--mount", &format!("{m},bind-recursive=writable")]), "writable");
    assert_eq!(
        probe(None, &["--mount", &format!("{m},bind-recursive=readonly,bind-propagation=rprivate")]),
        "read-only"
    );
    assert_eq!(probe(None, &["-v", &format!("{src}:/ro:ro-non-recursive")]), "writable");
    // An older client's read-only binds: the bind alone.
    assert_eq!(probe(Some("1.43"), &["-v", &v]), "writable");
    assert_eq!(probe(Some("1.43"), &["--mount", &m]), "writable");
    let body = format!(
        r#"{{"Image":"busybox","HostConfig":{{"Mounts":[{{"Type":"bind","Source":"{src}","Target":"/ro","ReadOnly":true,"BindOptions":{{"ReadOnlyForceRecursive":true}}}}]}}}}"#
    );
    let (status, answer) = d.http("POST", "/v1.43/containers/create", Some(&body));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("ReadOnlyForceRecursive needs API v1.44"), "{answer}");
    // Nothing written through any of them to the host but what was allowed.
    assert!(!dir.join("top").exists());
    drop(_unmount);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Docker's `local` log driver (its recommended one): rotated by size, rotated files
/// compressed, everything kept read back in order by `docker logs` (also `--tail`); its own
/// options only.
#[test]
fn the_local_log_driver_rotates_compresses_and_reads_back() {
    require_root!();
    let d = Daemon::start();
    let script = "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done";
    d.docker(&[
        "run",
        "--name",
        "loc",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=4",
        "busybox",
        "sh",
        "-c",
        script,
    ])
    .ok();
    let logs = d.docker(&["logs", "loc"]).ok();
    let nums: Vec<u32> = logs.lines().map(|l| l.strip_prefix("line ").unwrap().parse().unwrap()).collect();
    assert_eq!(*nums.last().unwrap(), 2999);
    assert!(nums.len() < 3000, "rotation dropped the oldest lines");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "a gap or a reordering across the rotated files");
    assert_eq!(d.docker(&["logs", "--tail", "2", "loc"]).ok(), "line 2998\nline 2999");
    let log = d.docker(&["inspect", "-f", "{{.LogPath}}", "loc"]).ok();
    let gz = format!("{log}.1.gz");
    let bytes = std::fs::read(&gz).unwrap_or_else(|e| panic!("{gz}: {e}"));
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "the rotated file is gzip");
    assert!(!std::path::Path::new(&format!("{log}.1")).exists());
    // Options: the local driver's, with Docker's words for the others.
    let out = d.docker(&["run", "--rm", "--log-driver", "local", "--log-opt", "tag=x", "busybox", "true"]);
    assert!(out.stderr.contains("unknown log opt 'tag' for local log driver"), "{}", out.stderr);
    let info = d.docker(&["info", "-f", "{{json .Plugins.Log}}"]).ok();
    assert!(info.contains("\"local\""), "{info}");
    d.docker(&["rm", "loc"]).ok();
}

/// `docker import --platform`: the image is for the platform named (any architecture, Linux
/// only), with dockerd's refusals for malformed or unsupported platforms (moby's
/// TestImportWithCustomPlatform).
#[test]
fn import_makes_an_image_for_the_platform_asked() {
    require_root!();
    let d = Daemon::start();
    let rootfs = skiff_e2e::tar_of(&[("hello.txt", "hi\n")]);
    let host = d.docker(&["version", "-f", "{{.Server.Arch}}"]).ok();
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("", Ok("linux/HOST")),
        ("linux", Ok("linux/HOST")),
        ("LINUX", Ok("linux/HOST")),
        ("linux/sparc64", Ok("linux/sparc64")),
        ("arm64", Ok("linux/arm64")),
        ("       ", Err("is an invalid component")),
        ("/", Err("is an invalid component")),
        ("macos", Err("operating system is not supported")),
        ("macos/arm64", Err("operating system is not supported")),
        ("nintendo64", Err("unknown operating system or architecture")),
    ];
    for (i, (platform, want)) in cases.iter().enumerate() {
        let q: String = form_urlencoded::byte_serialize(platform.as_bytes()).collect();
        let path = format!("/v1.44/images/create?fromSrc=-&repo=imported&tag=p{i}&platform={q}");
        let (status, _, body) = d.http_raw("POST", &path, "application/x-tar", &rootfs);
        let body = String::from_utf8_lossy(&body);
        match want {
            Ok(expect) => {
                assert_eq!(status, 200, "{platform:?}: {body}");
                let got =
                    d.docker(&["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", &format!("imported:p{i}")]).ok();
                assert_eq!(got, expect.replace("HOST", &host), "{platform:?}");
            }
            Err(words) => {
                assert_eq!(status, 400, "{platform:?}: {body}");
                assert!(body.contains(words), "{platform:?}: {body}");
            }
        }
    }
    // A container of the sparc64 image: created, with dockerd's warning (none for the host's).
    let create = |image: &str| {
        let body = format!(r#"{{"Image":"{image}","Cmd":["true"]}}"#);
        let (status, answer) = d.http("POST", "/v1.44/containers/create", Some(&body));
        assert_eq!(status, 201, "{answer}");
        answer
    };
    let answer = create("imported:p3");
    assert!(
        answer.contains("The requested image's platform (linux/sparc64) does not match the detected host platform"),
        "{answer}"
    );
    assert!(!create("imported:p0").contains("does not match"));
}

/// The endpoints that read a JSON body answer a wrong content type, broken JSON, content after
/// the JSON and an empty body as dockerd does (moby's TestContainerInvalidJSON): 400 with
/// dockerd 25's words from API 1.44 (20.10's before) — never a 5xx.
#[test]
fn json_endpoints_answer_bad_bodies_as_dockerd() {
    require_root!();
    let d = Daemon::start();
    for ep in
        ["/commit", "/containers/create", "/containers/foobar/exec", "/containers/foobar/update", "/exec/foobar/start"]
    {
        let post = |v: &str, ct: &str, body: &str| {
            let (status, _, answer) = d.http_raw("POST", &format!("/{v}{ep}"), ct, body.as_bytes());
            (status, String::from_utf8_lossy(&answer).into_owned())
        };
        let (s, m) = post("v1.44", "text/plain", "{}");
        assert!(
            s == 400 && m.contains("unsupported Content-Type header (text/plain): must be 'application/json'"),
            "{ep}: {s} {m}"
        );
        let (s, m) = post("v1.41", "text/plain", "{}");
        assert!(
            s == 400 && m.contains("Content-Type specified (text/plain) must be 'application/json'"),
            "{ep}: {s} {m}"
        );
        let (s, m) = post("v1.44", "application/json", "{invalid json");
        assert!(
            s == 400 && m.contains("invalid JSON: invalid character 'i' looking for beginning of object key string"),
            "{ep}: {s} {m}"
        );
        let (s, m) = post("v1.44", "application/json", "{} trailing content");
        assert!(s == 400 && m.contains("unexpected content after JSON"), "{ep}: {s} {m}");
        let (s, m) = post("v1.44", "application/json", "");
        assert!(s < 500, "{ep}: {s} {m}");
    }
    // A large body of the wrong type: the client gets the answer, not a closed connection
    // while it is still sending (moby's TestNetworkInvalidJSON met a broken pipe).
    let big = d.dir.join("big.json");
    std::fs::write(&big, vec![b' '; 8 << 20]).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .args(["-H", "Content-Type: text/plain", "-H", "Expect:", "--data-binary"])
        .arg(format!("@{}", big.display()))
        .arg("http://d/v1.44/networks/create")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400", "curl exit {:?}", out.status.code());
}
