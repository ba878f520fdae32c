//! `root init` and `root rotate`: the trust root that lists admin keys and,
//! per role, which keys count and how many signatures are needed.
//!
//! Both commands check their result the way a node will: `init` with
//! `Root::verify_initial` and `rotate` with the current root's
//! `verify_successor`, which needs a threshold of the old root keys and of
//! the new ones. An under-signed root is written only with
//! `--allow-partial`, so other admins can add their signatures with `sign`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use patchmesh_protocol::{KeyId, PublicKey, Role, RoleKeys, Root, SecretKey, Signed};
use serde_json::json;

use crate::{expiry, files, keys, Context};

/// `root` subcommands.
#[derive(Subcommand)]
pub enum RootCommand {
    /// Create the first trust root (version 1), self-signed.
    Init(InitArgs),
    /// Create the next root version, signed by old and new root keys.
    Rotate(RotateArgs),
}

/// Options shared by `init` and `rotate` for per-role keys and thresholds.
#[derive(Args)]
pub struct RoleOptions {
    /// Give ROLE exactly these keys instead of the default (repeatable;
    /// ROLE is root, policy, patch or enroll; KEY is a key file or 64 hex
    /// digits of a public key).
    #[arg(long, value_name = "ROLE=KEY")]
    role_key: Vec<RoleArg<String>>,
    /// Threshold of one role, overriding --threshold for it (repeatable).
    #[arg(long, value_name = "ROLE=N")]
    role_threshold: Vec<RoleArg<u32>>,
}

/// Arguments of `root init`.
#[derive(Args)]
pub struct InitArgs {
    /// Secret key file of an admin; each is listed in every role and signs
    /// the root (repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Public key of another admin to list in every role without signing
    /// now (key file or 64 hex digits; repeatable).
    #[arg(long = "pubkey", value_name = "KEY")]
    pubkeys: Vec<String>,
    /// Signatures needed for every role.
    #[arg(long, default_value_t = 1)]
    threshold: u32,
    #[command(flatten)]
    roles: RoleOptions,
    /// Fleet name; nodes reject roots and objects of another fleet.
    #[arg(long, default_value = "default")]
    fleet: String,
    /// Expiry: a duration from now such as 365d, or an RFC 3339 time.
    #[arg(long, default_value = "365d")]
    expires: String,
    /// Write the root even when it has fewer signatures than its threshold.
    #[arg(long)]
    allow_partial: bool,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

/// Arguments of `root rotate`.
#[derive(Args)]
pub struct RotateArgs {
    /// The current root.
    #[arg(long)]
    root: PathBuf,
    /// Public key to add to every role (key file or 64 hex digits; repeatable).
    #[arg(long, value_name = "KEY")]
    add_key: Vec<String>,
    /// Key id to remove from the root and every role (repeatable).
    #[arg(long, value_name = "KEYID")]
    remove_key: Vec<String>,
    /// Signatures needed for every role; each role keeps its threshold when
    /// left out.
    #[arg(long)]
    threshold: Option<u32>,
    #[command(flatten)]
    roles: RoleOptions,
    /// Expiry: a duration from now such as 365d, or an RFC 3339 time.
    #[arg(long, default_value = "365d")]
    expires: String,
    /// Secret key file to sign with, of the old or new root keys (repeatable).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Write the root even when it lacks old or new root signatures.
    #[arg(long)]
    allow_partial: bool,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

/// A `ROLE=VALUE` argument.
#[derive(Clone)]
pub struct RoleArg<T> {
    role: Role,
    value: T,
}

impl<T: FromStr> FromStr for RoleArg<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (role, value) = text
            .split_once('=')
            .ok_or_else(|| format!("\"{text}\" is not ROLE=VALUE (such as policy=admin.pub)"))?;
        let role = parse_role(role)?;
        let value = value
            .parse()
            .map_err(|e| format!("invalid value in \"{text}\": {e}"))?;
        Ok(RoleArg { role, value })
    }
}

/// Parses a role name.
pub fn parse_role(text: &str) -> Result<Role, String> {
    Role::ALL
        .into_iter()
        .find(|role| role.name() == text)
        .ok_or_else(|| format!("unknown role \"{text}\" (expected root, policy, patch or enroll)"))
}

