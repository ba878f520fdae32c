//! Runs the built `patchmesh-signer` binary in temporary folders and checks
//! its files with the protocol crate, the way a node would.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

use patchmesh_protocol::limits::MIN_CHUNK_BYTES;
use patchmesh_protocol::{Hash, Manifest, Root, Signed};
use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_patchmesh-signer");

/// A temporary folder to run the signer in.
struct Work {
    dir: TempDir,
}

impl Work {
    fn new() -> Self {
        Work {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the signer binary runs")
    }

    /// Runs and asserts exit status 0.
    fn ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs with `--json` and returns the last stdout line as JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.ok(&all);
        last_json(&output)
    }

    fn keygen(&self, name: &str) -> String {
        let value = self.json(&["keygen", "--out", name]);
        value["key_id"].as_str().expect("key id").to_string()
    }

    fn signed(&self, name: &str) -> Signed {
        Signed::from_bytes(&fs::read(self.path(name)).expect("read")).expect("signed object")
    }
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("stdout has a line");
    serde_json::from_str(line).expect("last line is JSON")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn add_patch(work: &Work, payload: &str, out: &str) -> Value {
    work.json(&[
        "patch",
        "add",
        payload,
        "--name",
        "demo",
        "--version",
        "1.0",
        "--severity",
        "critical",
        "--install",
        "sh {payload}",
        "--chunk-size",
        &MIN_CHUNK_BYTES.to_string(),
        "--key",
        "admin.key",
        "--out",
        out,
    ])
}

/// Checks every chunk file of `manifest` against its hash and the payload.
fn assert_chunks_match(work: &Work, manifest: &Manifest, payload: &[u8]) {
    let mut assembled = Vec::new();
    for hash in &manifest.chunks {
        let bytes = fs::read(work.path("out/chunks").join(hash.to_hex())).expect("chunk file");
        assert_eq!(
            Hash::of(&bytes),
            *hash,
            "chunk file content matches its name"
        );
        assembled.extend_from_slice(&bytes);
    }
    assert_eq!(assembled, payload, "chunks assemble to the payload");
    assert_eq!(manifest.payload_hash, Hash::of(payload));
    assert_eq!(manifest.size, payload.len() as u64);
}

#[test]
fn keygen_writes_owner_only_file() {
    let work = Work::new();
    work.keygen("admin.key");
    let mode = fs::metadata(work.path("admin.key"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn keygen_refuses_existing_file() {
    let work = Work::new();
    work.keygen("admin.key");
    let before = fs::read(work.path("admin.key")).expect("read");
    let output = work.run(&["keygen", "--out", "admin.key"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read(work.path("admin.key")).expect("read"), before);
}

#[test]
fn encrypted_key_needs_passphrase() {
    let work = Work::new();
    let mut keygen = Command::new(BIN);
    keygen
        .args([
            "--passphrase-env",
            "PM_PASS",
            "keygen",
            "--out",
            "admin.key",
        ])
        .env("PM_PASS", "correct horse")
        .current_dir(work.dir.path());
    assert!(keygen.output().expect("runs").status.success());

    let without = work.run(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        stderr(&without).contains("--passphrase-env"),
        "{}",
        stderr(&without)
    );

    let wrong = Command::new(BIN)
        .args([
            "--passphrase-env",
            "PM_PASS",
            "root",
            "init",
            "--key",
            "admin.key",
        ])
        .args(["--out", "root.bin"])
        .env("PM_PASS", "wrong")
        .current_dir(work.dir.path())
        .output()
        .expect("runs");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("wrong passphrase"),
        "{}",
        stderr(&wrong)
    );

    let right = Command::new(BIN)
        .args([
            "--passphrase-env",
            "PM_PASS",
            "root",
            "init",
            "--key",
            "admin.key",
        ])
        .args(["--out", "root.bin"])
        .env("PM_PASS", "correct horse")
        .current_dir(work.dir.path())
        .output()
        .expect("runs");
    assert!(right.status.success(), "{}", stderr(&right));
    Root::verify_initial(&work.signed("root.bin")).expect("root verifies");
}

#[test]
fn root_init_verifies_as_initial_root() {
    let work = Work::new();
    let id = work.keygen("admin.key");
    work.ok(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--fleet",
        "acme",
        "--out",
        "root.bin",
    ]);
    let root = Root::verify_initial(&work.signed("root.bin")).expect("root verifies");
    assert_eq!(root.version, 1);
    assert_eq!(root.fleet, "acme");
    assert_eq!(root.roles.len(), 4);
    assert!(root
        .roles
        .values()
        .all(|rule| rule.keys.len() == 1 && rule.threshold == 1));
    assert_eq!(root.keys.keys().next().expect("one key").to_string(), id);
}

#[test]
fn root_init_refuses_overwrite_without_force() {
    let work = Work::new();
    work.keygen("admin.key");
    work.ok(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    let again = work.run(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    work.ok(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--out",
        "root.bin",
        "--force",
    ]);
}

#[test]
fn patch_add_chunks_match_and_manifest_verifies() {
    let work = Work::new();
    work.keygen("admin.key");
    work.ok(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    let root = Root::verify_initial(&work.signed("root.bin")).expect("root");

    let payload: Vec<u8> = (0..3 * MIN_CHUNK_BYTES + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    fs::write(work.path("payload.bin"), &payload).expect("write");
    let summary = add_patch(&work, "payload.bin", "out");
    assert_eq!(summary["chunks"], 4);

    let signed = work.signed("out/demo@1.0.manifest");
    assert_eq!(summary["manifest_id"], signed.id().to_string());
    let manifest: Manifest = signed
        .verify(&root, jiff::Timestamp::now(), "test")
        .expect("manifest verifies under the root");
    assert_eq!(summary["payload_hash"], manifest.payload_hash.to_string());
    assert_chunks_match(&work, &manifest, &payload);

    let inspect = work.run(&["inspect", "out/demo@1.0.manifest", "--root", "root.bin"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
}

#[test]
fn patch_add_one_byte_payload() {
    let work = Work::new();
    work.keygen("admin.key");
    fs::write(work.path("one.bin"), b"x").expect("write");
    add_patch(&work, "one.bin", "out");
    let manifest: Manifest = work
        .signed("out/demo@1.0.manifest")
        .decode_body()
        .expect("manifest");
    assert_eq!(manifest.chunks.len(), 1);
    assert_chunks_match(&work, &manifest, b"x");
}

#[test]
fn patch_add_exact_multiple_of_chunk_size() {
    let work = Work::new();
    work.keygen("admin.key");
    let payload: Vec<u8> = (0..2 * MIN_CHUNK_BYTES).map(|i| (i % 13) as u8).collect();
    fs::write(work.path("even.bin"), &payload).expect("write");
    add_patch(&work, "even.bin", "out");
    let manifest: Manifest = work
        .signed("out/demo@1.0.manifest")
        .decode_body()
        .expect("manifest");
    assert_eq!(manifest.chunks.len(), 2, "no empty trailing chunk");
    assert_eq!(manifest.chunk_len(1), u64::from(MIN_CHUNK_BYTES));
    assert_chunks_match(&work, &manifest, &payload);
}

const POLICY: &str = r#"
id = "all-asap"
version = 1
expires = "2099-01-01T00:00:00Z"
[content]
patches = ["demo@1.0"]
"#;

/// `policy sign` of `policy.toml` with `admin.key` into `policy.bin`.
const POLICY_SIGN: [&str; 7] = [
    "policy",
    "sign",
    "policy.toml",
    "--key",
    "admin.key",
    "--out",
    "policy.bin",
];

fn sign_policy(work: &Work, text: &str) -> Output {
    fs::write(work.path("policy.toml"), text).expect("write");
    work.run(&POLICY_SIGN)
}

fn sign_policy_json(work: &Work, text: &str) -> Value {
    fs::write(work.path("policy.toml"), text).expect("write");
    work.json(&POLICY_SIGN)
}

#[test]
fn policy_sign_sets_issued_and_verifies() {
    let work = Work::new();
    work.keygen("admin.key");
    work.ok(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    let output = sign_policy(&work, POLICY);
    assert!(output.status.success(), "{}", stderr(&output));
    let root = Root::verify_initial(&work.signed("root.bin")).expect("root");
    let policy: patchmesh_protocol::Policy = work
        .signed("policy.bin")
        .verify(&root, jiff::Timestamp::now(), "test")
        .expect("policy verifies");
    assert!(policy.issued > jiff::Timestamp::UNIX_EPOCH);
}

#[test]
fn policy_sign_rejects_unknown_time_zone() {
    let work = Work::new();
    work.keygen("admin.key");
    let output = sign_policy(
        &work,
        &format!("{POLICY}[schedule]\ntimezone = \"Europe/Berln\"\n"),
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("schedule.timezone"), "{message}");
    assert!(message.contains("Europe/Berln"), "{message}");
    assert!(message.contains("IANA"), "{message}");
    assert!(!work.path("policy.bin").exists());
}

#[test]
fn policy_sign_pins_found_manifest() {
    let work = Work::new();
    work.keygen("admin.key");
    fs::write(work.path("payload.bin"), b"payload").expect("write");
    add_patch(&work, "payload.bin", "patches");

    // Without the patch folder next to the policy, the signer warns.
    fs::create_dir(work.path("elsewhere")).expect("mkdir");
    fs::write(work.path("elsewhere/policy.toml"), POLICY).expect("write");
    let output = work.ok(&[
        "policy",
        "sign",
        "elsewhere/policy.toml",
        "--key",
        "admin.key",
        "--out",
        "unpinned.bin",
        "--json",
    ]);
    let message = stderr(&output);
    assert!(message.contains("no manifest of demo@1.0"), "{message}");
    assert!(message.contains("--patches DIR"), "{message}");
    let unpinned: patchmesh_protocol::Policy =
        work.signed("unpinned.bin").decode_body().expect("policy");
    assert!(unpinned.content.manifest_revisions.is_empty());

    // Next to the patch folder, the policy pins the manifest's revision.
    let summary = sign_policy_json(&work, POLICY);
    assert_eq!(summary["manifest_revisions"]["demo@1.0"], 1, "{summary}");
    assert_eq!(summary["unpinned"], serde_json::json!([]), "{summary}");
    let pinned: patchmesh_protocol::Policy =
        work.signed("policy.bin").decode_body().expect("policy");
    let patch = "demo@1.0".parse().expect("patch reference");
    assert_eq!(pinned.content.manifest_revisions.get(&patch), Some(&1));
}

#[test]
fn policy_sign_rejects_empty_policy() {
    let work = Work::new();
    work.keygen("admin.key");
    let output = sign_policy(
        &work,
        "id = \"x\"\nversion = 1\nexpires = \"2099-01-01T00:00:00Z\"\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("\"content\""), "{message}");
    assert!(message.contains("content.patches"), "{message}");
}

#[test]
fn second_signature_meets_two_of_two_threshold() {
    let work = Work::new();
    work.keygen("a.key");
    work.keygen("b.key");
    work.ok(&["key", "public", "--key", "b.key", "--out", "b.pub"]);
    work.ok(&[
        "root",
        "init",
        "--key",
        "a.key",
        "--key",
        "b.key",
        "--threshold",
        "2",
        "--out",
        "root.bin",
    ]);
    let root = Root::verify_initial(&work.signed("root.bin")).expect("root");

    // Admin A signs alone, then admin B adds a signature on another machine.
    fs::write(work.path("policy.toml"), POLICY).expect("write");
    work.ok(&[
        "policy",
        "sign",
        "policy.toml",
        "--key",
        "a.key",
        "--out",
        "policy.bin",
    ]);
    let half = work.signed("policy.bin");
    assert!(half
        .verify::<patchmesh_protocol::Policy>(&root, jiff::Timestamp::now(), "test")
        .is_err());

    let summary = work.json(&["sign", "policy.bin", "--key", "b.key", "--root", "root.bin"]);
    assert_eq!(summary["verification"]["ok"], true);
    let full = work.signed("policy.bin");
    assert_eq!(full.id(), half.id(), "signing keeps the object id");
    assert_eq!(full.signatures.len(), 2);
    full.verify::<patchmesh_protocol::Policy>(&root, jiff::Timestamp::now(), "test")
        .expect("2 of 2 signatures verify");
}

#[test]
fn root_rotate_accepted_as_successor() {
    let work = Work::new();
    let old_id = work.keygen("old.key");
    work.keygen("new.key");
    work.ok(&["key", "public", "--key", "new.key", "--out", "new.pub"]);
    work.ok(&["root", "init", "--key", "old.key", "--out", "root1.bin"]);
    work.ok(&[
        "root",
        "rotate",
        "--root",
        "root1.bin",
        "--add-key",
        "new.pub",
        "--remove-key",
        &old_id,
        "--key",
        "old.key",
        "--key",
        "new.key",
        "--out",
        "root2.bin",
    ]);
    let current = Root::verify_initial(&work.signed("root1.bin")).expect("root 1");
    let next = current
        .verify_successor(&work.signed("root2.bin"))
        .expect("root 2 follows root 1");
    assert_eq!(next.version, 2);
    assert_eq!(next.keys.len(), 1, "the old key is removed");
    assert!(next.keys.keys().all(|id| id.to_string() != old_id));
}

#[test]
fn root_rotate_signed_only_by_new_key_rejected() {
    let work = Work::new();
    let old_id = work.keygen("old.key");
    work.keygen("new.key");
    work.ok(&["root", "init", "--key", "old.key", "--out", "root1.bin"]);
    let args = [
        "root",
        "rotate",
        "--root",
        "root1.bin",
        "--add-key",
        "new.key",
        "--remove-key",
        &old_id,
        "--key",
        "new.key",
        "--out",
        "root2.bin",
    ];

    let refused = work.run(&args);
    assert_eq!(refused.status.code(), Some(1));
    assert!(!work.path("root2.bin").exists());

    let mut partial = args.to_vec();
    partial.push("--allow-partial");
    work.ok(&partial);
    let current = Root::verify_initial(&work.signed("root1.bin")).expect("root 1");
    assert!(current.verify_successor(&work.signed("root2.bin")).is_err());
}

#[test]
fn inspect_fails_on_tampered_file() {
    let work = Work::new();
    work.keygen("admin.key");
    work.ok(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    work.ok(&["inspect", "root.bin"]);

    // Flip one byte of the payload; the envelope still decodes.
    let mut signed = work.signed("root.bin");
    let last = signed.payload.len() - 1;
    signed.payload[last] ^= 0x01;
    fs::write(work.path("tampered.bin"), signed.to_bytes()).expect("write");
    let output = work.run(&["inspect", "tampered.bin", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = last_json(&output);
    assert_eq!(report["verification"]["ok"], false);
}

#[test]
fn publish_to_unreachable_port_fails_clearly() {
    let work = Work::new();
    work.keygen("admin.key");
    work.ok(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let output = work.run(&["publish", "--node", &url, "root.bin"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("cannot reach node"), "{message}");
    assert!(message.contains(&url), "{message}");
}

/// Starts a one-thread HTTP stub on loopback that records `METHOD path` of
/// each request and replies with `status` and `body`.
fn stub_node(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body_bytes = vec![0; length];
            let _ = reader.read_exact(&mut body_bytes);
            let words: Vec<&str> = request_line.split_whitespace().collect();
            record.lock().expect("lock").push(words[..2].join(" "));
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, seen)
}

fn publish_fixture(work: &Work) {
    work.keygen("admin.key");
    fs::create_dir(work.path("out")).expect("mkdir");
    work.ok(&[
        "root",
        "init",
        "--key",
        "admin.key",
        "--out",
        "out/root.bin",
    ]);
    fs::write(
        work.path("payload.bin"),
        vec![5u8; MIN_CHUNK_BYTES as usize + 1],
    )
    .expect("write");
    add_patch(work, "payload.bin", "out");
    fs::write(work.path("out/policy.toml"), POLICY).expect("write");
    work.ok(&[
        "policy",
        "sign",
        "out/policy.toml",
        "--key",
        "admin.key",
        "--out",
        "out/policy.bin",
    ]);
}

#[test]
fn publish_sends_roots_manifests_chunks_then_policies() {
    let work = Work::new();
    publish_fixture(&work);
    let (url, seen) = stub_node(200, r#"{"outcome":"stored","kind":"x"}"#);
    let summary = work.json(&["publish", "--node", &url, "out"]);
    assert_eq!(summary["published"], 5);
    assert_eq!(summary["skipped"], 1, "policy.toml is not a signed object");

    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 5);
    assert_eq!(requests[0], "POST /v1/objects", "root first");
    assert_eq!(requests[1], "POST /v1/objects", "manifest second");
    assert!(requests[2].starts_with("PUT /v1/chunks/"), "{requests:?}");
    assert!(requests[3].starts_with("PUT /v1/chunks/"), "{requests:?}");
    assert_eq!(requests[4], "POST /v1/objects", "policy last");
}

#[test]
fn publish_shows_node_error_on_rejection() {
    let work = Work::new();
    publish_fixture(&work);
    let (url, _seen) = stub_node(422, r#"{"error":"root is for fleet \"other\""}"#);
    let output = work.run(&["publish", "--node", &url, "out/root.bin"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("root is for fleet"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_error_exits_two() {
    let work = Work::new();
    let output = work.run(&["patch", "add"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn json_error_is_last_stdout_line() {
    let work = Work::new();
    let output = work.run(&["inspect", "missing.bin", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let value = last_json(&output);
    assert!(value["error"]
        .as_str()
        .expect("error text")
        .contains("missing.bin"));
}

#[test]
fn status_json_adds_summary_counts() {
    let work = Work::new();
    let (url, seen) = stub_node(
        200,
        r#"{"node":{"host":"obs"},"reports":[
{"host":"pc-1","site":"hq","patches":[{"patch":"demo@1.0","state":"installed","since":"2030-01-01T00:00:00Z","detail":"","bytes_same_site":5,"bytes_cross_site":0}]},
{"host":"pc-2","site":"branch","patches":[{"patch":"demo@1.0","state":"failed","since":"2030-01-01T00:00:00Z","detail":"exit 1","bytes_same_site":0,"bytes_cross_site":5}]}]}"#,
    );
    let all = work.json(&["status", "--node", &url]);
    assert_eq!(all["summary"]["nodes"], 2);
    assert_eq!(all["summary"]["patches"]["demo@1.0"]["installed"], 1);
    assert_eq!(all["summary"]["patches"]["demo@1.0"]["failed"], 1);
    assert_eq!(all["node"]["host"], "obs");

    let one = work.json(&["status", "--node", &url, "--host", "pc-2"]);
    assert_eq!(one["summary"]["nodes"], 1);
    assert_eq!(one["reports"][0]["host"], "pc-2");
    assert_eq!(seen.lock().expect("lock")[0], "GET /v1/status");

    let table = work.ok(&["status", "--node", &url]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("bytes cross-site"), "{text}");
    assert!(text.contains("exit 1"), "{text}");
}
