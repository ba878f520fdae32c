//! `status`: rollout status as a node reports it over `GET /v1/status`.
//!
//! The table has one row per node and patch, then totals per patch by
//! state, then per policy the counts by state, per wave and per site with
//! their failure ratios. With `--host`, it shows each of those hosts'
//! patches with their states instead of the per-node table. An observer
//! node returns every node that reports to it; any other node returns only
//! itself.

mod policies;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use patchmesh_protocol::{Policy, Signed};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::{files, output, Context};
use policies::{Counts, PolicySummary};

/// Arguments of `status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Control API URL of the node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
    /// Show only this host, with the state of each of its patches
    /// (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Policy file, signed or TOML, used to place hosts in its waves
    /// (repeatable). Its signature is not checked: it only labels counts.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
}

/// The parts of a report entry the table shows; other fields are kept in
/// the JSON output untouched.
#[derive(Deserialize)]
struct ReportRow {
    host: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    groups: Vec<String>,
    /// When the node made the report, by its own clock.
    #[serde(default)]
    time: String,
    #[serde(default)]
    patches: Vec<PatchRow>,
}

#[derive(Deserialize)]
struct PatchRow {
    patch: String,
    #[serde(default)]
    policy: String,
    state: String,
    since: String,
    #[serde(default)]
    started: String,
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
    let mut policies = BTreeMap::new();
    for path in &args.policies {
        let policy = read_policy(path)?;
        policies.insert(policy.id.clone(), policy);
    }
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
    let by_policy = policies::summarize(&rows, &policies);
    if context.out.is_json() {
        status["summary"] = summary;
        status["policies"] =
            serde_json::to_value(&by_policy).context("cannot show the policy summary")?;
        if !args.hosts.is_empty() {
            status["hosts"] = host_histories(&rows);
        }
        context.out.finish(status);
        return Ok(());
    }

    let warnings = stale_warnings(&status);
    for warning in &warnings {
        println!("{warning}");
    }
    if !warnings.is_empty() {
        println!();
    }
    if args.hosts.is_empty() {
        print!("{}", render(&rows));
    } else {
        print!("{}", render_histories(&rows));
    }
    println!();
    print!("{}", render_totals(&rows));
    for policy in &by_policy {
        println!();
        print!("{}", render_policy(policy));
    }
    Ok(())
}

/// Returns a warning line per node with a raised stale alarm: the queried
/// node, then each node whose report carries one. A node raises it when
/// its newest admin-signed object is older than its
/// `trust.stale_after_secs`.
fn stale_warnings(status: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    let node = &status["node"];
    if let Some(warning) = describe_stale(node["host"].as_str(), &node["stale"]) {
        warnings.push(warning);
    }
    let reports = status["reports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for report in reports {
        if report["host"] == node["host"] {
            continue;
        }
        if let Some(warning) = describe_stale(report["host"].as_str(), &report["stale"]) {
            warnings.push(warning);
        }
    }
    warnings
}

/// Formats one node's stale alarm; `None` when `stale` is not an alarm.
fn describe_stale(host: Option<&str>, stale: &Value) -> Option<String> {
    let stale = stale.as_object()?;
    let field = |name: &str| stale.get(name).cloned().unwrap_or(Value::Null);
    let days = |name: &str| field(name).as_u64().unwrap_or(0) / 86_400;
    Some(format!(
        "warning: stale: the newest admin-signed object on node {} is {} {} revision {}, signed {} ({} days ago, limit {} days); peers may be withholding newer objects",
        host.unwrap_or("?"),
        field("kind").as_str().unwrap_or("?"),
        field("slot").as_str().unwrap_or("?"),
        field("revision"),
        field("signed_at").as_str().unwrap_or("?"),
        days("age_secs"),
        days("limit_secs"),
    ))
}

/// Reads a policy from a signed policy file or from its TOML source.
fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let bytes = files::read(path)?;
    if let Ok(signed) = Signed::from_bytes(&bytes) {
        return signed
            .decode_body::<Policy>()
            .with_context(|| format!("\"{}\" is not a signed policy", path.display()));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "\"{}\" is neither a signed policy nor UTF-8 TOML text",
            path.display()
        )
    })?;
    Policy::from_toml(&text).with_context(|| format!("\"{}\" is rejected", path.display()))
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

/// Lists each host's patches, oldest first, as the JSON `hosts` value.
fn host_histories(rows: &[ReportRow]) -> Value {
    let hosts: Vec<Value> = rows
        .iter()
        .map(|report| {
            let patches: Vec<Value> = history(report)
                .into_iter()
                .map(|patch| {
                    json!({
                        "patch": patch.patch,
                        "policy": patch.policy,
                        "state": patch.state,
                        "started": patch.started,
                        "since": patch.since,
                        "detail": patch.detail,
                    })
                })
                .collect();
            json!({
                "host": report.host,
                "site": report.site,
                "groups": report.groups,
                "reported": report.time,
                "patches": patches,
            })
        })
        .collect();
    Value::Array(hosts)
}

/// Sorts a host's patches in the order the node started them.
fn history(report: &ReportRow) -> Vec<&PatchRow> {
    let mut patches: Vec<&PatchRow> = report.patches.iter().collect();
    patches.sort_by(|a, b| (&a.started, &a.patch).cmp(&(&b.started, &b.patch)));
    patches
}

