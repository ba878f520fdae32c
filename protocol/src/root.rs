//! The trust root: which admin keys exist and, per role, which of them count
//! and how many signatures are needed.
//!
//! A node is installed with one pinned root. A newer root is accepted only
//! when its version is exactly one above the trusted one and it carries a
//! threshold of signatures from the trusted root's `root` role and from its
//! own `root` role, as in The Update Framework. Walking several versions is a
//! loop over [`Root::verify_successor`]. Nodes trust at most
//! [`crate::limits::MAX_ROOT_HOPS`] versions past their pinned root.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::envelope::{Body, Kind, Signed, VerifyError};
use crate::keys::{KeyId, PublicKey};

mod removed;

pub use removed::RemovedKeys;

/// A role a signed object needs signatures from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Adds, removes and revokes admin keys by signing new root versions.
    Root,
    /// Policies, approvals, halts and rollback orders.
    Policy,
    /// Patch manifests and bundle indexes.
    Patch,
    /// Node enrollment certificates and their revocation.
    Enroll,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 4] = [Role::Root, Role::Policy, Role::Patch, Role::Enroll];

    /// Lowercase name as written in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Policy => "policy",
            Role::Patch => "patch",
            Role::Enroll => "enroll",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which keys may sign for a role and how many distinct ones must.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key ids allowed to sign for the role.
    pub keys: Vec<KeyId>,
    /// Distinct valid signatures required, at least 1.
    pub threshold: u32,
}

/// Body of a root object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Name of the fleet; objects and bundles of another fleet are rejected.
    pub fleet: String,
    /// Version, starting at 1 and growing by exactly one per rotation.
    pub version: u64,
    /// When the root was signed.
    pub issued: Timestamp,
    /// After this time the root no longer vouches for anything.
    pub expires: Timestamp,
    /// Every admin public key the roles may refer to.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Keys and threshold per role; every role must be present.
    pub roles: BTreeMap<Role, RoleKeys>,
}

/// Error for a root whose own content is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    /// A role is not defined.
    #[error("root version {version} defines no keys for role \"{role}\" (every role needs keys and a threshold)")]
    MissingRole {
        /// Root version.
        version: u64,
        /// The missing role.
        role: Role,
    },
    /// A role needs more signatures than it has keys, or none.
    #[error("root version {version}: role \"{role}\" has threshold {threshold} with {keys} distinct keys (expected 1 to {keys})")]
    BadThreshold {
        /// Root version.
        version: u64,
        /// The role.
        role: Role,
        /// Its threshold.
        threshold: u32,
        /// Its distinct key count.
        keys: usize,
    },
    /// A role names a key id that the root does not list.
    #[error("root version {version}: role \"{role}\" names key {key} that the root does not list")]
    UnknownKey {
        /// Root version.
        version: u64,
        /// The role.
        role: Role,
        /// The key id.
        key: KeyId,
    },
    /// A listed public key is stored under an id that is not its own.
    #[error("root version {version}: key listed as {listed} hashes to {actual}")]
    KeyIdMismatch {
        /// Root version.
        version: u64,
        /// Id it is listed under.
        listed: KeyId,
        /// Its real id.
        actual: KeyId,
    },
}

impl Root {
    /// Checks that every role exists, names listed keys and has a threshold
    /// between 1 and its number of distinct keys.
    pub fn validate(&self) -> Result<(), RootError> {
        for (listed, key) in &self.keys {
            if key.id() != *listed {
                return Err(RootError::KeyIdMismatch {
                    version: self.version,
                    listed: *listed,
                    actual: key.id(),
                });
            }
        }
        for role in Role::ALL {
            let Some(rule) = self.roles.get(&role) else {
                return Err(RootError::MissingRole {
                    version: self.version,
                    role,
                });
            };
            let distinct: BTreeSet<&KeyId> = rule.keys.iter().collect();
            if let Some(key) = distinct.iter().find(|key| !self.keys.contains_key(key)) {
                return Err(RootError::UnknownKey {
                    version: self.version,
                    role,
                    key: **key,
                });
            }
            if rule.threshold == 0 || rule.threshold as usize > distinct.len() {
                return Err(RootError::BadThreshold {
                    version: self.version,
                    role,
                    threshold: rule.threshold,
                    keys: distinct.len(),
                });
            }
        }
        Ok(())
    }

