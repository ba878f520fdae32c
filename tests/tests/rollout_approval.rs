//! A policy with `approval.mode = "manual"` keeps every node waiting until the
//! admin publishes a signed approval. Then every node installs the patch.

use std::time::{Duration, Instant};

use patchmesh_tests::{
    patch_status, policy_header, random_bytes, wait_installed, wait_state, Admin, Node, NodeOptions,
};

const HOSTS: [&str; 3] = ["n0", "n1", "n2"];

#[test]
fn manual_policy_installs_only_after_approval() {
    let admin = Admin::new();
    let payload = random_bytes(200 * 1024);
    let patch = admin.add_patch("manual", &payload, 64 * 1024);
    let policy = admin.sign_policy_text(
        "manual-approval",
        &format!(
            "{}[content]\npatches = [\"{}\"]\n\n[approval]\nmode = \"manual\"\n",
            policy_header("manual-approval"),
            patch.reference
        ),
    );

    let observer = Node::start(&admin, NodeOptions::new("n0", "hq").observer());
    let others: Vec<Node> = ["n1", "n2"]
        .into_iter()
        .map(|host| Node::start(&admin, NodeOptions::new(host, "hq").bootstrap(&observer)))
        .collect();
    observer.wait_for_peers(2);
    admin.publish_ok(&observer.url, &[&patch.dir, &policy]);

    // Every node takes the policy and reports the patch as pending.
    wait_state(
        &observer,
        &HOSTS,
        &patch.reference,
        "pending",
        Duration::from_secs(30),
    );

    // Without an approval, nothing moves. Nodes step at least every five
    // seconds, so eight seconds cover more than one step on each.
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until {
        let status = observer.status().expect("observer status");
        for host in HOSTS {
            let entry = patch_status(&status, host, &patch.reference).expect("reported");
            assert_eq!(entry["state"], "pending", "state of {host} before approval");
            assert_eq!(
                entry["detail"], "awaiting approval",
                "detail of {host} before approval"
            );
        }
        for node in std::iter::once(&observer).chain(&others) {
            assert_eq!(
                node.installed_hash(),
                None,
                "{} installed before approval",
                node.options.host
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    let approval = admin.sign_action(&["approve", "--policy", "manual-approval"], "approve.bin");
    admin.publish_ok(&observer.url, &[&approval]);
    wait_installed(&observer, &HOSTS, &patch.reference, Duration::from_secs(60));
    for node in std::iter::once(&observer).chain(&others) {
        assert_eq!(
            node.installed_hash().as_deref(),
            Some(patch.payload_hash.as_str()),
            "installed file of {}",
            node.options.host
        );
    }
}
