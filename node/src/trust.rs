//! Admission of signed objects: every object from a peer, the control API
//! or a bundle passes here before it is stored or forwarded.
//!
//! Checks, in order: size and decoding, the root chain, signatures of the
//! kind's role against the newest trusted root, expiry against the node's
//! clock raised to the newest signing time seen, internal validity of the
//! body, and revision order against what is held for the same slot.

use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::{
    limits, Body, Hash, Kind, Manifest, Policy, RemovedKeys, Root, Signed, VerifyError,
};

use crate::store::{MetaError, MetaStore};

mod batch;
mod check;
mod stale;

pub use stale::StaleAlarm;

/// Verifies a non-root object under `root` at `now` and returns its slot,
/// revision and signing time. Every kind a node acts on is listed here, so
/// admission and the verify-only check of bundles accept the same kinds.
fn verify_header(
    root: &Root,
    signed: &Signed,
    now: Timestamp,
    clock: &'static str,
) -> Result<(String, u64, Timestamp), AdmitError> {
    match signed.kind {
        Kind::Manifest => {
            let body: Manifest = signed.verify(root, now, clock)?;
            check_valid(&body, body.validate())
        }
        Kind::Policy => {
            let body: Policy = signed.verify(root, now, clock)?;
            check_valid(&body, body.validate())
        }
        Kind::Approval => Ok(header(&signed.verify::<Approval>(root, now, clock)?)),
        Kind::Halt => Ok(header(&signed.verify::<Halt>(root, now, clock)?)),
        Kind::Resume => Ok(header(&signed.verify::<Resume>(root, now, clock)?)),
        Kind::Rollback => Ok(header(&signed.verify::<RollbackOrder>(root, now, clock)?)),
        Kind::Enrollment => {
            let body: Enrollment = signed.verify(root, now, clock)?;
            check_valid(&body, body.validate())
        }
        Kind::Revocation => {
            let body: Revocation = signed.verify(root, now, clock)?;
            check_valid(&body, body.validate())
        }
        other => Err(AdmitError::Unsupported(other)),
    }
}

/// Names the root version that removed the signing key when `error` is a
/// threshold failure of `signed` by such a key.
pub(crate) fn explain_removed(
    removed: &RemovedKeys,
    signed: &Signed,
    error: AdmitError,
) -> AdmitError {
    match error {
        AdmitError::Verify(error) => AdmitError::Verify(removed.explain(signed, error)),
        other => other,
    }
}

/// Slot, revision and signing time of a verified body.
fn header<B: Body>(body: &B) -> (String, u64, Timestamp) {
    (body.slot(), body.revision(), body.issued())
}

/// Returns the header of `body` if its own validation passed.
fn check_valid<B: Body, E: std::fmt::Display>(
    body: &B,
    validation: Result<(), E>,
) -> Result<(String, u64, Timestamp), AdmitError> {
    validation.map_err(|e| AdmitError::Invalid {
        kind: B::KIND,
        slot: body.slot(),
        reason: e.to_string(),
    })?;
    Ok(header(body))
}

/// What happened to an admitted object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New: stored, and worth forwarding.
    Stored,
    /// Already held: nothing to do.
    Duplicate,
}

/// Identity of an admitted object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Object id.
    pub id: Hash,
    /// Kind.
    pub kind: Kind,
    /// Slot.
    pub slot: String,
    /// Revision.
    pub revision: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// Why an object was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Signature, expiry, size or decoding failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The body is internally inconsistent.
    #[error("invalid {kind} {slot:?}: {reason}")]
    Invalid {
        /// Kind.
        kind: Kind,
        /// Slot.
        slot: String,
        /// What is wrong.
        reason: String,
    },
    /// An older or equal revision than the one held (rollback attack or replay).
    #[error("{kind} {slot:?} revision {offered} is not above revision {held} already held (rollback or replay)")]
    Rollback {
        /// Kind.
        kind: Kind,
        /// Slot.
        slot: String,
        /// Revision held.
        held: u64,
        /// Revision offered.
        offered: u64,
    },
    /// A root past the hop limit: more rotations after the pinned root than
    /// the node trusts (`trust.max_root_hops`).
    #[error("root version {offered} is {} rotations past the pinned root version {pinned}, over the limit of {max} (trust.max_root_hops; pin a newer root.bin on this node to go further)", offered - pinned)]
    RootHopLimit {
        /// Version of the pinned root.
        pinned: u64,
        /// Version offered or stored.
        offered: u64,
        /// Maximum rotations trusted past the pinned root.
        max: u64,
    },
    /// A kind this node does not act on yet.
    #[error("{0} objects are not supported by this node version")]
    Unsupported(Kind),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MetaError),
}

