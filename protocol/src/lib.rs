//! Data model of patchmesh: admin keys, the trust root, signed envelopes,
//! patch manifests, policies, node reports and wire messages.
//!
//! Everything here is pure: no I/O, no async, no clocks. Callers pass the
//! current time in. Every decoder of bytes from a peer or a file checks a
//! hard size limit from [`limits`] before decoding.

#![deny(missing_docs)]

pub mod actions;
pub mod bundle;
pub mod enrollment;
pub mod envelope;
pub mod hash;
pub mod inventory;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod policy;
pub mod report;
pub mod root;
pub mod schedule;
pub mod severity;
pub mod time;
pub mod wire;

pub use envelope::{Body, Kind, Signed, VerifyError};
pub use hash::Hash;
pub use keys::{KeyId, PublicKey, SecretKey};
pub use manifest::{Installer, Manifest, PatchRef};
pub use policy::Policy;
pub use report::{NodeReport, PatchState, PatchStatus, SignedReport};
pub use root::{RemovedKeys, Role, RoleKeys, Root};
pub use severity::Severity;
pub use time::Duration;
