//! Import of air-gap bundles: everything a bundle carries is verified
//! before anything is stored, then stored as if it had come over the mesh.
//!
//! Pass one reads the file once, as a stream: it walks the root chain from
//! the trusted root, verifies the index under the newest root, checks every
//! object as admission would ([`Trust::check_under`]) and every chunk
//! against the index, and writes chunks only into a staging folder. Pass two
//! stores roots, admits objects and moves chunks into the chunk store. A
//! failure in pass one leaves the stores as they were and names the cause.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::bundle::{BundleError, BundleIndex, BundleReader};
use patchmesh_protocol::{Hash, Kind, Root, Signed, VerifyError};

use crate::store::{ChunkError, ChunkStore};
use crate::trust::{AdmitError, Outcome, Trust};

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
    Store(String),
    /// A chunk could not be staged or stored.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// Imports the bundle at `path` into `trust` and `chunks`.
///
/// `staging_dir` receives verified chunks during pass one and is emptied of
/// them afterwards. `now` and `clock` judge expiry, as in
/// [`Trust::admit`]. Clock skew against the bundle's signing time above
/// [`DEFAULT_MAX_SKEW`] is logged; use [`import_with_skew`] to set it.
pub fn import(
    path: &Path,
    trust: &mut Trust,
    chunks: &ChunkStore,
    staging_dir: &Path,
    now: Timestamp,
    clock: &'static str,
) -> Result<ImportSummary, ImportError> {
    import_with_skew(
        path,
        trust,
        chunks,
        staging_dir,
        now,
        clock,
        DEFAULT_MAX_SKEW,
    )
}

/// [`import`] with the clock skew that triggers a warning.
pub fn import_with_skew(
    path: &Path,
    trust: &mut Trust,
    chunks: &ChunkStore,
    staging_dir: &Path,
    now: Timestamp,
    clock: &'static str,
    max_skew: SignedDuration,
) -> Result<ImportSummary, ImportError> {
    let staged = Staging::new(staging_dir)?;
    let verified = verify(path, trust, chunks, &staged, now, clock)?;
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
    commit(verified, trust, chunks, &staged, now, clock)
}

/// Everything pass one verified, ready to store.
struct Verified {
    index: BundleIndex,
    new_roots: Vec<Signed>,
    objects: Vec<Signed>,
    /// Chunks staged, by hash, with whether the store lacks them.
    staged_chunks: Vec<Hash>,
    summary: ImportSummary,
}

/// Staging folder for chunks of one import; removes what it wrote on drop.
struct Staging {
    dir: PathBuf,
    written: std::cell::RefCell<Vec<PathBuf>>,
}

impl Staging {
    fn new(dir: &Path) -> Result<Self, ImportError> {
        fs::create_dir_all(dir).map_err(|source| ChunkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Staging {
            dir: dir.to_path_buf(),
            written: Default::default(),
        })
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), ChunkError> {
        let path = self.path(hash);
        crate::store::chunks::write_synced(&self.dir, &path, bytes)?;
        self.written.borrow_mut().push(path);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for path in self.written.borrow().iter() {
            let _ = fs::remove_file(path);
        }
    }
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

    // Walk the chain from the trusted root; versions already trusted are
    // covered by the signed index, which hashes every envelope.
    let mut root: Root = trust.root().clone();
    let mut new_roots = Vec::new();
    for signed in reader.roots() {
        let body: Root = signed
            .decode_body()
            .map_err(|source| ImportError::Root { version: 0, source })?;
        if body.version <= root.version {
            continue;
        }
        root = root
            .verify_successor(signed)
            .map_err(|source| ImportError::Root {
                version: body.version,
                source,
            })?;
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

    // The index under the newest root, for this node's fleet.
    let index_id = reader.index().id();
    let index: BundleIndex = reader
        .index()
        .verify(&root, trust.effective_now(now), clock)
        .map_err(|source| ImportError::Index {
            index: index_id,
            source,
        })?;
    if index.fleet != root.fleet {
        return Err(ImportError::OtherFleet {
            expected: root.fleet.clone(),
            actual: index.fleet,
        });
    }

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
            .map_err(|source| ImportError::Object {
                kind: signed.kind,
                id: signed.id(),
                source,
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

    // Chunks, hashed by the reader and staged one at a time.
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

fn commit(
    verified: Verified,
    trust: &mut Trust,
    chunks: &ChunkStore,
    staging: &Staging,
    now: Timestamp,
    clock: &'static str,
) -> Result<ImportSummary, ImportError> {
    let store_error = |what: String| ImportError::Store(what);
    for signed in &verified.new_roots {
        trust
            .admit(signed, now, clock)
            .map_err(|e| store_error(format!("root {}: {e}", signed.id().short())))?;
    }
    for signed in &verified.objects {
        trust
            .admit(signed, now, clock)
            .map_err(|e| store_error(format!("{} {}: {e}", signed.kind, signed.id().short())))?;
    }
    for hash in &verified.staged_chunks {
        let path = staging.path(hash);
        let bytes = fs::read(&path).map_err(|source| ChunkError::Io {
            path: path.clone(),
            source,
        })?;
        chunks.put(hash, &bytes)?;
    }
    tracing::info!(
        bundle = %verified.summary.index.short(),
        roots = verified.summary.roots,
        objects = verified.summary.objects_stored,
        chunks = verified.summary.chunks_stored,
        "bundle imported"
    );
    Ok(verified.summary)
}

#[cfg(test)]
mod tests;
