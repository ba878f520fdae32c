//! A signed rollback order makes every node run the patch's rollback
//! command, which puts back the file the install replaced, and report the
//! patch rolled back.

use std::time::Duration;

use patchmesh_tests::{
    patch_status, policy_header, random_bytes, wait_installed, wait_state, Admin, Node,
    NodeOptions, INSTALLED_FILE,
};

/// Keeps the file in use as `installed.prev`, then installs the payload.
const INSTALL_KEEPING_PREVIOUS: &str =
    "cp installed.bin installed.prev && cp {payload} installed.bin";

/// Puts the kept file back.
const ROLLBACK_TO_PREVIOUS: &str = "mv installed.prev installed.bin";

const HOSTS: [&str; 3] = ["n0", "n1", "n2"];

fn previous_release(host: &str) -> Vec<u8> {
    format!("release 1 as installed on {host}\n").into_bytes()
}

#[test]
fn rollback_order_restores_previous_file() {
    let admin = Admin::new();
    let observer = Node::start(&admin, NodeOptions::new("n0", "hq").observer());
    let others: Vec<Node> = [("n1", "hq"), ("n2", "branch")]
        .into_iter()
        .map(|(host, site)| Node::start(&admin, NodeOptions::new(host, site).bootstrap(&observer)))
        .collect();
    observer.wait_for_peers(2);
    let nodes: Vec<&Node> = std::iter::once(&observer).chain(&others).collect();
    for node in &nodes {
        let previous = previous_release(&node.options.host);
        std::fs::write(node.data_dir().join(INSTALLED_FILE), previous).expect("write release 1");
    }

    let patch = admin.add_patch_with(
        "app",
        "2",
        &random_bytes(150 * 1024),
        &[
            "--severity",
            "important",
            "--install",
            INSTALL_KEEPING_PREVIOUS,
            "--rollback",
            ROLLBACK_TO_PREVIOUS,
        ],
    );
    let policy = admin.sign_policy_text(
        "app-release",
        &format!(
            "{}[content]\npatches = [\"{}\"]\n",
            policy_header("app-release"),
            patch.reference
        ),
    );
    admin.publish_ok(&observer.url, &[&patch.dir, &policy]);
    wait_installed(&observer, &HOSTS, &patch.reference, Duration::from_secs(60));
    for node in &nodes {
        assert_eq!(
            node.installed_hash().as_deref(),
            Some(patch.payload_hash.as_str()),
            "installed file of {}",
            node.options.host
        );
    }

    let order = admin.sign_action(
        &[
            "rollback",
            "--policy",
            "app-release",
            "--patch",
            &patch.reference,
            "--reason",
            "release 2 corrupts settings",
        ],
        "rollback.bin",
    );
    admin.publish_ok(&observer.url, &[&order]);
    wait_state(
        &observer,
        &HOSTS,
        &patch.reference,
        "rolled_back",
        Duration::from_secs(30),
    );

    let status = observer.status().expect("observer status");
    for node in &nodes {
        let host = node.options.host.as_str();
        let file = std::fs::read(node.data_dir().join(INSTALLED_FILE)).expect("installed file");
        assert_eq!(
            file,
            previous_release(host),
            "file of {host} after rollback"
        );
        let entry = patch_status(&status, host, &patch.reference).expect("reported");
        assert_eq!(entry["detail"], "rolled back", "detail of {host}");
    }

    // The order stays in force: no node installs release 2 again.
    std::thread::sleep(Duration::from_secs(6));
    for node in &nodes {
        let host = node.options.host.as_str();
        let file = std::fs::read(node.data_dir().join(INSTALLED_FILE)).expect("installed file");
        assert_eq!(file, previous_release(host), "file of {host} later on");
    }
}
