//! Import of air-gap bundles: everything a bundle carries is verified
//! before anything is stored, then stored as if it had come over the mesh.
//!
//! Pass one reads the file once, as a stream: it walks the root chain from
//! the trusted root, verifies the index under the newest root, checks every
//! object as admission would ([`Trust::check_under`]) and every chunk
//! against the index, and writes chunks only into a staging folder. A
//! failure in pass one leaves the stores as they were and names the cause.
//! Pass two stores roots and objects in one sled transaction,
//! then moves the staged chunks into the chunk store; a crash in between is
//! finished by [`recover`] at the next start.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::bundle::{BundleError, BundleIndex, BundleReader};
use patchmesh_protocol::{Hash, Kind, Root, Signed, VerifyError};

use crate::store::{ChunkError, ChunkStore, MetaStore};
use crate::trust::{AdmitError, Outcome, Trust};

mod commit;

pub use commit::recover;
use commit::{commit, Staging};

/// Folder in the node's data folder that holds verified chunks of the
/// bundle being imported.
pub const STAGING_DIR: &str = "bundle-staging";

/// Clock difference above which an import logs a warning.
pub const DEFAULT_MAX_SKEW: SignedDuration = SignedDuration::from_hours(1);

/// Counts of what an import stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSummary {
    /// Id of the bundle's index.
    pub index: Hash,
    /// Fleet of the bundle.
    pub fleet: String,
    /// When the bundle was signed.
    pub signed_at: Timestamp,
    /// Root versions newly trusted.
    pub roots: usize,
    /// Objects newly stored.
    pub objects_stored: usize,
    /// Objects already held.
    pub objects_held: usize,
    /// Chunks newly stored.
    pub chunks_stored: usize,
    /// Chunks already held.
    pub chunks_held: usize,
}