fn render_histories(rows: &[ReportRow]) -> String {
    let mut text = String::new();
    for report in rows {
        text.push_str(&format!(
            "host {} (site {}, last report {})\n",
            report.host, report.site, report.time
        ));
        let table_rows: Vec<Vec<String>> = history(report)
            .into_iter()
            .map(|patch| {
                vec![
                    patch.patch.clone(),
                    patch.policy.clone(),
                    patch.state.clone(),
                    patch.started.clone(),
                    patch.since.clone(),
                    patch.detail.replace('\n', " "),
                ]
            })
            .collect();
        text.push_str(&output::table(
            &["patch", "policy", "state", "started", "since", "detail"],
            &table_rows,
        ));
    }
    text
}

fn render_policy(summary: &PolicySummary) -> String {
    let mut text = format!(
        "policy {}: {} host(s), failure ratio {}\n",
        summary.policy,
        summary.hosts,
        ratio(&summary.counts)
    );
    let mut rows = Vec::new();
    match &summary.waves {
        Some(waves) => {
            for wave in waves {
                rows.push(count_row(
                    "wave",
                    &wave.wave,
                    &format!("{} ({} unreported)", wave.members, wave.unreported),
                    &wave.counts,
                ));
            }
        }
        None => text.push_str("waves: pass the policy with --policy FILE to count them\n"),
    }
    for (site, counts) in &summary.sites {
        rows.push(count_row("site", site, "", counts));
    }
    rows.push(count_row(
        "all",
        "",
        &summary.hosts.to_string(),
        &summary.counts,
    ));
    text.push_str(&output::table(
        &["by", "name", "hosts", "states", "failure ratio"],
        &rows,
    ));
    text
}

fn count_row(by: &str, name: &str, hosts: &str, counts: &Counts) -> Vec<String> {
    let states: Vec<String> = counts
        .states
        .iter()
        .map(|(state, count)| format!("{state} {count}"))
        .collect();
    vec![
        by.to_string(),
        name.to_string(),
        hosts.to_string(),
        states.join(", "),
        ratio(counts),
    ]
}

/// Formats the failure ratio with the counts it comes from, or "-" before
/// any entry is final.
fn ratio(counts: &Counts) -> String {
    match counts.failure_ratio {
        Some(ratio) => format!("{ratio:.2} ({}/{})", counts.failed, counts.reported_final),
        None => "-".to_string(),
    }
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

    #[test]
    fn history_lists_patches_in_start_order() {
        let value = json!([{"host": "pc-1", "site": "hq", "patches": [
            {"patch": "b@1", "policy": "p", "state": "installed",
             "since": "2030-01-03T00:00:00Z", "started": "2030-01-02T00:00:00Z"},
            {"patch": "a@1", "policy": "p", "state": "rolled_back",
             "since": "2030-01-04T00:00:00Z", "started": "2030-01-01T00:00:00Z",
             "detail": "rollback ordered: bad build"}]}]);
        let rows: Vec<ReportRow> = serde_json::from_value(value).expect("sample parses");
        let histories = host_histories(&rows);
        let patches = histories[0]["patches"].as_array().expect("patches");
        assert_eq!(patches[0]["patch"], "a@1");
        assert_eq!(patches[0]["detail"], "rollback ordered: bad build");
        assert_eq!(patches[1]["patch"], "b@1");
        let text = render_histories(&rows);
        assert!(text.starts_with("host pc-1 (site hq"), "{text}");
        assert!(text.contains("rolled_back"), "{text}");
    }

    #[test]
    fn policy_table_shows_ratio_per_site() {
        let summaries = policies::summarize(&sample_with_policy(), &BTreeMap::new());
        let text = render_policy(&summaries[0]);
        assert!(text.starts_with("policy demo: 2 host(s), failure ratio 0.50 (1/2)"));
        assert!(text.contains("site  branch"), "{text}");
        assert!(text.contains("--policy FILE"), "{text}");
    }

    fn sample_with_policy() -> Vec<ReportRow> {
        let mut rows = sample();
        for report in &mut rows {
            for patch in &mut report.patches {
                patch.policy = "demo".into();
            }
        }
        rows
    }

    #[test]
    fn stale_alarms_are_shown_as_warnings() {
        let status = serde_json::json!({
            "node": {
                "host": "pc-1",
                "stale": {
                    "kind": "policy",
                    "slot": "openssl-now",
                    "revision": 3,
                    "signed_at": "2026-10-01T00:00:00Z",
                    "age_secs": 40 * 86_400 + 5,
                    "limit_secs": 31 * 86_400,
                },
            },
            "reports": [
                {"host": "pc-1", "stale": null},
                {"host": "pc-2", "stale": null},
                {"host": "pc-3", "stale": {
                    "kind": "policy",
                    "slot": "openssl-now",
                    "revision": 2,
                    "signed_at": "2026-09-01T00:00:00Z",
                    "age_secs": 95 * 86_400,
                    "limit_secs": 31 * 86_400,
                }},
            ],
        });
        let warnings = stale_warnings(&status);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let warning = &warnings[0];
        assert!(warning.contains("node pc-1"), "{warning}");
        assert!(
            warning.contains("policy openssl-now revision 3"),
            "{warning}"
        );
        assert!(warning.contains("40 days ago, limit 31 days"), "{warning}");
        let reported = &warnings[1];
        assert!(reported.contains("node pc-3"), "{reported}");
        assert!(reported.contains("95 days ago"), "{reported}");

        let fresh = serde_json::json!({"node": {"host": "pc-1", "stale": null}});
        assert!(stale_warnings(&fresh).is_empty());
    }
}
