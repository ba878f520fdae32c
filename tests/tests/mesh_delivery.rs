//! A mesh of real nodes in two sites installs one signed patch, and every
//! node's installed file has the payload's hash. One payload published
//! under two patch names installs under both.

use std::time::Duration;

use patchmesh_tests::{patch_status, random_bytes, wait_installed, Admin, Node, NodeOptions};

#[test]
fn four_nodes_in_two_sites_install_patch() {
    let admin = Admin::new();
    let payload = random_bytes(3 * 1024 * 1024 + 12_345);
    let patch = admin.add_patch("mesh", &payload, 256 * 1024);
    let policy = admin.sign_policy("mesh", &[&patch.reference], "admin.key");

    let observer = Node::start(&admin, NodeOptions::new("n0", "site-a").observer());
    let others: Vec<Node> = [("n1", "site-b"), ("n2", "site-a"), ("n3", "site-b")]
        .into_iter()
        .map(|(host, site)| Node::start(&admin, NodeOptions::new(host, site).bootstrap(&observer)))
        .collect();
    observer.wait_for_peers(3);

    admin.publish_ok(&observer.url, &[&patch.dir, &policy]);
    let hosts = ["n0", "n1", "n2", "n3"];
    wait_installed(&observer, &hosts, &patch.reference, Duration::from_secs(90));

    let status = observer.status().expect("observer status");
    for node in std::iter::once(&observer).chain(&others) {
        let host = node.options.host.as_str();
        assert_eq!(
            node.installed_hash().as_deref(),
            Some(patch.payload_hash.as_str()),
            "installed file of {host}"
        );
        let entry = patch_status(&status, host, &patch.reference).expect("reported");
        assert_eq!(
            entry["payload_hash"], patch.payload_hash,
            "reported hash of {host}"
        );
    }

    // Site b pulls the payload across sites about once and shares it on its LAN.
    let site_b_cross: u64 = ["n1", "n3"]
        .iter()
        .map(|host| {
            let entry = patch_status(&status, host, &patch.reference).expect("reported");
            entry["bytes_cross_site"]
                .as_u64()
                .expect("bytes_cross_site")
        })
        .sum();
    assert!(
        site_b_cross < 2 * payload.len() as u64,
        "site b fetched {site_b_cross} bytes across sites for a {} byte payload",
        payload.len()
    );
}

#[test]
fn same_payload_under_two_names_installs_both() {
    let admin = Admin::new();
    let payload = random_bytes(200_000);
    // One package published twice, as for two product lines. The two
    // manifests differ only in name.
    let first = admin.add_patch("pkg-server", &payload, 64 * 1024);
    let second = admin.add_patch("pkg-desktop", &payload, 64 * 1024);
    assert_eq!(first.payload_hash, second.payload_hash);
    let policy = admin.sign_policy("both", &[&first.reference, &second.reference], "admin.key");

    let node = Node::start(&admin, NodeOptions::new("n0", "site-a").observer());
    admin.publish_ok(&node.url, &[&first.dir, &second.dir, &policy]);
    for patch in [&first, &second] {
        wait_installed(&node, &["n0"], &patch.reference, Duration::from_secs(60));
    }

    let status = node.status().expect("node status");
    for patch in [&first, &second] {
        let entry = patch_status(&status, "n0", &patch.reference).expect("reported");
        assert_eq!(
            entry["payload_hash"], patch.payload_hash,
            "reported hash of {}",
            patch.reference
        );
    }
    assert_eq!(
        node.installed_hash().as_deref(),
        Some(first.payload_hash.as_str()),
        "installed file"
    );
}
