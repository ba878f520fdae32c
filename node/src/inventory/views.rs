//! The body of the observer's `GET /v1/inventory`: per host, its latest
//! verified inventory, the held patches it is missing and the policies that
//! target it with the patches each requires.
//!
//! The route only gathers the observer's state and serializes
//! [`inventory_view`]'s result. `patchmesh-signer inventory` and
//! `compliance` read this JSON.

use jiff::Timestamp;
use patchmesh_protocol::inventory::Inventory;
use patchmesh_protocol::policy::{Membership, Policy};
use patchmesh_protocol::{Manifest, PatchRef, PatchState, PatchStatus, Severity};
use serde::Serialize;

use super::applicability::{evaluate_all, Verdict};
use crate::rollout::targeting::{exemption, selects};

/// Observer state about one host.
#[derive(Clone, Debug)]
pub struct HostInput<'a> {
    /// libp2p peer id (base58).
    pub peer: &'a str,
    /// Host name, site and groups.
    pub member: &'a Membership,
    /// Last report or inventory received.
    pub last_seen: Option<Timestamp>,
    /// Latest verified inventory.
    pub inventory: Option<&'a Inventory>,
    /// Patch states from the host's latest verified report.
    pub patches: &'a [PatchStatus],
}

/// `GET /v1/inventory` reply.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryView {
    /// One entry per host.
    pub hosts: Vec<HostView>,
}

/// One host in the reply.
#[derive(Clone, Debug, Serialize)]
pub struct HostView {
    /// libp2p peer id.
    pub peer: String,
    /// Host name.
    pub host: String,
    /// Site.
    pub site: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Last report or inventory received.
    pub last_seen: Option<Timestamp>,
    /// Latest verified inventory.
    pub inventory: Option<Inventory>,
    /// Held patches the host is missing, most severe first.
    pub missing: Vec<MissingView>,
    /// Policies that target the host.
    pub policies: Vec<PolicyView>,
}

/// A patch a host is missing.
#[derive(Clone, Debug, Serialize)]
pub struct MissingView {
    /// `name@version`.
    pub patch: PatchRef,
    /// Severity from the manifest.
    pub severity: Severity,
    /// CVE and advisory ids.
    pub cves: Vec<String>,
    /// Vendor release date.
    pub released: Option<String>,
    /// Policies that require it on this host.
    pub policies: Vec<String>,
}

/// A policy that targets a host.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyView {
    /// Policy id.
    pub policy: String,
    /// Patches the policy requires on the host.
    pub required: Vec<PatchRef>,
}

/// Returns whether the host's report marks `patch` installed after its
/// inventory was collected, which makes the report newer evidence.
fn reported_installed(host: &HostInput, patch: &PatchRef) -> bool {
    host.patches.iter().any(|status| {
        let installed = matches!(
            status.state,
            PatchState::Installed | PatchState::RebootPending
        );
        let newer = host
            .inventory
            .is_none_or(|inventory| status.since >= inventory.time);
        &status.patch == patch && installed && newer
    })
}

/// Builds the reply from what the observer holds. `manifests` and
/// `policies` must be verified and unexpired at `now`.
///
/// A policy requires a patch on a host when it selects the patch (listed,
/// or at or above its minimum severity), the patch concerns the host's OS,
/// architecture and packages, and no exception exempts the host. Without an
/// inventory only listed patches are required and none counts as missing.
pub fn inventory_view(
    hosts: &[HostInput],
    manifests: &[&Manifest],
    policies: &[&Policy],
    now: Timestamp,
) -> InventoryView {
    let hosts = hosts
        .iter()
        .map(|host| host_view(host, manifests, policies, now))
        .collect();
    InventoryView { hosts }
}

fn host_view(
    host: &HostInput,
    manifests: &[&Manifest],
    policies: &[&Policy],
    now: Timestamp,
) -> HostView {
    let verdicts = host
        .inventory
        .map(|inventory| evaluate_all(manifests.iter().copied(), inventory))
        .unwrap_or_default();
    let concerns = |patch: &PatchRef| match verdicts.get(patch) {
        Some(Ok(verdict)) => !matches!(verdict, Verdict::NotApplicable { .. }),
        // An unreadable version is shown as needed, so it is looked at.
        Some(Err(_)) => true,
        None => host.inventory.is_none(),
    };
    let needs = |patch: &PatchRef| match verdicts.get(patch) {
        Some(Ok(verdict)) => verdict.needs_install() && !reported_installed(host, patch),
        Some(Err(_)) => true,
        None => false,
    };

    // Policies that target the host and the patches each requires.
    let mut targets = Vec::new();
    for policy in policies {
        if !policy.targets.matches(host.member) {
            continue;
        }
        let exempt = exemption(policy, &host.member.host, now).is_some();
        let required: Vec<PatchRef> = manifests
            .iter()
            .filter(|m| !exempt && selects(policy, &m.patch_ref(), m.severity))
            .filter(|m| host.inventory.is_some() || policy.content.patches.contains(&m.patch_ref()))
            .map(|m| m.patch_ref())
            .filter(|patch| concerns(patch))
            .collect();
        targets.push(PolicyView {
            policy: policy.id.clone(),
            required,
        });
    }

    let mut missing: Vec<MissingView> = manifests
        .iter()
        .filter(|m| needs(&m.patch_ref()))
        .map(|m| {
            let patch = m.patch_ref();
            let requiring = targets
                .iter()
                .filter(|t| t.required.contains(&patch))
                .map(|t| t.policy.clone())
                .collect();
            MissingView {
                patch,
                severity: m.severity,
                cves: m.cves.clone(),
                released: m.released.clone(),
                policies: requiring,
            }
        })
        .collect();
    missing.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.patch.cmp(&b.patch)));

    HostView {
        peer: host.peer.to_string(),
        host: host.member.host.clone(),
        site: host.member.site.clone(),
        groups: host.member.groups.clone(),
        last_seen: host.last_seen,
        inventory: host.inventory.cloned(),
        missing,
        policies: targets,
    }
}

