//! Per-patch state on this node: which patches the live policies ask for,
//! and the persisted state machine that carries each one from pending to
//! installed, failed or rolled back, resuming after a restart without
//! repeating finished steps.

use std::path::PathBuf;

use jiff::Timestamp;
use patchmesh_protocol::{Body, Hash, Kind, Manifest, PatchRef, PatchState, Policy};
use serde::{Deserialize, Serialize};

use super::{Agent, Work};
use crate::install::{self, InstallRecord};

/// Most install attempts after interrupted installs before giving up.
const MAX_ATTEMPTS: u32 = 3;

/// Persisted state of one patch on this node. A patch is tracked once,
/// whichever policies name it, so it is installed at most once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PatchRecord {
    /// The patch.
    pub patch: PatchRef,
    /// Policy that first asked for it.
    pub policy: String,
    /// Current state.
    pub state: PatchState,
    /// When the state was entered.
    pub since: Timestamp,
    /// When the node first learned it should install the patch.
    pub started: Timestamp,
    /// Error or exit status text.
    pub detail: String,
    /// Payload hash of the manifest in use.
    pub payload_hash: Option<Hash>,
    /// Chunk bytes from peers of the same site.
    pub bytes_same_site: u64,
    /// Chunk bytes from peers of other sites.
    pub bytes_cross_site: u64,
    /// Install attempts started.
    pub attempts: u32,
    /// What the installer did, kept for rollback.
    pub install: Option<InstallRecord>,
}

/// Result of a background install.
pub(super) struct InstallOutcome {
    key: String,
    result: Result<InstallRecord, String>,
    /// Set when the install failed or the health check failed and a
    /// rollback ran.
    rollback: Option<Result<InstallRecord, String>>,
}

impl Agent {
    /// Loads persisted patch records and the manifest index at start.
    pub(super) fn load_state(&mut self) -> anyhow::Result<()> {
        self.refresh_manifests();
        for (key, record) in self.shared.meta.patch_records::<PatchRecord>()? {
            tracing::info!(patch = %record.patch, state = %record.state, "resuming patch");
            self.records.insert(key, record);
        }
        self.plan();
        Ok(())
    }

    fn set_state(&mut self, key: &str, state: PatchState, detail: impl Into<String>) {
        let now = self.shared.clock.now();
        let Some(record) = self.records.get_mut(key) else {
            return;
        };
        let detail = detail.into();
        tracing::info!(patch = %record.patch, policy = %record.policy, from = %record.state, to = %state, detail = %detail, "patch state changed");
        record.state = state;
        record.since = now;
        record.detail = detail;
        let record = record.clone();
        self.persist(key, &record);
    }

    fn persist(&mut self, key: &str, record: &PatchRecord) {
        if let Err(e) = self.shared.meta.put_patch_record(key, record) {
            tracing::error!(patch = %record.patch, error = %e, "cannot persist patch state");
        }
        self.report_dirty = true;
    }

    /// Live policies that target this node, by the node's clock.
    fn targeting_policies(&self) -> Vec<Policy> {
        let now = self.trust.effective_now(self.shared.clock.now());
        let member = self.membership();
        let Ok(signed) = self.shared.meta.live_of_kind(Kind::Policy) else {
            return Vec::new();
        };
        signed
            .iter()
            .filter_map(|s| s.decode_body::<Policy>().ok())
            .filter(|p| p.expires() > now && p.targets.matches(&member))
            .collect()
    }

    fn manifest_for(&self, patch: &PatchRef) -> Option<Manifest> {
        let entry = self
            .shared
            .meta
            .slot(Kind::Manifest, &patch.to_string())
            .ok()??;
        self.shared
            .meta
            .object(&entry.id)
            .ok()??
            .decode_body::<Manifest>()
            .ok()
    }

    /// Moves every patch as far as its state and the held objects allow.
    pub(super) fn plan(&mut self) {
        let now = self.shared.clock.now();
        for policy in self.targeting_policies() {
            for patch in &policy.content.patches {
                let key = patch.to_string();
                if self.records.contains_key(&key) {
                    continue;
                }
                let record = PatchRecord {
                    patch: patch.clone(),
                    policy: policy.id.clone(),
                    state: PatchState::Pending,
                    since: now,
                    started: now,
                    detail: String::new(),
                    payload_hash: None,
                    bytes_same_site: 0,
                    bytes_cross_site: 0,
                    attempts: 0,
                    install: None,
                };
                tracing::info!(patch = %patch, policy = %policy.id, "patch targets this node");
                self.persist(&key, &record);
                self.records.insert(key, record);
            }
        }

        let keys: Vec<String> = self.records.keys().cloned().collect();
        for key in keys {
            let record = self.records[&key].clone();
            match record.state {
                PatchState::Pending | PatchState::Approved => {
                    if let Some(manifest) = self.manifest_for(&record.patch) {
                        if let Some(r) = self.records.get_mut(&key) {
                            r.payload_hash = Some(manifest.payload_hash);
                        }
                        self.set_state(&key, PatchState::Downloading, "");
                        self.start_download(&manifest);
                        self.check_download_done(&manifest.payload_hash);
                    }
                }
                PatchState::Downloading => {
                    if let Some(manifest) = self.manifest_for(&record.patch) {
                        self.start_download(&manifest);
                        self.check_download_done(&manifest.payload_hash);
                    }
                }
                PatchState::Installing if !self.installing.contains(&key) => {
                    // The node stopped during the install. The file installer
                    // is idempotent; a command is retried a bounded number of
                    // times.
                    if record.attempts >= MAX_ATTEMPTS {
                        self.set_state(
                            &key,
                            PatchState::Failed,
                            format!("install interrupted {} times; giving up", record.attempts),
                        );
                    } else if let Some(manifest) = self.manifest_for(&record.patch) {
                        tracing::warn!(patch = %record.patch, attempts = record.attempts, "install was interrupted; running it again");
                        self.spawn_install(&key, manifest);
                    }
                }
                _ => {}
            }
        }
    }

