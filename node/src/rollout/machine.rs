//! The persisted state of one patch under one policy, and the events and
//! actions that move it.
//!
//! The node persists a [`Track`] after every [`super::step`] and before it
//! runs the actions the step returned. An action that reports back (download,
//! install, health check, rollback, reboot) is marked in flight, so a step
//! without its result starts nothing new. After a crash the node sends
//! [`Event::Restarted`], which re-issues only the action that was in flight:
//! steps whose results were persisted are never repeated.

use jiff::Timestamp;
use patchmesh_protocol::{PatchRef, PatchState};
use serde::{Deserialize, Serialize};

/// Persisted rollout state of one patch under one policy on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Policy id.
    pub policy: String,
    /// The patch.
    pub patch: PatchRef,
    /// Current state, as reported.
    pub state: PatchState,
    /// When `state` was entered.
    pub since: Timestamp,
    /// When the track was created.
    pub started: Timestamp,
    /// When the patch was approved under the policy.
    pub approved_at: Option<Timestamp>,
    /// Whether the payload is downloaded and verified.
    pub downloaded: bool,
    /// No new download before this time, after a failed one.
    pub retry_after: Option<Timestamp>,
    /// When the installer succeeded.
    pub installed_at: Option<Timestamp>,
    /// Whether the health check passed (or the policy has none).
    pub healthy: bool,
    /// Install attempts started.
    pub attempts: u32,
    /// Reboot postponements accepted.
    pub postpones: u32,
    /// Reboot time the last notice announced.
    pub noticed_for: Option<Timestamp>,
    /// When the reboot was started.
    pub reboot_started: Option<Timestamp>,
    /// When the last rollback finished.
    pub rolled_back_at: Option<Timestamp>,
    /// Why the patch failed or was rolled back.
    pub failure: Option<Failure>,
    /// Action started and not yet reported back.
    pub in_flight: Option<ActionKind>,
    /// Human-readable detail of the last transition.
    pub detail: String,
}

impl Track {
    /// Creates a pending track at `now`.
    pub fn new(policy: &str, patch: PatchRef, now: Timestamp) -> Self {
        Track {
            policy: policy.to_string(),
            patch,
            state: PatchState::Pending,
            since: now,
            started: now,
            approved_at: None,
            downloaded: false,
            retry_after: None,
            installed_at: None,
            healthy: false,
            attempts: 0,
            postpones: 0,
            noticed_for: None,
            reboot_started: None,
            rolled_back_at: None,
            failure: None,
            in_flight: None,
            detail: String::new(),
        }
    }

    /// Moves to `state` at `now`, keeping `since` when the state is unchanged.
    pub(super) fn enter(&mut self, state: PatchState, now: Timestamp, detail: impl Into<String>) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
        self.detail = detail.into();
    }
}

/// Why a patch failed or was rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The installer failed.
    Install,
    /// The health check failed after install.
    HealthCheck,
    /// An admin ordered the rollback.
    Ordered,
    /// The rollback itself failed.
    Rollback,
}

impl Failure {
    /// Whether the machine could not take the patch, as opposed to an admin
    /// taking it back.
    pub fn is_machine_failure(self) -> bool {
        !matches!(self, Failure::Ordered)
    }
}

/// Input to a step besides the clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// Time passed or inputs (policy, orders, reports) changed.
    Tick,
    /// The node restarted; actions in flight did not report back.
    Restarted,
    /// The payload is downloaded and verified.
    Downloaded,
    /// The download failed; it is retried.
    DownloadFailed {
        /// Error message.
        error: String,
    },
    /// The installer succeeded.
    InstallSucceeded,
    /// The installer failed.
    InstallFailed {
        /// Error message or exit status.
        error: String,
    },
    /// The health check passed.
    HealthPassed,
    /// The health check failed or timed out.
    HealthFailed {
        /// Error message or exit status.
        error: String,
    },
    /// The rollback succeeded.
    RollbackSucceeded,
    /// The rollback failed.
    RollbackFailed {
        /// Error message or exit status.
        error: String,
    },
    /// The user asked to postpone the reboot.
    PostponeRequested,
    /// The machine booted after the reboot this track started.
    Rebooted,
}

