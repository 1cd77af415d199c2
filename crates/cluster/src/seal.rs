//! Encryption at rest: the keys that seal a manager's Raft data and, under autolock, its TLS key.
//!
//! Two levels, as swarmkit's: a random *data key* (DEK) seals every Raft log entry and snapshot
//! a manager writes; the DEK and the node's TLS key are kept either in the clear (0600 files in a
//! 0700 directory) or, with `--autolock`, sealed by the *unlock key* (KEK), which no node writes
//! to disk — an operator holds it and gives it back with `docker swarm unlock`. The unlock key
//! itself travels in the Raft store (sealed by each manager's DEK), so every manager can re-seal
//! its own files when the key is rotated.
//!
//! Sealed bytes are `SKS1 ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag)`; the caller's
//! *context* (what the bytes are, e.g. a log index) is authenticated too, so sealed rows cannot
//! be swapped for one another.

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// What every sealed blob starts with.
pub const MAGIC: &[u8; 4] = b"SKS1";
/// The unlock key's text form: `SWMKEY-1-` and the key in unpadded base64, as swarmkit's.
const UNLOCK_PREFIX: &str = "SWMKEY-1-";
const TAG_LEN: usize = 16;

/// Why sealed bytes or an unlock key were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Wrong key, or the bytes were changed.
    #[error("cannot decrypt: wrong key or damaged data")]
    Open,
    /// Not sealed bytes at all (too short, no magic).
    #[error("not sealed data")]
    NotSealed,
    /// An unlock key that is not one.
    #[error("invalid unlock key: {0}")]
    InvalidKey(&'static str),
}

/// A 256-bit key: a DEK or an unlock key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A new random key.
    pub fn generate() -> Key {
        Key(rand::random())
    }

    pub fn from_bytes(b: [u8; 32]) -> Key {
        Key(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as an operator sees it: `SWMKEY-1-…`.
    pub fn to_unlock_key(&self) -> String {
        format!("{UNLOCK_PREFIX}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0))
    }

    /// Parses `SWMKEY-1-…` (surrounding whitespace allowed, as the CLI reads it from a line).
    pub fn parse_unlock_key(s: &str) -> Result<Key, SealError> {
        let body = s.trim().strip_prefix(UNLOCK_PREFIX).ok_or(SealError::InvalidKey("it must start with SWMKEY-1-"))?;
        if body.len() != 43 {
            return Err(SealError::InvalidKey("wrong length"));
        }
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| SealError::InvalidKey("not base64"))?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| SealError::InvalidKey("wrong length"))?;
        Ok(Key(bytes))
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }

    /// Seals `plain`, binding `context` to it.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plain.to_vec();
        self.aead()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(context), &mut body)
            .expect("AES-GCM seals any length this process holds");
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`Key::seal`] sealed with the same context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        if !is_sealed(sealed) || sealed.len() < MAGIC.len() + NONCE_LEN + TAG_LEN {
            return Err(SealError::NotSealed);
        }
        let (nonce, body) = sealed[MAGIC.len()..].split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::NotSealed)?;
        let mut body = body.to_vec();
        let plain = self.aead().open_in_place(nonce, Aad::from(context), &mut body).map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Whether `b` is sealed bytes (by its magic), as opposed to what an older skiffd stored clear.
pub fn is_sealed(b: &[u8]) -> bool {
    b.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_context() {
        let k = Key::generate();
        let s = k.seal(b"raft entry", b"log/7");
        assert!(is_sealed(&s));
        assert!(!s.windows(10).any(|w| w == b"raft entry"), "the plaintext is not in the sealed bytes");
        assert_eq!(k.open(&s, b"log/7").unwrap(), b"raft entry");
        assert_eq!(k.open(&s, b"log/8"), Err(SealError::Open), "a row moved to another index is refused");
        assert_eq!(Key::generate().open(&s, b"log/7"), Err(SealError::Open));
        assert_ne!(k.seal(b"raft entry", b"log/7"), s, "a fresh nonce every time");
        assert_eq!(k.open(&k.seal(b"", b""), b"").unwrap(), b"");
    }

    #[test]
    fn damaged_and_hostile_bytes_are_refused() {
        let k = Key::generate();
        let s = k.seal(b"secret", b"c");
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 0x40;
            assert!(k.open(&bad, b"c").is_err(), "a flipped byte at {i} is caught");
        }
        for n in 0..s.len() {
            assert!(k.open(&s[..n], b"c").is_err(), "truncated to {n}");
        }
        assert_eq!(k.open(b"{\"plain\":1}", b"c"), Err(SealError::NotSealed));
        assert_eq!(k.open(b"SKS1", b"c"), Err(SealError::NotSealed));
    }

    #[test]
    fn unlock_keys_round_trip_and_hostile_ones_are_refused() {
        let k = Key::generate();
        let text = k.to_unlock_key();
        assert!(text.starts_with("SWMKEY-1-") && text.len() == 9 + 43, "{text}");
        assert_eq!(Key::parse_unlock_key(&format!("  {text}\n")).unwrap(), k);
        // The form dockerd prints (a key from Docker's documentation) parses.
        assert!(Key::parse_unlock_key("SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8").is_ok());
        for bad in [
            "",
            "SWMKEY-1-",
            "SWMKEY-2-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8",
            "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt",
            "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8=",
            "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tT!8",
            "SWMKEY-1-ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ+",
            "SWMTKN-1-0j52ln6hxjpxk2wgk917abcnxywj3xed0y8vi1e5m9t3uttrtu-7bnxvvlz2mrcpfonjuztmtts9",
        ] {
            assert!(Key::parse_unlock_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{k:?}"), "Key(..)", "debug output does not show the key");
    }
}
