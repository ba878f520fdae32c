//! `enroll`: signs node enrollment certificates with the `enroll` role, one
//! node from flags or many from a CSV file, and `enroll revoke` withdraws
//! one. Nodes trust host, site and group membership only from these.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::{SecretKey, Signed};
use serde_json::json;

use crate::actions::{sign_and_write, SignOptions, Stamp};
use crate::{files, keys, Context};

/// Default expiry of enrollment certificates and revocations.
const ENROLL_EXPIRY: &str = "365d";

/// Most rows one CSV file may hold.
const MAX_CSV_ROWS: usize = 100_000;

/// Arguments of `enroll`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnrollArgs {
    #[command(subcommand)]
    command: Option<EnrollCommand>,
    /// libp2p peer id (base58) of the node.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    peer: Option<String>,
    /// Host name the node is known by.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    host: Option<String>,
    /// Site the node is in.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    site: Option<String>,
    /// Group the node belongs to (repeatable).
    #[arg(long = "group", conflicts_with = "csv")]
    groups: Vec<String>,
    /// CSV file with a header row and the columns peer,host,site,groups
    /// (groups separated by ';'); one certificate per row.
    #[arg(long, requires = "out_dir")]
    csv: Option<PathBuf>,
    /// Folder for the certificates of a CSV file, one `PEER.enrollment` each.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Secret key file of an enroll role key (repeatable).
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Expiry: a duration from now such as 365d, or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
    /// Revision; defaults to the signing time in unix seconds, so a later
    /// certificate supersedes an earlier one.
    #[arg(long)]
    revision: Option<u64>,
    /// Output file for a single certificate.
    #[arg(long, conflicts_with = "csv")]
    out: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
}

/// `enroll` subcommands.
#[derive(Subcommand)]
pub enum EnrollCommand {
    /// Withdraw a node's enrollment.
    Revoke {
        /// libp2p peer id (base58) of the node.
        #[arg(long)]
        peer: String,
        #[command(flatten)]
        sign: SignOptions,
    },
}

/// Runs `enroll` or `enroll revoke`.
pub fn run(context: &Context, args: EnrollArgs) -> anyhow::Result<()> {
    if let Some(EnrollCommand::Revoke { peer, sign }) = args.command {
        return revoke(context, peer, &sign);
    }
    if args.keys.is_empty() {
        bail!("missing --key (a secret key file of an enroll role key)");
    }
    let options = SignOptions {
        keys: args.keys.clone(),
        expires: args.expires.clone(),
        revision: args.revision,
        out: args.out.clone().unwrap_or_default(),
        force: args.force,
    };
    let stamp = options.stamp(ENROLL_EXPIRY)?;
    if let (Some(csv), Some(out_dir)) = (&args.csv, &args.out_dir) {
        return enroll_csv(context, csv, out_dir, &options, &stamp);
    }
    if args.out.is_none() {
        bail!("missing --out (the file to write the certificate to)");
    }
    let enrollment = Enrollment {
        peer: args.peer.unwrap_or_default(),
        host: args.host.unwrap_or_default(),
        site: args.site.unwrap_or_default(),
        groups: args.groups,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    enrollment.validate()?;
    sign_and_write(context, &enrollment, &options).map(drop)
}

fn revoke(context: &Context, peer: String, sign: &SignOptions) -> anyhow::Result<()> {
    let stamp = sign.stamp(ENROLL_EXPIRY)?;
    let revocation = Revocation {
        peer,
        revision: stamp.revision,
        issued: stamp.issued,
        expires: stamp.expires,
    };
    revocation.validate()?;
    sign_and_write(context, &revocation, sign).map(drop)
}

fn enroll_csv(
    context: &Context,
    csv: &Path,
    out_dir: &Path,
    options: &SignOptions,
    stamp: &Stamp,
) -> anyhow::Result<()> {
    let bytes = files::read(csv)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("\"{}\" is not UTF-8 text", csv.display()))?;
    let enrollments =
        parse_csv(&text, stamp).with_context(|| format!("\"{}\" is rejected", csv.display()))?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create folder \"{}\"", out_dir.display()))?;

    // Check every output path before writing any, so a rerun does not stop
    // halfway.
    let paths: Vec<PathBuf> = enrollments
        .iter()
        .map(|e| out_dir.join(format!("{}.enrollment", e.peer)))
        .collect();
    for path in &paths {
        files::check_overwrite(path, options.force)?;
    }
    let signers = keys::load_secrets(context, &options.keys)?;
    let signer_refs: Vec<&SecretKey> = signers.iter().collect();
    let mut written = Vec::new();
    for (enrollment, path) in enrollments.iter().zip(&paths) {
        let signed = Signed::sign(enrollment, &signer_refs);
        files::write_output(path, &signed.to_bytes(), options.force)?;
        written.push(json!({
            "id": signed.id().to_string(),
            "peer": enrollment.peer,
            "host": enrollment.host,
            "path": path,
        }));
    }

    context.out.say(format!(
        "{} enrollment certificate(s) signed, revision {}, expires {}, written to \"{}\"",
        written.len(),
        stamp.revision,
        stamp.expires,
        out_dir.display()
    ));
    context.out.finish(json!({
        "count": written.len(),
        "revision": stamp.revision,
        "issued": stamp.issued.to_string(),
        "expires": stamp.expires.to_string(),
        "enrollments": written,
    }));
    Ok(())
}

