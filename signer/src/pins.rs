//! Manifest revision pins for `policy sign`.
//!
//! A node acts on a policy only with a manifest at or above the revision the
//! policy pins for that patch (`content.manifest_revisions`). Without a pin,
//! a peer could serve a new policy together with a superseded manifest that
//! is still validly signed. `policy sign` therefore pins every patch the
//! policy selects to the newest manifest revision in the admin's patch
//! folders, so the pin reflects what the admin had in front of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patchmesh_protocol::{Kind, Manifest, PatchRef, Policy};

use crate::files;

/// Newest manifest found for one patch.
#[derive(Clone, Debug)]
pub struct FoundManifest {
    /// The manifest body, not verified: the signer trusts its own folders.
    pub manifest: Manifest,
    /// File it was read from.
    pub path: PathBuf,
}

/// Manifests found in patch folders, by patch, plus files that end in
/// `.manifest` but could not be read as one, with the reason.
#[derive(Debug, Default)]
pub struct Found {
    /// Newest revision per patch.
    pub manifests: BTreeMap<PatchRef, FoundManifest>,
    /// Skipped files, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Outcome of [`fill`] on one policy.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pins {
    /// Pins the signer added, with the manifest file each came from.
    pub added: Vec<(PatchRef, u64, PathBuf)>,
    /// Pins written in the policy file whose revision is below the newest
    /// manifest found: (patch, written revision, newest revision found).
    pub below_newest: Vec<(PatchRef, u64, u64)>,
    /// Patches the policy lists by name with no pin written and no manifest
    /// found, so nodes act on any revision of them.
    pub unpinned: Vec<PatchRef>,
}

/// Folders searched when the admin names none: the policy file's folder.
/// [`find`] also searches the folders directly in it, where `patch add
/// --out DIR` puts its manifests.
pub fn default_dirs(policy_file: &Path) -> Vec<PathBuf> {
    let parent = policy_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    vec![parent.to_path_buf()]
}

/// Reads every `*.manifest` file in each of `dirs` and in the folders
/// directly in them, except `chunks/` folders, and keeps the newest
/// revision per patch.
pub fn find(dirs: &[PathBuf]) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for dir in dirs {
        let mut files_here = Vec::new();
        for entry in files::list_patch_folder(dir)? {
            if entry.is_dir() {
                if entry.file_name().is_some_and(|n| n != "chunks") {
                    files_here.extend(
                        files::list_patch_folder(&entry)?
                            .into_iter()
                            .filter(|p| !p.is_dir()),
                    );
                }
            } else {
                files_here.push(entry);
            }
        }
        for path in files_here {
            if path.extension().is_some_and(|e| e == "manifest") {
                read_manifest(&path, &mut found);
            }
        }
    }
    Ok(found)
}

/// Adds the manifest at `path` to `found` when it is newer than the one
/// held for its patch. A file that is not a manifest is recorded as skipped.
fn read_manifest(path: &Path, found: &mut Found) {
    let manifest = files::read_signed(path).and_then(|signed| {
        if signed.kind != Kind::Manifest {
            anyhow::bail!("it is a {} object, not a manifest", signed.kind);
        }
        Ok(signed.decode_body::<Manifest>()?)
    });
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(error) => {
            found
                .skipped
                .push((path.to_path_buf(), format!("{error:#}")));
            return;
        }
    };
    let patch = manifest.patch_ref();
    let newer = found
        .manifests
        .get(&patch)
        .is_none_or(|held| manifest.revision > held.manifest.revision);
    if newer {
        let path = path.to_path_buf();
        found
            .manifests
            .insert(patch, FoundManifest { manifest, path });
    }
}

/// Pins every patch `policy` selects, by name or by `min_severity`, to the
/// newest revision in `found`. Pins written in the policy file stay as
/// written. Listed patches without a pin and without a manifest are
/// returned in [`Pins::unpinned`].
pub fn fill(policy: &mut Policy, found: &Found) -> Pins {
    let mut pins = Pins::default();
    for (patch, entry) in &found.manifests {
        let listed = policy.content.patches.contains(patch);
        let by_severity = policy
            .content
            .min_severity
            .is_some_and(|min| entry.manifest.severity >= min);
        if !listed && !by_severity {
            continue;
        }
        let newest = entry.manifest.revision;
        match policy.content.manifest_revisions.get(patch) {
            Some(&written) if written < newest => {
                pins.below_newest.push((patch.clone(), written, newest));
            }
            Some(_) => {}
            None => {
                policy
                    .content
                    .manifest_revisions
                    .insert(patch.clone(), newest);
                pins.added.push((patch.clone(), newest, entry.path.clone()));
            }
        }
    }
    pins.unpinned = policy
        .content
        .patches
        .iter()
        .filter(|patch| !policy.content.manifest_revisions.contains_key(patch))
        .cloned()
        .collect();
    pins
}

