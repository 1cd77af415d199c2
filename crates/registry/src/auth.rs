//! Authentication and authorization.
//!
//! Two modes, as Docker's registry offers them:
//! - **basic**: users from an htpasswd file (bcrypt only); every request carries
//!   `Authorization: Basic`. A verified password is remembered by its sha256 so bcrypt's cost is
//!   paid once per credential, not per request.
//! - **token**: Docker's bearer flow. A request without a valid token gets
//!   `401 WWW-Authenticate: Bearer realm=…,service=…,scope=repository:<name>:<actions>`; the client
//!   fetches `GET <realm>?service=…&scope=…` (with Basic credentials, or none) and retries with
//!   `Authorization: Bearer <jwt>`. The registry issues the tokens itself (HS256, key in the storage
//!   root), granting per repository only what the access rules allow.
//!
//! Access rules: `(account, repository pattern, actions)`; an account `*` means any
//! authenticated user and `anonymous` means no credentials. Without rules, authenticated users
//! may do anything and anonymous users nothing (unless `anonymous_pull`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::RegError;

/// What a request needs: `repository:<name>:<action>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub action: String,
}

impl Scope {
    pub fn repo(name: &str, action: &str) -> Scope {
        Scope { kind: "repository".into(), name: name.into(), action: action.into() }
    }
    pub fn catalog() -> Scope {
        Scope { kind: "registry".into(), name: "catalog".into(), action: "*".into() }
    }
}

/// Parses `repository:<name>:<a>,<b>` (names may hold `:` only in a port-less form, so split
/// the type at the first colon and the actions at the last).
pub fn parse_scope(s: &str) -> Vec<Scope> {
    let Some((kind, rest)) = s.split_once(':') else { return vec![] };
    let Some((name, actions)) = rest.rsplit_once(':') else { return vec![] };
    actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| Scope { kind: kind.into(), name: name.into(), action: a.into() })
        .collect()
}

/// What a request was granted.
#[derive(Debug, Clone)]
pub struct Access {
    all: bool,
    granted: HashSet<Scope>,
}

impl Access {
    pub fn all() -> Access {
        Access { all: true, granted: HashSet::new() }
    }
    pub fn allows(&self, s: &Scope) -> bool {
        self.all || self.granted.contains(s) || self.granted.contains(&Scope { action: "*".into(), ..s.clone() })
    }
}

/// One access rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Rule {
    /// A user name, `*` (any authenticated user) or `anonymous`.
    pub account: String,
    /// A repository name, or a prefix ending in `*` (`team/*`, `*`).
    pub repository: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Auth configuration.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `user:bcrypt-hash` lines.
    pub htpasswd: Option<std::path::PathBuf>,
    /// Issue bearer tokens at this realm URL (e.g. `https://reg.example:5000/token`).
    pub token_realm: Option<String>,
    pub service: String,
    pub anonymous_pull: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    access: Vec<TokenAccess>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TokenAccess {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

const TOKEN_TTL: u64 = 300;

pub struct Auth {
    cfg: AuthConfig,
    users: HashMap<String, String>,
    key: Vec<u8>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("users", &self.users.len()).field("realm", &self.cfg.token_realm).finish()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Parses an htpasswd file; only bcrypt entries are accepted.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (u, h) = line.split_once(':').ok_or_else(|| format!("htpasswd line {}: expected user:hash", i + 1))?;
        if !(h.starts_with("$2y$") || h.starts_with("$2b$") || h.starts_with("$2a$")) {
            return Err(format!("htpasswd line {}: only bcrypt hashes are supported (htpasswd -B)", i + 1));
        }
        users.insert(u.to_string(), h.to_string());
    }
    Ok(users)
}

/// A bcrypt hash for an htpasswd line.
pub fn hash_password(pass: &str) -> Result<String, String> {
    bcrypt::hash(pass, 10).map_err(|e| e.to_string())
}

fn pattern_matches(pat: &str, name: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pat == name,
    }
}

impl Auth {
    /// Builds the auth state; the token key lives in `key_dir/token.key` (created once).
    pub fn new(cfg: AuthConfig, key_dir: &Path) -> Result<Auth, String> {
        let users = match &cfg.htpasswd {
            Some(p) => parse_htpasswd(
                &std::fs::read_to_string(p).map_err(|e| format!("reading htpasswd {}: {e}", p.display()))?,
            )?,
            None => HashMap::new(),
        };
        let key_path = key_dir.join("token.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() >= 32 => k,
            _ => {
                let k: [u8; 32] = rand::random();
                skiff_common::fsutil::atomic_write(&key_path, &k).map_err(|e| format!("writing token key: {e}"))?;
                k.to_vec()
            }
        };
        Ok(Auth { cfg, users, key, verified: Mutex::new(HashSet::new()) })
    }

    fn check_password(&self, user: &str, pass: &str) -> bool {
        let Some(hash) = self.users.get(user) else { return false };
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(pass.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        let fp: [u8; 32] = h.finalize().into();
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&fp) {
            return true;
        }
        let ok = bcrypt::verify(pass, hash).unwrap_or(false);
        if ok {
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(fp);
        }
        ok
    }

