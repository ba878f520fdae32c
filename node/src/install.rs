//! Installers: run a signed command, or replace one file atomically while
//! keeping the old one for rollback.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchmesh_protocol::{Installer, Manifest};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// Most bytes of command output kept in a record.
const OUTPUT_TAIL_BYTES: usize = 4096;

/// What an install or rollback did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// Exit status of the command, if one ran.
    pub exit_code: Option<i32>,
    /// Last bytes of standard output and error.
    pub output: String,
    /// Copy of the replaced file, for the file installer.
    pub backup: Option<PathBuf>,
    /// Whether the replaced file existed before.
    pub had_previous: bool,
    /// What the deb installer did, for its rollback.
    pub deb: Option<crate::deb::DebRecord>,
}

/// Why an install or rollback failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The command exited non-zero.
    #[error("command exited with status {code:?}: {output}")]
    Exit {
        /// Exit status, `None` when killed by a signal.
        code: Option<i32>,
        /// Last bytes of output.
        output: String,
    },
    /// The command ran past its timeout and was killed.
    #[error("command timed out after {0:?} and was killed")]
    Timeout(Duration),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The patch cannot be rolled back.
    #[error("patch has no rollback ({0})")]
    NoRollback(&'static str),
    /// dpkg failed or the package does not match the manifest.
    #[error("deb installer: {0}")]
    Deb(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Quotes `text` for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Runs `command` with `sh -c`, `{payload}` replaced by the quoted payload
/// path, killing it after `timeout`.
pub async fn run_command(
    command: &str,
    payload: Option<&Path>,
    timeout: Duration,
) -> Result<InstallRecord, InstallError> {
    let script = match payload {
        Some(path) => command.replace("{payload}", &shell_quote(&path.to_string_lossy())),
        None => command.to_string(),
    };
    let mut child = Command::new("sh");
    child.arg("-c").arg(&script).kill_on_drop(true);
    if let Some(path) = payload {
        child.env("PATCHMESH_PAYLOAD", path);
    }
    let output = match tokio::time::timeout(timeout, child.output()).await {
        Err(_) => return Err(InstallError::Timeout(timeout)),
        Ok(result) => result.map_err(io_error(Path::new("sh")))?,
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail = tail(&text);
    if !output.status.success() {
        return Err(InstallError::Exit {
            code: output.status.code(),
            output: tail,
        });
    }
    Ok(InstallRecord {
        exit_code: output.status.code(),
        output: tail,
        ..InstallRecord::default()
    })
}

/// Returns the last [`OUTPUT_TAIL_BYTES`] of `text`, cut at a character boundary.
pub(crate) fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(OUTPUT_TAIL_BYTES);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].trim().to_string()
}

/// Where installers keep what they need beyond the manifest.
#[derive(Clone, Debug)]
pub struct InstallContext {
    /// Folder where the file installer keeps what it replaces.
    pub backup_dir: std::path::PathBuf,
    /// The node's data folder.
    pub data_dir: std::path::PathBuf,
    /// dpkg settings of the deb installer.
    pub deb: crate::deb::DebConfig,
}

/// Installs `manifest`'s payload at `payload`.
pub async fn install(
    manifest: &Manifest,
    payload: &Path,
    context: &InstallContext,
) -> Result<InstallRecord, InstallError> {
    let backup_dir = context.backup_dir.as_path();
    match &manifest.installer {
        Installer::Command {
            install,
            timeout_secs,
            ..
        } => run_command(install, Some(payload), Duration::from_secs(*timeout_secs)).await,
        Installer::File { path, mode } => replace_file(payload, Path::new(path), *mode, backup_dir),
        Installer::Deb { package } => {
            let dpkg = crate::deb::Dpkg::new(&context.deb, &context.data_dir);
            let record = dpkg
                .install(package, payload)
                .await
                .map_err(|e| InstallError::Deb(e.to_string()))?;
            Ok(InstallRecord {
                output: record.output.clone(),
                deb: Some(record),
                ..InstallRecord::default()
            })
        }
    }
}

/// Rolls `manifest` back using what `record` kept at install time.
pub async fn rollback(
    manifest: &Manifest,
    payload: Option<&Path>,
    record: &InstallRecord,
    context: &InstallContext,
) -> Result<InstallRecord, InstallError> {
    match &manifest.installer {
        Installer::Command {
            rollback: Some(command),
            timeout_secs,
            ..
        } => run_command(command, payload, Duration::from_secs(*timeout_secs)).await,
        Installer::Command { rollback: None, .. } => Err(InstallError::NoRollback(
            "the manifest names no rollback command",
        )),
        Installer::File { path, .. } => restore_file(Path::new(path), record),
        Installer::Deb { .. } => {
            let Some(deb) = &record.deb else {
                return Err(InstallError::NoRollback(
                    "no record of the deb install was kept",
                ));
            };
            let dpkg = crate::deb::Dpkg::new(&context.deb, &context.data_dir);
            let restored = dpkg
                .rollback(deb)
                .await
                .map_err(|e| InstallError::Deb(e.to_string()))?;
            Ok(InstallRecord {
                output: restored.output.clone(),
                deb: Some(restored),
                ..InstallRecord::default()
            })
        }
    }
}

/// Replaces `target` with `payload`: the old file is copied to `backup_dir`
/// first, the new one is written beside the target, synced and renamed over
/// it, so the target is always either the old or the new file.
fn replace_file(
    payload: &Path,
    target: &Path,
    mode: u32,
    backup_dir: &Path,
) -> Result<InstallRecord, InstallError> {
    fs::create_dir_all(backup_dir).map_err(io_error(backup_dir))?;
    let backup = backup_dir.join("previous");
    let had_previous = target.exists();
    if had_previous && !backup.exists() {
        let partial = backup_dir.join("previous.partial");
        fs::copy(target, &partial).map_err(io_error(target))?;
        fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&partial))?;
        fs::rename(&partial, &backup).map_err(io_error(&backup))?;
    }
    let parent = target
        .parent()
        .ok_or_else(|| io_error(target)(std::io::Error::other("target has no parent folder")))?;
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    let staged = parent.join(format!(
        ".{}.patchmesh-new",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file")
    ));
    fs::copy(payload, &staged).map_err(io_error(&staged))?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(mode)).map_err(io_error(&staged))?;
    fs::File::open(&staged)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&staged))?;
    fs::rename(&staged, target).map_err(io_error(target))?;
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(InstallRecord {
        exit_code: None,
        output: format!("replaced {}", target.display()),
        backup: had_previous.then_some(backup),
        had_previous,
        deb: None,
    })
}

