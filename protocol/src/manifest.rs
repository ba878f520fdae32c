//! Patch manifests: what a patch is, how its payload is chunked and hashed,
//! how to install, detect and roll it back, and which machines it applies to.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::envelope::{Body, Kind};
use crate::hash::Hash;
use crate::limits;
use crate::severity::Severity;

/// A patch name and version, written `name@version`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatchRef {
    /// Patch name.
    pub name: String,
    /// Patch version.
    pub version: String,
}

impl fmt::Display for PatchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Error for a patch reference that is not `name@version`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid patch reference {0:?} (expected \"name@version\" with letters, digits, '.', '-', '_', '+', '~' or ':', at most 128 characters each)")]
pub struct ParsePatchRefError(pub String);

/// Whether `text` is a safe name or version: non-empty, bounded, and free of
/// path separators so it can never leave a folder it is joined to.
pub fn is_safe_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= limits::MAX_NAME_LEN
        && text != "."
        && text != ".."
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~' | ':'))
}

impl FromStr for PatchRef {
    type Err = ParsePatchRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, version) = text
            .split_once('@')
            .ok_or_else(|| ParsePatchRefError(text.to_string()))?;
        if !is_safe_name(name) || !is_safe_name(version) {
            return Err(ParsePatchRefError(text.to_string()));
        }
        Ok(PatchRef {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

impl TryFrom<String> for PatchRef {
    type Error = ParsePatchRefError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<PatchRef> for String {
    fn from(patch: PatchRef) -> String {
        patch.to_string()
    }
}

/// How a node installs a patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Installer {
    /// Runs a shell command; `{payload}` stands for the assembled file's path.
    Command {
        /// Install command.
        install: String,
        /// Rollback command, if the patch can be rolled back.
        rollback: Option<String>,
        /// Seconds before the command is killed and counted as failed.
        timeout_secs: u64,
    },
    /// Replaces one file atomically, keeping the old one for rollback.
    File {
        /// Absolute path of the file to replace.
        path: String,
        /// Unix permission bits of the new file.
        mode: u32,
    },
    /// Installs a Debian package with dpkg.
    Deb {
        /// Package name inside the `.deb`.
        package: String,
    },
}

/// A package version a patch fixes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFix {
    /// Package name as the platform's package manager knows it.
    pub package: String,
    /// Versions at or above this are affected; `None` means from the first.
    pub introduced: Option<String>,
    /// First version that is fixed; versions below it are affected.
    pub fixed: String,
}

/// Which machines a patch applies to. Empty lists mean "any".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicability {
    /// Operating system ids, as in `/etc/os-release` `ID` (`debian`, `ubuntu`).
    pub os: Vec<String>,
    /// Architectures (`amd64`, `arm64`).
    pub arch: Vec<String>,
    /// Packages and versions the patch fixes.
    pub packages: Vec<PackageFix>,
    /// Earlier patches this one replaces.
    pub supersedes: Vec<PatchRef>,
}

/// Body of a signed patch manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Patch name.
    pub name: String,
    /// Patch version.
    pub version: String,
    /// Version of this signed manifest; renewing expiry raises it.
    pub revision: u64,
    /// When the manifest was signed.
    pub issued: Timestamp,
    /// After this time nodes no longer install the patch.
    pub expires: Timestamp,
    /// Who made the patch.
    pub vendor: String,
    /// How urgent the patch is.
    pub severity: Severity,
    /// CVSS base score, when known.
    pub cvss: Option<f32>,
    /// CVE and advisory ids the patch addresses.
    pub cves: Vec<String>,
    /// Vendor release date (RFC 3339 date), when known.
    pub released: Option<String>,
    /// Size of the assembled payload in bytes.
    pub size: u64,
    /// Size of every chunk but the last, in bytes.
    pub chunk_size: u32,
    /// BLAKE3 of each chunk in payload order.
    pub chunks: Vec<Hash>,
    /// BLAKE3 of the whole assembled payload.
    pub payload_hash: Hash,
    /// How to install it.
    pub installer: Installer,
    /// Shell command that exits 0 when the patch is already installed.
    pub detect: Option<String>,
    /// Whether the machine must reboot after installing.
    pub reboot_required: bool,
    /// Which machines it applies to.
    pub applies_to: Applicability,
}

