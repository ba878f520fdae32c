//! `patchmesh-sim demo`: a mesh of real `patchmesh-node` processes on
//! loopback delivers one signed patch end to end.
//!
//! Node 0 (site 1) is the observer and the node the admin publishes to. The
//! other nodes are spread over the sites round-robin and bootstrap to node 0,
//! then find each other by peer exchange. The patch's install command copies
//! the payload into each node's data folder, and the demo hashes that copy
//! itself. Everything lives in one temporary folder that is removed on exit
//! and on SIGINT, SIGTERM or SIGHUP, after every node process is killed.

mod admin;
mod mesh;
mod outcome;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngCore;

use mesh::{Binaries, Mesh, NodeSpec};
use outcome::{NodeDetail, Reported, Summary};

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Number of nodes, including the publishing observer.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Number of sites the nodes are spread over.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    sites: u16,
    /// Size of the random payload, in MiB (ignored with --payload).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    size_mib: u64,
    /// Ship this file instead of random bytes.
    #[arg(long, value_name = "FILE")]
    payload: Option<PathBuf>,
    /// Seconds from publishing until the demo gives up and exits 1.
    #[arg(long, default_value_t = 170)]
    timeout: u64,
    /// Keep the temporary folder (keys, node data and logs) and print its path.
    #[arg(long)]
    keep: bool,
    /// Print one JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Runs the demo; exit status 1 when a node failed, installed a wrong file
/// or did not finish before the timeout.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.sites > args.nodes {
        bail!(
            "--sites {} is more than --nodes {} (every site needs a node)",
            args.sites,
            args.nodes
        );
    }
    let binaries = Binaries::locate()?;
    let work = tempfile::Builder::new()
        .prefix("patchmesh-demo-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let work_dir = work.path().to_path_buf();
    let mesh = Mesh::new(work_dir.clone(), args.keep)?;

    let summary = run_in(&args, &binaries, &mesh, &work_dir);
    drop(mesh);
    if args.keep {
        let kept = work.keep();
        eprintln!("kept the work folder {}", kept.display());
    }
    let summary = summary?;

    if args.json {
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    eprintln!(
        "{}/{} nodes installed {} ({} bytes) in {:.1} s; {:.1} MiB from same-site peers, {:.1} MiB across sites",
        summary.installed,
        summary.nodes,
        &summary.payload_hash[..12],
        summary.payload_bytes,
        summary.seconds,
        summary.bytes_same_site as f64 / (1024.0 * 1024.0),
        summary.bytes_cross_site as f64 / (1024.0 * 1024.0),
    );
    if summary.succeeded() {
        return Ok(ExitCode::SUCCESS);
    }
    if summary.timed_out {
        eprintln!("error: timed out after {} s", args.timeout);
    }
    if summary.wrong_hash > 0 {
        eprintln!(
            "error: {} node(s) installed a file with the wrong hash",
            summary.wrong_hash
        );
    }
    print_failed_logs(&summary, &work_dir, args.keep);
    Ok(ExitCode::FAILURE)
}

fn run_in(
    args: &DemoArgs,
    binaries: &Binaries,
    mesh: &Mesh,
    work_dir: &Path,
) -> anyhow::Result<Summary> {
    // The payload: the given file, or random bytes.
    let payload = match &args.payload {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("cannot read payload \"{}\"", path.display()))?,
        None => write_random_payload(work_dir, args.size_mib)?,
    };
    let payload_bytes = std::fs::metadata(&payload)?.len();
    let payload_hash = outcome::hash_file(&payload)?
        .with_context(|| format!("payload \"{}\" disappeared", payload.display()))?;

    eprintln!("signing the patch and policy with a new admin key");
    let admin_dir = work_dir.join("admin");
    std::fs::create_dir(&admin_dir)?;
    let signed = admin::prepare(&binaries.signer, &admin_dir, &payload)?;

    // Node 0 first, since the others bootstrap to its addresses.
    let specs: Vec<NodeSpec> = (0..args.nodes)
        .map(|i| NodeSpec {
            host: format!("node-{i}"),
            site: format!("site-{}", i % args.sites + 1),
            data_dir: work_dir.join(format!("node-{i}")),
        })
        .collect();
    eprintln!(
        "starting {} nodes in {} sites on loopback",
        args.nodes, args.sites
    );
    mesh.init(binaries, &specs[0], &signed.root, true, &[])?;
    let first = mesh.start(binaries, &specs[0])?;
    for spec in &specs[1..] {
        mesh.init(binaries, spec, &signed.root, false, &first.addrs)?;
    }
    for spec in &specs[1..] {
        mesh.start(binaries, spec)?;
    }
    wait_for_peers(&first.url, specs.len() - 1)?;

    // Publish, then follow the observer's view until every node is done.
    let publish_wall = jiff::Timestamp::now();
    let publish_started = Instant::now();
    admin::publish(&binaries.signer, &admin_dir, &first.url, &signed)?;
    let patch = format!("{}@{}", admin::PATCH_NAME, admin::PATCH_VERSION);
    let deadline = publish_started + Duration::from_secs(args.timeout);
    let (reported, timed_out) = follow_progress(&first.url, &patch, specs.len(), deadline)?;

    summarize(
        &specs,
        &reported,
        timed_out,
        publish_wall,
        payload_bytes,
        payload_hash,
        args,
    )
}

