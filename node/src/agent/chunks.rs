//! Chunk transfer: serving chunks to peers, and running downloads through
//! the pure [`Scheduler`](crate::fetch::Scheduler).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::request_response::{self, Message};
use libp2p::PeerId;
use patchmesh_protocol::wire::{ChunkRequest, SyncRequest};
use patchmesh_protocol::{Hash, Kind, Manifest};

use super::serve_slots::SERVE_SLOTS_PER_REQUEST;
use super::{failure_text, Agent, ChunkEvent, SyncPurpose, Work};
use crate::fetch::{Scheduler, SchedulerConfig, StoreBackoff};
use crate::net::codec::ChunkReply;

/// Interval at which a downloading node requests chunk maps from same-site peers.
const HAVE_POLL: Duration = Duration::from_millis(500);

/// Peers of other sites are asked only every this many polls: their answers
/// change slowly and every question crosses the WAN.
const CROSS_SITE_POLL_EVERY: u32 = 6;

/// One payload being fetched.
pub(super) struct Download {
    pub manifest: Manifest,
    pub scheduler: Scheduler<PeerId>,
    pub have_pending: HashSet<PeerId>,
    pub last_have_poll: Option<Instant>,
    pub polls: u32,
    pub bytes_same_site: u64,
    pub bytes_cross_site: u64,
    /// When the download started, for the transfer rate in the log.
    pub started: Instant,
    /// Pause after this node failed to store a chunk (full disk, quota).
    pub store_backoff: StoreBackoff,
}

