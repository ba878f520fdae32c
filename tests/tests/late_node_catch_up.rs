//! A node that starts after a policy was published gets it by anti-entropy
//! from its peers and installs the patch.

use std::time::Duration;

use patchmesh_tests::{random_bytes, wait_installed, Admin, Node, NodeOptions};

#[test]
fn late_node_installs_by_anti_entropy() {
    let admin = Admin::new();
    let payload = random_bytes(600 * 1024);
    let patch = admin.add_patch("late", &payload, 64 * 1024);
    let policy = admin.sign_policy("late", &[&patch.reference], "admin.key");

    let observer = Node::start(&admin, NodeOptions::new("n0", "site-a").observer());
    let early = Node::start(
        &admin,
        NodeOptions::new("n1", "site-a").bootstrap(&observer),
    );
    observer.wait_for_peers(1);
    admin.publish_ok(&observer.url, &[&patch.dir, &policy]);
    wait_installed(
        &observer,
        &["n0", "n1"],
        &patch.reference,
        Duration::from_secs(60),
    );

    // The gossip is over; the late node bootstraps to the early node only
    // and must ask for what it missed.
    let late = Node::start(&admin, NodeOptions::new("n2", "site-b").bootstrap(&early));
    wait_installed(
        &observer,
        &["n2"],
        &patch.reference,
        Duration::from_secs(60),
    );
    assert_eq!(
        late.installed_hash().as_deref(),
        Some(patch.payload_hash.as_str())
    );
}
