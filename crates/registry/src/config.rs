//! Registry configuration: a TOML file, overridden by flags.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/skiff/registry"
//! delete = true                  # allow DELETE of manifests, tags, blobs
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
    pub auth: Option<AuthConfig>,
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
    }
}
