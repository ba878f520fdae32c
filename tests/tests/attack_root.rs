//! Trust root attacks against real nodes: a node that was offline walks a
//! chain of rotations, a root that skips a version is refused, a key that a
//! new root removed can no longer sign, a leaked key's huge policy version
//! stops blocking the fleet once the key is rotated out (fast-forward
//! recovery), and a clock set back cannot revive an expired policy.

use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::Policy;
use patchmesh_tests::attack::{add_second_key, connect_hostile, key, publish_bytes, wait_log_line};
use patchmesh_tests::hostile::{forge, HostileConfig};
use patchmesh_tests::{Admin, Node, NodeOptions};

/// Signs root version `from + 1` from `root-{from}.bin` (or `root.bin` for
/// version 1) with `admin.key`, removing `remove` when given; returns its path.
fn rotate(admin: &Admin, from: u64, remove: Option<&str>) -> PathBuf {
    let current = if from == 1 {
        "root.bin".to_string()
    } else {
        format!("root-{from}.bin")
    };
    let out = format!("root-{}.bin", from + 1);
    let mut args = vec![
        "root",
        "rotate",
        "--root",
        &current,
        "--key",
        "admin.key",
        "--out",
        &out,
    ];
    if let Some(id) = remove {
        args.extend(["--remove-key", id]);
    }
    admin.signer_json(&args);
    admin.path(&out)
}

#[test]
fn offline_node_walks_root_rotations() {
    let admin = Admin::new();
    let online = Node::start(&admin, NodeOptions::new("online", "site-a"));
    let mut offline = Node::start(
        &admin,
        NodeOptions::new("offline", "site-a").bootstrap(&online),
    );
    online.wait_for_peers(1);
    offline.kill();

    let roots: Vec<PathBuf> = (1..=3).map(|from| rotate(&admin, from, None)).collect();
    for root in &roots {
        admin.publish_ok(&online.url, &[root]);
    }
    wait_log_line(&online, &["trusted root rotated", "version=4"]);

    // The restarted node dials its bootstrap peer and fetches versions 2, 3
    // and 4 by anti-entropy, each verified against the one before.
    offline.restart();
    for version in ["version=2", "version=3", "version=4"] {
        wait_log_line(&offline, &["trusted root rotated", version]);
    }
}

#[test]
fn root_chain_gap_is_refused() {
    let admin = Admin::new();
    let node = Node::start(&admin, NodeOptions::new("target", "site-a"));
    rotate(&admin, 1, None);
    let skipping = std::fs::read(rotate(&admin, 2, None)).expect("read root 3");

    let (code, stderr) = publish_bytes(&admin, &node, "skip.root", &skipping);
    assert_eq!(
        code,
        Some(1),
        "a root that skips version 2 is refused: {stderr}"
    );
    assert!(
        stderr.contains("does not follow"),
        "error names the gap: {stderr}"
    );

    // The same root by gossip is refused and its sender penalised.
    let hostile = connect_hostile(&node, HostileConfig::default());
    hostile.gossip(skipping).expect("gossip root 3");
    let hostile_id = hostile.peer_id().to_base58();
    wait_log_line(
        &node,
        &["rejected gossiped object", &hostile_id, "does not follow"],
    );
    wait_log_line(&node, &["peer penalised", &hostile_id]);
    assert!(
        !node.log().contains("trusted root rotated"),
        "the node rotated its root"
    );
}

#[test]
fn key_removed_by_new_root_is_refused() {
    let admin = Admin::new();
    let revoked = add_second_key(&admin, "revoked.key");
    let node = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let policy =
        std::fs::read(admin.sign_policy("p", &["demo@1"], "revoked.key")).expect("read policy");

    // Before the rotation the key is trusted.
    let (code, stderr) = publish_bytes(&admin, &node, "before.policy", &policy);
    assert_eq!(
        code,
        Some(0),
        "policy by a listed key is accepted: {stderr}"
    );

    let id = revoked.id().to_string();
    admin.publish_ok(&node.url, &[&rotate(&admin, 1, Some(&id))]);
    let newer =
        forge::resign::<Policy>(&policy, &[&revoked], |p| p.version = 2).expect("sign version 2");
    let (code, stderr) = publish_bytes(&admin, &node, "after.policy", &newer);
    assert_eq!(
        code,
        Some(1),
        "policy by a removed key is refused: {stderr}"
    );
    assert!(
        stderr.contains(&revoked.id().short()),
        "error names the key: {stderr}"
    );
    assert!(
        stderr.contains("which root version 2 removed from role \"policy\""),
        "error names the root version that removed the key: {stderr}"
    );
    assert!(
        stderr.contains("Re-sign it with a current policy key"),
        "error says what to do: {stderr}"
    );
}

#[test]
fn leaked_key_fast_forward_recovers_after_rotation() {
    let admin = Admin::new();
    let leaked = add_second_key(&admin, "leaked.key");
    let node = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let genuine =
        std::fs::read(admin.sign_policy("p", &["demo@1"], "admin.key")).expect("read policy");

    // The thief pushes version 2^62 with the leaked key.
    let pushed = forge::resign::<Policy>(&genuine, &[&leaked], |p| p.version = 1 << 62)
        .expect("sign huge version");
    let (code, stderr) = publish_bytes(&admin, &node, "pushed.policy", &pushed);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = publish_bytes(&admin, &node, "genuine.policy", &genuine);
    assert_eq!(code, Some(1), "blocked before the rotation: {stderr}");
    assert!(stderr.contains("rollback"), "{stderr}");

    // Rotating the leaked key out frees the slot.
    let id = leaked.id().to_string();
    admin.publish_ok(&node.url, &[&rotate(&admin, 1, Some(&id))]);
    wait_log_line(&node, &["slot reset"]);
    let (code, stderr) = publish_bytes(&admin, &node, "genuine-again.policy", &genuine);
    assert_eq!(
        code,
        Some(0),
        "low version accepted after the rotation: {stderr}"
    );
    let (code, stderr) = publish_bytes(&admin, &node, "pushed-again.policy", &pushed);
    assert_eq!(
        code,
        Some(1),
        "the leaked key's object stays refused: {stderr}"
    );
}

#[test]
fn clock_set_back_cannot_revive_expired_policy() {
    let admin = Admin::new();
    let node = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let admin_key = key(&admin, "admin.key");
    let base =
        std::fs::read(admin.sign_policy("p", &["demo@1"], "admin.key")).expect("read policy");

    // Another policy was signed two hours from now. The node raises its
    // newest signing time seen to that, capped at an hour ahead of its
    // clock, and judges expiry by it from then on.
    let later = forge::resign::<Policy>(&base, &[&admin_key], |p| {
        p.id = "later".into();
        p.issued = Timestamp::now() + SignedDuration::from_hours(2);
    })
    .expect("sign later policy");
    let (code, stderr) = publish_bytes(&admin, &node, "later.policy", &later);
    assert_eq!(code, Some(0), "{stderr}");

    // This one expires in 30 minutes: valid by the node's clock, expired by
    // the newest signing time the node has seen.
    let stale = forge::resign::<Policy>(&base, &[&admin_key], |p| {
        p.version = 2;
        p.expires = Timestamp::now() + SignedDuration::from_mins(30);
    })
    .expect("sign stale policy");
    let (code, stderr) = publish_bytes(&admin, &node, "stale.policy", &stale);
    assert_eq!(code, Some(1), "expired policy accepted: {stderr}");
    assert!(stderr.contains("newest signing time seen"), "{stderr}");
}
