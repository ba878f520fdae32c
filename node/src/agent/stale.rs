//! Raises and clears the stale alarm (see [`crate::trust::StaleAlarm`]) and
//! shows it in the node's status.

use std::time::{Duration, Instant};

use jiff::SignedDuration;

use super::Agent;

/// Time between two evaluations of the alarm when no object arrives.
const CHECK_EVERY: Duration = Duration::from_secs(10);

impl Agent {
    /// Evaluates the stale alarm when due: every [`CHECK_EVERY`] and after
    /// each admitted object. Logs a warning when the alarm is raised or
    /// names another object, and an info line when it clears.
    pub(super) fn maybe_check_stale(&mut self) {
        if self
            .last_stale_check
            .is_some_and(|at| at.elapsed() < CHECK_EVERY)
        {
            return;
        }
        self.last_stale_check = Some(Instant::now());
        let limit_secs = self.config.trust.stale_after_secs;
        let alarm = if limit_secs == 0 {
            None
        } else {
            let limit = SignedDuration::from_secs(i64::try_from(limit_secs).unwrap_or(i64::MAX));
            match self.trust.stale_alarm(self.shared.clock.now(), limit) {
                Ok(alarm) => alarm,
                Err(error) => {
                    tracing::error!(%error, "cannot read held objects to check their age");
                    return;
                }
            }
        };

        let mut info = self
            .shared
            .info
            .write()
            .expect("node info lock is never poisoned");
        let same_object = |a: &crate::trust::StaleAlarm, b: &crate::trust::StaleAlarm| {
            a.kind == b.kind && a.slot == b.slot && a.revision == b.revision
        };
        let raised = match (&info.stale, &alarm) {
            (None, Some(new)) => Some(new),
            (Some(old), Some(new)) if !same_object(old, new) => Some(new),
            _ => None,
        };
        if let Some(new) = raised {
            tracing::warn!(kind = %new.kind, slot = %new.slot, revision = new.revision, signed_at = %new.signed_at, age_secs = new.age_secs, limit_secs = new.limit_secs, peers = self.peers.len(), "stale: the newest admin-signed object held is older than trust.stale_after_secs; peers may be withholding newer ones");
        }
        let cleared = matches!((&info.stale, &alarm), (Some(_), None));
        if let (true, Some(old)) = (cleared, &info.stale) {
            tracing::info!(kind = %old.kind, slot = %old.slot, "stale alarm cleared: a newer admin-signed object arrived");
        }
        let changed = raised.is_some() || cleared;
        info.stale = alarm;
        drop(info);
        // Observers learn of the alarm from the next report.
        if changed {
            self.report_dirty = true;
        }
    }
}