/// Kind of an action that reports back with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Waits for `Downloaded` or `DownloadFailed`.
    Download,
    /// Waits for `InstallSucceeded` or `InstallFailed`.
    Install,
    /// Waits for `HealthPassed` or `HealthFailed`.
    HealthCheck,
    /// Waits for `RollbackSucceeded` or `RollbackFailed`.
    Rollback,
    /// Waits for `Rebooted`.
    Reboot,
}

/// An effect the node carries out after persisting the step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Fetch and verify the payload.
    Download,
    /// Run the manifest's installer. `retry` is set when an earlier attempt
    /// may have run, so the node checks the manifest's `detect` first.
    Install {
        /// Whether an earlier attempt may have run.
        retry: bool,
    },
    /// Run the policy's health check.
    HealthCheck {
        /// Shell command.
        command: String,
        /// Seconds before it counts as failed.
        timeout_secs: Option<u64>,
    },
    /// Roll the patch back with the manifest's rollback.
    RollBack {
        /// Why.
        reason: Failure,
    },
    /// Tell the user a reboot is coming.
    NotifyUser {
        /// The policy's message.
        message: String,
        /// When the reboot happens.
        reboot_at: Timestamp,
    },
    /// Reboot the machine.
    Reboot,
}

impl Action {
    /// Kind of event this action waits for, if any.
    pub fn kind(&self) -> Option<ActionKind> {
        match self {
            Action::Download => Some(ActionKind::Download),
            Action::Install { .. } => Some(ActionKind::Install),
            Action::HealthCheck { .. } => Some(ActionKind::HealthCheck),
            Action::RollBack { .. } => Some(ActionKind::Rollback),
            Action::Reboot => Some(ActionKind::Reboot),
            Action::NotifyUser { .. } => None,
        }
    }
}

/// Why the track is not moving.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// The policy does not target this machine.
    NotTargeted,
    /// The policy does not select the patch, or it does not apply here.
    NotSelected,
    /// The policy expired.
    PolicyExpired,
    /// The policy's schedule is invalid.
    InvalidSchedule,
    /// An exception exempts this host.
    Exempt {
        /// The exception's reason.
        reason: String,
    },
    /// No wave takes this host.
    NoWave,
    /// Waiting for a signed approval.
    AwaitingApproval,
    /// A halt is in force.
    Halted {
        /// The halt's reason.
        reason: String,
    },
    /// An earlier wave has not passed yet.
    EarlierWave {
        /// Name of that wave.
        wave: String,
    },
    /// An earlier wave failed over its limit.
    WaveFailed {
        /// Name of that wave.
        wave: String,
        /// Its failure ratio.
        ratio: f64,
    },
    /// Waiting for the maintenance window.
    Window,
    /// The schedule has no window ahead.
    NoWindow,
    /// Another policy on this node handles the same patch.
    OtherPolicy {
        /// That policy's id.
        policy: String,
    },
    /// Waiting for the result of an action.
    InFlight {
        /// The action.
        action: ActionKind,
    },
    /// Waiting to notify the user of a reboot.
    RebootNotice,
    /// Waiting for the reboot time.
    RebootScheduled,
    /// Rolled back or failed; waiting for a newer version or a new approval.
    Stopped,
    /// Installed; nothing left to do.
    Done,
}

/// What a step returns: the track to persist, actions to run after
/// persisting it, and when to step again.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// New state; persist it before running `actions`.
    pub track: Track,
    /// Effects to carry out, in order.
    pub actions: Vec<Action>,
    /// Why the track waits.
    pub reason: Reason,
    /// Step again with `Event::Tick` at this time even if nothing else
    /// happens; `None` means only an event or new input moves it.
    pub wake: Option<Timestamp>,
}
