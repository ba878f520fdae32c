//! The `deb` installer: installs a patch's `.deb` with dpkg, into the
//! machine's root or a private one (`dpkg --root` with its own admin
//! folder), records the version it replaced and rolls back by reinstalling
//! the previous package.
//!
//! Rollback needs the previous `.deb`, and dpkg keeps none. The installer
//! therefore keeps a copy of every package it installs in `keep_dir`, named
//! `NAME_VERSION_ARCH.deb`. Before an install it looks for the package of
//! the version it is about to replace, first in `keep_dir` and then in the
//! `archives` folders (apt's `/var/cache/apt/archives` by default), and
//! copies it into `keep_dir`. A previous version found nowhere means no
//! rollback: the install goes ahead unless `require_previous` is set, and
//! a later rollback fails with [`DebError::NoPrevious`]. A package that was
//! not installed before is rolled back with `dpkg --remove`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::install::tail;
use crate::inventory::dpkg::read_status;
use crate::inventory::CollectError;

/// The `[deb]` table of the node config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebConfig {
    /// Root folder packages are installed into; empty means `/`.
    pub root: PathBuf,
    /// dpkg's admin folder; empty means `ROOT/var/lib/dpkg`.
    pub admin_dir: PathBuf,
    /// Folder of kept packages; empty means `DATA/debs` in the node's data
    /// folder.
    pub keep_dir: PathBuf,
    /// Folders searched for the package of the version being replaced.
    pub archives: Vec<PathBuf>,
    /// Whether an install is rejected when the previous package cannot be
    /// found, so that every install can be rolled back.
    pub require_previous: bool,
    /// Seconds before dpkg is killed and the install counted as failed.
    pub timeout_secs: u64,
}

impl Default for DebConfig {
    fn default() -> Self {
        DebConfig {
            root: PathBuf::new(),
            admin_dir: PathBuf::new(),
            keep_dir: PathBuf::new(),
            archives: vec!["/var/cache/apt/archives".into()],
            require_previous: false,
            timeout_secs: 1800,
        }
    }
}

/// Record of an install or rollback, kept for a later rollback.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebRecord {
    /// Package name.
    pub package: String,
    /// Package architecture.
    pub arch: String,
    /// Version installed by this step.
    pub version: String,
    /// Version installed before, if the package was installed.
    pub previous_version: Option<String>,
    /// Kept `.deb` of the previous version, if one was found.
    pub previous_deb: Option<PathBuf>,
    /// Last bytes of dpkg's output.
    pub output: String,
}

/// Error from the `deb` installer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// dpkg or dpkg-deb could not be started.
    #[error("failed to start {program}: {source} (is dpkg installed?)")]
    Start {
        /// Program name.
        program: &'static str,
        /// I/O error.
        source: std::io::Error,
    },
    /// dpkg exited non-zero.
    #[error("{program} exited with status {code:?}: {output}")]
    Exit {
        /// Program name.
        program: &'static str,
        /// Exit status, `None` when killed by a signal.
        code: Option<i32>,
        /// Last bytes of output.
        output: String,
    },
    /// dpkg ran past its timeout and was killed.
    #[error("{program} timed out after {timeout:?} and was killed")]
    Timeout {
        /// Program name.
        program: &'static str,
        /// Timeout.
        timeout: Duration,
    },
    /// The `.deb` contains another package than the manifest names.
    #[error("\"{path}\" contains package \"{found}\", but the manifest names \"{expected}\"")]
    WrongPackage {
        /// The `.deb`.
        path: PathBuf,
        /// Package name in the manifest.
        expected: String,
        /// Package name in the `.deb`.
        found: String,
    },
    /// The previous version's package was not found.
    #[error(
        "no package file for \"{package}\" version \"{version}\" in {searched:?}, so it cannot \
         be reinstalled (copy its .deb into one of these folders)"
    )]
    NoPrevious {
        /// Package name.
        package: String,
        /// Version looked for.
        version: String,
        /// Folders searched.
        searched: Vec<PathBuf>,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// dpkg's status file could not be read.
    #[error(transparent)]
    Status(#[from] CollectError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DebError + '_ {
    move |source| DebError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Package name, version and architecture of a `.deb` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebFields {
    /// `Package`.
    pub package: String,
    /// `Version`.
    pub version: String,
    /// `Architecture`.
    pub arch: String,
}

impl DebFields {
    /// File name of the kept copy. An epoch's `:` becomes `%3a`, as in
    /// apt's archive folder.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// Runs `program` with `args`, killing it after `timeout`, and returns its
/// combined output.
async fn run(
    program: &'static str,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<String, DebError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .env("PATH", search_path());
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => return Err(DebError::Timeout { program, timeout }),
        Ok(Err(source)) => return Err(DebError::Start { program, source }),
        Ok(Ok(output)) => output,
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail = tail(&text);
    if !output.status.success() {
        return Err(DebError::Exit {
            program,
            code: output.status.code(),
            output: tail,
        });
    }
    Ok(tail)
}

/// `PATH` with the sbin folders added, because dpkg refuses to run when
/// `ldconfig` and `start-stop-daemon` are not on it.
fn search_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for folder in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !path.split(':').any(|entry| entry == folder) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(folder);
        }
    }
    path
}