impl AdmitError {
    /// Whether the sender deserves a penalty: true for forged, malformed,
    /// expired or replayed objects, false for local failures and local
    /// limits. A root past this node's hop limit is validly signed, and an
    /// honest peer that trusts a longer chain offers it at every
    /// anti-entropy round, so blaming it would block that peer.
    pub fn blames_sender(&self) -> bool {
        !matches!(
            self,
            AdmitError::Store(_) | AdmitError::Unsupported(_) | AdmitError::RootHopLimit { .. }
        )
    }
}

/// The trusted root chain and the admission checks.
pub struct Trust {
    root: Root,
    /// Version of the root pinned in `root.bin`; the hop limit counts from it.
    pinned_version: u64,
    /// Maximum rotations trusted past the pinned root.
    max_root_hops: u64,
    meta: MetaStore,
    high_water: Timestamp,
    /// Root versions that removed keys, for rotations from the pinned root
    /// on, so that a rejection names the rotation.
    removed_keys: RemovedKeys,
}

const HIGH_WATER_KEY: &str = "high_water_issued";

/// How far ahead of the node's clock a signing time may raise the newest
/// signing time seen. Without a cap, one object signed (by a leaked key or
/// an admin machine with a wrong clock) years ahead would make every object
/// look expired, for good. One hour covers ordinary clock skew between
/// admin machines and nodes.
const MAX_ISSUED_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

impl Trust {
    /// Loads the pinned root and every stored successor, trusting at most
    /// [`limits::MAX_ROOT_HOPS`] rotations past the pinned root.
    pub fn load(pinned: &Signed, meta: MetaStore) -> Result<Self, AdmitError> {
        Self::load_with_hop_limit(pinned, meta, limits::MAX_ROOT_HOPS as u64)
    }

    /// Loads the pinned root and every stored successor, trusting at most
    /// `max_root_hops` rotations past the pinned root (capped at
    /// [`limits::MAX_ROOT_HOPS`]), here and in every later admission.
    ///
    /// A stored root past the hop limit is an error rather than a place to
    /// stop: admission never stores one, and stopping short would make the
    /// node trust an older root than before the restart and drop every
    /// object signed under the newer ones.
    pub fn load_with_hop_limit(
        pinned: &Signed,
        meta: MetaStore,
        max_root_hops: u64,
    ) -> Result<Self, AdmitError> {
        let max_root_hops = max_root_hops.min(limits::MAX_ROOT_HOPS as u64);
        let mut root = Root::verify_initial(pinned)?;
        let pinned_version = root.version;
        let mut removed_keys = RemovedKeys::default();
        for signed in meta.roots()? {
            let body: Root = signed.decode_body()?;
            if body.version <= root.version {
                continue;
            }
            check_root_hops(pinned_version, max_root_hops, body.version)?;
            let next = root.verify_successor(&signed)?;
            removed_keys.record(&root, &next);
            root = next;
        }
        let high_water = meta
            .misc::<Timestamp>(HIGH_WATER_KEY)?
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let mut trust = Trust {
            root,
            pinned_version,
            max_root_hops,
            meta,
            high_water,
            removed_keys,
        };
        // A crash between storing a root and resetting slots can leave
        // objects that the root no longer vouches for, so the reset runs
        // again at every start.
        trust.drop_untrusted_objects()?;
        Ok(trust)
    }

    /// The newest trusted root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Root versions that removed keys from roles, from the pinned root to
    /// the trusted one.
    pub fn removed_keys(&self) -> &RemovedKeys {
        &self.removed_keys
    }

    /// Highest root version this node may trust: the pinned version plus
    /// the hop limit.
    pub fn max_root_version(&self) -> u64 {
        self.pinned_version.saturating_add(self.max_root_hops)
    }

    /// Newest signing time seen on any admitted object.
    pub fn high_water(&self) -> Timestamp {
        self.high_water
    }

    /// Time to judge expiry by: the clock, never earlier than the newest
    /// signing time seen, so a clock set back cannot revive expired objects.
    pub fn effective_now(&self, clock_now: Timestamp) -> Timestamp {
        clock_now.max(self.high_water)
    }

