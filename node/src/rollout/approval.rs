//! Approval: when a patch may go ahead under a policy.
//!
//! `automatic` policies approve a patch at its publication (the manifest's
//! `issued`). `manual` ones wait for a live signed approval covering the
//! patch, or, with `auto_approve_after`, for that long after publication,
//! whichever comes first. Halts are judged separately and stop either way.

use jiff::Timestamp;
use patchmesh_protocol::actions::Approval;
use patchmesh_protocol::policy::{ApprovalMode, Policy};
use patchmesh_protocol::PatchRef;

/// Result of checking approval at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approved {
    /// Approved since this instant.
    Since(Timestamp),
    /// Not approved; `auto` is when `auto_approve_after` approves it.
    Waiting {
        /// Automatic approval time, if the policy has one.
        auto: Option<Timestamp>,
    },
}

/// Checks whether `patch`, published at `published`, is approved under
/// `policy` at `now`, given the approvals the node holds.
pub fn check(
    policy: &Policy,
    patch: &PatchRef,
    published: Timestamp,
    approvals: &[Approval],
    now: Timestamp,
) -> Approved {
    if policy.approval.mode == ApprovalMode::Automatic {
        return Approved::Since(published);
    }
    let signed =
        latest_approval(policy, patch, published, approvals, now).map(|at| at.max(published));
    let auto = policy
        .approval
        .auto_approve_after
        .and_then(|after| published.checked_add(after.to_signed_duration()).ok());
    let earliest = [signed, auto.filter(|at| *at <= now)]
        .into_iter()
        .flatten()
        .min();
    match earliest {
        Some(at) => Approved::Since(at),
        None => Approved::Waiting { auto },
    }
}

/// Returns the `issued` of the latest live approval covering `patch`.
pub fn latest_approval(
    policy: &Policy,
    patch: &PatchRef,
    published: Timestamp,
    approvals: &[Approval],
    now: Timestamp,
) -> Option<Timestamp> {
    approvals
        .iter()
        .filter(|a| a.expires > now && a.issued <= now)
        .filter(|a| a.covers(&policy.id, patch, published))
        .map(|a| a.issued)
        .max()
}