/// Parses a CSV of `peer,host,site,groups` under a header row. Every bad row
/// is reported with its line number and field, all in one error.
fn parse_csv(text: &str, stamp: &Stamp) -> anyhow::Result<Vec<Enrollment>> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, line)| line.trim()).unwrap_or("");
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_lowercase()).collect();
    if columns != ["peer", "host", "site", "groups"] {
        bail!("line 1: header is {header:?} (expected \"peer,host,site,groups\")");
    }

    let mut enrollments = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if enrollments.len() >= MAX_CSV_ROWS {
            bail!("more than {MAX_CSV_ROWS} rows (split the file)");
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 4 {
            problems.push(format!(
                "line {number}: {} field(s) (expected 4: peer,host,site,groups)",
                fields.len()
            ));
            continue;
        }
        let groups = fields[3]
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
        let enrollment = Enrollment {
            peer: fields[0].to_string(),
            host: fields[1].to_string(),
            site: fields[2].to_string(),
            groups,
            revision: stamp.revision,
            issued: stamp.issued,
            expires: stamp.expires,
        };
        if let Err(error) = enrollment.validate() {
            problems.push(format!("line {number}: {error}"));
            continue;
        }
        if let Some(first) = seen.insert(enrollment.peer.clone(), number) {
            problems.push(format!(
                "line {number}: enrollment field \"peer\": {:?} is already on line {first}",
                enrollment.peer
            ));
            continue;
        }
        enrollments.push(enrollment);
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    if enrollments.is_empty() {
        bail!("no rows below the header (expected one node per line)");
    }
    Ok(enrollments)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::expiry;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    fn stamp() -> Stamp {
        let issued: Timestamp = "2030-01-01T00:00:00Z".parse().expect("valid");
        Stamp {
            issued,
            expires: expiry::parse("365d", issued).expect("valid"),
            revision: 5,
        }
    }

    #[test]
    fn csv_rows_become_enrollments() {
        let text = format!("peer,host,site,groups\n{PEER},pc-1,hq,workstations;it-pilot\n");
        let enrollments = parse_csv(&text, &stamp()).expect("valid");
        assert_eq!(enrollments.len(), 1);
        assert_eq!(enrollments[0].host, "pc-1");
        assert_eq!(enrollments[0].groups, ["workstations", "it-pilot"]);
        assert_eq!(enrollments[0].revision, 5);
    }

    #[test]
    fn csv_errors_name_line_and_field() {
        let text = format!(
            "peer,host,site,groups\n{PEER},pc-1,hq,\nnot-a-peer,pc-2,hq,\n{PEER},../x,hq,\n"
        );
        let err = parse_csv(&text, &stamp()).unwrap_err().to_string();
        assert!(err.contains("line 3: enrollment field \"peer\""), "{err}");
        assert!(err.contains("line 4: enrollment field \"host\""), "{err}");
    }

    #[test]
    fn csv_rejects_duplicate_peer() {
        let text = format!("peer,host,site,groups\n{PEER},pc-1,hq,\n{PEER},pc-2,hq,\n");
        let err = parse_csv(&text, &stamp()).unwrap_err().to_string();
        assert!(err.contains("already on line 2"), "{err}");
    }

    #[test]
    fn csv_rejects_missing_header_and_short_rows() {
        let err = parse_csv(&format!("{PEER},pc-1,hq,\n"), &stamp()).unwrap_err();
        assert!(err.to_string().contains("line 1: header"), "{err}");
        let err = parse_csv("peer,host,site,groups\nabc,pc-1\n", &stamp()).unwrap_err();
        assert!(err.to_string().contains("line 2: 2 field(s)"), "{err}");
    }
}
