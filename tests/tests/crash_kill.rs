//! A node killed with SIGKILL at random moments, during download, payload
//! assembly, install and the metadata writes between them, restarts with a
//! consistent store, keeps the chunks it had verified and installs every
//! patch exactly once.
//!
//! One victim node and its data folder live through every run. Each run
//! publishes a new patch (chunks to a seeder node, manifest and policy to
//! the victim) and waits for an anchor: the publish itself, "download
//! started" in the victim's log, the first stored chunk, or "download
//! complete". It then kills the victim after a delay drawn from a seeded
//! RNG, checks the data folder while the victim is dead, restarts it and
//! waits for the patch to be installed. Each anchor's delays span 0 to 1.5
//! times the phase that follows it (the publish, the wait for the first
//! chunk, the chunk transfer, the install), measured on a warm-up patch, so
//! the kills spread over every phase on machines of different speed. Set
//! `PATCHMESH_CRASH_SEED` to replay a seed; the timing of the processes
//! still varies between replays.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchmesh_node::store::chunks::hash_file;
use patchmesh_protocol::Kind;
use patchmesh_tests::{
    blake3_hex, crash_seed, open_meta_copy, patch_state, patch_status, Admin, Node, NodeOptions,
    Patch,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;

/// Kill-and-restart runs, each with its own patch.
const RUNS: usize = 50;

/// Chunk size of every patch.
const CHUNK: usize = 64 * 1024;

/// Payloads are 2 MiB plus up to this many bytes, so the last chunk is
/// often short.
const EXTRA_MAX: usize = 1024 * 1024;

/// Host name of the node that is killed.
const VICTIM: &str = "victim";

/// Maximum wait for an install after a restart.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Install command: copies the payload, then records the completion in a
/// log per patch. A kill between the two steps leaves no record, and the
/// retry after the restart then installs again, which is correct.
fn install_command(name: &str) -> String {
    format!("cp {{payload}} installed.bin && echo done >> installs-{name}.log")
}

/// Detect command: succeeds once the install of `name` completed, so a
/// retried install after a kill does not run the installer again.
fn detect_command(name: &str) -> String {
    format!("grep -q done installs-{name}.log")
}

/// A patch of this test with the chunk hashes the victim should store.
struct CrashPatch {
    name: String,
    patch: Patch,
    chunk_hashes: Vec<String>,
    payload_len: usize,
    policy: PathBuf,
}

impl CrashPatch {
    /// Signs a random payload of 2 to 3 MiB as `name@1` with a policy that
    /// targets every node.
    fn new(admin: &Admin, name: &str, rng: &mut StdRng) -> Self {
        let len = 2 * 1024 * 1024 + rng.gen_range(0..=EXTRA_MAX);
        let mut payload = vec![0u8; len];
        rng.fill_bytes(&mut payload);
        let chunk_size = CHUNK.to_string();
        let install = install_command(name);
        let detect = detect_command(name);
        let patch = admin.add_patch_with(
            name,
            "1",
            &payload,
            &[
                "--severity",
                "important",
                "--install",
                &install,
                "--detect",
                &detect,
                "--chunk-size",
                &chunk_size,
            ],
        );
        let chunk_hashes: Vec<String> = payload.chunks(CHUNK).map(blake3_hex).collect();
        assert_eq!(chunk_hashes.len(), patch.chunks, "chunk count of {name}");
        let policy = admin.sign_policy(name, &[&patch.reference], "admin.key");
        CrashPatch {
            name: name.to_string(),
            patch,
            chunk_hashes,
            payload_len: len,
            policy,
        }
    }

    /// Publishes the manifest and the chunks to the seeder.
    fn publish_to_seeder(&self, admin: &Admin, seeder: &Node) {
        admin.publish_ok(&seeder.url, &[&self.patch.dir]);
    }

    /// The manifest and policy files the victim gets straight from the
    /// admin. The victim must fetch every chunk from the seeder.
    ///
    /// They are not left to gossip from the seeder because gossip did not
    /// reach a victim restarted moments before: those objects came only
    /// with the next anti-entropy round, 30 s later.
    fn objects(&self) -> [PathBuf; 2] {
        let manifest = self
            .patch
            .dir
            .join(format!("{}.manifest", self.patch.reference));
        [manifest, self.policy.clone()]
    }
}

/// The event a run's kill delay counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    /// The publish of the manifest and policy to the victim started; the
    /// kill may cut it short.
    Publish,
    /// The victim logged "download started" for the patch.
    DownloadStarted,
    /// The first chunk file of the patch appeared in the victim's store.
    FirstChunk,
    /// The victim logged "download complete" for the patch.
    DownloadComplete,
}