    /// The user named by valid Basic credentials; Err if credentials were given but are wrong.
    fn basic_user(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Ok(None) };
        let Some(b64) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) else { return Ok(None) };
        let raw = STANDARD.decode(b64.trim()).map_err(|_| ())?;
        let s = String::from_utf8(raw).map_err(|_| ())?;
        let (u, p) = s.split_once(':').ok_or(())?;
        // Go's clients (skopeo, containerd) send empty Basic credentials when they have none.
        if u.is_empty() && p.is_empty() {
            return Ok(None);
        }
        if self.check_password(u, p) { Ok(Some(u.to_string())) } else { Err(()) }
    }

    /// The actions `account` (None = anonymous) may do on a scope.
    fn permitted(&self, account: Option<&str>, s: &Scope) -> bool {
        if s.kind == "registry" {
            // The catalog lists every repository: authenticated users only (or rules).
            if self.cfg.rules.is_empty() {
                return account.is_some();
            }
        }
        if self.cfg.rules.is_empty() {
            return account.is_some() || (self.cfg.anonymous_pull && s.action == "pull");
        }
        if account.is_none() && self.cfg.anonymous_pull && s.action == "pull" && s.kind == "repository" {
            return true;
        }
        self.cfg.rules.iter().any(|r| {
            let who = match account {
                None => r.account == "anonymous",
                Some(a) => r.account == "*" || r.account == a,
            };
            let what = if s.kind == "registry" { r.repository == "*" } else { pattern_matches(&r.repository, &s.name) };
            who && what && r.actions.iter().any(|a| a == "*" || a == &s.action || (a == "push" && s.action == "delete"))
        })
    }

    fn challenge(&self, scopes: &[Scope], error: Option<&str>) -> RegError {
        let v = match &self.cfg.token_realm {
            Some(realm) => {
                let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.cfg.service);
                if let Some(s) = scope_string(scopes) {
                    v.push_str(&format!(",scope=\"{s}\""));
                }
                if let Some(e) = error {
                    v.push_str(&format!(",error=\"{e}\""));
                }
                v
            }
            None => "Basic realm=\"skiff-registry\"".to_string(),
        };
        let mut e = RegError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
        e.headers.push((header::WWW_AUTHENTICATE, v));
        e
    }

    /// Checks a request against the scopes it needs.
    pub fn authorize(&self, headers: &HeaderMap, scopes: &[Scope]) -> Result<Access, RegError> {
        if self.cfg.token_realm.is_some() {
            let tok = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
            let Some(tok) = tok else {
                if scopes.iter().all(|s| self.permitted(None, s)) && !scopes.is_empty() {
                    return Ok(self.access_of(None, scopes));
                }
                return Err(self.challenge(scopes, None));
            };
            let claims = self.verify_token(tok.trim()).ok_or_else(|| self.challenge(scopes, Some("invalid_token")))?;
            let mut access = Access { all: false, granted: HashSet::new() };
            for a in &claims.access {
                for act in &a.actions {
                    access.granted.insert(Scope { kind: a.kind.clone(), name: a.name.clone(), action: act.clone() });
                }
            }
            if scopes.iter().all(|s| access.allows(s)) {
                return Ok(access);
            }
            return Err(self.challenge(scopes, Some("insufficient_scope")));
        }
        let user = self.basic_user(headers).map_err(|_| self.challenge(scopes, None))?;
        if user.is_none() && (scopes.is_empty() || !scopes.iter().all(|s| self.permitted(None, s))) {
            return Err(self.challenge(scopes, None));
        }
        if !scopes.iter().all(|s| self.permitted(user.as_deref(), s)) {
            return Err(RegError::new(StatusCode::FORBIDDEN, "DENIED", "requested access to the resource is denied"));
        }
        Ok(self.access_of(user.as_deref(), scopes))
    }

    fn access_of(&self, account: Option<&str>, scopes: &[Scope]) -> Access {
        // Basic mode: compute lazily what else (e.g. a mount's source) the account may do.
        let mut granted = HashSet::new();
        for s in scopes {
            granted.insert(s.clone());
        }
        let all = account.is_some() && self.cfg.rules.is_empty();
        Access { all, granted }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    }

    fn verify_token(&self, tok: &str) -> Option<Claims> {
        let mut parts = tok.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(format!("{h}.{p}").as_bytes());
        mac.verify_slice(&sig).ok()?;
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "HS256" {
            return None;
        }
        let c: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
        let t = now();
        (c.aud == self.cfg.service && c.exp > t && c.nbf <= t + 60).then_some(c)
    }

    /// `GET /token?service=…&scope=…`: issues a token with the requested scopes the account
    /// may have (possibly none). Wrong credentials are a 401.
    pub fn issue_token(&self, headers: &HeaderMap, q: &[(String, String)]) -> Result<(StatusCode, Vec<u8>), RegError> {
        if self.cfg.token_realm.is_none() {
            return Err(RegError::new(StatusCode::NOT_FOUND, "UNSUPPORTED", "this registry does not issue tokens"));
        }
        let user = self.basic_user(headers).map_err(|_| {
            let mut e = RegError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "invalid username or password");
            e.headers.push((header::WWW_AUTHENTICATE, "Basic realm=\"skiff-registry\"".into()));
            e
        })?;
        let mut access: Vec<TokenAccess> = Vec::new();
        for (k, v) in q {
            if k != "scope" {
                continue;
            }
            for part in v.split(' ') {
                for s in parse_scope(part) {
                    if !self.permitted(user.as_deref(), &s) {
                        continue;
                    }
                    match access.iter_mut().find(|a| a.kind == s.kind && a.name == s.name) {
                        Some(a) => {
                            if !a.actions.contains(&s.action) {
                                a.actions.push(s.action)
                            }
                        }
                        None => access.push(TokenAccess { kind: s.kind, name: s.name, actions: vec![s.action] }),
                    }
                }
            }
        }
        let t = now();
        let claims = Claims {
            iss: "skiff-registry".into(),
            sub: user.clone().unwrap_or_default(),
            aud: self.cfg.service.clone(),
            exp: t + TOKEN_TTL,
            nbf: t.saturating_sub(10),
            iat: t,
            access,
        };
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.sign(format!("{h}.{p}").as_bytes()));
        let token = format!("{h}.{p}.{sig}");
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_TTL,
            "issued_at": skiff_common::timefmt::now(),
        });
        Ok((StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default()))
    }
}

