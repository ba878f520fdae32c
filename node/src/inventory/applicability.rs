//! Applicability: from a manifest's `applies_to` and the machine's
//! inventory, whether a patch concerns this machine and is missing.
//!
//! Versions compare by Debian's ordering (epochs, `~` before anything,
//! revisions) through the `debversion` crate. A package fix affects an
//! installed package when `introduced <= installed < fixed`. A patch that a
//! held, applicable patch supersedes is not needed any more.

use std::collections::BTreeMap;

use debversion::Version;
use patchmesh_protocol::inventory::Inventory;
use patchmesh_protocol::manifest::{Applicability, PackageFix};
use patchmesh_protocol::{Manifest, PatchRef};
use serde::Serialize;

/// An installed package that a patch fixes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AffectedPackage {
    /// Package name.
    pub package: String,
    /// Package architecture.
    pub arch: String,
    /// Version installed now.
    pub installed: String,
    /// First fixed version.
    pub fixed: String,
}

/// Outcome of matching one patch against one inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Installed packages are in an affected range, so the patch is missing.
    Missing {
        /// The affected packages.
        affected: Vec<AffectedPackage>,
    },
    /// The patch lists no packages and the OS and architecture match, so
    /// only its `detect` command can tell whether it is installed.
    Applies,
    /// Every listed package that is installed is at or above its fixed
    /// version.
    Fixed,
    /// The OS or architecture differs, or none of the packages is installed.
    NotApplicable {
        /// The condition that failed.
        reason: String,
    },
    /// A held patch that concerns this machine replaces it.
    Superseded {
        /// The replacing patch.
        by: PatchRef,
    },
}

impl Verdict {
    /// Whether the node should install the patch: this is the value for
    /// the rollout engine's `PatchInfo::applies`.
    pub fn needs_install(&self) -> bool {
        matches!(self, Verdict::Missing { .. } | Verdict::Applies)
    }

    /// Returns whether the patch concerns this machine at all, installed or not.
    fn concerns_machine(&self) -> bool {
        matches!(
            self,
            Verdict::Missing { .. } | Verdict::Applies | Verdict::Fixed
        )
    }
}

/// Error for a version that Debian's ordering cannot compare.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplicabilityError {
    /// A version in the manifest is not a Debian version.
    #[error("manifest field \"{field}\": invalid Debian version \"{version}\" ({reason})")]
    ManifestVersion {
        /// Field path, such as `applies_to.packages[0].fixed`.
        field: String,
        /// The version text.
        version: String,
        /// Parser message.
        reason: String,
    },
    /// An installed version is not a Debian version (a `command` adapter
    /// listing RPM or Windows versions).
    #[error("installed package \"{package}\" has invalid Debian version \"{version}\" ({reason})")]
    InstalledVersion {
        /// Package name.
        package: String,
        /// The version text.
        version: String,
        /// Parser message.
        reason: String,
    },
}

fn parse_fix_version(field: String, text: &str) -> Result<Version, ApplicabilityError> {
    text.parse().map_err(
        |e: debversion::ParseError| ApplicabilityError::ManifestVersion {
            field,
            version: text.to_string(),
            reason: e.to_string(),
        },
    )
}

fn matches_any(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|item| item.eq_ignore_ascii_case(value))
}

/// Returns why a patch is for another platform, or `None` when the
/// machine's operating system id and architecture match `applies`. An
/// unknown operating system (`os` is `None`) matches any list.
pub fn platform_mismatch(applies: &Applicability, os: Option<&str>, arch: &str) -> Option<String> {
    if let Some(os) = os {
        if !matches_any(&applies.os, os) {
            return Some(format!(
                "operating system \"{os}\" is not one of {:?}",
                applies.os
            ));
        }
    }
    if !matches_any(&applies.arch, arch) {
        return Some(format!(
            "architecture \"{arch}\" is not one of {:?}",
            applies.arch
        ));
    }
    None
}

/// Decides whether one patch concerns `inventory` and is missing there,
/// ignoring supersession (see [`evaluate_all`]).
pub fn evaluate(
    applies: &Applicability,
    inventory: &Inventory,
) -> Result<Verdict, ApplicabilityError> {
    if let Some(reason) = platform_mismatch(applies, Some(&inventory.os.id), &inventory.os.arch) {
        return Ok(Verdict::NotApplicable { reason });
    }
    if applies.packages.is_empty() {
        return Ok(Verdict::Applies);
    }

    let mut affected = Vec::new();
    let mut any_installed = false;
    for (index, fix) in applies.packages.iter().enumerate() {
        let found = affected_by(index, fix, inventory)?;
        any_installed |= found.installed;
        affected.extend(found.affected);
    }
    if !affected.is_empty() {
        return Ok(Verdict::Missing { affected });
    }
    if any_installed {
        return Ok(Verdict::Fixed);
    }
    let names: Vec<&str> = applies
        .packages
        .iter()
        .map(|f| f.package.as_str())
        .collect();
    Ok(Verdict::NotApplicable {
        reason: format!("none of the packages {names:?} is installed"),
    })
}

