//! `inventory`: hosts with their OS, package count, missing patches by
//! severity and last contact. `--host` shows one host's packages and
//! missing patches, and `--package` shows which host runs which version.

use anyhow::bail;
use clap::Args;
use serde_json::{json, Value};

use super::{count_by_severity, fetch_inventory, HostEntry};
use crate::{output, Context};

/// Arguments of `inventory`.
#[derive(Args)]
pub struct InventoryArgs {
    /// Control API URL of an observer node, such as http://127.0.0.1:7300.
    #[arg(long)]
    node: String,
    /// Show one host's packages and missing patches.
    #[arg(long, value_name = "HOST", conflicts_with = "package")]
    host: Option<String>,
    /// Show which hosts run which version of this package.
    #[arg(long, value_name = "PACKAGE")]
    package: Option<String>,
}

/// Runs `inventory`.
pub fn run(context: &Context, args: InventoryArgs) -> anyhow::Result<()> {
    let reply = fetch_inventory(&args.node)?;
    if let Some(host) = &args.host {
        let Some(entry) = reply.hosts.iter().find(|entry| &entry.host == host) else {
            bail!(
                "host \"{host}\" not found at {} (it has sent no report or inventory to this \
                 observer)",
                args.node
            );
        };
        show_host(context, entry);
    } else if let Some(package) = &args.package {
        show_package(context, &reply.hosts, package);
    } else {
        show_fleet(context, &reply.hosts);
    }
    Ok(())
}

fn last_seen(entry: &HostEntry) -> String {
    entry
        .last_seen
        .map_or_else(|| "never".to_string(), |time| time.to_string())
}

fn os_name(entry: &HostEntry) -> String {
    match &entry.inventory {
        Some(inventory) if !inventory.os.version_id.is_empty() => {
            format!("{} {}", inventory.os.id, inventory.os.version_id)
        }
        Some(inventory) => inventory.os.id.clone(),
        None => "unknown".to_string(),
    }
}

/// Summary of one host as JSON, with the full package list.
fn host_json(entry: &HostEntry) -> Value {
    let counts = count_by_severity(&entry.missing);
    let (os, packages, reboot) = match &entry.inventory {
        Some(inventory) => (
            json!(inventory.os),
            json!(inventory.packages),
            json!(inventory.reboot_pending),
        ),
        None => (Value::Null, json!([]), Value::Null),
    };
    json!({
        "host": entry.host,
        "peer": entry.peer,
        "site": entry.site,
        "groups": entry.groups,
        "os": os,
        "packages": packages,
        "package_count": entry.inventory.as_ref().map_or(0, |i| i.packages.len()),
        "reboot_pending": reboot,
        "missing": entry.missing,
        "missing_by_severity": {
            "critical": counts[0],
            "important": counts[1],
            "moderate": counts[2],
            "low": counts[3],
        },
        "last_seen": entry.last_seen,
    })
}

fn show_fleet(context: &Context, hosts: &[HostEntry]) {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|entry| {
            let counts = count_by_severity(&entry.missing);
            let inventory = entry.inventory.as_ref();
            vec![
                entry.host.clone(),
                entry.site.clone(),
                os_name(entry),
                inventory.map_or_else(String::new, |i| i.os.kernel.clone()),
                inventory.map_or_else(|| "-".into(), |i| i.packages.len().to_string()),
                format!("{}/{}/{}/{}", counts[0], counts[1], counts[2], counts[3]),
                match inventory.map(|i| i.reboot_pending) {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                last_seen(entry),
            ]
        })
        .collect();
    context.out.say(output::table(
        &[
            "host",
            "site",
            "os",
            "kernel",
            "packages",
            "missing c/i/m/l",
            "reboot",
            "last seen",
        ],
        &rows,
    ));
    let list: Vec<Value> = hosts.iter().map(host_json).collect();
    context.out.finish(json!({ "hosts": list }));
}

fn show_host(context: &Context, entry: &HostEntry) {
    let packages = entry
        .inventory
        .as_ref()
        .map(|i| i.packages.as_slice())
        .unwrap_or_default();
    context.out.say(format!(
        "{} ({}, site {}): {}, last seen {}",
        entry.host,
        entry.peer,
        entry.site,
        os_name(entry),
        last_seen(entry)
    ));
    let missing: Vec<Vec<String>> = entry
        .missing
        .iter()
        .map(|patch| {
            vec![
                patch.patch.clone(),
                patch.severity.to_string(),
                patch.cves.join(","),
                patch.released.clone().unwrap_or_default(),
            ]
        })
        .collect();
    context
        .out
        .say(format!("missing patches: {}", missing.len()));
    context.out.say(output::table(
        &["patch", "severity", "ids", "released"],
        &missing,
    ));
    let rows: Vec<Vec<String>> = packages
        .iter()
        .map(|p| vec![p.name.clone(), p.version.clone(), p.arch.clone()])
        .collect();
    context.out.say(format!("packages: {}", rows.len()));
    context
        .out
        .say(output::table(&["package", "version", "arch"], &rows));
    context.out.finish(json!({ "host": host_json(entry) }));
}

fn show_package(context: &Context, hosts: &[HostEntry], package: &str) {
    let mut found = Vec::new();
    let mut without = Vec::new();
    for entry in hosts {
        let Some(inventory) = &entry.inventory else {
            continue;
        };
        let mut any = false;
        for installed in inventory.packages.iter().filter(|p| p.name == package) {
            any = true;
            found.push(json!({
                "host": entry.host,
                "site": entry.site,
                "version": installed.version,
                "arch": installed.arch,
            }));
        }
        if !any {
            without.push(entry.host.clone());
        }
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|row| {
            ["host", "site", "version", "arch"]
                .iter()
                .map(|key| row[key].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    context
        .out
        .say(output::table(&["host", "site", "version", "arch"], &rows));
    context.out.say(format!(
        "{} hosts run {package}; {} do not",
        rows.len(),
        without.len()
    ));
    context.out.finish(json!({
        "package": package,
        "hosts": found,
        "not_installed": without,
    }));
}
