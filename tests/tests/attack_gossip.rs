//! Hostile gossip against a real node: forged, tampered, expired, replayed
//! and under-threshold objects and junk floods. For each, the node rejects
//! and logs the object, penalises the peer that sent it and no other, acts
//! on nothing, and still takes the genuine policy from an honest peer.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use patchmesh_protocol::Policy;
use patchmesh_tests::attack::{
    connect_hostile, count_log_lines, key, peer_view, wait_log_line, Scene,
};
use patchmesh_tests::hostile::{forge, HostileConfig, HostilePeer};
use patchmesh_tests::{reported_patches, wait_installed, wait_until, Admin, Node, NodeOptions};

/// Waits until one invalid message no longer graylists its sender: the
/// node's gossipsub counts invalid messages with decay 0.5 per second and
/// weight -100 per squared count, against a graylist threshold of -80.
fn wait_for_score_decay() {
    std::thread::sleep(Duration::from_secs(4));
}

/// Checks that the target acted on nothing, that `hostile` alone is
/// penalised, then publishes the genuine policy through the honest
/// neighbour and waits for the target to install it.
fn assert_only_hostile_blamed_then_install(scene: &Scene, hostile: &HostilePeer) {
    let status = scene.target.status().expect("target status");
    let patches = reported_patches(&status, "target").unwrap_or_default();
    assert!(
        patches.is_empty(),
        "target acted on hostile gossip: {patches:?}"
    );
    assert!(
        scene.target.installed_hash().is_none(),
        "target installed something"
    );

    let hostile_id = hostile.peer_id().to_base58();
    let honest_view = peer_view(&scene.target, &scene.honest.peer).expect("honest peer listed");
    assert_eq!(
        honest_view["penalty"], 0,
        "honest peer penalised: {honest_view}"
    );
    if let Some(score) = honest_view["gossip_score"].as_f64() {
        assert!(
            score >= 0.0,
            "honest peer's gossip score dropped: {honest_view}"
        );
    }
    // A blocked peer is disconnected and no longer listed; the log
    // still names it.
    match peer_view(&scene.target, &hostile_id) {
        Some(view) => {
            let penalty = view["penalty"].as_i64().unwrap_or(0);
            assert!(penalty > 0, "hostile peer not penalised: {view}");
        }
        None => wait_log_line(&scene.target, &["peer blocked", &hostile_id]),
    }

    scene.install_genuine_policy();
}

#[test]
fn rejects_forged_tampered_and_expired_gossip() {
    let scene = Scene::start();
    let hostile = connect_hostile(&scene.target, HostileConfig::default());
    let hostile_id = hostile.peer_id().to_base58();
    let admin_key = key(&scene.admin, "admin.key");
    scene
        .admin
        .signer_json(&["keygen", "--out", "intruder.key"]);
    let intruder = key(&scene.admin, "intruder.key");

    let unknown_key = forge::resign::<Policy>(&scene.genuine, &[&intruder], |p| p.version = 7)
        .expect("forge with unknown key");
    let tampered = forge::tamper(&scene.genuine).expect("tamper");
    let expired = forge::resign::<Policy>(&scene.genuine, &[&admin_key], |p| {
        p.version = 8;
        p.expires = Timestamp::now() - SignedDuration::from_mins(5);
    })
    .expect("forge expired");
    let cases = [
        ("unknown key", unknown_key, "not a policy key"),
        ("tampered payload", tampered, "valid signature"),
        ("expired", expired, "expired"),
    ];
    for (name, bytes, reason) in cases {
        hostile
            .gossip(bytes)
            .unwrap_or_else(|e| panic!("gossip {name}: {e}"));
        wait_log_line(
            &scene.target,
            &["rejected gossiped object", &hostile_id, reason],
        );
        wait_for_score_decay();
    }
    assert!(
        count_log_lines(&scene.target, &["peer penalised", &hostile_id]) >= 3,
        "each rejected object penalises its sender"
    );
    assert_eq!(
        count_log_lines(&scene.target, &["object received by gossip", &hostile_id]),
        0,
        "no hostile object was stored"
    );
    assert_only_hostile_blamed_then_install(&scene, &hostile);
}

