//! Digests as the registry accepts them: `sha256:<64 hex>` and `sha512:<128 hex>`.
//!
//! The image store works in sha256 only; the registry also stores sha512-addressed content,
//! as the distribution spec allows. On disk a digest is its hex alone: the length tells the
//! algorithm apart (64 or 128 digits), so sha256 paths are unchanged.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algo: Algo,
    hex: String,
}

impl Digest {
    pub fn of(algo: Algo, bytes: &[u8]) -> Digest {
        let hex = match algo {
            Algo::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algo::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Digest { algo, hex }
    }

    /// From the hex alone (a file name); the length gives the algorithm.
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        let algo = match hex.len() {
            64 => Algo::Sha256,
            128 => Algo::Sha512,
            _ => return Err(format!("invalid digest hex {hex:?}")),
        };
        Self::checked(algo, hex)
    }

    fn checked(algo: Algo, hex: &str) -> Result<Digest, String> {
        if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("invalid {} digest: {} lower-case hex digits expected", algo.name(), algo.hex_len()));
        }
        Ok(Digest { algo, hex: hex.to_string() })
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, hex) = s.split_once(':').ok_or_else(|| format!("invalid digest {s:?}: expected algorithm:hex"))?;
        let algo = match a {
            "sha256" => Algo::Sha256,
            "sha512" => Algo::Sha512,
            other => return Err(format!("unsupported digest algorithm {other:?}")),
        };
        Digest::checked(algo, hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing in one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256, u64),
    Sha512(Sha512, u64),
}

impl Hasher {
    pub fn new(algo: Algo) -> Hasher {
        match algo {
            Algo::Sha256 => Hasher::Sha256(Sha256::new(), 0),
            Algo::Sha512 => Hasher::Sha512(Sha512::new(), 0),
        }
    }
    pub fn algo(&self) -> Algo {
        match self {
            Hasher::Sha256(..) => Algo::Sha256,
            Hasher::Sha512(..) => Algo::Sha512,
        }
    }
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h, n) => {
                h.update(b);
                *n += b.len() as u64;
            }
            Hasher::Sha512(h, n) => {
                h.update(b);
                *n += b.len() as u64;
            }
        }
    }
    pub fn len(&self) -> u64 {
        match self {
            Hasher::Sha256(_, n) | Hasher::Sha512(_, n) => *n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h, _) => Digest { algo: Algo::Sha256, hex: hex::encode(h.finalize()) },
            Hasher::Sha512(h, _) => Digest { algo: Algo::Sha512, hex: hex::encode(h.finalize()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_hash() {
        let d256 = Digest::of(Algo::Sha256, b"abc");
        let d512 = Digest::of(Algo::Sha512, b"abc");
        assert_eq!(d256.to_string().parse::<Digest>().unwrap(), d256);
        assert_eq!(d512.to_string().parse::<Digest>().unwrap(), d512);
        assert_eq!(Digest::from_hex(d512.hex()).unwrap(), d512);
        let mut h = Hasher::new(Algo::Sha512);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d512);
        for bad in ["", "sha256:", "md5:00", "sha256:ABC", "sha512:00", &format!("sha256:{}", d512.hex()), "sha256"] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(Digest::from_hex("../x").is_err());
    }
}
