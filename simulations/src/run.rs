//! `patchmesh-sim run`: a modelled fleet of branch offices fetching one
//! patch from HQ through the node's own chunk scheduler.
//!
//! The model is discrete-event and deterministic for a given `--seed`. It
//! reports how many bytes crossed each office's WAN link per patch size, when
//! shares of the fleet held the patch, and how close that is to the physical
//! lower bound.

mod fleet;
mod link;
mod plot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use patchmesh_node::fetch::SchedulerConfig;
use serde_json::json;

use fleet::{Fleet, Outcome, Params};

const MIB: u64 = 1 << 20;

/// Options of `patchmesh-sim run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Branch offices.
    #[arg(long, default_value_t = 100)]
    offices: usize,
    /// Nodes in each office.
    #[arg(long, default_value_t = 50)]
    nodes_per_office: usize,
    /// Patch size in MiB.
    #[arg(long, default_value_t = 100)]
    patch_mib: u64,
    /// Chunk size in MiB.
    #[arg(long, default_value_t = 1)]
    chunk_mib: u64,
    /// Each office's WAN link in Mbit/s, each direction.
    #[arg(long, default_value_t = 10.0)]
    wan_mbit: f64,
    /// HQ uplink in Mbit/s, shared by all offices.
    #[arg(long, default_value_t = 1000.0)]
    hq_mbit: f64,
    /// Each node's LAN port in Mbit/s.
    #[arg(long, default_value_t = 1000.0)]
    lan_mbit: f64,
    /// WAN one-way latency in milliseconds.
    #[arg(long, default_value_t = 40.0)]
    latency_ms: f64,
    /// WAN packet loss as a fraction (0 to <1), modelled as lost goodput.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fraction of office nodes offline at the start (back within one
    /// transfer time), and the same fraction again leaving mid-run for
    /// 30-120 s.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Offices whose WAN link is cut.
    #[arg(long, default_value_t = 0)]
    cut_offices: usize,
    /// Seconds the cut lasts.
    #[arg(long, default_value_t = 60.0)]
    cut_secs: f64,
    /// Seconds after publication the cut starts.
    #[arg(long, default_value_t = 10.0)]
    cut_at_secs: f64,
    /// Chunk requests in flight per peer (the node's default is 8).
    #[arg(long, default_value_t = SchedulerConfig::default().requests_per_peer)]
    requests_per_peer: usize,
    /// Seed of the random choices (gossip mesh, churn).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write an SVG plot of nodes holding the patch over time.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Runs the simulation and prints its figures.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    if args.offices == 0 || args.nodes_per_office == 0 || args.patch_mib == 0 {
        bail!("--offices, --nodes-per-office and --patch-mib must be at least 1");
    }
    if !(0.0..1.0).contains(&args.loss) || !(0.0..=0.5).contains(&args.churn) {
        bail!(
            "invalid --loss {} or --churn {} (expected loss in [0, 1) and churn in [0, 0.5])",
            args.loss,
            args.churn
        );
    }
    let bytes_per_mbit = 1e6 / 8.0;
    let params = Params {
        offices: args.offices,
        nodes_per_office: args.nodes_per_office,
        patch_bytes: args.patch_mib * MIB,
        chunk_bytes: args.chunk_mib.max(1) * MIB,
        wan_bps: args.wan_mbit * bytes_per_mbit,
        hq_bps: args.hq_mbit * bytes_per_mbit,
        lan_bps: args.lan_mbit * bytes_per_mbit,
        wan_latency_secs: args.latency_ms / 1000.0,
        loss: args.loss,
        churn: args.churn,
        cut_offices: args.cut_offices,
        cut_at_secs: args.cut_at_secs,
        cut_secs: args.cut_secs,
        seed: args.seed,
        scheduler: SchedulerConfig {
            requests_per_peer: args.requests_per_peer,
            ..SchedulerConfig::default()
        },
    };
    let patch = params.patch_bytes as f64;
    let lower_bound = patch / params.wan_bps;
    let physical_lower_bound = lower_bound.max(args.offices as f64 * patch / params.hq_bps);
    let limit = 20.0 * physical_lower_bound + args.cut_at_secs + args.cut_secs + 600.0;

    let started = Instant::now();
    let outcome = Fleet::new(params.clone()).run(limit);
    let wall_secs = started.elapsed().as_secs_f64();

    let summary = summarize(
        &args,
        &params,
        &outcome,
        lower_bound,
        physical_lower_bound,
        wall_secs,
    );
    if let Some(path) = &args.plot {
        plot::write(path, &outcome.completed, lower_bound)?;
    }
    print_human(&summary);
    if args.json {
        println!("{summary}");
    }
    let complete = outcome.completed.iter().all(Option::is_some);
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Time by which `share` of the nodes held the patch, if they all did.
fn quantile(times: &[f64], nodes: usize, share: f64) -> Option<f64> {
    let needed = ((share * nodes as f64).ceil() as usize).max(1);
    times.get(needed - 1).copied()
}

