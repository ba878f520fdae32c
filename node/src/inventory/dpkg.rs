//! The `dpkg` adapter: lists installed packages from dpkg's status file
//! (`/var/lib/dpkg/status`, or a private root's copy in tests).
//!
//! The file is a series of stanzas separated by blank lines. Each stanza
//! has `Field: value` lines, and lines that start with a space or tab
//! continue the field before them. A package counts as installed when the
//! third word of its `Status` field is `installed`, so `hold ok installed`
//! counts and `deinstall ok config-files` does not.

use std::fs;
use std::path::Path;

use patchmesh_protocol::inventory::Package;

use super::CollectError;

/// Largest status file read, in bytes. A Debian system with 5000 packages
/// has a status file of about 10 MiB.
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and parses the status file at `path`.
pub fn read_status(path: &Path) -> Result<Vec<Package>, CollectError> {
    let size = fs::metadata(path)
        .map_err(|source| CollectError::read(path, source))?
        .len();
    if size > MAX_STATUS_BYTES {
        return Err(CollectError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_STATUS_BYTES,
        });
    }
    let bytes = fs::read(path).map_err(|source| CollectError::read(path, source))?;
    let text = String::from_utf8_lossy(&bytes);
    parse_status(path, &text)
}

/// One stanza's fields that the adapter uses, with the line of each.
#[derive(Default)]
struct Stanza<'a> {
    start: usize,
    package: Option<&'a str>,
    status: Option<&'a str>,
    version: Option<(&'a str, usize)>,
    arch: Option<&'a str>,
}

/// Parses the text of a status file; `path` only names it in errors.
pub fn parse_status(path: &Path, text: &str) -> Result<Vec<Package>, CollectError> {
    let mut packages = Vec::new();
    let mut stanza: Option<Stanza> = None;
    let syntax = |line: usize, reason: String| CollectError::StatusSyntax {
        path: path.to_path_buf(),
        line,
        reason,
    };

    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            if let Some(done) = stanza.take() {
                finish_stanza(path, done, &mut packages)?;
            }
            continue;
        }

        // A continuation line belongs to a multi-line field such as
        // `Description` or `Conffiles`, none of which the adapter reads.
        if line.starts_with([' ', '\t']) {
            if stanza.is_none() {
                return Err(syntax(
                    number,
                    "continuation line outside a stanza (it starts with a space but no field \
                     comes before it)"
                        .into(),
                ));
            }
            continue;
        }

        let Some((field, value)) = line.split_once(':') else {
            return Err(syntax(
                number,
                format!("expected \"Field: value\", found {line:?}"),
            ));
        };
        if field.is_empty() || field.contains(char::is_whitespace) {
            return Err(syntax(number, format!("invalid field name {field:?}")));
        }
        let current = stanza.get_or_insert_with(|| Stanza {
            start: number,
            ..Stanza::default()
        });
        let value = value.trim();
        match field {
            "Package" => current.package = Some(value),
            "Status" => current.status = Some(value),
            "Version" => current.version = Some((value, number)),
            "Architecture" => current.arch = Some(value),
            _ => {}
        }
    }
    if let Some(done) = stanza.take() {
        finish_stanza(path, done, &mut packages)?;
    }
    Ok(packages)
}

fn finish_stanza(
    path: &Path,
    stanza: Stanza,
    packages: &mut Vec<Package>,
) -> Result<(), CollectError> {
    let Some(name) = stanza.package else {
        return Err(CollectError::StatusSyntax {
            path: path.to_path_buf(),
            line: stanza.start,
            reason: "stanza has no \"Package\" field".into(),
        });
    };
    let installed = stanza
        .status
        .and_then(|status| status.split_whitespace().nth(2))
        == Some("installed");
    if !installed {
        return Ok(());
    }
    let Some((version, line)) = stanza.version else {
        return Err(CollectError::StatusSyntax {
            path: path.to_path_buf(),
            line: stanza.start,
            reason: format!("installed package {name:?} has no \"Version\" field"),
        });
    };
    if let Err(error) = version.parse::<debversion::Version>() {
        return Err(CollectError::InvalidVersion {
            source_name: path.display().to_string(),
            line,
            package: name.to_string(),
            version: version.to_string(),
            reason: error.to_string(),
        });
    }
    packages.push(Package {
        name: name.to_string(),
        version: version.to_string(),
        arch: stanza.arch.unwrap_or_default().to_string(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 It is the default shell.

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: zlib1g
Status: hold ok installed
Architecture: amd64
Multi-Arch: same
Version: 1:1.2.13.dfsg-1

Package: zlib1g
Status: install ok installed
Architecture: i386
Version: 1:1.2.13.dfsg-1
";

    #[test]
    fn status_lists_installed_packages() {
        let packages = parse_status(Path::new("status"), STATUS).expect("parses");
        let names: Vec<(&str, &str, &str)> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("bash", "5.2.15-2+b2", "amd64"),
                ("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
                ("zlib1g", "1:1.2.13.dfsg-1", "i386"),
            ]
        );
    }

    #[test]
    fn status_line_without_colon_names_line() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1\nnot a field\n";
        let err = parse_status(Path::new("/x/status"), text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/x/status"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn continuation_line_first_is_rejected() {
        let err = parse_status(Path::new("status"), " stray\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn stanza_without_package_names_its_start() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1\n\n\nVersion: 2\n";
        let err = parse_status(Path::new("status"), text).unwrap_err();
        assert!(err.to_string().contains("line 6"), "{err}");
        assert!(err.to_string().contains("\"Package\""), "{err}");
    }

    #[test]
    fn invalid_version_names_package_and_line() {
        let text = "Package: broken\nStatus: install ok installed\nVersion: 1.0 beta\n";
        let err = parse_status(Path::new("status"), text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"broken\""), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("\"1.0 beta\""), "{message}");
    }

    #[test]
    fn installed_package_without_version_is_rejected() {
        let text = "Package: a\nStatus: install ok installed\n";
        let err = parse_status(Path::new("status"), text).unwrap_err();
        assert!(err.to_string().contains("\"Version\""), "{err}");
    }

    #[test]
    fn missing_status_file_names_path() {
        let err = read_status(Path::new("/nonexistent/patchmesh/status")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/patchmesh/status"),
            "{err}"
        );
    }

    #[test]
    fn machine_status_file_parses() {
        // The test machine's own database, read only; skipped where there
        // is none.
        let path = Path::new("/var/lib/dpkg/status");
        if !path.exists() {
            eprintln!("skipped: no {}", path.display());
            return;
        }
        let packages = read_status(path).expect("the machine's status file parses");
        assert!(!packages.is_empty());
    }
}