    /// Decodes, verifies and stores `bytes` if they are a new, valid object.
    pub fn admit_bytes(
        &mut self,
        bytes: &[u8],
        clock_now: Timestamp,
        clock: &'static str,
    ) -> Result<Admitted, AdmitError> {
        let signed = Signed::from_bytes(bytes)?;
        self.admit(&signed, clock_now, clock)
    }

    /// Verifies and stores `signed` if it is a new, valid object.
    pub fn admit(
        &mut self,
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
        let cap = clock_now.checked_add(MAX_ISSUED_AHEAD).unwrap_or(clock_now);
        if signed.kind == Kind::Root {
            return self.admit_root(signed, now, clock, cap);
        }
        let (slot, revision, issued) = verify_header(&self.root, signed, now, clock)
            .map_err(|error| explain_removed(&self.removed_keys, signed, error))?;
        self.store_in_slot(signed, slot, revision, issued.min(cap))
    }

    fn store_in_slot(
        &mut self,
        signed: &Signed,
        slot: String,
        revision: u64,
        issued: Timestamp,
    ) -> Result<Admitted, AdmitError> {
        let id = signed.id();
        let admitted = |outcome| Admitted {
            id,
            kind: signed.kind,
            slot: slot.clone(),
            revision,
            outcome,
        };
        if let Some(held) = self.meta.slot(signed.kind, &slot)? {
            if held.id == id {
                return Ok(admitted(Outcome::Duplicate));
            }
            if revision <= held.revision {
                return Err(AdmitError::Rollback {
                    kind: signed.kind,
                    slot,
                    held: held.revision,
                    offered: revision,
                });
            }
        }
        self.meta.put_object(&slot, revision, signed)?;
        // Flush before the object is acknowledged or forwarded, so a halt or
        // a revocation accepted just before a crash is not lost, and the
        // rollback floor it sets survives.
        self.meta.flush()?;
        self.raise_high_water(issued)?;
        Ok(admitted(Outcome::Stored))
    }

    fn raise_high_water(&mut self, issued: Timestamp) -> Result<(), MetaError> {
        if issued > self.high_water {
            self.high_water = issued;
            self.meta.set_misc(HIGH_WATER_KEY, &issued)?;
        }
        Ok(())
    }

    fn admit_root(
        &mut self,
        signed: &Signed,
        now: Timestamp,
        clock: &'static str,
        high_water_cap: Timestamp,
    ) -> Result<Admitted, AdmitError> {
        let body: Root = signed.decode_body()?;
        let admitted = |outcome| Admitted {
            id: signed.id(),
            kind: Kind::Root,
            slot: "root".into(),
            revision: body.version,
            outcome,
        };
        if body.version <= self.root.version {
            return Ok(admitted(Outcome::Duplicate));
        }
        check_root_hops(self.pinned_version, self.max_root_hops, body.version)?;
        let next = self.root.verify_successor(signed)?;
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
        self.meta.put_root(next.version, signed)?;
        self.meta.flush()?;
        self.raise_high_water(next.issued.min(high_water_cap))?;
        tracing::info!(version = next.version, "trusted root rotated");
        self.removed_keys.record(&self.root, &next);
        self.root = next;
        self.drop_untrusted_objects()?;
        Ok(admitted(Outcome::Stored))
    }

    /// Forgets every held object that no longer carries a threshold of
    /// valid signatures under the trusted root, together with its slot.
    ///
    /// This is fast-forward recovery as in The Update Framework: a leaked
    /// key may have pushed a slot to a huge revision, and once a new root
    /// removes that key the slot accepts low revisions again. Objects that
    /// still verify keep their slot, so their rollback protection stays.
    fn drop_untrusted_objects(&mut self) -> Result<(), AdmitError> {
        for (summary, signed) in self.meta.live_objects()? {
            if self
                .root
                .check_threshold(summary.kind.role(), &signed)
                .is_ok()
            {
                continue;
            }
            self.meta.remove_slot(summary.kind, &summary.slot)?;
            tracing::warn!(kind = %summary.kind, slot = %summary.slot, revision = summary.revision, root_version = self.root.version, "held object no longer verifies under the trusted root; slot reset");
        }
        self.meta.flush()?;
        Ok(())
    }
}

