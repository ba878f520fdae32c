//! Harness for integration tests that run the real `patchmesh-node` and
//! `patchmesh-signer` binaries on loopback.
//!
//! [`Admin`] plays the admin in a temporary folder: a key, a trust root,
//! signed patches and policies, publish. [`Node`] is one node process in its
//! own data folder, started with that folder as its working folder, so an
//! install command such as `cp {payload} installed.bin` writes inside it.
//! A node's log goes to a file that is printed when the test panics, and the
//! process is killed when the [`Node`] is dropped. [`hostile`] is a
//! misbehaving libp2p peer for attack tests, and [`attack`] holds helpers
//! those tests share.

pub mod attack;
pub mod hostile;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use patchmesh_node::config::{ClockConfig, Commands, Config, RelayConfig};
use patchmesh_node::deb::DebConfig;
use patchmesh_node::inventory::InventoryConfig;
use serde_json::Value;
use tempfile::TempDir;

/// File the install commands of these tests write, relative to a node's
/// data folder.
pub const INSTALLED_FILE: &str = "installed.bin";

/// Install command that copies the payload to [`INSTALLED_FILE`].
pub const INSTALL_COMMAND: &str = "cp {payload} installed.bin";

/// Paths of the binaries under test.
pub struct Binaries {
    pub node: PathBuf,
    pub signer: PathBuf,
}

/// Returns the node and signer binaries of this target folder, building them
/// once per test process so that they match the sources.
///
/// `cargo test` builds only the binaries of the package under test, and
/// these live in other packages.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable has a path");
        // Test executables live in `target/<profile>/deps`.
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable sits in target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .args(["-p", "patchmesh-node", "-p", "patchmesh-signer"]);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed: {status}");
        let binaries = Binaries {
            node: profile_dir.join("patchmesh-node"),
            signer: profile_dir.join("patchmesh-signer"),
        };
        assert!(
            binaries.node.is_file(),
            "{} missing",
            binaries.node.display()
        );
        assert!(
            binaries.signer.is_file(),
            "{} missing",
            binaries.signer.display()
        );
        binaries
    })
}

/// Returns the last line of standard output parsed as JSON.
pub fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last stdout line {line:?}: {e}"))
}

/// Returns the BLAKE3 hex of `bytes`.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Returns `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// Calls `probe` every 100 ms until it returns `Some`, and panics with
/// `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `GET url` and parses the JSON response; `None` when the request
/// fails, so callers can poll a node that is still starting.
pub fn get_json(url: &str) -> Option<Value> {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_json()
        .ok()
}

/// A patch written by [`Admin::add_patch`].
pub struct Patch {
    /// `name@version`.
    pub reference: String,
    /// Folder with the manifest and `chunks/`.
    pub dir: PathBuf,
    pub payload_hash: String,
    pub chunks: usize,
}

/// The admin: a key and a trust root in a temporary folder.
pub struct Admin {
    dir: TempDir,
}