    /// When a download has every chunk, hands it to the installer.
    pub(super) fn check_download_done(&mut self, payload: &Hash) {
        let complete = self
            .downloads
            .get(payload)
            .is_some_and(|d| d.scheduler.is_complete());
        if !complete {
            return;
        }
        let download = self
            .downloads
            .remove(payload)
            .expect("checked present above");
        let patch = download.manifest.patch_ref();
        tracing::info!(patch = %patch, same_site = download.bytes_same_site, cross_site = download.bytes_cross_site, "download complete");
        let keys: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.payload_hash == Some(*payload) && r.state == PatchState::Downloading)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(record) = self.records.get_mut(&key) {
                record.bytes_same_site += download.bytes_same_site;
                record.bytes_cross_site += download.bytes_cross_site;
            }
            self.spawn_install(&key, download.manifest.clone());
        }
    }

    fn spawn_install(&mut self, key: &str, manifest: Manifest) {
        if !self.installing.insert(key.to_string()) {
            return;
        }
        if let Some(record) = self.records.get_mut(key) {
            record.attempts += 1;
        }
        self.set_state(key, PatchState::Installing, "");
        let policy = self
            .records
            .get(key)
            .and_then(|r| {
                self.shared
                    .meta
                    .slot(Kind::Policy, &r.policy)
                    .ok()
                    .flatten()
            })
            .and_then(|entry| self.shared.meta.object(&entry.id).ok().flatten())
            .and_then(|s| s.decode_body::<Policy>().ok());
        let previous = self.records.get(key).and_then(|r| r.install.clone());
        let chunks = self.shared.chunks.clone();
        let backup_dir: PathBuf = self
            .data_dir
            .join("rollback")
            .join(manifest.patch_ref().to_string());
        let work = self.work_tx.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let outcome = run_install(key, manifest, policy, previous, chunks, backup_dir).await;
            let _ = work.send(Work::Installed(outcome)).await;
        });
    }

    pub(super) fn on_install_outcome(&mut self, outcome: InstallOutcome) {
        self.installing.remove(&outcome.key);
        let key = outcome.key;
        match (outcome.result, outcome.rollback) {
            (Ok(record), None) => {
                let detail = record.output.clone();
                if let Some(r) = self.records.get_mut(&key) {
                    r.install = Some(record);
                }
                self.set_state(&key, PatchState::Installed, detail);
            }
            (Ok(record), Some(rollback)) => {
                if let Some(r) = self.records.get_mut(&key) {
                    r.install = Some(record);
                }
                match rollback {
                    Ok(_) => self.set_state(
                        &key,
                        PatchState::RolledBack,
                        "health check failed; rolled back",
                    ),
                    Err(e) => self.set_state(
                        &key,
                        PatchState::Failed,
                        format!("health check failed; rollback failed: {e}"),
                    ),
                }
            }
            (Err(error), rollback) => {
                let detail = match rollback {
                    Some(Ok(_)) => format!("{error}; rolled back"),
                    Some(Err(e)) => format!("{error}; rollback failed: {e}"),
                    None => error,
                };
                tracing::error!(patch = %key, error = %detail, "install failed");
                self.set_state(&key, PatchState::Failed, detail);
            }
        }
    }
}

/// Assembles the payload, installs it, runs the policy's health check and
/// rolls back when the policy asks for it.
async fn run_install(
    key: String,
    manifest: Manifest,
    policy: Option<Policy>,
    previous: Option<InstallRecord>,
    chunks: std::sync::Arc<crate::store::ChunkStore>,
    backup_dir: PathBuf,
) -> InstallOutcome {
    let assembled = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || chunks.assemble(&manifest)).await
    };
    let payload = match assembled {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => {
            return InstallOutcome {
                key,
                result: Err(format!("cannot assemble payload: {e}")),
                rollback: None,
            }
        }
        Err(e) => {
            return InstallOutcome {
                key,
                result: Err(format!("assembly task failed: {e}")),
                rollback: None,
            }
        }
    };
    let rule = policy.map(|p| p.rollback).unwrap_or_default();
    let result = install::install(&manifest, &payload, &backup_dir).await;
    match result {
        Err(error) => {
            let rollback = if rule.on_install_failure {
                let record = previous.unwrap_or_default();
                Some(
                    install::rollback(&manifest, Some(&payload), &record)
                        .await
                        .map_err(|e| e.to_string()),
                )
            } else {
                None
            };
            InstallOutcome {
                key,
                result: Err(error.to_string()),
                rollback,
            }
        }
        Ok(record) => {
            let mut rollback = None;
            if let Some(check) = &rule.health_check {
                let timeout = rule
                    .health_timeout
                    .map(|d| std::time::Duration::from_secs(d.as_secs()))
                    .unwrap_or(std::time::Duration::from_secs(300));
                if let Err(e) = install::run_command(check, None, timeout).await {
                    tracing::warn!(patch = %key, error = %e, "health check failed; rolling back");
                    rollback = Some(
                        install::rollback(&manifest, Some(&payload), &record)
                            .await
                            .map_err(|e| e.to_string()),
                    );
                }
            }
            InstallOutcome {
                key,
                result: Ok(record),
                rollback,
            }
        }
    }
}