/// Puts the kept copy back, or removes the file if there was none before.
fn restore_file(target: &Path, record: &InstallRecord) -> Result<InstallRecord, InstallError> {
    match (&record.backup, record.had_previous) {
        (Some(backup), true) => {
            let parent = target.parent().unwrap_or(Path::new("/"));
            let staged = parent.join(".patchmesh-restore");
            fs::copy(backup, &staged).map_err(io_error(backup))?;
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(&staged)
                .map_err(io_error(&staged))?;
            file.flush().map_err(io_error(&staged))?;
            file.sync_all().map_err(io_error(&staged))?;
            fs::rename(&staged, target).map_err(io_error(target))?;
            Ok(InstallRecord {
                output: format!("restored {} from {}", target.display(), backup.display()),
                ..InstallRecord::default()
            })
        }
        _ => {
            match fs::remove_file(target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_error(target)(source)),
            }
            Ok(InstallRecord {
                output: format!("removed {} (it did not exist before)", target.display()),
                ..InstallRecord::default()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_failure_keeps_exit_status_and_output() {
        let err = run_command("echo oops; exit 3", None, Duration::from_secs(5))
            .await
            .unwrap_err();
        match err {
            InstallError::Exit { code, output } => {
                assert_eq!(code, Some(3));
                assert_eq!(output, "oops");
            }
            other => panic!("expected an exit error, got {other}"),
        }
    }

    #[tokio::test]
    async fn command_is_killed_at_timeout() {
        let err = run_command("sleep 5", None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, InstallError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn payload_path_is_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("it's here");
        fs::write(&payload, b"x").unwrap();
        let record = run_command("cat {payload}", Some(&payload), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(record.output, "x");
    }

    #[test]
    fn file_replace_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("app.conf");
        let payload = dir.path().join("payload");
        fs::write(&target, b"old").unwrap();
        fs::write(&payload, b"new").unwrap();
        let record = replace_file(&payload, &target, 0o644, &dir.path().join("backup")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        restore_file(&target, &record).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn restore_removes_file_that_was_new() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new.bin");
        let payload = dir.path().join("payload");
        fs::write(&payload, b"new").unwrap();
        let record = replace_file(&payload, &target, 0o755, &dir.path().join("backup")).unwrap();
        assert!(target.exists());
        restore_file(&target, &record).unwrap();
        assert!(!target.exists());
    }
}