/// Error for a rejected or failed import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be opened.
    #[error("cannot read bundle {path}: {source}")]
    Open {
        /// Bundle path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is damaged, truncated or does not match its index.
    #[error(transparent)]
    Format(#[from] BundleError),
    /// A root of the chain does not verify.
    #[error("root version {version} in the bundle is rejected: {source}")]
    Root {
        /// Version of the rejected root.
        version: u64,
        /// Why.
        source: VerifyError,
    },
    /// A root of the chain is past the number of rotations this node
    /// trusts after its pinned root.
    #[error("root version {version} in the bundle is rejected: {source}")]
    RootChain {
        /// Version of the rejected root.
        version: u64,
        /// Why.
        source: AdmitError,
    },
    /// The index does not verify.
    #[error("bundle index {index} is rejected: {source}")]
    Index {
        /// Index id.
        index: Hash,
        /// Why.
        source: VerifyError,
    },
    /// The bundle belongs to another fleet.
    #[error("bundle is for fleet {actual:?}, but this node trusts fleet {expected:?}")]
    OtherFleet {
        /// Fleet trusted.
        expected: String,
        /// Fleet of the bundle.
        actual: String,
    },
    /// An object is rejected by admission checks.
    #[error("{kind} {id} in the bundle is rejected: {source}")]
    Object {
        /// Kind.
        kind: Kind,
        /// Object id.
        id: Hash,
        /// Why.
        source: AdmitError,
    },
    /// An object is not newer than the one held for its slot.
    #[error("bundle is older than what this node holds: {kind} {slot:?} revision {offered} is not above revision {held} already held (rollback or replay); import a bundle made from the newest objects")]
    Older {
        /// Kind.
        kind: Kind,
        /// Slot.
        slot: String,
        /// Revision held.
        held: u64,
        /// Revision in the bundle.
        offered: u64,
    },
    /// A root of the bundle differs from the root this node trusts at the
    /// same version.
    #[error("root version {version} in the bundle (fleet {bundle_fleet:?}) is not the root this node trusts at that version (fleet {trusted_fleet:?}); the bundle was made for another trust root")]
    ForeignRoot {
        /// Version of the root.
        version: u64,
        /// Fleet named by the bundle's root.
        bundle_fleet: String,
        /// Fleet of the trusted root.
        trusted_fleet: String,
    },
    /// Two objects of the bundle compete for one slot.
    #[error("bundle carries two {kind} objects for slot {slot:?}")]
    DuplicateSlot {
        /// Kind.
        kind: Kind,
        /// Slot.
        slot: String,
    },
    /// Storing failed in pass two.
    #[error("storing the verified bundle failed: {0}")]
    Store(#[from] crate::store::MetaError),
    /// Admission rejected the verified bundle in pass two, which happens
    /// only when the stores changed after pass one; nothing was stored.
    #[error("storing the verified bundle failed: {0}")]
    Commit(AdmitError),
    /// A chunk could not be staged or stored.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

impl ImportError {
    /// Wraps an admission error for `signed` of pass one.
    fn object(signed: &Signed, source: AdmitError) -> Self {
        Self::admission(source, |source| ImportError::Object {
            kind: signed.kind,
            id: signed.id(),
            source,
        })
    }

    /// Names a rollback as an older bundle and wraps any other admission
    /// error with `other`.
    fn admission(source: AdmitError, other: impl FnOnce(AdmitError) -> Self) -> Self {
        match source {
            AdmitError::Rollback {
                kind,
                slot,
                held,
                offered,
            } => ImportError::Older {
                kind,
                slot,
                held,
                offered,
            },
            source => other(source),
        }
    }
}

/// The stores an import writes to.
pub struct Stores<'a> {
    /// Trusted root and admission.
    pub trust: &'a mut Trust,
    /// The metadata database that `trust` writes, for the pending-chunk
    /// record.
    pub meta: &'a MetaStore,
    /// Chunk files.
    pub chunks: &'a ChunkStore,
    /// Folder for verified chunks during the import, normally
    /// [`STAGING_DIR`] in the data folder.
    pub staging_dir: &'a Path,
}

/// Imports the bundle at `path` into `stores`.
///
/// `staging_dir` receives verified chunks during pass one and is emptied of
/// them afterwards. `now` and `clock` judge expiry, as in
/// [`Trust::admit`]. Clock skew against the bundle's signing time above
/// [`DEFAULT_MAX_SKEW`] is logged; use [`import_with_skew`] to set it.
pub fn import(
    path: &Path,
    stores: Stores<'_>,
    now: Timestamp,
    clock: &'static str,
) -> Result<ImportSummary, ImportError> {
    import_with_skew(path, stores, now, clock, DEFAULT_MAX_SKEW)
}

/// [`import`] with the clock skew that triggers a warning.
pub fn import_with_skew(
    path: &Path,
    stores: Stores<'_>,
    now: Timestamp,
    clock: &'static str,
    max_skew: SignedDuration,
) -> Result<ImportSummary, ImportError> {
    let staged = Staging::new(stores.staging_dir, stores.meta, stores.chunks)?;
    let verified = verify(path, stores.trust, stores.chunks, &staged, now, clock)?;
    let skew = now.duration_since(verified.index.issued);
    if skew.abs() > max_skew {
        tracing::warn!(
            bundle = %verified.summary.index.short(),
            signed_at = %verified.index.issued,
            node_time = %now,
            clock,
            "node clock differs from the bundle's signing time by more than the allowed skew"
        );
    }
    commit(verified, stores, &staged, now, clock)
}

/// Everything pass one verified, ready to store.
struct Verified {
    index: BundleIndex,
    new_roots: Vec<Signed>,
    objects: Vec<Signed>,
    /// Chunks staged because the store lacks them, by hash.
    staged_chunks: Vec<Hash>,
    summary: ImportSummary,
}

fn verify(
    path: &Path,
    trust: &Trust,
    chunks: &ChunkStore,
    staging: &Staging,
    now: Timestamp,
    clock: &'static str,
) -> Result<Verified, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BundleReader::open(BufReader::new(file))?;

    // Walk the chain from the trusted root. A root of another fleet, or
    // another root at the trusted version, is named as such before any
    // signature check, so the error says what is wrong with the bundle.
    let mut root: Root = trust.root().clone();
    let mut removed_keys = trust.removed_keys().clone();
    let mut new_roots = Vec::new();
    for signed in reader.roots() {
        let body: Root = signed
            .decode_body()
            .map_err(|source| ImportError::Root { version: 0, source })?;
        if body.fleet != root.fleet
            || (body.version == trust.root().version && body != *trust.root())
        {
            return Err(ImportError::ForeignRoot {
                version: body.version,
                bundle_fleet: body.fleet,
                trusted_fleet: root.fleet.clone(),
            });
        }
        if body.version <= root.version {
            continue;
        }
        trust
            .check_root_version(body.version)
            .map_err(|source| ImportError::RootChain {
                version: body.version,
                source,
            })?;
        let next = root
            .verify_successor(signed)
            .map_err(|source| ImportError::Root {
                version: body.version,
                source,
            })?;
        removed_keys.record(&root, &next);
        root = next;
        new_roots.push(signed.clone());
    }
    if root.expires <= trust.effective_now(now) {
        return Err(ImportError::Root {
            version: root.version,
            source: VerifyError::Expired {
                kind: Kind::Root,
                slot: "root".into(),
                revision: root.version,
                expires: root.expires,
                now,
                clock,
            },
        });
    }

    // The index under the newest root, for this node's fleet. The fleet is
    // compared first so that another fleet's bundle is named as such
    // rather than as a bad signature.
    let index_id = reader.index().id();
    if reader.body().fleet != root.fleet {
        return Err(ImportError::OtherFleet {
            expected: root.fleet.clone(),
            actual: reader.body().fleet.clone(),
        });
    }
    let index: BundleIndex = reader
        .index()
        .verify(&root, trust.effective_now(now), clock)
        .map_err(|source| ImportError::Index {
            index: index_id,
            source: removed_keys.explain(reader.index(), source),
        })?;

    let mut summary = ImportSummary {
        index: index_id,
        fleet: index.fleet.clone(),
        signed_at: index.issued,
        roots: new_roots.len(),
        objects_stored: 0,
        objects_held: 0,
        chunks_stored: 0,
        chunks_held: 0,
    };

    // Objects, checked as admission would check them, storing nothing.
    let mut objects = Vec::new();
    let mut slots = BTreeSet::new();
    while let Some(signed) = reader.next_object()? {
        let checked = trust
            .check_under(&root, &signed, now, clock)
            .map_err(|source| {
                let source = crate::trust::explain_removed(&removed_keys, &signed, source);
                ImportError::object(&signed, source)
            })?;
        if !slots.insert((checked.kind, checked.slot.clone())) {
            return Err(ImportError::DuplicateSlot {
                kind: checked.kind,
                slot: checked.slot,
            });
        }
        match checked.outcome {
            Outcome::Stored => summary.objects_stored += 1,
            Outcome::Duplicate => summary.objects_held += 1,
        }
        objects.push(signed);
    }

    // Chunks, hashed by the reader and staged one at a time, once the
    // quota has room for every chunk the store lacks.
    let missing_bytes: u64 = index
        .chunks
        .iter()
        .filter(|entry| !chunks.contains(&entry.hash))
        .map(|entry| u64::from(entry.size))
        .sum();
    chunks.check_room(missing_bytes)?;
    let mut staged_chunks = Vec::new();
    while let Some((entry, bytes)) = reader.next_chunk()? {
        if chunks.contains(&entry.hash) {
            summary.chunks_held += 1;
            continue;
        }
        staging.put(&entry.hash, &bytes)?;
        staged_chunks.push(entry.hash);
        summary.chunks_stored += 1;
    }
    reader.finish()?;

    Ok(Verified {
        index,
        new_roots,
        objects,
        staged_chunks,
        summary,
    })
}

#[cfg(test)]
mod tests;