impl Anchor {
    /// Draws an anchor: 15 % of the runs count from the publish, 15 % from
    /// the start of the download, 35 % from the first stored chunk and 35 %
    /// from the end of the download.
    fn draw(rng: &mut StdRng) -> Self {
        match rng.gen_range(0..20) {
            0..=2 => Anchor::Publish,
            3..=5 => Anchor::DownloadStarted,
            6..=12 => Anchor::FirstChunk,
            _ => Anchor::DownloadComplete,
        }
    }

    /// Text of the victim's log line that marks the anchor, if it is one.
    fn log_text(self) -> Option<&'static str> {
        match self {
            Anchor::DownloadStarted => Some("download started"),
            Anchor::DownloadComplete => Some("download complete"),
            Anchor::Publish | Anchor::FirstChunk => None,
        }
    }
}

/// Reads a node's log from an offset, for waiting on lines written after it.
struct LogCursor {
    path: PathBuf,
    offset: u64,
    text: String,
}

impl LogCursor {
    /// Starts at the current end of the log.
    fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        LogCursor {
            path: path.to_path_buf(),
            offset,
            text: String::new(),
        }
    }

    /// Appends whatever was written since the last read to `self.text`.
    fn read_new(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            self.offset += bytes.len() as u64;
            self.text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Waits until a line read since the cursor started contains both
    /// `needle` and `patch=NAME@1`; returns when it was seen.
    fn wait_for(&mut self, needle: &str, name: &str) -> Instant {
        let patch = format!("patch={name}@1");
        let deadline = Instant::now() + INSTALL_TIMEOUT;
        loop {
            self.read_new();
            let seen = self
                .text
                .lines()
                .any(|line| line.contains(needle) && line.contains(&patch));
            if seen {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} for {name} after {INSTALL_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Where the victim was when it was killed, read from its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Before the download of the patch started.
    BeforeDownload,
    /// Chunks were being fetched.
    Download,
    /// All chunks were stored, and assembly or the installer was running.
    AssembleInstall,
    /// The installer had recorded its completion, the installed state was
    /// not logged yet.
    AfterInstaller,
    /// The installed state was logged.
    Installed,
}

/// Reads the phase of `name` from the log lines written since the publish.
fn phase_at_kill(log_since_publish: &str, name: &str, data_dir: &Path) -> Phase {
    let patch = format!("patch={name}@1");
    let lines: Vec<&str> = log_since_publish
        .lines()
        .filter(|line| line.contains(&patch))
        .collect();
    let logged = |text: &str| lines.iter().any(|line| line.contains(text));
    if logged("to=installed") {
        Phase::Installed
    } else if install_records(data_dir, name) > 0 {
        Phase::AfterInstaller
    } else if logged("download complete") {
        Phase::AssembleInstall
    } else if logged("download started") {
        Phase::Download
    } else {
        Phase::BeforeDownload
    }
}

/// Counts the `done` lines the install command of `name` wrote.
fn install_records(data_dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(data_dir.join(format!("installs-{name}.log")))
        .map(|text| text.lines().filter(|line| *line == "done").count())
        .unwrap_or(0)
}

/// Path of a chunk file in a node's store.
fn chunk_path(data_dir: &Path, hex: &str) -> PathBuf {
    data_dir.join("chunks").join(&hex[..2]).join(hex)
}

/// Counts the chunks of `patch` stored in `data_dir`, and asserts that every
/// stored chunk file has the content of its hash: chunks are renamed into
/// place whole, so a kill never leaves a partial one.
fn stored_chunks(data_dir: &Path, patch: &CrashPatch) -> usize {
    let mut stored = 0;
    for hex in &patch.chunk_hashes {
        let path = chunk_path(data_dir, hex);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert_eq!(
            blake3_hex(&bytes),
            *hex,
            "chunk file {} does not match its name",
            path.display()
        );
        stored += 1;
    }
    stored
}

/// Asserts that every assembled payload is named after its own hash: the
/// payload is synced and renamed into place only after its hash is checked.
fn check_payloads(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("payloads")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hash = hash_file(&path).expect("read an assembled payload");
        assert_eq!(
            Some(hash.to_hex().as_str()),
            path.file_name().and_then(|n| n.to_str()),
            "assembled payload {} does not match its name",
            path.display()
        );
    }
}

/// Opens a copy of the victim's sled database, as the node would at start,
/// and decodes every signed object, slot, root and report in it. A copy is
/// opened so that the node's own open after the restart still meets the
/// files exactly as the kill left them. Returns the kind and slot of every
/// live object.
fn check_metadata(data_dir: &Path, scratch: &Path) -> Vec<(Kind, String)> {
    let meta = open_meta_copy(data_dir, scratch);
    let live = meta
        .live_objects()
        .unwrap_or_else(|e| panic!("sled database left by the kill: objects: {e}"));
    meta.roots()
        .unwrap_or_else(|e| panic!("sled database left by the kill: roots: {e}"));
    meta.reports()
        .unwrap_or_else(|e| panic!("sled database left by the kill: reports: {e}"));
    live.into_iter()
        .map(|(summary, _)| (summary.kind, summary.slot))
        .collect()
}

/// Kills the node as a power loss would: SIGKILL to the node, then SIGKILL
/// to every process still working in its data folder. Install commands are
/// children of the node and outlive a SIGKILL of the node alone. Left
/// running, they would race the installer retried after the restart.
fn power_off(node: &mut Node) {
    node.kill();
    let dir = node
        .data_dir()
        .canonicalize()
        .expect("the data folder exists");
    for _ in 0..50 {
        let orphans = processes_in(&dir);
        if orphans.is_empty() {
            return;
        }
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&orphans)
            .status()
            .expect("kill runs");
        // A process may exit between the scan and the kill.
        let _ = status;
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("processes still running in {} after SIGKILL", dir.display());
}

/// Ids of the processes whose working folder is `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.to_string();
            pid.parse::<u32>().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd == dir).then_some(pid)
        })
        .collect()
}

