//! `skiff top`'s full-screen view (ratatui): the host's line, every running container's row,
//! a key line. Keys: `q` quit, `s` next sort key, `/` filter (Enter ends, Esc clears), arrows
//! select, Enter shows the selected container's detail (Enter or Esc goes back).

use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};
use serde_json::Value;
use tokio::sync::mpsc;

use super::analysis::{COLUMNS, SortKey, arrange, cells, host_line};
use crate::client::{Client, query};

struct View {
    snapshot: Option<Value>,
    error: Option<String>,
    sort: SortKey,
    filter: String,
    typing: bool,
    detail: bool,
    table: TableState,
}

impl View {
    fn rows(&self) -> Vec<Value> {
        let mut rows = self.snapshot.as_ref().and_then(|s| s["containers"].as_array().cloned()).unwrap_or_default();
        arrange(&mut rows, self.sort, &self.filter);
        rows
    }

    /// Handles a key; false to quit.
    fn key(&mut self, code: KeyCode) -> bool {
        if self.typing {
            match code {
                KeyCode::Enter => self.typing = false,
                KeyCode::Esc => (self.typing, self.filter) = (false, String::new()),
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return true;
        }
        let n = self.rows().len();
        match code {
            KeyCode::Char('q') => return false,
            KeyCode::Esc if !self.detail => return false,
            KeyCode::Esc => self.detail = false,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.typing = true,
            KeyCode::Enter => self.detail = !self.detail && n > 0,
            KeyCode::Down if n > 0 => self.table.select(Some(self.table.selected().map_or(0, |i| (i + 1).min(n - 1)))),
            KeyCode::Up if n > 0 => self.table.select(Some(self.table.selected().map_or(0, |i| i.saturating_sub(1)))),
            _ => {}
        }
        true
    }

    fn draw(&mut self, f: &mut ratatui::Frame) {
        let [top, body, keys] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
        let host = match (&self.snapshot, &self.error) {
            (_, Some(e)) => format!("error: {e}"),
            (Some(s), None) => host_line(&s["host"]),
            (None, None) => "sampling…".into(),
        };
        f.render_widget(Paragraph::new(host), top);
        let rows = self.rows();
        if self.detail
            && let Some(r) = self.table.selected().and_then(|i| rows.get(i))
        {
            let mut lines: Vec<Line> =
                COLUMNS.iter().zip(cells(r)).map(|(k, v)| Line::from(format!("{k:<14}{v}"))).collect();
            lines.push(Line::from(format!("{:<14}{}", "ID", r["id"].as_str().unwrap_or_default())));
            lines.push(Line::from(format!("{:<14}{}", "IMAGE", r["image"].as_str().unwrap_or_default())));
            lines.push(Line::from(format!("{:<14}{}", "CPU QUOTA", r["cpu_quota_cpus"])));
            lines.push(Line::from(format!("{:<14}{}", "PRESSURE", r["pressure"])));
            lines.push(Line::from(""));
            lines.push(Line::from(format!(
                "is it the host or the container?  skiff diagnose {}",
                r["name"].as_str().unwrap_or_default()
            )));
            let title = format!(" {} ", r["name"].as_str().unwrap_or_default());
            f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)), body);
        } else {
            let header = Row::new(COLUMNS.to_vec()).style(Style::default().add_modifier(Modifier::BOLD));
            let widths = [
                Constraint::Min(16),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(4),
                Constraint::Length(18),
                Constraint::Length(18),
                Constraint::Length(5),
            ];
            let table = Table::new(rows.iter().map(|r| Row::new(cells(r))), widths)
                .header(header)
                .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
                .block(Block::default().borders(Borders::TOP));
            f.render_stateful_widget(table, body, &mut self.table);
        }
        let keys_line = if self.typing {
            format!("filter: {}▏ (enter: done, esc: clear)", self.filter)
        } else {
            format!(
                "q quit  s sort ({})  / filter{}  ↑↓ select  enter detail",
                self.sort.label(),
                if self.filter.is_empty() { String::new() } else { format!(" [{}]", self.filter) }
            )
        };
        f.render_widget(Paragraph::new(keys_line), keys);
    }
}

/// Runs the view until `q`.
pub async fn run(c: Client, interval: Duration, sort: SortKey) -> anyhow::Result<u8> {
    let (snap_tx, mut snaps) = mpsc::channel::<Result<Value, String>>(2);
    let fetch = tokio::spawn(async move {
        let path = format!("/skiff/top{}", query(&[("interval", interval.as_secs_f64().to_string())]));
        loop {
            let r = c.get_json::<Value>(&path).await.map_err(|e| format!("{e:#}"));
            let failed = r.is_err();
            if snap_tx.send(r).await.is_err() {
                return;
            }
            if failed {
                tokio::time::sleep(interval).await;
            }
        }
    });
    let (key_tx, mut keys) = mpsc::unbounded_channel::<KeyCode>();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    if let Ok(Event::Key(k)) = event::read()
                        && k.kind == KeyEventKind::Press
                        && key_tx.send(k.code).is_err()
                    {
                        return;
                    }
                }
                Ok(false) if key_tx.is_closed() => return,
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    let mut terminal = ratatui::init();
    let mut view = View {
        snapshot: None,
        error: None,
        sort,
        filter: String::new(),
        typing: false,
        detail: false,
        table: TableState::default(),
    };
    let result = loop {
        if let Err(e) = terminal.draw(|f| view.draw(f)) {
            break Err(e.into());
        }
        tokio::select! {
            Some(k) = keys.recv() => {
                if !view.key(k) {
                    break Ok(0);
                }
            }
            Some(s) = snaps.recv() => match s {
                Ok(v) => (view.snapshot, view.error) = (Some(v), None),
                Err(e) => view.error = Some(e),
            },
        }
    };
    ratatui::restore();
    fetch.abort();
    result
}