/// Reads package name, version and architecture from a `.deb` with
/// `dpkg-deb --field`.
pub async fn read_fields(deb: &Path) -> Result<DebFields, DebError> {
    let text = run(
        "dpkg-deb",
        &[
            "--field".as_ref(),
            deb.as_os_str(),
            "Package".as_ref(),
            "Version".as_ref(),
            "Architecture".as_ref(),
        ],
        Duration::from_secs(60),
    )
    .await?;
    let mut fields = DebFields {
        package: String::new(),
        version: String::new(),
        arch: String::new(),
    };
    for line in text.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            match name.trim() {
                "Package" => fields.package = value,
                "Version" => fields.version = value,
                "Architecture" => fields.arch = value,
                _ => {}
            }
        }
    }
    Ok(fields)
}

/// dpkg in one root with one admin folder.
#[derive(Clone, Debug)]
pub struct Dpkg {
    root: Option<PathBuf>,
    admin_dir: PathBuf,
    keep_dir: PathBuf,
    archives: Vec<PathBuf>,
    require_previous: bool,
    timeout: Duration,
}

impl Dpkg {
    /// Creates an installer from the config; `data_dir` is the node's data
    /// folder, which contains the kept packages unless `keep_dir` is set.
    pub fn new(config: &DebConfig, data_dir: &Path) -> Self {
        let root = (!config.root.as_os_str().is_empty()).then(|| config.root.clone());
        let admin_dir = if config.admin_dir.as_os_str().is_empty() {
            root.as_deref()
                .unwrap_or(Path::new("/"))
                .join("var/lib/dpkg")
        } else {
            config.admin_dir.clone()
        };
        let keep_dir = if config.keep_dir.as_os_str().is_empty() {
            data_dir.join("debs")
        } else {
            config.keep_dir.clone()
        };
        Dpkg {
            root,
            admin_dir,
            keep_dir,
            archives: config.archives.clone(),
            require_previous: config.require_previous,
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
        }
    }

    /// Creates an empty dpkg database in the admin folder, for a private
    /// root; an existing one is left as it is.
    pub fn init_admin_dir(&self) -> Result<(), DebError> {
        for folder in ["info", "updates", "triggers"] {
            let path = self.admin_dir.join(folder);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let status = self.status_file();
        if !status.exists() {
            fs::write(&status, b"").map_err(io_error(&status))?;
        }
        Ok(())
    }

    /// dpkg's status file.
    pub fn status_file(&self) -> PathBuf {
        self.admin_dir.join("status")
    }

    /// Returns the version of `package` with architecture `arch` (or
    /// `all`) installed now, if any.
    pub fn installed_version(&self, package: &str, arch: &str) -> Result<Option<String>, DebError> {
        let packages = read_status(&self.status_file())?;
        Ok(packages
            .into_iter()
            .find(|p| p.name == package && (p.arch == arch || p.arch == "all" || arch == "all"))
            .map(|p| p.version))
    }

    /// Arguments every dpkg call takes: root, admin folder, and a log file
    /// in the admin folder, so a private root never writes to the machine's
    /// `/var/log/dpkg.log`.
    fn base_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(root) = &self.root {
            args.push(format!("--root={}", root.display()).into());
            // Without this dpkg rejects a non-root user before it looks at
            // a private root.
            args.push("--force-not-root".into());
        }
        args.push(format!("--admindir={}", self.admin_dir.display()).into());
        args.push(
            format!(
                "--log={}",
                self.admin_dir.join("patchmesh-dpkg.log").display()
            )
            .into(),
        );
        args
    }

    async fn dpkg(&self, extra: &[&std::ffi::OsStr]) -> Result<String, DebError> {
        let base = self.base_args();
        let mut args: Vec<&std::ffi::OsStr> = base.iter().map(|a| a.as_os_str()).collect();
        args.extend_from_slice(extra);
        run("dpkg", &args, self.timeout).await
    }