/// Checks that root `version` is at most `max` rotations past the pinned
/// root version `pinned`.
///
/// The limit bounds the work a holder of the root keys can force on a node
/// with an endless chain. It is counted the same way at runtime and at
/// start, so a restart ends on the same root.
fn check_root_hops(pinned: u64, max: u64, version: u64) -> Result<(), AdmitError> {
    if version.saturating_sub(pinned) > max {
        return Err(AdmitError::RootHopLimit {
            pinned,
            offered: version,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::SignedDuration;
    use patchmesh_protocol::{Role, RoleKeys, SecretKey};

    use super::*;

    fn now() -> Timestamp {
        Timestamp::now()
    }

    /// A root of `version` listing `keys` in every role with threshold 1.
    fn root(version: u64, keys: &[&SecretKey]) -> Root {
        let ids: Vec<_> = keys.iter().map(|k| k.id()).collect();
        Root {
            fleet: "test".into(),
            version,
            issued: now() - SignedDuration::from_hours(1),
            expires: now() + SignedDuration::from_hours(24),
            keys: keys.iter().map(|k| (k.id(), k.public())).collect(),
            roles: Role::ALL
                .iter()
                .map(|role| {
                    let rule = RoleKeys {
                        keys: ids.clone(),
                        threshold: 1,
                    };
                    (*role, rule)
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn policy(version: u64, key: &SecretKey) -> Signed {
        let text = format!(
            "id = \"p\"\nversion = {version}\nexpires = \"{}\"\n[content]\npatches = [\"demo@1.0\"]\n",
            now() + SignedDuration::from_hours(24)
        );
        let mut body = Policy::from_toml(&text).expect("test policy parses");
        body.issued = now() - SignedDuration::from_mins(1);
        Signed::sign(&body, &[key])
    }

    fn trust_with(pinned: &Signed) -> (tempfile::TempDir, Trust) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let meta = MetaStore::open(&dir.path().join("meta.sled")).expect("opens");
        let trust = Trust::load(pinned, meta).expect("pinned root loads");
        (dir, trust)
    }

    #[test]
    fn huge_revision_blocks_lower_ones_without_rotation() {
        let admin = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&admin]), &[&admin]);
        let (_dir, mut trust) = trust_with(&pinned);

        trust
            .admit(&policy(1 << 62, &admin), now(), "test clock")
            .expect("first policy is stored");
        let err = trust
            .admit(&policy(2, &admin), now(), "test clock")
            .unwrap_err();
        assert!(matches!(err, AdmitError::Rollback { .. }), "{err}");
    }

    #[test]
    fn rotating_leaked_key_accepts_low_revisions_again() {
        let leaked = SecretKey::generate();
        let fresh = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&leaked]), &[&leaked]);
        let (_dir, mut trust) = trust_with(&pinned);
        trust
            .admit(&policy(1 << 62, &leaked), now(), "test clock")
            .expect("policy signed with the leaked key is stored");

        // Root 2 drops the leaked key: signed by it (old root) and the new key.
        let rotated = Signed::sign(&root(2, &[&fresh]), &[&leaked, &fresh]);
        trust
            .admit(&rotated, now(), "test clock")
            .expect("rotation is accepted");
        assert_eq!(trust.meta.slot(Kind::Policy, "p").unwrap(), None);

        let admitted = trust
            .admit(&policy(2, &fresh), now(), "test clock")
            .expect("a low revision signed with the new key is accepted");
        assert_eq!(admitted.outcome, Outcome::Stored);
        let err = trust
            .admit(&policy(1 << 62, &leaked), now(), "test clock")
            .unwrap_err();
        assert!(matches!(err, AdmitError::Verify(_)), "{err}");
    }

    #[test]
    fn rotation_keeps_objects_that_still_verify() {
        let retained = SecretKey::generate();
        let removed = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&retained, &removed]), &[&retained]);
        let (_dir, mut trust) = trust_with(&pinned);
        trust
            .admit(&policy(5, &retained), now(), "test clock")
            .expect("policy is stored");

        let rotated = Signed::sign(&root(2, &[&retained]), &[&retained]);
        trust
            .admit(&rotated, now(), "test clock")
            .expect("rotation is accepted");

        let held = trust.meta.slot(Kind::Policy, "p").unwrap();
        assert_eq!(held.map(|entry| entry.revision), Some(5));
        let err = trust
            .admit(&policy(4, &retained), now(), "test clock")
            .unwrap_err();
        assert!(matches!(err, AdmitError::Rollback { .. }), "{err}");
    }

    #[test]
    fn removed_key_rejection_names_rotation() {
        let retained = SecretKey::generate();
        let removed = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&retained, &removed]), &[&retained]);
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.sled")).unwrap();
        let mut trust = Trust::load(&pinned, meta.clone()).unwrap();
        let rotated = Signed::sign(&root(2, &[&retained]), &[&retained]);
        trust.admit(&rotated, now(), "test clock").unwrap();

        let err = trust
            .admit(&policy(1, &removed), now(), "test clock")
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&removed.id().short()), "{message}");
        assert!(message.contains("root version 2 removed"), "{message}");
        assert!(err.blames_sender(), "{err}");

        // After a restart the stored chain names the same rotation.
        drop(trust);
        let mut reloaded = Trust::load(&pinned, meta).unwrap();
        let err = reloaded
            .admit(&policy(1, &removed), now(), "test clock")
            .unwrap_err();
        assert!(err.to_string().contains("root version 2 removed"), "{err}");
    }

    #[test]
    fn far_future_signing_time_does_not_freeze_the_node() {
        let admin = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&admin]), &[&admin]);
        let (_dir, mut trust) = trust_with(&pinned);
        let text = format!(
            "id = \"future\"\nversion = 1\nexpires = \"{}\"\n[content]\npatches = [\"demo@1.0\"]\n",
            now() + SignedDuration::from_hours(24 * 365 * 200)
        );
        let mut body = Policy::from_toml(&text).expect("test policy parses");
        body.issued = now() + SignedDuration::from_hours(24 * 365 * 100);
        trust
            .admit(&Signed::sign(&body, &[&admin]), now(), "test clock")
            .expect("policy signed in the future is stored");

        let ceiling = now() + MAX_ISSUED_AHEAD;
        assert!(trust.high_water() <= ceiling, "{}", trust.high_water());
        let admitted = trust
            .admit(&policy(1, &admin), now(), "test clock")
            .expect("a policy valid for a day is still accepted");
        assert_eq!(admitted.outcome, Outcome::Stored);
    }

    #[test]
    fn hop_limit_holds_at_runtime_and_at_load() {
        let admin = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&admin]), &[&admin]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sled");
        let meta = MetaStore::open(&path).unwrap();
        let mut trust = Trust::load_with_hop_limit(&pinned, meta.clone(), 3).unwrap();
        for version in 2..=4 {
            let next = Signed::sign(&root(version, &[&admin]), &[&admin]);
            trust.admit(&next, now(), "test clock").unwrap();
        }
        let past = Signed::sign(&root(5, &[&admin]), &[&admin]);
        let err = trust.admit(&past, now(), "test clock").unwrap_err();
        assert!(
            matches!(err, AdmitError::RootHopLimit { offered: 5, .. }),
            "{err}"
        );
        assert_eq!(trust.root().version, 4);

        let mut reloaded = Trust::load_with_hop_limit(&pinned, meta.clone(), 3).unwrap();
        assert_eq!(reloaded.root().version, 4);
        // A bundle's chain is held to the same limit.
        let err = reloaded
            .admit_batch(&[past], &[], Default::default(), now(), "test clock")
            .unwrap_err();
        assert!(
            matches!(err, AdmitError::RootHopLimit { offered: 5, .. }),
            "{err}"
        );
        drop(reloaded);
        // A lower limit than the stored chain is an error, not an older root.
        let err = Trust::load_with_hop_limit(&pinned, meta, 2)
            .err()
            .expect("stored chain past the limit");
        assert!(err.to_string().contains("trust.max_root_hops"), "{err}");
    }

    #[test]
    fn restart_finishes_an_interrupted_reset() {
        let leaked = SecretKey::generate();
        let fresh = SecretKey::generate();
        let pinned = Signed::sign(&root(1, &[&leaked]), &[&leaked]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sled");
        {
            let meta = MetaStore::open(&path).unwrap();
            let mut trust = Trust::load(&pinned, meta.clone()).unwrap();
            trust
                .admit(&policy(1 << 62, &leaked), now(), "test clock")
                .unwrap();
            // The root is stored, then the node dies before the reset.
            let rotated = Signed::sign(&root(2, &[&fresh]), &[&leaked, &fresh]);
            meta.put_root(2, &rotated).unwrap();
            meta.flush().unwrap();
        }
        let meta = MetaStore::open(&path).unwrap();
        let trust = Trust::load(&pinned, meta).unwrap();
        assert_eq!(trust.root().version, 2);
        assert_eq!(trust.meta.slot(Kind::Policy, "p").unwrap(), None);
    }
}
