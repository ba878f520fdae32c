//! The step function: applies an event to a track, then moves the track as
//! far as the policy, the orders, the fleet and the clock allow.

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::actions::halted;
use patchmesh_protocol::schedule::Calendar;
use patchmesh_protocol::PatchState;

use super::approval::{self, Approved};
use super::machine::{Action, Event, Failure, Reason, Step, Track};
use super::targeting::{exemption, selects, wave_name, wave_of};
use super::timing::{opening, Opening};
use super::waves::{judge_waves, WaveStatus};
use super::{reboot, Inputs};

/// How long a failed download waits before the next attempt.
pub const DOWNLOAD_RETRY: SignedDuration = SignedDuration::from_mins(5);

/// What the engine decided after the event.
struct Decision {
    actions: Vec<Action>,
    reason: Reason,
    wake: Option<Timestamp>,
}

impl Decision {
    fn wait(reason: Reason, wake: Option<Timestamp>) -> Self {
        Decision {
            actions: Vec::new(),
            reason,
            wake,
        }
    }
}

/// Applies `event` to `track` at `now` and returns the track to persist,
/// the actions to run and when to step again.
pub fn step(track: &Track, inputs: &Inputs<'_>, event: Event, now: Timestamp) -> Step {
    let mut next = track.clone();
    apply_event(&mut next, inputs, event, now);
    let decision = decide(&mut next, inputs, now);
    if let Some(kind) = decision.actions.iter().find_map(Action::kind) {
        next.in_flight = Some(kind);
    }
    if next.state != track.state {
        tracing::info!(
            policy = %next.policy,
            patch = %next.patch,
            from = %track.state,
            to = %next.state,
            detail = %next.detail,
            "rollout state changed"
        );
    }
    Step {
        track: next,
        actions: decision.actions,
        reason: decision.reason,
        wake: decision.wake,
    }
}

fn apply_event(track: &mut Track, inputs: &Inputs<'_>, event: Event, now: Timestamp) {
    let rules = &inputs.policy.rollback;
    match event {
        Event::Tick => return,
        Event::Restarted => {}
        Event::Downloaded => {
            track.downloaded = true;
            track.retry_after = None;
        }
        Event::DownloadFailed { error } => {
            track.retry_after = now.checked_add(DOWNLOAD_RETRY).ok();
            track.detail = format!("download failed: {error}");
        }
        Event::InstallSucceeded => {
            track.installed_at = Some(now);
            track.healthy = rules.health_check.is_none();
            track.detail = "installer succeeded".into();
        }
        Event::InstallFailed { error } => {
            track.failure = Some(Failure::Install);
            let state = if rules.on_install_failure {
                PatchState::RollingBack
            } else {
                PatchState::Failed
            };
            track.enter(state, now, format!("install failed: {error}"));
        }
        Event::HealthPassed => {
            track.healthy = true;
        }
        Event::HealthFailed { error } => {
            track.failure = Some(Failure::HealthCheck);
            track.enter(
                PatchState::RollingBack,
                now,
                format!("health check failed: {error}"),
            );
        }
        Event::RollbackSucceeded => {
            track.installed_at = None;
            track.healthy = false;
            track.rolled_back_at = Some(now);
            track.enter(PatchState::RolledBack, now, "rolled back");
        }
        Event::RollbackFailed { error } => {
            track.failure = Some(Failure::Rollback);
            track.enter(PatchState::Failed, now, format!("rollback failed: {error}"));
        }
        Event::PostponeRequested => {
            let max = inputs.policy.reboot.max_postpone;
            if track.state == PatchState::RebootPending
                && track.reboot_started.is_none()
                && track.postpones < max
            {
                track.postpones += 1;
                track.detail = format!("reboot postponed ({} of {max})", track.postpones);
            } else {
                track.detail = format!("reboot postponement rejected (at most {max})");
                return;
            }
        }
        Event::Rebooted => {
            if track.state == PatchState::RebootPending {
                track.reboot_started = None;
                track.enter(PatchState::Installed, now, "rebooted");
            }
        }
    }
    track.in_flight = None;
}