#[test]
fn replayed_older_policy_is_refused_after_restart() {
    let mut scene = Scene::start();
    let admin_key = key(&scene.admin, "admin.key");
    let newer = forge::resign::<Policy>(&scene.genuine, &[&admin_key], |p| p.version = 2)
        .expect("sign version 2");
    let newer_path = scene.admin.path("v2.policy");
    std::fs::write(&newer_path, &newer).expect("write version 2");
    scene.admin.publish_ok(&scene.target.url, &[&newer_path]);
    wait_installed(
        &scene.target,
        &["target"],
        &scene.patch.reference,
        Duration::from_secs(60),
    );

    scene.target.restart();
    let hostile = connect_hostile(&scene.target, HostileConfig::default());
    let hostile_id = hostile.peer_id().to_base58();
    hostile
        .gossip(scene.genuine.clone())
        .expect("gossip version 1");
    wait_log_line(
        &scene.target,
        &["rejected gossiped object", &hostile_id, "rollback"],
    );
    wait_log_line(&scene.target, &["peer penalised", &hostile_id]);

    // The replay is also refused through the control API.
    let replay = scene.admin.path("replay.policy");
    std::fs::write(&replay, &scene.genuine).expect("write replay");
    let output = scene.admin.publish(&scene.target.url, &[&replay]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "replay through publish must fail"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rollback"),
        "publish names the rollback: {stderr}"
    );
}

#[test]
fn junk_flood_graylists_only_the_sender() {
    let scene = Scene::start();
    let hostile = connect_hostile(&scene.target, HostileConfig::default());
    let hostile_id = hostile.peer_id().to_base58();
    hostile
        .gossip(b"first junk".to_vec())
        .expect("node learns the subscription");
    let published = hostile.flood_junk(500).expect("flood");
    assert!(published > 0, "no junk was published");

    // The first invalid message graylists the sender in gossipsub, so the
    // flood costs the node almost no decoding or verification.
    wait_log_line(&scene.target, &["rejected gossiped object", &hostile_id]);
    let view = peer_view(&scene.target, &hostile_id).expect("hostile peer listed");
    let score = view["gossip_score"].as_f64().expect("gossip score");
    assert!(
        score < -10.0,
        "flooding peer keeps its gossip score: {view}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let validated = count_log_lines(&scene.target, &["rejected gossiped object", &hostile_id]);
    assert!(
        validated < published / 10,
        "{validated} of {published} junk messages reached validation"
    );
    assert_only_hostile_blamed_then_install(&scene, &hostile);
}

#[test]
fn under_threshold_and_repeated_signatures_are_rejected() {
    let admin = Admin::new();
    admin.signer_json(&["keygen", "--out", "second.key"]);
    admin.signer_json(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--key",
        "second.key",
        "--threshold",
        "2",
        "--out",
        "root.bin",
        "--force",
    ]);
    let first = key(&admin, "admin.key");
    let second = key(&admin, "second.key");
    let target = Node::start(&admin, NodeOptions::new("target", "site-a"));
    let hostile = connect_hostile(&target, HostileConfig::default());
    let hostile_id = hostile.peer_id().to_base58();

    let base = std::fs::read(admin.sign_policy("pair", &["demo@1"], "admin.key"))
        .expect("read one-signature policy");
    let one = forge::resign::<Policy>(&base, &[&first], |p| p.version = 2).expect("one key");
    let twice = forge::repeat_signature(&one, 2).expect("same key twice");
    let both =
        forge::resign::<Policy>(&base, &[&first, &second], |p| p.version = 3).expect("both keys");

    hostile.gossip(one).expect("gossip one signature");
    wait_log_line(
        &target,
        &["rejected gossiped object", &hostile_id, "needs 2"],
    );
    wait_for_score_decay();
    hostile.gossip(twice).expect("gossip repeated signature");
    wait_until("second rejection", Duration::from_secs(20), || {
        (count_log_lines(
            &target,
            &["rejected gossiped object", &hostile_id, "needs 2"],
        ) >= 2)
            .then_some(())
    });
    assert_eq!(count_log_lines(&target, &["object received by gossip"]), 0);
    wait_for_score_decay();

    hostile.gossip(both).expect("gossip both signatures");
    wait_log_line(
        &target,
        &["object received by gossip", &hostile_id, "revision=3"],
    );
}
