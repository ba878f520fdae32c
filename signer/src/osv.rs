//! Advisories in the OSV format (Open Source Vulnerability schema 1.x,
//! <https://ossf.github.io/osv-schema/>), read by `patch add --advisory`.
//!
//! From an advisory the signer takes the CVE ids (`id` and `aliases`) and
//! each affected package's fixed ranges. The `cvss` crate computes the base
//! score from a `CVSS_V3` vector, or from `CVSS_V4` when no v3 vector is
//! given, and the severity follows from that score. The JSON is walked by hand, so
//! that every error names the field path, such as `affected[0].package.name`.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use patchmesh_protocol::manifest::{Applicability, PackageFix};
use patchmesh_protocol::Severity;
use serde_json::{Map, Value};

/// Largest advisory file read, in bytes.
const MAX_ADVISORY_BYTES: u64 = 4 * 1024 * 1024;

/// Fields the signer takes from one advisory.
#[derive(Clone, Debug, PartialEq)]
pub struct Advisory {
    /// The advisory's own id (`DSA-5678-1`, `GHSA-…`, `CVE-…`).
    pub id: String,
    /// The id and every alias, CVE ids included, without repeats.
    pub cves: Vec<String>,
    /// CVSS base score, when the advisory gives a vector.
    pub cvss: Option<f32>,
    /// Severity from the score.
    pub severity: Option<Severity>,
    /// Fixed ranges of affected packages.
    pub packages: Vec<PackageFix>,
    /// Operating system ids from Linux distribution ecosystems
    /// (`Debian:12` gives `debian`).
    pub os: Vec<String>,
    /// Date part of `published`, when given.
    pub published: Option<String>,
    /// Ranges the manifest cannot carry (no fixed version, git commits),
    /// to show the admin.
    pub skipped: Vec<String>,
}

/// Error for an advisory that cannot be used, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("OSV advisory field \"{field}\": {reason}")]
pub struct OsvError {
    /// Field path, such as `affected[0].ranges[1].events`.
    pub field: String,
    /// Problem found.
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> OsvError {
    OsvError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads and parses the advisory file at `path`.
pub fn read(path: &Path) -> anyhow::Result<Advisory> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read advisory \"{}\"", path.display()))?
        .len();
    if size > MAX_ADVISORY_BYTES {
        anyhow::bail!(
            "advisory \"{}\" is {size} bytes, over the limit of {MAX_ADVISORY_BYTES} bytes",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read advisory \"{}\"", path.display()))?;
    parse(&text).with_context(|| format!("invalid advisory \"{}\"", path.display()))
}

fn string<'a>(object: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, OsvError> {
    let field = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    match object.get(key) {
        None | Some(Value::Null) => Err(error(field, "is missing")),
        Some(Value::String(text)) if text.trim().is_empty() => Err(error(field, "is empty")),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(error(field, format!("expected a string, found {other}"))),
    }
}

fn optional_array<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], OsvError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(error(
            format!("{path}{key}"),
            format!("expected an array, found {other}"),
        )),
    }
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, OsvError> {
    value
        .as_object()
        .ok_or_else(|| error(field, format!("expected an object, found {value}")))
}

