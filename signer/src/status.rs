//! `status`: rollout status as a node reports it over `GET /v1/status`.
//!
//! The table has one row per node and patch, then totals per patch by
//! state. An observer node returns every node that reports to it; any other
//! node returns only itself.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::{output, Context};

/// Arguments of `status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Control API URL of the node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
    /// Show only this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
}

/// The parts of a report entry the table shows; other fields are kept in
/// the JSON output untouched.
#[derive(Deserialize)]
struct ReportRow {
    host: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    patches: Vec<PatchRow>,
}

#[derive(Deserialize)]
struct PatchRow {
    patch: String,
    state: String,
    since: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    bytes_same_site: u64,
    #[serde(default)]
    bytes_cross_site: u64,
}

/// Runs `status`.
pub fn run(context: &Context, args: StatusArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.node)?;
    let mut status: Value = client.get("/v1/status")?;

    // Keep only the hosts asked for, in the JSON as well as the table.
    let reports = status
        .get_mut("reports")
        .and_then(Value::as_array_mut)
        .context("the node's status reply has no \"reports\" list")?;
    if !args.hosts.is_empty() {
        reports.retain(|report| {
            report
                .get("host")
                .and_then(Value::as_str)
                .is_some_and(|host| args.hosts.iter().any(|h| h == host))
        });
    }
    let rows: Vec<ReportRow> = reports
        .iter()
        .map(|report| serde_json::from_value(report.clone()))
        .collect::<Result<_, _>>()
        .context("the node's status reply has a malformed report")?;

    let summary = summarize(&rows);
    if context.out.is_json() {
        status["summary"] = summary;
        context.out.finish(status);
    } else {
        print!("{}", render(&rows));
        println!();
        print!("{}", render_totals(&rows));
    }
    Ok(())
}

/// Counts per patch and state, over the rows shown.
fn totals(rows: &[ReportRow]) -> BTreeMap<&str, BTreeMap<&str, u64>> {
    let mut totals: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for report in rows {
        for patch in &report.patches {
            *totals
                .entry(&patch.patch)
                .or_default()
                .entry(&patch.state)
                .or_default() += 1;
        }
    }
    totals
}

fn summarize(rows: &[ReportRow]) -> Value {
    json!({
        "nodes": rows.len(),
        "patches": totals(rows),
    })
}

fn render(rows: &[ReportRow]) -> String {
    let mut table_rows = Vec::new();
    for report in rows {
        for patch in &report.patches {
            table_rows.push(vec![
                report.host.clone(),
                report.site.clone(),
                patch.patch.clone(),
                patch.state.clone(),
                patch.since.clone(),
                patch.bytes_same_site.to_string(),
                patch.bytes_cross_site.to_string(),
                patch.detail.replace('\n', " "),
            ]);
        }
    }
    output::table(
        &[
            "host",
            "site",
            "patch",
            "state",
            "since",
            "bytes same-site",
            "bytes cross-site",
            "detail",
        ],
        &table_rows,
    )
}

fn render_totals(rows: &[ReportRow]) -> String {
    let table_rows: Vec<Vec<String>> = totals(rows)
        .into_iter()
        .flat_map(|(patch, states)| {
            states.into_iter().map(move |(state, count)| {
                vec![patch.to_string(), state.to_string(), count.to_string()]
            })
        })
        .collect();
    output::table(&["patch", "state", "nodes"], &table_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ReportRow> {
        let value = json!([
            {"host": "pc-1", "site": "hq", "patches": [
                {"patch": "demo@1.0", "state": "installed", "since": "2030-01-01T00:00:00Z",
                 "detail": "", "bytes_same_site": 10, "bytes_cross_site": 0}]},
            {"host": "pc-2", "site": "branch", "patches": [
                {"patch": "demo@1.0", "state": "failed", "since": "2030-01-01T00:00:00Z",
                 "detail": "exit 1", "bytes_same_site": 0, "bytes_cross_site": 10}]},
        ]);
        serde_json::from_value(value).expect("sample parses")
    }

    #[test]
    fn summary_counts_states_per_patch() {
        let summary = summarize(&sample());
        assert_eq!(summary["nodes"], 2);
        assert_eq!(summary["patches"]["demo@1.0"]["installed"], 1);
        assert_eq!(summary["patches"]["demo@1.0"]["failed"], 1);
    }

    #[test]
    fn table_has_row_per_node_and_patch() {
        let text = render(&sample());
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("exit 1"));
    }
}