/// Returns the `resumed=N` value of the first "download started" line of
/// `name` in `log`.
fn resumed_chunks(log: &str, name: &str) -> Option<usize> {
    let patch = format!("patch={name}@1");
    let line = log
        .lines()
        .find(|line| line.contains("download started") && line.contains(&patch))?;
    let value = line.split("resumed=").nth(1)?;
    value.split_whitespace().next()?.parse().ok()
}

/// Waits until the victim's own status shows `reference` installed; panics
/// at once when the track failed or rolled back.
fn wait_installed(victim: &Node, reference: &str) -> Value {
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        let status = victim.status().expect("the victim's status is readable");
        match patch_state(&status, VICTIM, reference).as_deref() {
            Some("installed") => return status,
            Some(state @ ("failed" | "rolled_back")) => {
                let entry = patch_status(&status, VICTIM, reference).unwrap_or_default();
                panic!("{reference} ended {state}: {}", entry["detail"]);
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{reference} not installed after {INSTALL_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Returns the chunk bytes the victim's report counts for `reference`.
fn fetched_bytes(status: &Value, reference: &str) -> u64 {
    let entry = patch_status(status, VICTIM, reference).expect("the victim reports the patch");
    entry["bytes_same_site"].as_u64().unwrap_or(0) + entry["bytes_cross_site"].as_u64().unwrap_or(0)
}

/// Bytes of the chunks that were not stored at the kill, from a flag per
/// chunk of a payload of `payload_len` bytes.
fn missing_bytes(stored: &[bool], payload_len: usize) -> u64 {
    stored
        .iter()
        .enumerate()
        .filter(|(_, stored)| !**stored)
        .map(|(index, _)| CHUNK.min(payload_len - index * CHUNK) as u64)
        .sum()
}

/// Prints what a replay needs when a run panics.
struct RunContext {
    seed: u64,
    run: usize,
    anchor: Anchor,
    delay_ms: u64,
    phase: Option<Phase>,
    log: PathBuf,
}

impl Drop for RunContext {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        eprintln!(
            "crash run {} of {RUNS} failed: seed {} (replay with PATCHMESH_CRASH_SEED={}), \
             kill {} ms after {:?}, phase {:?}\n----- victim log tail -----\n{tail}",
            self.run, self.seed, self.seed, self.delay_ms, self.anchor, self.phase
        );
    }
}

/// Delay spans per anchor, in milliseconds, from a warm-up install.
struct Spans {
    publish: u64,
    download_started: u64,
    first_chunk: u64,
    download_complete: u64,
}

impl Spans {
    /// Publishes `warmup`, times its phases and returns 1.5 times each,
    /// with a floor of 50 ms.
    fn measure(admin: &Admin, seeder: &Node, victim: &Node, warmup: &CrashPatch) -> Spans {
        warmup.publish_to_seeder(admin, seeder);
        let mut cursor = LogCursor::at_end(&victim.log_path());
        let publishing = Instant::now();
        let [manifest, policy] = warmup.objects();
        admin.publish_ok(&victim.url, &[&manifest, &policy]);
        let published = Instant::now();
        let started = cursor.wait_for("download started", &warmup.name);
        let first_chunk = wait_first_chunk(victim.data_dir(), warmup);
        let complete = cursor.wait_for("download complete", &warmup.name);
        let installed = cursor.wait_for("to=installed", &warmup.name);
        let span = |from: Instant, to: Instant| {
            (to.saturating_duration_since(from).as_millis() as u64 * 3 / 2).max(50)
        };
        println!(
            "warm-up: publish {:?}, then to download start {:?}, to first chunk {:?}, \
             to download complete {:?}, to installed {:?}",
            published - publishing,
            started.saturating_duration_since(published),
            first_chunk.saturating_duration_since(published),
            complete - published,
            installed - published,
        );
        Spans {
            publish: span(publishing, published),
            download_started: span(started, first_chunk),
            first_chunk: span(first_chunk, complete),
            download_complete: span(complete, installed),
        }
    }

    fn of(&self, anchor: Anchor) -> u64 {
        match anchor {
            Anchor::Publish => self.publish,
            Anchor::DownloadStarted => self.download_started,
            Anchor::FirstChunk => self.first_chunk,
            Anchor::DownloadComplete => self.download_complete,
        }
    }
}

/// Waits until a chunk file of `patch` exists in `data_dir`; returns when
/// it was seen.
fn wait_first_chunk(data_dir: &Path, patch: &CrashPatch) -> Instant {
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        let stored = patch
            .chunk_hashes
            .iter()
            .any(|hex| chunk_path(data_dir, hex).exists());
        if stored {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no chunk of {} stored after {INSTALL_TIMEOUT:?}",
            patch.name
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn random_sigkills_install_each_patch_once() {
    let seed = crash_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let admin = Admin::new();
    let scratch = tempfile::tempdir().expect("temporary folder");
    let seeder = Node::start(&admin, NodeOptions::new("seeder", "site-a"));
    let mut victim = Node::start(
        &admin,
        NodeOptions::new(VICTIM, "site-a").bootstrap(&seeder),
    );
    seeder.wait_for_peers(1);
    let data_dir = victim.data_dir().to_path_buf();

    let warmup = CrashPatch::new(&admin, "warmup", &mut rng);
    let spans = Spans::measure(&admin, &seeder, &victim, &warmup);
    wait_installed(&victim, &warmup.patch.reference);
    assert_eq!(install_records(&data_dir, "warmup"), 1);

    let mut patches = vec![warmup];
    let mut phases: BTreeMap<Phase, usize> = BTreeMap::new();
    for run in 0..RUNS {
        let anchor = Anchor::draw(&mut rng);
        let delay_ms = rng.gen_range(0..=spans.of(anchor));
        let name = format!("crash-{run:02}");
        let patch = CrashPatch::new(&admin, &name, &mut rng);
        let mut context = RunContext {
            seed,
            run,
            anchor,
            delay_ms,
            phase: None,
            log: victim.log_path(),
        };

        // Publish, wait for the anchor and the delay, and cut the power.
        patch.publish_to_seeder(&admin, &seeder);
        let objects = patch.objects();
        let object_paths = [objects[0].as_path(), objects[1].as_path()];
        let mut cursor = LogCursor::at_end(&victim.log_path());
        let victim_url = victim.url.clone();
        let acknowledged = match anchor {
            Anchor::Publish => std::thread::scope(|scope| {
                let publishing = scope.spawn(|| admin.publish(&victim_url, &object_paths));
                std::thread::sleep(Duration::from_millis(delay_ms));
                power_off(&mut victim);
                let output = publishing.join().expect("the publish thread ends");
                output.status.success()
            }),
            _ => {
                admin.publish_ok(&victim.url, &object_paths);
                if anchor == Anchor::FirstChunk {
                    wait_first_chunk(&data_dir, &patch);
                } else if let Some(text) = anchor.log_text() {
                    cursor.wait_for(text, &name);
                }
                std::thread::sleep(Duration::from_millis(delay_ms));
                power_off(&mut victim);
                true
            }
        };
        cursor.read_new();
        let before_kill = std::mem::take(&mut cursor.text);
        let phase = phase_at_kill(&before_kill, &name, &data_dir);
        context.phase = Some(phase);
        *phases.entry(phase).or_default() += 1;

        // While the victim is dead: chunk files, payloads and the sled
        // database must be whole.
        let stored: Vec<bool> = patch
            .chunk_hashes
            .iter()
            .map(|hex| chunk_path(&data_dir, hex).exists())
            .collect();
        let stored_before = stored_chunks(&data_dir, &patch);
        check_payloads(&data_dir);
        let live = check_metadata(&data_dir, scratch.path());
        if acknowledged {
            // The policy created a track, whose record is flushed before
            // the publish returns, and that flush covers the objects.
            for (kind, slot) in [
                (Kind::Manifest, &patch.patch.reference),
                (Kind::Policy, &name),
            ] {
                assert!(
                    live.contains(&(kind, slot.clone())),
                    "{kind} {slot} was acknowledged by the victim but is not in its database \
                     after the kill"
                );
            }
        }
        let records_before = install_records(&data_dir, &name);
        let downloaded_before = before_kill
            .lines()
            .any(|line| line.contains("download complete") && line.contains(&name));

        // Restart; the node must come up with its status readable.
        victim.restart();
        assert!(victim.is_running(), "the victim exited after the restart");
        assert!(
            victim.status().is_some(),
            "the victim's status is not readable after the restart"
        );
        // The chunks come from the seeder.
        victim.wait_for_peers(1);
        if !acknowledged {
            admin.publish_ok(&victim.url, &object_paths);
        }

        let status = wait_installed(&victim, &patch.patch.reference);
        assert_eq!(
            victim.installed_hash().as_deref(),
            Some(patch.patch.payload_hash.as_str()),
            "installed file of {name}"
        );
        assert_eq!(
            install_records(&data_dir, &name),
            1,
            "installs of {name} ({records_before} before the kill)"
        );

        // Chunks stored before the kill are not fetched again.
        cursor.read_new();
        if !downloaded_before {
            let resumed = resumed_chunks(&cursor.text, &name)
                .unwrap_or_else(|| panic!("{name}: no download started after the restart"));
            assert!(
                resumed >= stored_before,
                "{name}: resumed {resumed} chunks but {stored_before} were stored at the kill"
            );

            let fetched = fetched_bytes(&status, &patch.patch.reference);
            let missing = missing_bytes(&stored, patch.payload_len);
            assert!(
                fetched <= missing,
                "{name}: fetched {fetched} bytes after the restart, \
                 but only {missing} bytes of chunks were missing"
            );
        }
        println!(
            "run {run:02}: kill {delay_ms:>4} ms after {anchor:?}, phase {phase:?}, \
             {stored_before}/{} chunks stored, {records_before} install records, \
             {} live objects, publish acknowledged: {acknowledged}",
            patch.chunk_hashes.len(),
            live.len()
        );
        patches.push(patch);
        drop(context);
    }

    // No restart re-ran an earlier patch, and each is still installed.
    let status = victim.status().expect("the victim's status is readable");
    for patch in &patches {
        assert_eq!(
            install_records(&data_dir, &patch.name),
            1,
            "installs of {} after all runs",
            patch.name
        );
        assert_eq!(
            patch_state(&status, VICTIM, &patch.patch.reference).as_deref(),
            Some("installed"),
            "final state of {}",
            patch.name
        );
    }
    println!(
        "{RUNS} kills in {:?}; phases at the kill: {phases:?}; seed {seed}",
        started.elapsed()
    );
}
