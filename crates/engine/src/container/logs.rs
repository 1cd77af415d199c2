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
    if let Ok(f) = s.parse::<f64>()
        && f >= 0.0
    {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(f));
    }
    if let Some(d) = parse_duration(s) {
        return Ok(SystemTime::now() - d);
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
        if rec.host_config.log_config.as_ref().and_then(|l| l.typ.as_deref()) == Some("none") {
            return Err(EngineError::invalid("configured logging driver does not support reading"));
        }
        if !opts.stdout && !opts.stderr {
            return Err(EngineError::invalid("Bad parameters: you must choose at least one stream"));
        }
        let tty = rec.config.tty == Some(true);
        let path = self.log_path(&c.id);
        let (tx, rx) = mpsc::channel(256);
        let this = self.clone();
        let rt = tokio::runtime::Handle::current();
        let mut changes = c.subscribe();
        tokio::task::spawn_blocking(move || {
            let wanted = |e: &logfile::Entry| -> bool {
                let stream_ok = match e.stream {
                    Stream::Stdout => opts.stdout,
                    Stream::Stderr => opts.stderr,
                };
                if !stream_ok {
                    return false;
                }
                let t = skiff_common::timefmt::parse(&e.time);
                if let (Some(since), Some(t)) = (opts.since, t)
                    && t < since
                {
                    return false;
                }
                if let (Some(until), Some(t)) = (opts.until, t)
                    && t > until
                {
                    return false;
                }
                true
            };
            let send = |e: logfile::Entry| -> bool {
                tx.blocking_send(LogLine {
                    stream: e.stream,
                    time: e.time,
                    data: Bytes::from(e.log.into_bytes()),
                    attrs: e.attrs,
                })
                .is_ok()
            };
            let mut file = std::fs::File::open(&path).ok();
            let mut pending = Vec::new();
            if let Some(n) = opts.tail {
                // `--tail N`: read backwards from the end, across rotated files, until N entries.
                let len = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
                let Ok((entries, complete_end)) = logfile::tail(&path, len, n, &wanted) else { return };
                if let Some(f) = file.as_mut() {
                    let _ = f.seek(SeekFrom::Start(complete_end));
                    let _ = f.take(len - complete_end).read_to_end(&mut pending);
                    let _ = f.seek(SeekFrom::Start(len));
                }
                for e in entries {
                    if !send(e) {
                        return;
                    }
                }
            } else {
                // Everything: rotated files (`--log-opt max-file`), oldest first, then the log,
                // read in blocks and sent as they are parsed (a log may be gigabytes).
                let mut carry = Vec::new();
                let feed = |block: &[u8], carry: &mut Vec<u8>| -> bool {
                    carry.extend_from_slice(block);
                    let Some(last) = carry.iter().rposition(|b| *b == b'\n') else { return true };
                    for e in carry[..last].split(|b| *b == b'\n').filter_map(logfile::parse_line).filter(|e| wanted(e))
                    {
                        if !send(e) {
                            return false;
                        }
                    }
                    carry.drain(..=last);
                    true
                };
                let mut block = vec![0u8; 256 << 10];
                let files = logfile::files_oldest_first(&path);
                for name in files.iter().filter(|p| **p != path) {
                    let Ok(mut f) = std::fs::File::open(name) else { continue };
                    while let Ok(n @ 1..) = f.read(&mut block) {
                        if !feed(&block[..n], &mut carry) {
                            return;
                        }
                    }
                    // A rotated file ends with a whole entry.
                    if !carry.is_empty() && !feed(b"\n", &mut carry) {
                        return;
                    }
                }
                if let Some(f) = file.as_mut() {
                    loop {
                        match f.read(&mut block) {
                            Ok(0) => break,
                            Ok(n) => {
                                if !feed(&block[..n], &mut carry) {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                }
                // What follows the last newline is an entry still being written.
                pending = carry;
            }
            if !opts.follow {
                return;
            }
            // Follow: poll the file until the container is no longer running and the file
            // has been read to its end.
            loop {
                let running = this
                    .get(&c.id)
                    .map(|c| matches!(c.status(), Status::Running | Status::Paused | Status::Restarting))
                    .unwrap_or(false);
                if file.is_none() {
                    file = std::fs::File::open(&path).ok();
                }
                let mut grew = false;
                if let Some(f) = file.as_mut() {
                    let mut buf = Vec::new();
                    if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                        grew = true;
                        pending.extend_from_slice(&buf);
                        if let Some(p) = pending.iter().rposition(|b| *b == b'\n') {
                            let lines: Vec<u8> = pending.drain(..=p).collect();
                            for e in lines.split(|b| *b == b'\n').filter_map(logfile::parse_line).filter(|e| wanted(e))
                            {
                                if !send(e) {
                                    return;
                                }
                            }
                        }
                    }
                    // Rotated (a new file at the path: what was left of the old one has just
                    // been read), or truncated (one file kept, or a new run): start over from
                    // the beginning of what is at the path now.
                    use std::os::unix::fs::MetadataExt;
                    if let (Ok(pos), Ok(ours), Ok(now)) = (f.stream_position(), f.metadata(), std::fs::metadata(&path))
                    {
                        if ours.ino() != now.ino() || ours.dev() != now.dev() {
                            if !grew {
                                file = std::fs::File::open(&path).ok();
                                continue;
                            }
                        } else if now.len() < pos {
                            let _ = f.seek(SeekFrom::Start(0));
                        }
                    }
                }
                if !running && !grew {
                    return;
                }
                if tx.is_closed() {
                    return;
                }
                if !grew {
                    // New output is polled for; an exit wakes us at once (the monitor reports it
                    // only once the output is drained into the file), so a follower ends with
                    // its container rather than up to a poll later.
                    let woke = rt.block_on(tokio::time::timeout(Duration::from_millis(50), changes.changed()));
                    if matches!(woke, Ok(Err(_))) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        Ok((tty, rx))
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
    }
}
