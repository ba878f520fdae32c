//! Helpers shared by the attack tests: a hostile peer connected to a node,
//! the node's view of a peer, its log, publishing raw object bytes, and a
//! target node with an honest neighbour.

use std::time::Duration;

use patchmesh_protocol::SecretKey;
use serde_json::Value;

use crate::hostile::{HostileConfig, HostilePeer};
use crate::{get_json, random_bytes, wait_installed, wait_until, Admin, Node, NodeOptions, Patch};

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

/// Starts a target node (observer, so it keeps its own report) and an
/// honest neighbour that dials it.
pub fn start_target_and_honest(admin: &Admin) -> (Node, Node) {
    let target = Node::start(admin, NodeOptions::new("target", "site-a").observer());
    let honest = Node::start(
        admin,
        NodeOptions::new("honest", "site-a").bootstrap(&target),
    );
    target.wait_for_peers(1);
    (target, honest)
}

/// Waits until `target` reports `patch` installed and checks the file its
/// install command wrote.
pub fn assert_installs(target: &Node, patch: &Patch) {
    wait_installed(
        target,
        &[target.options.host.as_str()],
        &patch.reference,
        Duration::from_secs(60),
    );
    assert_eq!(
        target.installed_hash().as_deref(),
        Some(patch.payload_hash.as_str())
    );
}

/// A target node and its honest neighbour, a patch published to the
/// target, and a genuine policy for it that is not published yet.
pub struct Scene {
    pub admin: Admin,
    pub target: Node,
    pub honest: Node,
    pub patch: Patch,
    /// Signed policy bytes.
    pub genuine: Vec<u8>,
}

impl Scene {
    /// Starts both nodes and publishes the patch `guarded@1` to the target.
    pub fn start() -> Scene {
        let admin = Admin::new();
        let patch = admin.add_patch("guarded", &random_bytes(100_000), 64 * 1024);
        let genuine_path = admin.sign_policy("guarded", &[&patch.reference], "admin.key");
        let genuine = std::fs::read(genuine_path).expect("read genuine policy");
        let (target, honest) = start_target_and_honest(&admin);
        admin.publish_ok(&target.url, &[&patch.dir]);
        Scene {
            admin,
            target,
            honest,
            patch,
            genuine,
        }
    }

    /// Publishes the genuine policy through the honest neighbour and waits
    /// until the target installs the patch.
    pub fn install_genuine_policy(&self) {
        let genuine = self.admin.path("genuine.policy");
        std::fs::write(&genuine, &self.genuine).expect("write genuine policy");
        self.admin.publish_ok(&self.honest.url, &[&genuine]);
        assert_installs(&self.target, &self.patch);
    }
}