impl Admin {
    /// Creates `admin.key` and `root.bin` signed by it.
    pub fn new() -> Self {
        let admin = Admin {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        admin.signer_json(&["keygen", "--out", "admin.key"]);
        admin.signer_json(&["root", "init", "--key", "admin.key", "--out", "root.bin"]);
        admin
    }

    /// Returns the path of `name` in the admin's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Returns the trust root every node pins.
    pub fn root(&self) -> PathBuf {
        self.path("root.bin")
    }

    /// Runs the signer in the admin's folder.
    pub fn signer(&self, args: &[&str]) -> Output {
        Command::new(&binaries().signer)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the signer runs")
    }

    /// Runs the signer with `--json`, asserts success and returns its JSON.
    pub fn signer_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.signer(&all);
        assert!(
            output.status.success(),
            "patchmesh-signer {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        last_json(&output)
    }

    /// Signs `payload` as patch `name@1`, installed with [`INSTALL_COMMAND`],
    /// cut into chunks of `chunk_size` bytes.
    pub fn add_patch(&self, name: &str, payload: &[u8], chunk_size: u32) -> Patch {
        let chunk_size = chunk_size.to_string();
        self.add_patch_with(
            name,
            "1",
            payload,
            &[
                "--severity",
                "important",
                "--install",
                INSTALL_COMMAND,
                "--chunk-size",
                &chunk_size,
            ],
        )
    }

    /// Writes a policy `id` for every node naming `patches` and signs it with
    /// `key`; returns the signed file.
    pub fn sign_policy(&self, id: &str, patches: &[&str], key: &str) -> PathBuf {
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let list: Vec<String> = patches.iter().map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "id = \"{id}\"\nversion = 1\nexpires = \"{expires}\"\n\n[content]\npatches = [{}]\n",
            list.join(", ")
        );
        let toml = format!("{id}.toml");
        std::fs::write(self.path(&toml), text).expect("write policy");
        let out = format!("{id}-{}.policy", key.trim_end_matches(".key"));
        self.signer_json(&["policy", "sign", &toml, "--key", key, "--out", &out]);
        self.path(&out)
    }

    /// Signs `payload` as patch `name@version` with the extra `patch add`
    /// arguments `args`: `--severity`, which is required, the installer
    /// (`--install`, `--rollback`, `--replace`) and flags such as `--reboot`.
    pub fn add_patch_with(
        &self,
        name: &str,
        version: &str,
        payload: &[u8],
        args: &[&str],
    ) -> Patch {
        let file = format!("{name}-{version}.payload");
        std::fs::write(self.path(&file), payload).expect("write payload");
        let out = format!("patch-{name}-{version}");
        let mut all = vec![
            "patch",
            "add",
            &file,
            "--name",
            name,
            "--version",
            version,
            "--key",
            "admin.key",
            "--out",
            &out,
        ];
        all.extend_from_slice(args);
        let json = self.signer_json(&all);
        Patch {
            reference: format!("{name}@{version}"),
            dir: self.path(&out),
            payload_hash: json["payload_hash"].as_str().expect("payload_hash").into(),
            chunks: json["chunks"].as_u64().expect("chunks") as usize,
        }
    }

    /// Signs the policy TOML `text` with `admin.key`; returns the signed
    /// file, `{id}.policy`.
    pub fn sign_policy_text(&self, id: &str, text: &str) -> PathBuf {
        let toml = format!("{id}.toml");
        std::fs::write(self.path(&toml), text).expect("write policy");
        let out = format!("{id}.policy");
        self.signer_json(&["policy", "sign", &toml, "--key", "admin.key", "--out", &out]);
        self.path(&out)
    }

    /// Signs an admin action (`approve`, `halt`, `resume` or `rollback`
    /// with its arguments) with `admin.key` into `out`; returns that file.
    pub fn sign_action(&self, args: &[&str], out: &str) -> PathBuf {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--key", "admin.key", "--out", out]);
        self.signer_json(&all);
        self.path(out)
    }

    /// Publishes files or folders to the node at `url`; returns the output,
    /// whatever the exit status.
    pub fn publish(&self, url: &str, paths: &[&Path]) -> Output {
        let mut command = Command::new(&binaries().signer);
        command.args(["publish", "--node", url]).args(paths);
        command
            .current_dir(self.dir.path())
            .output()
            .expect("the signer runs")
    }

