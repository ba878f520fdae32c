//! Runs the built `patchmesh-signer` for `patch add --advisory` and the
//! fleet views, against a stub observer on loopback that serves fixed JSON.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

use patchmesh_protocol::{Installer, Manifest, Severity, Signed};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_patchmesh-signer");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the signer binary runs")
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = run(dir, &all);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("stdout has a line");
    serde_json::from_str(line).expect("last line is JSON")
}

const ADVISORY: &str = r#"{
  "schema_version": "1.6.0",
  "id": "DSA-9999-1",
  "modified": "2026-01-02T00:00:00Z",
  "published": "2026-01-01T00:00:00Z",
  "aliases": ["CVE-2026-0001"],
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}],
  "affected": [{
    "package": {"ecosystem": "Debian:12", "name": "pm-demo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2-1"}]}]
  }]
}"#;

fn add_with_advisory(dir: &Path, advisory: &str) -> Output {
    fs::write(dir.join("advisory.json"), advisory).unwrap();
    fs::write(dir.join("pm-demo_1.2-1_all.deb"), b"stand-in payload").unwrap();
    run(
        dir,
        &[
            "patch",
            "add",
            "pm-demo_1.2-1_all.deb",
            "--name",
            "pm-demo",
            "--version",
            "1.2-1",
            "--deb",
            "pm-demo",
            "--advisory",
            "advisory.json",
            "--key",
            "admin.key",
            "--out",
            "patches",
        ],
    )
}

#[test]
fn advisory_fills_signed_manifest() {
    let dir = tempfile::tempdir().unwrap();
    json(dir.path(), &["keygen", "--out", "admin.key"]);
    let output = add_with_advisory(dir.path(), ADVISORY);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bytes = fs::read(dir.path().join("patches/pm-demo@1.2-1.manifest")).unwrap();
    let signed = Signed::from_bytes(&bytes).expect("signed object");
    let manifest: Manifest = signed.decode_body().expect("manifest body");
    assert_eq!(manifest.cves, vec!["DSA-9999-1", "CVE-2026-0001"]);
    assert_eq!(manifest.cvss, Some(6.1));
    assert_eq!(manifest.severity, Severity::Moderate);
    assert_eq!(manifest.released.as_deref(), Some("2026-01-01"));
    assert_eq!(manifest.applies_to.os, vec!["debian"]);
    assert_eq!(manifest.applies_to.packages.len(), 1);
    assert_eq!(manifest.applies_to.packages[0].fixed, "1.2-1");
    assert_eq!(manifest.applies_to.packages[0].introduced, None);
    assert_eq!(
        manifest.installer,
        Installer::Deb {
            package: "pm-demo".into()
        }
    );
}

#[test]
fn advisory_with_unknown_schema_fails() {
    let dir = tempfile::tempdir().unwrap();
    json(dir.path(), &["keygen", "--out", "admin.key"]);
    let output = add_with_advisory(dir.path(), &ADVISORY.replace("1.6.0", "2.0.0"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("schema_version"), "{stderr}");
    assert!(stderr.contains("advisory.json"), "{stderr}");
    assert!(!dir.path().join("patches/pm-demo@1.2-1.manifest").exists());
}

const INVENTORY: &str = r#"{"hosts":[
 {"peer":"12D3KooWA","host":"pc-1","site":"hq","groups":["pilot"],"last_seen":"2026-01-05T10:00:00Z",
  "inventory":{"peer":"12D3KooWA","host":"pc-1",
    "os":{"id":"debian","version_id":"12","pretty_name":"Debian 12","kernel":"6.1.0","arch":"amd64"},
    "uptime_secs":10,"reboot_pending":false,
    "packages":[{"name":"bash","version":"5.2-1","arch":"amd64"},{"name":"pm-demo","version":"1.1-1","arch":"all"}],
    "adapter":"dpkg","agent_version":"0.1.0","time":"2026-01-05T10:00:00Z","seq":7},
  "missing":[{"patch":"pm-demo@1.2-1","severity":"critical","cves":["CVE-2026-0001"],"released":"2026-01-01","policies":["baseline"]}],
  "policies":[{"policy":"baseline","required":["pm-demo@1.2-1"]}]},
 {"peer":"12D3KooWB","host":"pc-2","site":"hq","groups":["pilot"],"last_seen":"2026-01-05T10:00:00Z",
  "inventory":{"peer":"12D3KooWB","host":"pc-2",
    "os":{"id":"debian","version_id":"12","pretty_name":"Debian 12","kernel":"6.1.0","arch":"amd64"},
    "uptime_secs":10,"reboot_pending":true,
    "packages":[{"name":"pm-demo","version":"1.2-1","arch":"all"}],
    "adapter":"dpkg","agent_version":"0.1.0","time":"2026-01-05T10:00:00Z","seq":3},
  "missing":[],
  "policies":[{"policy":"baseline","required":["pm-demo@1.2-1"]}]},
 {"peer":"12D3KooWC","host":"pc-3","site":"branch","groups":[],"last_seen":null,"inventory":null}
]}"#;

