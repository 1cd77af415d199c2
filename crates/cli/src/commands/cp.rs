//! `skiff cp`: files between a container and the host (or a tar stream on stdin/stdout).

use std::io::Write;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use http::Method;
use serde_json::Value;

use crate::client::{Client, for_each_chunk, query};

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub src: String,
    pub dst: String,
}

/// `container:path` or a local path.
fn split_cp(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub async fn cp(c: &Client, a: CpArgs) -> anyhow::Result<u8> {
    match (split_cp(&a.src), split_cp(&a.dst)) {
        ((Some(ctr), src), (None, dst)) => {
            let resp = c
                .request(Method::GET, &format!("/containers/{ctr}/archive{}", query(&[("path", src.to_string())])))
                .await?;
            let stat: Value = resp
                .headers()
                .get("X-Docker-Container-Path-Stat")
                .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h.as_bytes()).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let mut tar = Vec::new();
            for_each_chunk(resp, |b| {
                tar.extend_from_slice(&b);
                Ok(())
            })
            .await?;
            if dst == "-" {
                std::io::stdout().write_all(&tar)?;
                return Ok(0);
            }
            let name = stat.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
            let dst_path = std::path::Path::new(dst);
            // Copy into an existing directory, or create dst as the copy itself.
            let (dir, rename) = if dst_path.is_dir() {
                (dst_path.to_path_buf(), None)
            } else {
                (
                    dst_path
                        .parent()
                        .map(|p| if p.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { p.to_path_buf() })
                        .unwrap_or_else(|| ".".into()),
                    dst_path.file_name().map(|f| f.to_string_lossy().into_owned()),
                )
            };
            let mut ar = tar::Archive::new(&tar[..]);
            ar.set_preserve_permissions(true);
            ar.set_overwrite(true);
            for entry in ar.entries()? {
                let mut e = entry?;
                let p = e.path()?.into_owned();
                let p = match (&rename, p.strip_prefix(&name)) {
                    (Some(r), Ok(rest)) if rest.as_os_str().is_empty() => std::path::PathBuf::from(r),
                    (Some(r), Ok(rest)) => std::path::Path::new(r).join(rest),
                    _ => p,
                };
                if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) || p.is_absolute() {
                    bail!("invalid path in archive: {}", p.display());
                }
                e.unpack(dir.join(&p))?;
            }
            Ok(0)
        }
        ((None, src), (Some(ctr), dst)) => {
            let src_path = std::path::Path::new(src).to_path_buf();
            let meta = std::fs::symlink_metadata(&src_path).with_context(|| format!("lstat {src}"))?;
            // Where does it go: into dst if dst is an existing directory, else as dst.
            let stat = c
                .request(Method::HEAD, &format!("/containers/{ctr}/archive{}", query(&[("path", dst.to_string())])))
                .await;
            let (target_dir, name) = match stat {
                Ok(r) => {
                    let s: Value = r
                        .headers()
                        .get("X-Docker-Container-Path-Stat")
                        .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h.as_bytes()).ok())
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or(Value::Null);
                    let is_dir = s.get("mode").and_then(|m| m.as_u64()).map(|m| m & (1 << 31) != 0).unwrap_or(false);
                    if is_dir {
                        (
                            dst.to_string(),
                            src_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                        )
                    } else {
                        let p = std::path::Path::new(dst);
                        (
                            p.parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
                            p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                        )
                    }
                }
                Err(_) => {
                    let p = std::path::Path::new(dst);
                    (
                        p.parent().map(|x| x.display().to_string()).unwrap_or_else(|| "/".into()),
                        p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                    )
                }
            };
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(a.follow_link);
            if meta.is_dir() {
                b.append_dir_all(&name, &src_path)?;
            } else {
                b.append_path_with_name(&src_path, &name)?;
            }
            let data = b.into_inner()?;
            let q = query(&[
                ("path", target_dir),
                ("noOverwriteDirNonDir", "true".into()),
                ("copyUIDGID", a.archive.to_string()),
            ]);
            let cursor = std::io::Cursor::new(data);
            c.request_stream(Method::PUT, &format!("/containers/{ctr}/archive{q}"), cursor, "application/x-tar")
                .await?;
            Ok(0)
        }
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
    }
}
