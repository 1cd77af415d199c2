//! `skiff image bootstrap NAME…`: base images made on this machine from Debian's packages, for
//! hosts without Docker Hub. `busybox` (Debian's busybox-static), `debian:bookworm` (debootstrap
//! minbase) and `httpd:2.4` (Debian's apache2 laid out like the official image: document root
//! /usr/local/apache2/htdocs, `httpd-foreground`, port 80, logs to stdout/stderr). An image that
//! exists already is kept (use --force to make it again).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use http::Method;

use crate::client::{Client, for_each_json, query};

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Make the image again even if it exists
    #[arg(long)]
    pub force: bool,
    /// Debian mirror for debootstrap
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    pub mirror: String,
    /// busybox, debian:bookworm, httpd:2.4
    #[arg(required = true)]
    pub names: Vec<String>,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

fn write(root: &Path, rel: &str, content: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&p, content)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn busybox_rootfs(root: &Path) -> anyhow::Result<()> {
    let bb = Path::new("/bin/busybox");
    if !bb.exists() {
        bail!("/bin/busybox not found: install Debian's busybox-static");
    }
    for d in ["bin", "etc", "root", "tmp", "proc", "sys", "dev", "var/www"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    std::fs::copy(bb, root.join("bin/busybox"))?;
    let out = Command::new(bb).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    write(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    write(root, "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    Ok(())
}

fn debootstrap(root: &Path, mirror: &str, include: &[&str]) -> anyhow::Result<()> {
    if Command::new("debootstrap").arg("--version").output().is_err() {
        bail!("debootstrap not found: apt-get install debootstrap");
    }
    let mut cmd = Command::new("debootstrap");
    cmd.args(["--variant=minbase"]);
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    cmd.arg("bookworm").arg(root).arg(mirror);
    run(&mut cmd)?;
    // What the official images leave out: package caches and lists.
    for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let p = root.join(d);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}

/// Apache from Debian, arranged like the official `httpd` image.
fn httpd_layout(root: &Path) -> anyhow::Result<()> {
    write(root, "usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n", 0o644)?;
    write(
        root,
        "etc/apache2/conf-enabled/zz-skiff-httpd.conf",
        "ServerName localhost\n\
         DocumentRoot /usr/local/apache2/htdocs\n\
         <Directory /usr/local/apache2/htdocs>\n    Options Indexes FollowSymLinks\n    AllowOverride None\n    Require all granted\n</Directory>\n\
         ErrorLog /proc/self/fd/2\n\
         CustomLog /proc/self/fd/1 combined\n",
        0o644,
    )?;
    // The default site sets its own DocumentRoot and logs: take it out.
    let _ = std::fs::remove_file(root.join("etc/apache2/sites-enabled/000-default.conf"));
    write(
        root,
        "usr/local/bin/httpd-foreground",
        "#!/bin/sh\nset -e\n. /etc/apache2/envvars\nmkdir -p \"$APACHE_RUN_DIR\" \"$APACHE_LOCK_DIR\" \"$APACHE_LOG_DIR\"\nrm -f \"$APACHE_PID_FILE\"\nexec apache2 -DFOREGROUND \"$@\"\n",
        0o755,
    )?;
    Ok(())
}

async fn exists(c: &Client, name: &str) -> bool {
    c.get_json::<serde_json::Value>(&format!("/images/{name}/json")).await.is_ok()
}

async fn import(c: &Client, root: &Path, name: &str, changes: &[&str]) -> anyhow::Result<()> {
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let mut q = vec![("fromSrc", "-".to_string()), ("repo", repo.to_string()), ("tag", tag.to_string())];
    for ch in changes {
        q.push(("changes", ch.to_string()));
    }
    q.push(("message", "made by skiff image bootstrap".to_string()));
    let (rd, wr) = rustix::pipe::pipe()?;
    let root2 = root.to_path_buf();
    let writer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(wr)));
        b.follow_symlinks(false);
        b.append_dir_all(".", &root2)?;
        std::io::Write::flush(&mut b.into_inner()?)?;
        Ok(())
    });
    let resp = c
        .request_stream(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            tokio::fs::File::from_std(std::fs::File::from(rd)),
            "application/x-tar",
        )
        .await;
    match writer.join() {
        Ok(r) => r?,
        Err(_) => bail!("writing the root filesystem failed"),
    }
    for_each_json(resp?, |v| {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            bail!("{e}");
        }
        Ok(())
    })
    .await
}

pub async fn bootstrap(c: &Client, a: BootstrapArgs) -> anyhow::Result<u8> {
    for name in &a.names {
        let canonical = match name.as_str() {
            "busybox" | "busybox:latest" => "busybox:latest",
            "debian" | "debian:bookworm" | "debian:12" => "debian:bookworm",
            "httpd" | "httpd:2.4" | "httpd:2" => "httpd:2.4",
            other => bail!("don't know how to make {other:?} (busybox, debian:bookworm, httpd:2.4)"),
        };
        if !a.force && exists(c, canonical).await {
            println!("{canonical}: already here");
            continue;
        }
        let tmp = std::env::temp_dir().join(format!(
            "skiff-bootstrap-{}-{}",
            std::process::id(),
            canonical.replace(':', "-")
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let r = async {
            match canonical {
                "busybox:latest" => {
                    busybox_rootfs(&tmp)?;
                    import(c, &tmp, canonical, &["CMD [\"sh\"]"]).await
                }
                "debian:bookworm" => {
                    println!("{canonical}: debootstrap --variant=minbase bookworm from {}", a.mirror);
                    debootstrap(&tmp, &a.mirror, &[])?;
                    import(c, &tmp, canonical, &["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CMD [\"bash\"]"]).await
                }
                _ => {
                    println!("{canonical}: debootstrap --variant=minbase --include=apache2 bookworm from {}", a.mirror);
                    debootstrap(&tmp, &a.mirror, &["apache2"])?;
                    httpd_layout(&tmp)?;
                    import(
                        c,
                        &tmp,
                        canonical,
                        &[
                            "ENV HTTPD_PREFIX=/usr/local/apache2",
                            "ENV PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "WORKDIR /usr/local/apache2",
                            "EXPOSE 80",
                            "STOPSIGNAL SIGWINCH",
                            "CMD [\"httpd-foreground\"]",
                        ],
                    )
                    .await
                }
            }
        }
        .await;
        let _ = Command::new("rm").arg("-rf").arg(&tmp).status();
        r?;
        println!("{canonical}: made");
    }
    Ok(0)
}