impl Agent {
    /// Rebuilds the manifest list, keyed by manifest id, and the set of
    /// chunk hashes the control API accepts.
    pub(super) fn refresh_manifests(&mut self) {
        let signed = match self.shared.meta.live_of_kind(Kind::Manifest) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!(error = %e, "cannot list manifests");
                return;
            }
        };
        self.manifests.clear();
        let mut listed = HashSet::new();
        for object in signed {
            if let Ok(manifest) = object.decode_body::<Manifest>() {
                listed.extend(manifest.chunks.iter().copied());
                self.manifests.insert(object.id(), manifest);
            }
        }
        *self
            .shared
            .listed_chunks
            .write()
            .expect("chunk list lock is never poisoned") = listed;
    }

    /// Which chunks of `payload` are stored, computed once per payload and
    /// kept up to date as chunks arrive.
    pub(super) fn held_chunks(&mut self, payload: &Hash) -> Option<&Vec<bool>> {
        if !self.held.contains_key(payload) {
            let manifest = manifest_for_payload(&self.manifests, payload)?;
            let held = manifest
                .chunks
                .iter()
                .map(|hash| self.shared.chunks.contains(hash))
                .collect();
            self.held.insert(*payload, held);
        }
        self.held.get(payload)
    }

    fn mark_held(&mut self, hash: Hash) {
        for (payload, held) in self.held.iter_mut() {
            if let Some(manifest) = manifest_for_payload(&self.manifests, payload) {
                for (index, chunk) in manifest.chunks.iter().enumerate() {
                    if *chunk == hash {
                        held[index] = true;
                    }
                }
            }
        }
    }

    /// A chunk arrived through the control API.
    pub(super) fn on_chunk_stored(&mut self, hash: Hash) {
        self.mark_held(hash);
        let payloads: Vec<Hash> = self.downloads.keys().copied().collect();
        for payload in payloads {
            let local = self.local;
            if let Some(download) = self.downloads.get_mut(&payload) {
                // A chunk written through the control API shows that the
                // disk has room again.
                download.store_backoff.resume();
                if let Some(index) = download.manifest.chunks.iter().position(|c| *c == hash) {
                    download.scheduler.on_chunk(&local, index);
                }
            }
        }
    }

    /// Starts fetching `manifest`'s payload unless it is already under way.
    pub(super) fn start_download(&mut self, manifest: &Manifest) {
        if self.downloads.contains_key(&manifest.payload_hash) {
            return;
        }
        let held: Vec<bool> = self
            .held_chunks(&manifest.payload_hash)
            .cloned()
            .unwrap_or_else(|| {
                manifest
                    .chunks
                    .iter()
                    .map(|h| self.shared.chunks.contains(h))
                    .collect()
            });
        let resumed = held.iter().filter(|h| **h).count();
        let config = SchedulerConfig {
            requests_per_peer: self.config.transfer.requests_per_peer,
            request_timeout_secs: self.config.transfer.request_timeout_secs as f64,
            max_cross_site_in_flight: self.config.transfer.wan_requests_in_flight.max(1),
            wan: self.reach.wan,
            chunk_bytes: u64::from(manifest.chunk_size),
            ..SchedulerConfig::default()
        };
        let mut scheduler = Scheduler::new(
            self.local,
            self.local.to_bytes(),
            manifest.chunks.clone(),
            &held,
            config,
            self.mono(),
        );
        self.register_peers(&mut scheduler);
        tracing::info!(patch = %manifest.patch_ref(), chunks = manifest.chunks.len(), resumed, "download started");
        self.downloads.insert(
            manifest.payload_hash,
            Download {
                manifest: manifest.clone(),
                scheduler,
                have_pending: HashSet::new(),
                last_have_poll: None,
                polls: 0,
                bytes_same_site: 0,
                bytes_cross_site: 0,
                started: Instant::now(),
                store_backoff: StoreBackoff::default(),
            },
        );
    }

    /// Polls chunk maps, retires timed-out requests and sends new ones.
    pub(super) fn tick_downloads(&mut self) {
        let now = self.mono();
        let payloads: Vec<Hash> = self.downloads.keys().copied().collect();
        for payload in payloads {
            self.poll_have(&payload);
            self.expire_requests(&payload, now);
            self.send_chunk_requests(&payload, now);
        }
    }

    fn poll_have(&mut self, payload: &Hash) {
        let same_site: HashSet<PeerId> = self
            .peers
            .keys()
            .filter(|peer| self.is_same_site(peer))
            .copied()
            .collect();
        let Some(download) = self.downloads.get_mut(payload) else {
            return;
        };
        if download.scheduler.is_complete()
            || download
                .last_have_poll
                .is_some_and(|t| t.elapsed() < HAVE_POLL)
        {
            return;
        }
        download.last_have_poll = Some(Instant::now());
        let ask_cross_site = download.polls % CROSS_SITE_POLL_EVERY == 0;
        download.polls += 1;
        let targets: Vec<PeerId> = download
            .scheduler
            .peers()
            .filter(|peer| !download.have_pending.contains(peer))
            .filter(|peer| ask_cross_site || same_site.contains(peer))
            .copied()
            .collect();
        download.have_pending.extend(targets.iter().copied());
        for peer in targets {
            self.send_sync(
                peer,
                SyncRequest::Have { payload: *payload },
                SyncPurpose::Have(*payload),
            );
        }
    }

    fn expire_requests(&mut self, payload: &Hash, now: f64) {
        let Some(download) = self.downloads.get_mut(payload) else {
            return;
        };
        for (peer, index) in download.scheduler.expired(now) {
            tracing::warn!(peer = %peer, chunk = index, "chunk request timed out");
            download.scheduler.on_failed(&peer, index);
        }
        for peer in download.scheduler.slow_peers(now) {
            let patch = download.manifest.patch_ref();
            tracing::warn!(peer = %peer, patch = %patch, "peer below the throughput floor; dropped from this download");
            download.scheduler.on_slow(&peer);
        }
    }

    /// Sends the requests the scheduler chooses for `payload`.
    pub(super) fn send_chunk_requests(&mut self, payload: &Hash, now: f64) {
        let Some(download) = self.downloads.get_mut(payload) else {
            return;
        };
        if download.store_backoff.is_paused(now) {
            return;
        }
        let requests = download.scheduler.next_requests(now);
        let mut hashes: Vec<(PeerId, usize, Hash)> = Vec::with_capacity(requests.len());
        for request in requests {
            let len = download.manifest.chunk_len(request.index);
            if request.cross_site && !self.wan_budget.try_take(len, now, &self.config.transfer) {
                // Over the WAN budget or outside its window: hand the
                // chunk back so a later tick requests it again.
                download.scheduler.on_failed(&request.peer, request.index);
                continue;
            }
            hashes.push((
                request.peer,
                request.index,
                download.manifest.chunks[request.index],
            ));
        }
        for (peer, index, hash) in hashes {
            let id = self
                .swarm
                .behaviour_mut()
                .chunk
                .send_request(&peer, ChunkRequest { hash });
            self.pending_chunks
                .insert(id, (*payload, index, peer, Instant::now()));
        }
    }

    pub(super) fn on_chunk_event(&mut self, event: ChunkEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.serve_chunk(peer, request_id, request.hash, channel),
                Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((payload, index, from, _)) = self.pending_chunks.remove(&request_id)
                    {
                        self.on_chunk_reply(payload, index, from, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((payload, index, _, _)) = self.pending_chunks.remove(&request_id) {
                    tracing::warn!(peer = %peer, chunk = index, error = %failure_text(&error), "chunk request failed");
                    if let Some(download) = self.downloads.get_mut(&payload) {
                        download.scheduler.on_failed(&peer, index);
                    }
                    if matches!(error, request_response::OutboundFailure::Io(_)) {
                        self.penalise(peer, 20, "malformed chunk response");
                        if let Some(download) = self.downloads.get_mut(&payload) {
                            download.scheduler.on_bad_chunk(&peer, index);
                        }
                    }
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.serving.finish(request_id);
                tracing::debug!(peer = %peer, error = %failure_text(&error), "chunk request from peer failed");
            }
            request_response::Event::ResponseSent { request_id, .. } => {
                self.serving.finish(request_id);
            }
        }
    }

    fn serve_chunk(
        &mut self,
        peer: PeerId,
        request_id: request_response::InboundRequestId,
        hash: Hash,
        channel: request_response::ResponseChannel<ChunkReply>,
    ) {
        let limit = self.config.transfer.requests_per_peer.max(1) * SERVE_SLOTS_PER_REQUEST;
        let serving = self.serving.count(&peer);
        if serving >= limit {
            // Each chunk being served is held in memory until the peer has
            // read it, so a peer may not keep more than `limit` of them.
            // It gets `Missing` at once and requests the chunk again after
            // its next chunk map poll.
            let rejected = self.serving.reject(peer, Instant::now());
            // One line per peer and window; the penalty lines count the rest.
            if rejected == 1 {
                tracing::warn!(peer = %peer, chunk = %hash.short(), serving, limit, "too many chunk requests from peer in flight; replied missing");
            }
            if rejected > limit {
                self.penalise(peer, 5, "chunk requests far over the limit in flight");
            }
            let _ = self
                .swarm
                .behaviour_mut()
                .chunk
                .send_response(channel, ChunkReply::Missing);
            return;
        }
        self.serving.start(request_id, peer);
        let store = self.shared.chunks.clone();
        let work = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let reply = match store.get(&hash) {
                Ok(Some(bytes)) => ChunkReply::Data(bytes),
                Ok(None) => ChunkReply::Missing,
                Err(e) => {
                    tracing::error!(peer = %peer, chunk = %hash.short(), error = %e, "cannot read chunk to serve");
                    ChunkReply::Missing
                }
            };
            let _ = work.blocking_send(Work::Serve(channel, reply));
        });
    }

    fn on_chunk_reply(&mut self, payload: Hash, index: usize, peer: PeerId, reply: ChunkReply) {
        let Some(download) = self.downloads.get_mut(&payload) else {
            return;
        };
        match reply {
            ChunkReply::Missing => {
                tracing::debug!(peer = %peer, chunk = index, "peer lacks a chunk it announced");
                download.scheduler.on_missing(&peer, index);
            }
            ChunkReply::Data(bytes) => {
                let expected = download.manifest.chunks[index];
                let store = self.shared.chunks.clone();
                let work = self.work_tx.clone();
                let len = bytes.len() as u64;
                tokio::task::spawn_blocking(move || {
                    let result = store.put(&expected, &bytes).map(|_| ()).map_err(|e| {
                        let blame = matches!(e, crate::store::ChunkError::HashMismatch { .. });
                        (e.to_string(), blame)
                    });
                    let _ = work.blocking_send(Work::Fetched {
                        payload,
                        peer,
                        index,
                        bytes: len,
                        result,
                    });
                });
            }
        }
    }

    pub(super) fn on_fetched(
        &mut self,
        payload: Hash,
        peer: PeerId,
        index: usize,
        bytes: u64,
        result: Result<(), (String, bool)>,
    ) {
        let same_site = self.is_same_site(&peer);
        let Some(download) = self.downloads.get_mut(&payload) else {
            return;
        };
        match result {
            Ok(()) => {
                download.scheduler.on_chunk(&peer, index);
                download.store_backoff.on_stored();
                if same_site {
                    download.bytes_same_site += bytes;
                } else {
                    download.bytes_cross_site += bytes;
                }
                let hash = download.manifest.chunks[index];
                self.mark_held(hash);
                let now = self.mono();
                self.send_chunk_requests(&payload, now);
                self.check_download_done(&payload);
            }
            Err((error, false)) => {
                // This node is to blame (full disk, quota), not the peer.
                download.scheduler.on_failed(&peer, index);
                let patch = download.manifest.patch_ref();
                let now = self.started.elapsed().as_secs_f64();
                match download.store_backoff.on_store_failed(now) {
                    Some(pause) => {
                        tracing::error!(peer = %peer, patch = %patch, chunk = index, error, retry_secs = pause, "cannot store fetched chunk; download paused");
                    }
                    None => {
                        tracing::debug!(peer = %peer, patch = %patch, chunk = index, error, "cannot store fetched chunk during a pause");
                    }
                }
            }
            Err((error, true)) => {
                download.scheduler.on_bad_chunk(&peer, index);
                let patch = download.manifest.patch_ref();
                tracing::warn!(peer = %peer, patch = %patch, chunk = index, error, "chunk from peer rejected; peer excluded from this download");
                self.penalise(peer, 25, "bad chunk");
                let now = self.mono();
                self.send_chunk_requests(&payload, now);
            }
        }
    }
}

