//! A reader that sits under the tar parser and refuses tar streams whose metadata entries
//! would make the parser hold unbounded amounts of memory.
//!
//! Why: the `tar` crate reads a GNU long name (`L`), long link (`K`) or PAX extension header
//! (`x`) whole into memory before the entry it describes, whatever size the header claims. A
//! 2 MB gzip bomb can claim gigabytes of "name" and take the daemon's memory with it. Go's
//! `archive/tar` refuses such entries above 1 MiB; so does this guard.
//!
//! Design: the guard follows the archive's framing exactly as the parser does — 512-byte
//! header blocks, entry data rounded up to 512 bytes, a PAX `size` record overriding the size
//! of the entry it describes, GNU sparse extension blocks after a sparse header — and passes
//! every byte through unchanged. It only looks; the parser still decides what the bytes mean.
//! After the end-of-archive marker (or a header the parser would reject) it stops looking.
//!
//! It is also as lenient as Go's reader about one thing: a stream that ends right after an
//! entry's data, without the entry's padding and the end-of-archive marker, ends there (the docker
//! CLI sends build contexts cut that way when it adds a Dockerfile from outside the context). The
//! guard supplies the missing zeros; a stream cut inside an entry's data still fails.

use std::io::{self, Read};

/// The largest metadata entry (long name, long link, PAX records) accepted.
pub const MAX_METADATA: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// See the module documentation.
pub struct TarGuard<R> {
    inner: R,
    /// Bytes to pass through before the next header: served from `buf` first, then `inner`.
    passthrough: u64,
    /// How many of the last `passthrough` bytes are padding (zeros after an entry's data).
    padding: u64,
    buf: Vec<u8>,
    buf_pos: usize,
    /// The size a PAX header set for the next file entry.
    pax_size: Option<u64>,
    /// Extension blocks of a GNU sparse entry still to come (each may announce another).
    sparse_ext: bool,
    /// The data (padded) of that sparse entry, which follows its last extension block, and
    /// its padding.
    pending_data: u64,
    pending_pad: u64,
    /// Stopped looking (end of archive, or a header the parser rejects).
    done: bool,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            passthrough: 0,
            padding: 0,
            buf: Vec::new(),
            buf_pos: 0,
            pax_size: None,
            sparse_ext: false,
            pending_data: 0,
            pending_pad: 0,
            done: false,
        }
    }

    /// Reads up to `n` bytes from the inner reader into `buf` (fewer only at end of stream).
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        self.buf.clear();
        self.buf_pos = 0;
        let mut got = 0;
        self.buf.resize(n, 0);
        while got < n {
            match self.inner.read(&mut self.buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(got);
        Ok(got)
    }

    /// Reads the next header (and, for a PAX header, its records) into `buf` and works out
    /// how much follows it.
    fn next_header(&mut self) -> io::Result<()> {
        if self.sparse_ext {
            if self.fill(BLOCK as usize)? < BLOCK as usize {
                self.done = true;
                return Ok(());
            }
            // `isextended` follows the 21 sparse records of 24 bytes.
            self.sparse_ext = self.buf[504] == 1;
            if !self.sparse_ext {
                self.passthrough = self.pending_data;
                self.padding = self.pending_pad;
            }
            return Ok(());
        }
        if self.fill(BLOCK as usize)? < BLOCK as usize || self.buf.iter().all(|b| *b == 0) {
            self.done = true;
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(&self.buf);
        let Ok(mut size) = h.entry_size() else {
            self.done = true;
            return Ok(());
        };
        let kind = h.entry_type();
        let is_ext = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        if !is_ext && let Some(s) = self.pax_size.take() {
            size = s;
        }
        let held = recognized && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if held && size > MAX_METADATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tar entry of type {:?} declares {size} bytes of metadata (more than {MAX_METADATA} is refused)",
                    kind.as_byte() as char
                ),
            ));
        }
        let Some(padded) = size.div_ceil(BLOCK).checked_mul(BLOCK) else {
            // The parser fails on this size too.
            self.done = true;
            return Ok(());
        };
        if recognized && kind.is_pax_local_extensions() {
            // Keep the records with the header: the next entry's size may come from them.
            let header = std::mem::take(&mut self.buf);
            self.fill(padded as usize)?;
            let records = &self.buf[..(size as usize).min(self.buf.len())];
            self.pax_size = pax_size(records);
            let mut all = header;
            all.extend_from_slice(&self.buf);
            self.buf = all;
            self.buf_pos = 0;
            self.passthrough = 0;
            return Ok(());
        }
        if !is_ext && kind.is_gnu_sparse() && h.as_gnu().is_some_and(|g| g.is_extended()) {
            self.sparse_ext = true;
            self.pending_data = padded;
            self.pending_pad = padded - size;
            self.passthrough = 0;
            return Ok(());
        }
        self.passthrough = padded;
        self.padding = padded - size;
        Ok(())
    }
}

/// The `size` record of PAX extensions, as the parser reads it (a malformed record anywhere
/// before it means none).
fn pax_size(records: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(records) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.buf_pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.buf_pos);
                out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
                self.buf_pos += n;
                return Ok(n);
            }
            if self.done {
                return self.inner.read(out);
            }
            if self.passthrough > 0 {
                let want = out.len().min(self.passthrough.min(usize::MAX as u64) as usize);
                let n = self.inner.read(&mut out[..want])?;
                if n == 0 {
                    self.done = true;
                    if self.passthrough <= self.padding {
                        // Cut after the data: the padding and an end-of-archive marker.
                        self.buf = vec![0u8; self.passthrough as usize + 2 * BLOCK as usize];
                        self.buf_pos = 0;
                        self.passthrough = 0;
                        continue;
                    }
                    return Ok(0);
                }
                self.passthrough -= n as u64;
                return Ok(n);
            }
            self.next_header()?;
        }
    }
}
