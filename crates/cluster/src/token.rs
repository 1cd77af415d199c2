//! Join tokens: `SWMTKN-1-<root CA digest, base 36, 50 characters>-<secret, base 36, 25>`.
//!
//! The digest pins the root CA: a joining node accepts the manager only if the manager's chain
//! holds the CA whose SHA-256 the token names, so a man in the middle without the CA's key is
//! refused before the secret is sent. The secret (128 random bits) admits the node in the role
//! of the token it matches; each role has its own, and rotating one leaves the other.

use std::fmt;

use crate::ca::RootCa;
use crate::{ClusterError, Result};

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
const DIGEST_LEN: usize = 50;
const SECRET_LEN: usize = 25;
const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the root CA certificate (DER).
    pub ca_digest: [u8; 32],
    /// The role's secret, base 36.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is a credential: never in logs.
        f.debug_struct("JoinToken").field("ca_digest", &base36(&self.ca_digest, DIGEST_LEN)).finish()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", base36(&self.ca_digest, DIGEST_LEN), self.secret)
    }
}

impl JoinToken {
    /// A new token for `ca` with a fresh secret.
    pub fn generate(ca: &RootCa) -> JoinToken {
        let secret: [u8; 16] = rand::random();
        JoinToken { ca_digest: ca.digest(), secret: base36(&secret, SECRET_LEN) }
    }

    /// Parses a token; anything but the exact form is [`ClusterError::InvalidToken`].
    pub fn parse(s: &str) -> Result<JoinToken> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [prefix, version, digest, secret] = parts.as_slice() else { return Err(ClusterError::InvalidToken) };
        let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| ALPHABET.contains(&b));
        if *prefix != PREFIX || *version != VERSION || !ok(digest, DIGEST_LEN) || !ok(secret, SECRET_LEN) {
            return Err(ClusterError::InvalidToken);
        }
        let ca_digest = from_base36(digest).ok_or(ClusterError::InvalidToken)?;
        Ok(JoinToken { ca_digest, secret: secret.to_string() })
    }

    /// Whether the root CA a manager presented is the one this token names.
    pub fn check_ca(&self, ca: &RootCa) -> Result<()> {
        if ca.digest() == self.ca_digest { Ok(()) } else { Err(ClusterError::CaMismatch) }
    }

    /// Whether `presented` carries this token's secret (and names the same CA), compared in
    /// constant time.
    pub fn admits(&self, presented: &JoinToken) -> bool {
        let a = self.secret.as_bytes();
        let b = presented.secret.as_bytes();
        let mut diff = (a.len() ^ b.len()) as u8;
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        for (x, y) in self.ca_digest.iter().zip(&presented.ca_digest) {
            diff |= x ^ y;
        }
        diff == 0
    }
}

/// `bytes` (big-endian) in base 36, left-padded with zeros to `width`.
fn base36(bytes: &[u8], width: usize) -> String {
    let mut n = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("ascii")
}

/// The 32 bytes a 50-digit base-36 string stands for; `None` if it does not fit.
fn from_base36(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for c in s.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c)? as u32;
        for b in out.iter_mut().rev() {
            let cur = *b as u32 * 36 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_pin_their_ca() {
        let ca = RootCa::generate().unwrap();
        let t = JoinToken::generate(&ca);
        let s = t.to_string();
        assert!(s.starts_with("SWMTKN-1-") && s.len() == 9 + 50 + 1 + 25, "{s}");
        let back = JoinToken::parse(&s).unwrap();
        assert_eq!(back, t);
        back.check_ca(&ca).unwrap();
        let other = RootCa::generate().unwrap();
        assert!(matches!(back.check_ca(&other), Err(ClusterError::CaMismatch)));
        assert!(t.admits(&back));
        assert!(!t.admits(&JoinToken::generate(&ca)), "another secret");
        assert!(!format!("{t:?}").contains(&t.secret), "the secret stays out of Debug");
    }

    #[test]
    fn base36_is_exact_at_the_edges() {
        for bytes in [[0u8; 32], [0xff; 32], { [1u8; 32] }] {
            let s = base36(&bytes, 50);
            assert_eq!(s.len(), 50);
            assert_eq!(from_base36(&s), Some(bytes));
        }
        assert_eq!(from_base36(&"z".repeat(50)), None, "36^50 - 1 does not fit in 256 bits");
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let ca = RootCa::generate().unwrap();
        let good = JoinToken::generate(&ca).to_string();
        let bad = [
            String::new(),
            "SWMTKN".into(),
            good.replace("SWMTKN-1", "SWMTKN-2"),
            good.replace("SWMTKN", "swmtkn"),
            good.to_uppercase(),
            format!("{good}-x"),
            good[..good.len() - 1].to_string(),
            format!("SWMTKN-1-{}-{}", "z".repeat(50), "0".repeat(25)),
            format!("SWMTKN-1-{}-{}", "0".repeat(50), "é".repeat(13)),
            "SWMTKN-1---".into(),
        ];
        for b in bad {
            assert!(matches!(JoinToken::parse(&b), Err(ClusterError::InvalidToken)), "{b:?} accepted");
        }
        assert!(JoinToken::parse(&format!("  {good}\n")).is_ok(), "surrounding whitespace is forgiven");
    }
}
