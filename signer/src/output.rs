//! The output convention every command follows: human lines go to standard
//! output, or to standard error under `--json`, and `--json` prints exactly
//! one JSON object as the last line of standard output, even on failure.

use std::cell::Cell;
use std::fmt::Display;

/// Output channel for a command's human and JSON output.
pub struct Output {
    json: bool,
    /// Whether the JSON object was already printed, so a later error does
    /// not print a second one.
    printed: Cell<bool>,
}

impl Output {
    /// Output in JSON mode when `json` is set.
    pub fn new(json: bool) -> Self {
        Output {
            json,
            printed: Cell::new(false),
        }
    }

    /// Returns whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a human line: to standard output normally, to standard error
    /// under `--json` so the JSON object stays the last line of standard
    /// output.
    pub fn say(&self, line: impl Display) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// Prints a progress or warning line to standard error.
    pub fn note(&self, line: impl Display) {
        eprintln!("{line}");
    }

    /// Prints the command's JSON result under `--json`; does nothing
    /// otherwise.
    pub fn finish(&self, value: serde_json::Value) {
        if self.json && !self.printed.replace(true) {
            println!("{value}");
        }
    }

    /// Reports a failed command: the error chain on standard error and,
    /// under `--json` when no result was printed yet, `{"error": …}`.
    pub fn error(&self, error: &anyhow::Error) {
        eprintln!("error: {error:#}");
        self.finish(serde_json::json!({ "error": format!("{error:#}") }));
    }
}

/// Creates a progress bar on standard error. indicatif hides it when
/// standard error is not a terminal.
pub fn progress_bar(len: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Lays `rows` out in left-aligned columns under `headers`, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["pc-1".to_string(), "installed".to_string()],
            vec!["kiosk-03".to_string(), "failed".to_string()],
        ];
        let text = table(&["host", "state"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "host      state");
        assert_eq!(lines[1], "pc-1      installed");
        assert_eq!(lines[2], "kiosk-03  failed");
    }

    #[test]
    fn table_without_rows_has_header() {
        assert_eq!(table(&["a", "b"], &[]), "a  b\n");
    }
}
