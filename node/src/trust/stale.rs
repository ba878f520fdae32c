//! Stale alarm: a warning when the newest admin-signed object a node stores
//! was signed longer ago than a configured limit.
//!
//! Peers that keep serving an old but validly signed policy, so that the
//! node never hears of a newer one (a freeze attack), look the same as a
//! fleet whose admin signed nothing lately. Signatures cannot tell the two
//! apart, so the node rejects nothing: it raises an alarm that an operator
//! sees in the log and in the node's status.

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::{Body, Kind, Manifest, Policy, Signed};

use super::Trust;
use crate::store::MetaError;

pub use patchmesh_protocol::report::StaleAlarm;

/// Signing time of a held object of a kind nodes act on; `None` for other
/// kinds and bodies that do not decode.
fn signed_at(signed: &Signed) -> Option<Timestamp> {
    fn issued<B: Body>(signed: &Signed) -> Option<Timestamp> {
        signed.decode_body::<B>().ok().map(|body| body.issued())
    }
    match signed.kind {
        Kind::Manifest => issued::<Manifest>(signed),
        Kind::Policy => issued::<Policy>(signed),
        Kind::Approval => issued::<Approval>(signed),
        Kind::Halt => issued::<Halt>(signed),
        Kind::Resume => issued::<Resume>(signed),
        Kind::Rollback => issued::<RollbackOrder>(signed),
        Kind::Enrollment => issued::<Enrollment>(signed),
        Kind::Revocation => issued::<Revocation>(signed),
        Kind::Root | Kind::BundleIndex => None,
    }
}

impl Trust {
    /// Returns an alarm when the newest admin-signed object held was signed
    /// more than `limit` before `now`. Returns `None` when it is fresher, or
    /// when the node stores no object, since it then has nothing to act on.
    /// Roots do not count: they are signed rarely, and a recent one says
    /// nothing about whether peers withhold newer policies.
    pub fn stale_alarm(
        &self,
        now: Timestamp,
        limit: SignedDuration,
    ) -> Result<Option<StaleAlarm>, MetaError> {
        let mut newest = None;
        for (summary, signed) in self.meta.live_objects()? {
            let Some(at) = signed_at(&signed) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(_, held)| at > *held) {
                newest = Some((summary, at));
            }
        }
        let Some((summary, at)) = newest else {
            return Ok(None);
        };
        let age = now.duration_since(at);
        if age <= limit {
            return Ok(None);
        }
        Ok(Some(StaleAlarm {
            kind: summary.kind,
            slot: summary.slot,
            revision: summary.revision,
            signed_at: at,
            age_secs: age.as_secs().max(0) as u64,
            limit_secs: limit.as_secs().max(0) as u64,
        }))
    }
}
