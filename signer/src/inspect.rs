//! `inspect`: prints any signed object as JSON (kind, id, slot, revision,
//! times, signing key ids and the decoded body) and verifies it under a
//! trusted root. Exit status 1 means the object failed verification.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::bundle::BundleIndex;
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::{Body, Kind, Manifest, Policy, Root, Signed};
use serde_json::{json, Value};

use crate::{files, Context};

/// Arguments of `inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Signed object file.
    file: PathBuf,
    /// Trusted root to verify the object under; a root object is checked on
    /// its own signatures when left out.
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Outcome of checking one object.
pub struct Verification {
    /// Whether the object passed.
    pub ok: bool,
    /// Description of what passed, or the reason it failed.
    pub detail: String,
}

/// Runs `inspect`.
pub fn run(context: &Context, args: InspectArgs) -> anyhow::Result<()> {
    let signed = files::read_signed(&args.file)?;
    let trusted = match &args.root {
        Some(path) => Some(load_trusted_root(path)?),
        None => None,
    };

    let mut report = describe(&signed);
    let verification = verify(&signed, trusted.as_ref(), Timestamp::now());
    if let Some(verification) = &verification {
        report["verification"] = json!({ "ok": verification.ok, "detail": verification.detail });
    } else {
        report["verification"] = Value::Null;
    }

    if context.out.is_json() {
        context.out.finish(report);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match verification {
        Some(v) if !v.ok => bail!(
            "\"{}\" failed verification: {}",
            args.file.display(),
            v.detail
        ),
        _ => Ok(()),
    }
}

/// Loads a root file to trust, checked on its own signatures.
pub fn load_trusted_root(path: &std::path::Path) -> anyhow::Result<Root> {
    let signed = files::read_signed(path)?;
    Root::verify_initial(&signed)
        .with_context(|| format!("\"{}\" is not a valid root", path.display()))
}

/// Describes `signed` as JSON: envelope fields and, for kinds this signer
/// has a body type for, the decoded body.
pub fn describe(signed: &Signed) -> Value {
    let signatures: Vec<String> = signed
        .signatures
        .iter()
        .map(|s| s.key_id.to_string())
        .collect();
    let mut report = json!({
        "kind": signed.kind.name(),
        "id": signed.id().to_string(),
        "role": signed.kind.role().name(),
        "signatures": signatures,
    });
    let body = match signed.kind {
        Kind::Root => body_fields::<Root>(signed),
        Kind::Manifest => body_fields::<Manifest>(signed),
        Kind::Policy => body_fields::<Policy>(signed),
        Kind::Approval => body_fields::<Approval>(signed),
        Kind::Halt => body_fields::<Halt>(signed),
        Kind::Resume => body_fields::<Resume>(signed),
        Kind::Rollback => body_fields::<RollbackOrder>(signed),
        Kind::Enrollment => body_fields::<Enrollment>(signed),
        Kind::Revocation => body_fields::<Revocation>(signed),
        Kind::BundleIndex => body_fields::<BundleIndex>(signed),
    };
    match body {
        Ok(fields) => {
            if let (Value::Object(target), Value::Object(extra)) = (&mut report, fields) {
                target.extend(extra);
            }
        }
        Err(error) => report["body_error"] = json!(error),
    }
    report
}

fn body_fields<B: Body + serde::Serialize>(signed: &Signed) -> Result<Value, String> {
    let body: B = signed.decode_body().map_err(|e| e.to_string())?;
    Ok(json!({
        "slot": body.slot(),
        "revision": body.revision(),
        "issued": body.issued().to_string(),
        "expires": body.expires().to_string(),
        "body": serde_json::to_value(&body).map_err(|e| e.to_string())?,
    }))
}

/// Verifies `signed` the way a node holding `trusted` would at `now`.
///
/// A root is checked as the trusted root itself, as its direct successor,
/// or, with no trusted root, as an initial root. Other objects need a trusted
/// root; without one this returns `None`.
pub fn verify(signed: &Signed, trusted: Option<&Root>, now: Timestamp) -> Option<Verification> {
    let result = match (signed.kind, trusted) {
        (Kind::Root, trusted) => verify_root(signed, trusted, now),
        (_, None) => return None,
        (Kind::Manifest, Some(root)) => signed
            .verify::<Manifest>(root, now, "system")
            .map(|m| format!("manifest {}@{} verified", m.name, m.version))
            .map_err(|e| e.to_string()),
        (Kind::Policy, Some(root)) => signed
            .verify::<Policy>(root, now, "system")
            .map(|p| format!("policy \"{}\" version {} verified", p.id, p.version))
            .map_err(|e| e.to_string()),
        (Kind::Approval, Some(root)) => verify_body::<Approval>(signed, root, now),
        (Kind::Halt, Some(root)) => verify_body::<Halt>(signed, root, now),
        (Kind::Resume, Some(root)) => verify_body::<Resume>(signed, root, now),
        (Kind::Rollback, Some(root)) => verify_body::<RollbackOrder>(signed, root, now),
        (Kind::Enrollment, Some(root)) => verify_body::<Enrollment>(signed, root, now),
        (Kind::Revocation, Some(root)) => verify_body::<Revocation>(signed, root, now),
        (Kind::BundleIndex, Some(root)) => verify_body::<BundleIndex>(signed, root, now),
    };
    Some(match result {
        Ok(detail) => Verification { ok: true, detail },
        Err(detail) => Verification { ok: false, detail },
    })
}

/// Verifies signatures and expiry of a body type without extra checks.
fn verify_body<B: Body>(signed: &Signed, root: &Root, now: Timestamp) -> Result<String, String> {
    let body: B = signed
        .verify(root, now, "system")
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} \"{}\" revision {} verified, expires {}",
        B::KIND,
        body.slot(),
        body.revision(),
        body.expires()
    ))
}

