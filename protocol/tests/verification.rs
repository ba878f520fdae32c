//! Rejection cases of signed-object verification: every way an object can
//! fail to carry the authority it claims.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::manifest::{Applicability, Installer};
use patchmesh_protocol::{
    limits, Hash, Kind, Manifest, Policy, Role, RoleKeys, Root, SecretKey, Severity, Signed,
    VerifyError,
};

struct Fleet {
    root_key: SecretKey,
    policy_keys: Vec<SecretKey>,
    root: Root,
}

/// A root whose policy role needs `threshold` of three keys and whose other
/// roles use one root key.
fn fleet(threshold: u32) -> Fleet {
    let root_key = SecretKey::generate();
    let policy_keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate()).collect();
    let mut keys = BTreeMap::new();
    keys.insert(root_key.id(), root_key.public());
    for key in &policy_keys {
        keys.insert(key.id(), key.public());
    }
    let mut roles = BTreeMap::new();
    for role in [Role::Root, Role::Patch, Role::Enroll] {
        roles.insert(
            role,
            RoleKeys {
                keys: vec![root_key.id()],
                threshold: 1,
            },
        );
    }
    roles.insert(
        Role::Policy,
        RoleKeys {
            keys: policy_keys.iter().map(|k| k.id()).collect(),
            threshold,
        },
    );
    let now = Timestamp::now();
    let root = Root {
        fleet: "test".into(),
        version: 1,
        issued: now,
        expires: now + SignedDuration::from_hours(24),
        keys,
        roles,
    };
    root.validate().expect("fixture root is valid");
    Fleet {
        root_key,
        policy_keys,
        root,
    }
}

fn policy(expires: Timestamp) -> Policy {
    let text = format!(
        "id = \"p\"\nversion = 1\nexpires = \"{expires}\"\n[content]\npatches = [\"demo@1\"]\n"
    );
    Policy::from_toml(&text).expect("fixture policy parses")
}

fn later() -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(1)
}

#[test]
fn accepts_threshold_of_distinct_keys() {
    let fleet = fleet(2);
    let signed = Signed::sign(
        &policy(later()),
        &[&fleet.policy_keys[0], &fleet.policy_keys[1]],
    );
    let body: Policy = signed
        .verify(&fleet.root, Timestamp::now(), "system")
        .expect("two of three policy keys suffice");
    assert_eq!(body.id, "p");
}

#[test]
fn rejects_too_few_signatures() {
    let fleet = fleet(2);
    let signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Threshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn duplicate_signature_counts_once() {
    let fleet = fleet(2);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let copy = signed.signatures[0].clone();
    signed.signatures.push(copy);
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn rejects_bad_signature() {
    let fleet = fleet(1);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    signed.signatures[0].signature.0[5] ^= 0x40;
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { valid: 0, .. }),
        "{err}"
    );
}

#[test]
fn rejects_tampered_payload() {
    let fleet = fleet(1);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let last = signed.payload.len() - 1;
    signed.payload[last] ^= 1;
    assert!(signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .is_err());
}

#[test]
fn rejects_unknown_key() {
    let fleet = fleet(1);
    let stranger = SecretKey::generate();
    let signed = Signed::sign(&policy(later()), &[&stranger]);
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .unwrap_err();
    match err {
        VerifyError::Threshold { unknown_key, .. } => {
            assert_eq!(unknown_key, Some(stranger.id()))
        }
        other => panic!("expected a threshold error, got {other}"),
    }
}

#[test]
fn rejects_wrong_role() {
    let fleet = fleet(1);
    // The root key signs for root, patch and enroll, but not for policy.
    let signed = Signed::sign(&policy(later()), &[&fleet.root_key]);
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "system")
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Threshold {
                role: Role::Policy,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn signature_for_one_kind_does_not_verify_as_another() {
    let fleet = fleet(1);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    signed.kind = Kind::Approval;
    assert!(fleet.root.check_threshold(Role::Policy, &signed).is_err());
}

#[test]
fn rejects_expired_object_and_names_clock() {
    let fleet = fleet(1);
    let expired = Timestamp::now() - SignedDuration::from_secs(5);
    let signed = Signed::sign(&policy(expired), &[&fleet.policy_keys[0]]);
    let err = signed
        .verify::<Policy>(&fleet.root, Timestamp::now(), "test clock")
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("test clock"), "{err}");
}