struct FixMatch {
    installed: bool,
    affected: Vec<AffectedPackage>,
}

fn affected_by(
    index: usize,
    fix: &PackageFix,
    inventory: &Inventory,
) -> Result<FixMatch, ApplicabilityError> {
    let field = |name: &str| format!("applies_to.packages[{index}].{name}");
    let fixed = parse_fix_version(field("fixed"), &fix.fixed)?;
    let introduced = match &fix.introduced {
        Some(text) => Some(parse_fix_version(field("introduced"), text)?),
        None => None,
    };

    let mut result = FixMatch {
        installed: false,
        affected: Vec::new(),
    };
    for package in inventory.packages_named(&fix.package) {
        result.installed = true;
        let installed: Version = package
            .version
            .parse()
            .map_err(
                |e: debversion::ParseError| ApplicabilityError::InstalledVersion {
                    package: package.name.clone(),
                    version: package.version.clone(),
                    reason: e.to_string(),
                },
            )?;
        let after_introduced = introduced.as_ref().is_none_or(|start| &installed >= start);
        if after_introduced && installed < fixed {
            result.affected.push(AffectedPackage {
                package: package.name.clone(),
                arch: package.arch.clone(),
                installed: package.version.clone(),
                fixed: fix.fixed.clone(),
            });
        }
    }
    Ok(result)
}

