//! Admission of a root chain and objects as one unit: a bundle import
//! stores all of them in one sled transaction or none of them.

use jiff::Timestamp;
use patchmesh_protocol::{Kind, Root, Signed, VerifyError};

use super::{AdmitError, Admitted, Outcome, Trust, HIGH_WATER_KEY, MAX_ISSUED_AHEAD};
use crate::store::meta::Batch;

impl Trust {
    /// Checks that root `version` lies within the hop limit counted from
    /// the pinned root, as admission of a root does.
    pub fn check_root_version(&self, version: u64) -> Result<(), AdmitError> {
        super::check_root_hops(self.pinned_version, self.max_root_hops, version)
    }

    /// Verifies `roots` as successors of the trusted root and `objects`
    /// under the newest of them, as [`Trust::admit`] would one by one, then
    /// stores them in one flushed transaction together with `extra`.
    ///
    /// Any rejection stores nothing. Objects that the stored slots already
    /// hold count as [`Outcome::Duplicate`]. Held objects that no longer
    /// verify under the newest root do not set a revision floor, because
    /// storing that root drops them.
    pub fn admit_batch(
        &mut self,
        roots: &[Signed],
        objects: &[Signed],
        mut extra: Batch,
        clock_now: Timestamp,
        clock: &'static str,
    ) -> Result<Vec<Admitted>, AdmitError> {
        let now = self.effective_now(clock_now);
        let clock = if now > clock_now {
            "newest signing time seen"
        } else {
            clock
        };
        let cap = clock_now.checked_add(MAX_ISSUED_AHEAD).unwrap_or(clock_now);
        let mut high_water = self.high_water;

        let mut root: Root = self.root.clone();
        let mut removed_keys = self.removed_keys.clone();
        for signed in roots {
            let body: Root = signed.decode_body()?;
            if body.version <= root.version {
                continue;
            }
            self.check_root_version(body.version)?;
            let next = root.verify_successor(signed)?;
            if next.expires <= now {
                return Err(VerifyError::Expired {
                    kind: Kind::Root,
                    slot: "root".into(),
                    revision: next.version,
                    expires: next.expires,
                    now,
                    clock,
                }
                .into());
            }
            extra.root(next.version, signed);
            high_water = high_water.max(next.issued.min(cap));
            removed_keys.record(&root, &next);
            root = next;
        }

        let mut admitted = Vec::with_capacity(objects.len());
        for signed in objects {
            let (checked, issued) = self
                .check_at(&root, signed, now, clock)
                .map_err(|error| super::explain_removed(&removed_keys, signed, error))?;
            if checked.outcome == Outcome::Stored {
                extra.object(&checked.slot, checked.revision, signed);
                high_water = high_water.max(issued.min(cap));
            }
            admitted.push(checked);
        }

        if high_water > self.high_water {
            extra.set_misc(HIGH_WATER_KEY, &high_water);
        }
        self.meta.put_batch(&extra)?;
        self.high_water = high_water;
        if root.version > self.root.version {
            tracing::info!(version = root.version, "trusted root rotated");
            self.root = root;
            self.removed_keys = removed_keys;
            // A crash before this reset is repaired by the same reset at
            // the next start.
            self.drop_untrusted_objects()?;
        }
        Ok(admitted)
    }
}
