//! `skiff image bootstrap`: base images from Debian's packages, and the seed's Dockerfile
//! (`FROM httpd:2.4` + `COPY ./public-html/ /usr/local/apache2/htdocs/`) built and served.

use std::process::Command;

use skiff_e2e::{Daemon, require_root, unique_dir};

#[test]
fn busybox_from_busybox_static() {
    require_root!();
    let d = Daemon::start_bare();
    let o = d.skiff(&["image", "bootstrap", "busybox"]).ok();
    assert!(o.contains("busybox:latest: made"), "{o}");
    assert_eq!(d.docker(&["run", "--rm", "busybox", "echo", "hi"]).ok(), "hi");
    // Again: cheap, kept.
    let again = d.skiff(&["image", "bootstrap", "busybox"]).ok();
    assert!(again.contains("already here"), "{again}");
    assert_ne!(d.skiff(&["image", "bootstrap", "fedora"]).code, 0);
}

/// Needs Debian's mirror (debootstrap), as apt-get does; about 40 s.
#[test]
fn httpd_and_the_seed_dockerfile() {
    require_root!();
    if Command::new("sh").args(["-c", "command -v debootstrap"]).status().map(|s| !s.success()).unwrap_or(true) {
        eprintln!("skipping: debootstrap not installed");
        return;
    }
    let d = Daemon::start_bare();
    d.skiff(&["image", "bootstrap", "httpd:2.4"]).ok();
    let cfg = d
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Cmd}} {{json .Config.ExposedPorts}} {{.Config.WorkingDir}}",
            "httpd:2.4",
        ])
        .ok();
    assert_eq!(cfg, "[\"httpd-foreground\"] {\"80/tcp\":{}} /usr/local/apache2");
    let ctx = unique_dir();
    std::fs::create_dir_all(ctx.join("public-html")).unwrap();
    std::fs::write(ctx.join("public-html/index.html"), "<h1>the seed</h1>\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM httpd:2.4\nCOPY ./public-html/ /usr/local/apache2/htdocs/\n").unwrap();
    d.docker(&["build", ctx.to_str().unwrap(), "-t", "strongjz/example-httpd"]).ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    d.docker(&["run", "-d", "--name", "seed", "-p", &format!("127.0.0.1:{port}:80"), "strongjz/example-httpd"]).ok();
    let mut page = String::new();
    for _ in 0..100 {
        let o = Command::new("curl").args(["-s", "-m", "2", &format!("http://127.0.0.1:{port}/")]).output().unwrap();
        page = String::from_utf8_lossy(&o.stdout).into_owned();
        if page.contains("the seed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(page, "<h1>the seed</h1>\n");
    // Apache logs to the container's stdout/stderr.
    let logs = d.docker(&["logs", "seed"]);
    assert!(logs.stdout.contains("GET / HTTP/1.1\" 200"), "{logs:?}");
    d.docker(&["rm", "-f", "seed"]).ok();
    let _ = std::fs::remove_dir_all(&ctx);
}
