//! Scenarios that need real networks: they build their own network
//! namespaces, links shaped with tc, bridges and routers, run real node
//! processes in them and clean up after themselves. They need root and
//! iproute2; without them each test says so and passes without running.

use std::process::Command;
use std::sync::Mutex;

use patchmesh_tests::{binaries, can_build_namespaces};

/// Lock held while a scenario runs. The scenarios measure WAN bytes and
/// times on shaped links, so they run one at a time rather than competing
/// for the same cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs a scenario script from the repository and fails with its output
/// when it exits non-zero.
fn run_scenario(script: &str, args: &[&str]) {
    // A failed scenario poisons the lock, and the others still run.
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !can_build_namespaces(&["ip", "tc"]) {
        eprintln!("skipped {script}: needs root, ip and tc to build network namespaces");
        return;
    }
    let bin_dir = binaries()
        .node
        .parent()
        .expect("binaries live in a folder")
        .to_path_buf();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new("bash")
        .arg(format!("{repo}/{script}"))
        .args(args)
        .env("PATCHMESH_BIN", &bin_dir)
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn branch_offices_pull_each_chunk_over_wan_once() {
    run_scenario(
        "bench/branch_offices.sh",
        &[
            "--mode",
            "sharing",
            "--check",
            "--json",
            "--size-mib",
            "32",
            "--max-ratio",
            "1.10",
        ],
    );
}

#[test]
fn airgapped_site_installs_from_bundle_and_reports_back() {
    run_scenario("tests/netns/airgap.sh", &[]);
}

#[test]
fn site_behind_relay_pulls_patch_across_once() {
    // The script checks that the site took exactly one copy of the chunk
    // bytes. The wire limit leaves room for QUIC retransmissions on the
    // shaped link, where runs measured 1.053 to 1.12.
    run_scenario("tests/netns/relay.sh", &["16", "1.20"]);
}

#[test]
fn nodes_behind_nat_meet_through_relay_circuit() {
    run_scenario("tests/netns/nat.sh", &["4"]);
}
