//! Parallel gzip for layer blobs (the pigz idea): the input is cut into chunks that are
//! deflated independently on every core, each ending byte-aligned with a full flush, and the
//! pieces are concatenated into one standard gzip member (any gunzip reads it).
//!
//! Incompressible chunks (already-compressed files, random data) are detected on a sample and
//! stored instead: deflating them only costs time and, with zlib-rs's fastest level, even
//! grows them and makes them slow to inflate.

use std::io::{self, Read, Write};
use std::sync::mpsc;

use flate2::{Compress, Compression, FlushCompress};

/// Input bytes per independently compressed chunk.
const CHUNK: usize = 1 << 20;
/// Bytes of a chunk tried first to judge whether it compresses.
const SAMPLE: usize = 32 << 10;

fn deflate_raw(input: &[u8], level: u32, finish: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(input.len() + input.len() / 64 + 64);
    let flush = if finish { FlushCompress::Finish } else { FlushCompress::Full };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c.compress_vec(&input[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        match status {
            flate2::Status::StreamEnd => return Ok(out),
            _ if done_input && !finish && out.capacity() > out.len() => return Ok(out),
            _ => {}
        }
    }
}

/// Compresses one chunk: stored if a sample shows it does not compress, else deflate at `level`.
fn compress_chunk(input: &[u8], level: u32) -> io::Result<Vec<u8>> {
    if level > 0 && input.len() > SAMPLE {
        let probe = deflate_raw(&input[..SAMPLE], level, false)?;
        if probe.len() * 100 >= SAMPLE * 97 {
            return deflate_raw(input, 0, false);
        }
    }
    let out = deflate_raw(input, level, false)?;
    if out.len() > input.len() + input.len() / 100 + 64 {
        return deflate_raw(input, 0, false);
    }
    Ok(out)
}

/// Gzips everything `r` yields into `w` using `threads` workers; returns the input length.
pub fn compress<R: Read, W: Write>(mut r: R, mut w: W, level: u32, threads: usize) -> io::Result<(W, u64)> {
    let threads = threads.max(1);
    // gzip header: magic, deflate, no flags, no mtime, xfl 0, OS unknown.
    w.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    std::thread::scope(|s| -> io::Result<()> {
        let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel::<(usize, io::Result<Vec<u8>>)>();
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), res_tx.clone());
            s.spawn(move || {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((i, buf)) = job else { return };
                    if tx.send((i, compress_chunk(&buf, level))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next_out = 0usize;
        let mut sent = 0usize;
        let mut eof = false;
        let mut emit =
            |pending: &mut std::collections::BTreeMap<usize, Vec<u8>>, next_out: &mut usize| -> io::Result<()> {
                while let Some(b) = pending.remove(next_out) {
                    w.write_all(&b)?;
                    *next_out += 1;
                }
                Ok(())
            };
        while !eof || next_out < sent {
            // Keep up to 2×threads chunks in flight.
            while !eof && sent - next_out < threads * 2 {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    let k = r.read(&mut buf[n..])?;
                    if k == 0 {
                        eof = true;
                        break;
                    }
                    n += k;
                }
                buf.truncate(n);
                if n == 0 {
                    break;
                }
                crc.update(&buf);
                total += n as u64;
                job_tx.send((sent, buf)).map_err(|_| io::Error::other("compression worker stopped"))?;
                sent += 1;
            }
            if next_out < sent {
                let (i, r) = res_rx.recv().map_err(|_| io::Error::other("compression worker stopped"))?;
                pending.insert(i, r?);
                emit(&mut pending, &mut next_out)?;
            }
        }
        drop(job_tx);
        Ok(())
    })?;
    // The final (empty) block, then the trailer.
    w.write_all(&deflate_raw(&[], level, true)?)?;
    w.write_all(&crc.finalize().to_le_bytes())?;
    w.write_all(&(total as u32).to_le_bytes())?;
    Ok((w, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let (gz, n) = compress(data, Vec::new(), 1, threads).unwrap();
        assert_eq!(n, data.len() as u64);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        gz
    }

    #[test]
    fn standard_gzip_for_all_kinds_of_input() {
        assert!(roundtrip(b"", 2).len() < 32);
        roundtrip(b"hello", 1);
        let text: Vec<u8> = b"layer text compresses well\n".iter().cycle().take(5 * CHUNK + 123).copied().collect();
        let gz = roundtrip(&text, 3);
        assert!(gz.len() < text.len() / 20, "text compresses: {}", gz.len());
        // Pseudo-random: stored, barely larger than the input.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let rnd: Vec<u8> = (0..3 * CHUNK + 7)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let gz = roundtrip(&rnd, 2);
        assert!(gz.len() < rnd.len() + rnd.len() / 100, "random is stored: {}", gz.len());
        // gunzip agrees too (if present).
        if let Ok(mut c) = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            let mut stdin = c.stdin.take().unwrap();
            std::thread::spawn(move || stdin.write_all(&gz));
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.stdout, rnd);
        }
    }
}
