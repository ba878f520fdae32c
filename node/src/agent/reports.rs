//! Signed status reports: built from the patch records, signed with the
//! node key and sent to connected observers only, so a fleet's chatter does
//! not reach every node.

use std::time::Duration;

use patchmesh_protocol::wire::SyncRequest;
use patchmesh_protocol::{NodeReport, PatchStatus, SignedReport};

use super::{Agent, SyncPurpose};

/// Shortest gap between two reports when state changes quickly.
const MIN_GAP: Duration = Duration::from_millis(500);
/// Longest gap between two reports, so observers see the node alive.
const HEARTBEAT: Duration = Duration::from_secs(60);

const SEQ_KEY: &str = "report_seq";

impl Agent {
    /// The node's current report, with the next sequence number.
    pub(super) fn build_report(&mut self) -> NodeReport {
        let seq = self
            .shared
            .meta
            .misc::<u64>(SEQ_KEY)
            .ok()
            .flatten()
            .unwrap_or(0)
            + 1;
        if let Err(e) = self.shared.meta.set_misc(SEQ_KEY, &seq) {
            tracing::error!(error = %e, "cannot persist report sequence number");
        }
        NodeReport {
            peer: self.local.to_base58(),
            host: self.config.host.clone(),
            site: self.config.site.clone(),
            groups: self.config.groups.clone(),
            seq,
            time: self.shared.clock.now(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            patches: self
                .records
                .values()
                .map(|r| PatchStatus {
                    patch: r.patch.clone(),
                    policy: r.policy.clone(),
                    state: r.state,
                    since: r.since,
                    started: r.started,
                    detail: r.detail.clone(),
                    payload_hash: r.payload_hash,
                    bytes_same_site: r.bytes_same_site,
                    bytes_cross_site: r.bytes_cross_site,
                })
                .collect(),
        }
    }

    /// Sends a report when state changed (at most every [`MIN_GAP`]) or
    /// when the heartbeat is due.
    pub(super) fn maybe_report(&mut self) {
        let since = self.last_report.elapsed();
        let due = (self.report_dirty && since >= MIN_GAP) || since >= HEARTBEAT;
        if !due {
            return;
        }
        self.report_dirty = false;
        self.last_report = std::time::Instant::now();
        let report = self.build_report();
        let signed = SignedReport::sign(&report, &self.keypair).to_bytes();
        if self.config.observer {
            self.store_report(&report.peer, report.seq, signed.clone());
        }
        let observers: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, e)| e.hello.as_ref().is_some_and(|h| h.observer))
            .map(|(p, _)| *p)
            .collect();
        for peer in observers {
            self.send_sync(
                peer,
                SyncRequest::Report(signed.clone()),
                SyncPurpose::Report,
            );
        }
    }
}
