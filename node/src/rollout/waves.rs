//! Wave judgement: when each wave of a rollout may start, from what the
//! fleet reported.
//!
//! Wave 0 starts when the patch is approved. A wave's results are in when
//! every member reported a final state, or at its report deadline after the
//! wave started, when silent members count as failed. Its soak starts then.
//! The next wave starts when the soak ends, if failed ÷ members is at most
//! the wave's `max_failure_ratio`; otherwise the rollout stops there.

use jiff::Timestamp;
use patchmesh_protocol::policy::{Membership, Policy};
use patchmesh_protocol::PatchState;
use serde::{Deserialize, Serialize};

use super::targeting::{exemption, wave_of};

/// What a node knows of the fleet for one policy and patch: every enrolled
/// host it heard of and the last state each reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// Known hosts, in any order.
    pub hosts: Vec<HostResult>,
}

/// One host's membership and its last reported state of the patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostResult {
    /// Membership from the host's enrollment.
    pub member: Membership,
    /// Last reported state; `None` when the host reported nothing yet.
    pub state: Option<PatchState>,
    /// When the host entered that state.
    pub since: Option<Timestamp>,
}

/// Where one wave stands at a given time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum WaveStatus {
    /// Earlier waves have not passed, so this one has not started.
    NotStarted,
    /// Started at `started`; results are not in yet. `deadline` is when
    /// silent members count as failed, if the wave has a report deadline.
    Reporting {
        /// Start of the wave.
        started: Timestamp,
        /// Report deadline, if any.
        deadline: Option<Timestamp>,
    },
    /// Results are in and under the limit; soaking until `until`.
    Soaking {
        /// End of the soak, when the next wave starts.
        until: Timestamp,
        /// Failed members ÷ members.
        ratio: f64,
    },
    /// Passed: the next wave started at `at`.
    Passed {
        /// End of the soak.
        at: Timestamp,
        /// Failed members ÷ members.
        ratio: f64,
    },
    /// Results are in and over the limit; later waves stay waiting.
    Failed {
        /// Failed members ÷ members.
        ratio: f64,
        /// The wave's limit.
        limit: f64,
    },
}

/// One wave's members and status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaveJudgement {
    /// Wave name.
    pub name: String,
    /// Number of known members.
    pub members: usize,
    /// Members that failed, counting silent ones after the deadline.
    pub failed: usize,
    /// Status at the time judged.
    pub status: WaveStatus,
}

/// Judges every wave of `policy` at `now` for a rollout approved at
/// `approved`.
///
/// Members are the known hosts that the policy targets, that no exception
/// covers and that fall in the wave. A member that reported `failed` or
/// `rolled_back` counts as failed.
pub fn judge_waves(
    policy: &Policy,
    fleet: &FleetView,
    approved: Timestamp,
    now: Timestamp,
) -> Vec<WaveJudgement> {
    let count = policy.waves.len().max(1);
    let mut start = Some(approved);
    let mut judgements = Vec::with_capacity(count);
    for index in 0..count {
        let members: Vec<&HostResult> = fleet
            .hosts
            .iter()
            .filter(|h| policy.targets.matches(&h.member))
            .filter(|h| exemption(policy, &h.member.host, now).is_none())
            .filter(|h| wave_of(policy, &h.member) == Some(index))
            .collect();
        let judgement = match start {
            None => WaveJudgement {
                name: super::targeting::wave_name(policy, index).to_string(),
                members: members.len(),
                failed: 0,
                status: WaveStatus::NotStarted,
            },
            Some(started) => judge_one(policy, index, &members, started, now),
        };
        start = match judgement.status {
            WaveStatus::Passed { at, .. } => Some(at),
            _ => None,
        };
        judgements.push(judgement);
    }
    judgements
}

fn judge_one(
    policy: &Policy,
    index: usize,
    members: &[&HostResult],
    started: Timestamp,
    now: Timestamp,
) -> WaveJudgement {
    let wave = policy.waves.get(index);
    let name = super::targeting::wave_name(policy, index).to_string();
    let deadline = wave
        .and_then(|w| w.report_deadline)
        .and_then(|d| started.checked_add(d.to_signed_duration()).ok());
    let is_final = |h: &&&HostResult| h.state.is_some_and(PatchState::is_final);
    let is_failed =
        |h: &&&HostResult| matches!(h.state, Some(PatchState::Failed | PatchState::RolledBack));

    // Results are in when every member is final, or at the deadline.
    let all_final = members.iter().all(|h| is_final(&h));
    let results_in = if all_final {
        let last = members.iter().filter_map(|h| h.since).max();
        Some(last.unwrap_or(started).max(started))
    } else {
        deadline.filter(|d| now >= *d)
    };
    let Some(results_in) = results_in else {
        let failed = members.iter().filter(is_failed).count();
        return WaveJudgement {
            name,
            members: members.len(),
            failed,
            status: WaveStatus::Reporting { started, deadline },
        };
    };

    // Silent members count as failed once the deadline passed.
    let failed = if all_final {
        members.iter().filter(is_failed).count()
    } else {
        members
            .iter()
            .filter(|h| is_failed(h) || !is_final(h))
            .count()
    };
    let ratio = if members.is_empty() {
        0.0
    } else {
        failed as f64 / members.len() as f64
    };
    let limit = wave.map_or(1.0, |w| w.max_failure_ratio);
    let soak = wave.map_or(jiff::SignedDuration::ZERO, |w| w.soak.to_signed_duration());
    let soak_end = results_in.checked_add(soak).unwrap_or(Timestamp::MAX);
    let status = if ratio > limit {
        WaveStatus::Failed { ratio, limit }
    } else if now >= soak_end {
        WaveStatus::Passed {
            at: soak_end,
            ratio,
        }
    } else {
        WaveStatus::Soaking {
            until: soak_end,
            ratio,
        }
    };
    WaveJudgement {
        name,
        members: members.len(),
        failed,
        status,
    }
}