/// Parses advisory JSON text.
pub fn parse(text: &str) -> Result<Advisory, OsvError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| error("(file)", format!("not JSON: {e}")))?;
    let root = object(&value, "(file)")?;

    // A missing schema_version means 1.0.0 by the schema's own rule.
    if root.get("schema_version").is_some() {
        let version = string(root, "schema_version", "")?;
        let major = version.split('.').next().unwrap_or_default();
        if major != "1" {
            return Err(error(
                "schema_version",
                format!("unsupported version \"{version}\" (this signer reads OSV 1.x)"),
            ));
        }
    }

    let id = string(root, "id", "")?.to_string();
    string(root, "modified", "")?;
    let mut cves = vec![id.clone()];
    for (index, alias) in optional_array(root, "aliases", "")?.iter().enumerate() {
        let alias = alias
            .as_str()
            .ok_or_else(|| error(format!("aliases[{index}]"), "expected a string"))?;
        if !cves.iter().any(|known| known == alias) {
            cves.push(alias.to_string());
        }
    }
    let published = match root.get("published") {
        None | Some(Value::Null) => None,
        Some(_) => Some(string(root, "published", "")?.chars().take(10).collect()),
    };

    let mut scores = Vec::new();
    collect_scores(root, "", &mut scores)?;

    let Some(Value::Array(affected)) = root.get("affected") else {
        return Err(error(
            "affected",
            "is missing or not an array (the advisory must name the affected packages)",
        ));
    };
    let mut advisory = Advisory {
        id,
        cves,
        cvss: None,
        severity: None,
        packages: Vec::new(),
        os: Vec::new(),
        published,
        skipped: Vec::new(),
    };
    for (index, entry) in affected.iter().enumerate() {
        let path = format!("affected[{index}]");
        let entry = object(entry, &path)?;
        collect_scores(entry, &format!("{path}."), &mut scores)?;
        read_affected(entry, &path, &mut advisory)?;
    }
    if advisory.packages.is_empty() {
        return Err(error(
            "affected",
            "names no range with a fixed version, so no patch can fix it",
        ));
    }

    // Prefer CVSS v3 as most advisories give it; v4 only when no v3 exists.
    let best = scores
        .iter()
        .filter(|(kind, _)| kind == "CVSS_V3")
        .chain(scores.iter().filter(|(kind, _)| kind == "CVSS_V4"))
        .map(|(_, score)| *score)
        .fold(None, |max: Option<f32>, score| {
            Some(max.map_or(score, |m| m.max(score)))
        });
    advisory.cvss = best;
    advisory.severity = best.map(Severity::from_cvss);
    Ok(advisory)
}

/// Computes each `severity[]` entry of `object` that has a CVSS vector.
fn collect_scores(
    object: &Map<String, Value>,
    path: &str,
    scores: &mut Vec<(String, f32)>,
) -> Result<(), OsvError> {
    for (index, entry) in optional_array(object, "severity", path)?.iter().enumerate() {
        let field = format!("{path}severity[{index}]");
        let entry = self::object(entry, &field)?;
        let kind = string(entry, "type", &field)?;
        let vector = string(entry, "score", &field)?;
        let score = match kind {
            "CVSS_V3" => cvss::v3::Vector::from_str(vector)
                .map(|v| v.base_score().value())
                .map_err(|e| {
                    error(
                        format!("{field}.score"),
                        format!("invalid CVSS v3 vector \"{vector}\": {e}"),
                    )
                })?,
            "CVSS_V4" => cvss::Cvss::from_str(vector)
                .map(|v| v.score())
                .map_err(|e| {
                    error(
                        format!("{field}.score"),
                        format!("invalid CVSS v4 vector \"{vector}\": {e}"),
                    )
                })?,
            _ => continue,
        };
        scores.push((kind.to_string(), score as f32));
    }
    Ok(())
}

/// Operating system id of a Linux distribution ecosystem such as
/// `Debian:12` or `Ubuntu:22.04:LTS`.
fn ecosystem_os(ecosystem: &str) -> Option<String> {
    let name = ecosystem.split(':').next().unwrap_or_default();
    let os = match name {
        "Debian" => "debian",
        "Ubuntu" => "ubuntu",
        "Alpine" => "alpine",
        "Rocky Linux" => "rocky",
        "AlmaLinux" => "almalinux",
        "Red Hat" => "rhel",
        "SUSE" => "sles",
        "openSUSE" => "opensuse-leap",
        _ => return None,
    };
    Some(os.to_string())
}