/// Returns a held manifest whose payload is `payload`: the one with the
/// lowest manifest id, so every call picks the same one.
///
/// NOTE: chunk maps and downloads are keyed by payload, so two manifests
/// that cut one payload into chunks of different sizes share the chunk map
/// and the download of the manifest returned here.
fn manifest_for_payload<'a>(
    manifests: &'a std::collections::BTreeMap<Hash, Manifest>,
    payload: &Hash,
) -> Option<&'a Manifest> {
    manifests.values().find(|m| m.payload_hash == *payload)
}

/// Token bucket for chunk bytes taken from other sites, with optional UTC
/// time windows.
#[derive(Debug, Default)]
pub(super) struct WanBudget {
    tokens: f64,
    last: f64,
}

impl WanBudget {
    /// Takes `bytes` from the budget at monotonic time `now` (seconds);
    /// false when the cap or the window forbids it now. The bucket holds at
    /// most two seconds of the rate, so an idle link cannot save up a burst.
    pub fn try_take(
        &mut self,
        bytes: u64,
        now: f64,
        config: &crate::config::TransferConfig,
    ) -> bool {
        if !config.wan_windows.is_empty()
            && !in_windows(&config.wan_windows, jiff::Timestamp::now())
        {
            return false;
        }
        let rate = config.wan_bytes_per_sec as f64;
        if rate <= 0.0 {
            return true;
        }
        let capacity = (rate * 2.0).max(bytes as f64);
        self.tokens = (self.tokens + (now - self.last).max(0.0) * rate).min(capacity);
        self.last = now;
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Whether `now` (UTC) falls in one of the `HH:MM-HH:MM` ranges; a range
/// whose end is before its start crosses midnight. Unparsable ranges never
/// match.
pub(super) fn in_windows(windows: &[String], now: jiff::Timestamp) -> bool {
    let time = now.to_zoned(jiff::tz::TimeZone::UTC).time();
    let minute = i32::from(time.hour()) * 60 + i32::from(time.minute());
    windows.iter().any(|window| {
        let Some((start, end)) = window.split_once('-') else {
            return false;
        };
        let parse = |text: &str| {
            patchmesh_protocol::policy::parse_clock_time(text.trim())
                .map(|(h, m)| i32::from(h) * 60 + i32::from(m))
        };
        match (parse(start), parse(end)) {
            (Some(start), Some(end)) if start <= end => (start..end).contains(&minute),
            (Some(start), Some(end)) => minute >= start || minute < end,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransferConfig;

    #[test]
    fn budget_caps_bytes_per_second() {
        let config = TransferConfig {
            wan_bytes_per_sec: 1000,
            ..TransferConfig::default()
        };
        let mut budget = WanBudget::default();
        assert!(budget.try_take(1000, 1.0, &config));
        assert!(!budget.try_take(1000, 1.0, &config));
        assert!(budget.try_take(1000, 2.0, &config));
    }

    #[test]
    fn no_cap_means_always() {
        let mut budget = WanBudget::default();
        assert!(budget.try_take(u64::MAX / 2, 0.0, &TransferConfig::default()));
    }

    #[test]
    fn windows_cross_midnight() {
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        let windows = vec!["22:00-06:00".to_string()];
        assert!(in_windows(&windows, at("2027-01-01T23:30:00Z")));
        assert!(in_windows(&windows, at("2027-01-01T05:59:00Z")));
        assert!(!in_windows(&windows, at("2027-01-01T12:00:00Z")));
    }
}
