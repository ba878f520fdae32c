//! Collection of chunks no live policy needs: a patch's chunks stay while a
//! live policy names it, so site peers can still fetch them over the LAN,
//! and go once no live policy names it and it is installed here or its
//! manifest expired.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use patchmesh_protocol::{Hash, Kind, Manifest, PatchState, Policy};

use super::Agent;
use crate::rollout;

/// How often the chunk store is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Agent {
    pub(super) fn maybe_collect_chunks(&mut self) {
        if self.last_sweep.elapsed() < SWEEP_EVERY {
            return;
        }
        self.last_sweep = Instant::now();
        let removed = self.collect_chunks();
        if removed > 0 {
            tracing::info!(
                chunks = removed,
                used_bytes = self.shared.chunks.used_bytes(),
                "collected chunks no live policy needs"
            );
        }
    }

    /// Deletes the chunks of collectable patches and returns how many.
    pub(super) fn collect_chunks(&mut self) -> usize {
        let now = self.trust.effective_now(self.shared.clock.now());
        let policies: Vec<Policy> = self
            .shared
            .meta
            .live_of_kind(Kind::Policy)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.decode_body::<Policy>().ok())
            .filter(|p| p.expires > now)
            .collect();
        let manifests: Vec<Manifest> = self
            .shared
            .meta
            .live_of_kind(Kind::Manifest)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.decode_body::<Manifest>().ok())
            .collect();

        let mut keep: HashSet<Hash> = HashSet::new();
        let mut drop: HashSet<Hash> = HashSet::new();
        for manifest in &manifests {
            let patch = manifest.patch_ref();
            let named = policies
                .iter()
                .any(|p| rollout::targeting::selects(p, &patch, manifest.severity));
            let installed = self.tracks.values().any(|e| {
                e.track.patch == patch
                    && matches!(
                        e.track.state,
                        PatchState::Installed | PatchState::RebootPending
                    )
            });
            let expired = manifest.expires <= now;
            let downloading = self.downloads.contains_key(&manifest.payload_hash);
            if !downloading && !named && (installed || expired) {
                drop.extend(manifest.chunks.iter().copied());
            } else {
                keep.extend(manifest.chunks.iter().copied());
            }
        }
        let mut removed = 0;
        for hash in drop.difference(&keep) {
            if self.shared.chunks.contains(hash) {
                self.shared.chunks.remove(hash);
                removed += 1;
            }
        }
        if removed > 0 {
            self.held.clear();
        }
        removed
    }
}
