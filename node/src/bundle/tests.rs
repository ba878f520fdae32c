use std::collections::BTreeMap;
use std::fs;

use patchmesh_protocol::bundle::{BundleWriter, ChunkEntry, ObjectEntry};
use patchmesh_protocol::{Policy, Role, RoleKeys, SecretKey};

use super::*;
use crate::store::meta::Batch;
use crate::store::MetaStore;

fn ts(text: &str) -> Timestamp {
    text.parse().expect("valid time")
}

const NOW: &str = "2027-02-10T00:00:00Z";

fn root(fleet: &str, key: &SecretKey) -> Signed {
    let mut body = Root {
        fleet: fleet.into(),
        version: 1,
        issued: ts("2027-01-01T00:00:00Z"),
        expires: ts("2030-01-01T00:00:00Z"),
        keys: BTreeMap::new(),
        roles: BTreeMap::new(),
    };
    body.keys.insert(key.id(), key.public());
    for role in Role::ALL {
        body.roles.insert(
            role,
            RoleKeys {
                keys: vec![key.id()],
                threshold: 1,
            },
        );
    }
    Signed::sign(&body, &[key])
}

fn policy(version: u64, key: &SecretKey) -> Signed {
    let text = format!(
        "id = \"all-asap\"\nversion = {version}\nexpires = \"2029-01-01T00:00:00Z\"\n\
         [content]\npatches = [\"demo@1.0\"]\n"
    );
    let mut body = Policy::from_toml(&text).expect("valid policy");
    body.issued = ts("2027-02-01T00:00:00Z");
    Signed::sign(&body, &[key])
}

/// Writes a bundle of `root`, `objects` and `chunks`, signed by `key` for
/// `fleet`, and returns its bytes.
fn bundle(
    fleet: &str,
    root: &Signed,
    objects: &[Signed],
    chunks: &[Vec<u8>],
    key: &SecretKey,
) -> Vec<u8> {
    bundle_with_roots(fleet, std::slice::from_ref(root), objects, chunks, key)
}

/// Writes a bundle as [`bundle`] does, carrying the root chain `roots`.
fn bundle_with_roots(
    fleet: &str,
    roots: &[Signed],
    objects: &[Signed],
    chunks: &[Vec<u8>],
    key: &SecretKey,
) -> Vec<u8> {
    let body = BundleIndex {
        fleet: fleet.into(),
        revision: 1,
        issued: ts("2027-02-09T00:00:00Z"),
        expires: ts("2027-03-01T00:00:00Z"),
        since: None,
        roots: roots.iter().map(ObjectEntry::of).collect(),
        objects: objects.iter().map(ObjectEntry::of).collect(),
        chunks: chunks
            .iter()
            .map(|c| ChunkEntry {
                hash: Hash::of(c),
                size: c.len() as u32,
            })
            .collect(),
    };
    let index = Signed::sign(&body, &[key]);
    let mut writer = BundleWriter::new(Vec::new(), roots, &index).expect("header");
    for object in objects {
        writer.write_object(object).expect("object");
    }
    for chunk in chunks {
        writer.write_chunk(chunk).expect("chunk");
    }
    writer.finish().expect("finish").0
}

/// A node's stores in a tempdir, trusting `pinned`.
struct Node {
    dir: tempfile::TempDir,
    trust: Trust,
    meta: MetaStore,
    chunks: ChunkStore,
}

fn node(pinned: &Signed) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = MetaStore::open(&dir.path().join("meta")).expect("meta");
    let trust = Trust::load(pinned, meta.clone()).expect("trust");
    let chunks = ChunkStore::open(dir.path(), 0).expect("chunks");
    Node {
        dir,
        trust,
        meta,
        chunks,
    }
}

impl Node {
    fn import(&mut self, bytes: &[u8]) -> Result<ImportSummary, ImportError> {
        let path = self.dir.path().join("in.pmb");
        fs::write(&path, bytes).expect("write bundle");
        let staging = self.dir.path().join("staging");
        let stores = Stores {
            trust: &mut self.trust,
            meta: &self.meta,
            chunks: &self.chunks,
            staging_dir: &staging,
        };
        import(&path, stores, ts(NOW), "test")
    }

