//! Reboot planning after an install that needs one.
//!
//! - The planned reboot is `notify_before` after the install, so the user
//!   is told at once. With `within_window`, a planned time outside a window
//!   moves to the start of the next window.
//! - Each accepted postponement (at most `max_postpone`) adds `postpone_by`.
//! - The deadline, `deadline` after the install, caps the planned time.
//!   With `within_window`, a deadline outside a window moves to the start of
//!   the next window.
//! - The notice goes out `notify_before` ahead of the planned time, but not
//!   before the install.

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::policy::{Policy, RebootMode};
use patchmesh_protocol::schedule::Calendar;

/// Returns whether a patch needs a reboot under `policy`.
pub fn needed(policy: &Policy, reboot_required: bool) -> bool {
    match policy.reboot.mode {
        RebootMode::Never => false,
        RebootMode::IfRequired => reboot_required,
        RebootMode::Always => true,
    }
}

/// When the notice goes out and the reboot happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebootPlan {
    /// When the user is notified.
    pub notice: Timestamp,
    /// When the machine reboots.
    pub reboot: Timestamp,
    /// Latest reboot time, whatever the user postpones.
    pub deadline: Option<Timestamp>,
}

/// Plans the reboot for an install at `installed` after `postpones`
/// accepted postponements.
pub fn plan(
    policy: &Policy,
    calendar: &Calendar,
    installed: Timestamp,
    postpones: u32,
) -> RebootPlan {
    let rules = &policy.reboot;
    let notify_before = rules.notify_before.to_signed_duration();
    let in_window = |at: Timestamp| {
        if !rules.within_window || calendar.is_open(at).is_some() {
            return at;
        }
        calendar.next_open(at).map_or(at, |window| window.start)
    };

    let mut reboot = in_window(add(installed, notify_before));
    let postponed = rules
        .postpone_by
        .as_secs()
        .saturating_mul(u64::from(postpones));
    reboot = add(
        reboot,
        SignedDuration::from_secs(i64::try_from(postponed).unwrap_or(i64::MAX)),
    );
    let deadline = rules
        .deadline
        .map(|deadline| in_window(add(installed, deadline.to_signed_duration())));
    if let Some(deadline) = deadline {
        reboot = reboot.min(deadline);
    }
    let notice = reboot
        .checked_sub(notify_before)
        .unwrap_or(installed)
        .max(installed);
    RebootPlan {
        notice,
        reboot,
        deadline,
    }
}

fn add(at: Timestamp, span: SignedDuration) -> Timestamp {
    at.checked_add(span).unwrap_or(Timestamp::MAX)
}
