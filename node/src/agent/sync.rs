//! The sync protocol: hellos, anti-entropy (summary then fetch of missing
//! objects), chunk maps, peer exchange and report delivery.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::request_response::{self, Message};
use libp2p::PeerId;
use patchmesh_protocol::wire::{bitmap, ObjectSummary, SyncRequest, SyncResponse};
use patchmesh_protocol::{limits, Hash, Kind, SignedReport};

use super::sync_queue::{Admission, MAX_WAITING_PER_PEER};
use super::{failure_text, Agent, SyncEvent, SyncPurpose};
use crate::net::codec::SyncInbound;
use crate::store::StoredReport;
use crate::trust::Outcome;

/// Most objects asked for in one fetch request.
const GET_BATCH: usize = 64;

/// Seconds between anti-entropy rounds with one random peer.
const ANTI_ENTROPY_SECS: u64 = 30;

impl Agent {
    /// Sends `request` to `peer`, or queues it while
    /// `limits::MAX_SYNC_REQUESTS_IN_FLIGHT` requests to that peer are in
    /// flight.
    pub(super) fn send_sync(&mut self, peer: PeerId, request: SyncRequest, purpose: SyncPurpose) {
        match self.sync_queue.admit(peer, (request, purpose)) {
            Admission::Send((request, purpose)) => self.dispatch_sync(peer, request, purpose),
            Admission::Queued => {}
            Admission::Full((_, purpose)) => {
                tracing::warn!(peer = %peer, purpose = ?purpose, waiting = MAX_WAITING_PER_PEER, "sync request dropped: the queue of requests for this peer is full");
                self.on_sync_failed(peer, purpose);
            }
        }
    }