const HISTORY: &str = r#"{"events":[
 {"time":"2026-01-04T09:00:00Z","host":"pc-2","patch":"pm-demo@1.2-1","event":"installed"},
 {"time":"2026-01-04T09:30:00Z","host":"pc-1","patch":"pm-demo@1.2-1","event":"failed"},
 {"time":"2026-01-05T08:00:00Z","host":"pc-1","patch":"pm-demo@1.2-1","event":"rolled_back"}
]}"#;

/// Serves `INVENTORY` at `/v1/inventory` and `HISTORY` at `/v1/history` on
/// a loopback port, recording nothing.
fn stub_observer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default();
            let (status, body) = if path == "/v1/inventory" {
                (200, INVENTORY)
            } else if path.starts_with("/v1/history") {
                (200, HISTORY)
            } else {
                (404, r#"{"error":"not found"}"#)
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn inventory_lists_hosts_with_missing_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let node = stub_observer();
    let value = json(dir.path(), &["inventory", "--node", &node]);
    let hosts = value["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["os"]["id"], "debian");
    assert_eq!(hosts[0]["package_count"], 2);
    assert_eq!(hosts[0]["missing_by_severity"]["critical"], 1);
    assert_eq!(hosts[0]["missing"][0]["severity"], "critical");
    assert_eq!(hosts[0]["packages"][1]["name"], "pm-demo");
    assert_eq!(hosts[2]["os"], Value::Null);

    let table = run(dir.path(), &["inventory", "--node", &node]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("1/0/0/0"), "{text}");
}

#[test]
fn inventory_host_and_package_views() {
    let dir = tempfile::tempdir().unwrap();
    let node = stub_observer();
    let value = json(
        dir.path(),
        &["inventory", "--node", &node, "--host", "pc-2"],
    );
    assert_eq!(value["host"]["host"], "pc-2");
    assert_eq!(value["host"]["reboot_pending"], true);

    let value = json(
        dir.path(),
        &["inventory", "--node", &node, "--package", "pm-demo"],
    );
    let versions: Vec<&str> = value["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["1.1-1", "1.2-1"]);

    let output = run(
        dir.path(),
        &["inventory", "--node", &node, "--host", "nope"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"nope\""));
}

#[test]
fn compliance_reports_share_and_oldest_critical() {
    let dir = tempfile::tempdir().unwrap();
    let node = stub_observer();
    let value = json(dir.path(), &["compliance", "--node", &node]);
    let baseline = &value["policies"][0];
    assert_eq!(baseline["name"], "baseline");
    assert_eq!(baseline["targeted"], 2);
    assert_eq!(baseline["compliant"], 1);
    assert_eq!(baseline["percent"], 50.0);
    assert_eq!(
        baseline["oldest_missing_critical"]["patch"],
        "pm-demo@1.2-1"
    );
    assert_eq!(value["sites"][0]["name"], "hq");
    assert_eq!(value["overall"]["targeted"], 2);
}

#[test]
fn history_totals_per_day() {
    let dir = tempfile::tempdir().unwrap();
    let node = stub_observer();
    let value = json(dir.path(), &["history", "--node", &node]);
    let days = value["days"].as_array().expect("days");
    assert_eq!(days.len(), 2);
    assert_eq!(days[0]["installs"], 1);
    assert_eq!(days[0]["failures"], 1);
    assert_eq!(days[1]["rollbacks"], 1);

    let value = json(
        dir.path(),
        &[
            "history",
            "--node",
            &node,
            "--host",
            "pc-1",
            "--from",
            "2026-01-05",
            "--to",
            "2026-01-05",
        ],
    );
    assert_eq!(value["events"].as_array().unwrap().len(), 1);
    assert_eq!(value["days"][0]["rollbacks"], 1);
}
