//! Adoption of chunk files that were verified and synced elsewhere in the
//! data folder, such as the staging folder of a bundle import: they are
//! renamed into the store instead of being read and written again.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use patchmesh_protocol::Hash;

use super::{io_error, sync_dir, ChunkError, ChunkStore};

impl ChunkStore {
    /// Checks that `needed` more bytes fit under the quota.
    pub fn check_room(&self, needed: u64) -> Result<(), ChunkError> {
        let used = self.used_bytes();
        if self.quota > 0 && used + needed > self.quota {
            return Err(ChunkError::Quota {
                quota: self.quota,
                used,
                needed,
            });
        }
        Ok(())
    }

    /// Moves each `(hash, file)` into the store under `hash`, then syncs
    /// every chunk folder it touched; returns how many were new.
    ///
    /// The caller guarantees that each file holds exactly the bytes of its
    /// hash and was synced, because this does not read it. A chunk already
    /// stored is kept and its file is deleted. The quota is not checked
    /// here: call [`ChunkStore::check_room`] first.
    pub fn adopt_all(&self, files: &[(Hash, PathBuf)]) -> Result<usize, ChunkError> {
        let mut folders = BTreeSet::new();
        let mut adopted = 0;
        for (hash, file) in files {
            let target = self.path(hash);
            if target.exists() {
                let _ = fs::remove_file(file);
                continue;
            }
            let parent = target.parent().expect("chunk paths have a parent folder");
            fs::create_dir_all(parent).map_err(io_error(parent))?;
            let len = fs::metadata(file).map_err(io_error(file))?.len();
            move_file(&self.tmp, file, &target)?;
            self.used.fetch_add(len, Ordering::Relaxed);
            folders.insert(parent.to_path_buf());
            adopted += 1;
        }
        for folder in &folders {
            sync_dir(folder);
        }
        Ok(adopted)
    }
}

/// Renames `from` to `to`, or copies it through a synced temporary file
/// when the two lie on different file systems.
fn move_file(tmp_dir: &Path, from: &Path, to: &Path) -> Result<(), ChunkError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let bytes = fs::read(from).map_err(io_error(from))?;
            super::write_synced(tmp_dir, to, &bytes)?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(source) => Err(ChunkError::Io {
            path: to.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_file_is_served_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 0).unwrap();
        let hash = Hash::of(b"staged chunk");
        let staged = dir.path().join("staged");
        fs::write(&staged, b"staged chunk").unwrap();

        assert_eq!(store.adopt_all(&[(hash, staged.clone())]).unwrap(), 1);
        assert!(!staged.exists());
        assert_eq!(
            store.get(&hash).unwrap().as_deref(),
            Some(&b"staged chunk"[..])
        );
        assert_eq!(store.used_bytes(), 12);
    }

    #[test]
    fn room_check_names_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path(), 10).unwrap();
        let err = store.check_room(11).unwrap_err();
        assert!(matches!(err, ChunkError::Quota { needed: 11, .. }), "{err}");
        store.check_room(10).unwrap();
    }
}
