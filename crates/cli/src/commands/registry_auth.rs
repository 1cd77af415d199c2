//! `login`, `logout`, and credentials for pull/push: `~/.docker/config.json`'s `auths`, so the
//! docker CLI and skiff share logins.

use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use clap::Args;
use serde_json::{Value, json};

use crate::client::Client;

/// The key Docker uses for Docker Hub in `auths`.
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Server (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

fn load_config() -> anyhow::Result<Value> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn save_config(v: &Value) -> anyhow::Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let bytes = serde_json::to_vec_pretty(v)?;
    skiff_common::fsutil::atomic_write(&p, &bytes).with_context(|| format!("writing {}", p.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    Ok(())
}

/// The registry host of an image name, as the docker CLI finds it.
pub fn registry_of(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        first.to_string()
    } else {
        "docker.io".to_string()
    }
}

fn key_of(server: &str) -> String {
    let s = server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    match s {
        "" | "docker.io" | "index.docker.io" | "index.docker.io/v1" | "registry-1.docker.io" => HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// The `X-Registry-Auth` header value for an image's registry (empty credentials if none).
pub fn auth_header_for(image: &str) -> String {
    let key = key_of(&registry_of(image));
    let mut creds = json!({"serveraddress": key});
    if let Ok(cfg) = load_config()
        && let Some(a) = cfg.get("auths").and_then(|a| a.get(&key)).and_then(|a| a.get("auth")).and_then(|a| a.as_str())
        && let Ok(raw) = STANDARD.decode(a)
        && let Ok(s) = String::from_utf8(raw)
        && let Some((u, p)) = s.split_once(':')
    {
        creds["username"] = json!(u);
        creds["password"] = json!(p);
    }
    URL_SAFE.encode(serde_json::to_vec(&creds).unwrap_or_default())
}

pub async fn login(c: &Client, a: LoginArgs) -> anyhow::Result<u8> {
    let server = a.server.clone().unwrap_or_else(|| HUB_KEY.to_string());
    let key = key_of(&server);
    let username = match a.username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut l = String::new();
            std::io::stdin().read_line(&mut l)?;
            l.trim().to_string()
        }
    };
    let password = if a.password_stdin {
        let mut l = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut l)?;
        l.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        bail!("Error: Cannot perform an interactive login from a non TTY device (use --password-stdin)");
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Username and password are required");
    }
    let body = json!({"username": username, "password": password, "serveraddress": key});
    c.request_json(http::Method::POST, "/auth", &body).await?;
    let mut cfg = load_config()?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let auths = cfg.as_object_mut().expect("object").entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    auths[&key] = json!({"auth": STANDARD.encode(format!("{username}:{password}"))});
    save_config(&cfg)?;
    println!("Login Succeeded");
    Ok(0)
}

pub async fn logout(a: LogoutArgs) -> anyhow::Result<u8> {
    let key = key_of(a.server.as_deref().unwrap_or(HUB_KEY));
    let mut cfg = load_config()?;
    let removed = cfg.get_mut("auths").and_then(|a| a.as_object_mut()).and_then(|a| a.remove(&key)).is_some();
    if removed {
        save_config(&cfg)?;
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(0)
}
