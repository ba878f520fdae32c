//! `patchmesh-node`: the agent every endpoint runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use patchmesh_node::agent::{self, Agent};
use patchmesh_node::config::{Config, CONFIG_FILE};
use patchmesh_node::control;
use patchmesh_protocol::{Root, Signed};

#[derive(Parser)]
#[command(
    name = "patchmesh-node",
    version,
    about = "patchmesh agent: fetches, verifies and installs admin-signed patches"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Commands {
    /// Write a config and pin a trust root in a new data folder.
    Init(Box<InitArgs>),
    /// Run the agent.
    Run {
        /// Data folder written by `init`.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Import an air-gap bundle into a running node.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Move signed reports across an air gap.
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
    /// Act on the reboot a running node has scheduled.
    Reboot {
        #[command(subcommand)]
        command: RebootCommand,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Verify a bundle whole, then store and spread what it carries.
    Import {
        /// Bundle file written by `patchmesh-signer bundle create`.
        file: PathBuf,
        /// Control API of the running node, `http://127.0.0.1:PORT`.
        #[arg(long)]
        node: String,
    },
}

#[derive(Subcommand)]
enum ReportsCommand {
    /// Write the signed reports this node (an observer) collected to a file.
    Export {
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        /// Control API of the running node, `http://127.0.0.1:PORT`.
        #[arg(long)]
        node: String,
    },
}

#[derive(Subcommand)]
enum RebootCommand {
    /// Postpone the pending reboot by the policy's `postpone_by`, within
    /// its `max_postpone` (a desktop notifier calls this).
    Postpone {
        /// Control API of the running node, `http://127.0.0.1:PORT`.
        #[arg(long)]
        node: String,
    },
}

/// Posts to a running node's control API and returns the JSON reply.
fn post_control(node: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    post_control_json(node, path, None)
}

/// Posts `body` (JSON) to a running node's control API and returns the
/// JSON reply.
fn post_control_json(
    node: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}{path}", node.trim_end_matches('/'));
    let request = ureq::post(&url);
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    match result {
        Ok(response) => Ok(response.into_json()?),
        Err(ureq::Error::Status(code, response)) => {
            let body: serde_json::Value = response.into_json().unwrap_or_default();
            anyhow::bail!(
                "{url} returned {code}: {}",
                body["error"].as_str().unwrap_or("no message")
            )
        }
        Err(e) => {
            anyhow::bail!("cannot reach the node at {url}: {e} (is `patchmesh-node run` running?)")
        }
    }
}

#[derive(clap::Args)]
struct InitArgs {
    /// Data folder to create.
    #[arg(long)]
    data_dir: PathBuf,
    /// Signed trust root to pin (from `patchmesh-signer root init`).
    #[arg(long)]
    root: PathBuf,
    /// Host name used for targeting (default: the system host name).
    #[arg(long)]
    host: Option<String>,
    /// Site (office) of the node.
    #[arg(long, default_value = "default")]
    site: String,
    /// Group for targeting; repeat for several.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// libp2p multiaddr to listen on; repeat for several.
    #[arg(long, default_values_t = ["/ip4/127.0.0.1/udp/0/quic-v1".to_string(), "/ip4/127.0.0.1/tcp/0".to_string()])]
    listen: Vec<String>,
    /// libp2p multiaddr with /p2p/PEER to dial at start; repeat for several.
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Control API address (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: std::net::SocketAddr,
    /// Collect reports from other nodes.
    #[arg(long)]
    observer: bool,
    /// Discover LAN peers with mDNS.
    #[arg(long)]
    mdns: bool,
    /// Never fetch chunks from other sites. Without it a node fetches from
    /// other sites only while it has a direct connection to a peer there.
    #[arg(long)]
    no_wan: bool,
    /// Serve as a circuit relay for peers that cannot be dialed directly
    /// (behind NAT).
    #[arg(long)]
    relay_server: bool,
    /// Relay multiaddr with /p2p/PEER to reserve a slot on and listen
    /// through, for a node behind NAT; repeat for several.
    #[arg(long = "relay")]
    relays: Vec<String>,
    /// CIDR range besides loopback that peers learned by exchange or mDNS
    /// may be dialed in; repeat for several.
    #[arg(long = "dial-range")]
    dial_ranges: Vec<String>,
    /// Folder watched for `*.bundle` files to import (a USB mount).
    #[arg(long)]
    import_dir: Option<PathBuf>,
    /// Inventory adapter: none, dpkg or command (the command is set in
    /// config.toml under [inventory]).
    #[arg(long, value_enum, default_value = "none")]
    inventory: patchmesh_node::inventory::AdapterKind,
    /// dpkg status file read by the dpkg adapter.
    #[arg(long)]
    dpkg_status: Option<PathBuf>,
    /// Root folder the deb installer installs packages into (dpkg --root).
    #[arg(long)]
    deb_root: Option<PathBuf>,
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    for relay in &args.relays {
        patchmesh_node::net::relay::parse_relay_addr(relay)?;
    }
    let config_path = args.data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        anyhow::bail!(
            "{} already exists; choose another --data-dir or remove it",
            config_path.display()
        );
    }
    let root_bytes = std::fs::read(&args.root)
        .map_err(|e| anyhow::anyhow!("cannot read root {}: {e}", args.root.display()))?;
    let signed = Signed::from_bytes(&root_bytes)
        .map_err(|e| anyhow::anyhow!("root {}: {e}", args.root.display()))?;
    let root = Root::verify_initial(&signed)
        .map_err(|e| anyhow::anyhow!("root {} does not verify: {e}", args.root.display()))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.data_dir.display()))?;
    let host = match args.host {
        Some(host) => host,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into()),
    };
    let config = Config {
        host,
        site: args.site,
        groups: args.groups,
        listen: args.listen,
        bootstrap: args.bootstrap,
        control: args.control,
        observer: args.observer,
        mdns: args.mdns,
        wan: !args.no_wan,
        dial_ranges: args.dial_ranges,
        import_dir: args.import_dir,
        max_clock_skew_secs: 3_600,
        max_inbound_connections: patchmesh_node::config::DEFAULT_MAX_INBOUND,
        transfer: Default::default(),
        relay: patchmesh_node::config::RelayConfig {
            server: args.relay_server,
            addrs: args.relays,
            ..Default::default()
        },
        inventory: patchmesh_node::inventory::InventoryConfig {
            adapter: args.inventory,
            dpkg_status: args
                .dpkg_status
                .unwrap_or_else(|| "/var/lib/dpkg/status".into()),
            ..Default::default()
        },
        deb: patchmesh_node::deb::DebConfig {
            root: args.deb_root.unwrap_or_default(),
            ..Default::default()
        },
        trust: Default::default(),
        commands: Default::default(),
        clock: Default::default(),
    };
    std::fs::write(args.data_dir.join(agent::ROOT_FILE), &root_bytes)?;
    std::fs::write(&config_path, config.to_toml())?;
    let keypair = agent::load_or_create_key(&args.data_dir)?;
    eprintln!(
        "initialised {} for fleet {:?} (root version {}), peer id {}",
        args.data_dir.display(),
        root.fleet,
        root.version,
        keypair.public().to_peer_id()
    );
    Ok(())
}

