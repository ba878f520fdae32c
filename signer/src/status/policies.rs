//! Per-policy rollout summary from node reports: counts by state, per wave
//! and per site, and the failure ratio.
//!
//! A count is over (host, patch) entries that name the policy. The failure
//! ratio is failed plus rolled-back entries over entries in a final state
//! (installed, failed, rolled back), so entries still in progress do not
//! dilute it. Waves need the policy itself, because reports do not name the
//! wave: a host is placed with the node's own `wave_of`, from the host,
//! site and groups it reports.

use std::collections::BTreeMap;

use patchmesh_node::rollout::targeting::{wave_name, wave_of};
use patchmesh_protocol::policy::Membership;
use patchmesh_protocol::{PatchState, Policy};
use serde::Serialize;

use super::ReportRow;

/// Wave label of a host that the policy's waves do not take.
pub const NO_WAVE: &str = "(no wave)";

/// Entry counts of one policy, or of one wave or site of it.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Entries per state name.
    pub states: BTreeMap<String, u64>,
    /// Entries in a final state: installed, failed or rolled back.
    pub reported_final: u64,
    /// Entries that failed or were rolled back.
    pub failed: u64,
    /// `failed` ÷ `reported_final`; `None` until an entry is final.
    pub failure_ratio: Option<f64>,
}

impl Counts {
    fn add(&mut self, state: &str) {
        *self.states.entry(state.to_string()).or_default() += 1;
        let parsed = parse_state(state);
        if parsed.is_some_and(PatchState::is_final) {
            self.reported_final += 1;
        }
        if matches!(parsed, Some(PatchState::Failed | PatchState::RolledBack)) {
            self.failed += 1;
        }
        self.failure_ratio =
            (self.reported_final > 0).then(|| self.failed as f64 / self.reported_final as f64);
    }
}

/// Summary of one policy.
#[derive(Debug, PartialEq, Serialize)]
pub struct PolicySummary {
    /// Policy id.
    pub policy: String,
    /// Hosts with at least one entry under the policy.
    pub hosts: u64,
    /// Counts over every entry.
    #[serde(flatten)]
    pub counts: Counts,
    /// Counts per wave, in the policy's wave order; `None` without the
    /// policy (pass it with `--policy FILE`).
    pub waves: Option<Vec<WaveSummary>>,
    /// Counts per site.
    pub sites: BTreeMap<String, Counts>,
}

/// Counts of one wave.
#[derive(Debug, PartialEq, Serialize)]
pub struct WaveSummary {
    /// Wave name: `all` for a policy without waves, [`NO_WAVE`] for hosts
    /// that no wave takes.
    pub wave: String,
    /// Known hosts that the policy targets and that fall in this wave.
    pub members: u64,
    /// Members that reported no entry under the policy.
    pub unreported: u64,
    /// Counts over the members' entries.
    #[serde(flatten)]
    pub counts: Counts,
}

/// Summarizes every policy named in `rows`. `policies` are the policies
/// given with `--policy`, by id, used to place hosts in waves.
pub fn summarize(rows: &[ReportRow], policies: &BTreeMap<String, Policy>) -> Vec<PolicySummary> {
    let mut ids: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.patches.iter().map(|p| p.policy.as_str()))
        .filter(|id| !id.is_empty())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| summarize_one(id, rows, policies.get(id)))
        .collect()
}

fn summarize_one(id: &str, rows: &[ReportRow], policy: Option<&Policy>) -> PolicySummary {
    let mut summary = PolicySummary {
        policy: id.to_string(),
        hosts: 0,
        counts: Counts::default(),
        waves: policy.map(empty_waves),
        sites: BTreeMap::new(),
    };
    for report in rows {
        let entries: Vec<&str> = report
            .patches
            .iter()
            .filter(|p| p.policy == id)
            .map(|p| p.state.as_str())
            .collect();
        if !entries.is_empty() {
            summary.hosts += 1;
            let site = summary.sites.entry(report.site.clone()).or_default();
            for state in &entries {
                summary.counts.add(state);
                site.add(state);
            }
        }

        // Place the host in its wave when the policy targets it or it
        // reported entries under the policy.
        let (Some(policy), Some(waves)) = (policy, summary.waves.as_mut()) else {
            continue;
        };
        let member = Membership {
            host: report.host.clone(),
            site: report.site.clone(),
            groups: report.groups.clone(),
        };
        if !policy.targets.matches(&member) && entries.is_empty() {
            continue;
        }
        let index = wave_of(policy, &member).unwrap_or(waves.len() - 1);
        let wave = &mut waves[index];
        wave.members += 1;
        if entries.is_empty() {
            wave.unreported += 1;
        }
        for state in &entries {
            wave.counts.add(state);
        }
    }
    if let Some(waves) = summary.waves.as_mut() {
        // The trailing "no wave" row is shown only when a host falls in it.
        if waves
            .last()
            .is_some_and(|w| w.wave == NO_WAVE && w.members == 0)
        {
            waves.pop();
        }
    }
    summary
}

