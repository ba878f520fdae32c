//! `approve`, `halt`, `resume` and `rollback`: signed admin actions on a
//! running rollout, signed by the `policy` role. Each writes one signed
//! object file that `publish` then hands to a node.
//!
//! Revisions default to the signing time in unix seconds, so an action
//! signed later supersedes an earlier one in the same slot.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::manifest::is_safe_name;
use patchmesh_protocol::{Body, PatchRef, SecretKey, Signed};
use serde_json::json;

use crate::{expiry, files, keys, Context};

/// Options every signing command shares.
#[derive(Args)]
pub struct SignOptions {
    /// Secret key file to sign with (repeatable, for threshold signing).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Expiry: a duration from now such as 30d, or an RFC 3339 time.
    #[arg(long)]
    pub expires: Option<String>,
    /// Revision within the object's slot; defaults to the signing time in
    /// unix seconds, so a later order supersedes an earlier one.
    #[arg(long)]
    pub revision: Option<u64>,
    /// Output file for the signed object.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Signing time, expiry and revision resolved from [`SignOptions`].
pub struct Stamp {
    /// Signing time.
    pub issued: Timestamp,
    /// Expiry.
    pub expires: Timestamp,
    /// Revision.
    pub revision: u64,
}

impl SignOptions {
    /// Resolves the signing time, expiry (`default_expiry` when not given)
    /// and revision.
    pub fn stamp(&self, default_expiry: &str) -> anyhow::Result<Stamp> {
        let issued = Timestamp::now();
        let expires = expiry::parse(self.expires.as_deref().unwrap_or(default_expiry), issued)?;
        let revision = match self.revision {
            Some(0) => anyhow::bail!("invalid --revision 0 (revisions start at 1)"),
            Some(revision) => revision,
            None => default_revision(issued),
        };
        Ok(Stamp {
            issued,
            expires,
            revision,
        })
    }
}

/// Revision derived from the signing time: unix seconds, at least 1.
pub fn default_revision(issued: Timestamp) -> u64 {
    u64::try_from(issued.as_second()).unwrap_or(1).max(1)
}

/// Signs `body` with the keys in `options`, writes it to `options.out` and
/// prints a summary line and the JSON result.
pub fn sign_and_write<B: Body + serde::Serialize>(
    context: &Context,
    body: &B,
    options: &SignOptions,
) -> anyhow::Result<Signed> {
    files::check_overwrite(&options.out, options.force)?;
    let signers = keys::load_secrets(context, &options.keys)?;
    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let signed = Signed::sign(body, &signer_refs);
    files::write_output(&options.out, &signed.to_bytes(), options.force)?;

    context.out.say(format!(
        "{} \"{}\" revision {} signed ({}), expires {}, written to \"{}\"",
        B::KIND,
        body.slot(),
        body.revision(),
        signed.id().short(),
        body.expires(),
        options.out.display()
    ));
    context.out.finish(json!({
        "id": signed.id().to_string(),
        "kind": B::KIND.name(),
        "slot": body.slot(),
        "revision": body.revision(),
        "issued": body.issued().to_string(),
        "expires": body.expires().to_string(),
        "signatures": signed.signatures.iter().map(|s| s.key_id.to_string()).collect::<Vec<_>>(),
        "body": serde_json::to_value(body).context("cannot show the signed body")?,
        "path": options.out,
    }));
    Ok(signed)
}

/// Rejects a policy id or wave name that nodes would never match.
fn check_name(flag: &str, value: &str) -> anyhow::Result<()> {
    if !is_safe_name(value) {
        anyhow::bail!(
            "invalid {flag} {value:?} (expected 1 to 128 letters, digits, '.', '-', '_', '+', '~' or ':')"
        );
    }
    Ok(())
}

/// Default expiry of admin actions.
const ACTION_EXPIRY: &str = "30d";

/// Arguments of `approve`.
#[derive(Args)]
pub struct ApproveArgs {
    /// Policy id.
    #[arg(long)]
    policy: String,
    /// Patch to approve as name@version (repeatable); without it, every patch
    /// published before now is approved.
    #[arg(long = "patch", value_name = "NAME@VERSION")]
    patches: Vec<PatchRef>,
    #[command(flatten)]
    sign: SignOptions,
}

/// Arguments of `halt`.
#[derive(Args)]
pub struct HaltArgs {
    /// Policy id.
    #[arg(long)]
    policy: String,
    /// Wave to halt; every wave when left out.
    #[arg(long)]
    wave: Option<String>,
    /// Reason shown in reports.
    #[arg(long, default_value = "halted by an admin")]
    reason: String,
    #[command(flatten)]
    sign: SignOptions,
}

/// Arguments of `resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// Policy id.
    #[arg(long)]
    policy: String,
    /// Wave to resume; every wave when left out.
    #[arg(long)]
    wave: Option<String>,
    #[command(flatten)]
    sign: SignOptions,
}

/// Arguments of `rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    /// Policy id.
    #[arg(long)]
    policy: String,
    /// Patch to roll back, as name@version.
    #[arg(long, value_name = "NAME@VERSION")]
    patch: PatchRef,
    /// Reason shown in reports.
    #[arg(long, default_value = "rollback ordered by an admin")]
    reason: String,
    #[command(flatten)]
    sign: SignOptions,
}

/// Runs `approve`.
pub fn approve(context: &Context, args: ApproveArgs) -> anyhow::Result<()> {
    check_name("--policy", &args.policy)?;
    let stamp = args.sign.stamp(ACTION_EXPIRY)?;
    let body = Approval {
        policy: args.policy,
        patches: args.patches,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    sign_and_write(context, &body, &args.sign).map(drop)
}

/// Runs `halt`.
pub fn halt(context: &Context, args: HaltArgs) -> anyhow::Result<()> {
    check_name("--policy", &args.policy)?;
    if let Some(wave) = &args.wave {
        check_name("--wave", wave)?;
    }
    let stamp = args.sign.stamp(ACTION_EXPIRY)?;
    let body = Halt {
        policy: args.policy,
        wave: args.wave,
        reason: args.reason,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    sign_and_write(context, &body, &args.sign).map(drop)
}

/// Runs `resume`.
pub fn resume(context: &Context, args: ResumeArgs) -> anyhow::Result<()> {
    check_name("--policy", &args.policy)?;
    if let Some(wave) = &args.wave {
        check_name("--wave", wave)?;
    }
    let stamp = args.sign.stamp(ACTION_EXPIRY)?;
    let body = Resume {
        policy: args.policy,
        wave: args.wave,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    sign_and_write(context, &body, &args.sign).map(drop)
}

/// Runs `rollback`.
pub fn rollback(context: &Context, args: RollbackArgs) -> anyhow::Result<()> {
    check_name("--policy", &args.policy)?;
    let stamp = args.sign.stamp(ACTION_EXPIRY)?;
    let body = RollbackOrder {
        policy: args.policy,
        patch: args.patch,
        reason: args.reason,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    sign_and_write(context, &body, &args.sign).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_revision_grows_with_time() {
        let earlier: Timestamp = "2030-01-01T00:00:00Z".parse().expect("valid");
        let later: Timestamp = "2030-01-01T00:00:01Z".parse().expect("valid");
        assert!(default_revision(later) > default_revision(earlier));
        assert_eq!(default_revision(Timestamp::UNIX_EPOCH), 1);
    }
}
