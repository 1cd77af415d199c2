//! Renders Docker's JSON progress stream (pull, push): `indicatif` bars on a terminal, one line
//! per change of status otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

pub struct Renderer {
    quiet: bool,
    tty: bool,
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Renderer {
    pub fn new(quiet: bool) -> Renderer {
        let tty = std::io::stdout().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty && !quiet {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        Renderer { quiet, tty, multi, bars: HashMap::new(), last: HashMap::new() }
    }

    pub fn message(&mut self, v: &Value) -> anyhow::Result<()> {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            bail!("{e}");
        }
        if self.quiet {
            return Ok(());
        }
        let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("");
        let id = v.get("id").and_then(|s| s.as_str());
        let detail = v.get("progressDetail");
        let cur = detail.and_then(|d| d.get("current")).and_then(|c| c.as_u64());
        let total = detail.and_then(|d| d.get("total")).and_then(|c| c.as_u64());
        let Some(id) = id else {
            if !status.is_empty() {
                if self.tty {
                    let _ = self.multi.println(status);
                } else {
                    println!("{status}");
                }
            }
            return Ok(());
        };
        if !self.tty {
            if self.last.get(id).map(String::as_str) != Some(status) {
                println!("{id}: {status}");
                self.last.insert(id.to_string(), status.to_string());
            }
            return Ok(());
        }
        let bar = self.bars.entry(id.to_string()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new(0));
            b.set_style(text_style());
            b.set_prefix(id.to_string());
            b
        });
        match (cur, total) {
            (Some(c), Some(t)) => {
                if bar.length() != Some(t) {
                    bar.set_style(bar_style());
                    bar.set_length(t);
                }
                bar.set_position(c);
            }
            _ => {
                bar.set_style(text_style());
            }
        }
        bar.set_message(status.to_string());
        Ok(())
    }

    pub fn finish(&mut self) {
        for b in self.bars.values() {
            b.abandon();
        }
    }
}
