//! Trust attacks against a real node. Mix-and-match: a newer policy served
//! with a superseded manifest, or with one signed by a key a rotation
//! removed. A root chain longer than the hop limit. A key listed twice in a
//! role. An object signed years ahead. Manifests that try to leave the store
//! or target another platform. Peers that keep serving an old but valid
//! policy.
//!
//! Hostile objects arrive from a hostile peer by anti-entropy: every peer
//! connects afresh, so the node requests its summary at once. For each
//! attack the node rejects the object or does not act on it, logs why,
//! penalises only the hostile peer where the object is invalid, installs
//! nothing, and still installs a genuine patch afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use patchmesh_node::config::Config;
use patchmesh_protocol::{
    Hash, Installer, Manifest, Policy, Role, RoleKeys, Root, SecretKey, Signed,
};
use patchmesh_tests::attack::{
    add_second_key, assert_installs, assert_not_penalised, assert_penalised, connect_hostile,
    count_log_lines, key, offering, publish_bytes, start_target_and_honest, wait_log_line,
    wait_log_within, Scene,
};
use patchmesh_tests::hostile::{forge, HostileConfig};
use patchmesh_tests::{
    get_json, policy_header, random_bytes, reported_patches, wait_until, Admin, Node, NodeOptions,
    Patch,
};
use serde_json::Value;

/// Signed manifest bytes of `patch` as `patch add` wrote them.
fn manifest_bytes(patch: &Patch) -> Vec<u8> {
    let path = patch.dir.join(format!("{}.manifest", patch.reference));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Chunk bytes of `patch` by hash, for a hostile peer to serve.
fn patch_chunks(patch: &Patch) -> HashMap<Hash, Vec<u8>> {
    let dir = patch.dir.join("chunks");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("chunk entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            let hash: Hash = name.parse().expect("chunk files are named by hash");
            (hash, std::fs::read(&path).expect("read chunk"))
        })
        .collect()
}

/// Writes a copy of `patch`'s folder whose manifest is `manifest`, so that
/// publishing it sends that manifest and the chunks.
fn patch_dir_with(admin: &Admin, patch: &Patch, manifest: &[u8], name: &str) -> PathBuf {
    let dir = admin.path(name);
    let chunks = dir.join("chunks");
    std::fs::create_dir_all(&chunks).expect("create patch copy");
    for (hash, bytes) in patch_chunks(patch) {
        std::fs::write(chunks.join(hash.to_hex()), bytes).expect("copy chunk");
    }
    std::fs::write(dir.join(format!("{}.manifest", patch.reference)), manifest)
        .expect("write manifest");
    dir
}

/// Returns the body of `admin`'s pinned root.
fn pinned_root(admin: &Admin) -> Root {
    let bytes = std::fs::read(admin.root()).expect("read root.bin");
    Signed::from_bytes(&bytes)
        .and_then(|signed| signed.decode_body::<Root>())
        .expect("root.bin decodes")
}

/// `root` as version `version`, valid for a day from now, signed by `keys`.
fn next_root(root: &Root, version: u64, keys: &[&SecretKey]) -> Vec<u8> {
    let mut next = root.clone();
    next.version = version;
    next.issued = Timestamp::now() - SignedDuration::from_mins(1);
    next.expires = Timestamp::now() + SignedDuration::from_hours(24);
    Signed::sign(&next, keys).to_bytes()
}

/// Signs root version 2 from `root.bin` with `admin.key`, removing key
/// `remove`; returns its path.
fn rotate_removing(admin: &Admin, remove: &str) -> PathBuf {
    admin.signer_json(&[
        "root",
        "rotate",
        "--root",
        "root.bin",
        "--key",
        "admin.key",
        "--remove-key",
        remove,
        "--out",
        "root-2.bin",
    ]);
    admin.path("root-2.bin")
}

/// Returns the report entry of `patch` on `node` (an observer, so it keeps
/// its own report).
fn own_patch_report(node: &Node, patch: &str) -> Option<Value> {
    let status = node.status()?;
    reported_patches(&status, &node.options.host)?
        .into_iter()
        .find(|p| p["patch"] == patch)
}