fn read_affected(
    entry: &Map<String, Value>,
    path: &str,
    advisory: &mut Advisory,
) -> Result<(), OsvError> {
    let package_path = format!("{path}.package");
    let package = object(
        entry
            .get("package")
            .ok_or_else(|| error(&package_path, "is missing"))?,
        &package_path,
    )?;
    let ecosystem = string(package, "ecosystem", &package_path)?;
    let name = string(package, "name", &package_path)?;
    if let Some(os) = ecosystem_os(ecosystem) {
        if !advisory.os.contains(&os) {
            advisory.os.push(os);
        }
    }

    let ranges = optional_array(entry, "ranges", &format!("{path}."))?;
    for (index, range) in ranges.iter().enumerate() {
        let range_path = format!("{path}.ranges[{index}]");
        let range = object(range, &range_path)?;
        let kind = string(range, "type", &range_path)?;
        if kind == "GIT" {
            advisory
                .skipped
                .push(format!("{range_path}: git commit range of \"{name}\""));
            continue;
        }
        let events_path = format!("{range_path}.events");
        let Some(Value::Array(events)) = range.get("events") else {
            return Err(error(events_path, "is missing or not an array"));
        };
        read_events(events, &events_path, name, advisory)?;
    }
    Ok(())
}

/// Turns `introduced`/`fixed` event pairs into package fixes.
fn read_events(
    events: &[Value],
    path: &str,
    package: &str,
    advisory: &mut Advisory,
) -> Result<(), OsvError> {
    let mut introduced: Option<Option<String>> = None;
    for (index, event) in events.iter().enumerate() {
        let field = format!("{path}[{index}]");
        let event = object(event, &field)?;
        if event.contains_key("introduced") {
            let version = string(event, "introduced", &field)?;
            // "0" means "from the first version".
            introduced = Some((version != "0").then(|| version.to_string()));
        } else if event.contains_key("fixed") {
            let fixed = string(event, "fixed", &field)?;
            let Some(start) = introduced.take() else {
                return Err(error(
                    format!("{field}.fixed"),
                    "comes before any \"introduced\" event",
                ));
            };
            advisory.packages.push(PackageFix {
                package: package.to_string(),
                introduced: start,
                fixed: fixed.to_string(),
            });
        } else if event.contains_key("last_affected") || event.contains_key("limit") {
            if introduced.take().is_some() {
                advisory.skipped.push(format!(
                    "{field}: range of \"{package}\" has no fixed version"
                ));
            }
        } else {
            return Err(error(
                field,
                "expected one of \"introduced\", \"fixed\", \"last_affected\", \"limit\"",
            ));
        }
    }
    if introduced.is_some() {
        advisory.skipped.push(format!(
            "{path}: range of \"{package}\" has no fixed version yet"
        ));
    }
    Ok(())
}

/// Manifest fields from an advisory and the `patch add` flags.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestFields {
    /// Severity.
    pub severity: Severity,
    /// CVSS base score.
    pub cvss: Option<f32>,
    /// CVE and advisory ids.
    pub cves: Vec<String>,
    /// Release date.
    pub released: Option<String>,
    /// Operating systems and package ranges.
    pub applies_to: Applicability,
}