#[cfg(test)]
mod tests {
    use patchmesh_protocol::manifest::{Applicability, PackageFix};

    use super::*;
    use crate::inventory::fixtures::{deb_manifest, debian_inventory};

    fn inventory(version: &str, time: Timestamp) -> Inventory {
        let mut inventory = debian_inventory(&[("pm-demo", version)]);
        inventory.time = time;
        inventory
    }

    fn manifest(severity: Severity, os: &str) -> Manifest {
        let applies_to = Applicability {
            os: vec![os.into()],
            packages: vec![PackageFix {
                package: "pm-demo".into(),
                introduced: None,
                fixed: "1.2-1".into(),
            }],
            ..Applicability::default()
        };
        let mut manifest = deb_manifest("pm-demo", "1.2-1", severity, applies_to);
        manifest.cves = vec!["CVE-2026-0001".into()];
        manifest.released = Some("2026-01-01".into());
        manifest
    }

    /// A host `pc-1` with `inventory` and the report states `patches`.
    fn host<'a>(
        member: &'a Membership,
        inventory: &'a Inventory,
        patches: &'a [PatchStatus],
    ) -> HostInput<'a> {
        HostInput {
            peer: "p",
            member,
            last_seen: None,
            inventory: Some(inventory),
            patches,
        }
    }

    fn policy(min_severity: Severity) -> Policy {
        let text = format!(
            "id = \"baseline\"\nversion = 1\nexpires = \"2100-01-01T00:00:00Z\"\n\
             [content]\nmin_severity = \"{min_severity}\"\n"
        );
        toml::from_str(&text).expect("policy parses")
    }

    fn member() -> Membership {
        Membership {
            host: "pc-1".into(),
            site: "hq".into(),
            groups: vec!["pilot".into()],
        }
    }

    #[test]
    fn old_version_is_missing_and_required() {
        let member = member();
        let old = inventory("1.1-1", Timestamp::UNIX_EPOCH);
        let manifest = manifest(Severity::Critical, "debian");
        let policy = policy(Severity::Important);
        let host = host(&member, &old, &[]);
        let view = inventory_view(&[host], &[&manifest], &[&policy], Timestamp::UNIX_EPOCH);
        let host = &view.hosts[0];
        assert_eq!(host.missing.len(), 1);
        assert_eq!(host.missing[0].policies, vec!["baseline"]);
        assert_eq!(host.policies[0].required, vec![manifest.patch_ref()]);

        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["hosts"][0]["missing"][0]["patch"], "pm-demo@1.2-1");
        assert_eq!(json["hosts"][0]["missing"][0]["severity"], "critical");
        assert_eq!(json["hosts"][0]["inventory"]["os"]["id"], "debian");
    }

    #[test]
    fn fixed_version_is_required_but_not_missing() {
        let member = member();
        let new = inventory("1.2-1", Timestamp::UNIX_EPOCH);
        let manifest = manifest(Severity::Critical, "debian");
        let policy = policy(Severity::Important);
        let host = host(&member, &new, &[]);
        let view = inventory_view(&[host], &[&manifest], &[&policy], Timestamp::UNIX_EPOCH);
        assert!(view.hosts[0].missing.is_empty());
        assert_eq!(view.hosts[0].policies[0].required.len(), 1);
    }

    #[test]
    fn other_os_and_lower_severity_are_not_required() {
        let member = member();
        let old = inventory("1.1-1", Timestamp::UNIX_EPOCH);
        let ubuntu = manifest(Severity::Critical, "ubuntu");
        let policy_for_critical = policy(Severity::Critical);
        let low = manifest(Severity::Low, "debian");
        let host = host(&member, &old, &[]);
        let view = inventory_view(
            std::slice::from_ref(&host),
            &[&ubuntu],
            &[&policy_for_critical],
            Timestamp::UNIX_EPOCH,
        );
        assert!(view.hosts[0].missing.is_empty());
        assert!(view.hosts[0].policies[0].required.is_empty());

        let view = inventory_view(
            &[host],
            &[&low],
            &[&policy_for_critical],
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            view.hosts[0].missing.len(),
            1,
            "missing, though no policy requires it"
        );
        assert!(view.hosts[0].missing[0].policies.is_empty());
        assert!(view.hosts[0].policies[0].required.is_empty());
    }

    #[test]
    fn newer_installed_report_overrides_stale_inventory() {
        let member = member();
        let collected = Timestamp::from_second(1_000).unwrap();
        let old = inventory("1.1-1", collected);
        let manifest = manifest(Severity::Critical, "debian");
        let status = PatchStatus {
            patch: manifest.patch_ref(),
            policy: "baseline".into(),
            state: PatchState::Installed,
            since: Timestamp::from_second(2_000).unwrap(),
            started: Timestamp::from_second(1_500).unwrap(),
            detail: String::new(),
            payload_hash: None,
            bytes_same_site: 0,
            bytes_cross_site: 0,
        };
        let statuses = [status];
        let host = host(&member, &old, &statuses);
        let view = inventory_view(&[host], &[&manifest], &[], Timestamp::UNIX_EPOCH);
        assert!(view.hosts[0].missing.is_empty());
    }
}
