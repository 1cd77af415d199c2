//! `docker logs`: reading the json-file log, with `--tail`, `--since`, `--until`, and `--follow`
//! (which keeps reading until the container stops and the file is drained).

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use skiff_runtime::logfile::{self, Stream};
use tokio::sync::mpsc;

use super::{Containers, Status};
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Last N lines; `None` for all.
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub stream: Stream,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub data: Bytes,
    /// The entry's `--log-opt labels/env/tag` attributes (`docker logs --details`).
    pub attrs: Option<std::collections::BTreeMap<String, String>>,
}

/// Parses `--since`/`--until`: RFC 3339, Unix seconds (with fraction), or a duration (`10m`).
pub fn parse_time(s: &str) -> Result<SystemTime> {
    if let Some(t) = skiff_common::timefmt::parse(s) {
        return Ok(t);
    }
    // Checked: a number of seconds past what a time holds (`2e19`) is refused, not a panic.
    if let Ok(f) = s.parse::<f64>()
        && f >= 0.0
        && let Some(t) = Duration::try_from_secs_f64(f).ok().and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
    {
        return Ok(t);
    }
    if let Some(t) = parse_duration(s).and_then(|d| SystemTime::now().checked_sub(d)) {
        return Ok(t);
    }
    Err(EngineError::invalid(format!("invalid value for \"since\": failed to parse value as time or duration: {s:?}")))
}

/// Go-style durations: `1h2m3s`, `500ms`, `10m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let ns = skiff_common::units::parse_go_duration(s).ok()?;
    Some(Duration::from_nanos(u64::try_from(ns).ok()?))
}

impl Containers {
    /// Streams log lines; the bool is whether the container has a tty (no stream framing).
    pub fn logs(self: &Arc<Self>, key: &str, opts: LogOptions) -> Result<(bool, mpsc::Receiver<LogLine>)> {
        let c = self.get(key)?;
        let rec = c.record();
        if super::logopts::LogDriver::of(&rec.host_config)? == super::logopts::LogDriver::None {
            return Err(EngineError::invalid("configured logging driver does not support reading"));
        }
        if !opts.stdout && !opts.stderr {
            return Err(EngineError::invalid("Bad parameters: you must choose at least one stream"));
        }
        let tty = rec.config.tty == Some(true);
        let (tx, rx) = mpsc::channel(256);
        let reader = Reader { path: self.log_path(&c.id), opts, tx };
        let this = self.clone();
        let rt = tokio::runtime::Handle::current();
        let mut changes = c.subscribe();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&reader.path).ok();
            let pending = match reader.opts.tail {
                Some(n) => reader.tail(file.as_mut(), n),
                None => reader.everything(file.as_mut()),
            };
            if let Some(pending) = pending
                && reader.opts.follow
            {
                let running = || {
                    this.get(&c.id)
                        .map(|c| matches!(c.status(), Status::Running | Status::Paused | Status::Restarting))
                        .unwrap_or(false)
                };
                // New output is polled for; an exit wakes us at once (the monitor reports it
                // only once the output is drained into the file), so a follower ends with its
                // container rather than up to a poll later.
                let mut idle = || {
                    let woke = rt.block_on(tokio::time::timeout(Duration::from_millis(50), changes.changed()));
                    if matches!(woke, Ok(Err(_))) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                };
                reader.follow(file, pending, &running, &mut idle);
            }
        });
        Ok((tty, rx))
    }
}

/// Reads one container's json-file log (and its rotated files) into a channel, blocking.
struct Reader {
    path: std::path::PathBuf,
    opts: LogOptions,
    tx: mpsc::Sender<LogLine>,
}

impl Reader {
    fn wanted(&self, e: &logfile::Entry) -> bool {
        let stream_ok = match e.stream {
            Stream::Stdout => self.opts.stdout,
            Stream::Stderr => self.opts.stderr,
        };
        if !stream_ok {
            return false;
        }
        let t = skiff_common::timefmt::parse(&e.time);
        !(matches!((self.opts.since, t), (Some(since), Some(t)) if t < since)
            || matches!((self.opts.until, t), (Some(until), Some(t)) if t > until))
    }

    /// Sends one entry; false when the client went away.
    fn send(&self, e: logfile::Entry) -> bool {
        self.tx
            .blocking_send(LogLine {
                stream: e.stream,
                time: e.time,
                data: Bytes::from(e.log.into_bytes()),
                attrs: e.attrs,
            })
            .is_ok()
    }

