//! `login`, `logout`, and credentials for pull/push from `~/.docker/config.json`, as the docker
//! CLI keeps them — `auths`, or a credential helper (`credHelpers` per registry, `credsStore`
//! for all: `docker-credential-<name> get|store|erase` on the PATH) — so both CLIs share logins.

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

/// The credential helper configured for a registry: `credHelpers` by host name (Docker Hub's
/// is `index.docker.io`), else `credsStore`.
fn helper_for(cfg: &Value, key: &str) -> Option<String> {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    cfg.get("credHelpers")
        .and_then(|h| h.get(host))
        .or_else(|| cfg.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .map(str::to_string)
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; its stdout, or its message
/// as the error.
fn helper_call(helper: &str, action: &str, input: &[u8]) -> anyhow::Result<String> {
    use std::io::Write;
    let bin = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&bin)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running the credential helper {bin}"))?;
    child.stdin.take().context("helper stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{bin} {action}: {}", if text.is_empty() { err.trim() } else { &text });
    }
    Ok(text)
}

/// Username and password for a registry key, from its helper or `auths`.
fn credentials(cfg: &Value, key: &str) -> anyhow::Result<Option<(String, String)>> {
    if let Some(h) = helper_for(cfg, key) {
        return match helper_call(&h, "get", key.as_bytes()) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).context("credential helper output")?;
                let user = v.get("Username").and_then(Value::as_str).unwrap_or_default().to_string();
                let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default().to_string();
                Ok((!secret.is_empty()).then_some((user, secret)))
            }
            // Helpers answer "credentials not found" with a failure: not logged in.
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(e),
        };
    }
    if let Some(a) = cfg.get("auths").and_then(|a| a.get(key)).and_then(|a| a.get("auth")).and_then(|a| a.as_str())
        && let Ok(raw) = STANDARD.decode(a)
        && let Ok(s) = String::from_utf8(raw)
        && let Some((u, p)) = s.split_once(':')
    {
        return Ok(Some((u.to_string(), p.to_string())));
    }
    Ok(None)
}

/// The `X-Registry-Auth` header value for an image's registry (empty credentials if none).
pub fn auth_header_for(image: &str) -> anyhow::Result<String> {
    let key = key_of(&registry_of(image));
    let mut creds = json!({"serveraddress": key});
    if let Some((u, p)) = credentials(&load_config()?, &key)? {
        if u == "<token>" {
            // A helper's identity token (OAuth refresh token), passed on as Docker does.
            creds["identitytoken"] = json!(p);
        } else {
            creds["username"] = json!(u);
            creds["password"] = json!(p);
        }
    }
    Ok(URL_SAFE.encode(serde_json::to_vec(&creds).unwrap_or_default()))
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
    let helper = helper_for(&cfg, &key);
    if let Some(h) = &helper {
        let input = json!({"ServerURL": key, "Username": username, "Secret": password});
        helper_call(h, "store", &serde_json::to_vec(&input)?)?;
    }
    let auths = cfg.as_object_mut().expect("object").entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    // With a helper the secret lives there; `auths` only records the login, as Docker does.
    auths[&key] = match helper {
        Some(_) => json!({}),
        None => json!({"auth": STANDARD.encode(format!("{username}:{password}"))}),
    };
    save_config(&cfg)?;
    println!("Login Succeeded");
    Ok(0)
}

pub async fn logout(a: LogoutArgs) -> anyhow::Result<u8> {
    let key = key_of(a.server.as_deref().unwrap_or(HUB_KEY));
    let mut cfg = load_config()?;
    let mut removed = false;
    if let Some(h) = helper_for(&cfg, &key) {
        removed = helper_call(&h, "erase", key.as_bytes()).is_ok();
    }
    removed |= cfg.get_mut("auths").and_then(|a| a.as_object_mut()).and_then(|a| a.remove(&key)).is_some();
    if removed {
        save_config(&cfg)?;
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(0)
}