    /// Publishes and asserts success.
    pub fn publish_ok(&self, url: &str, paths: &[&Path]) {
        let output = self.publish(url, paths);
        assert!(
            output.status.success(),
            "publish failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Default for Admin {
    fn default() -> Self {
        Self::new()
    }
}

/// How to set up a node.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub host: String,
    pub site: String,
    /// Groups given to `patchmesh-node init --group`.
    pub groups: Vec<String>,
    pub observer: bool,
    /// Multiaddrs with `/p2p/PEER` to dial at start.
    pub bootstrap: Vec<String>,
    /// Chunk requests in flight per peer; the node's default when `None`.
    pub requests_per_peer: Option<usize>,
    /// Value of `PATCHMESH_LOG`; the node's default filter when `None`.
    pub log_filter: Option<String>,
    /// The config's `[clock]`: a test clock with an offset and a speed-up.
    pub clock: ClockConfig,
    /// The config's `[commands]`. They run with the data folder as working
    /// folder, so relative paths such as `calls.log` stay inside it.
    pub commands: Commands,
    /// The config's `[inventory]`; the table `patchmesh-node init` writes
    /// when `None`.
    pub inventory: Option<InventoryConfig>,
    /// The config's `[deb]`; the table `patchmesh-node init` writes when
    /// `None`, which installs `.deb` patches into the machine's own root.
    pub deb: Option<DebConfig>,
    /// Relay settings of the node, passed to `patchmesh-node init` as
    /// `--relay-server` and `--relay ADDR` and then written whole to the
    /// config's `[relay]`, limits included. `None` means no relay.
    pub relay: Option<RelayConfig>,
}

impl NodeOptions {
    /// Options for host `host` in site `site`.
    pub fn new(host: &str, site: &str) -> Self {
        NodeOptions {
            host: host.into(),
            site: site.into(),
            ..Self::default()
        }
    }

    /// Makes the node an observer.
    pub fn observer(mut self) -> Self {
        self.observer = true;
        self
    }

    /// Adds `group` to the node's groups.
    pub fn group(mut self, group: &str) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Runs the node on a test clock that runs `speed` times faster than
    /// the system clock.
    pub fn clock_speed(mut self, speed: f64) -> Self {
        self.clock.speed = speed;
        self
    }

    /// Sets the machine commands (reboot, notify, isolation and so on).
    pub fn commands(mut self, commands: Commands) -> Self {
        self.commands = commands;
        self
    }

    /// Sets the inventory adapter and its sources.
    pub fn inventory(mut self, inventory: InventoryConfig) -> Self {
        self.inventory = Some(inventory);
        self
    }

    /// Sets the dpkg root and folders of the `deb` installer.
    pub fn deb(mut self, deb: DebConfig) -> Self {
        self.deb = Some(deb);
        self
    }

    /// Sets the relay server switch, relay addresses and relay limits.
    pub fn relay(mut self, relay: RelayConfig) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Adds the addresses of `node` to dial at start.
    pub fn bootstrap(mut self, node: &Node) -> Self {
        self.bootstrap.extend(node.addrs.iter().cloned());
        self
    }
}

/// A running `patchmesh-node` process in its own data folder.
pub struct Node {
    pub options: NodeOptions,
    dir: TempDir,
    child: Option<Child>,
    /// Control API base URL.
    pub url: String,
    /// Listened multiaddrs with `/p2p/PEER`.
    pub addrs: Vec<String>,
    /// libp2p peer id, base58.
    pub peer: String,
}

impl Node {
    /// Runs `patchmesh-node init` with `options` and starts the node.
    pub fn start(admin: &Admin, options: NodeOptions) -> Node {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut init = Command::new(&binaries().node);
        init.arg("init")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--root")
            .arg(admin.root())
            .args(["--host", &options.host, "--site", &options.site]);
        if options.observer {
            init.arg("--observer");
        }
        for group in &options.groups {
            init.args(["--group", group]);
        }
        for addr in &options.bootstrap {
            init.args(["--bootstrap", addr]);
        }
        if let Some(relay) = &options.relay {
            if relay.server {
                init.arg("--relay-server");
            }
            for addr in &relay.addrs {
                init.args(["--relay", addr]);
            }
        }
        let output = init.output().expect("patchmesh-node init runs");
        assert!(
            output.status.success(),
            "patchmesh-node init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut config = Config::load(dir.path()).expect("config written by init");
        if let Some(requests) = options.requests_per_peer {
            config.transfer.requests_per_peer = requests;
        }
        config.clock = options.clock.clone();
        config.commands = options.commands.clone();
        if let Some(inventory) = &options.inventory {
            config.inventory = inventory.clone();
        }
        if let Some(deb) = &options.deb {
            config.deb = deb.clone();
        }
        if let Some(relay) = &options.relay {
            config.relay = relay.clone();
        }
        std::fs::write(dir.path().join("config.toml"), config.to_toml()).expect("write config");

        let mut node = Node {
            options,
            dir,
            child: None,
            url: String::new(),
            addrs: Vec::new(),
            peer: String::new(),
        };
        node.run();
        node
    }

    /// Returns the node's data folder.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the path of the node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// Returns the node's log so far, without terminal colours.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        strip_ansi(&text)
    }

