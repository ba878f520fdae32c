//! Signed envelopes: a kind, the exact payload bytes and the signatures over
//! them.
//!
//! A signature covers the domain tag of the kind followed by the payload, so
//! a signature made for one kind of object never verifies as another. An
//! object is identified by the BLAKE3 hash of its payload, so adding a
//! signature to an object keeps its id.

use std::fmt;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::keys::{KeyId, SecretKey, SignatureBytes};
use crate::limits;
use crate::root::{Role, Root, RootError};

/// Kind of a signed object; it fixes the domain tag and the signing role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A trust root version.
    Root,
    /// A patch manifest.
    Manifest,
    /// A rollout policy.
    Policy,
    /// An admin approval of a policy or patch.
    Approval,
    /// An order to stop a policy or wave.
    Halt,
    /// An order to continue a halted policy or wave.
    Resume,
    /// An order to roll a patch back.
    Rollback,
    /// A node enrollment certificate.
    Enrollment,
    /// Withdrawal of an enrollment certificate.
    Revocation,
    /// The signed index of an air-gap bundle.
    BundleIndex,
}

impl Kind {
    /// Role whose keys must sign objects of this kind.
    pub fn role(self) -> Role {
        match self {
            Kind::Root => Role::Root,
            Kind::Manifest | Kind::BundleIndex => Role::Patch,
            Kind::Policy | Kind::Approval | Kind::Halt | Kind::Resume | Kind::Rollback => {
                Role::Policy
            }
            Kind::Enrollment | Kind::Revocation => Role::Enroll,
        }
    }

    /// Name used in the domain tag and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Root => "root",
            Kind::Manifest => "manifest",
            Kind::Policy => "policy",
            Kind::Approval => "approval",
            Kind::Halt => "halt",
            Kind::Resume => "resume",
            Kind::Rollback => "rollback",
            Kind::Enrollment => "enrollment",
            Kind::Revocation => "revocation",
            Kind::BundleIndex => "bundle_index",
        }
    }

    /// Bytes prefixed to the payload before signing.
    pub fn domain_tag(self) -> Vec<u8> {
        format!("patchmesh/v1/{}\0", self.name()).into_bytes()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One admin signature inside an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Key that made the signature.
    pub key_id: KeyId,
    /// ed25519 signature over the domain tag and payload.
    pub signature: SignatureBytes,
}

/// A signed object as stored, gossiped and written to files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// What the payload is.
    pub kind: Kind,
    /// Exact postcard bytes of the body; signatures cover these bytes.
    #[serde(with = "payload_bytes")]
    pub payload: Vec<u8>,
    /// Signatures, at most [`limits::MAX_SIGNATURES`].
    pub signatures: Vec<Signature>,
}

/// Fields every signed body has, so stores and gossip treat all kinds alike.
pub trait Body: Serialize + DeserializeOwned {
    /// Kind of envelope this body travels in.
    const KIND: Kind;

    /// Name of the series this object is a version of: two objects of the
    /// same kind and slot compete, and only a higher revision replaces one.
    fn slot(&self) -> String;

    /// Version of the signed object, only growing within a slot.
    fn revision(&self) -> u64;

    /// When the object was signed.
    fn issued(&self) -> Timestamp;

    /// After this time the object is no longer acted on.
    fn expires(&self) -> Timestamp;
}

/// Why a signed object was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The encoded envelope or body exceeds its size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    Oversize {
        /// What was measured.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes are not a valid envelope or body.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What failed to decode.
        what: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// The object is of another kind than the caller expected.
    #[error("expected a {expected} object, got a {actual} object")]
    WrongKind {
        /// Expected kind.
        expected: Kind,
        /// Kind found.
        actual: Kind,
    },
    /// The root defines no such role.
    #[error("trusted root defines no role \"{role}\"")]
    UnknownRole {
        /// The role.
        role: Role,
    },
    /// Too few distinct valid signatures of the needed role.
    #[error("{kind} object has {valid} valid signature(s) of role \"{role}\" under root version {root_version}, needs {threshold}{}", unknown_key.map(|k| format!(" (key {} is not a {role} key of that root: unknown, revoked or of another role)", k.short())).unwrap_or_default())]
    Threshold {
        /// Kind of the object.
        kind: Kind,
        /// Role that must sign it.
        role: Role,
        /// Distinct valid signatures found.
        valid: usize,
        /// Signatures needed.
        threshold: u32,
        /// Root version used.
        root_version: u64,
        /// A signing key that the role does not list, if any.
        unknown_key: Option<KeyId>,
    },
    /// Too few valid signatures, and one of them is by a key that a root
    /// rotation removed from the role.
    #[error("{kind} object is signed by key {}, which root version {removed_by} removed from role \"{role}\". Re-sign it with a current {role} key ({valid} valid signature(s) under root version {root_version}, needs {threshold})", key.short())]
    RemovedKey {
        /// Kind of the object.
        kind: Kind,
        /// Role that must sign it.
        role: Role,
        /// The removed key that signed it.
        key: KeyId,
        /// Version of the root that removed the key from the role.
        removed_by: u64,
        /// Distinct valid signatures found.
        valid: usize,
        /// Signatures needed.
        threshold: u32,
        /// Root version used.
        root_version: u64,
    },
    /// The object expired.
    #[error("{kind} \"{slot}\" revision {revision} expired at {expires} (checked against {clock} time {now})")]
    Expired {
        /// Kind of the object.
        kind: Kind,
        /// Its slot.
        slot: String,
        /// Its revision.
        revision: u64,
        /// Its expiry.
        expires: Timestamp,
        /// Time it was checked against.
        now: Timestamp,
        /// Which clock gave `now`.
        clock: &'static str,
    },
    /// A newer root does not directly follow the trusted one.
    #[error("root version {offered} does not follow trusted root version {trusted} (expected version {})", trusted + 1)]
    RootVersionGap {
        /// Version trusted.
        trusted: u64,
        /// Version offered.
        offered: u64,
    },
    /// The root belongs to another fleet.
    #[error("root is for fleet {actual:?}, but this node trusts fleet {expected:?}")]
    OtherFleet {
        /// Fleet trusted.
        expected: String,
        /// Fleet offered.
        actual: String,
    },
    /// The root itself is inconsistent.
    #[error(transparent)]
    Root(#[from] RootError),
}

