//! Pass two of an import and its crash recovery.
//!
//! Roots and objects are stored in one sled transaction together with a
//! record of the staged chunks still to be moved. The chunks are then
//! renamed from the staging folder into the chunk store and the record is
//! removed. A crash before the transaction leaves the stores as they were,
//! with only staging files, which the next import or start deletes. A crash
//! after it leaves the record, and [`recover`] moves the rest of the chunks
//! at the next start, so no admitted manifest stays without its bundle's
//! chunks.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use patchmesh_protocol::Hash;

use super::{ImportError, ImportSummary, Stores, Verified};
use crate::store::chunks::hash_file;
use crate::store::meta::Batch;
use crate::store::{ChunkError, ChunkStore, MetaStore};

/// Key in the metadata database of the chunks a committed import has not
/// moved into the chunk store yet.
pub(super) const PENDING_CHUNKS_KEY: &str = "bundle_pending_chunks";

/// Staging folder for chunks of one import; removes what it wrote on drop.
pub(super) struct Staging {
    dir: PathBuf,
    written: RefCell<Vec<PathBuf>>,
}

impl Staging {
    /// Creates the folder and empties it of files a crashed import left,
    /// after finishing a committed import whose chunks were not all moved.
    pub(super) fn new(
        dir: &Path,
        meta: &MetaStore,
        chunks: &ChunkStore,
    ) -> Result<Self, ImportError> {
        fs::create_dir_all(dir).map_err(|source| ChunkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        recover(meta, chunks, dir)?;
        Ok(Staging {
            dir: dir.to_path_buf(),
            written: Default::default(),
        })
    }

    pub(super) fn path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    /// Writes a verified chunk, synced, so that a committed import can
    /// still move it after a power loss.
    pub(super) fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), ChunkError> {
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

/// Stores what pass one verified: roots, objects and the pending-chunk
/// record in one transaction, then the chunks.
pub(super) fn commit(
    verified: Verified,
    stores: Stores<'_>,
    staging: &Staging,
    now: Timestamp,
    clock: &'static str,
) -> Result<ImportSummary, ImportError> {
    let mut batch = Batch::default();
    if !verified.staged_chunks.is_empty() {
        batch.set_misc(PENDING_CHUNKS_KEY, &verified.staged_chunks);
    }
    // The objects were checked in pass one, and the agent admits nothing
    // else while it imports, so a rejection here means the stores changed
    // underneath. It still stores nothing.
    stores
        .trust
        .admit_batch(&verified.new_roots, &verified.objects, batch, now, clock)
        .map_err(|source| ImportError::admission(source, ImportError::Commit))?;

    let files: Vec<(Hash, PathBuf)> = verified
        .staged_chunks
        .iter()
        .map(|hash| (*hash, staging.path(hash)))
        .collect();
    stores.chunks.adopt_all(&files)?;
    if !files.is_empty() {
        let mut done = Batch::default();
        done.remove_misc(PENDING_CHUNKS_KEY);
        stores.meta.put_batch(&done)?;
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

/// Finishes an import that committed its objects but was cut off while it
/// moved chunks, then deletes every other file in `staging_dir`. Returns
/// how many chunks it moved.
///
/// A staged chunk that is missing or no longer matches its hash is logged
/// and left out. The node then fetches it from peers like any other chunk
/// of a held manifest, and importing the bundle again stores it too.
pub fn recover(
    meta: &MetaStore,
    chunks: &ChunkStore,
    staging_dir: &Path,
) -> Result<usize, ImportError> {
    let pending: Vec<Hash> = meta.misc(PENDING_CHUNKS_KEY)?.unwrap_or_default();
    let mut files = Vec::new();
    for hash in &pending {
        let path = staging_dir.join(hash.to_hex());
        match hash_file(&path) {
            Ok(actual) if actual == *hash => files.push((*hash, path)),
            Ok(actual) if !chunks.contains(hash) => tracing::error!(
                chunk = %hash.short(),
                actual = %actual.short(),
                path = %path.display(),
                "staged chunk of an interrupted bundle import is damaged; fetch it from peers or import the bundle again"
            ),
            Err(error) if !chunks.contains(hash) => tracing::error!(
                chunk = %hash.short(),
                path = %path.display(),
                %error,
                "staged chunk of an interrupted bundle import cannot be read; fetch it from peers or import the bundle again"
            ),
            _ => {}
        }
    }
    let moved = chunks.adopt_all(&files)?;
    if !pending.is_empty() {
        let mut done = Batch::default();
        done.remove_misc(PENDING_CHUNKS_KEY);
        meta.put_batch(&done)?;
        tracing::info!(
            chunks = moved,
            pending = pending.len(),
            "finished moving the chunks of an interrupted bundle import"
        );
    }
    if let Ok(entries) = fs::read_dir(staging_dir) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(moved)
}
