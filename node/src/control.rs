//! The local control API on 127.0.0.1: the signer publishes objects and
//! chunks through it and reads status. It never listens on other addresses.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use patchmesh_protocol::{limits, Hash, SignedReport};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Command, Shared};

/// Largest request body: a report file from an air-gapped site. Chunk and
/// object bodies are far smaller and are checked against their own limits.
const REPORT_FILE_LIMIT: usize = 256 * 1024 * 1024;

#[derive(Clone)]
struct ControlState {
    shared: Shared,
    commands: mpsc::Sender<Command>,
}

/// An error reply: status and a message naming the value and the fix.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn unavailable() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "the agent is shutting down; retry once it runs again".into(),
    )
}

/// Binds the control API, refusing any address that is not loopback.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "control address {addr} is not a loopback address (use 127.0.0.1:PORT; the control API has no authentication)"
        );
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind control API on {addr}: {e}"))
}

/// Serves the control API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Shared,
    commands: mpsc::Sender<Command>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = ControlState { shared, commands };
    let app = Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/objects", post(publish_object))
        .route("/v1/chunks/{hash}", put(put_chunk))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/reboot/postpone", post(postpone_reboot))
        .route("/v1/bundles/import", post(import_bundle))
        .route("/v1/reports/import", post(import_reports))
        .route("/v1/reports/export", get(export_reports))
        .route("/v1/inventory", get(inventory))
        .route("/v1/history", get(history))
        .layer(DefaultBodyLimit::max(REPORT_FILE_LIMIT))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn node_info(State(state): State<ControlState>) -> Json<Value> {
    let info = state
        .shared
        .info
        .read()
        .expect("node info lock is never poisoned")
        .clone();
    Json(serde_json::to_value(info).expect("node info always serializes"))
}

async fn publish_object(
    State(state): State<ControlState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .commands
        .send(Command::Publish {
            bytes: body.to_vec(),
            reply,
        })
        .await
        .map_err(|_| unavailable())?;
    let admitted = answer
        .await
        .map_err(|_| unavailable())?
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(json!({
        "id": admitted.id.to_hex(),
        "kind": admitted.kind.name(),
        "slot": admitted.slot,
        "revision": admitted.revision,
        "outcome": match admitted.outcome {
            crate::trust::Outcome::Stored => "stored",
            crate::trust::Outcome::Duplicate => "duplicate",
        },
    })))
}

async fn put_chunk(
    State(state): State<ControlState>,
    Path(hash): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let hash: Hash = hash
        .parse()
        .map_err(|e: patchmesh_protocol::hash::ParseHashError| {
            ApiError(StatusCode::BAD_REQUEST, e.to_string())
        })?;
    if body.len() > limits::MAX_CHUNK_BYTES as usize {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "chunk {hash} is {} bytes, over the limit of {} bytes",
                body.len(),
                limits::MAX_CHUNK_BYTES
            ),
        ));
    }
    let listed = state
        .shared
        .listed_chunks
        .read()
        .expect("chunk list lock is never poisoned")
        .contains(&hash);
    if !listed {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("chunk {hash} is not listed by any manifest this node holds (publish the manifest first)"),
        ));
    }
    let store = state.shared.chunks.clone();
    let stored = tokio::task::spawn_blocking(move || store.put(&hash, &body))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    state
        .commands
        .send(Command::ChunkStored(hash))
        .await
        .map_err(|_| unavailable())?;
    Ok(Json(json!({
        "hash": hash.to_hex(),
        "outcome": if stored { "stored" } else { "duplicate" },
    })))
}

async fn status(State(state): State<ControlState>) -> Result<Json<Value>, ApiError> {
    let info = state
        .shared
        .info
        .read()
        .expect("node info lock is never poisoned")
        .clone();
    let stored = state
        .shared
        .meta
        .reports()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut reports = Vec::new();
    for record in stored {
        match SignedReport::verify_bytes(&record.signed) {
            Ok((_, report)) => {
                let mut value = serde_json::to_value(&report).expect("reports always serialize");
                value["received"] = json!(record.received);
                reports.push(value);
            }
            Err(e) => tracing::error!(error = %e, "stored report no longer verifies; skipped"),
        }
    }
    Ok(Json(json!({ "node": info, "reports": reports })))
}

async fn peers(State(state): State<ControlState>) -> Result<Json<Value>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .commands
        .send(Command::Peers(reply))
        .await
        .map_err(|_| unavailable())?;
    let peers = answer.await.map_err(|_| unavailable())?;
    Ok(Json(
        serde_json::to_value(peers).expect("peer views always serialize"),
    ))
}

async fn postpone_reboot(State(state): State<ControlState>) -> Result<Json<Value>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .commands
        .send(Command::PostponeReboot(reply))
        .await
        .map_err(|_| unavailable())?;
    let accepted = answer.await.map_err(|_| unavailable())?;
    Ok(Json(json!({ "postponed": accepted })))
}