/// Decides every held patch against `inventory`, then marks a patch
/// [`Verdict::Superseded`] when another held patch that concerns this
/// machine lists it in `supersedes` and it would otherwise be installed.
pub fn evaluate_all<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
    inventory: &Inventory,
) -> BTreeMap<PatchRef, Result<Verdict, ApplicabilityError>> {
    let manifests: Vec<&Manifest> = manifests.into_iter().collect();
    let mut verdicts: BTreeMap<PatchRef, Result<Verdict, ApplicabilityError>> = manifests
        .iter()
        .map(|m| (m.patch_ref(), evaluate(&m.applies_to, inventory)))
        .collect();

    let mut replaced: BTreeMap<PatchRef, PatchRef> = BTreeMap::new();
    for manifest in &manifests {
        let concerns = matches!(
            verdicts.get(&manifest.patch_ref()),
            Some(Ok(verdict)) if verdict.concerns_machine()
        );
        if !concerns {
            continue;
        }
        for old in &manifest.applies_to.supersedes {
            replaced
                .entry(old.clone())
                .or_insert_with(|| manifest.patch_ref());
        }
    }
    for (old, by) in replaced {
        if let Some(Ok(verdict)) = verdicts.get_mut(&old) {
            if verdict.needs_install() {
                *verdict = Verdict::Superseded { by };
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use patchmesh_protocol::Severity;

    use super::*;
    use crate::inventory::fixtures::{deb_manifest, debian_inventory};

    fn inventory(packages: &[(&str, &str)]) -> Inventory {
        debian_inventory(packages)
    }

    fn fix(package: &str, introduced: Option<&str>, fixed: &str) -> Applicability {
        Applicability {
            packages: vec![PackageFix {
                package: package.into(),
                introduced: introduced.map(str::to_string),
                fixed: fixed.into(),
            }],
            ..Applicability::default()
        }
    }

    fn is_missing(installed: &str, introduced: Option<&str>, fixed: &str) -> bool {
        let verdict = evaluate(
            &fix("demo", introduced, fixed),
            &inventory(&[("demo", installed)]),
        )
        .expect("valid versions");
        verdict.needs_install()
    }

    #[test]
    fn debian_ordering_decides_missing() {
        // (installed, introduced, fixed, missing)
        let cases: &[(&str, Option<&str>, &str, bool)] = &[
            ("1.1-1", None, "1.2-1", true),
            ("1.2-1", None, "1.2-1", false),
            ("1.10-1", None, "1.9-1", false),
            // A tilde sorts before everything, so a pre-release is lower.
            ("1.2~rc1-1", None, "1.2-1", true),
            ("1.2-1", None, "1.2~rc1-1", false),
            // An epoch outranks any upstream version.
            ("1:0.5-1", None, "2.0-1", false),
            ("2.0-1", None, "1:0.5-1", true),
            // Revisions compare after the upstream version.
            ("1.2-1", None, "1.2-1+deb12u1", true),
            ("1.2-1+deb12u1", None, "1.2-1+deb12u1", false),
            ("1.2-1+deb12u2", None, "1.2-1+deb12u1", false),
            ("1.2-1~bpo11+1", None, "1.2-1", true),
            // Below the introduced version the bug does not exist yet.
            ("0.9-1", Some("1.0-1"), "1.2-1", false),
            ("1.0-1", Some("1.0-1"), "1.2-1", true),
            ("1.0~beta-1", Some("1.0-1"), "1.2-1", false),
        ];
        for &(installed, introduced, fixed, missing) in cases {
            assert_eq!(
                is_missing(installed, introduced, fixed),
                missing,
                "installed {installed}, introduced {introduced:?}, fixed {fixed}"
            );
        }
    }

    #[test]
    fn missing_lists_affected_package() {
        let verdict = evaluate(&fix("demo", None, "1.2"), &inventory(&[("demo", "1.1")])).unwrap();
        let Verdict::Missing { affected } = verdict else {
            panic!("expected missing, got {verdict:?}");
        };
        assert_eq!(affected.len(), 1);
        assert_eq!(affected[0].installed, "1.1");
        assert_eq!(affected[0].fixed, "1.2");
    }

    #[test]
    fn package_not_installed_is_not_applicable() {
        let verdict = evaluate(&fix("demo", None, "1.2"), &inventory(&[("bash", "5")])).unwrap();
        assert!(
            matches!(verdict, Verdict::NotApplicable { .. }),
            "{verdict:?}"
        );
    }

    #[test]
    fn fixed_package_is_fixed() {
        let verdict = evaluate(&fix("demo", None, "1.2"), &inventory(&[("demo", "1.3")])).unwrap();
        assert_eq!(verdict, Verdict::Fixed);
    }

    #[test]
    fn os_and_arch_must_match() {
        let machine = inventory(&[("demo", "1.0")]);
        let mut applies = fix("demo", None, "1.2");
        applies.os = vec!["Ubuntu".into()];
        let verdict = evaluate(&applies, &machine).unwrap();
        assert!(
            matches!(verdict, Verdict::NotApplicable { .. }),
            "{verdict:?}"
        );

        applies.os = vec!["Debian".into()];
        applies.arch = vec!["arm64".into()];
        let verdict = evaluate(&applies, &machine).unwrap();
        assert!(
            matches!(verdict, Verdict::NotApplicable { .. }),
            "{verdict:?}"
        );

        applies.arch = vec!["arm64".into(), "amd64".into()];
        assert!(evaluate(&applies, &machine).unwrap().needs_install());
    }

    #[test]
    fn no_packages_listed_applies() {
        let verdict = evaluate(&Applicability::default(), &inventory(&[])).unwrap();
        assert_eq!(verdict, Verdict::Applies);
    }

    #[test]
    fn invalid_manifest_version_names_field() {
        let err = evaluate(&fix("demo", None, "1 2"), &inventory(&[("demo", "1.0")])).unwrap_err();
        assert!(
            err.to_string().contains("applies_to.packages[0].fixed"),
            "{err}"
        );
    }

    #[test]
    fn invalid_installed_version_names_package() {
        let err = evaluate(&fix("demo", None, "1.2"), &inventory(&[("demo", "1 0")])).unwrap_err();
        assert!(err.to_string().contains("\"demo\""), "{err}");
    }

    fn manifest(name: &str, version: &str, applies_to: Applicability) -> Manifest {
        deb_manifest(name, version, Severity::Important, applies_to)
    }

    #[test]
    fn superseded_patch_is_not_needed() {
        let machine = inventory(&[("demo", "1.0")]);
        let old = manifest("demo-fix", "1", fix("demo", None, "1.1"));
        let mut newer_fix = fix("demo", None, "1.2");
        newer_fix.supersedes = vec![old.patch_ref()];
        let new = manifest("demo-fix", "2", newer_fix);
        let verdicts = evaluate_all([&old, &new], &machine);
        assert_eq!(
            verdicts[&old.patch_ref()],
            Ok(Verdict::Superseded {
                by: new.patch_ref()
            })
        );
        assert!(verdicts[&new.patch_ref()].as_ref().unwrap().needs_install());
    }

    #[test]
    fn inapplicable_patch_supersedes_nothing() {
        let machine = inventory(&[("demo", "1.0")]);
        let old = manifest("demo-fix", "1", fix("demo", None, "1.1"));
        let mut other_os = fix("demo", None, "1.2");
        other_os.os = vec!["ubuntu".into()];
        other_os.supersedes = vec![old.patch_ref()];
        let new = manifest("demo-fix", "2", other_os);
        let verdicts = evaluate_all([&old, &new], &machine);
        assert!(verdicts[&old.patch_ref()].as_ref().unwrap().needs_install());
    }
}
