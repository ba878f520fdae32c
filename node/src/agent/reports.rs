//! Signed status reports: built from the rollout tracks, signed with the
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
                .tracks
                .values()
                .map(|entry| {
                    let track = &entry.track;
                    let data = self
                        .patch_data
                        .get(&track.patch.to_string())
                        .cloned()
                        .unwrap_or_default();
                    PatchStatus {
                        patch: track.patch.clone(),
                        policy: track.policy.clone(),
                        state: track.state,
                        since: track.since,
                        started: track.started,
                        detail: describe_wait(&track.detail, &entry.reason),
                        payload_hash: data.payload_hash,
                        bytes_same_site: data.bytes_same_site,
                        bytes_cross_site: data.bytes_cross_site,
                    }
                })
                .collect(),
            stale: self
                .shared
                .info
                .read()
                .expect("node info lock is never poisoned")
                .stale
                .clone(),
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
        // Every node keeps its own latest report, so its status view shows
        // at least itself; observers keep everyone's.
        self.store_report(&report.peer, report.seq, signed.clone());
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

/// How often a node with tracks asks a connected observer for the fleet's
/// reports.
const FLEET_POLL: Duration = Duration::from_secs(5);

impl Agent {
    /// Asks one connected observer for the reports it collected, so wave
    /// gates see the fleet. Observers read their own store instead.
    pub(super) fn maybe_poll_fleet(&mut self) {
        // Until the first reports arrive, ask every second: wave gates wait
        // for them.
        let every = if self.fleet_known {
            FLEET_POLL
        } else {
            Duration::from_secs(1)
        };
        if self.last_fleet_poll.elapsed() < every || self.tracks.is_empty() {
            return;
        }
        self.last_fleet_poll = std::time::Instant::now();
        if self.config.observer {
            self.load_fleet_from_store();
            return;
        }
        let observer = self
            .peers
            .iter()
            .find(|(_, e)| e.hello.as_ref().is_some_and(|h| h.observer))
            .map(|(p, _)| *p);
        if let Some(peer) = observer {
            self.send_sync(peer, SyncRequest::Reports, SyncPurpose::Reports);
        }
    }

    fn load_fleet_from_store(&mut self) {
        let Ok(stored) = self.shared.meta.reports() else {
            return;
        };
        let signed: Vec<Vec<u8>> = stored.into_iter().map(|r| r.signed).collect();
        self.absorb_reports(&signed);
    }

    /// Verifies signed reports and keeps the newest per node.
    pub(super) fn absorb_reports(&mut self, signed: &[Vec<u8>]) {
        self.fleet_known = true;
        for bytes in signed
            .iter()
            .take(patchmesh_protocol::limits::MAX_REPORTS_PER_REPLY)
        {
            match SignedReport::verify_bytes(bytes) {
                Ok((_, report)) => {
                    let newer = self
                        .fleet_reports
                        .get(&report.peer)
                        .is_none_or(|held| held.seq < report.seq);
                    if newer {
                        self.fleet_reports.insert(report.peer.clone(), report);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignored a report that does not verify"),
            }
        }
    }

    /// Signed reports this observer holds, for a node that asks.
    pub(super) fn collected_reports(&self) -> Vec<Vec<u8>> {
        self.shared
            .meta
            .reports()
            .unwrap_or_default()
            .into_iter()
            .take(patchmesh_protocol::limits::MAX_REPORTS_PER_REPLY)
            .map(|r| r.signed)
            .collect()
    }
}

/// Report detail of a track: its last transition's detail and, while it
/// waits, why.
fn describe_wait(detail: &str, reason: &str) -> String {
    let reason = reason.replace('_', " ");
    // Done, stopped (rolled back or failed) and in-flight tracks are not
    // waiting for anything an admin could change.
    let waiting = !matches!(reason.as_str(), "" | "done" | "stopped" | "in flight");
    match (detail.is_empty(), waiting) {
        (true, _) => reason,
        (false, true) if !detail.contains(&reason) => format!("{detail}; waiting: {reason}"),
        _ => detail.to_string(),
    }
}