    fn stored_objects(&self, key: &SecretKey) -> bool {
        let probe = policy(1, key);
        matches!(
            self.trust.check(&probe, ts(NOW), "test"),
            Ok(admitted) if admitted.outcome == Outcome::Duplicate
        )
    }
}

#[test]
fn import_stores_objects_and_chunks() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let chunk = vec![7u8; 1000];
    let bytes = bundle(
        "ships",
        &pinned,
        &[policy(1, &key)],
        std::slice::from_ref(&chunk),
        &key,
    );
    let mut node = node(&pinned);

    let summary = node.import(&bytes).expect("imports");
    assert_eq!(summary.objects_stored, 1);
    assert_eq!(summary.chunks_stored, 1);
    assert_eq!(summary.signed_at, ts("2027-02-09T00:00:00Z"));
    assert!(node.stored_objects(&key));
    assert_eq!(
        node.chunks.get(&Hash::of(&chunk)).expect("read"),
        Some(chunk)
    );

    // A second import finds everything held.
    let again = node.import(&bytes).expect("imports again");
    assert_eq!(again.objects_held, 1);
    assert_eq!(again.chunks_held, 1);
}

#[test]
fn truncated_bundle_stores_nothing() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let chunk = vec![7u8; 1000];
    let bytes = bundle(
        "ships",
        &pinned,
        &[policy(1, &key)],
        std::slice::from_ref(&chunk),
        &key,
    );
    let mut node = node(&pinned);

    let cut = bytes.len() - 10;
    let err = node
        .import(&bytes[..cut])
        .expect_err("truncated bundle imported");
    assert!(
        err.to_string()
            .contains(&format!("truncated at byte {cut}")),
        "{err}"
    );
    assert!(!node.stored_objects(&key));
    assert!(!node.chunks.contains(&Hash::of(&chunk)));
    let staged = fs::read_dir(node.dir.path().join("staging"))
        .expect("staging")
        .count();
    assert_eq!(staged, 0);
}

#[test]
fn other_fleet_is_rejected() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let bytes = bundle("plants", &pinned, &[policy(1, &key)], &[], &key);
    let mut node = node(&pinned);
    let err = node.import(&bytes).expect_err("other fleet imported");
    assert!(matches!(err, ImportError::OtherFleet { .. }), "{err}");
}

#[test]
fn unknown_key_is_rejected() {
    let key = SecretKey::generate();
    let stranger = SecretKey::generate();
    let pinned = root("ships", &key);
    let bytes = bundle("ships", &pinned, &[policy(1, &stranger)], &[], &key);
    let mut node = node(&pinned);
    let err = node.import(&bytes).expect_err("unknown key accepted");
    assert!(matches!(err, ImportError::Object { .. }), "{err}");
    assert!(!node.stored_objects(&key));
}

#[test]
fn older_revision_is_rejected_as_rollback() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let mut node = node(&pinned);
    node.import(&bundle("ships", &pinned, &[policy(2, &key)], &[], &key))
        .expect("newer imports");
    let err = node
        .import(&bundle("ships", &pinned, &[policy(1, &key)], &[], &key))
        .expect_err("older revision imported");
    assert!(err.to_string().contains("rollback"), "{err}");
}

#[test]
fn flipped_chunk_byte_stores_nothing() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let chunk = vec![7u8; 1000];
    let mut bytes = bundle(
        "ships",
        &pinned,
        &[policy(1, &key)],
        std::slice::from_ref(&chunk),
        &key,
    );
    let position = bytes.len() - 100;
    bytes[position] ^= 1;
    let mut node = node(&pinned);
    let err = node.import(&bytes).expect_err("damaged chunk imported");
    assert!(
        err.to_string().contains("does not match the index"),
        "{err}"
    );
    assert!(!node.stored_objects(&key));
    assert!(!node.chunks.contains(&Hash::of(&chunk)));
}

