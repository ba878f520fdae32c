//! The demo's node processes: where the binaries are, how each node is
//! initialised and started, and how every process is stopped again, also
//! when the demo is interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// File each node process writes its log to, inside its data folder.
pub const LOG_FILE: &str = "node.log";

/// The sibling binaries the demo drives.
pub struct Binaries {
    pub node: PathBuf,
    pub signer: PathBuf,
}

impl Binaries {
    /// Finds `patchmesh-node` and `patchmesh-signer` next to this executable.
    ///
    /// When started by `cargo run`, it first builds them with the same
    /// profile, because `cargo run -p patchmesh-sim` builds only this binary.
    pub fn locate() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the demo's own executable")?;
        let dir = exe
            .parent()
            .context("the demo's executable has no parent folder")?
            .to_path_buf();
        if let Some(cargo) = std::env::var_os("CARGO") {
            build_siblings(Path::new(&cargo), &dir)?;
        }
        let binaries = Binaries {
            node: dir.join("patchmesh-node"),
            signer: dir.join("patchmesh-signer"),
        };
        for path in [&binaries.node, &binaries.signer] {
            if !path.is_file() {
                bail!(
                    "\"{}\" not found (build it with `cargo build -p patchmesh-node -p \
                     patchmesh-signer` using the demo's profile)",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }
}

/// Runs `cargo build` for the node and signer in the profile whose target
/// folder is `dir`.
fn build_siblings(cargo: &Path, dir: &Path) -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .args(["-p", "patchmesh-node", "-p", "patchmesh-signer"]);
    if dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .with_context(|| format!("cannot run \"{}\"", cargo.display()))?;
    if !status.success() {
        bail!("building patchmesh-node and patchmesh-signer failed ({status})");
    }
    Ok(())
}

/// One node of the demo.
pub struct NodeSpec {
    pub host: String,
    pub site: String,
    pub data_dir: PathBuf,
}

/// Node processes, stopped when dropped or when the demo gets SIGINT,
/// SIGTERM or SIGHUP.
pub struct Mesh {
    children: Arc<Mutex<Vec<Child>>>,
}

impl Mesh {
    /// Installs the signal handler that stops every node and removes
    /// `work_dir`. `keep` leaves `work_dir` in place.
    pub fn new(work_dir: PathBuf, keep: bool) -> anyhow::Result<Self> {
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        let on_signal = children.clone();
        ctrlc::set_handler(move || {
            stop_all(&on_signal);
            if !keep {
                let _ = std::fs::remove_dir_all(&work_dir);
            }
            eprintln!("\ninterrupted: nodes stopped");
            std::process::exit(130);
        })
        .context("cannot install the signal handler")?;
        Ok(Mesh { children })
    }

    /// Writes the node's config with `patchmesh-node init`.
    pub fn init(
        &self,
        binaries: &Binaries,
        spec: &NodeSpec,
        root: &Path,
        observer: bool,
        bootstrap: &[String],
    ) -> anyhow::Result<()> {
        let mut init = Command::new(&binaries.node);
        init.arg("init")
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .arg("--root")
            .arg(root)
            .args(["--host", &spec.host, "--site", &spec.site]);
        if observer {
            init.arg("--observer");
        }
        for addr in bootstrap {
            init.args(["--bootstrap", addr]);
        }
        let output = init
            .output()
            .with_context(|| format!("cannot run \"{}\"", binaries.node.display()))?;
        if !output.status.success() {
            bail!(
                "patchmesh-node init for {} failed: {}",
                spec.host,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Starts `patchmesh-node run` in the node's data folder, so that the
    /// install command's relative paths land there, and waits until it has
    /// written its control URL and listen addresses.
    pub fn start(&self, binaries: &Binaries, spec: &NodeSpec) -> anyhow::Result<RunningNode> {
        let log_path = spec.data_dir.join(LOG_FILE);
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create \"{}\"", log_path.display()))?;
        let child = Command::new(&binaries.node)
            .args(["run", "--data-dir", "."])
            .current_dir(&spec.data_dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start \"{}\"", binaries.node.display()))?;
        self.children
            .lock()
            .expect("the child list lock is never poisoned")
            .push(child);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = std::fs::read_to_string(spec.data_dir.join("control.url"));
            let addrs = std::fs::read_to_string(spec.data_dir.join("listen.addrs"));
            if let (Ok(url), Ok(addrs)) = (url, addrs) {
                let addrs: Vec<String> = addrs.lines().map(str::to_string).collect();
                // The node listens on QUIC and TCP by default and writes each
                // address as it comes up.
                if !url.trim().is_empty() && addrs.len() >= 2 {
                    return Ok(RunningNode {
                        url: url.trim().to_string(),
                        addrs,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within 30 s (log: \"{}\")",
                    spec.host,
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        stop_all(&self.children);
    }
}

/// Kills and reaps every child; the nodes keep nothing the demo needs.
fn stop_all(children: &Mutex<Vec<Child>>) {
    let mut children = match children.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    for child in children.iter_mut() {
        let _ = child.kill();
    }
    for mut child in children.drain(..) {
        let _ = child.wait();
    }
}

/// Addresses of a started node.
pub struct RunningNode {
    /// Control API base URL.
    pub url: String,
    /// Listened multiaddrs with `/p2p/PEER`.
    pub addrs: Vec<String>,
}