/// Combines `advisory` with the flags: `severity` and `cvss` replace the
/// advisory's values, and `cves` are added to its ids.
pub fn manifest_fields(
    advisory: Option<&Advisory>,
    severity: Option<Severity>,
    cvss: Option<f32>,
    cves: Vec<String>,
) -> anyhow::Result<ManifestFields> {
    let severity = severity
        .or(advisory.and_then(|a| a.severity))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "missing severity: the advisory has no CVSS_V3 or CVSS_V4 vector, so give \
                 --severity"
            )
        })?;
    let mut ids = advisory.map(|a| a.cves.clone()).unwrap_or_default();
    for id in cves {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let applies_to = match advisory {
        Some(advisory) => Applicability {
            os: advisory.os.clone(),
            packages: advisory.packages.clone(),
            ..Applicability::default()
        },
        None => Applicability::default(),
    };
    Ok(ManifestFields {
        severity,
        cvss: cvss.or(advisory.and_then(|a| a.cvss)),
        cves: ids,
        released: advisory.and_then(|a| a.published.clone()),
        applies_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_ADVISORY: &str = r#"{
      "schema_version": "1.6.0",
      "id": "DSA-9999-1",
      "modified": "2026-01-02T00:00:00Z",
      "published": "2026-01-01T12:00:00Z",
      "aliases": ["CVE-2026-0001", "CVE-2026-0002"],
      "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "pm-demo"},
        "ranges": [{"type": "ECOSYSTEM", "events": [
          {"introduced": "0"}, {"fixed": "1.2-1"},
          {"introduced": "2.0-1"}, {"fixed": "2.0-3"},
          {"introduced": "3.0-1"}
        ]}, {"type": "GIT", "events": [{"introduced": "abc"}, {"fixed": "def"}]}]
      }]
    }"#;

    #[test]
    fn debian_advisory_fills_manifest_fields() {
        let advisory = parse(DEBIAN_ADVISORY).expect("parses");
        assert_eq!(advisory.id, "DSA-9999-1");
        assert_eq!(
            advisory.cves,
            vec!["DSA-9999-1", "CVE-2026-0001", "CVE-2026-0002"]
        );
        assert_eq!(advisory.cvss, Some(9.8));
        assert_eq!(advisory.severity, Some(Severity::Critical));
        assert_eq!(advisory.os, vec!["debian"]);
        assert_eq!(advisory.published.as_deref(), Some("2026-01-01"));
        assert_eq!(
            advisory.packages,
            vec![
                PackageFix {
                    package: "pm-demo".into(),
                    introduced: None,
                    fixed: "1.2-1".into()
                },
                PackageFix {
                    package: "pm-demo".into(),
                    introduced: Some("2.0-1".into()),
                    fixed: "2.0-3".into()
                },
            ]
        );
        assert_eq!(advisory.skipped.len(), 2, "{:?}", advisory.skipped);
    }

    #[test]
    fn cvss_vectors_give_base_scores() {
        // (vector, base score from the CVSS v3.1 calculator)
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N", 3.7),
        ];
        for (vector, expected) in cases {
            let text =
                DEBIAN_ADVISORY.replace("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", vector);
            let advisory = parse(&text).expect("parses");
            assert_eq!(advisory.cvss, Some(expected), "{vector}");
        }
    }

    #[test]
    fn unknown_schema_major_is_rejected() {
        let text = DEBIAN_ADVISORY.replace("\"1.6.0\"", "\"2.0.0\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "schema_version");
        assert!(err.to_string().contains("\"2.0.0\""), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let cases = [
            ("\"id\": \"DSA-9999-1\",", "id"),
            ("\"modified\": \"2026-01-02T00:00:00Z\",", "modified"),
            ("\"name\": \"pm-demo\"", "affected[0].package.name"),
        ];
        for (removed, field) in cases {
            let text = DEBIAN_ADVISORY.replace(removed, "");
            let text = text.replace("\"Debian:12\", }", "\"Debian:12\"}");
            let err = parse(&text).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn invalid_vector_names_field() {
        let text = DEBIAN_ADVISORY.replace("AV:N/AC:L/PR:N/UI:N", "AV:Q");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "severity[0].score");
    }

    #[test]
    fn advisory_without_fixed_version_is_rejected() {
        let text = r#"{"id":"X-1","modified":"2026-01-01T00:00:00Z","affected":[
            {"package":{"ecosystem":"Debian","name":"a"},
             "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#;
        let err = parse(text).unwrap_err();
        assert_eq!(err.field, "affected");
    }

    #[test]
    fn flags_override_advisory() {
        let advisory = parse(DEBIAN_ADVISORY).expect("parses");
        let fields = manifest_fields(
            Some(&advisory),
            Some(Severity::Low),
            None,
            vec!["CVE-2026-0002".into(), "CVE-2026-0003".into()],
        )
        .expect("combines");
        assert_eq!(fields.severity, Severity::Low);
        assert_eq!(fields.cvss, Some(9.8));
        assert_eq!(fields.cves.len(), 4);
        assert_eq!(fields.applies_to.os, vec!["debian"]);
        assert_eq!(fields.applies_to.packages.len(), 2);

        let err = manifest_fields(None, None, None, vec![]).unwrap_err();
        assert!(err.to_string().contains("--severity"), "{err}");
    }

    #[test]
    fn not_json_is_rejected() {
        let err = parse("<html>").unwrap_err();
        assert!(err.reason.contains("not JSON"), "{err}");
    }
}