/// Why a manifest's content is inconsistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Name or version is not a safe name.
    #[error("manifest name or version {0:?} is invalid (letters, digits, '.', '-', '_', '+', '~', ':' only)")]
    BadName(String),
    /// Chunk size outside the allowed range.
    #[error("manifest {patch}: chunk size {size} bytes is outside {min} to {max} bytes")]
    ChunkSize {
        /// Patch reference.
        patch: String,
        /// Declared size.
        size: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// Payload larger than allowed.
    #[error("manifest {patch}: payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Patch reference.
        patch: String,
        /// Declared size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// Chunk list length does not match size and chunk size.
    #[error("manifest {patch}: lists {listed} chunks, but {size} bytes in {chunk_size}-byte chunks needs {expected}")]
    ChunkCount {
        /// Patch reference.
        patch: String,
        /// Chunks listed.
        listed: usize,
        /// Chunks expected.
        expected: u64,
        /// Payload size.
        size: u64,
        /// Chunk size.
        chunk_size: u32,
    },
    /// A file installer whose path is not absolute.
    #[error("manifest {patch}: file installer path {path:?} is not absolute")]
    RelativePath {
        /// Patch reference.
        patch: String,
        /// The path.
        path: String,
    },
}

impl Manifest {
    /// `name@version` of the patch.
    pub fn patch_ref(&self) -> PatchRef {
        PatchRef {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    /// Number of chunks a payload of `size` bytes has in `chunk_size` pieces.
    pub fn chunk_count_for(size: u64, chunk_size: u32) -> u64 {
        size.div_ceil(u64::from(chunk_size.max(1)))
    }

    /// Length in bytes of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = index as u64 * u64::from(self.chunk_size);
        self.size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// Checks internal consistency: names, sizes and chunk count.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let patch = format!("{}@{}", self.name, self.version);
        for text in [&self.name, &self.version] {
            if !is_safe_name(text) {
                return Err(ManifestError::BadName(text.clone()));
            }
        }
        if !(limits::MIN_CHUNK_BYTES..=limits::MAX_CHUNK_BYTES).contains(&self.chunk_size) {
            return Err(ManifestError::ChunkSize {
                patch,
                size: self.chunk_size,
                min: limits::MIN_CHUNK_BYTES,
                max: limits::MAX_CHUNK_BYTES,
            });
        }
        if self.size > limits::MAX_PATCH_BYTES {
            return Err(ManifestError::TooLarge {
                patch,
                size: self.size,
                limit: limits::MAX_PATCH_BYTES,
            });
        }
        let expected = Self::chunk_count_for(self.size, self.chunk_size);
        if self.chunks.len() as u64 != expected || self.chunks.len() > limits::MAX_CHUNKS {
            return Err(ManifestError::ChunkCount {
                patch,
                listed: self.chunks.len(),
                expected,
                size: self.size,
                chunk_size: self.chunk_size,
            });
        }
        if let Installer::File { path, .. } = &self.installer {
            if !path.starts_with('/') {
                return Err(ManifestError::RelativePath {
                    patch,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Body for Manifest {
    const KIND: Kind = Kind::Manifest;

    fn slot(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    fn revision(&self) -> u64 {
        self.revision
    }

    fn issued(&self) -> Timestamp {
        self.issued
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_ref_parses_name_and_version() {
        let patch: PatchRef = "openssl@3.0.13-1".parse().expect("valid");
        assert_eq!(patch.name, "openssl");
        assert_eq!(patch.version, "3.0.13-1");
    }

    #[test]
    fn patch_ref_rejects_path_traversal() {
        assert!("../etc@1".parse::<PatchRef>().is_err());
        assert!("a@..".parse::<PatchRef>().is_err());
        assert!("a/b@1".parse::<PatchRef>().is_err());
        assert!("noversion".parse::<PatchRef>().is_err());
    }

    #[test]
    fn chunk_len_of_last_chunk() {
        let manifest = Manifest {
            name: "p".into(),
            version: "1".into(),
            revision: 1,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::MAX,
            vendor: String::new(),
            severity: Severity::Low,
            cvss: None,
            cves: vec![],
            released: None,
            size: 2 * 65_536 + 10,
            chunk_size: 65_536,
            chunks: vec![Hash([0; 32]); 3],
            payload_hash: Hash([0; 32]),
            installer: Installer::File {
                path: "/tmp/x".into(),
                mode: 0o644,
            },
            detect: None,
            reboot_required: false,
            applies_to: Applicability::default(),
        };
        assert_eq!(manifest.validate(), Ok(()));
        assert_eq!(manifest.chunk_len(0), 65_536);
        assert_eq!(manifest.chunk_len(2), 10);
        assert_eq!(manifest.chunk_len(3), 0);
    }
}