    fn dispatch_sync(&mut self, peer: PeerId, request: SyncRequest, purpose: SyncPurpose) {
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, SyncInbound::Request(request));
        self.pending_sync.insert(id, (peer, purpose));
    }

    /// Frees the slot of a sync request to `peer` that ended and sends the
    /// next waiting one.
    fn on_sync_ended(&mut self, peer: PeerId) {
        if let Some((request, purpose)) = self.sync_queue.end(peer) {
            self.dispatch_sync(peer, request, purpose);
        }
    }

    /// Clears the pending mark of a sync request that failed or was never
    /// sent, so the request can be made again.
    fn on_sync_failed(&mut self, peer: PeerId, purpose: SyncPurpose) {
        if let SyncPurpose::Have(payload) = purpose {
            if let Some(download) = self.downloads.get_mut(&payload) {
                download.have_pending.remove(&peer);
            }
        }
    }

    /// Drops the sync requests still waiting for a peer whose last
    /// connection closed.
    pub(super) fn drop_queued_sync(&mut self, peer: PeerId) {
        let dropped = self.sync_queue.drain_waiting(peer);
        if !dropped.is_empty() {
            tracing::debug!(peer = %peer, count = dropped.len(), "queued sync requests dropped: peer disconnected");
        }
        for (_, purpose) in dropped {
            self.on_sync_failed(peer, purpose);
        }
    }

    pub(super) fn on_sync_event(&mut self, event: SyncEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request: SyncInbound::Malformed(reason),
                    ..
                } => {
                    // Dropping the channel closes the stream unanswered.
                    tracing::warn!(peer = %peer, error = %reason, "malformed sync request from peer; stream closed");
                    self.penalise(peer, 5, "malformed sync frame");
                }
                Message::Request {
                    request: SyncInbound::Request(request),
                    channel,
                    ..
                } => {
                    let response = self.answer_sync(peer, request);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, purpose)) = self.pending_sync.remove(&request_id) {
                        self.on_sync_ended(peer);
                        self.on_sync_response(peer, purpose, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let purpose = self.pending_sync.remove(&request_id).map(|(_, p)| p);
                tracing::debug!(peer = %peer, purpose = ?purpose, error = %failure_text(&error), "sync request failed");
                if let Some(purpose) = purpose {
                    self.on_sync_ended(peer);
                    self.on_sync_failed(peer, purpose);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::warn!(peer = %peer, error = %failure_text(&error), "sync request from peer failed; stream closed");
                // NOTE: a request frame that stalls until the 30 s timeout
                // never gets here (request-response 0.30 only logs it at
                // debug), so holding a frame half sent costs a peer nothing.
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    self.penalise(peer, 5, "malformed sync frame");
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer_sync(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        match request {
            SyncRequest::Hello(hello) => {
                self.on_hello(peer, hello);
                SyncResponse::Hello(self.hello())
            }
            SyncRequest::Summary => SyncResponse::Summary(self.summary()),
            SyncRequest::Get(ids) => {
                let mut objects = Vec::new();
                for id in ids.iter().take(limits::MAX_SUMMARY_ENTRIES) {
                    if let Some(bytes) = self.object_bytes(id) {
                        objects.push(bytes);
                    }
                }
                SyncResponse::Objects(objects)
            }
            SyncRequest::Have { payload } => SyncResponse::Holding {
                have: self.have_bitmap(&payload),
                fetching: self
                    .downloads
                    .get(&payload)
                    .is_some_and(|d| d.scheduler.fetching_cross_site()),
            },
            SyncRequest::Report(bytes) => self.accept_report(peer, &bytes),
            SyncRequest::Peers => SyncResponse::Peers(self.peer_records()),
            SyncRequest::Reports if self.config.observer => {
                SyncResponse::Reports(self.collected_reports())
            }
            SyncRequest::Reports => SyncResponse::Refused("this node is not an observer".into()),
            SyncRequest::Inventory(bytes) => self.accept_inventory(peer, &bytes),
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, purpose: SyncPurpose, response: SyncResponse) {
        match (purpose, response) {
            (SyncPurpose::Hello, SyncResponse::Hello(hello)) => self.on_hello(peer, hello),
            (SyncPurpose::Summary, SyncResponse::Summary(entries)) => {
                self.on_summary(peer, entries)
            }
            (SyncPurpose::Get, SyncResponse::Objects(objects)) => self.on_objects(peer, objects),
            (SyncPurpose::Have(payload), SyncResponse::Have(bits)) => {
                if let Some(download) = self.downloads.get_mut(&payload) {
                    download.have_pending.remove(&peer);
                    download.scheduler.set_have(&peer, bits);
                }
            }
            (SyncPurpose::Have(payload), SyncResponse::Holding { have, fetching }) => {
                if let Some(download) = self.downloads.get_mut(&payload) {
                    download.have_pending.remove(&peer);
                    download.scheduler.set_have(&peer, have);
                    download.scheduler.set_fetching(&peer, fetching);
                }
            }
            (SyncPurpose::Peers, SyncResponse::Peers(records)) => self.on_peer_records(records),
            (SyncPurpose::Report, SyncResponse::ReportAccepted) => {}
            (SyncPurpose::Reports, SyncResponse::Reports(reports)) => self.absorb_reports(&reports),
            (SyncPurpose::Inventory, SyncResponse::InventoryAccepted) => {}
            (SyncPurpose::Inventory, SyncResponse::Refused(reason)) => {
                tracing::debug!(peer = %peer, reason, "observer refused inventory update");
                self.on_inventory_refused(&reason);
            }
            (purpose, SyncResponse::Refused(reason)) => {
                tracing::debug!(peer = %peer, purpose = ?purpose, reason, "sync request refused");
            }
            (purpose, _) => {
                tracing::warn!(peer = %peer, purpose = ?purpose, "sync response does not match its request");
                self.penalise(peer, 5, "mismatched sync response");
            }
        }
    }

    /// Every live object and root version, capped at the summary limit.
    fn summary(&self) -> Vec<ObjectSummary> {
        let mut entries = Vec::new();
        if let Ok(roots) = self.shared.meta.roots() {
            for signed in roots {
                if let Ok(root) = signed.decode_body::<patchmesh_protocol::Root>() {
                    entries.push(ObjectSummary {
                        id: signed.id(),
                        kind: Kind::Root,
                        slot: "root".into(),
                        revision: root.version,
                    });
                }
            }
        }
        match self.shared.meta.live_objects() {
            Ok(objects) => entries.extend(objects.into_iter().map(|(summary, _)| summary)),
            Err(e) => tracing::error!(error = %e, "cannot list objects for a summary"),
        }
        entries.truncate(limits::MAX_SUMMARY_ENTRIES);
        entries
    }

    fn object_bytes(&self, id: &Hash) -> Option<Vec<u8>> {
        if let Ok(Some(signed)) = self.shared.meta.object(id) {
            return Some(signed.to_bytes());
        }
        self.shared
            .meta
            .roots()
            .ok()?
            .into_iter()
            .find(|root| root.id() == *id)
            .map(|root| root.to_bytes())
    }

    /// Asks for the objects of a peer's summary that are newer than what
    /// this node holds.
    ///
    /// Roots come first and alone: one batch of the next versions in order,
    /// and the summary after they are stored requests the next batch. So
    /// objects signed under a newer root are fetched only once that root is
    /// trusted, and a long chain is walked one batch per exchange. A root
    /// past the hop limit is fetched (one, with the other objects) only so
    /// that admission rejects and logs it and blames the peer.
    fn on_summary(&mut self, peer: PeerId, mut entries: Vec<ObjectSummary>) {
        entries.truncate(limits::MAX_SUMMARY_ENTRIES);
        let root_version = self.trust.root().version;
        let max_root_version = self.trust.max_root_version();
        entries.sort_by_key(|e| (e.kind != Kind::Root, e.revision));
        let walkable: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.kind == Kind::Root && e.revision > root_version && e.revision <= max_root_version
            })
            .map(|e| e.id)
            .take(GET_BATCH)
            .collect();
        if !walkable.is_empty() {
            self.send_sync(peer, SyncRequest::Get(walkable), SyncPurpose::Get);
            return;
        }
        let mut wanted = Vec::new();
        let mut seen = HashSet::new();
        let mut past_limit = false;
        for entry in entries {
            if !seen.insert(entry.id) {
                continue;
            }
            let newer = if entry.kind == Kind::Root {
                let first_past_limit = !past_limit && entry.revision > max_root_version;
                past_limit |= first_past_limit;
                first_past_limit
            } else {
                match self.shared.meta.slot(entry.kind, &entry.slot) {
                    Ok(Some(held)) => entry.revision > held.revision,
                    Ok(None) => true,
                    Err(_) => false,
                }
            };
            if newer {
                wanted.push(entry.id);
            }
        }
        for batch in wanted.chunks(GET_BATCH) {
            self.send_sync(peer, SyncRequest::Get(batch.to_vec()), SyncPurpose::Get);
        }
    }

    fn on_objects(&mut self, peer: PeerId, objects: Vec<Vec<u8>>) {
        let now = self.shared.clock.now();
        let clock = self.shared.clock.name();
        let mut stored = 0;
        for bytes in objects.iter().take(limits::MAX_SUMMARY_ENTRIES) {
            match self.trust.admit_bytes(bytes, now, clock) {
                Ok(admitted) if admitted.outcome == Outcome::Stored => {
                    tracing::info!(peer = %peer, kind = %admitted.kind, slot = %admitted.slot, revision = admitted.revision, "object received by anti-entropy");
                    stored += 1;
                    self.after_admit(&admitted);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(peer = %peer, error = %error, "rejected object from anti-entropy");
                    if error.blames_sender() {
                        self.penalise(peer, 10, "invalid object in anti-entropy");
                    }
                }
            }
        }
        if stored > 0 {
            // A root rotation may have made more of the peer's objects valid.
            self.send_sync(peer, SyncRequest::Summary, SyncPurpose::Summary);
        }
    }

    /// Bitmap of stored chunks of `payload`; empty if unknown.
    pub(super) fn have_bitmap(&mut self, payload: &Hash) -> Vec<u8> {
        let Some(held) = self.held_chunks(payload) else {
            return Vec::new();
        };
        bitmap::from_fn(held.len(), |i| held[i])
    }

    /// Stores a report if this node is an observer and the report verifies.
    fn accept_report(&mut self, peer: PeerId, bytes: &[u8]) -> SyncResponse {
        if !self.config.observer {
            return SyncResponse::Refused("this node is not an observer".into());
        }
        match SignedReport::verify_bytes(bytes) {
            Ok((_, report)) => {
                self.store_report(&report.peer, report.seq, bytes.to_vec());
                SyncResponse::ReportAccepted
            }
            Err(error) => {
                tracing::warn!(peer = %peer, error = %error, "rejected node report");
                self.penalise(peer, 10, "invalid node report");
                SyncResponse::Refused(error.to_string())
            }
        }
    }

    pub(super) fn store_report(&mut self, reporter: &str, seq: u64, signed: Vec<u8>) {
        if let Ok((_, report)) = SignedReport::verify_bytes(&signed) {
            let events = crate::inventory::history::report_events(
                self.fleet_reports.get(&report.peer),
                &report,
            );
            self.shared
                .history
                .lock()
                .expect("history lock is never poisoned")
                .extend(events);
            let newer = self
                .fleet_reports
                .get(&report.peer)
                .is_none_or(|held| held.seq < report.seq);
            if newer {
                self.fleet_reports.insert(report.peer.clone(), report);
            }
        }
        let record = StoredReport {
            seq,
            received: self.shared.clock.now().to_string(),
            signed,
        };
        if let Err(e) = self.shared.meta.put_report(reporter, seq, &record) {
            tracing::error!(reporter, error = %e, "cannot store node report");
        }
    }

    /// Runs a summary exchange with one connected peer now and then, so
    /// objects missed by gossip arrive even without reconnecting.
    pub(super) fn maybe_anti_entropy(&mut self) {
        let due = self.last_anti_entropy.elapsed() >= Duration::from_secs(ANTI_ENTROPY_SECS);
        if !due || self.peers.is_empty() {
            return;
        }
        self.last_anti_entropy = std::time::Instant::now();
        let index = rand::random::<usize>() % self.peers.len();
        if let Some(peer) = self.peers.keys().nth(index).copied() {
            self.send_sync(peer, SyncRequest::Summary, SyncPurpose::Summary);
        }
    }
}
