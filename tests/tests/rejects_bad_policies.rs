//! A policy signed by an unknown key, or one whose payload was changed after
//! signing, is rejected by the node it is published to and never reaches
//! the other nodes, while the genuine policy does.

use std::path::Path;
use std::time::Duration;

use patchmesh_protocol::Signed;
use patchmesh_tests::{random_bytes, reported_patches, wait_installed, Admin, Node, NodeOptions};

/// Publishes `bad` to the observer, checks the rejection and that no node
/// starts on a patch, then publishes `good` and checks that it installs.
fn check_rejected(admin: &Admin, bad: &Path, good: &Path, patch_dir: &Path, expected: &str) {
    let observer = Node::start(admin, NodeOptions::new("n0", "site-a").observer());
    let other = Node::start(admin, NodeOptions::new("n1", "site-b").bootstrap(&observer));
    observer.wait_for_peers(1);
    admin.publish_ok(&observer.url, &[patch_dir]);

    let output = admin.publish(&observer.url, &[bad]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "publish exit status; stderr: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "publish stderr names the failure: {stderr}"
    );

    // Give gossip and reports time to carry anything that leaked.
    std::thread::sleep(Duration::from_secs(4));
    let status = observer.status().expect("observer status");
    for host in ["n0", "n1"] {
        let patches = reported_patches(&status, host).unwrap_or_default();
        assert!(
            patches.is_empty(),
            "{host} acted on a rejected policy: {patches:?}"
        );
    }
    assert!(
        other.installed_hash().is_none(),
        "n1 installed from a rejected policy"
    );

    admin.publish_ok(&observer.url, &[good]);
    wait_installed(
        &observer,
        &["n0", "n1"],
        "guarded@1",
        Duration::from_secs(60),
    );
}

#[test]
fn forged_policy_rejected_not_forwarded() {
    let admin = Admin::new();
    let patch = admin.add_patch("guarded", &random_bytes(100_000), 64 * 1024);
    admin.signer_json(&["keygen", "--out", "intruder.key"]);
    let forged = admin.sign_policy("guarded", &[&patch.reference], "intruder.key");
    let genuine = admin.sign_policy("guarded", &[&patch.reference], "admin.key");
    check_rejected(&admin, &forged, &genuine, &patch.dir, "unknown");
}

#[test]
fn tampered_policy_rejected_not_forwarded() {
    let admin = Admin::new();
    let patch = admin.add_patch("guarded", &random_bytes(100_000), 64 * 1024);
    let genuine = admin.sign_policy("guarded", &[&patch.reference], "admin.key");
    let bytes = std::fs::read(&genuine).expect("read signed policy");

    // Change one letter of the policy id, so the payload still decodes and
    // only the signatures stop matching.
    let mut signed = Signed::from_bytes(&bytes).expect("signed policy");
    let at = signed
        .payload
        .windows(7)
        .position(|w| w == b"guarded")
        .expect("the payload contains the policy id");
    signed.payload[at] ^= 0x01;
    let tampered = admin.path("tampered.policy");
    std::fs::write(&tampered, signed.to_bytes()).expect("write");
    check_rejected(&admin, &tampered, &genuine, &patch.dir, "signature");
}
