//! `compliance`: per policy, group and site, the share of targeted hosts
//! that have every patch their policies require, and the oldest critical
//! patch still missing there.
//!
//! A host is targeted by a policy when its `policies` list names it. It
//! complies with that policy when none of its missing patches is in the
//! policy's `required` list or names the policy in its own `policies`.
//! For a group or a site, a host counts when any policy targets it, and
//! complies when it complies with all of them.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use patchmesh_protocol::Severity;
use serde::Serialize;
use serde_json::json;

use super::{fetch_inventory, HostEntry, MissingPatch};
use crate::{output, Context};

/// Arguments of `compliance`.
#[derive(Args)]
pub struct ComplianceArgs {
    /// Control API URL of an observer node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
}

/// Compliance of one policy, group or site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Share {
    /// Policy id, group or site name.
    pub name: String,
    /// Hosts targeted.
    pub targeted: usize,
    /// Targeted hosts with every required patch.
    pub compliant: usize,
    /// `compliant / targeted` in per cent; 100 when nothing is targeted.
    pub percent: f64,
    /// Oldest critical patch missing on a targeted host.
    pub oldest_missing_critical: Option<OldestMissing>,
}

/// The oldest critical patch missing in a scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OldestMissing {
    /// `name@version`.
    pub patch: String,
    /// Vendor release date, when known.
    pub released: Option<String>,
    /// Hosts missing it.
    pub hosts: usize,
}

/// Compliance of the whole fleet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compliance {
    /// One entry per policy.
    pub policies: Vec<Share>,
    /// One entry per group.
    pub groups: Vec<Share>,
    /// One entry per site.
    pub sites: Vec<Share>,
    /// Every targeted host.
    pub overall: Share,
}

/// Runs `compliance`.
pub fn run(context: &Context, args: ComplianceArgs) -> anyhow::Result<()> {
    let reply = fetch_inventory(&args.node)?;
    let summary = summarize(&reply.hosts);
    for (title, shares) in [
        ("policy", &summary.policies),
        ("group", &summary.groups),
        ("site", &summary.sites),
    ] {
        let rows: Vec<Vec<String>> = shares.iter().map(row).collect();
        context.out.say(output::table(
            &[title, "compliant", "share", "oldest missing critical"],
            &rows,
        ));
    }
    context.out.say(format!(
        "overall: {}/{} hosts ({:.1} %)",
        summary.overall.compliant, summary.overall.targeted, summary.overall.percent
    ));
    context.out.finish(json!(summary));
    Ok(())
}

fn row(share: &Share) -> Vec<String> {
    let oldest = share
        .oldest_missing_critical
        .as_ref()
        .map_or_else(String::new, |oldest| match &oldest.released {
            Some(date) => format!("{} ({date}, {} hosts)", oldest.patch, oldest.hosts),
            None => format!("{} ({} hosts)", oldest.patch, oldest.hosts),
        });
    vec![
        share.name.clone(),
        format!("{}/{}", share.compliant, share.targeted),
        format!("{:.1} %", share.percent),
        oldest,
    ]
}

/// Missing patches of `host` that `policy` requires.
fn missing_for<'a>(host: &'a HostEntry, policy: &str) -> Vec<&'a MissingPatch> {
    let required: BTreeSet<&str> = host
        .policies
        .iter()
        .filter(|target| target.policy == policy)
        .flat_map(|target| target.required.iter().map(String::as_str))
        .collect();
    host.missing
        .iter()
        .filter(|m| required.contains(m.patch.as_str()) || m.policies.iter().any(|p| p == policy))
        .collect()
}

/// Missing patches of `host` that any policy targeting it requires.
fn missing_required(host: &HostEntry) -> Vec<&MissingPatch> {
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    for target in &host.policies {
        for patch in missing_for(host, &target.policy) {
            if seen.insert(patch.patch.as_str()) {
                missing.push(patch);
            }
        }
    }
    missing
}

/// Builds a share from `(host, missing required patches)` pairs.
fn share(name: &str, hosts: &[(&HostEntry, Vec<&MissingPatch>)]) -> Share {
    let targeted = hosts.len();
    let compliant = hosts
        .iter()
        .filter(|(_, missing)| missing.is_empty())
        .count();

    // Oldest by release date; patches without a date sort after dated ones.
    let mut critical: BTreeMap<&str, (Option<&str>, usize)> = BTreeMap::new();
    for (_, missing) in hosts {
        for patch in missing.iter().filter(|m| m.severity == Severity::Critical) {
            let entry = critical
                .entry(patch.patch.as_str())
                .or_insert((patch.released.as_deref(), 0));
            entry.1 += 1;
        }
    }
    let oldest = critical
        .into_iter()
        .min_by_key(|(patch, (released, _))| (released.is_none(), *released, *patch))
        .map(|(patch, (released, hosts))| OldestMissing {
            patch: patch.to_string(),
            released: released.map(str::to_string),
            hosts,
        });

    let percent = if targeted == 0 {
        100.0
    } else {
        compliant as f64 * 100.0 / targeted as f64
    };
    Share {
        name: name.to_string(),
        targeted,
        compliant,
        percent,
        oldest_missing_critical: oldest,
    }
}

