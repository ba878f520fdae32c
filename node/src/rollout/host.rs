//! Settings of the whole host that follow from every policy at once: the
//! operating system's own updater and network isolation.

use jiff::Timestamp;
use patchmesh_protocol::policy::{Membership, OnFailure, Policy};
use patchmesh_protocol::PatchState;
use serde::{Deserialize, Serialize};

use super::machine::Track;

/// What the host should look like now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSettings {
    /// Keep the native updater off.
    pub native_updater_disabled: bool,
    /// Isolate the host from the network, keeping patchmesh's own traffic
    /// open so it can still be patched.
    pub isolated: bool,
}

/// Computes the host settings from the live `policies` and this node's
/// `tracks`.
///
/// The native updater stays off while any live policy targeting the host
/// asks for it. The host is isolated while a track of a live policy with
/// `on_failure = "isolate"` is failed, or rolled back because the machine
/// could not take the patch; a later success or an expired policy lifts it.
/// The node compares the result with what it last applied and runs the
/// configured commands for the differences.
pub fn host_settings(
    policies: &[&Policy],
    tracks: &[&Track],
    member: &Membership,
    now: Timestamp,
) -> HostSettings {
    let live = |policy: &&&Policy| policy.expires > now && policy.targets.matches(member);
    let native_updater_disabled = policies
        .iter()
        .filter(live)
        .any(|policy| policy.native_updater.disable);
    let isolated = tracks.iter().any(|track| {
        let failed = matches!(track.state, PatchState::Failed | PatchState::RolledBack)
            && track.failure.is_some_and(|f| f.is_machine_failure());
        failed
            && policies.iter().filter(live).any(|policy| {
                policy.id == track.policy && policy.exceptions.on_failure == OnFailure::Isolate
            })
    });
    HostSettings {
        native_updater_disabled,
        isolated,
    }
}