#[derive(serde::Deserialize)]
struct ImportRequest {
    path: std::path::PathBuf,
}

async fn import_bundle(
    State(state): State<ControlState>,
    Json(request): Json<ImportRequest>,
) -> Result<Json<Value>, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .commands
        .send(Command::ImportBundle {
            path: request.path,
            reply,
        })
        .await
        .map_err(|_| unavailable())?;
    let summary = answer
        .await
        .map_err(|_| unavailable())?
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(summary))
}

async fn import_reports(
    State(state): State<ControlState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    use patchmesh_protocol::bundle::reports::ReportBundle;
    let observer = state
        .shared
        .info
        .read()
        .expect("node info lock is never poisoned")
        .observer;
    if !observer {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this node is not an observer (init it with --observer to collect reports)".into(),
        ));
    }
    let file = ReportBundle::decode(&body)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // Every report must verify before any is stored.
    let verified = file
        .verify()
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let count = verified.len();
    state
        .commands
        .send(Command::ImportReports(file.reports))
        .await
        .map_err(|_| unavailable())?;
    Ok(Json(json!({ "imported": count })))
}

async fn export_reports(State(state): State<ControlState>) -> Result<Vec<u8>, ApiError> {
    use patchmesh_protocol::bundle::reports::ReportBundle;
    let reports = state
        .shared
        .meta
        .reports()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|r| r.signed)
        .collect();
    Ok(ReportBundle { reports }.encode())
}

/// Verified live bodies of `kind` at `now`.
fn live_bodies<B: patchmesh_protocol::Body>(
    shared: &Shared,
    kind: patchmesh_protocol::Kind,
    now: jiff::Timestamp,
) -> Vec<B> {
    shared
        .meta
        .live_of_kind(kind)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.decode_body::<B>().ok())
        .filter(|b| b.expires() > now)
        .collect()
}

async fn inventory(State(state): State<ControlState>) -> Result<Json<Value>, ApiError> {
    use crate::inventory::views::{inventory_view, HostInput};
    use patchmesh_protocol::policy::Membership;
    use patchmesh_protocol::{Kind, Manifest, Policy};

    let now = state.shared.clock.now();
    let reports: Vec<patchmesh_protocol::NodeReport> = state
        .shared
        .meta
        .reports()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .iter()
        .filter_map(|r| {
            SignedReport::verify_bytes(&r.signed)
                .ok()
                .map(|(_, report)| report)
        })
        .collect();
    let inventories = crate::agent::inventory::stored_inventories(&state.shared.meta);
    let manifests: Vec<Manifest> = live_bodies(&state.shared, Kind::Manifest, now);
    let policies: Vec<Policy> = live_bodies(&state.shared, Kind::Policy, now);

    // One entry per peer seen in a report or an inventory.
    let mut peers: Vec<String> = reports.iter().map(|r| r.peer.clone()).collect();
    peers.extend(inventories.iter().map(|i| i.peer.clone()));
    peers.sort();
    peers.dedup();
    let members: Vec<(String, Membership, Option<jiff::Timestamp>)> = peers
        .iter()
        .map(|peer| {
            let report = reports.iter().find(|r| &r.peer == peer);
            let inventory = inventories.iter().find(|i| &i.peer == peer);
            let member = Membership {
                host: report
                    .map(|r| r.host.clone())
                    .or_else(|| inventory.map(|i| i.host.clone()))
                    .unwrap_or_default(),
                site: report.map(|r| r.site.clone()).unwrap_or_default(),
                groups: report.map(|r| r.groups.clone()).unwrap_or_default(),
            };
            let seen = [report.map(|r| r.time), inventory.map(|i| i.time)]
                .into_iter()
                .flatten()
                .max();
            (peer.clone(), member, seen)
        })
        .collect();
    let hosts: Vec<HostInput> = members
        .iter()
        .map(|(peer, member, seen)| HostInput {
            peer,
            member,
            last_seen: *seen,
            inventory: inventories.iter().find(|i| &i.peer == peer),
            patches: reports
                .iter()
                .find(|r| &r.peer == peer)
                .map(|r| r.patches.as_slice())
                .unwrap_or(&[]),
        })
        .collect();
    let manifest_refs: Vec<&Manifest> = manifests.iter().collect();
    let policy_refs: Vec<&Policy> = policies.iter().collect();
    let view = inventory_view(&hosts, &manifest_refs, &policy_refs, now);
    Ok(Json(
        serde_json::to_value(view).expect("inventory views always serialize"),
    ))
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    host: Option<String>,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
}

async fn history(
    State(state): State<ControlState>,
    axum::extract::Query(query): axum::extract::Query<HistoryQuery>,
) -> Json<Value> {
    let log = state
        .shared
        .history
        .lock()
        .expect("history lock is never poisoned");
    let events = log.query(query.host.as_deref(), query.from, query.to);
    Json(json!({ "events": events, "dropped": log.dropped() }))
}
