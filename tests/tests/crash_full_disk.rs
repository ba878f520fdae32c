//! A node whose data folder fills up logs an error that names the disk,
//! pauses the download for a growing delay instead of refetching at once,
//! keeps running and serving its status, loses nothing it stored before,
//! and finishes the download once space is freed.
//!
//! The data folder is a small tmpfs that the test mounts, so the test needs
//! root (or `CAP_SYS_ADMIN`). Without it, the test prints why and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchmesh_tests::{
    blake3_hex, patch_state, random_bytes, wait_until, Admin, Node, NodeOptions, Patch,
};
use serde_json::Value;

/// Size of the tmpfs, in MiB.
const TMPFS_MIB: u64 = 8;

/// Chunk size of the patches.
const CHUNK: u32 = 64 * 1024;

/// How long the test watches the node on the full disk.
const WATCH_FULL_DISK: Duration = Duration::from_secs(10);

/// Maximum full-disk error lines per second the node may log while its disk
/// stays full.
const MAX_ERRORS_PER_SEC: f64 = 1.0;

/// Host name of the node whose disk fills up.
const HOST: &str = "full";

/// Install command of the patches: copies the payload and records each
/// completed install, so a second install of the same patch shows.
const INSTALL: &str = "cp {payload} installed.bin && echo done >> installs.log";

/// Unmounts the tmpfs when dropped, also when the test panics.
struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `mib` MiB on `dir`. Returns mount's error output
    /// when mounting is not permitted.
    fn new(dir: &Path, mib: u64) -> Result<Self, String> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }

    /// Resizes the tmpfs to `mib` MiB.
    fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "resizing the tmpfs failed: {status}");
    }

    /// Bytes still free on the tmpfs.
    fn available(&self) -> u64 {
        let output = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir)
            .output()
            .expect("df runs");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected df output {text:?}"))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // The node may still run with its working folder inside the mount.
        // A lazy unmount then detaches the tmpfs at once and frees it when
        // the node is gone.
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            || Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!("could not unmount the tmpfs at {}", self.dir.display());
        }
    }
}

/// Returns whether a file system is mounted on `dir`.
fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(&*dir))
}

/// Asserts that every chunk file in `data_dir` has the content its name
/// promises: a write that hit the full disk must leave no partial chunk.
/// Returns the number of chunk files.
fn check_chunk_files(data_dir: &Path) -> usize {
    let mut count = 0;
    let shards = std::fs::read_dir(data_dir.join("chunks")).expect("list chunks/");
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path())
            .expect("list a chunk shard")
            .flatten()
        {
            let bytes = std::fs::read(file.path()).expect("read a chunk file");
            assert_eq!(
                Some(blake3_hex(&bytes).as_str()),
                file.file_name().to_str(),
                "chunk file {} does not match its name",
                file.path().display()
            );
            count += 1;
        }
    }
    count
}

/// Copies the contents of `from` into `to`, keeping symbolic links.
fn copy_contents(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying {} failed", from.display());
}

/// Counts completed installs recorded by [`INSTALL`].
fn install_records(data_dir: &Path) -> usize {
    std::fs::read_to_string(data_dir.join("installs.log"))
        .map(|text| text.lines().filter(|line| *line == "done").count())
        .unwrap_or(0)
}

/// Signs `len` random bytes as patch `name@1` installed with [`INSTALL`].
fn add_patch(admin: &Admin, name: &str, len: usize) -> (Patch, PathBuf) {
    let chunk_size = CHUNK.to_string();
    let patch = admin.add_patch_with(
        name,
        "1",
        &random_bytes(len),
        &[
            "--severity",
            "important",
            "--install",
            INSTALL,
            "--chunk-size",
            &chunk_size,
        ],
    );
    let policy = admin.sign_policy(name, &[&patch.reference], "admin.key");
    (patch, policy)
}

/// Waits until the node's own status shows `reference` installed.
fn wait_installed(node: &Node, reference: &str, timeout: Duration) -> Value {
    wait_until(&format!("{reference} installed"), timeout, || {
        let status = node.status()?;
        (patch_state(&status, HOST, reference).as_deref() == Some("installed")).then_some(status)
    })
}

