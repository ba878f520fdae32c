//! Reboot handling on a test clock that runs 30 times faster than the
//! system clock: the notice and reboot commands run in order at the times
//! the policy sets, and a user may postpone only `max_postpone` times.
//!
//! The policy sets a notice 5 minutes ahead, one postponement of 5
//! minutes and a deadline 8 minutes after the install. One node does not
//! postpone: it is told at install time of a reboot 5 minutes later and
//! reboots then. The other postpones once: its planned reboot moves to 10
//! minutes after the install, the deadline caps it at 8, a second notice
//! goes out 5 minutes ahead of that, and it reboots at the deadline.

use std::time::Duration;

use jiff::Timestamp;
use patchmesh_node::config::Commands;
use patchmesh_tests::{
    last_json, patch_status, policy_header, random_bytes, wait_until, Admin, Node, NodeOptions,
    INSTALL_COMMAND,
};

/// Test seconds per real second on both nodes.
const SPEED: f64 = 30.0;

/// Allowed lateness of a command, in test seconds: nodes step once a real
/// second, which is 30 test seconds, and the machine is shared.
const LATE_SECS: f64 = 100.0;

/// Allowed earliness of a command, in test seconds, for the rounding of the
/// recorded times.
const EARLY_SECS: f64 = 5.0;

/// One line of a node's `calls.log`.
#[derive(Debug)]
struct Call {
    /// `notify` or `reboot`.
    kind: String,
    /// Real time of the call, in unix seconds.
    real: f64,
    /// Reboot time the notice announces, by the node's test clock.
    reboot_at: Option<Timestamp>,
}

fn recording_commands() -> Commands {
    Commands {
        notify: Some("echo \"notify $(date +%s.%N) \"{message} >> calls.log".into()),
        reboot: Some("echo \"reboot $(date +%s.%N)\" >> calls.log".into()),
        ..Commands::default()
    }
}

fn calls(node: &Node) -> Vec<Call> {
    let text = std::fs::read_to_string(node.data_dir().join("calls.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ');
            let kind = words.next().expect("kind").to_string();
            let real = words.next().expect("time").parse().expect("unix seconds");
            let reboot_at = words.next().map(|message| {
                let at = message
                    .rsplit_once("(at ")
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("no reboot time in notice {message:?}"));
                at.parse().expect("reboot time")
            });
            Call {
                kind,
                real,
                reboot_at,
            }
        })
        .collect()
}

/// Returns the test seconds between two calls.
fn test_secs_between(earlier: &Call, later: &Call) -> f64 {
    (later.real - earlier.real) * SPEED
}

fn assert_near(check: &str, actual: f64, expected: f64) {
    assert!(
        actual >= expected - EARLY_SECS && actual <= expected + LATE_SECS,
        "{check}: {actual:.0} test seconds, expected {expected:.0} (at most {EARLY_SECS} early, {LATE_SECS} late)"
    );
}

/// Returns the node's own report entry for `patch`.
fn own_entry(node: &Node, patch: &str) -> Option<serde_json::Value> {
    patch_status(&node.status()?, &node.options.host, patch)
}

/// Returns when `node` installed `patch`, by its test clock, while it
/// reports the reboot pending.
fn reboot_pending_since(node: &Node, patch: &str) -> Option<Timestamp> {
    let entry = own_entry(node, patch)?;
    if entry["state"] != "reboot_pending" {
        return None;
    }
    let since = entry["since"].as_str().expect("since");
    Some(since.parse().expect("timestamp"))
}

fn postpone(node: &Node) -> u64 {
    let output = std::process::Command::new(&patchmesh_tests::binaries().node)
        .args(["reboot", "postpone", "--node", &node.url])
        .output()
        .expect("patchmesh-node runs");
    assert!(
        output.status.success(),
        "reboot postpone failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    last_json(&output)["postponed"]
        .as_u64()
        .expect("postponed count")
}

#[test]
fn reboot_notice_then_reboot_in_order() {
    let admin = Admin::new();
    let options = |host: &str| {
        NodeOptions::new(host, "hq")
            .clock_speed(SPEED)
            .commands(recording_commands())
    };
    let steady = Node::start(&admin, options("steady").observer());
    let postponer = Node::start(&admin, options("postponer").bootstrap(&steady));
    steady.wait_for_peers(1);

    let patch = admin.add_patch_with(
        "kernel",
        "1",
        &random_bytes(64 * 1024),
        &[
            "--severity",
            "important",
            "--install",
            INSTALL_COMMAND,
            "--reboot",
        ],
    );
    let policy = admin.sign_policy_text(
        "reboots",
        &format!(
            "{}[content]\npatches = [\"{}\"]\n\n\
             [reboot]\nmode = \"if_required\"\nnotify_before = \"5m\"\n\
             message = \"Restarting to finish updates.\"\nmax_postpone = 1\n\
             postpone_by = \"5m\"\ndeadline = \"8m\"\n",
            policy_header("reboots"),
            patch.reference
        ),
    );
    admin.publish_ok(&steady.url, &[&patch.dir, &policy]);

    // Postpone on one node as soon as its reboot is pending. The second
    // request is over `max_postpone` and is rejected.
    let (steady_installed, postponer_installed) = wait_until(
        "both nodes to report a pending reboot",
        Duration::from_secs(40),
        || {
            Some((
                reboot_pending_since(&steady, &patch.reference)?,
                reboot_pending_since(&postponer, &patch.reference)?,
            ))
        },
    );
    assert_eq!(postpone(&postponer), 1, "first postponement accepted");
    assert_eq!(postpone(&postponer), 0, "second postponement rejected");

    for node in [&steady, &postponer] {
        wait_until(
            &format!("{} to reboot", node.options.host),
            Duration::from_secs(40),
            || {
                let entry = own_entry(node, &patch.reference)?;
                (entry["state"] == "installed").then_some(())
            },
        );
    }

    // Without a postponement: the notice at install, for 5 minutes later,
    // then the reboot 5 minutes after the notice.
    let steady_calls = calls(&steady);
    let kinds: Vec<&str> = steady_calls.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["notify", "reboot"], "calls of steady");
    let announced = steady_calls[0].reboot_at.expect("reboot time in notice");
    assert_eq!(
        announced.duration_since(steady_installed).as_secs(),
        300,
        "steady's announced reboot after install"
    );
    assert_near(
        "steady's reboot after its notice",
        test_secs_between(&steady_calls[0], &steady_calls[1]),
        300.0,
    );

    // With one postponement: the reboot moves from 5 to 10 minutes after
    // the install, the deadline caps it at 8, and a new notice goes out 5
    // minutes before it.
    let postponer_calls = calls(&postponer);
    let kinds: Vec<&str> = postponer_calls.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["notify", "notify", "reboot"], "calls of postponer");
    let first = postponer_calls[0].reboot_at.expect("reboot time in notice");
    let second = postponer_calls[1].reboot_at.expect("reboot time in notice");
    assert_eq!(
        first.duration_since(postponer_installed).as_secs(),
        300,
        "postponer's first announced reboot after install"
    );
    assert_eq!(
        second.duration_since(postponer_installed).as_secs(),
        480,
        "postponer's reboot after install, capped by the deadline"
    );
    assert_near(
        "postponer's second notice after its first",
        test_secs_between(&postponer_calls[0], &postponer_calls[1]),
        180.0,
    );
    assert_near(
        "postponer's reboot after its first notice",
        test_secs_between(&postponer_calls[0], &postponer_calls[2]),
        480.0,
    );

    let entry = own_entry(&postponer, &patch.reference).expect("reported");
    assert_eq!(entry["detail"], "rebooted");
}
