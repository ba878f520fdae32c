//! Raw QUIC throughput on loopback: one quinn connection, one stream, no
//! libp2p. `bench/transfer.sh` runs it as the ceiling that a node's chunk
//! transfer over libp2p's QUIC transport can approach on the same machine.
//!
//! The sender and the receiver run in one process, each on its own endpoint
//! bound to 127.0.0.1, with a self-signed certificate from rcgen. rustls with
//! aws-lc-rs negotiates its default first cipher suite (AES-128-GCM where the
//! CPU has AES instructions).
//!
//! With `--store DIR` the receiver also hashes each 1 MiB piece with BLAKE3
//! and writes it to its own file in DIR (temporary name, then rename) on a
//! blocking thread, as the node does. That is the least work a chunk
//! receiver must do, so this figure is the ceiling for a fetching node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use quinn::{ClientConfig, Endpoint, ServerConfig};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// Size of each write and of the buffer the sender repeats.
const WRITE_SIZE: usize = 1 << 20;

#[derive(Parser)]
#[command(about = "Move bytes over one raw quinn stream on loopback and print the throughput")]
struct Args {
    /// Bytes to send, in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Hash each received MiB and store it as a file in this folder.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let bytes = args.size_mib * (1 << 20);
    if let Some(dir) = &args.store {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the store folder {}", dir.display()))?;
    }
    let (received, secs) = runtime.block_on(transfer(bytes, args.store.clone()))?;
    if received != bytes {
        bail!("receiver got {received} bytes, expected {bytes}");
    }
    let mb_per_s = bytes as f64 / secs / 1e6;
    let mode = if args.store.is_some() {
        "raw quinn, hashed and stored"
    } else {
        "raw quinn"
    };
    eprintln!("{mode}: {bytes} bytes in {secs:.3} s, {mb_per_s:.1} MB/s");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bytes": bytes,
                "secs": secs,
                "mb_per_s": mb_per_s,
                "stored": args.store.is_some(),
            })
        );
    }
    Ok(())
}

/// Sends `bytes` from a server endpoint to a client endpoint over one
/// unidirectional stream and returns the bytes received and the seconds
/// from the first byte written to the last byte read. With `store`, the
/// time also covers storing the last piece.
async fn transfer(bytes: u64, store: Option<PathBuf>) -> Result<(u64, f64)> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .context("failed to generate a self-signed certificate")?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());

    let server_config = ServerConfig::with_single_cert(vec![cert.clone()], key.into())
        .context("invalid server certificate")?;
    let server = Endpoint::server(server_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("failed to bind the sending endpoint")?;
    let server_addr = server.local_addr()?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client_config = ClientConfig::with_root_certificates(Arc::new(roots))?;
    let mut client = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .context("failed to bind the receiving endpoint")?;
    client.set_default_client_config(client_config);

    // The sender writes the same buffer until `bytes` are out, then waits
    // for the receiver to close the connection.
    let sender = tokio::spawn(async move {
        let incoming = server.accept().await.context("sending endpoint closed")?;
        let connection = incoming.await?;
        let mut stream = connection.open_uni().await?;
        let mut buffer = vec![0x5au8; WRITE_SIZE];
        let mut left = bytes;
        let mut index = 0u64;
        while left > 0 {
            let n = left.min(WRITE_SIZE as u64) as usize;
            // A counter up front makes each piece, and so each stored file
            // name, distinct.
            buffer[..8].copy_from_slice(&index.to_be_bytes());
            index += 1;
            stream.write_all(&buffer[..n]).await?;
            left -= n as u64;
        }
        stream.finish()?;
        connection.closed().await;
        anyhow::Ok(())
    });

    let connection = client.connect(server_addr, "localhost")?.await?;
    let mut stream = connection.accept_uni().await?;
    let started = Instant::now();
    let mut received = 0u64;
    let mut piece: Vec<u8> = Vec::with_capacity(WRITE_SIZE);
    let mut writes = Vec::new();
    while let Some(chunk) = stream.read_chunk(WRITE_SIZE, true).await? {
        received += chunk.bytes.len() as u64;
        if let Some(dir) = &store {
            piece.extend_from_slice(&chunk.bytes);
            if piece.len() >= WRITE_SIZE || received == bytes {
                let full = std::mem::replace(&mut piece, Vec::with_capacity(WRITE_SIZE));
                let dir = dir.clone();
                writes.push(tokio::task::spawn_blocking(move || {
                    store_piece(&dir, &full)
                }));
            }
        }
    }
    for write in writes {
        write.await.context("store task panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    connection.close(0u32.into(), b"done");
    sender.await.context("sender task panicked")??;
    client.wait_idle().await;
    Ok((received, secs))
}

/// Hashes `piece` and writes it to DIR/<hash> through a temporary file.
fn store_piece(dir: &Path, piece: &[u8]) -> Result<()> {
    let name = blake3::hash(piece).to_hex();
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, piece).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name.as_str()))
        .with_context(|| format!("cannot rename {}", tmp.display()))?;
    Ok(())
}
