//! `policy sign`: reads an admin's TOML policy, validates every field,
//! pins the manifest revisions it finds in the patch folders (see
//! [`crate::pins`]), stamps the signing time and signs it with policy role
//! keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use jiff::Timestamp;
use patchmesh_protocol::{Policy, SecretKey, Signed};
use serde_json::json;

use crate::{files, keys, pins, Context};

/// `policy` subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a TOML policy and sign it.
    Sign {
        /// Policy file (TOML).
        file: PathBuf,
        /// Secret key file of a policy role key (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Output file for the signed policy.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
        /// Patch folder to search for manifests to pin (repeatable). The
        /// policy file's folder when left out. Each folder and the folders
        /// directly in it are searched.
        #[arg(long = "patches", value_name = "DIR")]
        patch_dirs: Vec<PathBuf>,
    },
    /// List the next maintenance windows of a TOML policy.
    Preview(crate::preview::PreviewArgs),
}

/// Runs a `policy` subcommand.
pub fn run(context: &Context, command: PolicyCommand) -> anyhow::Result<()> {
    let (file, key_paths, out, force, patch_dirs) = match command {
        PolicyCommand::Preview(args) => return crate::preview::run(context, args),
        PolicyCommand::Sign {
            file,
            keys,
            out,
            force,
            patch_dirs,
        } => (file, keys, out, force, patch_dirs),
    };
    files::check_overwrite(&out, force)?;
    let bytes = files::read(&file)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("\"{}\" is not UTF-8 text", file.display()))?;

    let mut policy = parse(&text).with_context(|| format!("\"{}\" is rejected", file.display()))?;
    let now = Timestamp::now();
    if policy.expires <= now {
        bail!(
            "\"{}\" is rejected: policy field \"expires\": {} is not in the future (now is {now})",
            file.display(),
            policy.expires
        );
    }
    policy.issued = now;
    let patch_dirs = if patch_dirs.is_empty() {
        pins::default_dirs(&file)
    } else {
        patch_dirs
    };
    let pins = pin_manifests(context, &mut policy, &patch_dirs)?;
    policy
        .validate()
        .with_context(|| format!("\"{}\" is rejected after pinning", file.display()))?;

    let signers = keys::load_secrets(context, &key_paths)?;
    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let signed = Signed::sign(&policy, &signer_refs);
    files::write_output(&out, &signed.to_bytes(), force)?;

    context.out.say(format!(
        "policy \"{}\" version {} signed ({}), written to \"{}\"",
        policy.id,
        policy.version,
        signed.id().short(),
        out.display()
    ));
    context.out.finish(json!({
        "id": signed.id().to_string(),
        "policy": policy.id,
        "version": policy.version,
        "issued": policy.issued.to_string(),
        "expires": policy.expires.to_string(),
        "manifest_revisions": policy.content.manifest_revisions.iter().map(|(p, r)| (p.to_string(), *r)).collect::<BTreeMap<_, _>>(),
        "pinned": pins.added.iter().map(|(p, _, _)| p.to_string()).collect::<Vec<_>>(),
        "unpinned": pins.unpinned.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "signatures": signed.signatures.iter().map(|s| s.key_id.to_string()).collect::<Vec<_>>(),
        "path": out,
    }));
    Ok(())
}

/// Fills in the manifest revision pins of `policy` from the manifests in
/// `dirs` and prints what it pinned and what it could not.
fn pin_manifests(
    context: &Context,
    policy: &mut Policy,
    dirs: &[PathBuf],
) -> anyhow::Result<pins::Pins> {
    let found = pins::find(dirs)?;
    for (path, reason) in &found.skipped {
        context.out.note(format!(
            "skipped \"{}\": not a readable manifest ({reason})",
            path.display()
        ));
    }
    let pins = pins::fill(policy, &found);
    for (patch, revision, path) in &pins.added {
        context.out.say(format!(
            "pinned {patch} to manifest revision {revision} (newest in \"{}\")",
            path.display()
        ));
    }
    for (patch, written, newest) in &pins.below_newest {
        context.out.note(format!(
            "warning: the policy pins {patch} to manifest revision {written}, but revision \
             {newest} is in the patch folders; nodes still accept revision {written}"
        ));
    }
    if !pins.unpinned.is_empty() {
        let searched: Vec<String> = dirs
            .iter()
            .map(|d| format!("\"{}\"", d.display()))
            .collect();
        let patches: Vec<String> = pins.unpinned.iter().map(ToString::to_string).collect();
        context.out.note(format!(
            "warning: no manifest of {} found in {} or the folders directly in it, so nodes \
             accept any revision of it (pass --patches DIR with the folder `patch add` wrote, \
             or write the pin under content.manifest_revisions)",
            patches.join(", "),
            searched.join(", ")
        ));
    }
    Ok(pins)
}

/// Parses and validates a TOML policy; errors name the field, the value and
/// what is allowed.
fn parse(text: &str) -> anyhow::Result<Policy> {
    let policy = Policy::from_toml(text)?;
    policy.validate()?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
id = "all-asap"
version = 1
expires = "2099-01-01T00:00:00Z"
[content]
patches = ["demo@1.0"]
"#;

    #[test]
    fn valid_policy_parses() {
        let policy = parse(VALID).expect("valid");
        assert_eq!(policy.id, "all-asap");
    }

    #[test]
    fn unknown_field_names_line() {
        let err = parse(&format!("{VALID}\ncolour = 3\n")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
