//! Docker's json-file log format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//!
//! The monitor writes it; the daemon reads it for `logs`. Lines longer than 16 KiB are split
//! into several entries (the first ones without a trailing newline), as Docker does.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest entry before a partial line is flushed.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    /// `--log-opt labels/env/tag` values, on every entry (shown by `docker logs --details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<std::collections::BTreeMap<String, String>>,
    pub time: String,
}

/// Rotation of a json-file log (`--log-opt max-size=… max-file=…`), as Docker's json-file
/// driver does it: once the file has reached `max_size` bytes, the next write first shifts
/// `log.1` → `log.2` … (the oldest beyond `max_files - 1` is deleted), renames the log to
/// `log.1` and starts a new one; with `max_files` 1 the log is truncated instead.
/// With `compress`, rotated files are gzip-compressed (`log.1.gz` …), as the json-file and
/// `local` drivers' `compress` option does; reading takes either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rotation {
    pub max_size: Option<u64>,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
    #[serde(default)]
    pub compress: bool,
}

/// The path of the `n`th rotated file (`n` ≥ 1; 0 is the log itself), uncompressed.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The path of the `n`th rotated file compressed (`log.N.gz`).
fn rotated_gz(path: &Path, n: u32) -> PathBuf {
    let mut s = rotated(path, n).into_os_string();
    s.push(".gz");
    PathBuf::from(s)
}

/// The `n`th rotated file as it is on disk (plain or compressed), if it exists.
fn rotated_existing(path: &Path, n: u32) -> Option<PathBuf> {
    [rotated(path, n), rotated_gz(path, n)].into_iter().find(|p| p.exists())
}

/// Whether a log file is a compressed rotated one.
fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// The files of a log, oldest first (rotated ones that exist, plain or compressed, then the
/// log itself). Open them with [`open`].
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    let mut n = 1;
    while let Some(p) = rotated_existing(path, n) {
        files.push(p);
        n += 1;
    }
    files.reverse();
    files
}

/// Opens one file of a log for reading, decompressing a rotated `.gz` one.
pub fn open(path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
    let f = File::open(path)?;
    if is_gz(path) {
        return Ok(Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f))));
    }
    Ok(Box::new(f))
}

/// Compresses `from` into `to` in a child process, so the container's output never waits for
/// it; returns a pidfd that becomes readable when the child is done (or `None` when the work
/// was done here, if the fork failed). The monitor is single-threaded, so forking it is safe;
/// its SIGCHLD reaper collects the child like any other orphan.
fn compress_in_child(from: &Path, to: &Path) -> io::Result<Option<std::os::fd::OwnedFd>> {
    // SAFETY: the child only compresses one file (allocating through the fork-safe system
    // allocator) and leaves with _exit, running no destructors or atexit handlers.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // Nothing of the monitor's stays open here (the container's pipes, clients'
            // sockets): a client or the container sees its end close when the monitor closes
            // it, not when the compression is done. The files are opened by path.
            // SAFETY: a plain system call on this process's own descriptors.
            unsafe { nix::libc::close_range(3, u32::MAX, 0) };
            let code = if compress_file(from, to).is_ok() { 0 } else { 1 };
            // SAFETY: ends the child at once (see above).
            unsafe { nix::libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let pid = rustix::process::Pid::from_raw(child.as_raw()).expect("a child's pid is positive");
            match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => Ok(Some(fd)),
                // No pidfd (an old kernel): wait for the child here.
                Err(_) => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    Ok(None)
                }
            }
        }
        Err(_) => compress_file(from, to).map(|()| None),
    }
}

/// Compresses `from` into `to` (through a temporary file renamed into place, so a reader or a
/// crash never sees half a file), then removes `from`.
fn compress_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut tmp = to.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = File::open(from)?;
    // The fastest level: a rotation happens in the monitor's loop, between two writes.
    let mut enc = flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::fast());
    io::copy(&mut input, &mut enc)?;
    enc.finish()?.sync_all()?;
    std::fs::rename(&tmp, to)?;
    std::fs::remove_file(from)
}

/// Appends entries to a json-file log.
pub struct Writer {
    file: File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
    attrs: Option<std::collections::BTreeMap<String, String>>,
    partial: [Vec<u8>; 2],
    buf: Vec<u8>,
    /// The child compressing the newest rotated file, if one may still run (a pidfd).
    compressing: Option<std::os::fd::OwnedFd>,
}

impl Writer {
    pub fn open(path: &Path) -> io::Result<Writer> {
        Self::open_rotating(path, Rotation::default())
    }