fn scope_string(scopes: &[Scope]) -> Option<String> {
    let mut by: Vec<(String, String, Vec<String>)> = Vec::new();
    for s in scopes {
        match by.iter_mut().find(|(k, n, _)| k == &s.kind && n == &s.name) {
            Some((_, _, a)) => a.push(s.action.clone()),
            None => by.push((s.kind.clone(), s.name.clone(), vec![s.action.clone()])),
        }
    }
    if by.is_empty() {
        return None;
    }
    Some(by.iter().map(|(k, n, a)| format!("{k}:{n}:{}", a.join(","))).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(realm: bool, rules: Vec<Rule>) -> (Auth, tempfile::TempDir) {
        let t = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let hp = t.path().join("htpasswd");
        std::fs::write(&hp, format!("# users\nalice:{hash}\n")).unwrap();
        let cfg = AuthConfig {
            htpasswd: Some(hp),
            token_realm: realm.then(|| "http://127.0.0.1:5000/token".into()),
            service: "skiff".into(),
            anonymous_pull: false,
            rules,
        };
        (Auth::new(cfg, t.path()).unwrap(), t)
    }

    fn basic(u: &str, p: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))).parse().unwrap());
        h
    }

    #[test]
    fn basic_mode() {
        let (a, _t) = auth(false, vec![]);
        let s = [Scope::repo("x", "push")];
        assert!(a.authorize(&basic("alice", "secret"), &s).is_ok());
        assert_eq!(a.authorize(&basic("alice", "wrong"), &s).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.authorize(&HeaderMap::new(), &s).unwrap_err().status, StatusCode::UNAUTHORIZED);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(a.authorize(&h, &s).is_err());
    }

    #[test]
    fn token_flow_and_scopes() {
        let rules = vec![Rule {
            account: "alice".into(),
            repository: "alice/*".into(),
            actions: vec!["pull".into(), "push".into()],
        }];
        let (a, _t) = auth(true, rules);
        let need = [Scope::repo("alice/app", "push")];
        let e = a.authorize(&HeaderMap::new(), &need).unwrap_err();
        let ch = &e.headers[0].1;
        assert!(ch.contains("scope=\"repository:alice/app:push\""), "{ch}");
        let q = vec![
            ("service".to_string(), "skiff".to_string()),
            ("scope".to_string(), "repository:alice/app:pull,push".to_string()),
            ("scope".to_string(), "repository:bob/app:pull".to_string()),
        ];
        let (_, body) = a.issue_token(&basic("alice", "secret"), &q).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let tok = v["token"].as_str().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {tok}").parse().unwrap());
        assert!(a.authorize(&h, &need).is_ok());
        assert!(a.authorize(&h, &[Scope::repo("bob/app", "pull")]).is_err());
        // tampered token
        // A token whose signature is for other bytes: change one character in the middle.
        let mut bytes = tok.as_bytes().to_vec();
        let mid = tok.find('.').unwrap() + 5;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bytes).unwrap();
        let mut h2 = HeaderMap::new();
        h2.insert(header::AUTHORIZATION, format!("Bearer {bad}").parse().unwrap());
        assert!(a.authorize(&h2, &need).is_err());
        assert!(a.issue_token(&basic("alice", "nope"), &q).is_err());
        // anonymous token grants nothing here
        let (_, body) = a.issue_token(&HeaderMap::new(), &q).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["token"].as_str().unwrap().len() > 10);
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(parse_scope("repository:a/b:pull,push").len(), 2);
        assert_eq!(parse_scope("repository:host:5000/a:pull")[0].name, "host:5000/a");
        assert!(parse_scope("junk").is_empty());
        assert!(parse_htpasswd("bob:plain").is_err());
    }
}
