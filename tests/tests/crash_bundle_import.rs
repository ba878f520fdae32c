//! A node killed with SIGKILL at random moments while it imports a large
//! air-gap bundle restarts with its store either exactly as before the
//! import or holding everything the bundle carried, never part of it.
//!
//! Each run starts a fresh node, imports a small base bundle (a patch and
//! policy `base` revision 1), then imports the large bundle (a 24 MiB patch,
//! its policy and policy `base` revision 2) and kills the node after a delay
//! drawn from a seeded RNG. Half the runs count the delay from the import
//! request, over 0 to 1.5 times the import time measured on a warm-up node;
//! the other half count it from the moment nine tenths of the chunks are
//! staged, over 0 to 1.5 times the rest of the import. So kills land before
//! the request, while chunks are staged, during the commit, while chunks
//! move into the store and after the reply. After the
//! restart the test reads a copy of the sled database and the chunk files:
//! the live objects must equal the set before or the set after the import,
//! every chunk file must match its hash, and the chunk files must be exactly
//! those of that state. A run whose import was acknowledged must be in the
//! state after. A run left in the state before imports the bundle again and
//! must then hold all of it. Set `PATCHMESH_CRASH_SEED` to replay a seed;
//! process timing still varies between replays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchmesh_node::store::chunks::hash_file;
use patchmesh_protocol::{Hash, Kind};
use patchmesh_tests::{
    crash_seed, import_bundle, import_bundle_ok, open_meta_copy, patch_chunk_names, Admin, Node,
    NodeOptions, Patch,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Kill-and-restart runs, each on a fresh node.
const RUNS: usize = 20;

/// Size of the large bundle's patch.
const BIG_PAYLOAD: usize = 24 * 1024 * 1024;

/// Chunk size of both patches.
const CHUNK: u32 = 256 * 1024;

/// Key of the sled record of chunks a committed import still has to move.
const PENDING_CHUNKS_KEY: &str = "bundle_pending_chunks";

/// A live object as stored in the sled database: kind, slot, revision, id.
type LiveObject = (Kind, String, u64, Hash);

/// The bundles of the test and the store contents they lead to.
struct Fixture {
    base_bundle: PathBuf,
    big_bundle: PathBuf,
    base_chunks: BTreeSet<String>,
    all_chunks: BTreeSet<String>,
    /// Number of chunks of the large bundle's patch.
    big_chunks: usize,
}

/// Signs a policy `id` at `version` naming `patch` for a group no test
/// node is in, so nothing installs while the store is checked.
fn policy(admin: &Admin, id: &str, version: u64, patch: &str) -> PathBuf {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let text = format!(
        "id = \"{id}\"\nversion = {version}\nexpires = \"{expires}\"\n\n\
         [targets]\ngroups = [\"elsewhere\"]\n\n[content]\npatches = [\"{patch}\"]\n"
    );
    let toml = format!("{id}-{version}.toml");
    std::fs::write(admin.path(&toml), text).expect("write policy");
    let out = format!("{id}-{version}.policy");
    admin.signer_json(&["policy", "sign", &toml, "--key", "admin.key", "--out", &out]);
    admin.path(&out)
}

fn create_bundle(admin: &Admin, out: &str, policies: &[PathBuf], patch: &Patch) -> PathBuf {
    let mut args = vec![
        "bundle".to_string(),
        "create".into(),
        "--out".into(),
        out.into(),
        "--root".into(),
        "root.bin".into(),
        "--key".into(),
        "admin.key".into(),
        "--patch".into(),
        patch.dir.display().to_string(),
    ];
    for policy in policies {
        args.extend(["--policy".into(), policy.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    admin.signer_json(&args);
    admin.path(out)
}

impl Fixture {
    fn new(admin: &Admin, rng: &mut StdRng) -> Self {
        let mut payload = vec![0u8; 256 * 1024 + 1000];
        rng.fill_bytes(&mut payload);
        let base = admin.add_patch("base", &payload, CHUNK);
        let mut payload = vec![0u8; BIG_PAYLOAD];
        rng.fill_bytes(&mut payload);
        let big = admin.add_patch("big", &payload, CHUNK);

        let base_1 = policy(admin, "base", 1, &base.reference);
        let base_2 = policy(admin, "base", 2, &base.reference);
        let big_1 = policy(admin, "big", 1, &big.reference);
        let base_bundle = create_bundle(admin, "base.bundle", &[base_1], &base);
        let big_bundle = create_bundle(admin, "big.bundle", &[big_1, base_2], &big);

        let base_chunks = patch_chunk_names(&base);
        let mut all_chunks = base_chunks.clone();
        all_chunks.extend(patch_chunk_names(&big));
        Fixture {
            base_bundle,
            big_bundle,
            base_chunks,
            all_chunks,
            big_chunks: big.chunks,
        }
    }
}

/// Returns the chunk files of the node's store, asserting that each one
/// matches the hash it is named after.
fn checked_chunks(data_dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Ok(shards) = std::fs::read_dir(data_dir.join("chunks")) else {
        return names;
    };
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            let hash = hash_file(&file.path()).expect("read a chunk file");
            assert_eq!(hash.to_hex(), name, "chunk file does not match its name");
            names.insert(name);
        }
    }
    names
}

fn staged_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("bundle-staging"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// What a copy of the node's sled database holds: the live objects and
/// whether a committed import still has chunks to move.
struct MetaCopy {
    live: BTreeSet<LiveObject>,
    chunks_pending: bool,
}

/// Opens a copy of the node's sled database, so the node's own next open
/// meets the files exactly as the kill left them.
fn read_meta(data_dir: &Path, scratch: &Path) -> MetaCopy {
    let meta = open_meta_copy(data_dir, scratch);
    let live = meta
        .live_objects()
        .unwrap_or_else(|e| panic!("sled database left by the kill: objects: {e}"))
        .into_iter()
        .map(|(summary, _)| (summary.kind, summary.slot, summary.revision, summary.id))
        .collect();
    let chunks_pending = meta
        .misc::<Vec<Hash>>(PENDING_CHUNKS_KEY)
        .unwrap_or_else(|e| panic!("sled database left by the kill: {PENDING_CHUNKS_KEY}: {e}"))
        .is_some();
    MetaCopy {
        live,
        chunks_pending,
    }
}

/// The moment a run's kill delay counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    /// The import command started.
    Request,
    /// Nine tenths of the large bundle's chunks are in the staging folder,
    /// so the delay reaches the end of pass one and the commit.
    NearlyStaged,
}

/// Waits until nine tenths of `chunks` staged files are in the node's
/// staging folder, or the import has ended; returns when.
fn wait_nearly_staged(
    data_dir: &Path,
    chunks: usize,
    importing: &std::thread::JoinHandle<std::process::Output>,
) -> Instant {
    let mark = chunks * 9 / 10;
    while staged_files(data_dir) < mark && !importing.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    Instant::now()
}

/// Where a kill landed, judged from the files it left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landing {
    /// Nothing of the import on disk: before it started or after staging
    /// was cleaned up.
    Idle,
    /// Chunks staged, objects not committed.
    Staging,
    /// Objects committed, chunks still being moved.
    Moving,
}

#[test]
fn sigkill_during_import_leaves_before_or_after() {
    let seed = crash_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let admin = Admin::new();
    let scratch = tempfile::tempdir().expect("temporary folder");
    let fixture = Fixture::new(&admin, &mut rng);

    // Warm-up: the states before and after, the import time, and the time
    // from the nearly staged mark to the reply.
    let mut warmup = Node::start(&admin, NodeOptions::new("warmup", "ship"));
    import_bundle_ok(&warmup, &fixture.base_bundle);
    warmup.kill();
    let before = read_meta(warmup.data_dir(), scratch.path()).live;
    warmup.restart();
    let request = Instant::now();
    let url = warmup.url.clone();
    let big = fixture.big_bundle.clone();
    let importing = std::thread::spawn(move || import_bundle(&url, &big));
    let staged_at = wait_nearly_staged(warmup.data_dir(), fixture.big_chunks, &importing);
    let output = importing.join().expect("the import thread ends");
    let import_ms = request.elapsed().as_millis() as u64;
    let tail_ms = staged_at.elapsed().as_millis() as u64;
    assert!(output.status.success(), "warm-up import failed");
    warmup.kill();
    let after = read_meta(warmup.data_dir(), scratch.path()).live;
    assert_eq!(checked_chunks(warmup.data_dir()), fixture.all_chunks);
    assert_eq!(before.len(), 2, "base bundle objects: {before:?}");
    assert_eq!(after.len(), 4, "objects after the large bundle: {after:?}");
    println!("warm-up import of the large bundle took {import_ms} ms, {tail_ms} ms of it after the nearly staged mark");

    let mut landings = Vec::new();
    for run in 0..RUNS {
        let anchor = if rng.gen_bool(0.5) {
            Anchor::Request
        } else {
            Anchor::NearlyStaged
        };
        let delay_ms = match anchor {
            Anchor::Request => rng.gen_range(0..=import_ms * 3 / 2),
            Anchor::NearlyStaged => rng.gen_range(0..=tail_ms * 3 / 2),
        };
        let context = format!("seed {seed}, run {run}, kill {delay_ms} ms after {anchor:?}");
        let mut node = Node::start(&admin, NodeOptions::new(&format!("crash-{run:02}"), "ship"));
        import_bundle_ok(&node, &fixture.base_bundle);
        let data_dir = node.data_dir().to_path_buf();

        let url = node.url.clone();
        let big = fixture.big_bundle.clone();
        let importing = std::thread::spawn(move || import_bundle(&url, &big));
        if anchor == Anchor::NearlyStaged {
            wait_nearly_staged(&data_dir, fixture.big_chunks, &importing);
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        node.kill();
        let acknowledged = importing
            .join()
            .expect("the import thread ends")
            .status
            .success();

        // As the kill left it, before any restart.
        checked_chunks(&data_dir);
        let landing = if read_meta(&data_dir, scratch.path()).chunks_pending {
            Landing::Moving
        } else if staged_files(&data_dir) > 0 {
            Landing::Staging
        } else {
            Landing::Idle
        };

        // After the restart, which finishes or discards the import.
        node.restart();
        node.kill();
        let state = read_meta(&data_dir, scratch.path());
        let chunks = checked_chunks(&data_dir);
        assert!(!state.chunks_pending, "{context}: chunks still pending");
        assert_eq!(staged_files(&data_dir), 0, "{context}: staging files left");
        let committed = if state.live == after {
            assert_eq!(chunks, fixture.all_chunks, "{context}: chunks after");
            true
        } else {
            assert_eq!(
                state.live, before,
                "{context}: objects are neither before nor after"
            );
            assert_eq!(chunks, fixture.base_chunks, "{context}: chunks before");
            false
        };
        assert!(
            committed || !acknowledged,
            "{context}: the import was acknowledged but is not stored"
        );
        println!(
            "{context}: landed {landing:?}, acknowledged {acknowledged}, committed {committed}"
        );
        landings.push(landing);

        // A node left as before imports the same bundle whole.
        if !committed {
            node.restart();
            let summary = import_bundle_ok(&node, &fixture.big_bundle);
            assert_eq!(summary["objects_stored"], 3, "{context}: {summary}");
            node.kill();
            assert_eq!(
                read_meta(&data_dir, scratch.path()).live,
                after,
                "{context}"
            );
            assert_eq!(checked_chunks(&data_dir), fixture.all_chunks, "{context}");
        }
    }

    let mid_import = landings.iter().filter(|l| **l != Landing::Idle).count();
    println!(
        "{RUNS} runs in {:.0?}: {mid_import} killed mid-import ({} while moving chunks)",
        started.elapsed(),
        landings.iter().filter(|l| **l == Landing::Moving).count()
    );
    assert!(
        mid_import > 0,
        "seed {seed}: no kill landed during an import; the delays miss the import"
    );
}