    /// Counts the distinct keys of `role` whose signature over `message` is
    /// valid. A key listed twice or signing twice counts once.
    pub fn count_valid(&self, role: Role, message: &[u8], signed: &Signed) -> usize {
        let Some(rule) = self.roles.get(&role) else {
            return 0;
        };
        let mut counted = BTreeSet::new();
        for signature in &signed.signatures {
            if counted.contains(&signature.key_id) || !rule.keys.contains(&signature.key_id) {
                continue;
            }
            let Some(public) = self.keys.get(&signature.key_id) else {
                continue;
            };
            if public.verify(message, &signature.signature) {
                counted.insert(signature.key_id);
            }
        }
        counted.len()
    }

    /// Checks that `signed` carries at least the threshold of valid,
    /// distinct signatures of `role` under this root.
    pub fn check_threshold(&self, role: Role, signed: &Signed) -> Result<(), VerifyError> {
        let rule = self
            .roles
            .get(&role)
            .ok_or(VerifyError::UnknownRole { role })?;
        let message = signed.signing_message();
        let valid = self.count_valid(role, &message, signed);
        if valid < rule.threshold as usize {
            let unknown = signed
                .signatures
                .iter()
                .find(|s| !rule.keys.contains(&s.key_id))
                .map(|s| s.key_id);
            return Err(VerifyError::Threshold {
                kind: signed.kind,
                role,
                valid,
                threshold: rule.threshold,
                root_version: self.version,
                unknown_key: unknown,
            });
        }
        Ok(())
    }

    /// Verifies `next` as the direct successor of this root and returns it.
    ///
    /// The successor must be version `self.version + 1`, belong to the same
    /// fleet, validate, and be signed by a threshold of this root's `root`
    /// role and of its own. Expiry of the successor is the caller's check,
    /// because intermediate roots of a chain may have expired long ago.
    pub fn verify_successor(&self, next: &Signed) -> Result<Root, VerifyError> {
        if next.kind != Kind::Root {
            return Err(VerifyError::WrongKind {
                expected: Kind::Root,
                actual: next.kind,
            });
        }
        let candidate: Root = next.decode_body()?;
        if candidate.version != self.version + 1 {
            return Err(VerifyError::RootVersionGap {
                trusted: self.version,
                offered: candidate.version,
            });
        }
        if candidate.fleet != self.fleet {
            return Err(VerifyError::OtherFleet {
                expected: self.fleet.clone(),
                actual: candidate.fleet,
            });
        }
        candidate.validate()?;
        self.check_threshold(Role::Root, next)?;
        candidate.check_threshold(Role::Root, next)?;
        Ok(candidate)
    }

    /// Verifies a self-signed first root, as read from `root.bin` when a
    /// node is installed or a signer starts.
    pub fn verify_initial(signed: &Signed) -> Result<Root, VerifyError> {
        if signed.kind != Kind::Root {
            return Err(VerifyError::WrongKind {
                expected: Kind::Root,
                actual: signed.kind,
            });
        }
        let root: Root = signed.decode_body()?;
        root.validate()?;
        root.check_threshold(Role::Root, signed)?;
        Ok(root)
    }
}

impl Body for Root {
    const KIND: Kind = Kind::Root;

    fn slot(&self) -> String {
        "root".into()
    }

    fn revision(&self) -> u64 {
        self.version
    }

    fn issued(&self) -> Timestamp {
        self.issued
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }
}
