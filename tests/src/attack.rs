//! Helpers shared by the attack tests: a hostile peer connected to a node,
//! the node's view of a peer, its log, and publishing raw object bytes.

use std::time::Duration;

use patchmesh_protocol::SecretKey;
use serde_json::Value;

use crate::hostile::{HostileConfig, HostilePeer};
use crate::{get_json, wait_until, Admin, Node};

/// Loads a secret key file from the admin's folder.
pub fn key(admin: &Admin, name: &str) -> SecretKey {
    let bytes = std::fs::read(admin.path(name)).expect("read key file");
    SecretKey::from_file_bytes(&bytes).expect("plain key file")
}

/// Creates a second admin key `name` and signs `root.bin` again with both
/// keys in every role, threshold 1; returns the new key.
pub fn add_second_key(admin: &Admin, name: &str) -> SecretKey {
    admin.signer_json(&["keygen", "--out", name]);
    admin.signer_json(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--key",
        name,
        "--out",
        "root.bin",
        "--force",
    ]);
    key(admin, name)
}

/// Starts a hostile peer with `config` and connects it to `node` over TCP
/// on loopback; the node then requests its summary.
pub fn connect_hostile(node: &Node, config: HostileConfig) -> HostilePeer {
    let hostile = HostilePeer::start(config).expect("hostile peer starts");
    let addr = node
        .addrs
        .iter()
        .find(|addr| addr.contains("/tcp/"))
        .expect("node listens on TCP");
    hostile.dial(addr).expect("dial the node");
    hostile
        .wait_connected(node.peer.parse().expect("peer id"), Duration::from_secs(20))
        .expect("hostile peer connects");
    hostile
}

/// Returns the settings of a hostile peer that offers `objects` by
/// anti-entropy.
pub fn offering(objects: Vec<Vec<u8>>) -> HostileConfig {
    HostileConfig {
        offered_objects: objects,
        ..HostileConfig::default()
    }
}

/// Returns `node`'s view of `peer` from `GET /v1/peers`.
pub fn peer_view(node: &Node, peer: &str) -> Option<Value> {
    let peers = get_json(&format!("{}/v1/peers", node.url))?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer)
        .cloned()
}

/// Waits up to `timeout` until `node`'s log has a line that contains every
/// one of `parts`.
pub fn wait_log_within(node: &Node, parts: &[&str], timeout: Duration) {
    wait_until(
        &format!("a log line of {} with {parts:?}", node.options.host),
        timeout,
        || {
            node.log()
                .lines()
                .any(|line| parts.iter().all(|part| line.contains(part)))
                .then_some(())
        },
    );
}

/// Waits up to 30 seconds until `node`'s log has a line that contains every
/// one of `parts`.
pub fn wait_log_line(node: &Node, parts: &[&str]) {
    wait_log_within(node, parts, Duration::from_secs(30));
}

/// Counts `node`'s log lines that contain every one of `parts`.
pub fn count_log_lines(node: &Node, parts: &[&str]) -> usize {
    node.log()
        .lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}

/// Publishes `bytes` as a file and returns the signer's exit status and
/// standard error.
pub fn publish_bytes(
    admin: &Admin,
    node: &Node,
    name: &str,
    bytes: &[u8],
) -> (Option<i32>, String) {
    let path = admin.path(name);
    std::fs::write(&path, bytes).expect("write object");
    let output = admin.publish(&node.url, &[&path]);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Checks that `node` penalised `hostile`: a blocked peer is no longer
/// listed, so the log must then name it.
pub fn assert_penalised(node: &Node, hostile: &HostilePeer) {
    let id = hostile.peer_id().to_base58();
    wait_log_line(node, &["peer penalised", &id]);
    if let Some(view) = peer_view(node, &id) {
        let penalty = view["penalty"].as_i64().unwrap_or(0);
        assert!(penalty > 0, "hostile peer not penalised: {view}");
    }
}

/// Checks that `node` holds nothing against `peer`.
pub fn assert_not_penalised(node: &Node, peer: &str) {
    let view = peer_view(node, peer).expect("peer listed");
    assert_eq!(view["penalty"], 0, "peer penalised: {view}");
    assert_eq!(
        count_log_lines(node, &["peer penalised", peer]),
        0,
        "the log penalises {peer}"
    );
}
