//! The rollout engine: pure decision code that moves one patch under one
//! policy through its states on this node.
//!
//! The engine reads state, time and events and returns actions. It runs no
//! command, opens no file and reads no clock, so the agent and the
//! simulator drive the same code, and tests drive it with virtual time.
//!
//! The node keeps one [`Track`] per (policy, patch) in its store and calls
//! [`step`] with the track, the [`Inputs`] it holds, an [`Event`] and the
//! time. It persists [`Step::track`], then runs [`Step::actions`], feeds
//! each action's result back as an event, and steps again with
//! [`Event::Tick`] at [`Step::wake`] or whenever an input changes. Settings
//! of the whole host (native updater, isolation) come from [`host_settings`].

mod advance;
pub mod approval;
pub mod host;
pub mod machine;
pub mod reboot;
pub mod targeting;
pub mod timing;
pub mod waves;

use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::policy::{Membership, Policy};
use patchmesh_protocol::{PatchRef, PatchState, Severity};
use serde::{Deserialize, Serialize};

pub use advance::step;
pub use host::{host_settings, HostSettings};
pub use machine::{Action, ActionKind, Event, Failure, Reason, Step, Track};
pub use waves::{judge_waves, FleetView, HostResult, WaveJudgement, WaveStatus};

/// What the engine needs to know about a patch, from its manifest and the
/// node's inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchInfo {
    /// The patch.
    pub patch: PatchRef,
    /// Severity from the manifest.
    pub severity: Severity,
    /// Whether the manifest says a reboot is needed.
    pub reboot_required: bool,
    /// Publication time: the manifest's `issued`.
    pub published: Timestamp,
    /// Whether the patch applies to this machine (OS, architecture,
    /// packages), as the node's inventory decided.
    pub applies: bool,
}

/// Signed admin actions the node holds, verified; expired ones are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// Approvals.
    pub approvals: Vec<Approval>,
    /// Halts.
    pub halts: Vec<Halt>,
    /// Resumes.
    pub resumes: Vec<Resume>,
    /// Rollback orders.
    pub rollbacks: Vec<RollbackOrder>,
}

/// The same patch's state under another policy on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherTrack {
    /// That policy's id.
    pub policy: String,
    /// Its state there.
    pub state: PatchState,
}

/// Everything besides the track and the clock that a step reads.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The policy, verified.
    pub policy: &'a Policy,
    /// The patch.
    pub patch: &'a PatchInfo,
    /// This machine's membership, from its enrollment or config.
    pub member: &'a Membership,
    /// Admin actions held.
    pub orders: &'a Orders,
    /// Reports of the fleet for this policy and patch.
    pub fleet: &'a FleetView,
    /// The same patch's tracks under other policies on this node. A patch
    /// is installed at most once per node, so the first policy to start
    /// downloading it handles it and the others follow its outcome.
    pub others: &'a [OtherTrack],
}

#[cfg(test)]
mod tests;
