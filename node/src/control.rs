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
