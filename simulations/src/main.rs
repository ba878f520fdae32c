//! `patchmesh-sim`: runs patchmesh on one machine.
//!
//! `demo` starts real `patchmesh-node` processes on loopback and delivers one
//! signed patch to all of them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod run;

#[derive(Parser)]
#[command(
    name = "patchmesh-sim",
    version,
    about = "patchmesh demo on loopback and fleet simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start real nodes on loopback, publish one patch and watch it install.
    Demo(demo::DemoArgs),
    /// Simulate a fleet of branch offices fetching one patch from HQ.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
