//! Operating system facts: `/etc/os-release`, the kernel release and
//! uptime from `/proc`, the architecture, and whether a reboot is pending.
//! Every path comes from the config, so tests point them at files they
//! write.

use std::fs;
use std::path::Path;

use patchmesh_protocol::inventory::OsInfo;

use super::CollectError;

/// Largest `os-release` or `/proc` file read, in bytes.
const MAX_SMALL_FILE_BYTES: usize = 64 * 1024;

fn read_small(path: &Path) -> Result<String, CollectError> {
    let bytes = fs::read(path).map_err(|source| CollectError::read(path, source))?;
    if bytes.len() > MAX_SMALL_FILE_BYTES {
        return Err(CollectError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_SMALL_FILE_BYTES as u64,
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Fields of an `os-release` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, lowercase.
    pub id: String,
    /// `VERSION_ID`.
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// Parses `os-release` text as os-release(5) describes it: `KEY=value`
/// lines, values optionally in double or single quotes with backslash
/// escapes in double quotes, `#` comments and blank lines.
pub fn parse_os_release(path: &Path, text: &str) -> Result<OsRelease, CollectError> {
    let mut release = OsRelease::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            return Err(CollectError::OsRelease {
                path: path.to_path_buf(),
                line: index + 1,
                reason: format!("expected KEY=value, found {line:?}"),
            });
        };
        let value = unquote(raw).ok_or_else(|| CollectError::OsRelease {
            path: path.to_path_buf(),
            line: index + 1,
            reason: format!("value of {key} has an unclosed quote: {raw:?}"),
        })?;
        match key {
            "ID" => release.id = value.to_lowercase(),
            "VERSION_ID" => release.version_id = value,
            "PRETTY_NAME" => release.pretty_name = value,
            _ => {}
        }
    }

    // Per os-release(5), ID defaults to "linux" and PRETTY_NAME to "Linux".
    if release.id.is_empty() {
        release.id = "linux".into();
    }
    if release.pretty_name.is_empty() {
        release.pretty_name = "Linux".into();
    }
    Ok(release)
}

fn unquote(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut value = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                value.extend(chars.next());
            } else {
                value.push(c);
            }
        }
        return Some(value);
    }
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner.strip_suffix('\'').map(str::to_string);
    }
    Some(raw.to_string())
}

/// Reads the `os-release` file at `path`.
pub fn read_os_release(path: &Path) -> Result<OsRelease, CollectError> {
    parse_os_release(path, &read_small(path)?)
}

/// Reads the kernel release from `PROC/sys/kernel/osrelease`.
pub fn read_kernel(proc_dir: &Path) -> Result<String, CollectError> {
    let path = proc_dir.join("sys/kernel/osrelease");
    Ok(read_small(&path)?.trim().to_string())
}

/// Reads whole seconds since boot from `PROC/uptime`, whose first field is
/// seconds with a fraction.
pub fn read_uptime(proc_dir: &Path) -> Result<u64, CollectError> {
    let path = proc_dir.join("uptime");
    let text = read_small(&path)?;
    let first = text.split_whitespace().next().unwrap_or_default();
    let seconds: f64 = first.parse().map_err(|_| CollectError::Proc {
        path: path.clone(),
        reason: format!("expected seconds such as \"3600.25\", found {first:?}"),
    })?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(CollectError::Proc {
            path,
            reason: format!("uptime {first:?} is out of range"),
        });
    }
    Ok(seconds as u64)
}

/// Returns whether the marker file `path` exists. On Debian and Ubuntu,
/// package scripts create `/var/run/reboot-required` when an update needs
/// a reboot.
pub fn reboot_pending(path: &Path) -> bool {
    path.exists()
}

/// Architecture of this build in Debian's naming, which matches the
/// machine's as long as the agent runs natively.
pub fn debian_arch() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    };
    arch.to_string()
}

/// Collects [`OsInfo`] from the files named, with `arch` overriding the
/// build's architecture when set.
pub fn collect_os(
    os_release: &Path,
    proc_dir: &Path,
    arch: Option<&str>,
) -> Result<OsInfo, CollectError> {
    let release = read_os_release(os_release)?;
    Ok(OsInfo {
        id: release.id,
        version_id: release.version_id,
        pretty_name: release.pretty_name,
        kernel: read_kernel(proc_dir)?,
        arch: arch.map_or_else(debian_arch, str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_comments() {
        let text = "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian'\n\
                    ID=Debian\nVERSION_ID=\"12\"\nHOME_URL=\"https://x/\\\"q\\\"\"\n";
        let release = parse_os_release(Path::new("os-release"), text).expect("parses");
        assert_eq!(release.id, "debian");
        assert_eq!(release.version_id, "12");
        assert_eq!(release.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn os_release_defaults() {
        let release = parse_os_release(Path::new("os-release"), "").expect("parses");
        assert_eq!(release.id, "linux");
        assert_eq!(release.pretty_name, "Linux");
    }

    #[test]
    fn os_release_bad_line_names_file_and_line() {
        let err =
            parse_os_release(Path::new("/etc/os-release"), "ID=debian\ngarbage\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/etc/os-release"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn os_release_unclosed_quote_is_rejected() {
        let err = parse_os_release(Path::new("os-release"), "ID=\"debian\n").unwrap_err();
        assert!(err.to_string().contains("unclosed quote"), "{err}");
    }

    #[test]
    fn proc_files_from_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        fs::write(dir.path().join("sys/kernel/osrelease"), "6.1.0-18-amd64\n").unwrap();
        fs::write(dir.path().join("uptime"), "3600.52 7000.10\n").unwrap();
        assert_eq!(read_kernel(dir.path()).unwrap(), "6.1.0-18-amd64");
        assert_eq!(read_uptime(dir.path()).unwrap(), 3600);

        fs::write(dir.path().join("uptime"), "soon\n").unwrap();
        let err = read_uptime(dir.path()).unwrap_err();
        assert!(err.to_string().contains("\"soon\""), "{err}");
    }

    #[test]
    fn reboot_marker_file() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("reboot-required");
        assert!(!reboot_pending(&marker));
        fs::write(&marker, "").unwrap();
        assert!(reboot_pending(&marker));
    }
}