#[test]
fn recover_moves_chunks_of_a_committed_import() {
    let key = SecretKey::generate();
    let node = node(&root("ships", &key));
    let staging = node.dir.path().join("staging");
    fs::create_dir_all(&staging).expect("staging");

    // What a crash after the transaction leaves: the record, one staged
    // chunk intact, one damaged on disk, and a temporary file.
    let good = vec![3u8; 500];
    let damaged = Hash::of(b"expected bytes");
    fs::write(staging.join(Hash::of(&good).to_hex()), &good).expect("write");
    fs::write(staging.join(damaged.to_hex()), b"other bytes").expect("write");
    fs::write(staging.join("chunk.1234.tmp"), b"partial").expect("write");
    let mut batch = Batch::default();
    batch.set_misc(commit::PENDING_CHUNKS_KEY, &vec![Hash::of(&good), damaged]);
    node.meta.put_batch(&batch).expect("record");

    let moved = recover(&node.meta, &node.chunks, &staging).expect("recovers");
    assert_eq!(moved, 1);
    assert_eq!(node.chunks.get(&Hash::of(&good)).expect("read"), Some(good));
    assert!(!node.chunks.contains(&damaged));
    assert_eq!(fs::read_dir(&staging).expect("staging").count(), 0);
    let pending: Option<Vec<Hash>> = node
        .meta
        .misc(commit::PENDING_CHUNKS_KEY)
        .expect("read record");
    assert_eq!(pending, None);
}

#[test]
fn rotation_in_bundle_lifts_revoked_floor() {
    let leaked = SecretKey::generate();
    let fresh = SecretKey::generate();
    let pinned = root("ships", &leaked);
    let mut node = node(&pinned);
    node.import(&bundle(
        "ships",
        &pinned,
        &[policy(1 << 40, &leaked)],
        &[],
        &leaked,
    ))
    .expect("policy signed by the leaked key imports");

    // Root version 2 lists only the fresh key, signed by both.
    let mut body: Root = pinned.decode_body().expect("root body");
    body.version = 2;
    body.keys.clear();
    body.keys.insert(fresh.id(), fresh.public());
    for rule in body.roles.values_mut() {
        rule.keys = vec![fresh.id()];
    }
    let rotated = Signed::sign(&body, &[&leaked, &fresh]);
    let summary = node
        .import(&bundle_with_roots(
            "ships",
            &[pinned, rotated],
            &[policy(2, &fresh)],
            &[],
            &fresh,
        ))
        .expect("a low revision under the new root imports");
    assert_eq!(summary.roots, 1);
    assert_eq!(summary.objects_stored, 1);
    assert_eq!(node.trust.root().version, 2);
}

#[test]
fn root_chain_past_hop_limit_stores_nothing() {
    let key = SecretKey::generate();
    let pinned = root("ships", &key);
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = MetaStore::open(&dir.path().join("meta")).expect("meta");
    let trust = Trust::load_with_hop_limit(&pinned, meta.clone(), 1).expect("trust");
    let chunks = ChunkStore::open(dir.path(), 0).expect("chunks");
    let mut node = Node {
        dir,
        trust,
        meta,
        chunks,
    };

    // Versions 2 and 3, each signed by the same key: two rotations.
    let mut chain = vec![pinned.clone()];
    for version in 2..=3 {
        let mut body: Root = pinned.decode_body().expect("root body");
        body.version = version;
        chain.push(Signed::sign(&body, &[&key]));
    }
    let chunk = vec![9u8; 700];
    let bytes = bundle_with_roots(
        "ships",
        &chain,
        &[policy(1, &key)],
        std::slice::from_ref(&chunk),
        &key,
    );
    let err = node
        .import(&bytes)
        .expect_err("chain past the limit imported");
    assert!(
        matches!(err, ImportError::RootChain { version: 3, .. }),
        "{err}"
    );
    assert_eq!(node.trust.root().version, 1);
    assert!(!node.stored_objects(&key));
    assert!(!node.chunks.contains(&Hash::of(&chunk)));
}
