//! Verify-only admission: every check [`Trust::admit`] makes, without
//! storing anything, so a bundle can be verified whole before any part of it
//! is stored.

use jiff::Timestamp;
use patchmesh_protocol::{Kind, Root, Signed};

use super::{AdmitError, Admitted, Outcome, Trust};
use crate::store::meta::SlotEntry;

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
        self.check_at(root, signed, now, clock)
            .map(|(admitted, _)| admitted)
    }

    /// Checks a non-root object under `root` at the effective time `now`
    /// and returns it with its signing time.
    pub(super) fn check_at(
        &self,
        root: &Root,
        signed: &Signed,
        now: Timestamp,
        clock: &'static str,
    ) -> Result<(Admitted, Timestamp), AdmitError> {
        let (slot, revision, issued) = super::verify_header(root, signed, now, clock)?;

        let id = signed.id();
        let mut outcome = Outcome::Stored;
        if let Some(held) = self.held_under(root, signed.kind, &slot)? {
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
        let admitted = Admitted {
            id,
            kind: signed.kind,
            slot,
            revision,
            outcome,
        };
        Ok((admitted, issued))
    }

    /// The slot entry held for `kind` and `slot`, unless its object no
    /// longer carries a threshold of signatures under `root`. Such an
    /// object is dropped when `root` is stored, so it sets no revision
    /// floor for objects checked under `root`.
    pub(super) fn held_under(
        &self,
        root: &Root,
        kind: Kind,
        slot: &str,
    ) -> Result<Option<SlotEntry>, AdmitError> {
        let Some(held) = self.meta.slot(kind, slot)? else {
            return Ok(None);
        };
        if root.version == self.root.version {
            return Ok(Some(held));
        }
        let still_trusted = match self.meta.object(&held.id)? {
            Some(signed) => root.check_threshold(kind.role(), &signed).is_ok(),
            None => false,
        };
        Ok(still_trusted.then_some(held))
    }
}
