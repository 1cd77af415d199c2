//! Image references, parsed and normalized the way Docker does it
//! (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Grammar (distribution's reference package):
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain "/"] path-component ["/" path-component]*
//! domain         := host [":" port]
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag            := [\w][\w.-]{0,127}
//! ```
//! The first component is a domain only if it contains `.` or `:`, is `localhost`, or has
//! upper-case letters; otherwise the domain is `docker.io`, and a one-component path there gets
//! `library/` in front.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;

/// Errors from parsing a reference; messages follow Docker's wording where users see them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    Format,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    #[error("repository name must not be more than {NAME_MAX} characters")]
    TooLong,
    #[error("invalid tag format")]
    Tag,
    #[error("invalid digest: {0}")]
    Digest(#[from] crate::digest::DigestError),
}

/// A normalized reference: always has a domain and a path; tag and digest are optional.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a user-typed reference and fills in Docker's defaults for domain and `library/`
    /// (but not the tag: see [`Reference::with_default_tag`]).
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Format);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName(s.to_string()));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag);
        }
        let (domain, mut path) = split_domain(name);
        if domain.is_empty() || path.is_empty() {
            return Err(ReferenceError::Format);
        }
        let domain = if domain == LEGACY_DOMAIN { DEFAULT_DOMAIN.to_string() } else { domain.to_string() };
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_PREFIX}{path}");
        }
        if path.to_ascii_lowercase() != path {
            return Err(ReferenceError::Uppercase(path));
        }
        if !valid_domain(&domain) || !path.split('/').all(valid_path_component) {
            return Err(ReferenceError::Format);
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::TooLong);
        }
        Ok(Reference { domain, path, tag: tag.map(str::to_string), digest })
    }

    /// Adds `:latest` when the reference has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// Same repository, another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Tag);
        }
        Ok(Reference { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.to_string()), digest: None })
    }

    /// Same repository, pinned to a digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: Some(digest) }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, the repository's full name.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker prints it: `busybox` rather than `docker.io/library/busybox`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The whole reference as Docker prints it (`busybox:latest`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

fn split_domain(name: &str) -> (&str, String) {
    match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            let is_domain = first.contains(['.', ':']) || first == "localhost" || first.to_ascii_lowercase() != first;
            if is_domain { (first, name[i + 1..].to_string()) } else { (DEFAULT_DOMAIN, name.to_string()) }
        }
        None => (DEFAULT_DOMAIN, name.to_string()),
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_path_component(c: &str) -> bool {
    // alnum runs joined by one of: ".", "_", "__", or one or more "-".
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [ipv6]:port
        let Some(end) = rest.find(']') else {
            return false;
        };
        let (h, after) = (&rest[..end], &rest[end + 1..]);
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            None => return after.is_empty(),
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse_normalized(s).unwrap().with_default_tag().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("strongjz/example-httpd"), "docker.io/strongjz/example-httpd:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("localhost/foo"), "localhost/foo:latest");
        assert_eq!(norm("127.0.0.1:5000/foo"), "127.0.0.1:5000/foo:latest");
        assert_eq!(norm("[::1]:5000/foo"), "[::1]:5000/foo:latest");
        assert_eq!(norm("a__b/c-----d.e_f"), "docker.io/a__b/c-----d.e_f:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(norm(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
        assert_eq!(norm(&format!("busybox:1@{d}")), format!("docker.io/library/busybox:1@{d}"));
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse_normalized("busybox").unwrap().with_default_tag();
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.familiar_repository(), "busybox");
        let r = Reference::parse_normalized("docker.io/strongjz/x:1").unwrap();
        assert_eq!(r.familiar(), "strongjz/x:1");
        let r = Reference::parse_normalized("localhost:5000/x:1").unwrap();
        assert_eq!(r.familiar(), "localhost:5000/x:1");
    }

    #[test]
    fn rejects_hostile_references() {
        let long = "a".repeat(300);
        for bad in [
            "",
            ":",
            "@",
            "busybox:",
            "busybox@",
            "busybox@sha256:123",
            "Busybox",
            "foo/Bar",
            "../etc/passwd",
            "a/../b",
            "a//b",
            "/busybox",
            "busybox/",
            "-busybox",
            "busybox-",
            "bus..ybox",
            "busy___box",
            "busybox:-tag",
            "busybox:t@g",
            "host:port/x",
            "loc alhost/x",
            "busybox\0",
            "b\nusybox",
            long.as_str(),
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(Reference::parse_normalized(bad).is_err(), "{bad:?} accepted");
        }
        let long_tag = format!("busybox:{}", "t".repeat(129));
        assert!(Reference::parse_normalized(&long_tag).is_err());
    }

    #[test]
    fn uppercase_message_matches_docker() {
        let e = Reference::parse_normalized("Busybox").unwrap_err();
        assert_eq!(e.to_string(), "invalid reference format: repository name (library/Busybox) must be lowercase");
    }
}