fn summarize(
    args: &RunArgs,
    params: &Params,
    outcome: &Outcome,
    lower_bound: f64,
    physical_lower_bound: f64,
    wall_secs: f64,
) -> serde_json::Value {
    let nodes = outcome.completed.len();
    let mut times: Vec<f64> = outcome.completed.iter().flatten().copied().collect();
    times.sort_by(f64::total_cmp);
    let ratios: Vec<f64> = outcome
        .wan_bytes_in
        .iter()
        .map(|&bytes| bytes as f64 / params.patch_bytes as f64)
        .collect();
    let policy_coverage = if outcome.policy_at.iter().all(Option::is_some) {
        outcome.policy_at.iter().flatten().copied().reduce(f64::max)
    } else {
        None
    };
    json!({
        "nodes": nodes,
        "sites": args.offices + 1,
        "installed": times.len(),
        "patch_bytes": params.patch_bytes,
        "wan_ratio_mean": ratios.iter().sum::<f64>() / ratios.len() as f64,
        "wan_ratio_max": ratios.iter().copied().reduce(f64::max),
        "t50_s": quantile(&times, nodes, 0.50),
        "t99_s": quantile(&times, nodes, 0.99),
        "t100_s": quantile(&times, nodes, 1.0),
        "lower_bound_s": lower_bound,
        "physical_lower_bound_s": physical_lower_bound,
        "policy_coverage_s": policy_coverage,
        "metadata_wan_bytes": outcome.metadata_wan_bytes,
        "requests": outcome.requests,
        "wan_requests": outcome.wan_requests,
        "seed": args.seed,
        "wall_s": wall_secs,
    })
}

fn print_human(summary: &serde_json::Value) {
    let figure = |key: &str| match summary[key].as_f64() {
        Some(value) => format!("{value:.2}"),
        None => "never".to_string(),
    };
    eprintln!(
        "{} nodes in {} sites; {} hold the patch",
        summary["nodes"], summary["sites"], summary["installed"]
    );
    eprintln!(
        "WAN bytes into an office / patch size: mean {}, max {}",
        figure("wan_ratio_mean"),
        figure("wan_ratio_max")
    );
    eprintln!(
        "held by 50 % / 99 % / 100 % of nodes after {} / {} / {} s",
        figure("t50_s"),
        figure("t99_s"),
        figure("t100_s")
    );
    eprintln!(
        "lower bound {} s (slowest office link), {} s (with the HQ uplink)",
        figure("lower_bound_s"),
        figure("physical_lower_bound_s")
    );
    eprintln!(
        "policy on every node after {} s; metadata on WAN links {} bytes",
        figure("policy_coverage_s"),
        summary["metadata_wan_bytes"]
    );
    eprintln!("simulated in {} s", figure("wall_s"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_fleet(churn: f64) -> (Params, Outcome) {
        let params = Params {
            offices: 3,
            nodes_per_office: 5,
            patch_bytes: 16 * MIB,
            chunk_bytes: MIB,
            wan_bps: 10e6 / 8.0,
            hq_bps: 100e6 / 8.0,
            lan_bps: 1e9 / 8.0,
            wan_latency_secs: 0.04,
            loss: 0.0,
            churn,
            cut_offices: 0,
            cut_at_secs: 0.0,
            cut_secs: 0.0,
            seed: 7,
            scheduler: SchedulerConfig::default(),
        };
        let outcome = Fleet::new(params.clone()).run(10_000.0);
        (params, outcome)
    }

    #[test]
    fn small_fleet_completes_with_one_wan_copy() {
        let (params, outcome) = small_fleet(0.0);
        assert!(outcome.completed.iter().all(Option::is_some));
        assert!(outcome.policy_at.iter().all(Option::is_some));
        for (office, bytes) in outcome.wan_bytes_in.iter().enumerate() {
            let ratio = *bytes as f64 / params.patch_bytes as f64;
            assert!(ratio <= 1.05, "office {office}: ratio {ratio}");
            assert!(ratio >= 1.0, "office {office}: ratio {ratio}");
        }
    }

    #[test]
    fn small_fleet_finishes_near_link_time() {
        let (params, outcome) = small_fleet(0.0);
        let bound = params.patch_bytes as f64 / params.wan_bps;
        let last = outcome
            .completed
            .iter()
            .flatten()
            .copied()
            .fold(0.0, f64::max);
        assert!(last >= bound, "{last} < {bound}");
        assert!(last <= 1.3 * bound, "{last} > 1.3 x {bound}");
    }

    #[test]
    fn small_fleet_completes_under_churn() {
        let (_, outcome) = small_fleet(0.2);
        assert!(outcome.completed.iter().all(Option::is_some));
    }

    #[test]
    fn same_seed_gives_same_outcome() {
        let (_, first) = small_fleet(0.2);
        let (_, second) = small_fleet(0.2);
        assert_eq!(first.completed, second.completed);
        assert_eq!(first.wan_bytes_in, second.wan_bytes_in);
    }
}
