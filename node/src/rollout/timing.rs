//! Install timing: whether the maintenance window lets a patch install now,
//! and if not, when it next does.
//!
//! A node that was off during a window waits for the next one. Critical
//! patches under `critical = "asap"` skip the window.

use jiff::Timestamp;
use patchmesh_protocol::policy::{CriticalMode, Policy};
use patchmesh_protocol::schedule::Calendar;
use patchmesh_protocol::Severity;

/// Whether installing may start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// A window is open (or none is needed) until this instant.
    OpenUntil(Timestamp),
    /// Closed until this instant.
    ClosedUntil(Timestamp),
    /// The schedule has no window ahead.
    Never,
}

/// Checks the window for a patch of `severity` under `policy` at `now`.
pub fn opening(
    policy: &Policy,
    calendar: &Calendar,
    severity: Severity,
    now: Timestamp,
) -> Opening {
    let fast_track =
        severity == Severity::Critical && policy.schedule.critical == CriticalMode::Asap;
    if fast_track {
        return Opening::OpenUntil(Timestamp::MAX);
    }
    match calendar.next_open(now) {
        Some(window) if window.contains(now) => Opening::OpenUntil(window.end),
        Some(window) => Opening::ClosedUntil(window.start),
        None => Opening::Never,
    }
}
