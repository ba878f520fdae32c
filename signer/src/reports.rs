//! `reports import`: hands a report file carried back from an air-gapped
//! site to an observer node, which verifies each node's signature and keeps
//! the reports as if they had arrived over the mesh.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use patchmesh_protocol::bundle::reports::ReportBundle;
use serde_json::json;

use crate::client::Client;
use crate::{files, Context};

/// `reports` subcommands.
#[derive(Subcommand)]
pub enum ReportsCommand {
    /// Post a file written by `patchmesh-node reports export` to an observer.
    Import {
        /// Report file.
        file: PathBuf,
        /// Control API URL of the observer node, such as http://127.0.0.1:7300.
        #[arg(long)]
        node: String,
    },
}

/// Runs a `reports` subcommand.
pub fn run(context: &Context, command: ReportsCommand) -> anyhow::Result<()> {
    let ReportsCommand::Import { file, node } = command;
    let client = Client::new(&node)?;
    let bytes = files::read(&file)?;

    // Check the file here too, so a damaged copy fails before any upload.
    let bundle = ReportBundle::decode(&bytes)
        .and_then(|b| b.verify().map(|r| r.len()))
        .with_context(|| format!("\"{}\" is rejected", file.display()))?;

    let reply = client
        .post_bytes("/v1/reports/import", &bytes)
        .with_context(|| format!("cannot import \"{}\"", file.display()))?;
    context.out.say(format!(
        "{bundle} report(s) from \"{}\" handed to {}",
        file.display(),
        client.base()
    ));
    context.out.finish(json!({
        "node": client.base(),
        "reports": bundle,
        "reply": reply,
    }));
    Ok(())
}