#[test]
fn full_disk_is_reported_and_corrupts_nothing() {
    let admin = Admin::new();
    let seeder = Node::start(&admin, NodeOptions::new("seeder", "site-a"));
    let mut node = Node::start(&admin, NodeOptions::new(HOST, "site-a").bootstrap(&seeder));
    let data_dir = node.data_dir().to_path_buf();

    // Move the node's data folder onto a tmpfs. The log goes through a
    // symbolic link to a file outside it, so the full disk cannot swallow
    // the error the test looks for.
    node.kill();
    let outside = tempfile::tempdir().expect("temporary folder");
    let log_file = outside.path().join("node.log");
    std::fs::rename(node.log_path(), &log_file).expect("move the log out");
    std::os::unix::fs::symlink(&log_file, node.log_path()).expect("link the log");
    let backup = outside.path().join("data");
    std::fs::create_dir(&backup).expect("create the backup folder");
    copy_contents(&data_dir, &backup);
    let mount = match TmpfsMount::new(&data_dir, TMPFS_MIB) {
        Ok(mount) => mount,
        Err(reason) => {
            println!("skipped: cannot mount a tmpfs ({reason}); run as root to test a full disk");
            return;
        }
    };
    copy_contents(&backup, &data_dir);
    node.restart();
    seeder.wait_for_peers(1);

    // A small patch installs while there is room.
    let (small, small_policy) = add_patch(&admin, "small", 256 * 1024);
    admin.publish_ok(&seeder.url, &[&small.dir, &small_policy]);
    wait_installed(&node, &small.reference, Duration::from_secs(60));
    assert_eq!(
        node.installed_hash().as_deref(),
        Some(small.payload_hash.as_str())
    );
    assert_eq!(install_records(&data_dir), 1, "installs of small");

    // A patch larger than the free space fills the disk.
    let available = mount.available();
    let big_len = (available + 2 * 1024 * 1024) as usize;
    println!("{available} bytes free on the tmpfs; publishing {big_len} bytes");
    let (big, big_policy) = add_patch(&admin, "big", big_len);
    admin.publish_ok(&seeder.url, &[&big.dir, &big_policy]);
    let error_line = wait_until(
        "an error about the full disk",
        Duration::from_secs(60),
        || {
            node.log()
                .lines()
                .find(|line| line.contains("No space left on device"))
                .map(str::to_string)
        },
    );
    let first_error = Instant::now();
    println!("full disk logged as: {error_line}");
    assert!(
        error_line.contains("ERROR"),
        "the full disk is logged at error level: {error_line}"
    );
    assert!(
        error_line.contains("chunk store") && error_line.contains("chunks/"),
        "the error names the chunk store and the file: {error_line}"
    );

    // The node keeps running and reporting while the disk is full.
    std::thread::sleep(WATCH_FULL_DISK);
    assert!(node.is_running(), "the node exited on a full disk");
    let status = node.status().expect("status readable on a full disk");
    assert_eq!(
        patch_state(&status, HOST, &small.reference).as_deref(),
        Some("installed"),
        "small patch state on a full disk"
    );
    assert_ne!(
        patch_state(&status, HOST, &big.reference).as_deref(),
        Some("installed"),
        "big patch cannot be installed on a full disk"
    );

    // The download pauses after each failure for a growing delay, so the
    // node neither refetches the same chunks at once nor logs each failure.
    let watched = first_error.elapsed();
    let log = node.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("No space left on device"))
        .collect();
    println!(
        "{} error lines about the full disk in {watched:?}",
        errors.len()
    );
    let paused = errors
        .iter()
        .find(|line| line.contains("download paused"))
        .unwrap_or_else(|| panic!("no pause logged: {errors:#?}"));
    assert!(
        paused.contains("retry_secs") && paused.contains(&big.reference),
        "the pause names the patch and the retry delay: {paused}"
    );
    // Pauses of 1, 2, 4 and 8 s allow 4 or 5 error lines in 10 s. Without
    // the pause the node logged some 35 a second.
    let per_second = errors.len() as f64 / watched.as_secs_f64();
    assert!(
        per_second < MAX_ERRORS_PER_SEC,
        "{} error lines in {watched:?} on a full disk",
        errors.len()
    );

    // While the node is down: every chunk file is whole. A restart on the
    // still full disk keeps what was stored before.
    node.kill();
    let chunk_files = check_chunk_files(&data_dir);
    println!("{chunk_files} whole chunk files on the full disk");
    node.restart();
    assert!(node.is_running(), "the node exited after a restart");
    let status = wait_installed(&node, &small.reference, Duration::from_secs(30));
    assert_ne!(
        patch_state(&status, HOST, &big.reference).as_deref(),
        Some("installed")
    );
    assert_eq!(
        node.installed_hash().as_deref(),
        Some(small.payload_hash.as_str()),
        "installed file after the restart"
    );
    assert_eq!(install_records(&data_dir), 1, "installs of small");

    // Once there is room, the download finishes from the stored chunks.
    mount.resize(TMPFS_MIB * 4);
    let resized = Instant::now();
    wait_installed(&node, &big.reference, Duration::from_secs(120));
    println!(
        "big patch installed {:?} after the resize",
        resized.elapsed()
    );
    assert_eq!(
        node.installed_hash().as_deref(),
        Some(big.payload_hash.as_str())
    );
    assert_eq!(install_records(&data_dir), 2, "installs of small and big");

    node.kill();
    drop(mount);
    assert!(!is_mounted(&data_dir), "the tmpfs is still mounted");
}