/// Writes `size_mib` MiB of random bytes to `payload.bin` in `dir`.
fn write_random_payload(dir: &Path, size_mib: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join("payload.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut block = vec![0u8; 1024 * 1024];
    let mut rng = rand::thread_rng();
    for _ in 0..size_mib {
        rng.fill_bytes(&mut block);
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(path)
}

/// Waits until the observer is connected to `expected` peers, so that the
/// publish reaches a connected mesh. Peers that connect later still catch
/// up by anti-entropy, so a shortfall after 30 s only warns.
fn wait_for_peers(url: &str, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers: serde_json::Value = ureq::get(&format!("{url}/v1/peers"))
            .call()
            .with_context(|| format!("cannot list peers of {url}"))?
            .into_json()?;
        let connected = peers.as_array().map_or(0, Vec::len);
        if connected >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("warning: node-0 sees {connected} of {expected} peers after 30 s; publishing anyway");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the observer until every node reported a final state or the
/// deadline passed; shows installed/total on standard error.
fn follow_progress(
    url: &str,
    patch: &str,
    nodes: usize,
    deadline: Instant,
) -> anyhow::Result<(HashMap<String, Reported>, bool)> {
    let bar = ProgressBar::with_draw_target(Some(nodes as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("installing [{bar:30}] {pos}/{len} {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut reported = HashMap::new();
    loop {
        // A slow response under load is retried at the next poll.
        match outcome::poll_status(url, patch) {
            Ok(latest) => reported = latest,
            Err(e) => bar.println(format!("warning: {e:#}")),
        }
        let installed = reported.values().filter(|r| r.is_installed()).count();
        let failed = reported.values().filter(|r| r.is_failed()).count();
        let downloading = reported
            .values()
            .filter(|r| r.state == "downloading")
            .count();
        bar.set_position(installed as u64);
        bar.set_message(format!("downloading {downloading}, failed {failed}"));
        if installed + failed == nodes {
            bar.finish_and_clear();
            return Ok((reported, false));
        }
        if Instant::now() > deadline {
            bar.abandon();
            return Ok((reported, true));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn summarize(
    specs: &[NodeSpec],
    reported: &HashMap<String, Reported>,
    timed_out: bool,
    publish_wall: jiff::Timestamp,
    payload_bytes: u64,
    payload_hash: String,
    args: &DemoArgs,
) -> anyhow::Result<Summary> {
    let mut details = Vec::new();
    for spec in specs {
        let report = reported.get(&spec.host);
        let state = report.map_or("unreported".to_string(), |r| r.state.clone());
        let seconds = report
            .filter(|r| r.is_installed())
            .and_then(|r| r.since)
            .map(|since| since.duration_since(publish_wall).as_secs_f64().max(0.0));
        let hash = outcome::hash_file(&spec.data_dir.join(admin::INSTALLED_FILE))?;
        details.push(NodeDetail {
            node: spec.host.clone(),
            site: spec.site.clone(),
            state,
            seconds,
            hash,
            bytes_same_site: report.map_or(0, |r| r.bytes_same_site),
            bytes_cross_site: report.map_or(0, |r| r.bytes_cross_site),
        });
    }
    let installed = details.iter().filter(|d| d.state == "installed").count();
    let failed = reported.values().filter(|r| r.is_failed()).count();
    let wrong_hash = details
        .iter()
        .filter(|d| d.state == "installed" && d.hash.as_deref() != Some(payload_hash.as_str()))
        .count();
    Ok(Summary {
        nodes: specs.len(),
        sites: args.sites as usize,
        installed,
        failed,
        wrong_hash,
        timed_out,
        payload_bytes,
        payload_hash,
        seconds: details.iter().filter_map(|d| d.seconds).fold(0.0, f64::max),
        bytes_same_site: details.iter().map(|d| d.bytes_same_site).sum(),
        bytes_cross_site: details.iter().map(|d| d.bytes_cross_site).sum(),
        nodes_detail: details,
    })
}

/// Prints the last log lines of every node that did not install, or where
/// the kept logs are.
fn print_failed_logs(summary: &Summary, work_dir: &Path, kept: bool) {
    for detail in summary
        .nodes_detail
        .iter()
        .filter(|d| d.state != "installed")
    {
        let log = work_dir.join(&detail.node).join(mesh::LOG_FILE);
        if kept {
            eprintln!(
                "{} is {}; log: {}",
                detail.node,
                detail.state,
                log.display()
            );
            continue;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "--- {} is {}; last lines of its log:",
            detail.node, detail.state
        );
        for line in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("{line}");
        }
    }
}
