//! Fleet views: `inventory`, `compliance` and `history`, read from an
//! observer node's control API.
//!
//! `inventory` and `compliance` read `GET /v1/inventory`:
//!
//! ```json
//! {"hosts": [{
//!   "peer": "12D3KooW…", "host": "pc-1", "site": "hq", "groups": ["pilot"],
//!   "last_seen": "2026-01-02T10:00:00Z",
//!   "inventory": {"peer", "host", "os": {"id", "version_id", "pretty_name", "kernel", "arch"},
//!                 "uptime_secs", "reboot_pending", "packages": [{"name", "version", "arch"}],
//!                 "adapter", "agent_version", "time", "seq"},
//!   "missing": [{"patch": "openssl@3.0.13-1", "severity": "critical",
//!                "cves": ["CVE-…"], "released": "2026-01-01", "policies": ["baseline"]}],
//!   "policies": [{"policy": "baseline", "required": ["openssl@3.0.13-1"]}]
//! }]}
//! ```
//!
//! `inventory` may be `null` for a host whose inventory has not arrived;
//! `released` may be `null`; `missing[].policies` and `policies` may be
//! absent. `history` reads `GET /v1/history?host=H`:
//! `{"events": [{"time", "host", "patch", "event"}]}`, where `event` is
//! `installed`, `failed`, `rolled_back` or another state name.

mod compliance;
mod history;
mod inventory;

use jiff::Timestamp;
use patchmesh_protocol::inventory::Inventory;
use patchmesh_protocol::Severity;
use serde::{Deserialize, Serialize};

pub use compliance::{run as compliance, ComplianceArgs};
pub use history::{run as history, HistoryArgs};
pub use inventory::{run as inventory, InventoryArgs};

use crate::client::Client;

/// Reply of `GET /v1/inventory`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct InventoryReply {
    /// One entry per host that reports to the observer.
    pub hosts: Vec<HostEntry>,
}

/// One host in `GET /v1/inventory`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HostEntry {
    /// libp2p peer id (base58).
    pub peer: String,
    /// Host name.
    pub host: String,
    /// Site.
    #[serde(default)]
    pub site: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Last report or inventory from the host.
    pub last_seen: Option<Timestamp>,
    /// Latest verified inventory, if one arrived.
    pub inventory: Option<Inventory>,
    /// Patches the host is missing.
    #[serde(default)]
    pub missing: Vec<MissingPatch>,
    /// Policies that target the host and the patches each requires.
    #[serde(default)]
    pub policies: Vec<PolicyTarget>,
}

/// A patch a host is missing.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MissingPatch {
    /// `name@version`.
    pub patch: String,
    /// Severity from the manifest.
    pub severity: Severity,
    /// CVE and advisory ids.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Vendor release date (`YYYY-MM-DD`), when the manifest gives one.
    #[serde(default)]
    pub released: Option<String>,
    /// Policies that require the patch on this host.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// A policy that targets a host.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PolicyTarget {
    /// Policy id.
    pub policy: String,
    /// Patches (`name@version`) the policy requires on the host.
    #[serde(default)]
    pub required: Vec<String>,
}

/// Fetches `GET /v1/inventory` from the observer at `node`.
fn fetch_inventory(node: &str) -> anyhow::Result<InventoryReply> {
    Client::new(node)?.get("/v1/inventory")
}

/// Percent-encodes `text` for a URL query value.
fn query_value(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Counts of missing patches by severity, most urgent first.
fn count_by_severity(missing: &[MissingPatch]) -> [usize; 4] {
    let mut counts = [0; 4];
    for patch in missing {
        let slot = match patch.severity {
            Severity::Critical => 0,
            Severity::Important => 1,
            Severity::Moderate => 2,
            Severity::Low => 3,
        };
        counts[slot] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_value_encodes_reserved_bytes() {
        assert_eq!(query_value("pc-1.hq"), "pc-1.hq");
        assert_eq!(query_value("a b&c"), "a%20b%26c");
    }

    #[test]
    fn host_entry_accepts_minimal_json() {
        let entry: HostEntry =
            serde_json::from_str(r#"{"peer":"p","host":"h","last_seen":null,"inventory":null}"#)
                .expect("parses");
        assert!(entry.missing.is_empty());
        assert!(entry.policies.is_empty());
    }
}
