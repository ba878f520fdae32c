//! Air-gapped sites: bundle import through the control API or a watched
//! folder (a USB mount), verified whole before anything is stored.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Agent;
use crate::bundle;

/// How often the import folder is scanned for new bundles.
const IMPORT_SCAN: Duration = Duration::from_secs(5);

/// How long a bundle file must stay unmodified before it is imported, so a
/// copy still being written is not read short and rejected.
const IMPORT_SETTLE: Duration = Duration::from_secs(5);

impl Agent {
    /// Imports one bundle file and spreads what it carried as if it came
    /// over the mesh; the error names what failed, and nothing is stored.
    pub(super) fn import_bundle(&mut self, path: &Path) -> Result<serde_json::Value, String> {
        let staging = self.data_dir.join(bundle::STAGING_DIR);
        let now = self.shared.clock.now();
        let clock = self.shared.clock.name();
        let stores = bundle::Stores {
            trust: &mut self.trust,
            meta: &self.shared.meta,
            chunks: &self.shared.chunks,
            staging_dir: &staging,
        };
        // NOTE: the import runs on the agent's task, so the swarm waits
        // while a large bundle is hashed and staged (seconds per 64 MiB in
        // a debug build).
        let summary = bundle::import_with_skew(
            path,
            stores,
            now,
            clock,
            jiff::SignedDuration::from_secs(self.config.max_clock_skew_secs as i64),
        )
        .map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "bundle rejected");
            e.to_string()
        })?;
        tracing::info!(path = %path.display(), index = %summary.index.short(), objects = summary.objects_stored, chunks = summary.chunks_stored, signed_at = %summary.signed_at, "bundle imported");

        // Chunks arrived outside the download path: recompute what is held.
        self.held.clear();
        self.refresh_manifests();
        self.announce_imported_objects();
        self.inputs_changed();
        Ok(json!({
            "index": summary.index.to_hex(),
            "fleet": summary.fleet,
            "signed_at": summary.signed_at.to_string(),
            "roots": summary.roots,
            "objects_stored": summary.objects_stored,
            "objects_held": summary.objects_held,
            "chunks_stored": summary.chunks_stored,
            "chunks_held": summary.chunks_held,
        }))
    }

    /// Gossips every live object, so peers of the site get what a bundle
    /// brought without waiting for their next anti-entropy round.
    fn announce_imported_objects(&mut self) {
        let Ok(objects) = self.shared.meta.live_objects() else {
            return;
        };
        for (_, signed) in objects {
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), signed.to_bytes());
        }
    }

    /// Imports bundles dropped into the configured folder: each `*.bundle`
    /// file is moved to `imported/` or `rejected/` beside it afterwards, so
    /// it is tried once. A file modified less than [`IMPORT_SETTLE`] ago
    /// waits for a later scan.
    pub(super) fn maybe_scan_import_dir(&mut self) {
        let Some(dir) = self.config.import_dir.clone() else {
            return;
        };
        if self.last_import_scan.elapsed() < IMPORT_SCAN {
            return;
        }
        self.last_import_scan = Instant::now();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("bundle") {
                continue;
            }
            // A modification time in the future was set by the copy tool
            // once it finished (such as `cp -p` from a machine whose clock
            // is ahead), so it counts as settled.
            let age = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .map(|modified| modified.elapsed().unwrap_or(IMPORT_SETTLE));
            match age {
                Ok(age) if age >= IMPORT_SETTLE => {}
                Ok(_) => {
                    tracing::debug!(path = %path.display(), "bundle file modified recently; importing it once it stays unchanged");
                    continue;
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "cannot read the modification time of a bundle file; skipping it");
                    continue;
                }
            }
            let outcome = match self.import_bundle(&path) {
                Ok(_) => "imported",
                Err(_) => "rejected",
            };
            let target_dir = dir.join(outcome);
            let moved = std::fs::create_dir_all(&target_dir)
                .and_then(|()| std::fs::rename(&path, target_dir.join(entry.file_name())));
            if let Err(e) = moved {
                tracing::error!(path = %path.display(), error = %e, "cannot move a scanned bundle; it will be tried again");
            }
        }
    }
}
