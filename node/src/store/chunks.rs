//! Chunk files: one file per BLAKE3 hash under `chunks/`, written to a
//! temporary file, synced and renamed, so a crash leaves either the whole
//! verified chunk or nothing. Every read is checked against its hash again,
//! so a chunk damaged on disk is never served.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use patchmesh_protocol::{Hash, Manifest};

mod adopt;

/// Why a chunk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The bytes do not hash to the expected value.
    #[error("chunk {expected} has wrong content (hashes to {actual})")]
    HashMismatch {
        /// Hash the chunk should have.
        expected: Hash,
        /// Hash of the bytes.
        actual: Hash,
    },
    /// Storing would exceed the disk quota.
    #[error("chunk store quota of {quota} bytes reached ({used} bytes used, {needed} more needed); raise transfer.chunk_quota_bytes or free space")]
    Quota {
        /// Quota in bytes.
        quota: u64,
        /// Bytes in use.
        used: u64,
        /// Bytes of the rejected chunk.
        needed: u64,
    },
    /// A file operation failed.
    #[error("chunk store {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// I/O error.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ChunkError + '_ {
    move |source| ChunkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Content-addressed chunk files under one folder.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    tmp: PathBuf,
    payloads: PathBuf,
    quota: u64,
    used: AtomicU64,
}