fn verify_root(signed: &Signed, trusted: Option<&Root>, now: Timestamp) -> Result<String, String> {
    let candidate: Root = signed.decode_body().map_err(|e| e.to_string())?;
    let root = match trusted {
        Some(trusted) if candidate.version == trusted.version + 1 => trusted
            .verify_successor(signed)
            .map_err(|e| e.to_string())?,
        Some(trusted) if candidate == *trusted => {
            Root::verify_initial(signed).map_err(|e| e.to_string())?
        }
        Some(trusted) => {
            return Err(format!(
                "root version {} is neither the trusted root version {} nor its direct successor",
                candidate.version, trusted.version
            ))
        }
        None => Root::verify_initial(signed).map_err(|e| e.to_string())?,
    };
    if root.expires <= now {
        return Err(format!(
            "root version {} expired at {} (checked against system time {now})",
            root.version, root.expires
        ));
    }
    Ok(match trusted {
        Some(t) if root.version == t.version + 1 => format!(
            "root version {} verified as successor of version {}",
            root.version, t.version
        ),
        _ => format!(
            "root version {} verified on its own signatures",
            root.version
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use patchmesh_protocol::{RoleKeys, SecretKey};

    use super::*;

    fn root_for(key: &SecretKey, version: u64) -> Root {
        let mut root = Root {
            fleet: "test".into(),
            version,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::MAX,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
        };
        root.keys.insert(key.id(), key.public());
        for role in patchmesh_protocol::Role::ALL {
            root.roles.insert(
                role,
                RoleKeys {
                    keys: vec![key.id()],
                    threshold: 1,
                },
            );
        }
        root
    }

    #[test]
    fn self_signed_root_verifies_without_trusted_root() {
        let key = SecretKey::generate();
        let signed = Signed::sign(&root_for(&key, 1), &[&key]);
        let result = verify(&signed, None, Timestamp::now()).expect("roots are checked");
        assert!(result.ok, "{}", result.detail);
    }

    #[test]
    fn root_signed_by_unlisted_key_fails() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let signed = Signed::sign(&root_for(&key, 1), &[&other]);
        let result = verify(&signed, None, Timestamp::now()).expect("roots are checked");
        assert!(!result.ok);
    }

    #[test]
    fn expired_halt_fails_verification() {
        let key = SecretKey::generate();
        let root = root_for(&key, 1);
        let halt = Halt {
            policy: "p".into(),
            wave: None,
            reason: "test".into(),
            revision: 1,
            issued: Timestamp::UNIX_EPOCH,
            expires: "2030-01-01T00:00:00Z".parse().expect("valid"),
        };
        let signed = Signed::sign(&halt, &[&key]);
        let before = verify(
            &signed,
            Some(&root),
            "2029-01-01T00:00:00Z".parse().expect("valid"),
        );
        assert!(before.expect("checked").ok);
        let after = verify(
            &signed,
            Some(&root),
            "2031-01-01T00:00:00Z".parse().expect("valid"),
        );
        let after = after.expect("checked");
        assert!(!after.ok);
        assert!(after.detail.contains("expired"), "{}", after.detail);
        assert_eq!(describe(&signed)["slot"], "p");
    }

    #[test]
    fn describe_shows_slot_and_signers() {
        let key = SecretKey::generate();
        let signed = Signed::sign(&root_for(&key, 1), &[&key]);
        let report = describe(&signed);
        assert_eq!(report["kind"], "root");
        assert_eq!(report["slot"], "root");
        assert_eq!(report["signatures"][0], key.id().to_string());
    }
}