/// Waits `secs` seconds, then checks that `node` installed nothing.
fn assert_nothing_installed_after(node: &Node, secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
    assert!(
        node.installed_hash().is_none(),
        "{} installed a patch",
        node.options.host
    );
}

/// Checks that the honest neighbour kept its standing, then publishes the
/// genuine policy through it and waits for the target to install the patch.
fn assert_still_installs_genuine_policy(scene: &Scene) {
    assert_not_penalised(&scene.target, &scene.honest.peer);
    scene.install_genuine_policy();
}

#[test]
fn superseded_manifest_with_newer_policy_is_not_installed() {
    let admin = Admin::new();
    let payload = random_bytes(100_000);
    let patch = admin.add_patch("mixed", &payload, 64 * 1024);
    let first = manifest_bytes(&patch);
    // The admin re-signs the manifest as revision 2 into the same folder,
    // then signs a policy with the signer's defaults: no pin in the file.
    admin.add_patch_with(
        "mixed",
        "1",
        &payload,
        &[
            "--severity",
            "important",
            "--install",
            patchmesh_tests::INSTALL_COMMAND,
            "--chunk-size",
            "65536",
            "--revision",
            "2",
            "--force",
        ],
    );
    let second: Manifest = Signed::from_bytes(&manifest_bytes(&patch))
        .expect("manifest decodes")
        .decode_body()
        .expect("manifest body");
    assert_eq!(second.revision, 2, "patch add wrote revision 2");
    let text = format!(
        "{}[content]\npatches = [\"{}\"]\n",
        policy_header("mixed"),
        patch.reference
    );
    assert!(!text.contains("manifest_revisions"));
    let policy = std::fs::read(admin.sign_policy_text("mixed", &text)).expect("read policy");
    let signed_policy: Policy = Signed::from_bytes(&policy)
        .expect("policy decodes")
        .decode_body()
        .expect("policy body");
    let pinned = signed_policy
        .content
        .manifest_revisions
        .get(&patch.reference.parse().expect("patch reference"));
    assert_eq!(pinned, Some(&2), "the signer pins the newest revision");

    let (target, honest) = start_target_and_honest(&admin);

    // The hostile peer serves the new policy with the superseded revision
    // 1, both validly signed, and holds every chunk.
    let hostile = connect_hostile(
        &target,
        HostileConfig {
            offered_objects: vec![policy, first],
            chunks: patch_chunks(&patch),
            ..HostileConfig::default()
        },
    );
    wait_log_line(
        &target,
        &[
            "held manifest is older than the revision the policy pins",
            "policy=mixed",
            "held_revision=1",
            "required_revision=2",
        ],
    );
    let waiting = wait_until(
        "target to report why mixed@1 waits",
        Duration::from_secs(20),
        || {
            own_patch_report(&target, &patch.reference).filter(|p| {
                p["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("manifest revision 2"))
            })
        },
    );
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert_nothing_installed_after(&target, 3);
    assert_eq!(
        hostile.counters().total_chunk_requests(),
        0,
        "the node fetched chunks for the superseded manifest"
    );
    // Both objects are validly signed, and an honest peer that missed
    // revision 2 serves the same pair, so nobody is blamed.
    assert_not_penalised(&target, &honest.peer);

    // The patch folder now contains revision 2, as the admin publishes it.
    admin.publish_ok(&honest.url, &[&patch.dir]);
    assert_installs(&target, &patch);
}

#[test]
fn manifest_signed_by_rotated_out_key_is_refused() {
    let admin = Admin::new();
    let old_key = add_second_key(&admin, "old.key");
    let patch = admin.add_patch("rotated", &random_bytes(100_000), 64 * 1024);
    let genuine = manifest_bytes(&patch);
    // The same manifest, signed by the key the rotation removes.
    let by_old_key = forge::resign::<Manifest>(&genuine, &[&old_key], |_| {})
        .expect("sign manifest with the old key");
    let policy =
        std::fs::read(admin.sign_policy("rotated", &[&patch.reference], "admin.key")).unwrap();

    let (target, honest) = start_target_and_honest(&admin);

    // Held before the rotation, the manifest is dropped by it.
    let (code, stderr) = publish_bytes(&admin, &target, "old.manifest", &by_old_key);
    assert_eq!(code, Some(0), "{stderr}");
    let root_2 = rotate_removing(&admin, &old_key.id().to_string());
    admin.publish_ok(&target.url, &[&root_2]);
    wait_log_line(&target, &["slot reset", "kind=manifest", "rotated@1"]);

    // Offered again with the new policy, it is rejected.
    let hostile = connect_hostile(&target, offering(vec![policy, by_old_key]));
    let hostile_id = hostile.peer_id().to_base58();
    wait_log_line(
        &target,
        &[
            "rejected object from anti-entropy",
            &hostile_id,
            "which root version 2 removed from role",
        ],
    );
    wait_log_line(
        &target,
        &["object received by anti-entropy", &hostile_id, "policy"],
    );
    assert_penalised(&target, &hostile);
    assert_nothing_installed_after(&target, 3);
    assert_eq!(
        own_patch_report(&target, &patch.reference),
        None,
        "the target tracks a patch whose manifest it does not hold"
    );
    assert_not_penalised(&target, &honest.peer);

    // The manifest signed with a key of the new root installs.
    admin.publish_ok(&honest.url, &[&patch.dir]);
    assert_installs(&target, &patch);
}

/// Hop limit the hop-limit test sets in the target's `[trust]` table: two
/// fetch batches of roots, so the walk takes seconds in a debug build.
const TEST_MAX_ROOT_HOPS: u64 = 100;

/// Stops `node`, sets `trust.max_root_hops` in its config and starts it
/// again on the same data folder.
fn restart_with_max_root_hops(node: &mut Node, hops: u64) {
    node.kill();
    let mut config = Config::load(node.data_dir()).expect("node config");
    config.trust.max_root_hops = hops;
    std::fs::write(node.data_dir().join("config.toml"), config.to_toml()).expect("write config");
    node.restart();
}

#[test]
fn root_chain_past_hop_limit_is_refused() {
    let admin = Admin::new();
    let admin_key = key(&admin, "admin.key");
    let pinned = pinned_root(&admin);
    let max = TEST_MAX_ROOT_HOPS;
    let last = pinned.version + max;
    let chain: Vec<Vec<u8>> = (pinned.version + 1..=last + 1)
        .map(|version| next_root(&pinned, version, &[&admin_key]))
        .collect();

    let honest = Node::start(&admin, NodeOptions::new("honest", "site-a"));
    let mut target = Node::start(
        &admin,
        NodeOptions::new("target", "site-a")
            .observer()
            .bootstrap(&honest),
    );
    restart_with_max_root_hops(&mut target, max);
    target.wait_for_peers(1);

    let walking = Instant::now();
    let hostile = connect_hostile(&target, offering(chain));
    let hostile_id = hostile.peer_id().to_base58();
    wait_log_within(
        &target,
        &["trusted root rotated", &format!("version={last}")],
        Duration::from_secs(120),
    );
    eprintln!("walked {max} rotations in {:?}", walking.elapsed());
    wait_log_line(
        &target,
        &[
            "rejected object from anti-entropy",
            &hostile_id,
            &format!("root version {} is {} rotations past", last + 1, max + 1),
            "trust.max_root_hops",
        ],
    );
    // Every root of the chain is validly signed, so offering it is no
    // misbehaviour: the node stops at its own limit and keeps the peer.
    assert_not_penalised(&target, &hostile_id);
    assert_eq!(
        count_log_lines(
            &target,
            &["trusted root rotated", &format!("version={}", last + 1)]
        ),
        0,
        "the node went past the hop limit"
    );
    drop(hostile);

    // A restart walks the stored chain under the same limit and ends on
    // the same root.
    target.restart();
    wait_log_line(&target, &["node started", &format!("root_version={last}")]);
    assert_eq!(
        count_log_lines(&target, &["node started"]),
        3,
        "the node started three times"
    );

    // Objects signed under the newest root still install, from the honest
    // peer, which walks the chain from the target.
    target.wait_for_peers(1);
    let patch = admin.add_patch("after-walk", &random_bytes(50_000), 64 * 1024);
    let policy = admin.sign_policy("after-walk", &[&patch.reference], "admin.key");
    admin.publish_ok(&honest.url, &[&patch.dir, &policy]);
    assert_installs(&target, &patch);
    assert_not_penalised(&target, &honest.peer);
}

#[test]
fn key_listed_twice_counts_once() {
    let admin = Admin::new();
    let admin_key = key(&admin, "admin.key");
    let second = SecretKey::generate();
    let pinned = pinned_root(&admin);
    let patch = admin.add_patch("twice", &random_bytes(100_000), 64 * 1024);
    let (target, honest) = start_target_and_honest(&admin);
    admin.publish_ok(&target.url, &[&patch.dir]);

    // A root whose policy role lists one key twice with threshold 2.
    let mut doubled = pinned.clone();
    doubled.roles.insert(
        Role::Policy,
        RoleKeys {
            keys: vec![admin_key.id(), admin_key.id()],
            threshold: 2,
        },
    );
    let doubled = next_root(&doubled, pinned.version + 1, &[&admin_key]);
    let (code, stderr) = publish_bytes(&admin, &target, "doubled.root", &doubled);
    assert_eq!(code, Some(1), "the doubled root was accepted: {stderr}");
    assert!(
        stderr.contains("threshold 2 with 1 distinct keys"),
        "error names the threshold and the distinct keys: {stderr}"
    );
    let hostile = connect_hostile(&target, offering(vec![doubled]));
    let hostile_id = hostile.peer_id().to_base58();
    wait_log_line(
        &target,
        &[
            "rejected object from anti-entropy",
            &hostile_id,
            "threshold 2 with 1 distinct keys",
        ],
    );
    assert_penalised(&target, &hostile);
    assert_eq!(count_log_lines(&target, &["trusted root rotated"]), 0);
    drop(hostile);

    // A valid root that lists the admin key twice next to a second key:
    // two distinct keys, so threshold 2 needs both.
    let mut listed_twice = pinned.clone();
    listed_twice.keys.insert(second.id(), second.public());
    listed_twice.roles.insert(
        Role::Policy,
        RoleKeys {
            keys: vec![admin_key.id(), admin_key.id(), second.id()],
            threshold: 2,
        },
    );
    let listed_twice = next_root(&listed_twice, pinned.version + 1, &[&admin_key]);
    let (code, stderr) = publish_bytes(&admin, &target, "twice.root", &listed_twice);
    assert_eq!(code, Some(0), "{stderr}");
    wait_log_line(&honest, &["trusted root rotated", "version=2"]);

    let once = std::fs::read(admin.sign_policy("twice", &[&patch.reference], "admin.key"))
        .expect("read policy");
    let repeated = forge::resign::<Policy>(&once, &[&admin_key], |p| p.version = 2)
        .and_then(|bytes| forge::repeat_signature(&bytes, 2))
        .expect("repeat the admin signature");
    let hostile = connect_hostile(&target, offering(vec![once.clone(), repeated]));
    let hostile_id = hostile.peer_id().to_base58();
    wait_until(
        "both under-signed policies rejected",
        Duration::from_secs(30),
        || {
            let rejected = count_log_lines(
                &target,
                &[
                    "rejected object from anti-entropy",
                    &hostile_id,
                    "1 valid signature(s) of role \"policy\" under root version 2, needs 2",
                ],
            );
            (rejected >= 2).then_some(())
        },
    );
    assert_penalised(&target, &hostile);
    assert_nothing_installed_after(&target, 2);

    // Signed by both distinct keys, version 3 installs.
    let both = forge::resign::<Policy>(&once, &[&admin_key, &second], |p| p.version = 3)
        .expect("sign with both keys");
    let (code, stderr) = publish_bytes(&admin, &honest, "both.policy", &both);
    assert_eq!(code, Some(0), "{stderr}");
    assert_installs(&target, &patch);
    assert_not_penalised(&target, &honest.peer);
}

#[test]
fn far_future_signing_time_does_not_freeze_node() {
    let scene = Scene::start();
    let admin_key = key(&scene.admin, "admin.key");
    // A valid key signed a policy ten years ahead, as an admin machine
    // with a wrong clock would.
    let future = forge::resign::<Policy>(&scene.genuine, &[&admin_key], |p| {
        p.id = "future".into();
        p.issued = Timestamp::now() + SignedDuration::from_hours(24 * 365 * 10);
        p.expires = Timestamp::now() + SignedDuration::from_hours(24 * 365 * 20);
        p.content.patches = vec!["absent@1".parse().expect("patch reference")];
    })
    .expect("sign future policy");
    let hostile = connect_hostile(&scene.target, offering(vec![future]));
    let hostile_id = hostile.peer_id().to_base58();
    wait_log_line(
        &scene.target,
        &["object received by anti-entropy", &hostile_id, "future"],
    );

    // The genuine policy expires in a day: expired if the node had moved
    // its newest signing time ten years ahead.
    assert_still_installs_genuine_policy(&scene);
    assert_eq!(
        count_log_lines(&scene.target, &["newest signing time seen"]),
        0,
        "an object was judged by the far-future signing time"
    );
}

#[test]
fn wrong_software_is_refused_or_not_applicable() {
    let scene = Scene::start();
    let admin_key = key(&scene.admin, "admin.key");
    let manifest = manifest_bytes(&scene.patch);
    let forged = |change: fn(&mut Manifest)| {
        forge::resign::<Manifest>(&manifest, &[&admin_key], change).expect("sign manifest")
    };
    let cases = [
        (
            "name with ../",
            forged(|m| m.name = "../../escape".into()),
            "\"../../escape\" is invalid",
        ),
        (
            "version with a path",
            forged(|m| m.version = "1/../../escape".into()),
            "\"1/../../escape\" is invalid",
        ),
        (
            "relative install path",
            forged(|m| {
                m.name = "relative".into();
                m.installer = Installer::File {
                    path: "../escape.bin".into(),
                    mode: 0o644,
                };
            }),
            "path \"../escape.bin\" is not absolute",
        ),
    ];
    for (name, bytes, reason) in cases {
        let hostile = connect_hostile(&scene.target, offering(vec![bytes]));
        let hostile_id = hostile.peer_id().to_base58();
        wait_log_line(
            &scene.target,
            &["rejected object from anti-entropy", &hostile_id, reason],
        );
        assert_penalised(&scene.target, &hostile);
        eprintln!("{name}: rejected and penalised");
    }

    // Well formed and validly signed, but for another architecture.
    let own = patchmesh_node::inventory::system::debian_arch();
    let other = if own == "s390x" { "riscv64" } else { "s390x" };
    let foreign = scene
        .admin
        .add_patch("foreign", &random_bytes(80_000), 64 * 1024);
    let for_other_arch = forge::resign::<Manifest>(&manifest_bytes(&foreign), &[&admin_key], |m| {
        m.applies_to.arch = vec![other.into()];
    })
    .expect("sign foreign manifest");
    let dir = patch_dir_with(&scene.admin, &foreign, &for_other_arch, "foreign-arch");
    scene.admin.publish_ok(&scene.honest.url, &[&dir]);
    let policy = scene
        .admin
        .sign_policy("foreign", &["foreign@1"], "admin.key");
    scene.admin.publish_ok(&scene.honest.url, &[&policy]);
    wait_log_line(
        &scene.target,
        &[
            "patch is for another platform",
            "foreign@1",
            "is not one of",
            &own,
            other,
        ],
    );
    let pending = wait_until(
        "target to report foreign@1",
        Duration::from_secs(20),
        || own_patch_report(&scene.target, "foreign@1"),
    );
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_nothing_installed_after(&scene.target, 3);

    let data = scene.target.data_dir();
    for escaped in [
        data.join("../escape"),
        data.join("../escape.bin"),
        data.join("../../escape"),
    ] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    assert_no_entry_named(data, "escape");
    assert_still_installs_genuine_policy(&scene);
}

/// Checks that no file or folder under `dir` has `name` in its name.
fn assert_no_entry_named(dir: &Path, name: &str) {
    for entry in std::fs::read_dir(dir).expect("read data folder") {
        let path = entry.expect("entry").path();
        assert!(
            !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(name)),
            "{} was written",
            path.display()
        );
        if path.is_dir() && !path.ends_with("meta.sled") {
            assert_no_entry_named(&path, name);
        }
    }
}