#[test]
fn rejects_oversize_envelope_before_decoding() {
    let bytes = vec![0u8; limits::MAX_ENVELOPE_BYTES + 1];
    let err = Signed::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, VerifyError::Oversize { .. }), "{err}");
}

#[test]
fn rejects_too_many_signatures() {
    let fleet = fleet(1);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let extra = signed.signatures[0].clone();
    signed.signatures = vec![extra; limits::MAX_SIGNATURES + 1];
    let err = Signed::from_bytes(&signed.to_bytes()).unwrap_err();
    assert!(matches!(err, VerifyError::Oversize { .. }), "{err}");
}

#[test]
fn rejects_truncated_envelope() {
    let fleet = fleet(1);
    let bytes = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]).to_bytes();
    let err = Signed::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
}

#[test]
fn object_id_ignores_signatures() {
    let fleet = fleet(2);
    let mut signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let before = signed.id();
    signed.add_signature(&fleet.policy_keys[1]);
    assert_eq!(signed.id(), before);
    assert_eq!(signed.id(), Hash::of(&signed.payload));
}

#[test]
fn manifest_needs_patch_role() {
    let fleet = fleet(1);
    let manifest = Manifest {
        name: "demo".into(),
        version: "1".into(),
        revision: 1,
        issued: Timestamp::now(),
        expires: later(),
        vendor: "acme".into(),
        severity: Severity::Important,
        cvss: None,
        cves: vec![],
        released: None,
        size: 0,
        chunk_size: limits::DEFAULT_CHUNK_BYTES,
        chunks: vec![],
        payload_hash: Hash::of(b""),
        installer: Installer::Command {
            install: "true".into(),
            rollback: None,
            timeout_secs: 60,
        },
        detect: None,
        reboot_required: false,
        applies_to: Applicability::default(),
    };
    let by_policy_key = Signed::sign(&manifest, &[&fleet.policy_keys[0]]);
    assert!(by_policy_key
        .verify::<Manifest>(&fleet.root, Timestamp::now(), "system")
        .is_err());
    let by_patch_key = Signed::sign(&manifest, &[&fleet.root_key]);
    assert!(by_patch_key
        .verify::<Manifest>(&fleet.root, Timestamp::now(), "system")
        .is_ok());
}

#[test]
fn root_successor_needs_old_and_new_threshold() {
    let fleet = fleet(1);
    let new_key = SecretKey::generate();
    let mut next = fleet.root.clone();
    next.version = 2;
    next.keys.insert(new_key.id(), new_key.public());
    next.roles.insert(
        Role::Root,
        RoleKeys {
            keys: vec![new_key.id()],
            threshold: 1,
        },
    );
    let only_new = Signed::sign(&next, &[&new_key]);
    assert!(fleet.root.verify_successor(&only_new).is_err());
    let only_old = Signed::sign(&next, &[&fleet.root_key]);
    assert!(fleet.root.verify_successor(&only_old).is_err());
    let both = Signed::sign(&next, &[&fleet.root_key, &new_key]);
    assert_eq!(fleet.root.verify_successor(&both).map(|r| r.version), Ok(2));
}

#[test]
fn root_successor_must_be_next_version() {
    let fleet = fleet(1);
    let mut skip = fleet.root.clone();
    skip.version = 3;
    let signed = Signed::sign(&skip, &[&fleet.root_key]);
    let err = fleet.root.verify_successor(&signed).unwrap_err();
    assert!(matches!(err, VerifyError::RootVersionGap { .. }), "{err}");
}

#[test]
fn key_listed_twice_counts_once_toward_threshold() {
    let fleet = fleet(1);
    let mut root = fleet.root.clone();
    let key = fleet.policy_keys[0].id();
    root.roles.insert(
        Role::Policy,
        RoleKeys {
            keys: vec![key, key],
            threshold: 2,
        },
    );
    // One key listed twice is one distinct key, so a threshold of two can
    // never be met: the root itself is invalid.
    assert!(matches!(
        root.validate(),
        Err(patchmesh_protocol::root::RootError::BadThreshold { keys: 1, .. })
    ));
    let signed = Signed::sign(&policy(later()), &[&fleet.policy_keys[0]]);
    let err = signed
        .verify::<Policy>(&root, Timestamp::now(), "system")
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { valid: 1, .. }),
        "{err}"
    );
}
