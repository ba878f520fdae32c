//! A two-wave policy whose pilot host fails to install keeps the broad wave
//! waiting: its hosts never download or install the patch, however long
//! after the pilot's soak.

use std::time::{Duration, Instant};

use patchmesh_tests::{
    patch_state, policy_header, random_bytes, wait_until, Admin, Node, NodeOptions,
};

/// Install command that fails on a node whose data folder has a file named
/// `install.fails` and otherwise copies the payload to `installed.bin`.
const INSTALL_UNLESS_MARKED: &str = "test ! -e install.fails && cp {payload} installed.bin";

/// Soak of the pilot wave, in seconds.
const SOAK_SECS: u64 = 10;

const BROAD_HOSTS: [&str; 3] = ["obs", "b1", "b2"];

#[test]
fn failing_pilot_holds_broad_wave() {
    let admin = Admin::new();
    let observer = Node::start(&admin, NodeOptions::new("obs", "hq").observer());
    let pilot = Node::start(&admin, NodeOptions::new("pilot", "hq").bootstrap(&observer));
    let broad: Vec<Node> = ["b1", "b2"]
        .into_iter()
        .map(|host| Node::start(&admin, NodeOptions::new(host, "hq").bootstrap(&observer)))
        .collect();
    observer.wait_for_peers(3);
    std::fs::write(pilot.data_dir().join("install.fails"), "").expect("write marker");

    // The soak counts from the approval, which an automatic policy takes
    // from the patch's signing time, so sign the patch just before
    // publishing it.
    let patch = admin.add_patch_with(
        "waved",
        "1",
        &random_bytes(100 * 1024),
        &[
            "--severity",
            "important",
            "--install",
            INSTALL_UNLESS_MARKED,
        ],
    );
    let policy = admin.sign_policy_text(
        "two-waves",
        &format!(
            "{}[content]\npatches = [\"{}\"]\n\n\
             [[waves]]\nname = \"pilot\"\nhosts = [\"pilot\"]\nsoak = \"{SOAK_SECS}s\"\n\
             max_failure_ratio = 0.0\n\n\
             [[waves]]\nname = \"broad\"\npercent = 100\n",
            policy_header("two-waves"),
            patch.reference
        ),
    );
    admin.publish_ok(&observer.url, &[&patch.dir, &policy]);
    let published = Instant::now();

    wait_until(
        "the pilot to report its failed install",
        Duration::from_secs(30),
        || {
            let status = observer.status()?;
            (patch_state(&status, "pilot", &patch.reference)?.as_str() == "failed").then_some(())
        },
    );

    // Watch the broad wave until well past the pilot's soak. Its hosts
    // must not go past approval: not downloading, not installing.
    let watch_until = published + Duration::from_secs(SOAK_SECS + 10);
    let mut seen = false;
    while Instant::now() < watch_until {
        let status = observer.status().expect("observer status");
        for host in BROAD_HOSTS {
            let state = patch_state(&status, host, &patch.reference);
            if let Some(state) = state {
                seen = true;
                assert!(
                    state == "pending" || state == "approved",
                    "{host} moved to {state} although the pilot wave failed"
                );
            }
        }
        for node in std::iter::once(&observer).chain(&broad) {
            assert_eq!(
                node.installed_hash(),
                None,
                "{} installed although the pilot wave failed",
                node.options.host
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(seen, "no broad host reported the patch");

    // The pilot stays failed and installed nothing.
    let status = observer.status().expect("observer status");
    assert_eq!(
        patch_state(&status, "pilot", &patch.reference).as_deref(),
        Some("failed")
    );
    assert_eq!(pilot.installed_hash(), None);

    // The admin's status view places the hosts in their waves.
    let policy_arg = policy.to_string_lossy();
    let view = admin.signer_json(&["status", "--node", &observer.url, "--policy", &policy_arg]);
    let summary = &view["policies"][0];
    assert_eq!(summary["policy"], "two-waves");
    assert_eq!(summary["hosts"], 4);
    let waves = summary["waves"].as_array().expect("waves listed");
    assert_eq!(waves.len(), 2, "{waves:?}");
    assert_eq!(waves[0]["wave"], "pilot");
    assert_eq!(waves[0]["members"], 1);
    assert_eq!(waves[0]["failure_ratio"], 1.0);
    assert_eq!(waves[1]["wave"], "broad");
    assert_eq!(waves[1]["members"], 3);
    assert_eq!(waves[1]["reported_final"], 0);
    assert_eq!(summary["failure_ratio"], 1.0);
}