impl ChunkStore {
    /// Opens (creating) the store under `data_dir`; `quota` 0 means none.
    pub fn open(data_dir: &Path, quota: u64) -> Result<Self, ChunkError> {
        let root = data_dir.join("chunks");
        let tmp = data_dir.join("tmp");
        let payloads = data_dir.join("payloads");
        for dir in [&root, &tmp, &payloads] {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        // Temporary files left by a crash are incomplete by definition.
        for entry in fs::read_dir(&tmp).map_err(io_error(&tmp))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let used = disk_usage(&root);
        Ok(ChunkStore {
            root,
            tmp,
            payloads,
            quota,
            used: AtomicU64::new(used),
        })
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Whether a chunk file exists (its content is checked when read).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    /// Bytes of chunk files on disk.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Verifies `bytes` against `hash` and stores them; storing a chunk that
    /// is already present is a no-op.
    pub fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<bool, ChunkError> {
        let actual = Hash::of(bytes);
        if actual != *hash {
            return Err(ChunkError::HashMismatch {
                expected: *hash,
                actual,
            });
        }
        let path = self.path(hash);
        if path.exists() {
            return Ok(false);
        }
        let used = self.used_bytes();
        if self.quota > 0 && used + bytes.len() as u64 > self.quota {
            return Err(ChunkError::Quota {
                quota: self.quota,
                used,
                needed: bytes.len() as u64,
            });
        }
        let parent = path.parent().expect("chunk paths have a parent folder");
        fs::create_dir_all(parent).map_err(io_error(parent))?;
        // No fsync per chunk: every read checks the hash again, so a chunk
        // cut short by a power loss is found, deleted and fetched again,
        // and the assembled payload is synced before anything installs it.
        // Syncing each 1 MiB chunk cost about 6 ms and held a request slot.
        write_file(&self.tmp, &path, bytes, false)?;
        self.used.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Reads a chunk and checks its hash; `Ok(None)` when absent. A chunk
    /// whose file no longer matches its hash is deleted and reported absent.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, ChunkError> {
        let path = self.path(hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ChunkError::Io { path, source }),
        };
        if Hash::of(&bytes) != *hash {
            tracing::error!(chunk = %hash.short(), path = %path.display(), "chunk file damaged on disk; deleting it");
            self.remove(hash);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Deletes a chunk file if present.
    pub fn remove(&self, hash: &Hash) {
        let path = self.path(hash);
        if let Ok(meta) = fs::metadata(&path) {
            if fs::remove_file(&path).is_ok() {
                self.used.fetch_sub(meta.len(), Ordering::Relaxed);
            }
        }
    }

    /// Path of the assembled payload of `manifest`.
    pub fn payload_path(&self, payload_hash: &Hash) -> PathBuf {
        self.payloads.join(payload_hash.to_hex())
    }

    /// Assembles the payload of `manifest` from its chunks, checks the whole
    /// hash and returns its path. An existing payload is checked again.
    pub fn assemble(&self, manifest: &Manifest) -> Result<PathBuf, AssembleError> {
        let target = self.payload_path(&manifest.payload_hash);
        if target.exists() {
            if hash_file(&target).map_err(|e| AssembleError::Io(target.clone(), e))?
                == manifest.payload_hash
            {
                return Ok(target);
            }
            let _ = fs::remove_file(&target);
        }
        // Two manifests may share a payload and be installed at once, so
        // each assembly writes its own temporary file. Both write the same
        // bytes, and the rename onto the target is atomic.
        let tmp_path = self.tmp.join(format!(
            "{}.{}.payload",
            manifest.payload_hash.to_hex(),
            rand::random::<u32>()
        ));
        let mut file =
            File::create(&tmp_path).map_err(|e| AssembleError::Io(tmp_path.clone(), e))?;
        let mut hasher = blake3::Hasher::new();
        for (index, hash) in manifest.chunks.iter().enumerate() {
            let bytes = self
                .get(hash)
                .map_err(AssembleError::Chunk)?
                .ok_or(AssembleError::MissingChunk { index, hash: *hash })?;
            hasher.update(&bytes);
            file.write_all(&bytes)
                .map_err(|e| AssembleError::Io(tmp_path.clone(), e))?;
        }
        let actual = Hash::from(hasher.finalize());
        if actual != manifest.payload_hash {
            let _ = fs::remove_file(&tmp_path);
            return Err(AssembleError::WholeHash {
                expected: manifest.payload_hash,
                actual,
            });
        }
        file.sync_all()
            .map_err(|e| AssembleError::Io(tmp_path.clone(), e))?;
        drop(file);
        fs::rename(&tmp_path, &target).map_err(|e| AssembleError::Io(target.clone(), e))?;
        sync_dir(&self.payloads);
        Ok(target)
    }
}

/// Why a payload could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A chunk is not stored.
    #[error("chunk {index} ({hash}) is missing")]
    MissingChunk {
        /// Chunk index.
        index: usize,
        /// Chunk hash.
        hash: Hash,
    },
    /// Reading a chunk failed.
    #[error(transparent)]
    Chunk(ChunkError),
    /// The chunks are right but the whole is not; the manifest is inconsistent.
    #[error("assembled payload hashes to {actual}, manifest says {expected}")]
    WholeHash {
        /// Manifest's hash.
        expected: Hash,
        /// Actual hash.
        actual: Hash,
    },
    /// A file operation failed.
    #[error("payload {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// Writes `bytes` to a temporary file in `tmp_dir`, syncs it and renames it
/// to `target`, then syncs the target's folder.
pub fn write_synced(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), ChunkError> {
    write_file(tmp_dir, target, bytes, true)
}

/// Writes `bytes` to a temporary file in `tmp_dir` and renames it to
/// `target`, so readers never see a partial file; with `sync`, the file and
/// the folder are synced too.
fn write_file(tmp_dir: &Path, target: &Path, bytes: &[u8], sync: bool) -> Result<(), ChunkError> {
    let tmp_path = tmp_dir.join(format!(
        "{}.{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file"),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = File::create(&tmp_path)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&tmp_path, target)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(ChunkError::Io {
            path: target.to_path_buf(),
            source,
        });
    }
    if let Some(parent) = target.parent().filter(|_| sync) {
        sync_dir(parent);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// BLAKE3 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<Hash> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

fn disk_usage(root: &Path) -> u64 {
    let mut total = 0;
    let Ok(shards) = fs::read_dir(root) else {
        return 0;
    };
    for shard in shards.flatten() {
        if let Ok(files) = fs::read_dir(shard.path()) {
            for file in files.flatten() {
                total += file.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_rejects_wrong_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let err = store.put(&Hash::of(b"a"), b"b").unwrap_err();
        assert!(matches!(err, ChunkError::HashMismatch { .. }), "{err}");
        assert!(!store.contains(&Hash::of(b"a")));
    }

    #[test]
    fn damaged_file_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let hash = Hash::of(b"chunk");
        store.put(&hash, b"chunk").unwrap();
        fs::write(store.path(&hash), b"chunk!").unwrap();
        assert_eq!(store.get(&hash).unwrap(), None);
        assert!(!store.contains(&hash));
    }

    #[test]
    fn quota_rejects_chunk_that_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10).unwrap();
        store.put(&Hash::of(b"12345678"), b"12345678").unwrap();
        let err = store.put(&Hash::of(b"abc"), b"abc").unwrap_err();
        assert!(matches!(err, ChunkError::Quota { .. }), "{err}");
        assert_eq!(store.used_bytes(), 8);
    }
}