/// Builds one empty row per wave of `policy`, then one for hosts that no
/// wave takes.
fn empty_waves(policy: &Policy) -> Vec<WaveSummary> {
    let count = policy.waves.len().max(1);
    (0..count)
        .map(|index| wave_name(policy, index).to_string())
        .chain(std::iter::once(NO_WAVE.to_string()))
        .map(|wave| WaveSummary {
            wave,
            members: 0,
            unreported: 0,
            counts: Counts::default(),
        })
        .collect()
}

fn parse_state(name: &str) -> Option<PatchState> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rows() -> Vec<ReportRow> {
        let entry = |policy: &str, state: &str| {
            json!({"patch": "demo@1", "policy": policy, "state": state,
                   "since": "2030-01-01T00:00:00Z", "started": "2030-01-01T00:00:00Z"})
        };
        let value = json!([
            {"host": "pilot-1", "site": "hq", "groups": ["it"],
             "patches": [entry("monthly", "failed")]},
            {"host": "pc-1", "site": "hq", "groups": [],
             "patches": [entry("monthly", "installed")]},
            {"host": "pc-2", "site": "branch", "groups": [],
             "patches": [entry("monthly", "rolled_back"), entry("other", "pending")]},
            {"host": "pc-3", "site": "branch", "groups": [],
             "patches": [entry("monthly", "downloading")]},
            {"host": "pc-4", "site": "branch", "groups": [], "patches": []},
        ]);
        serde_json::from_value(value).expect("sample parses")
    }

    fn policy() -> Policy {
        Policy::from_toml(
            "id = \"monthly\"\nversion = 1\nexpires = \"2031-01-01T00:00:00Z\"\n\
             [content]\nmin_severity = \"low\"\n\
             [[waves]]\nname = \"pilot\"\ngroups = [\"it\"]\n\
             [[waves]]\nname = \"broad\"\npercent = 100\n",
        )
        .expect("policy parses")
    }

    #[test]
    fn failure_ratio_counts_only_final_entries() {
        let summaries = summarize(&rows(), &BTreeMap::new());
        let monthly = &summaries[0];
        assert_eq!(monthly.policy, "monthly");
        assert_eq!(monthly.hosts, 4);
        assert_eq!(monthly.counts.reported_final, 3);
        assert_eq!(monthly.counts.failed, 2);
        assert_eq!(monthly.counts.failure_ratio, Some(2.0 / 3.0));
        assert_eq!(monthly.counts.states["downloading"], 1);
    }

    #[test]
    fn sites_are_counted_apart() {
        let summaries = summarize(&rows(), &BTreeMap::new());
        let monthly = &summaries[0];
        assert_eq!(monthly.sites["hq"].failure_ratio, Some(0.5));
        assert_eq!(monthly.sites["branch"].failure_ratio, Some(1.0));
        assert_eq!(monthly.sites["branch"].states.len(), 2);
        let other = &summaries[1];
        assert_eq!(other.policy, "other");
        assert!(!other.sites.contains_key("hq"));
    }

    #[test]
    fn waves_need_the_policy() {
        let summaries = summarize(&rows(), &BTreeMap::new());
        assert_eq!(summaries[0].waves, None);
    }

    #[test]
    fn hosts_are_placed_in_waves() {
        let policies = BTreeMap::from([("monthly".to_string(), policy())]);
        let summaries = summarize(&rows(), &policies);
        let waves = summaries[0].waves.as_ref().expect("waves");
        let names: Vec<&str> = waves.iter().map(|w| w.wave.as_str()).collect();
        assert_eq!(names, ["pilot", "broad"]);
        assert_eq!(waves[0].members, 1);
        assert_eq!(waves[0].counts.failure_ratio, Some(1.0));
        // pc-4 is targeted and reported nothing under the policy.
        assert_eq!(waves[1].members, 4);
        assert_eq!(waves[1].unreported, 1);
        assert_eq!(waves[1].counts.failure_ratio, Some(0.5));
    }
}
