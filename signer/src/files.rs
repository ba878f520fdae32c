//! File access shared by the commands: reads whose errors name the path, and
//! signed-object loading. Writes go through a synced temporary file and a
//! rename, so an interrupted run never leaves half an output. They reject an
//! existing output unless `--force` is given.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use patchmesh_protocol::Signed;

/// Reads a whole file; the error names the path.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read \"{}\"", path.display()))
}

/// Lists the entries of the patch folder `dir`, sorted so the result does
/// not depend on the file system's order.
pub fn list_patch_folder(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read patch folder \"{}\"", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read patch folder \"{}\"", dir.display()))?;
    entries.sort();
    Ok(entries)
}

/// Reads and decodes a signed object without verifying it.
pub fn read_signed(path: &Path) -> anyhow::Result<Signed> {
    let bytes = read(path)?;
    Signed::from_bytes(&bytes).with_context(|| {
        format!(
            "\"{}\" is not a signed patchmesh object (expected a file written by patchmesh-signer)",
            path.display()
        )
    })
}

/// Fails when `path` exists and `force` is not set.
pub fn check_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        bail!(
            "output file \"{}\" already exists (pass --force to replace it, or choose another --out)",
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` through a synced temporary file in the same
/// folder and a rename. It refuses an existing `path` unless `force` is set.
pub fn write_output(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    check_overwrite(path, force)?;
    write_atomic(path, bytes, 0o644)
}

/// Writes a secret key file with mode 0600. It never replaces an existing
/// file, even one created between the check and the write.
pub fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            if path.exists() {
                format!(
                    "key file \"{}\" already exists (choose another --out; keys are never overwritten)",
                    path.display()
                )
            } else {
                format!("cannot create \"{}\"", path.display())
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write \"{}\"", path.display()))
}

/// Writes `bytes` to `path` with `mode` through a synced temporary file
/// beside it and a rename, replacing any existing file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write \"{}\"", path.display()))
}

/// Temporary file name beside `path`, unique per process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Syncs the folder that contains `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_output_refuses_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.bin");
        write_output(&path, b"one", false).expect("first write");
        let err = write_output(&path, b"two", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fs::read(&path).expect("read"), b"one");
    }

    #[test]
    fn write_output_with_force_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.bin");
        write_output(&path, b"one", false).expect("first write");
        write_output(&path, b"two", true).expect("forced write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
    }

    #[test]
    fn read_error_names_path() {
        let err = read(Path::new("/nonexistent/patchmesh.key")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/patchmesh.key"),
            "{err}"
        );
    }
}