    /// Sends the wanted entries of whole lines in `bytes`; false when the client went away.
    fn send_lines(&self, bytes: &[u8]) -> bool {
        for e in bytes.split(|b| *b == b'\n').filter_map(logfile::parse_line).filter(|e| self.wanted(e)) {
            if !self.send(e) {
                return false;
            }
        }
        true
    }

    /// `--tail N`: reads backwards from the end, across rotated files, until N entries. Returns
    /// what follows the last whole entry (still being written), or `None` when done.
    fn tail(&self, file: Option<&mut std::fs::File>, n: usize) -> Option<Vec<u8>> {
        let mut pending = Vec::new();
        let len = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        let (entries, complete_end) = logfile::tail(&self.path, len, n, &|e| self.wanted(e)).ok()?;
        if let Some(f) = file {
            let _ = f.seek(SeekFrom::Start(complete_end));
            let _ = f.take(len - complete_end).read_to_end(&mut pending);
            let _ = f.seek(SeekFrom::Start(len));
        }
        for e in entries {
            if !self.send(e) {
                return None;
            }
        }
        Some(pending)
    }

    /// Everything: rotated files (`--log-opt max-file`), oldest first, then the log, read in
    /// blocks and sent as they are parsed (a log may be gigabytes). Returns what follows the
    /// last newline (an entry still being written), or `None` when done.
    fn everything(&self, file: Option<&mut std::fs::File>) -> Option<Vec<u8>> {
        let mut carry = Vec::new();
        let feed = |block: &[u8], carry: &mut Vec<u8>| -> bool {
            carry.extend_from_slice(block);
            let Some(last) = carry.iter().rposition(|b| *b == b'\n') else { return true };
            let ok = self.send_lines(&carry[..last]);
            carry.drain(..=last);
            ok
        };
        let mut block = vec![0u8; 256 << 10];
        for name in logfile::files_oldest_first(&self.path).iter().filter(|p| **p != self.path) {
            let Ok(mut f) = logfile::open(name) else { continue };
            while let Ok(n @ 1..) = f.read(&mut block) {
                if !feed(&block[..n], &mut carry) {
                    return None;
                }
            }
            // A rotated file ends with a whole entry.
            if !carry.is_empty() && !feed(b"\n", &mut carry) {
                return None;
            }
        }
        if let Some(f) = file {
            loop {
                match f.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) if feed(&block[..n], &mut carry) => {}
                    _ => return None,
                }
            }
        }
        Some(carry)
    }

    /// `--follow`: reads what the log grows by until the container is no longer running and
    /// the file has been read to its end; `idle` waits a moment (or for the container's exit).
    fn follow(
        &self,
        mut file: Option<std::fs::File>,
        mut pending: Vec<u8>,
        running: &dyn Fn() -> bool,
        idle: &mut dyn FnMut(),
    ) {
        use std::os::unix::fs::MetadataExt;
        loop {
            let running = running();
            if file.is_none() {
                file = std::fs::File::open(&self.path).ok();
            }
            let mut grew = false;
            if let Some(f) = file.as_mut() {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                    grew = true;
                    pending.extend_from_slice(&buf);
                    if let Some(p) = pending.iter().rposition(|b| *b == b'\n') {
                        let lines: Vec<u8> = pending.drain(..=p).collect();
                        if !self.send_lines(&lines) {
                            return;
                        }
                    }
                }
                // Rotated (a new file at the path: what was left of the old one has just been
                // read), or truncated (one file kept, or a new run): start over from the
                // beginning of what is at the path now.
                if let (Ok(pos), Ok(ours), Ok(now)) = (f.stream_position(), f.metadata(), std::fs::metadata(&self.path))
                {
                    if ours.ino() != now.ino() || ours.dev() != now.dev() {
                        if !grew {
                            file = std::fs::File::open(&self.path).ok();
                            continue;
                        }
                    } else if now.len() < pos {
                        let _ = f.seek(SeekFrom::Start(0));
                    }
                }
            }
            if (!running && !grew) || self.tx.is_closed() {
                return;
            }
            if !grew {
                idle();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("x"), None);
        assert!(parse_time("2024-01-01T00:00:00Z").is_ok());
        assert!(parse_time("1700000000.5").is_ok());
        assert!(parse_time("yesterday").is_err());
        // Found by the api_input fuzz target: these panicked (a Duration overflow).
        for huge in ["20000000000000000000", "1e300", "inf", "NaN", "18446744073709551616"] {
            assert!(parse_time(huge).is_err(), "{huge}");
        }
    }
}