/// Computes compliance per policy, group and site from the observer's
/// inventory reply.
pub fn summarize(hosts: &[HostEntry]) -> Compliance {
    let mut by_policy: BTreeMap<&str, Vec<(&HostEntry, Vec<&MissingPatch>)>> = BTreeMap::new();
    for host in hosts {
        for target in &host.policies {
            by_policy
                .entry(target.policy.as_str())
                .or_default()
                .push((host, missing_for(host, &target.policy)));
        }
    }

    // Groups, sites and the total count hosts that any policy targets.
    let targeted: Vec<(&HostEntry, Vec<&MissingPatch>)> = hosts
        .iter()
        .filter(|host| !host.policies.is_empty())
        .map(|host| (host, missing_required(host)))
        .collect();
    let mut by_group: BTreeMap<&str, Vec<(&HostEntry, Vec<&MissingPatch>)>> = BTreeMap::new();
    let mut by_site: BTreeMap<&str, Vec<(&HostEntry, Vec<&MissingPatch>)>> = BTreeMap::new();
    for (host, missing) in &targeted {
        for group in &host.groups {
            by_group
                .entry(group.as_str())
                .or_default()
                .push((host, missing.clone()));
        }
        by_site
            .entry(host.site.as_str())
            .or_default()
            .push((host, missing.clone()));
    }

    let shares = |map: BTreeMap<&str, Vec<(&HostEntry, Vec<&MissingPatch>)>>| -> Vec<Share> {
        map.iter().map(|(name, hosts)| share(name, hosts)).collect()
    };
    Compliance {
        policies: shares(by_policy),
        groups: shares(by_group),
        sites: shares(by_site),
        overall: share("all", &targeted),
    }
}

#[cfg(test)]
mod tests {
    use super::super::PolicyTarget;
    use super::*;

    fn missing(patch: &str, severity: Severity, released: Option<&str>) -> MissingPatch {
        MissingPatch {
            patch: patch.into(),
            severity,
            cves: vec![],
            released: released.map(str::to_string),
            policies: vec![],
        }
    }

    fn host(name: &str, site: &str, groups: &[&str], policies: &[(&str, &[&str])]) -> HostEntry {
        HostEntry {
            peer: format!("peer-{name}"),
            host: name.into(),
            site: site.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            last_seen: None,
            inventory: None,
            missing: vec![],
            policies: policies
                .iter()
                .map(|(policy, required)| PolicyTarget {
                    policy: policy.to_string(),
                    required: required.iter().map(|r| r.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn shares_per_policy_group_and_site() {
        let mut a = host("a", "hq", &["pilot"], &[("baseline", &["ssl@2", "old@1"])]);
        a.missing = vec![
            missing("ssl@2", Severity::Critical, Some("2026-02-01")),
            missing("old@1", Severity::Critical, Some("2025-11-01")),
            missing("other@1", Severity::Critical, Some("2020-01-01")),
        ];
        let b = host("b", "hq", &["pilot"], &[("baseline", &["ssl@2", "old@1"])]);
        let mut c = host(
            "c",
            "branch",
            &[],
            &[("baseline", &["ssl@2"]), ("extra", &["x@1"])],
        );
        c.missing = vec![missing("x@1", Severity::Low, None)];
        let untargeted = host("d", "branch", &["pilot"], &[]);

        let summary = summarize(&[a, b, c, untargeted]);

        let baseline = &summary.policies[0];
        assert_eq!(baseline.name, "baseline");
        assert_eq!((baseline.compliant, baseline.targeted), (2, 3));
        let oldest = baseline.oldest_missing_critical.as_ref().expect("one");
        // "other@1" is older but no policy requires it.
        assert_eq!(oldest.patch, "old@1");
        assert_eq!(oldest.hosts, 1);

        let extra = &summary.policies[1];
        assert_eq!((extra.compliant, extra.targeted), (0, 1));
        assert_eq!(extra.oldest_missing_critical, None);

        let pilot = &summary.groups[0];
        assert_eq!(
            (pilot.name.as_str(), pilot.compliant, pilot.targeted),
            ("pilot", 1, 2)
        );
        let sites: Vec<(&str, usize, usize)> = summary
            .sites
            .iter()
            .map(|s| (s.name.as_str(), s.compliant, s.targeted))
            .collect();
        assert_eq!(sites, vec![("branch", 0, 1), ("hq", 1, 2)]);
        assert_eq!(
            (summary.overall.compliant, summary.overall.targeted),
            (1, 3)
        );
    }

    #[test]
    fn missing_entry_naming_policy_counts() {
        let mut a = host("a", "hq", &[], &[("baseline", &[])]);
        let mut entry = missing("ssl@2", Severity::Important, None);
        entry.policies = vec!["baseline".into()];
        a.missing = vec![entry];
        let summary = summarize(&[a]);
        assert_eq!(summary.policies[0].compliant, 0);
    }

    #[test]
    fn nothing_targeted_is_fully_compliant() {
        let summary = summarize(&[]);
        assert_eq!(summary.overall.percent, 100.0);
        assert!(summary.policies.is_empty());
    }
}