    pub fn open_rotating(path: &Path, rotation: Rotation) -> io::Result<Writer> {
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            size,
            rotation,
            attrs: None,
            partial: [Vec::new(), Vec::new()],
            buf: Vec::with_capacity(4096),
            compressing: None,
        })
    }

    /// Attributes written with every entry (none when empty).
    pub fn with_attrs(mut self, attrs: std::collections::BTreeMap<String, String>) -> Writer {
        self.attrs = (!attrs.is_empty()).then_some(attrs);
        self
    }

    /// Waits until the compression of the last rotated file is done (a rotation renames the
    /// rotated files, so it never runs beside one).
    pub fn wait_compression(&mut self) {
        if let Some(fd) = self.compressing.take() {
            let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
            while let Err(rustix::io::Errno::INTR) = rustix::event::poll(&mut fds, None) {}
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.wait_compression();
        let keep = self.rotation.max_files.max(1);
        if keep > 1 {
            let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
            let _ = std::fs::remove_file(rotated_gz(&self.path, keep - 1));
            for n in (1..keep - 1).rev() {
                if let Some(from) = rotated_existing(&self.path, n) {
                    let to = if is_gz(&from) { rotated_gz(&self.path, n + 1) } else { rotated(&self.path, n + 1) };
                    std::fs::rename(&from, to)?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
            if self.rotation.compress {
                self.compressing = compress_in_child(&rotated(&self.path, 1), &rotated_gz(&self.path, 1))?;
            }
        }
        drop(File::options().create(true).write(true).truncate(true).open(&self.path)?);
        self.file = File::options().append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    fn entry(&mut self, stream: Stream, line: &[u8], now: &str) {
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            attrs: self.attrs.clone(),
            time: now.to_string(),
        };
        serde_json::to_writer(&mut self.buf, &e).expect("log entries serialize");
        self.buf.push(b'\n');
    }

    /// Records output of one stream; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: &str) -> io::Result<()> {
        let idx = stream as usize;
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[idx]);
            line.extend_from_slice(&rest[..=pos]);
            for chunk in line.chunks(MAX_LINE) {
                self.entry(stream, chunk, now);
            }
            rest = &rest[pos + 1..];
        }
        self.partial[idx].extend_from_slice(rest);
        while self.partial[idx].len() >= MAX_LINE {
            let chunk: Vec<u8> = self.partial[idx].drain(..MAX_LINE).collect();
            self.entry(stream, &chunk, now);
        }
        self.flush_buf()
    }

    /// Writes out unterminated output (at exit).
    pub fn flush_partial(&mut self, now: &str) -> io::Result<()> {
        for (idx, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            if !self.partial[idx].is_empty() {
                let line = std::mem::take(&mut self.partial[idx]);
                self.entry(stream, &line, now);
            }
        }
        self.flush_buf()
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(max) = self.rotation.max_size else {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
            return Ok(());
        };
        // A rotation falls between entries: an entry starts in the current file while it is
        // below max-size (the one that reaches it ends the file). The entries up to there go
        // in one write — one per entry made a rotating log four times slower.
        let buf = std::mem::take(&mut self.buf);
        let mut rest = &buf[..];
        while !rest.is_empty() {
            if self.size >= max {
                self.rotate()?;
            }
            // The first entry ending at or past max-size ends this write.
            let from = usize::try_from(max - self.size - 1).unwrap_or(usize::MAX);
            let end = rest
                .get(from..)
                .and_then(|r| r.iter().position(|b| *b == b'\n'))
                .map(|p| from + p + 1)
                .unwrap_or(rest.len());
            self.file.write_all(&rest[..end])?;
            self.size += end as u64;
            rest = &rest[end..];
        }
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
}

/// Visits the newline-separated segments of `f`'s first `end` bytes from the last to the first
/// (the first visited is what follows the last newline, possibly empty), reading backwards in
/// blocks; stops when `visit` returns false.
fn rev_segments<F: io::Read + io::Seek + ?Sized>(
    f: &mut F,
    end: u64,
    visit: &mut dyn FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    use std::io::SeekFrom;
    const BLOCK: u64 = 64 << 10;
    let mut pos = end;
    let mut carry = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        let mut buf = vec![0u8; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut cut = buf.len();
        while let Some(i) = buf[..cut].iter().rposition(|b| *b == b'\n') {
            if !visit(&buf[i + 1..cut]) {
                return Ok(());
            }
            cut = i;
        }
        buf.truncate(cut);
        carry = buf;
        pos = start;
    }
    visit(&carry);
    Ok(())
}