/// Runs a `root` subcommand.
pub fn run(context: &Context, command: RootCommand) -> anyhow::Result<()> {
    match command {
        RootCommand::Init(args) => init(context, args),
        RootCommand::Rotate(args) => rotate(context, args),
    }
}

fn init(context: &Context, args: InitArgs) -> anyhow::Result<()> {
    files::check_overwrite(&args.out, args.force)?;
    let now = Timestamp::now();
    let expires = expiry::parse(&args.expires, now)?;
    let signers = keys::load_secrets(context, &args.keys)?;

    // Every given key, signing or not, goes into every role.
    let mut listed: Vec<PublicKey> = signers.iter().map(SecretKey::public).collect();
    for spec in &args.pubkeys {
        listed.push(keys::load_public(spec)?);
    }
    let mut root = Root {
        fleet: args.fleet,
        version: 1,
        issued: now,
        expires,
        keys: BTreeMap::new(),
        roles: BTreeMap::new(),
    };
    for role in Role::ALL {
        root.roles.insert(
            role,
            RoleKeys {
                keys: Vec::new(),
                threshold: args.threshold,
            },
        );
    }
    for public in listed {
        add_to_every_role(&mut root, public);
    }
    apply_role_options(&mut root, &args.roles, Some(args.threshold))?;
    root.validate()
        .context("the requested root is invalid (check --threshold and --role-key)")?;

    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let signed = Signed::sign(&root, &signer_refs);
    let check = Root::verify_initial(&signed).map(|_| ());
    finish(
        context,
        &signed,
        &root,
        check,
        args.allow_partial,
        &args.out,
        args.force,
    )
}

fn rotate(context: &Context, args: RotateArgs) -> anyhow::Result<()> {
    files::check_overwrite(&args.out, args.force)?;
    let current_signed = files::read_signed(&args.root)?;
    let current = Root::verify_initial(&current_signed)
        .with_context(|| format!("\"{}\" is not a valid root", args.root.display()))?;
    let now = Timestamp::now();
    let expires = expiry::parse(&args.expires, now)?;
    let signers = keys::load_secrets(context, &args.keys)?;

    let mut next = current.clone();
    next.version = current.version + 1;
    next.issued = now;
    next.expires = expires;

    // Removals first, so a key removed and re-added in one run stays.
    for text in &args.remove_key {
        let id = find_key(&current, text)?;
        next.keys.remove(&id);
        for rule in next.roles.values_mut() {
            rule.keys.retain(|k| *k != id);
        }
    }
    for spec in &args.add_key {
        add_to_every_role(&mut next, keys::load_public(spec)?);
    }
    if let Some(threshold) = args.threshold {
        for rule in next.roles.values_mut() {
            rule.threshold = threshold;
        }
    }
    apply_role_options(&mut next, &args.roles, args.threshold)?;
    next.validate().context(
        "the rotated root is invalid (a removal may leave a role with fewer keys than its \
         threshold: lower it with --threshold or --role-threshold)",
    )?;

    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let signed = Signed::sign(&next, &signer_refs);
    let check = current.verify_successor(&signed).map(|_| ());
    finish(
        context,
        &signed,
        &next,
        check,
        args.allow_partial,
        &args.out,
        args.force,
    )
}

