//! `policy preview`: lists a policy's next maintenance windows, so an admin
//! sees exactly when nodes will install before signing.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use jiff::Timestamp;
use patchmesh_protocol::schedule::Calendar;
use patchmesh_protocol::Policy;
use serde_json::json;

use crate::{files, Context};

/// Arguments of `policy preview`.
#[derive(Args)]
pub struct PreviewArgs {
    /// Policy file (TOML).
    file: PathBuf,
    /// List windows starting at or after this time (RFC 3339; default now).
    #[arg(long)]
    from: Option<Timestamp>,
    /// Number of windows to list.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Control API of an observer node (`http://127.0.0.1:PORT`) to list the
    /// targeted hosts per wave.
    #[arg(long)]
    node: Option<String>,
}

/// Runs `policy preview`.
pub fn run(context: &Context, args: PreviewArgs) -> anyhow::Result<()> {
    let bytes = files::read(&args.file)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("\"{}\" is not UTF-8 text", args.file.display()))?;
    let policy = Policy::from_toml(&text)
        .and_then(|policy| policy.validate().map(|()| policy))
        .with_context(|| format!("\"{}\" is rejected", args.file.display()))?;
    let calendar = Calendar::new(&policy.schedule)?;
    let from = args.from.unwrap_or_else(Timestamp::now);
    if args.node.is_some() {
        // TODO: list targeted hosts per wave from the observer's
        // `GET /v1/status` once its node entries carry enrollment groups.
        context
            .out
            .note("--node is not supported yet; listing windows only");
    }

    let tz = calendar.time_zone();
    let windows = calendar.next_windows(from, args.count);
    if calendar.is_asap() {
        context.out.say(format!(
            "policy \"{}\" has an asap schedule: no windows, installs at once",
            policy.id
        ));
    }
    let mut rows = Vec::with_capacity(windows.len());
    for window in &windows {
        let local = window.in_zone(tz);
        context.out.say(format!(
            "{} to {} ({} to {})",
            local.start.strftime("%Y-%m-%d %H:%M %Z"),
            local.end.strftime("%Y-%m-%d %H:%M %Z"),
            window.start,
            window.end
        ));
        rows.push(json!({
            "start": window.start.to_string(),
            "end": window.end.to_string(),
            "start_local": local.start.timestamp().display_with_offset(local.start.offset()).to_string(),
            "end_local": local.end.timestamp().display_with_offset(local.end.offset()).to_string(),
        }));
    }
    context.out.finish(json!({
        "policy": policy.id,
        "timezone": policy.schedule.timezone,
        "windows": rows,
    }));
    Ok(())
}