fn decide(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Decision {
    if let Some(action) = track.in_flight {
        return Decision::wait(Reason::InFlight { action }, None);
    }
    if let Some(decision) = follow_rollback_order(track, inputs, now) {
        return decision;
    }
    restart_if_reapproved(track, inputs, now);

    // Each pass moves one state forward; a track passes at most the six
    // states from pending to installing in one step.
    for _ in 0..8 {
        let decision = match track.state {
            PatchState::Pending => from_pending(track, inputs, now),
            PatchState::Approved | PatchState::WaitingWindow | PatchState::Downloading => {
                from_approved(track, inputs, now)
            }
            PatchState::Installing => from_installing(track, inputs, now),
            PatchState::RebootPending => from_reboot_pending(track, inputs, now),
            PatchState::RollingBack => Some(Decision {
                actions: vec![Action::RollBack {
                    reason: track.failure.unwrap_or(Failure::Ordered),
                }],
                reason: Reason::Stopped,
                wake: None,
            }),
            PatchState::Installed => Some(Decision::wait(Reason::Done, None)),
            PatchState::Failed | PatchState::RolledBack => {
                Some(Decision::wait(Reason::Stopped, None))
            }
        };
        if let Some(decision) = decision {
            return decision;
        }
    }
    Decision::wait(Reason::Done, None)
}

/// Starts a rollback when a live order newer than the last rollback names
/// this patch. A track that installed nothing yet just stops.
fn follow_rollback_order(
    track: &mut Track,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> Option<Decision> {
    let order = inputs
        .orders
        .rollbacks
        .iter()
        .filter(|o| o.policy == track.policy && o.patch == track.patch)
        .filter(|o| o.expires > now && o.issued <= now)
        .filter(|o| track.rolled_back_at.is_none_or(|at| o.issued > at))
        .max_by_key(|o| o.issued)?;
    let detail = format!("rollback ordered: {}", order.reason);
    match track.state {
        PatchState::RolledBack | PatchState::RollingBack => None,
        _ if track.installed_at.is_some() => {
            track.failure = Some(Failure::Ordered);
            track.enter(PatchState::RollingBack, now, detail);
            None
        }
        PatchState::Failed => None,
        _ => {
            track.failure = Some(Failure::Ordered);
            track.rolled_back_at = Some(now);
            track.enter(
                PatchState::RolledBack,
                now,
                format!("{detail} (before install)"),
            );
            Some(Decision::wait(Reason::Stopped, None))
        }
    }
}

/// Sends a failed or rolled-back track back to pending when an approval
/// signed after it stopped names the patch again.
fn restart_if_reapproved(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) {
    if !matches!(track.state, PatchState::Failed | PatchState::RolledBack) {
        return;
    }
    let latest = approval::latest_approval(
        inputs.policy,
        &track.patch,
        inputs.patch.published,
        &inputs.orders.approvals,
        now,
    );
    if latest.is_some_and(|issued| issued > track.since) {
        let mut fresh = Track::new(&track.policy, track.patch.clone(), track.started);
        fresh.attempts = track.attempts;
        fresh.rolled_back_at = track.rolled_back_at;
        fresh.since = track.since;
        fresh.state = track.state;
        *track = fresh;
        track.enter(PatchState::Pending, now, "approved again");
    }
}

fn from_pending(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    if let Some(decision) = ineligible(track, inputs, now) {
        return Some(decision);
    }
    match approval::check(
        inputs.policy,
        &track.patch,
        inputs.patch.published,
        &inputs.orders.approvals,
        now,
    ) {
        Approved::Since(at) => {
            track.approved_at = Some(at);
            track.enter(PatchState::Approved, now, "approved");
            None
        }
        Approved::Waiting { auto } => Some(Decision::wait(Reason::AwaitingApproval, auto)),
    }
}

/// Checks what may change under a track that has not started installing:
/// expiry, targeting, selection, exceptions, waves and other policies.
/// On any of them it goes back to pending and returns why.
fn ineligible(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    let policy = inputs.policy;
    let back = |track: &mut Track, reason: Reason, wake: Option<Timestamp>| {
        track.enter(PatchState::Pending, now, format!("{reason:?}"));
        Some(Decision::wait(reason, wake))
    };
    if policy.expires <= now {
        return back(track, Reason::PolicyExpired, None);
    }
    if !policy.targets.matches(inputs.member) {
        return back(track, Reason::NotTargeted, None);
    }
    if !inputs.patch.applies || !selects(policy, &track.patch, inputs.patch.severity) {
        return back(track, Reason::NotSelected, None);
    }
    if let Some((exception, until)) = exemption(policy, &inputs.member.host, now) {
        let reason = Reason::Exempt {
            reason: exception.reason.clone(),
        };
        return back(track, reason, until);
    }
    if wave_of(policy, inputs.member).is_none() {
        return back(track, Reason::NoWave, None);
    }
    if let Some(decision) = follow_other_policy(track, inputs, now) {
        return Some(decision);
    }
    None
}

/// Follows the outcome of the same patch under another policy, so that a
/// patch is installed at most once per node.
fn follow_other_policy(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    let other = inputs
        .others
        .iter()
        .filter(|o| o.policy != track.policy)
        .find(|o| !matches!(o.state, PatchState::Pending | PatchState::Approved))?;
    let detail = format!("handled by policy {}", other.policy);
    let followed = match other.state {
        PatchState::Installed | PatchState::RebootPending => PatchState::Installed,
        PatchState::RolledBack => PatchState::RolledBack,
        PatchState::Failed => PatchState::Failed,
        _ => {
            let reason = Reason::OtherPolicy {
                policy: other.policy.clone(),
            };
            return Some(Decision::wait(reason, None));
        }
    };
    track.enter(followed, now, detail);
    let reason = if followed == PatchState::Installed {
        Reason::Done
    } else {
        Reason::Stopped
    };
    Some(Decision::wait(reason, None))
}

fn from_approved(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    if let Some(decision) = ineligible(track, inputs, now) {
        return Some(decision);
    }
    let policy = inputs.policy;
    let wave = wave_of(policy, inputs.member).unwrap_or(0);

    // A halt stops every step that has not started.
    let wave_label = (!policy.waves.is_empty()).then(|| wave_name(policy, wave));
    let halts = &inputs.orders.halts;
    if let Some(halt) = halted(halts, &inputs.orders.resumes, &policy.id, wave_label, now) {
        let reason = Reason::Halted {
            reason: halt.reason.clone(),
        };
        return Some(Decision::wait(reason, None));
    }
    if let Some(decision) = wave_gate(track, inputs, wave, now) {
        return Some(decision);
    }

    // Download first, whatever the window, so the window is spent installing.
    if !track.downloaded {
        track.enter(PatchState::Downloading, now, "downloading");
        if let Some(retry) = track.retry_after.filter(|at| *at > now) {
            return Some(Decision::wait(
                Reason::InFlight {
                    action: super::ActionKind::Download,
                },
                Some(retry),
            ));
        }
        return Some(Decision {
            actions: vec![Action::Download],
            reason: Reason::InFlight {
                action: super::ActionKind::Download,
            },
            wake: None,
        });
    }

    let Ok(calendar) = Calendar::new(&policy.schedule) else {
        return Some(Decision::wait(Reason::InvalidSchedule, None));
    };
    match opening(policy, &calendar, inputs.patch.severity, now) {
        Opening::OpenUntil(_) => {
            track.attempts += 1;
            track.enter(PatchState::Installing, now, "installing");
            Some(Decision {
                actions: vec![Action::Install { retry: false }],
                reason: Reason::InFlight {
                    action: super::ActionKind::Install,
                },
                wake: None,
            })
        }
        Opening::ClosedUntil(start) => {
            track.enter(
                PatchState::WaitingWindow,
                now,
                format!("next window at {start}"),
            );
            Some(Decision::wait(Reason::Window, Some(start)))
        }
        Opening::Never => Some(Decision::wait(Reason::NoWindow, None)),
    }
}

/// Waits until every earlier wave passed.
fn wave_gate(track: &Track, inputs: &Inputs<'_>, wave: usize, now: Timestamp) -> Option<Decision> {
    if wave == 0 {
        return None;
    }
    let approved = track.approved_at.unwrap_or(now);
    let judgements = judge_waves(inputs.policy, inputs.fleet, approved, now);
    let earlier = judgements.iter().take(wave);
    for judgement in earlier {
        let waiting = |wake| {
            let reason = Reason::EarlierWave {
                wave: judgement.name.clone(),
            };
            Some(Decision::wait(reason, wake))
        };
        match judgement.status {
            WaveStatus::Passed { .. } => continue,
            WaveStatus::Failed { ratio, .. } => {
                let reason = Reason::WaveFailed {
                    wave: judgement.name.clone(),
                    ratio,
                };
                return Some(Decision::wait(reason, None));
            }
            WaveStatus::Soaking { until, .. } => return waiting(Some(until)),
            WaveStatus::Reporting { deadline, .. } => return waiting(deadline),
            WaveStatus::NotStarted => return waiting(None),
        }
    }
    None
}

fn from_installing(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    let Some(_installed) = track.installed_at else {
        // No result was persisted, so the last attempt may have run.
        track.attempts += 1;
        return Some(Decision {
            actions: vec![Action::Install { retry: true }],
            reason: Reason::InFlight {
                action: super::ActionKind::Install,
            },
            wake: None,
        });
    };
    let rules = &inputs.policy.rollback;
    if !track.healthy {
        if let Some(command) = &rules.health_check {
            return Some(Decision {
                actions: vec![Action::HealthCheck {
                    command: command.clone(),
                    timeout_secs: rules.health_timeout.map(|t| t.as_secs()),
                }],
                reason: Reason::InFlight {
                    action: super::ActionKind::HealthCheck,
                },
                wake: None,
            });
        }
        track.healthy = true;
    }
    if reboot::needed(inputs.policy, inputs.patch.reboot_required) {
        track.enter(PatchState::RebootPending, now, "installed, reboot pending");
    } else {
        track.enter(PatchState::Installed, now, "installed");
    }
    None
}

fn from_reboot_pending(track: &mut Track, inputs: &Inputs<'_>, now: Timestamp) -> Option<Decision> {
    let Ok(calendar) = Calendar::new(&inputs.policy.schedule) else {
        return Some(Decision::wait(Reason::InvalidSchedule, None));
    };
    let installed = track.installed_at.unwrap_or(track.since);
    let plan = reboot::plan(inputs.policy, &calendar, installed, track.postpones);
    if now >= plan.reboot {
        track.reboot_started = Some(now);
        track.detail = "rebooting".into();
        return Some(Decision {
            actions: vec![Action::Reboot],
            reason: Reason::InFlight {
                action: super::ActionKind::Reboot,
            },
            wake: None,
        });
    }
    if now < plan.notice {
        return Some(Decision::wait(Reason::RebootNotice, Some(plan.notice)));
    }
    let mut actions = Vec::new();
    if track.noticed_for != Some(plan.reboot) {
        track.noticed_for = Some(plan.reboot);
        actions.push(Action::NotifyUser {
            message: inputs.policy.reboot.message.clone(),
            reboot_at: plan.reboot,
        });
    }
    Some(Decision {
        actions,
        reason: Reason::RebootScheduled,
        wake: Some(plan.reboot),
    })
}
