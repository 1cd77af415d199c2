//! Layer compression: detect gzip / zstd / plain tar by magic bytes and decompress on the fly.

use std::io::{self, Chain, Cursor, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader with its first bytes already read for sniffing.
pub type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

/// Reads up to 4 bytes to detect the compression, and returns a reader that yields everything.
pub fn peek<R: Read>(mut r: R) -> io::Result<(Compression, Peeked<R>)> {
    let mut head = Vec::with_capacity(4);
    let mut buf = [0u8; 4];
    while head.len() < 4 {
        let n = match r.read(&mut buf[..4 - head.len()]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok((Compression::detect(&head), Cursor::new(head).chain(r)))
}

/// Wraps a reader so it yields the uncompressed tar stream, whatever the compression.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let (c, r) = peek(r)?;
    let out: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(256 << 10, r))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    };
    Ok((c, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn round_trips_each_kind() {
        let data = b"hello layer".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for (bytes, kind) in [(data.clone(), Compression::None), (gz, Compression::Gzip), (zs, Compression::Zstd)] {
            let (c, mut r) = decompress(&bytes[..]).unwrap();
            assert_eq!(c, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let data = b"hello layer".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let (_, mut r) = decompress(&gz[..gz.len() / 2]).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }

    #[test]
    fn short_input_is_plain() {
        let (c, mut r) = decompress(&b"ab"[..]).unwrap();
        assert_eq!(c, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