    /// Starts the process and waits for its control URL and addresses. The
    /// log is appended to, so it spans restarts.
    fn run(&mut self) {
        let _ = std::fs::remove_file(self.dir.path().join("control.url"));
        let _ = std::fs::remove_file(self.dir.path().join("listen.addrs"));
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open node log");
        let mut command = Command::new(&binaries().node);
        command
            .args(["run", "--data-dir", "."])
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        match &self.options.log_filter {
            Some(filter) => command.env("PATCHMESH_LOG", filter),
            None => command.env_remove("PATCHMESH_LOG"),
        };
        self.child = Some(command.spawn().expect("patchmesh-node starts"));

        let dir = self.dir.path().to_path_buf();
        let (url, addrs) = wait_until(
            &format!(
                "{} to write control.url and listen.addrs",
                self.options.host
            ),
            Duration::from_secs(30),
            || {
                let url = std::fs::read_to_string(dir.join("control.url")).ok()?;
                let addrs = std::fs::read_to_string(dir.join("listen.addrs")).ok()?;
                let addrs: Vec<String> = addrs.lines().map(str::to_string).collect();
                // QUIC and TCP are listened on by default; each is written
                // as it comes up.
                (addrs.len() >= 2).then(|| (url.trim().to_string(), addrs))
            },
        );
        self.url = url;
        self.addrs = addrs;
        let info = wait_until("GET /v1/node", Duration::from_secs(10), || {
            get_json(&format!("{}/v1/node", self.url))
        });
        self.peer = info["peer"].as_str().expect("peer id").to_string();
    }

    /// Kills the process with SIGKILL, as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Returns the process id while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Returns `GET /v1/status`.
    pub fn status(&self) -> Option<Value> {
        get_json(&format!("{}/v1/status", self.url))
    }

    /// Returns the number of peers this node is connected to.
    pub fn peer_count(&self) -> usize {
        get_json(&format!("{}/v1/peers", self.url))
            .and_then(|peers| peers.as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// Waits until this node is connected to at least `count` peers.
    pub fn wait_for_peers(&self, count: usize) {
        wait_until(
            &format!("{} to connect to {count} peers", self.options.host),
            Duration::from_secs(30),
            || (self.peer_count() >= count).then_some(()),
        );
    }

    /// Returns the BLAKE3 hex of the file the install command wrote, if any.
    pub fn installed_hash(&self) -> Option<String> {
        let bytes = std::fs::read(self.dir.path().join(INSTALLED_FILE)).ok()?;
        Some(blake3_hex(&bytes))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} ({}) -----\n{}",
                self.options.host,
                self.log_path().display(),
                self.log()
            );
        }
    }
}

/// Returns the state of `patch` on `host` in an observer's status, if that
/// host reported it.
pub fn patch_state(status: &Value, host: &str, patch: &str) -> Option<String> {
    patch_status(status, host, patch)?["state"]
        .as_str()
        .map(str::to_string)
}