#[cfg(test)]
mod tests {
    use std::fs;

    use jiff::Timestamp;
    use patchmesh_protocol::{Hash, Installer, SecretKey, Severity, Signed};

    use super::*;

    fn manifest(name: &str, revision: u64, severity: Severity) -> Manifest {
        Manifest {
            name: name.into(),
            version: "1".into(),
            revision,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::UNIX_EPOCH,
            vendor: String::new(),
            severity,
            cvss: None,
            cves: Vec::new(),
            released: None,
            size: 0,
            chunk_size: patchmesh_protocol::limits::MIN_CHUNK_BYTES,
            chunks: Vec::new(),
            payload_hash: Hash::of(b""),
            installer: Installer::Command {
                install: "true".into(),
                rollback: None,
                timeout_secs: 60,
            },
            detect: None,
            reboot_required: false,
            applies_to: Default::default(),
        }
    }

    fn write(path: &Path, manifest: &Manifest) {
        let key = SecretKey::generate();
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, Signed::sign(manifest, &[&key]).to_bytes()).expect("write");
    }

    fn policy(content: &str) -> Policy {
        let text = format!(
            "id = \"p\"\nversion = 1\nexpires = \"2099-01-01T00:00:00Z\"\n[content]\n{content}"
        );
        Policy::from_toml(&text).expect("test policy parses")
    }

    fn patch(text: &str) -> PatchRef {
        text.parse().expect("patch reference")
    }

    #[test]
    fn find_keeps_newest_revision_in_subfolders() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            &dir.path().join("old/a@1.manifest"),
            &manifest("a", 1, Severity::Low),
        );
        write(
            &dir.path().join("new/a@1.manifest"),
            &manifest("a", 3, Severity::Low),
        );
        write(
            &dir.path().join("b@1.manifest"),
            &manifest("b", 2, Severity::Low),
        );
        // Two levels down and inside chunks/ are not searched.
        write(
            &dir.path().join("x/y/c@1.manifest"),
            &manifest("c", 1, Severity::Low),
        );
        write(
            &dir.path().join("chunks/d@1.manifest"),
            &manifest("d", 1, Severity::Low),
        );
        fs::write(dir.path().join("junk.manifest"), b"junk").expect("write");

        let found = find(&[dir.path().to_path_buf()]).expect("folders read");
        let revisions: Vec<(String, u64)> = found
            .manifests
            .iter()
            .map(|(p, f)| (p.to_string(), f.manifest.revision))
            .collect();
        assert_eq!(revisions, [("a@1".into(), 3), ("b@1".into(), 2)]);
        assert_eq!(found.skipped.len(), 1, "{:?}", found.skipped);
        assert!(found.skipped[0].0.ends_with("junk.manifest"));
    }

    #[test]
    fn find_names_missing_folder() {
        let err = find(&["/nonexistent/patches".into()]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/patches"), "{err}");
    }

    #[test]
    fn fill_pins_listed_and_severity_selected_patches() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            &dir.path().join("a@1.manifest"),
            &manifest("a", 2, Severity::Low),
        );
        write(
            &dir.path().join("b@1.manifest"),
            &manifest("b", 4, Severity::Critical),
        );
        write(
            &dir.path().join("c@1.manifest"),
            &manifest("c", 5, Severity::Low),
        );
        let found = find(&[dir.path().to_path_buf()]).expect("folders read");
        let mut policy =
            policy("patches = [\"a@1\", \"missing@1\"]\nmin_severity = \"important\"\n");

        let pins = fill(&mut policy, &found);
        let expected: BTreeMap<PatchRef, u64> =
            [(patch("a@1"), 2), (patch("b@1"), 4)].into_iter().collect();
        assert_eq!(policy.content.manifest_revisions, expected);
        assert_eq!(pins.added.len(), 2);
        assert_eq!(pins.unpinned, [patch("missing@1")]);
        assert!(pins.below_newest.is_empty());
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn fill_keeps_pins_written_in_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            &dir.path().join("a@1.manifest"),
            &manifest("a", 3, Severity::Low),
        );
        write(
            &dir.path().join("b@1.manifest"),
            &manifest("b", 1, Severity::Low),
        );
        let found = find(&[dir.path().to_path_buf()]).expect("folders read");
        let mut policy = policy(
            "patches = [\"a@1\", \"b@1\"]\nmanifest_revisions = { \"a@1\" = 2, \"b@1\" = 7 }\n",
        );

        let pins = fill(&mut policy, &found);
        assert_eq!(policy.content.manifest_revisions[&patch("a@1")], 2);
        assert_eq!(policy.content.manifest_revisions[&patch("b@1")], 7);
        assert!(pins.added.is_empty());
        assert_eq!(pins.below_newest, [(patch("a@1"), 2, 3)]);
        assert!(pins.unpinned.is_empty());
    }
}