async fn run(data_dir: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&data_dir)?;
    let listener = control::bind(config.control).await?;
    let control_addr = listener.local_addr()?;
    let (agent, shared, commands_tx, commands_rx) = Agent::open(&data_dir, config)?;
    let url = format!("http://{control_addr}");
    std::fs::write(data_dir.join("control.url"), format!("{url}\n"))?;
    tracing::info!(control = %url, peer = %agent.peer_id(), "control API listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut control_stop = stop_rx.clone();
    let control_task = tokio::spawn(control::serve(listener, shared, commands_tx, async move {
        let _ = control_stop.changed().await;
    }));
    let mut agent_stop = stop_rx;
    let agent_task = tokio::spawn(agent.run(commands_rx, async move {
        let _ = agent_stop.changed().await;
    }));

    shutdown_signal().await;
    tracing::info!("shutdown requested");
    let _ = stop_tx.send(true);
    agent_task.await??;
    control_task.await??;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler does not fail");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Fetches the collected reports of a running observer and writes them to
/// `out` through a temporary file, so a cut-short copy never looks whole.
fn export_reports(node: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let url = format!("{}/v1/reports/export", node.trim_end_matches('/'));
    let response = ureq::get(&url)
        .call()
        .map_err(|e| anyhow::anyhow!("cannot export reports from {url}: {e}"))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)?;
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out)?;
    let count = patchmesh_protocol::bundle::reports::ReportBundle::decode(&bytes)
        .map(|b| b.reports.len())
        .unwrap_or(0);
    eprintln!("wrote {count} signed report(s) to {}", out.display());
    println!("{}", serde_json::json!({ "reports": count, "out": out }));
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PATCHMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let result = match cli.command {
        Commands::Init(args) => init(*args),
        Commands::Run { data_dir } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(data_dir))),
        Commands::Bundle {
            command: BundleCommand::Import { file, node },
        } => std::path::absolute(&file)
            .map_err(anyhow::Error::from)
            .and_then(|path| {
                post_control_json(
                    &node,
                    "/v1/bundles/import",
                    Some(serde_json::json!({ "path": path })),
                )
                .with_context(|| {
                    format!(
                        "importing \"{}\" failed; the node stores nothing from a rejected bundle",
                        file.display()
                    )
                })
            })
            .map(|reply| {
                eprintln!(
                    "imported {}: {} object(s), {} chunk(s) new",
                    file.display(),
                    reply["objects_stored"],
                    reply["chunks_stored"]
                );
                println!("{reply}");
            }),
        Commands::Reports {
            command: ReportsCommand::Export { out, node },
        } => export_reports(&node, &out),
        Commands::Reboot {
            command: RebootCommand::Postpone { node },
        } => post_control(&node, "/v1/reboot/postpone").map(|reply| {
            let count = reply["postponed"].as_u64().unwrap_or(0);
            eprintln!("{count} pending reboot(s) postponed");
            println!("{reply}");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "patchmesh-node failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