/// The last `n` entries `keep` accepts (oldest first), from the log at `path` — its first `len`
/// bytes — and then its rotated files, read backwards: the cost follows `n`, not the log's size
/// (`docker logs --tail`). Also returns where the log's last complete entry ends (an entry being
/// written may follow).
pub fn tail(path: &Path, len: u64, n: usize, keep: &dyn Fn(&Entry) -> bool) -> io::Result<(Vec<Entry>, u64)> {
    let mut out = Vec::new();
    let mut complete_end = 0;
    for i in 0.. {
        let file = if i == 0 { Some(path.to_path_buf()) } else { rotated_existing(path, i) };
        let mut f: Box<dyn ReadSeek> = match file {
            // A compressed rotated file is read whole (it is at most max-size).
            Some(p) if is_gz(&p) => {
                let mut buf = Vec::new();
                open(&p)?.read_to_end(&mut buf)?;
                Box::new(io::Cursor::new(buf))
            }
            Some(p) => match File::open(&p) {
                Ok(f) => Box::new(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound && i == 0 => continue,
                Err(e) => return Err(e),
            },
            None if i == 0 => continue,
            None => break,
        };
        let size = f.seek(io::SeekFrom::End(0))?;
        let end = if i == 0 { len.min(size) } else { size };
        let mut first = true;
        rev_segments(&mut f, end, &mut |seg| {
            if std::mem::take(&mut first) && i == 0 {
                // Whatever follows the last newline is an entry still being written.
                complete_end = end - seg.len() as u64;
                return n > 0;
            }
            if let Some(e) = parse_line(seg)
                && keep(&e)
            {
                out.push(e);
            }
            out.len() < n
        })?;
        if out.len() >= n {
            break;
        }
    }
    out.reverse();
    Ok((out, complete_end))
}

/// One file of a log while it is read backwards: the file, or a rotated one decompressed.
trait ReadSeek: io::Read + io::Seek {}
impl<T: io::Read + io::Seek> ReadSeek for T {}

/// Parses one line of a json-file log.
pub fn parse_line(line: &[u8]) -> Option<Entry> {
    serde_json::from_slice(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_and_partials() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = Writer::open(&p).unwrap();
        w.write(Stream::Stdout, b"hel", "T1").unwrap();
        w.write(Stream::Stderr, b"err\n", "T1").unwrap();
        w.write(Stream::Stdout, b"lo\nwor", "T2").unwrap();
        w.flush_partial("T3").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let entries: Vec<Entry> = text.lines().map(|l| parse_line(l.as_bytes()).unwrap()).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], Entry { log: "err\n".into(), stream: Stream::Stderr, attrs: None, time: "T1".into() });
        assert_eq!(entries[1].log, "hello\n");
        assert_eq!(entries[2].log, "wor");
    }

    #[test]
    fn rotates_by_size_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = Writer::open_rotating(&p, Rotation { max_size: Some(200), max_files: 3, compress: false }).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i:03}\n").as_bytes(), "T").unwrap();
        }
        let files = files_oldest_first(&p);
        assert_eq!(files, vec![rotated(&p, 2), rotated(&p, 1), p.clone()], "three files at most");
        let mut logs = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            // A file passes max-size by one entry at most.
            assert!(text.len() < 200 + 60, "{} bytes in {}", text.len(), f.display());
            logs.extend(text.lines().map(|l| parse_line(l.as_bytes()).unwrap().log));
        }
        // The newest lines survive, in order, with nothing lost between files.
        assert_eq!(logs.last().unwrap(), "line 039\n");
        let first: usize = logs[0][5..8].parse().unwrap();
        let expect: Vec<String> = (first..40).map(|i| format!("line {i:03}\n")).collect();
        assert_eq!(logs, expect);
        assert!(first > 0, "old lines were dropped");
    }

    #[test]
    fn attrs_go_on_every_entry_as_docker_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let attrs = std::collections::BTreeMap::from([("tag".to_string(), "web/abc".to_string())]);
        let mut w = Writer::open(&p).unwrap().with_attrs(attrs.clone());
        w.write(Stream::Stdout, b"a\nb\n", "T").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(r#"{"log":"a\n","stream":"stdout","attrs":{"tag":"web/abc"},"time":"T"}"#), "{text}");
        let e = parse_line(text.lines().nth(1).unwrap().as_bytes()).unwrap();
        assert_eq!(e.attrs, Some(attrs));
    }

    #[test]
    fn tail_reads_backwards_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w =
            Writer::open_rotating(&p, Rotation { max_size: Some(60_000), max_files: 3, compress: false }).unwrap();
        for i in 0..5000 {
            let s = if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
            w.write(s, format!("line {i}\n").as_bytes(), "T").unwrap();
        }
        // An entry half written at the end.
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"{\"log\":\"half").unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        let all = |_: &Entry| true;
        let (e, end) = tail(&p, len, 3, &all).unwrap();
        assert_eq!(e.iter().map(|e| e.log.as_str()).collect::<Vec<_>>(), ["line 4997\n", "line 4998\n", "line 4999\n"]);
        assert_eq!(len - end, b"{\"log\":\"half".len() as u64);
        // Across files, filtered by stream, in order.
        let stdout = |e: &Entry| e.stream == Stream::Stdout;
        let (e, _) = tail(&p, len, 1000, &stdout).unwrap();
        assert_eq!(e.len(), 1000);
        assert!(rotated(&p, 2).exists(), "the entries came from three files");
        let nums: Vec<u32> = e.iter().map(|e| e.log.trim()[5..].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 2) && *nums.last().unwrap() == 4998, "{nums:?}");
        // More than there is: everything kept, oldest first; none asked: none.
        let (e, _) = tail(&p, len, 1_000_000, &all).unwrap();
        assert_eq!(e.last().unwrap().log, "line 4999\n");
        assert!(e.len() < 5000, "the oldest file was dropped by rotation");
        let (e, end0) = tail(&p, len, 0, &all).unwrap();
        assert!(e.is_empty() && end0 == end);
        // A missing log is empty.
        assert!(tail(&dir.path().join("none.log"), 0, 5, &all).unwrap().0.is_empty());
    }

    #[test]
    fn compressed_rotations_read_back_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let rot = Rotation { max_size: Some(2_000), max_files: 4, compress: true };
        let mut w = Writer::open_rotating(&p, rot).unwrap();
        for i in 0..400 {
            w.write(Stream::Stdout, format!("line {i:03}\n").as_bytes(), "T").unwrap();
        }
        w.wait_compression();
        let files = files_oldest_first(&p);
        assert_eq!(files, vec![rotated_gz(&p, 3), rotated_gz(&p, 2), rotated_gz(&p, 1), p.clone()]);
        assert!(!rotated(&p, 1).exists(), "the plain rotated file is gone once compressed");
        assert!(std::fs::metadata(rotated_gz(&p, 1)).unwrap().len() < 1_000, "compressed");
        let mut logs = Vec::new();
        for f in &files {
            let mut text = String::new();
            io::Read::read_to_string(&mut open(f).unwrap(), &mut text).unwrap();
            logs.extend(text.lines().map(|l| parse_line(l.as_bytes()).unwrap().log));
        }
        let first: usize = logs[0][5..8].parse().unwrap();
        let expect: Vec<String> = (first..400).map(|i| format!("line {i:03}\n")).collect();
        assert_eq!(logs, expect, "nothing lost or reordered across compressed files");
        // --tail reaches into the compressed files.
        let len = std::fs::metadata(&p).unwrap().len();
        let n = logs.len() - 10;
        let (e, _) = tail(&p, len, n, &|_| true).unwrap();
        assert_eq!(e.into_iter().map(|e| e.log).collect::<Vec<_>>(), logs[10..]);
        // A damaged compressed file is an error for --tail, not a panic.
        std::fs::write(rotated_gz(&p, 1), b"not gzip").unwrap();
        assert!(tail(&p, len, 400, &|_| true).is_err());
    }

    /// Each file ends with the first entry that reaches max-size, whatever the write sizes.
    #[test]
    fn rotation_falls_after_the_entry_that_reaches_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let max = 1_000;
        let mut w =
            Writer::open_rotating(&p, Rotation { max_size: Some(max), max_files: 1000, compress: false }).unwrap();
        let mut chunk = String::new();
        for i in 0..3000u32 {
            chunk.push_str(&"x".repeat((i * 7919 % 97) as usize));
            chunk.push('\n');
            if i % 13 == 0 {
                w.write(Stream::Stdout, chunk.as_bytes(), "T").unwrap();
                chunk.clear();
            }
        }
        w.write(Stream::Stdout, chunk.as_bytes(), "T").unwrap();
        let files = files_oldest_first(&p);
        assert!(files.len() > 10);
        let mut total = 0;
        for (n, f) in files.iter().enumerate() {
            let text = std::fs::read(f).unwrap();
            total += text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
            let before_last = text[..text.len() - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            assert!((before_last as u64) < max, "{}: its last entry started past max-size", f.display());
            if n + 1 < files.len() {
                assert!(text.len() as u64 >= max, "{}: rotated before reaching max-size", f.display());
            }
        }
        assert_eq!(total, 3000, "every entry, once");
    }

    #[test]
    fn one_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = Writer::open_rotating(&p, Rotation { max_size: Some(100), max_files: 1, compress: false }).unwrap();
        for i in 0..20 {
            w.write(Stream::Stderr, format!("e{i}\n").as_bytes(), "T").unwrap();
        }
        assert_eq!(files_oldest_first(&p), vec![p.clone()]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.len() < 160 && text.ends_with("\n"), "{text}");
        assert!(text.contains("e19"));
    }

    #[test]
    fn splits_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = Writer::open(&p).unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        w.write(Stream::Stdout, &long, "T").unwrap();
        w.write(Stream::Stdout, b"\n", "T").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let entries: Vec<Entry> = text.lines().map(|l| parse_line(l.as_bytes()).unwrap()).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries.iter().map(|e| e.log.len()).sum::<usize>(), long.len() + 1);
        assert!(parse_line(b"{\"log\":").is_none());
    }
}
