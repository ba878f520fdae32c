//! Results of the demo: each node's state as reported to the observer, the
//! hash of the file each node installed, and the final table and JSON.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// One node's state of the demo patch, from its latest report.
#[derive(Clone, Debug, PartialEq)]
pub struct Reported {
    pub state: String,
    /// When the node entered `state`.
    pub since: Option<Timestamp>,
    pub bytes_same_site: u64,
    pub bytes_cross_site: u64,
}

impl Reported {
    pub fn is_installed(&self) -> bool {
        self.state == "installed"
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "rolled_back")
    }
}

/// Reads the observer's `GET /v1/status` and returns, by host name, the
/// state of `patch` on every node that reported it.
pub fn poll_status(url: &str, patch: &str) -> anyhow::Result<HashMap<String, Reported>> {
    let status: Value = ureq::get(&format!("{url}/v1/status"))
        .timeout(std::time::Duration::from_secs(5))
        .call()
        .with_context(|| format!("cannot read status from {url}"))?
        .into_json()
        .with_context(|| format!("status from {url} is not JSON"))?;
    let mut found = HashMap::new();
    let reports = status["reports"].as_array().cloned().unwrap_or_default();
    for report in reports {
        let Some(host) = report["host"].as_str() else {
            continue;
        };
        let patches = report["patches"].as_array().cloned().unwrap_or_default();
        let Some(entry) = patches.iter().find(|p| p["patch"] == patch) else {
            continue;
        };
        found.insert(
            host.to_string(),
            Reported {
                state: entry["state"].as_str().unwrap_or("unknown").to_string(),
                since: entry["since"].as_str().and_then(|s| s.parse().ok()),
                bytes_same_site: entry["bytes_same_site"].as_u64().unwrap_or(0),
                bytes_cross_site: entry["bytes_cross_site"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(found)
}

/// BLAKE3 hex of the file at `path`, or `None` when it does not exist.
pub fn hash_file(path: &Path) -> anyhow::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read \"{}\"", path.display())),
    };
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .with_context(|| format!("cannot read \"{}\"", path.display()))?;
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// One row of the final table, and one entry of `nodes_detail`.
#[derive(Debug, Serialize)]
pub struct NodeDetail {
    pub node: String,
    pub site: String,
    pub state: String,
    /// Seconds from publishing to the install, when installed.
    pub seconds: Option<f64>,
    /// BLAKE3 hex of the installed file, when it exists.
    pub hash: Option<String>,
    pub bytes_same_site: u64,
    pub bytes_cross_site: u64,
}

/// The demo's result; `--json` prints it as the last line.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub nodes: usize,
    pub sites: usize,
    pub installed: usize,
    pub failed: usize,
    /// Nodes whose installed file does not hash to the payload's hash.
    pub wrong_hash: usize,
    pub timed_out: bool,
    pub payload_bytes: u64,
    pub payload_hash: String,
    /// Seconds from publishing to the last install seen.
    pub seconds: f64,
    pub bytes_same_site: u64,
    pub bytes_cross_site: u64,
    pub nodes_detail: Vec<NodeDetail>,
}

impl Summary {
    /// Checks that every node installed a file with the payload's hash.
    pub fn succeeded(&self) -> bool {
        self.installed == self.nodes && self.failed == 0 && self.wrong_hash == 0
    }

    /// Formats the per-node table.
    pub fn table(&self) -> String {
        let headers = [
            "node",
            "site",
            "state",
            "seconds",
            "same-site",
            "cross-site",
            "hash",
        ];
        let rows: Vec<[String; 7]> = self
            .nodes_detail
            .iter()
            .map(|d| {
                let hash_ok = d.hash.as_deref() == Some(self.payload_hash.as_str());
                [
                    d.node.clone(),
                    d.site.clone(),
                    d.state.clone(),
                    d.seconds.map_or("-".into(), |s| format!("{s:.2}")),
                    mib(d.bytes_same_site),
                    mib(d.bytes_cross_site),
                    match (&d.hash, hash_ok) {
                        (None, _) => "-".into(),
                        (Some(_), true) => "ok".into(),
                        (Some(hash), false) => format!("WRONG {}", &hash[..12]),
                    },
                ]
            })
            .collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut text = line(headers.to_vec());
        for row in &rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        text
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
