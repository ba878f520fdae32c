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
use patchmesh_protocol::{limits, Body, Hash, Kind, Manifest, Policy, Root, Signed, VerifyError};

use crate::store::{MetaError, MetaStore};

/// Slot, revision and signing time of a verified body.
fn header<B: Body>(body: &B) -> (String, u64, Timestamp) {
    (body.slot(), body.revision(), body.issued())
}

/// The header of `body` if its own validation passed.
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
    /// A kind this node does not act on yet.
    #[error("{0} objects are not supported by this node version")]
    Unsupported(Kind),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MetaError),
}

impl AdmitError {
    /// Whether the sender deserves a penalty: true for forged, malformed,
    /// expired or replayed objects, false for local failures.
    pub fn blames_sender(&self) -> bool {
        !matches!(self, AdmitError::Store(_) | AdmitError::Unsupported(_))
    }
}

/// The trusted root chain and the admission checks.
pub struct Trust {
    root: Root,
    meta: MetaStore,
    high_water: Timestamp,
}

const HIGH_WATER_KEY: &str = "high_water_issued";

impl Trust {
    /// Loads the pinned root and every stored successor.
    pub fn load(pinned: &Signed, meta: MetaStore) -> Result<Self, AdmitError> {
        let mut root = Root::verify_initial(pinned)?;
        for (hops, signed) in meta.roots()?.iter().enumerate() {
            if hops >= limits::MAX_ROOT_HOPS {
                break;
            }
            let body: Root = signed.decode_body()?;
            if body.version <= root.version {
                continue;
            }
            root = root.verify_successor(signed)?;
        }
        let high_water = meta
            .misc::<Timestamp>(HIGH_WATER_KEY)?
            .unwrap_or(Timestamp::UNIX_EPOCH);
        Ok(Trust {
            root,
            meta,
            high_water,
        })
    }

    /// The newest trusted root.
    pub fn root(&self) -> &Root {
        &self.root
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
        if signed.kind == Kind::Root {
            return self.admit_root(signed, now, clock);
        }
        let (slot, revision, issued) = match signed.kind {
            Kind::Manifest => {
                let body: Manifest = signed.verify(&self.root, now, clock)?;
                check_valid(&body, body.validate())?
            }
            Kind::Policy => {
                let body: Policy = signed.verify(&self.root, now, clock)?;
                check_valid(&body, body.validate())?
            }
            Kind::Approval => header(&signed.verify::<Approval>(&self.root, now, clock)?),
            Kind::Halt => header(&signed.verify::<Halt>(&self.root, now, clock)?),
            Kind::Resume => header(&signed.verify::<Resume>(&self.root, now, clock)?),
            Kind::Rollback => header(&signed.verify::<RollbackOrder>(&self.root, now, clock)?),
            Kind::Enrollment => {
                let body: Enrollment = signed.verify(&self.root, now, clock)?;
                check_valid(&body, body.validate())?
            }
            Kind::Revocation => {
                let body: Revocation = signed.verify(&self.root, now, clock)?;
                check_valid(&body, body.validate())?
            }
            other => return Err(AdmitError::Unsupported(other)),
        };
        self.store_in_slot(signed, slot, revision, issued)
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
        self.raise_high_water(next.issued)?;
        tracing::info!(version = next.version, "trusted root rotated");
        self.root = next;
        Ok(admitted(Outcome::Stored))
    }
}