    /// Copies `deb` into the keep folder as `fields.file_name()` and returns
    /// the kept path.
    fn keep(&self, deb: &Path, fields: &DebFields) -> Result<PathBuf, DebError> {
        fs::create_dir_all(&self.keep_dir).map_err(io_error(&self.keep_dir))?;
        let kept = self.keep_dir.join(fields.file_name());
        if kept == deb {
            return Ok(kept);
        }
        let partial = kept.with_extension("deb.partial");
        fs::copy(deb, &partial).map_err(io_error(&partial))?;
        fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&partial))?;
        fs::rename(&partial, &kept).map_err(io_error(&kept))?;
        Ok(kept)
    }

    /// Looks for the `.deb` of `package` at `version` in the keep folder,
    /// then in the archive folders, checking each candidate's fields.
    async fn find_previous(
        &self,
        package: &str,
        version: &str,
        arch: &str,
    ) -> Result<Option<(PathBuf, DebFields)>, DebError> {
        let folders = std::iter::once(&self.keep_dir).chain(&self.archives);
        for folder in folders {
            for candidate_arch in [arch, "all"] {
                let expected = DebFields {
                    package: package.to_string(),
                    version: version.to_string(),
                    arch: candidate_arch.to_string(),
                };
                let path = folder.join(expected.file_name());
                if !path.is_file() {
                    continue;
                }
                match read_fields(&path).await {
                    Ok(fields) if fields == expected => return Ok(Some((path, fields))),
                    Ok(fields) => {
                        tracing::warn!(path = %path.display(), ?fields, "kept package does not match its file name; ignored")
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "kept package is unreadable; ignored")
                    }
                }
            }
        }
        Ok(None)
    }

    fn searched(&self) -> Vec<PathBuf> {
        std::iter::once(self.keep_dir.clone())
            .chain(self.archives.iter().cloned())
            .collect()
    }

    /// Installs `deb`, which must contain `package`. Records the version it
    /// replaces and keeps the previous package for [`Dpkg::rollback`].
    pub async fn install(&self, package: &str, deb: &Path) -> Result<DebRecord, DebError> {
        let fields = read_fields(deb).await?;
        if fields.package != package {
            return Err(DebError::WrongPackage {
                path: deb.to_path_buf(),
                expected: package.to_string(),
                found: fields.package,
            });
        }

        // Find and keep the package being replaced before dpkg overwrites it.
        let previous_version = self.installed_version(package, &fields.arch)?;
        let mut previous_deb = None;
        if let Some(version) = &previous_version {
            match self.find_previous(package, version, &fields.arch).await? {
                Some((path, found)) => previous_deb = Some(self.keep(&path, &found)?),
                None if self.require_previous => {
                    return Err(DebError::NoPrevious {
                        package: package.to_string(),
                        version: version.clone(),
                        searched: self.searched(),
                    })
                }
                None => {
                    tracing::warn!(package, version = %version, "previous package not found; this install cannot be rolled back")
                }
            }
        }

        // Keep the new package too, so a later patch can roll back to it.
        let kept = self.keep(deb, &fields)?;
        let output = self
            .dpkg(&[
                "--force-downgrade".as_ref(),
                "-i".as_ref(),
                kept.as_os_str(),
            ])
            .await?;
        Ok(DebRecord {
            package: fields.package,
            arch: fields.arch,
            version: fields.version,
            previous_version,
            previous_deb,
            output,
        })
    }

    /// Undoes the install `record` describes: reinstalls the previous
    /// package, or removes the package when there was none before.
    pub async fn rollback(&self, record: &DebRecord) -> Result<DebRecord, DebError> {
        let output = match (&record.previous_version, &record.previous_deb) {
            (None, _) => {
                self.dpkg(&["--remove".as_ref(), record.package.as_ref()])
                    .await?
            }
            (Some(_), Some(previous)) => {
                self.dpkg(&[
                    "--force-downgrade".as_ref(),
                    "-i".as_ref(),
                    previous.as_os_str(),
                ])
                .await?
            }
            (Some(version), None) => {
                // The package may have been placed since the install.
                match self
                    .find_previous(&record.package, version, &record.arch)
                    .await?
                {
                    Some((path, _)) => {
                        self.dpkg(&[
                            "--force-downgrade".as_ref(),
                            "-i".as_ref(),
                            path.as_os_str(),
                        ])
                        .await?
                    }
                    None => {
                        return Err(DebError::NoPrevious {
                            package: record.package.clone(),
                            version: version.clone(),
                            searched: self.searched(),
                        })
                    }
                }
            }
        };
        Ok(DebRecord {
            package: record.package.clone(),
            arch: record.arch.clone(),
            version: record.previous_version.clone().unwrap_or_default(),
            previous_version: Some(record.version.clone()),
            previous_deb: None,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_file_name_encodes_epoch() {
        let fields = DebFields {
            package: "zlib1g".into(),
            version: "1:1.2.13.dfsg-1".into(),
            arch: "amd64".into(),
        };
        assert_eq!(fields.file_name(), "zlib1g_1%3a1.2.13.dfsg-1_amd64.deb");
    }

    #[test]
    fn search_path_adds_sbin() {
        let path = search_path();
        assert!(path.split(':').any(|p| p == "/usr/sbin"), "{path}");
    }

    #[test]
    fn default_admin_dir_is_under_root() {
        let config = DebConfig {
            root: "/srv/root".into(),
            ..DebConfig::default()
        };
        let dpkg = Dpkg::new(&config, Path::new("/data"));
        assert_eq!(
            dpkg.status_file(),
            Path::new("/srv/root/var/lib/dpkg/status")
        );
        assert_eq!(dpkg.keep_dir, Path::new("/data/debs"));
    }
}
