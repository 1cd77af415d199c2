//! Registry configuration: a TOML file, overridden by flags.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/skiff/registry"
//! delete = true                  # allow DELETE of manifests, tags, blobs
//! anonymous_push = false         # without [auth]: true lets anyone push and delete
//! max_blob_size = 68719476736    # bytes
//! [tls]
//! cert = "/etc/skiff/registry.crt"
//! key = "/etc/skiff/registry.key"
//! [auth]
//! htpasswd = "/etc/skiff/htpasswd"   # bcrypt (htpasswd -B)
//! token = true                       # Docker's bearer flow, tokens issued at /token
//! realm = "https://reg.example:5000/token"   # default: derived from addr
//! service = "skiff-registry"
//! anonymous_pull = false
//! [[auth.rules]]
//! account = "alice"        # a user, "*" (any authenticated user) or "anonymous"
//! repository = "alice/*"   # a name or a prefix ending in *
//! actions = ["pull", "push"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::{AuthConfig, Rule};
use crate::server::Settings;

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub delete: bool,
    pub max_blob: u64,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `None`: pulls are open to anyone, pushes and deletes need the registry's own login
    /// (generated at first start, see [`generated_login`]) — unless `anonymous_push`.
    pub auth: Option<AuthConfig>,
    /// Without `auth`: let anyone push and delete (an explicit choice, never the default).
    pub anonymous_push: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:5000".parse().expect("valid literal"),
            root: PathBuf::from("/var/lib/skiff/registry"),
            delete: true,
            max_blob: Settings::default().max_blob,
            tls_cert: None,
            tls_key: None,
            auth: None,
            anonymous_push: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    root: Option<PathBuf>,
    delete: Option<bool>,
    max_blob_size: Option<u64>,
    tls: Option<FileTls>,
    auth: Option<FileAuth>,
    anonymous_push: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    htpasswd: Option<PathBuf>,
    #[serde(default)]
    token: bool,
    realm: Option<String>,
    service: Option<String>,
    #[serde(default)]
    anonymous_pull: bool,
    #[serde(default)]
    rules: Vec<Rule>,
}

impl Config {
    /// Reads a TOML config file on top of the defaults.
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let f: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut c = Config::default();
        if let Some(a) = f.addr {
            c.addr = a;
        }
        if let Some(r) = f.root {
            c.root = r;
        }
        if let Some(d) = f.delete {
            c.delete = d;
        }
        if let Some(m) = f.max_blob_size {
            c.max_blob = m;
        }
        if let Some(a) = f.anonymous_push {
            c.anonymous_push = a;
        }
        if let Some(t) = f.tls {
            c.tls_cert = Some(t.cert);
            c.tls_key = Some(t.key);
        }
        if let Some(a) = f.auth {
            if a.htpasswd.is_none() && !a.anonymous_pull && a.rules.is_empty() {
                return Err("[auth] needs htpasswd (or anonymous_pull / rules)".into());
            }
            c.auth = Some(AuthConfig {
                htpasswd: a.htpasswd,
                token_realm: if a.token || a.realm.is_some() { Some(a.realm.unwrap_or_default()) } else { None },
                service: a.service.unwrap_or_else(|| "skiff-registry".into()),
                anonymous_pull: a.anonymous_pull,
                rules: a.rules,
            });
        }
        Ok(c)
    }

    /// Fills in a token realm left empty from the listening address.
    pub fn finish(&mut self) {
        let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
        let addr = self.addr;
        if let Some(a) = &mut self.auth
            && a.token_realm.as_deref() == Some("")
        {
            a.token_realm = Some(format!("{scheme}://{addr}/token"));
        }
    }

    /// The auth the registry runs with: the configured one, none when anonymous pushes were
    /// asked for, otherwise the generated login (writes need it, reads are open).
    pub fn effective_auth(&self) -> Result<Option<AuthConfig>, String> {
        match (&self.auth, self.anonymous_push) {
            (Some(a), _) => Ok(Some(a.clone())),
            (None, true) => Ok(None),
            (None, false) => generated_login(&self.root).map(|(_, a)| Some(a)),
        }
    }

    pub fn settings(&self) -> Settings {
        Settings { delete: self.delete, max_blob: self.max_blob }
    }

    /// The rustls server config for the configured certificate, if any.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err("TLS needs both a certificate and a key".into());
            }
            return Ok(None);
        };
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect())
            .map_err(|e| format!("reading certificate {}: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!("no certificate in {}", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading key {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut sc = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS certificate/key: {e}"))?;
        sc.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(sc)))
    }
}

