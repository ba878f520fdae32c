//! Verify-only admission: every check [`Trust::admit`] makes, without
//! storing anything, so a bundle can be verified whole before any part of it
//! is stored.

use jiff::Timestamp;
use patchmesh_protocol::{Root, Signed};

use super::{AdmitError, Admitted, Outcome, Trust};

impl Trust {
    /// Checks `signed` as [`Trust::admit`] would under the trusted root,
    /// without storing it. `outcome` says whether admitting it would store
    /// it or find it already held.
    pub fn check(
        &self,
        signed: &Signed,
        clock_now: Timestamp,
        clock: &'static str,
    ) -> Result<Admitted, AdmitError> {
        self.check_under(&self.root, signed, clock_now, clock)
    }

    /// Checks a non-root object under `root`, which may be a newer root that
    /// is not stored yet, such as the newest root of a bundle being imported.
    pub fn check_under(
        &self,
        root: &Root,
        signed: &Signed,
        clock_now: Timestamp,
        clock: &'static str,
    ) -> Result<Admitted, AdmitError> {
        let now = self.effective_now(clock_now);
        let clock = if now > clock_now {
            "newest signing time seen"
        } else {
            clock
        };
        let (slot, revision, _) = super::verify_header(root, signed, now, clock)?;

        let id = signed.id();
        let mut outcome = Outcome::Stored;
        if let Some(held) = self.meta.slot(signed.kind, &slot)? {
            if held.id == id {
                outcome = Outcome::Duplicate;
            } else if revision <= held.revision {
                return Err(AdmitError::Rollback {
                    kind: signed.kind,
                    slot,
                    held: held.revision,
                    offered: revision,
                });
            }
        }
        Ok(Admitted {
            id,
            kind: signed.kind,
            slot,
            revision,
            outcome,
        })
    }
}