/// Returns the status entry of `patch` in `host`'s latest report.
pub fn patch_status(status: &Value, host: &str, patch: &str) -> Option<Value> {
    let reports = status["reports"].as_array()?;
    let report = reports.iter().find(|r| r["host"] == host)?;
    let patches = report["patches"].as_array()?;
    patches.iter().find(|p| p["patch"] == patch).cloned()
}

/// Returns the patches `host` reported to an observer, or `None` when it
/// has not reported.
pub fn reported_patches(status: &Value, host: &str) -> Option<Vec<Value>> {
    let reports = status["reports"].as_array()?;
    let report = reports.iter().find(|r| r["host"] == host)?;
    report["patches"].as_array().cloned()
}

/// Waits until `observer` reports `patch` installed on every host in `hosts`.
pub fn wait_installed(observer: &Node, hosts: &[&str], patch: &str, timeout: Duration) {
    wait_state(observer, hosts, patch, "installed", timeout);
}

/// Waits until `observer` reports `patch` in `state` (such as `pending` or
/// `rolled_back`) on every host in `hosts`.
pub fn wait_state(observer: &Node, hosts: &[&str], patch: &str, state: &str, timeout: Duration) {
    wait_until(&format!("{patch} {state} on {hosts:?}"), timeout, || {
        let status = observer.status()?;
        let reached = hosts
            .iter()
            .all(|host| patch_state(&status, host, patch).as_deref() == Some(state));
        reached.then_some(())
    });
}

/// Runs `patchmesh-node bundle import FILE --node URL`; returns the
/// output, whatever the exit status.
pub fn import_bundle(url: &str, file: &Path) -> Output {
    Command::new(&binaries().node)
        .args(["bundle", "import"])
        .arg(file)
        .args(["--node", url])
        .output()
        .expect("patchmesh-node bundle import runs")
}

/// Imports `file` into `node`, asserts success and returns the node's
/// import summary.
pub fn import_bundle_ok(node: &Node, file: &Path) -> Value {
    let output = import_bundle(&node.url, file);
    assert!(
        output.status.success(),
        "importing {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    last_json(&output)
}

/// Returns the file names in `patch`'s `chunks/` folder: the BLAKE3 hex of
/// each chunk.
pub fn patch_chunk_names(patch: &Patch) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(patch.dir.join("chunks"))
        .expect("patch chunks folder")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Returns the seed of a randomized crash test: `PATCHMESH_CRASH_SEED` when
/// set, or a random one. Prints it with the line that replays it.
pub fn crash_seed() -> u64 {
    let seed = std::env::var("PATCHMESH_CRASH_SEED")
        .ok()
        .map(|text| text.parse::<u64>().expect("PATCHMESH_CRASH_SEED is a u64"))
        .unwrap_or_else(rand::random);
    println!("crash seed {seed} (replay with PATCHMESH_CRASH_SEED={seed})");
    seed
}

/// Copies the folder `from` to `to`, recursively, such as a sled database
/// to open without disturbing its owner.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the folder copy");
    for entry in std::fs::read_dir(from).expect("list the folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Opens a copy of the sled database in `data_dir`, made under `scratch`,
/// so that the node's own next open meets the files exactly as a kill left
/// them.
pub fn open_meta_copy(data_dir: &Path, scratch: &Path) -> patchmesh_node::store::MetaStore {
    let copy = scratch.join("meta.sled");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&data_dir.join("meta.sled"), &copy);
    patchmesh_node::store::MetaStore::open(&copy)
        .unwrap_or_else(|e| panic!("failed to open the sled database left by the kill: {e}"))
}

/// Returns whether this process runs as root and finds every one of
/// `tools`, as the tests that build network namespaces need.
pub fn can_build_namespaces(tools: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let found = tools.iter().all(|tool| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    root && found
}

/// Returns the first lines of a policy `id`, version 1, that expires in 30
/// days; tests append its sections.
pub fn policy_header(id: &str) -> String {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
    format!("id = \"{id}\"\nversion = 1\nexpires = \"{expires}\"\n\n")
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ … letter`.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