/// The user of the generated login.
pub const LOGIN_USER: &str = "skiff";

/// Where the generated login's password is kept (readable by root only).
pub fn login_password_file(root: &Path) -> PathBuf {
    root.join("auth/password")
}

/// The registry's own login, made at first start: user `skiff`, a random password in
/// `<root>/auth/password` (mode 0600) and its bcrypt hash in `<root>/auth/htpasswd`. Pulls stay
/// open; pushes and deletes need the login.
pub fn generated_login(root: &Path) -> Result<(String, AuthConfig), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("auth");
    let pass_file = login_password_file(root);
    let htpasswd = dir.join("htpasswd");
    let existing = std::fs::read_to_string(&pass_file).ok().map(|p| p.trim().to_string()).filter(|p| p.len() >= 16);
    let password = match existing.filter(|_| htpasswd.exists()) {
        Some(p) => p,
        None => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let p: String = {
                use base64::Engine as _;
                let raw: [u8; 18] = rand::random();
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
            };
            let hash = crate::auth::hash_password(&p)?;
            skiff_common::fsutil::atomic_write(&htpasswd, format!("{LOGIN_USER}:{hash}\n").as_bytes())
                .map_err(|e| format!("writing {}: {e}", htpasswd.display()))?;
            skiff_common::fsutil::atomic_write(&pass_file, format!("{p}\n").as_bytes())
                .map_err(|e| format!("writing {}: {e}", pass_file.display()))?;
            for f in [&htpasswd, &pass_file] {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{}: {e}", f.display()))?;
            }
            p
        }
    };
    let auth = AuthConfig {
        htpasswd: Some(htpasswd),
        token_realm: None,
        service: "skiff-registry".into(),
        anonymous_pull: true,
        rules: Vec::new(),
    };
    Ok((password, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_file() {
        let mut c = Config::from_toml(
            r#"
addr = "127.0.0.1:5055"
root = "/tmp/r"
delete = false
[auth]
htpasswd = "/tmp/h"
token = true
[[auth.rules]]
account = "*"
repository = "*"
actions = ["pull"]
"#,
        )
        .unwrap();
        c.finish();
        assert_eq!(c.addr.port(), 5055);
        assert!(!c.delete);
        let a = c.auth.unwrap();
        assert_eq!(a.token_realm.as_deref(), Some("http://127.0.0.1:5055/token"));
        assert_eq!(a.rules.len(), 1);
        assert!(Config::from_toml("bogus = 1").is_err());
        assert!(Config::from_toml("[auth]\n").is_err());
        assert!(Config::from_toml("addr = \"nope\"").is_err());
        assert!(Config::from_toml("anonymous_push = true").unwrap().anonymous_push);
    }

    #[test]
    fn the_default_is_a_generated_login() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config { root: dir.path().to_path_buf(), ..Default::default() };
        let a = c.effective_auth().unwrap().expect("auth by default");
        assert!(a.anonymous_pull && a.token_realm.is_none());
        let pass = std::fs::read_to_string(login_password_file(dir.path())).unwrap();
        let users = crate::auth::parse_htpasswd(&std::fs::read_to_string(a.htpasswd.unwrap()).unwrap()).unwrap();
        assert!(bcrypt::verify(pass.trim(), &users[LOGIN_USER]).unwrap());
        // Kept across restarts.
        let again = Config { root: dir.path().to_path_buf(), ..Default::default() };
        again.effective_auth().unwrap();
        assert_eq!(std::fs::read_to_string(login_password_file(dir.path())).unwrap(), pass);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(login_password_file(dir.path())).unwrap().permissions().mode() & 0o777, 0o600);
        let open = Config { root: dir.path().to_path_buf(), anonymous_push: true, ..Default::default() };
        assert!(open.effective_auth().unwrap().is_none());
    }
}