/// Writes the signed root unless it failed verification without
/// `--allow-partial`, and prints the summary.
fn finish(
    context: &Context,
    signed: &Signed,
    root: &Root,
    check: Result<(), patchmesh_protocol::VerifyError>,
    allow_partial: bool,
    out: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    if let Err(error) = &check {
        if !allow_partial {
            bail!(
                "root version {} is not accepted as signed: {error} (sign with more --key \
                 files, or pass --allow-partial and have other admins run `patchmesh-signer \
                 sign`)",
                root.version
            );
        }
        context.out.note(format!(
            "warning: root version {} is not yet accepted: {error}",
            root.version
        ));
    }
    files::write_output(out, &signed.to_bytes(), force)?;

    context.out.say(format!(
        "root version {} of fleet \"{}\" written to \"{}\": {} keys, signed by {}",
        root.version,
        root.fleet,
        out.display(),
        root.keys.len(),
        signed
            .signatures
            .iter()
            .map(|s| s.key_id.short())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let roles: serde_json::Map<String, serde_json::Value> = root
        .roles
        .iter()
        .map(|(role, rule)| {
            let ids: Vec<String> = rule.keys.iter().map(KeyId::to_string).collect();
            (
                role.name().to_string(),
                json!({ "keys": ids, "threshold": rule.threshold }),
            )
        })
        .collect();
    context.out.finish(json!({
        "id": signed.id().to_string(),
        "fleet": root.fleet,
        "version": root.version,
        "expires": root.expires.to_string(),
        "roles": roles,
        "signatures": signed.signatures.iter().map(|s| s.key_id.to_string()).collect::<Vec<_>>(),
        "accepted": check.is_ok(),
        "path": out,
    }));
    Ok(())
}

fn add_to_every_role(root: &mut Root, public: PublicKey) {
    let id = public.id();
    root.keys.insert(id, public);
    for rule in root.roles.values_mut() {
        if !rule.keys.contains(&id) {
            rule.keys.push(id);
        }
    }
}

/// Applies `--role-key` (replacing a role's keys) and `--role-threshold`.
/// A role whose keys are replaced takes `default_threshold` when given.
fn apply_role_options(
    root: &mut Root,
    options: &RoleOptions,
    default_threshold: Option<u32>,
) -> anyhow::Result<()> {
    let mut replaced: BTreeMap<Role, Vec<KeyId>> = BTreeMap::new();
    for arg in &options.role_key {
        let public = keys::load_public(&arg.value)?;
        root.keys.insert(public.id(), public);
        let ids = replaced.entry(arg.role).or_default();
        if !ids.contains(&public.id()) {
            ids.push(public.id());
        }
    }
    for (role, ids) in replaced {
        let rule = root.roles.entry(role).or_insert(RoleKeys {
            keys: Vec::new(),
            threshold: default_threshold.unwrap_or(1),
        });
        rule.keys = ids;
    }

    let mut seen = BTreeSet::new();
    for arg in &options.role_threshold {
        if !seen.insert(arg.role) {
            bail!("--role-threshold for role \"{}\" is given twice", arg.role);
        }
        if let Some(rule) = root.roles.get_mut(&arg.role) {
            rule.threshold = arg.value;
        }
    }
    Ok(())
}

/// Finds the key id of the current root that `text` names: the full id or
/// a prefix of at least 8 hex digits that matches exactly one key.
fn find_key(root: &Root, text: &str) -> anyhow::Result<KeyId> {
    let wanted = text.to_ascii_lowercase();
    if wanted.len() < 8 {
        bail!("--remove-key \"{text}\" is too short (give the key id or at least 8 hex digits)");
    }
    let matches: Vec<KeyId> = root
        .keys
        .keys()
        .filter(|id| id.to_string().starts_with(&wanted))
        .copied()
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!(
            "--remove-key \"{text}\" names no key of root version {} (see its keys with \
             `patchmesh-signer inspect`)",
            root.version
        ),
        _ => bail!("--remove-key \"{text}\" matches several keys (give more hex digits)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arg_parses_role_and_value() {
        let arg: RoleArg<u32> = "policy=2".parse().expect("valid");
        assert_eq!(arg.role, Role::Policy);
        assert_eq!(arg.value, 2);
    }

    #[test]
    fn role_arg_rejects_unknown_role() {
        let err = "admins=2".parse::<RoleArg<u32>>().err().expect("rejected");
        assert!(err.contains("\"admins\""), "{err}");
    }

    #[test]
    fn find_key_accepts_unique_prefix() {
        let key = SecretKey::generate();
        let mut root = Root {
            fleet: "f".into(),
            version: 1,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::MAX,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
        };
        root.keys.insert(key.id(), key.public());
        let prefix = &key.id().to_string()[..10];
        assert_eq!(find_key(&root, prefix).expect("found"), key.id());
        assert!(find_key(&root, "abc").is_err());
    }
}