/// Start of the message the node logs when it raises the stale alarm.
const STALE_WARNING: &str = "stale: the newest admin-signed object held is older";

#[test]
fn stale_policy_served_by_peers_raises_alarm() {
    let admin = Admin::new();
    let admin_key = key(&admin, "admin.key");
    let base =
        std::fs::read(admin.sign_policy("aging", &["demo@1"], "admin.key")).expect("read policy");
    // Signed 40 days ago and valid for 30 more: older than the default
    // limit of 31 days, yet not expired.
    let old = forge::resign::<Policy>(&base, &[&admin_key], |p| {
        p.issued = Timestamp::now() - SignedDuration::from_hours(24 * 40);
        p.expires = Timestamp::now() + SignedDuration::from_hours(24 * 30);
    })
    .expect("sign old policy");

    let honest = Node::start(&admin, NodeOptions::new("honest", "site-a").observer());
    let (code, stderr) = publish_bytes(&admin, &honest, "old.policy", &old);
    assert_eq!(code, Some(0), "{stderr}");
    let target = Node::start(
        &admin,
        NodeOptions::new("target", "site-a").bootstrap(&honest),
    );
    let node_info = || get_json(&format!("{}/v1/node", target.url));

    let alarm = wait_until(
        "target to raise the stale alarm",
        Duration::from_secs(30),
        || node_info().and_then(|info| (!info["stale"].is_null()).then(|| info["stale"].clone())),
    );
    assert_eq!(alarm["kind"], "policy", "{alarm}");
    assert_eq!(alarm["slot"], "aging", "{alarm}");
    let age = alarm["age_secs"].as_u64().expect("age in seconds");
    assert!(age >= 40 * 24 * 3600 - 60, "{alarm}");
    assert_eq!(alarm["limit_secs"], 31 * 24 * 3600, "{alarm}");
    let status = target.status().expect("status");
    let shown = &status["node"]["stale"];
    assert_eq!(shown["slot"], "aging", "status shows the alarm: {status}");
    assert_eq!(shown["signed_at"], alarm["signed_at"], "{status}");
    let output = admin.signer(&["status", "--node", &target.url]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "signer status failed: {stdout}");
    assert!(stdout.contains("warning: stale"), "{stdout}");
    assert!(stdout.contains("policy aging revision 1"), "{stdout}");
    wait_log_line(
        &target,
        &[
            STALE_WARNING,
            "kind=policy",
            "slot=aging",
            "signed_at=",
            "age_secs=",
        ],
    );

    // The alarm travels in the signed report, so the observer shows it.
    let reported = wait_until(
        "observer to receive the target's alarm",
        Duration::from_secs(30),
        || {
            let status = honest.status()?;
            let reports = status["reports"].as_array()?.clone();
            reports
                .into_iter()
                .find(|report| report["host"] == "target" && !report["stale"].is_null())
        },
    );
    assert_eq!(reported["stale"]["slot"], "aging", "{reported}");
    let output = admin.signer(&["status", "--node", &honest.url]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "signer status failed: {stdout}");
    assert!(
        stdout.contains("object on node target is policy aging"),
        "{stdout}"
    );

    // A policy signed now clears it.
    let fresh = forge::resign::<Policy>(&base, &[&admin_key], |p| p.version = 2)
        .expect("sign fresh policy");
    let (code, stderr) = publish_bytes(&admin, &honest, "fresh.policy", &fresh);
    assert_eq!(code, Some(0), "{stderr}");
    wait_until(
        "target to clear the stale alarm",
        Duration::from_secs(30),
        || node_info().and_then(|info| info["stale"].is_null().then_some(())),
    );
    wait_log_line(&target, &["stale alarm cleared", "slot=aging"]);
    assert_eq!(
        count_log_lines(&target, &[STALE_WARNING]),
        1,
        "the alarm was logged once"
    );
}