impl Signed {
    /// Encodes `body` and signs it with each of `keys`.
    pub fn sign<B: Body>(body: &B, keys: &[&SecretKey]) -> Self {
        let payload = postcard::to_allocvec(body).expect("in-memory bodies always encode");
        let mut signed = Signed {
            kind: B::KIND,
            payload,
            signatures: Vec::new(),
        };
        for key in keys {
            signed.add_signature(key);
        }
        signed
    }

    /// Adds `key`'s signature, replacing an earlier one by the same key.
    pub fn add_signature(&mut self, key: &SecretKey) {
        let signature = key.sign(&self.signing_message());
        self.signatures.retain(|s| s.key_id != key.id());
        self.signatures.push(Signature {
            key_id: key.id(),
            signature,
        });
    }

    /// Object id: BLAKE3 of the payload bytes.
    pub fn id(&self) -> Hash {
        Hash::of(&self.payload)
    }

    /// Domain tag followed by the payload: the bytes signatures cover.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut message = self.kind.domain_tag();
        message.extend_from_slice(&self.payload);
        message
    }

    /// Binary (postcard) form for storage and the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("in-memory envelopes always encode")
    }

    /// Parses the binary form, rejecting anything over the envelope limit
    /// before decoding it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifyError> {
        if bytes.len() > limits::MAX_ENVELOPE_BYTES {
            return Err(VerifyError::Oversize {
                what: "signed object",
                size: bytes.len(),
                limit: limits::MAX_ENVELOPE_BYTES,
            });
        }
        let signed: Signed = postcard::from_bytes(bytes).map_err(|e| VerifyError::Malformed {
            what: "signed object",
            reason: e.to_string(),
        })?;
        if signed.signatures.len() > limits::MAX_SIGNATURES {
            return Err(VerifyError::Oversize {
                what: "signature list",
                size: signed.signatures.len(),
                limit: limits::MAX_SIGNATURES,
            });
        }
        Ok(signed)
    }

    /// Decodes the payload as `B` without checking signatures; used to show
    /// an object and inside verification.
    pub fn decode_body<B: Body>(&self) -> Result<B, VerifyError> {
        if self.kind != B::KIND {
            return Err(VerifyError::WrongKind {
                expected: B::KIND,
                actual: self.kind,
            });
        }
        postcard::from_bytes(&self.payload).map_err(|e| VerifyError::Malformed {
            what: B::KIND.name(),
            reason: e.to_string(),
        })
    }

    /// Verifies signatures and expiry of a non-root object under `root` and
    /// returns its body.
    ///
    /// `now` is the time to judge expiry by and `clock` names where it came
    /// from, so an error can say which clock was used. Version ordering
    /// against what a node already holds is the store's check.
    pub fn verify<B: Body>(
        &self,
        root: &Root,
        now: Timestamp,
        clock: &'static str,
    ) -> Result<B, VerifyError> {
        let body: B = self.decode_body()?;
        root.check_threshold(B::KIND.role(), self)?;
        if body.expires() <= now {
            return Err(VerifyError::Expired {
                kind: B::KIND,
                slot: body.slot(),
                revision: body.revision(),
                expires: body.expires(),
                now,
                clock,
            });
        }
        Ok(body)
    }
}

/// Serializes payload bytes as hex in human formats and raw bytes in binary.
mod payload_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            hex::decode(text).map_err(serde::de::Error::custom)
        } else {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("payload bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_borrowed_bytes<E: serde::de::Error>(
                    self,
                    v: &'de [u8],
                ) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
            }
            deserializer.deserialize_bytes(Visitor)
        }
    }
}
