//! `patchmesh-signer`, the admin command line of patchmesh.
//!
//! It creates admin keys and trust roots, chunks and signs patches, signs
//! policies, adds signatures for threshold signing, hands signed objects to a
//! node and shows rollout status. Exit status is 0 on success, 1 when the work
//! failed or input was rejected, and 2 on a usage error (clap's own status).
//! With `--json`, the last line of standard output is one JSON object; human
//! output and progress go to standard error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod actions;
mod bundle;
mod client;
mod enroll;
mod expiry;
mod files;
mod inspect;
mod keyfile;
mod keys;
mod osv;
mod output;
mod patch;
mod pins;
mod policy;
mod preview;
mod publish;
mod reports;
mod root;
mod sign;
mod status;
mod views;

use output::Output;

#[derive(Parser)]
#[command(
    name = "patchmesh-signer",
    version,
    about = "patchmesh admin command line"
)]
struct Cli {
    /// Print one JSON object as the last line of standard output.
    #[arg(long, global = true)]
    json: bool,

    /// Environment variable that contains the passphrase of encrypted key files
    /// (for `keygen`, the passphrase to encrypt the new key with).
    #[arg(long, global = true, value_name = "VAR")]
    passphrase_env: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a new admin signing key.
    Keygen(keys::KeygenArgs),
    /// Show or export a key's public half and key id.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Create or rotate the trust root.
    #[command(subcommand)]
    Root(root::RootCommand),
    /// Add one signature to an existing signed object.
    Sign(sign::SignArgs),
    /// Chunk and sign patches.
    #[command(subcommand)]
    Patch(patch::PatchCommand),
    /// Validate and sign rollout policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Hand signed objects and chunks to a node's control API.
    Publish(publish::PublishArgs),
    /// Show rollout status as reported to a node.
    Status(status::StatusArgs),
    /// Print any signed object as JSON and verify it.
    Inspect(inspect::InspectArgs),
    /// List hosts with OS, packages and missing patches, from an observer.
    Inventory(views::InventoryArgs),
    /// Show the share of targeted hosts with every required patch.
    Compliance(views::ComplianceArgs),
    /// Show installs, failures and rollbacks per day.
    History(views::HistoryArgs),
    /// Sign node enrollment certificates, or revoke one.
    Enroll(enroll::EnrollArgs),
    /// Sign an approval of a policy's patches.
    Approve(actions::ApproveArgs),
    /// Sign an order that halts a policy or one wave.
    Halt(actions::HaltArgs),
    /// Sign an order that resumes a halted policy or wave.
    Resume(actions::ResumeArgs),
    /// Sign an order that rolls a patch back.
    Rollback(actions::RollbackArgs),
    /// Create or inspect air-gap bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Hand node reports carried across an air gap to an observer.
    #[command(subcommand)]
    Reports(reports::ReportsCommand),
}

/// Settings every command shares.
pub struct Context {
    /// Output channel for human and JSON output.
    pub out: Output,
    /// Environment variable holding the key passphrase, if any.
    pub passphrase_env: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = Context {
        out: Output::new(cli.json),
        passphrase_env: cli.passphrase_env,
    };
    let result = match cli.command {
        Command::Keygen(args) => keys::keygen(&context, args),
        Command::Key(command) => keys::run(&context, command),
        Command::Root(command) => root::run(&context, command),
        Command::Sign(args) => sign::run(&context, args),
        Command::Patch(command) => patch::run(&context, command),
        Command::Policy(command) => policy::run(&context, command),
        Command::Publish(args) => publish::run(&context, args),
        Command::Status(args) => status::run(&context, args),
        Command::Inspect(args) => inspect::run(&context, args),
        Command::Inventory(args) => views::inventory(&context, args),
        Command::Compliance(args) => views::compliance(&context, args),
        Command::History(args) => views::history(&context, args),
        Command::Enroll(args) => enroll::run(&context, args),
        Command::Approve(args) => actions::approve(&context, args),
        Command::Halt(args) => actions::halt(&context, args),
        Command::Resume(args) => actions::resume(&context, args),
        Command::Rollback(args) => actions::rollback(&context, args),
        Command::Bundle(command) => bundle::run(&context, command),
        Command::Reports(command) => reports::run(&context, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            context.out.error(&error);
            ExitCode::FAILURE
        }
    }
}
