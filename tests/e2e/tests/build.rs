//! `docker build` against skiffd (the docker CLI's classic-builder path): the seed's Dockerfile
//! shape, multi-stage with COPY --from, heredocs, ARG/ENV, .dockerignore, the cache, and
//! hostile contexts.

use std::path::Path;
use std::process::Command;

use skiff_e2e::{Daemon, Out, require_root, unique_dir};

fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn build(d: &Daemon, ctx: &Path, args: &[&str]) -> Out {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    let ctx = ctx.to_str().unwrap().to_string();
    a.push(&ctx);
    d.docker(&a)
}

/// The steps that were cache hits, by step number.
fn cached_steps(out: &str) -> Vec<usize> {
    let mut v = Vec::new();
    let mut cur = 0;
    for l in out.lines() {
        if let Some(r) = l.strip_prefix("Step ") {
            cur = r.split('/').next().unwrap().parse().unwrap();
        }
        if l.contains("Using cache") {
            v.push(cur);
        }
    }
    v
}

#[test]
fn seed_shaped_build_cache_and_run() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    write(&ctx, "public-html/index.html", "<h1>hello from the seed</h1>\n");
    write(&ctx, "public-html/about.html", "about\n");
    write(&ctx, "unrelated.txt", "not copied\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY ./public-html/ /usr/local/apache2/htdocs/\nRUN ls /usr/local/apache2/htdocs > /list\nCMD [\"cat\", \"/usr/local/apache2/htdocs/index.html\"]\n",
    );
    let o = build(&d, &ctx, &["-t", "strongjz/example-httpd"]);
    let text = o.ok();
    assert!(text.contains("Successfully tagged strongjz/example-httpd:latest"), "{text}");
    assert_eq!(d.docker(&["run", "--rm", "strongjz/example-httpd"]).ok(), "<h1>hello from the seed</h1>");
    assert_eq!(d.docker(&["run", "--rm", "strongjz/example-httpd", "cat", "/list"]).ok(), "about.html\nindex.html");
    // Nothing changed: every step after FROM is a cache hit, same image.
    let id1 = d.docker(&["image", "inspect", "-f", "{{.Id}}", "strongjz/example-httpd"]).ok();
    let again = build(&d, &ctx, &["-t", "strongjz/example-httpd"]).ok();
    assert_eq!(cached_steps(&again), vec![2, 3, 4], "{again}");
    assert_eq!(d.docker(&["image", "inspect", "-f", "{{.Id}}", "strongjz/example-httpd"]).ok(), id1);
    // A file the steps do not read: still all hits. Touching a copied file's time: still hits.
    write(&ctx, "unrelated.txt", "changed\n");
    let t = Command::new("touch")
        .args(["-d", "2001-01-01", ctx.join("public-html/about.html").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(t.success());
    assert_eq!(cached_steps(&build(&d, &ctx, &[]).ok()), vec![2, 3, 4]);
    // A mode change of a copied file invalidates the COPY and what follows.
    let p = ctx.join("public-html/about.html");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(cached_steps(&build(&d, &ctx, &[]).ok()), Vec::<usize>::new());
    // A content change rebuilds from the COPY; --no-cache rebuilds everything.
    write(&ctx, "public-html/index.html", "<h1>v2</h1>\n");
    let o = build(&d, &ctx, &["-t", "strongjz/example-httpd"]).ok();
    assert!(cached_steps(&o).is_empty(), "{o}");
    assert_eq!(d.docker(&["run", "--rm", "strongjz/example-httpd"]).ok(), "<h1>v2</h1>");
    assert!(cached_steps(&build(&d, &ctx, &["--no-cache"]).ok()).is_empty());
    // skiff build -o: the result's filesystem as a directory or a tar.
    let outdir = unique_dir();
    let dest = format!("type=local,dest={}", outdir.join("fs").display());
    d.skiff(&["build", "-q", "-o", &dest, ctx.to_str().unwrap()]).ok();
    let got = std::fs::read_to_string(outdir.join("fs/usr/local/apache2/htdocs/index.html")).unwrap();
    assert_eq!(got, "<h1>v2</h1>\n");
    let tarball = outdir.join("fs.tar");
    d.skiff(&["build", "-q", "-o", &format!("type=tar,dest={}", tarball.display()), ctx.to_str().unwrap()]).ok();
    let list = Command::new("tar").args(["-tf", tarball.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("usr/local/apache2/htdocs/about.html"));
    let _ = std::fs::remove_dir_all(&outdir);
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn multistage_heredocs_args_and_dockerignore() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    write(&ctx, "src/prog.txt", "program source\n");
    write(&ctx, "secret/key", "do not send\n");
    write(&ctx, "notes.md", "notes\n");
    write(&ctx, "README.md", "readme\n");
    write(&ctx, ".dockerignore", "secret\n*.md\n!README.md\n");
    write(
        &ctx,
        "build.Dockerfile",
        r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS compile
ARG GREETING=hello
ENV OUT=/out
WORKDIR /work
COPY src/ ./src/
RUN <<EOF
mkdir -p $OUT
echo "$GREETING: $(cat src/prog.txt)" > $OUT/result.txt
EOF
FROM busybox AS unused
RUN echo unused-stage-ran
FROM busybox
COPY --from=compile /out/result.txt /app/
COPY <<EOF /app/motd
motd ${GREETING:-unset}
EOF
COPY *.md /docs/
ENV GREETING=env-wins
LABEL stage="final stage"
EXPOSE 80
WORKDIR app
CMD ["sh", "-c", "cat /app/result.txt /app/motd; ls /docs; pwd; echo $GREETING"]
"#,
    );
    let df = ctx.join("build.Dockerfile");
    let df = df.to_str().unwrap();
    let o = build(&d, &ctx, &["-f", df, "--build-arg", "GREETING=hi", "-t", "sk-multi:1", "-t", "sk-multi:2"]);
    let text = o.ok();
    // As dockerd's classic builder: every stage up to the target builds.
    assert!(text.contains("unused-stage-ran"), "{text}");
    let run = d.docker(&["run", "--rm", "sk-multi:2"]).ok();
    assert_eq!(run, "hi: program source\nmotd unset\nREADME.md\n/app\nenv-wins");
    let labels = d
        .docker(&["image", "inspect", "-f", "{{json .Config.Labels}} {{json .Config.ExposedPorts}}", "sk-multi:1"])
        .ok();
    assert!(labels.contains("\"stage\":\"final stage\"") && labels.contains("80/tcp"), "{labels}");
    // --target builds only what the target needs.
    let o = build(&d, &ctx, &["-f", df, "--target", "compile", "-t", "sk-compile"]).ok();
    assert!(o.contains("Successfully tagged sk-compile:latest"), "{o}");
    assert_eq!(d.docker(&["run", "--rm", "sk-compile", "cat", "/out/result.txt"]).ok(), "hello: program source");
    // The ignored directory never reached the daemon's context... and cannot be copied.
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY secret/key /k\n");
    let o = build(&d, &ctx, &[]);
    assert_ne!(o.code, 0);
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn failures_name_the_line_and_contexts_cannot_escape() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    write(&ctx, "Dockerfile", "FROM busybox\n\nRUN echo out && exit 7\n");
    let o = build(&d, &ctx, &[]);
    // The step's exit code travels in `errorDetail.code`, and the CLI exits with it (as dockerd).
    assert_eq!(o.code, 7);
    assert!(o.stderr.contains("Dockerfile:3") && o.stderr.contains("returned a non-zero code: 7"), "{}", o.stderr);
    write(&ctx, "Dockerfile", "FROM busybox\nBOGUS x\n");
    let o = build(&d, &ctx, &[]);
    assert!(o.stderr.contains("Dockerfile:2") && o.stderr.contains("unknown instruction"), "{}", o.stderr);
    // ../ is cleaned to the context root; a symlink pointing out of the context is refused.
    write(&ctx, "inside.txt", "inside\n");
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("out")).unwrap();
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY ../../inside.txt /i\nCOPY out /o\n");
    let o = build(&d, &ctx, &[]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("outside the build context"), "{}", o.stderr);
    // A symlink in a copied directory is copied as a link, not followed.
    std::fs::create_dir_all(ctx.join("dir")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("dir/link")).unwrap();
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY dir/ /d/\nCOPY ../inside.txt /i\n");
    build(&d, &ctx, &["-t", "sk-links"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-links", "readlink", "/d/link"]).ok(), "/etc/passwd");
    assert_eq!(d.docker(&["run", "--rm", "sk-links", "cat", "/i"]).ok(), "inside");
    // ADD from a URL fails clearly (offline); a local tar is unpacked.
    let tarball = ctx.join("files.tar");
    let st = Command::new("tar")
        .args(["-cf", tarball.to_str().unwrap(), "-C", ctx.to_str().unwrap(), "inside.txt"])
        .status()
        .unwrap();
    assert!(st.success());
    write(&ctx, "Dockerfile", "FROM busybox\nADD files.tar /x/\n");
    build(&d, &ctx, &["-t", "sk-add"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-add", "cat", "/x/inside.txt"]).ok(), "inside");
    write(&ctx, "Dockerfile", "FROM busybox\nADD http://127.0.0.1:9/x /x\n");
    let o = build(&d, &ctx, &[]);
    assert!(o.stderr.contains("network access"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&ctx);
}

/// The same Dockerfile built by Debian's dockerd (classic builder and BuildKit) and by skiffd:
/// the containers print the same thing and the images have the same Env/WorkingDir/Cmd.
/// (dockerd 20.10's built-in frontend has no heredocs, so this Dockerfile has none.)
#[test]
fn same_results_as_dockerd() {
    require_root!();
    if Command::new("sh")
        .args(["-c", "command -v dockerd && test -x /usr/bin/docker"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("skipping: Debian's dockerd not installed");
        return;
    }
    let d = Daemon::start();
    let ctx = unique_dir();
    write(&ctx, "src/prog.txt", "program source\n");
    write(&ctx, "secret/key", "k\n");
    write(&ctx, "notes.md", "n\n");
    write(&ctx, "README.md", "r\n");
    write(&ctx, ".dockerignore", "secret\n*.md\n!README.md\n");
    write(
        &ctx,
        "Dockerfile",
        r#"ARG BASE=busybox
FROM ${BASE} AS compile
ARG GREETING=hello
ENV OUT=/out
WORKDIR /work
COPY src/ ./src/
RUN mkdir -p $OUT && echo "$GREETING: $(cat src/prog.txt)" > $OUT/result.txt
FROM busybox
COPY --from=compile /out/result.txt /app/
COPY src/prog.txt /app/motd
COPY *.md /docs/
ENV GREETING=env-wins A="two words" B=x\ y C=${GREETING:-x}-${NOPE:-def}
ARG LATE=late-default
RUN echo "$LATE" > /late && mkdir -p /w
WORKDIR app
CMD ["sh", "-c", "cat /app/result.txt /app/motd /late; ls /docs; pwd; echo $GREETING $A $B $C; ls -ln /app | tail -n +2 | awk '{print $1,$3,$4,$9}'"]
"#,
    );
    let fmt = "{{json .Config.Env}} {{.Config.WorkingDir}} {{json .Config.Cmd}}";
    // skiff
    build(&d, &ctx, &["--network=none", "--build-arg", "GREETING=hi", "-t", "cmp"]).ok();
    let mine = format!(
        "{}\n{}",
        d.docker(&["run", "--rm", "--network", "none", "cmp"]).ok(),
        d.docker(&["image", "inspect", "-f", fmt, "cmp"]).ok()
    );
    // dockerd, private
    let dir = unique_dir();
    let sock = dir.join("d.sock");
    let mut dockerd = Command::new("dockerd")
        .args(["--bridge", "none", "--iptables=false", "--ip-masq=false", "--data-root"])
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
        .spawn()
        .unwrap();
    let dk = |env: &[(&str, &str)], args: &[&str]| -> Out {
        let o = Command::new("/usr/bin/docker")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    let t0 = std::time::Instant::now();
    while dk(&[], &["version"]).code != 0 && t0.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bb = skiff_e2e::busybox_tar(&dir);
        dk(&[], &["import", bb.to_str().unwrap(), "busybox"]).ok();
        for buildkit in ["0", "1"] {
            let tag = format!("cmp{buildkit}");
            dk(
                &[("DOCKER_BUILDKIT", buildkit)],
                &["build", "--network=none", "--build-arg", "GREETING=hi", "-t", &tag, ctx.to_str().unwrap()],
            )
            .ok();
            let theirs = format!(
                "{}\n{}",
                dk(&[], &["run", "--rm", "--network", "none", &tag]).ok(),
                dk(&[], &["image", "inspect", "-f", fmt, &tag]).ok()
            );
            assert_eq!(mine, theirs, "DOCKER_BUILDKIT={buildkit}");
        }
    }));
    let _ = dockerd.kill();
    let _ = dockerd.wait();
    skiff_e2e::unmount_below(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&ctx);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn run_mounts_cache_bind_tmpfs() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    write(&ctx, "src/a.txt", "from the context\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/cache,id=counter echo x >> /cache/runs && wc -l < /cache/runs > /count\nRUN --mount=type=bind,source=src,target=/mnt cat /mnt/a.txt > /copied && test ! -w /mnt/a.txt -o \"$(id -u)\" = 0\nRUN --mount=type=tmpfs,target=/scratch touch /scratch/t && test ! -e /t\n",
    );
    build(&d, &ctx, &["--no-cache", "-t", "sk-mnt"]).ok();
    build(&d, &ctx, &["--no-cache", "-t", "sk-mnt"]).ok();
    assert_eq!(
        d.docker(&["run", "--rm", "sk-mnt", "cat", "/count"]).ok(),
        "2",
        "the cache mount persists across builds"
    );
    assert_eq!(d.docker(&["run", "--rm", "sk-mnt", "cat", "/copied"]).ok(), "from the context");
    assert_ne!(d.docker(&["run", "--rm", "sk-mnt", "ls", "/scratch/t"]).code, 0, "tmpfs content is not in the image");
    // The bound source is part of the cache key.
    let again = build(&d, &ctx, &["-t", "sk-mnt"]).ok();
    assert!(again.matches("Using cache").count() >= 3, "{again}");
    write(&ctx, "src/a.txt", "changed\n");
    build(&d, &ctx, &["-t", "sk-mnt"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-mnt", "cat", "/copied"]).ok(), "changed");
    // bind from an earlier stage (which the target then needs).
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS tools\nRUN echo tool-output > /tool.txt\nFROM busybox\nRUN --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/t cat /mnt/t > /got\n",
    );
    build(&d, &ctx, &["-t", "sk-bindfrom"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-bindfrom", "cat", "/got"]).ok(), "tool-output");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN --mount=type=ssh ls\n");
    let o = build(&d, &ctx, &[]);
    assert!(o.stderr.contains("type=ssh"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(&ctx);
}

/// Independent stages build at the same time: each waits (through a shared cache mount) for
/// the other to have started, which a one-after-the-other builder never satisfies.
#[test]
fn independent_stages_build_concurrently() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    let wait_for = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous-{id},target=/s touch /s/{me} && for i in $(seq 100); do [ -e /s/{other} ] && exit 0; sleep 0.05; done; exit 1",
            id = ctx.file_name().unwrap().to_string_lossy()
        )
    };
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM busybox AS a\n{}\nRUN echo a > /a\nFROM busybox AS b\n{}\nRUN echo b > /b\nFROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
            wait_for("a", "b"),
            wait_for("b", "a")
        ),
    );
    build(&d, &ctx, &["-t", "sk-par"]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-par", "cat", "/a", "/b"]).ok(), "a\nb");
    let _ = std::fs::remove_dir_all(&ctx);
}

/// docker-py's `images.build` (Debian's python3-docker) against skiffd.
#[test]
fn docker_py_images_build() {
    require_root!();
    let probe = Command::new("/usr/bin/python3").args(["-c", "import docker"]).status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!("skipping: python3-docker not installed");
        return;
    }
    let d = Daemon::start();
    let ctx = unique_dir();
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nARG WHO=nobody\nRUN echo \"hello $WHO\" > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    );
    write(&ctx, "Broken.Dockerfile", "FROM busybox\nRUN exit 4\n");
    let script = format!(
        r#"
import docker
c = docker.DockerClient(base_url="unix://{sock}")
img, logs = c.images.build(path="{ctx}", tag="py/built", buildargs={{"WHO": "python"}}, rm=True)
print(img.tags[0])
print(c.containers.run("py/built", remove=True).decode().strip())
try:
    c.images.build(path="{ctx}", dockerfile="Broken.Dockerfile")
    print("no error")
except docker.errors.BuildError as e:
    print("BuildError", "non-zero code: 4" in str(e))
"#,
        sock = d.socket.display(),
        ctx = ctx.display()
    );
    let o = Command::new("/usr/bin/python3").args(["-c", &script]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.trim(), "py/built:latest\nhello python\nBuildError True");
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn copy_exclude_and_parents() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    for (p, c) in [("a/b/one.txt", "1"), ("a/b/two.md", "2"), ("c/three.txt", "3"), ("home.txt", "4"), ("home.md", "5")]
    {
        write(&ctx, p, c);
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY --exclude=*.md hom* /x/\nCOPY --parents a/b/one.txt c /p/\nCOPY --parents ./a/./b/ /q/\nCOPY --exclude=**/*.md a /r/\n",
    );
    build(&d, &ctx, &["-t", "sk-excl"]).ok();
    let found = d.docker(&["run", "--rm", "sk-excl", "find", "/x", "/p", "/q", "/r", "-type", "f"]).ok();
    let mut v: Vec<&str> = found.lines().collect();
    v.sort();
    assert_eq!(v, ["/p/a/b/one.txt", "/p/c/three.txt", "/q/b/one.txt", "/q/b/two.md", "/r/b/one.txt", "/x/home.txt"]);
    let _ = std::fs::remove_dir_all(&ctx);
}

/// `skiff build --secret`: visible to the RUN step that mounts it, in no layer and not in the
/// context COPY sees.
#[test]
fn build_secrets() {
    require_root!();
    let d = Daemon::start();
    let ctx = unique_dir();
    let secret = ctx.with_extension("secret");
    std::fs::write(&secret, "value-of-the-secret").unwrap();
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=tok test \"$(wc -c < /run/secrets/tok)\" = 19 && echo ok > /ok\nCOPY . /ctx/\n",
    );
    let src = format!("id=tok,src={}", secret.display());
    d.skiff(&["build", "--secret", &src, "-t", "sk-sec", ctx.to_str().unwrap()]).ok();
    assert_eq!(d.docker(&["run", "--rm", "sk-sec", "cat", "/ok"]).ok(), "ok");
    assert_eq!(d.docker(&["run", "--rm", "sk-sec", "ls", "-A", "/ctx"]).ok(), "Dockerfile");
    assert_ne!(d.docker(&["run", "--rm", "sk-sec", "test", "-e", "/run/secrets/tok"]).code, 0);
    let saved = d.docker(&["save", "sk-sec"]);
    assert!(!saved.stdout.contains("value-of-the-secret"), "the secret is in no layer");
    // A required secret that was not given is a clear error.
    write(&ctx, "Dockerfile", "FROM busybox\nRUN --mount=type=secret,id=other,required cat /run/secrets/other\n");
    let o = build(&d, &ctx, &[]);
    assert!(o.stderr.contains("secret other not found"), "{}", o.stderr);
    let _ = std::fs::remove_file(&secret);
    let _ = std::fs::remove_dir_all(&ctx);
}

#[test]
fn a_daemon_killed_mid_build_restarts_clean() {
    require_root!();
    let mut d = Daemon::start();
    let ctx = unique_dir();
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY . /ctx\nRUN --mount=type=secret,id=tok cat /run/secrets/tok && sleep 3\n",
    );
    write(&ctx, "data.txt", "some context");
    write(&ctx, "tok.txt", "s3cret");
    let skiff_build = |d: &Daemon| {
        let mut c = Command::new(skiff_e2e::bin_dir().join("skiff"));
        c.args(["-H", &format!("unix://{}", d.socket.display()), "build", "-q", "--network=none"])
            .args(["--secret", &format!("id=tok,src={}", ctx.join("tok.txt").display())])
            .arg(&ctx);
        c
    };
    let mut b =
        skiff_build(&d).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let data = d.data_root();
    let scratch = data.join("tmp");
    let snaps = data.join("image/snapshots");
    let building = || {
        std::fs::read_dir(&snaps).map(|rd| rd.flatten().count()).unwrap_or(0) > 0
            && std::fs::read_dir(&scratch).map(|rd| rd.flatten().count()).unwrap_or(0) > 0
    };
    assert!(skiff_e2e::eventually(std::time::Duration::from_secs(10), building), "the build got going");
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.crash_and_restart();
    let _ = b.wait();
    // Nothing of the build is left: no context or secret files, no builder snapshot, no mount.
    let left: Vec<String> = std::fs::read_dir(&scratch)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let builder_snaps: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build"))
        .collect();
    assert!(builder_snaps.is_empty(), "{builder_snaps:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.lines().any(|l| l.contains(data.to_str().unwrap()) && l.contains("/build-")), "{mounts}");
    // And the daemon builds it again.
    let o = skiff_build(&d).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&ctx);
}
