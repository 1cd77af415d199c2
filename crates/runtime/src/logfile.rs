//! Docker's json-file log format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//!
//! The monitor writes it; the daemon reads it for `logs`. Lines longer than 16 KiB are split
//! into several entries (the first ones without a trailing newline), as Docker does.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

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
    pub time: String,
}

/// Appends entries to a json-file log.
pub struct Writer {
    file: File,
    partial: [Vec<u8>; 2],
    buf: Vec<u8>,
}

impl Writer {
    pub fn open(path: &Path) -> io::Result<Writer> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Writer { file, partial: [Vec::new(), Vec::new()], buf: Vec::with_capacity(4096) })
    }

    fn entry(&mut self, stream: Stream, line: &[u8], now: &str) {
        let e = Entry { log: String::from_utf8_lossy(line).into_owned(), stream, time: now.to_string() };
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
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

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
        assert_eq!(entries[0], Entry { log: "err\n".into(), stream: Stream::Stderr, time: "T1".into() });
        assert_eq!(entries[1].log, "hello\n");
        assert_eq!(entries[2].log, "wor");
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
