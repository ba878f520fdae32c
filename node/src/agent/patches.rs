//! Per-patch work on this node, driven by the rollout engine.
//!
//! The agent keeps one [`Track`] per (policy, patch) in sled. Every second,
//! and whenever an input changes, it steps each track with the engine,
//! persists the result, then carries out the returned actions (download,
//! install, health check, rollback, notice, reboot) in the background and
//! feeds their results back as events. After a restart, tracks with an
//! action in flight get [`Event::Restarted`], so finished steps are never
//! repeated.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::policy::Membership;
use patchmesh_protocol::{Body, Hash, Kind, Manifest, PatchRef, PatchState, Policy};
use serde::{Deserialize, Serialize};

use super::{Agent, Work};
use crate::install::{self, InstallRecord};
use crate::rollout::{
    self, Action, Event, FleetView, HostResult, Inputs, Orders, OtherTrack, PatchInfo, Track,
};

/// What the node keeps per patch, whichever policies name it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PatchData {
    /// Payload hash of the manifest in use.
    pub payload_hash: Option<Hash>,
    /// Chunk bytes from peers of the same site.
    pub bytes_same_site: u64,
    /// Chunk bytes from peers of other sites.
    pub bytes_cross_site: u64,
    /// What the installer did, kept for rollback.
    pub install: Option<InstallRecord>,
}

/// A track with when it next needs a step.
#[derive(Clone, Debug)]
pub(super) struct TrackEntry {
    pub track: Track,
    pub wake: Option<Timestamp>,
    /// Why the track waits, from its last step, shown in reports.
    pub reason: String,
}

fn track_key(policy: &str, patch: &PatchRef) -> String {
    format!("track/{policy}/{patch}")
}

fn data_key(patch: &PatchRef) -> String {
    format!("data/{patch}")
}

/// Stored record in the `patches` tree: either a track or per-patch data.
#[derive(Serialize, Deserialize)]
enum StoredRecord {
    Track(Track),
    Data(PatchData),
}

/// Everything the engine reads besides the track, gathered once per round.
struct Round {
    now: Timestamp,
    member: Membership,
    policies: BTreeMap<String, Policy>,
    manifests: BTreeMap<PatchRef, Manifest>,
    orders: Orders,
}

impl Agent {
    /// Loads persisted tracks and the manifest index at start, and tells
    /// tracks whose action was cut short that the node restarted.
    pub(super) fn load_state(&mut self) -> anyhow::Result<()> {
        self.refresh_manifests();
        let mut restarted = Vec::new();
        for (key, record) in self.shared.meta.patch_records::<StoredRecord>()? {
            match record {
                StoredRecord::Track(track) => {
                    tracing::info!(patch = %track.patch, policy = %track.policy, state = %track.state, in_flight = ?track.in_flight, "resuming rollout");
                    if track.in_flight.is_some() {
                        restarted.push(key.clone());
                    }
                    self.tracks.insert(
                        key,
                        TrackEntry {
                            track,
                            wake: None,
                            reason: String::new(),
                        },
                    );
                }
                StoredRecord::Data(data) => {
                    let patch = key.trim_start_matches("data/").to_string();
                    self.patch_data.insert(patch, data);
                }
            }
        }
        for key in restarted {
            self.step_track(&key, Event::Restarted);
        }
        self.plan();
        Ok(())
    }

    fn persist_track(&mut self, key: &str) {
        let Some(entry) = self.tracks.get(key) else {
            return;
        };
        let record = StoredRecord::Track(entry.track.clone());
        if let Err(e) = self.shared.meta.put_patch_record(key, &record) {
            tracing::error!(patch = %entry.track.patch, policy = %entry.track.policy, error = %e, "cannot persist rollout state");
        }
        self.report_dirty = true;
    }

    pub(super) fn data_mut(&mut self, patch: &PatchRef) -> &mut PatchData {
        self.patch_data.entry(patch.to_string()).or_default()
    }

    pub(super) fn persist_data(&mut self, patch: &PatchRef) {
        let data = self
            .patch_data
            .get(&patch.to_string())
            .cloned()
            .unwrap_or_default();
        if let Err(e) = self
            .shared
            .meta
            .put_patch_record(&data_key(patch), &StoredRecord::Data(data))
        {
            tracing::error!(patch = %patch, error = %e, "cannot persist patch data");
        }
    }

    /// Bodies of every live object of `kind` that decodes as `B`.
    fn live_bodies<B: Body>(&self, kind: Kind) -> Vec<B> {
        self.shared
            .meta
            .live_of_kind(kind)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.decode_body::<B>().ok())
            .collect()
    }

    /// This node's membership: from its live enrollment certificate when it
    /// has one, otherwise from its config.
    pub(super) fn current_membership(&self, now: Timestamp) -> Membership {
        let revocations: Vec<Revocation> = self.live_bodies(Kind::Revocation);
        let peer = self.local.to_base58();
        self.live_bodies::<Enrollment>(Kind::Enrollment)
            .into_iter()
            .find(|e| e.peer == peer && e.is_live(&revocations, now))
            .map(|e| e.membership())
            .unwrap_or_else(|| self.membership())
    }

    /// Hosts known from reports, with membership from their enrollment
    /// certificates where held.
    fn fleet_view(
        &self,
        now: Timestamp,
    ) -> BTreeMap<String, (Membership, Vec<patchmesh_protocol::PatchStatus>)> {
        let revocations: Vec<Revocation> = self.live_bodies(Kind::Revocation);
        let enrollments: BTreeMap<String, Membership> = self
            .live_bodies::<Enrollment>(Kind::Enrollment)
            .into_iter()
            .filter(|e| e.is_live(&revocations, now))
            .map(|e| (e.peer.clone(), e.membership()))
            .collect();
        let mut hosts = BTreeMap::new();
        for report in self.fleet_reports.values() {
            let member = enrollments
                .get(&report.peer)
                .cloned()
                .unwrap_or(Membership {
                    host: report.host.clone(),
                    site: report.site.clone(),
                    groups: report.groups.clone(),
                });
            hosts.insert(report.peer.clone(), (member, report.patches.clone()));
        }
        hosts
    }

    fn gather(&self) -> Round {
        let clock_now = self.shared.clock.now();
        let now = self.trust.effective_now(clock_now);
        let member = self.current_membership(now);
        let policies = self
            .live_bodies::<Policy>(Kind::Policy)
            .into_iter()
            .filter(|p| p.expires > now)
            .map(|p| (p.id.clone(), p))
            .collect();
        let manifests = self
            .manifests
            .values()
            .filter(|m| m.expires > now)
            .map(|m| (m.patch_ref(), m.clone()))
            .collect();
        let orders = Orders {
            approvals: self.live_bodies::<Approval>(Kind::Approval),
            halts: self.live_bodies::<Halt>(Kind::Halt),
            resumes: self.live_bodies::<Resume>(Kind::Resume),
            rollbacks: self.live_bodies::<RollbackOrder>(Kind::Rollback),
        };
        Round {
            now: clock_now,
            member,
            policies,
            manifests,
            orders,
        }
    }

    /// Fleet view narrowed to one patch: each host's state of it.
    fn fleet_for(&self, patch: &PatchRef, now: Timestamp) -> FleetView {
        let mut view = FleetView::default();
        for (_, (member, patches)) in self.fleet_view(now) {
            let status = patches.iter().find(|s| &s.patch == patch);
            view.hosts.push(HostResult {
                member,
                state: status.map(|s| s.state),
                since: status.map(|s| s.since),
            });
        }
        view
    }

    /// Creates tracks for new (policy, patch) pairs and steps every track
    /// whose wake time passed.
    pub(super) fn plan(&mut self) {
        let round = self.gather();

        // New pairs: explicit patches, and every held manifest at or above
        // the policy's minimum severity.
        for policy in round.policies.values() {
            if !policy.targets.matches(&round.member) {
                continue;
            }
            for manifest in round.manifests.values() {
                let patch = manifest.patch_ref();
                if !rollout::targeting::selects(policy, &patch, manifest.severity) {
                    continue;
                }
                // Severity-selected patches are tracked only where they
                // apply; listed patches always get a track, whose reason
                // then shows why nothing happens.
                // A node without a package inventory cannot tell whether a
                // patch chosen by severity alone is missing, so it takes
                // only patches the policy lists by name.
                if !policy.content.patches.contains(&patch)
                    && self.applies_by_inventory(manifest, &round) != Some(true)
                {
                    continue;
                }
                let key = track_key(&policy.id, &patch);
                if !self.tracks.contains_key(&key) {
                    tracing::info!(patch = %patch, policy = %policy.id, "patch targets this node");
                    if let Some(reason) = self.platform_mismatch(manifest) {
                        tracing::warn!(patch = %patch, policy = %policy.id, reason, "patch is for another platform; it will not be installed here");
                    }
                    let track = Track::new(&policy.id, patch, round.now);
                    self.tracks.insert(
                        key.clone(),
                        TrackEntry {
                            track,
                            wake: None,
                            reason: String::new(),
                        },
                    );
                    self.persist_track(&key);
                }
            }
        }

        let keys: Vec<String> = self.tracks.keys().cloned().collect();
        for key in keys {
            let due = self.tracks[&key].wake.is_none_or(|wake| wake <= round.now);
            if due {
                self.step_with(&key, Event::Tick, &round);
            }
        }
        self.apply_host_settings(&round);
    }

    /// Whether `manifest` applies to this machine and is missing here, by
    /// the latest package inventory; `None` without one.
    fn applies_by_inventory(&self, manifest: &Manifest, round: &Round) -> Option<bool> {
        if self.config.inventory.adapter == crate::inventory::AdapterKind::None {
            // Without a package list the node still has its OS facts and
            // architecture, so a patch for another platform is never installed.
            return self.platform_mismatch(manifest).map(|_| false);
        }
        let Some(inventory) = self.inventory.as_ref() else {
            return self.platform_mismatch(manifest).map(|_| false);
        };
        let verdicts =
            crate::inventory::applicability::evaluate_all(round.manifests.values(), inventory);
        match verdicts.get(&manifest.patch_ref()) {
            Some(Ok(verdict)) => Some(verdict.needs_install()),
            Some(Err(e)) => {
                tracing::warn!(patch = %manifest.patch_ref(), error = %e, "cannot decide applicability; treating the patch as applicable");
                Some(true)
            }
            None => None,
        }
    }

    /// Returns why `manifest` is for another platform than this machine's, judged
    /// by the latest inventory's OS facts, or before the first inventory by
    /// the configured or built-in architecture alone.
    fn platform_mismatch(&self, manifest: &Manifest) -> Option<String> {
        let (os, arch) = match &self.inventory {
            Some(inventory) => (Some(inventory.os.id.as_str()), inventory.os.arch.clone()),
            None if self.config.inventory.arch.is_empty() => {
                (None, crate::inventory::system::debian_arch())
            }
            None => (None, self.config.inventory.arch.clone()),
        };
        crate::inventory::applicability::platform_mismatch(&manifest.applies_to, os, &arch)
    }

    /// Whether the engine should treat `manifest` as applicable: by the
    /// inventory when there is one, otherwise yes, since the admin listed
    /// the patch (patches chosen by severity alone need an inventory, see
    /// [`Agent::plan`]).
    fn applies(&self, manifest: &Manifest, round: &Round) -> bool {
        self.applies_by_inventory(manifest, round).unwrap_or(true)
    }

    /// Makes every track due for a step and plans: a policy, order,
    /// manifest or report changed.
    pub(super) fn inputs_changed(&mut self) {
        for entry in self.tracks.values_mut() {
            entry.wake = None;
        }
        self.plan();
    }

    /// Steps one track with `event` now.
    pub(super) fn step_track(&mut self, key: &str, event: Event) {
        let round = self.gather();
        self.step_with(key, event, &round);
    }

    fn step_with(&mut self, key: &str, event: Event, round: &Round) {
        let Some(entry) = self.tracks.get(key) else {
            return;
        };
        let track = entry.track.clone();
        let (Some(policy), Some(manifest)) = (
            round.policies.get(&track.policy),
            round.manifests.get(&track.patch),
        ) else {
            // Policy or manifest expired or not held: nothing moves.
            return;
        };
        if !policy
            .content
            .accepts_manifest(&track.patch, manifest.revision)
        {
            self.hold_for_manifest_revision(key, policy, manifest);
            return;
        }
        if policy.waves.len() > 1 && !self.fleet_known {
            // Until an observer's reports arrived, every earlier wave would
            // look empty and so passed.
            if let Some(entry) = self.tracks.get_mut(key) {
                entry.reason = "waiting_for_fleet_reports".into();
            }
            return;
        }
        let info = PatchInfo {
            patch: track.patch.clone(),
            severity: manifest.severity,
            reboot_required: manifest.reboot_required,
            published: manifest.issued,
            applies: self.applies(manifest, round),
        };
        let others: Vec<OtherTrack> = self
            .tracks
            .iter()
            .filter(|(k, e)| k.as_str() != key && e.track.patch == track.patch)
            .map(|(_, e)| OtherTrack {
                policy: e.track.policy.clone(),
                state: e.track.state,
            })
            .collect();
        let fleet = self.fleet_for(&track.patch, round.now);
        let inputs = Inputs {
            policy,
            patch: &info,
            member: &round.member,
            orders: &round.orders,
            fleet: &fleet,
            others: &others,
        };
        let step = rollout::step(&track, &inputs, event, round.now);
        let changed = step.track != track;
        let manifest = manifest.clone();
        let policy = policy.clone();
        if let Some(entry) = self.tracks.get_mut(key) {
            entry.track = step.track;
            entry.reason = describe(&step.reason);
            entry.wake = Some(
                step.wake
                    .unwrap_or(round.now + jiff::SignedDuration::from_secs(5))
                    .min(round.now + jiff::SignedDuration::from_secs(5)),
            );
        }
        if changed {
            self.persist_track(key);
        }
        for action in step.actions {
            self.run_action(key, action, &manifest, &policy);
        }
    }

    /// Keeps a track still while the held manifest is older than the
    /// revision its policy pins (a superseded manifest served with a newer
    /// policy), and logs that once per track and held revision.
    fn hold_for_manifest_revision(&mut self, key: &str, policy: &Policy, manifest: &Manifest) {
        let patch = manifest.patch_ref();
        let required = policy
            .content
            .manifest_revisions
            .get(&patch)
            .copied()
            .unwrap_or_default();
        let reason = format!(
            "waiting_for_manifest_revision_{required}_(held_revision_{})",
            manifest.revision
        );
        let Some(entry) = self.tracks.get_mut(key) else {
            return;
        };
        if entry.reason != reason {
            tracing::warn!(patch = %patch, policy = %policy.id, held_revision = manifest.revision, required_revision = required, "held manifest is older than the revision the policy pins; not acting on it until a newer manifest arrives");
            entry.reason = reason;
            self.report_dirty = true;
        }
    }

    fn run_action(&mut self, key: &str, action: Action, manifest: &Manifest, policy: &Policy) {
        let key = key.to_string();
        match action {
            Action::Download => self.begin_download(&key, manifest),
            Action::Install { retry } => self.spawn_install(key, manifest.clone(), retry),
            Action::HealthCheck {
                command,
                timeout_secs,
            } => {
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(300));
                let work = self.work_tx.clone();
                tokio::spawn(async move {
                    let event = match install::run_command(&command, None, timeout).await {
                        Ok(_) => Event::HealthPassed,
                        Err(e) => Event::HealthFailed {
                            error: e.to_string(),
                        },
                    };
                    let _ = work.send(Work::Event(key, event, None)).await;
                });
            }
            Action::RollBack { reason } => {
                tracing::warn!(patch = %manifest.patch_ref(), policy = %policy.id, reason = ?reason, "rolling back");
                let record = self
                    .patch_data
                    .get(&manifest.patch_ref().to_string())
                    .and_then(|d| d.install.clone())
                    .unwrap_or_default();
                let payload = self.shared.chunks.payload_path(&manifest.payload_hash);
                let manifest = manifest.clone();
                let work = self.work_tx.clone();
                let context = self.install_context(&manifest);
                tokio::spawn(async move {
                    let payload = payload.exists().then_some(payload);
                    let rolled_back =
                        install::rollback(&manifest, payload.as_deref(), &record, &context).await;
                    let (event, record) = match rolled_back {
                        Ok(record) => (Event::RollbackSucceeded, Some(record)),
                        Err(e) => {
                            let error = e.to_string();
                            (Event::RollbackFailed { error }, None)
                        }
                    };
                    let _ = work.send(Work::Event(key, event, record)).await;
                });
            }
            Action::NotifyUser { message, reboot_at } => {
                tracing::info!(patch = %manifest.patch_ref(), reboot_at = %reboot_at, "notifying user of reboot");
                if let Some(command) = self.config.commands.notify.clone() {
                    let text = format!("{message} (at {reboot_at})");
                    self.spawn_machine_command(
                        "notify",
                        command.replace("{message}", &shell_quote(&text)),
                    );
                }
            }
            Action::Reboot => {
                tracing::info!(patch = %manifest.patch_ref(), "rebooting");
                let command = self.config.commands.reboot.clone();
                let work = self.work_tx.clone();
                tokio::spawn(async move {
                    let event = match command {
                        // The command returning means this process survived
                        // it (a recording script, or a reboot scheduled for
                        // later); the reboot counts as done.
                        Some(command) => {
                            match install::run_command(&command, None, Duration::from_secs(300))
                                .await
                            {
                                Ok(_) => Event::Rebooted,
                                Err(e) => {
                                    tracing::error!(error = %e, "reboot command failed");
                                    Event::Rebooted
                                }
                            }
                        }
                        None => {
                            tracing::warn!(
                                "no reboot command configured; counting the reboot as done"
                            );
                            Event::Rebooted
                        }
                    };
                    let _ = work.send(Work::Event(key, event, None)).await;
                });
            }
        }
    }

    /// Runs a configured machine command in the background, logging failures.
    fn spawn_machine_command(&self, what: &'static str, command: String) {
        tokio::spawn(async move {
            match install::run_command(&command, None, Duration::from_secs(120)).await {
                Ok(_) => tracing::info!(command = what, "machine command ran"),
                Err(e) => tracing::error!(command = what, error = %e, "machine command failed"),
            }
        });
    }

    /// Starts (or joins) the download of `manifest` for track `key`.
    fn begin_download(&mut self, key: &str, manifest: &Manifest) {
        let patch = manifest.patch_ref();
        self.data_mut(&patch).payload_hash = Some(manifest.payload_hash);
        self.persist_data(&patch);
        self.download_waiters
            .entry(manifest.payload_hash)
            .or_default()
            .insert(key.to_string());
        self.start_download(manifest);
        self.check_download_done(&manifest.payload_hash);
    }

    /// Feeds `Downloaded` to the tracks waiting for a download once it has every chunk.
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
        let secs = download.started.elapsed().as_secs_f64();
        let fetched = download.bytes_same_site + download.bytes_cross_site;
        tracing::info!(
            patch = %patch,
            same_site = download.bytes_same_site,
            cross_site = download.bytes_cross_site,
            secs = format!("{secs:.3}"),
            mb_per_sec = format!("{:.1}", fetched as f64 / secs.max(1e-9) / 1e6),
            "download complete"
        );
        let data = self.data_mut(&patch);
        data.bytes_same_site += download.bytes_same_site;
        data.bytes_cross_site += download.bytes_cross_site;
        self.persist_data(&patch);
        let waiters = self.download_waiters.remove(payload).unwrap_or_default();
        for key in waiters {
            self.step_track(&key, Event::Downloaded);
        }
    }

    /// Where the installers of `manifest` keep what they replace.
    fn install_context(&self, manifest: &Manifest) -> install::InstallContext {
        install::InstallContext {
            backup_dir: self
                .data_dir
                .join("rollback")
                .join(manifest.patch_ref().to_string()),
            data_dir: self.data_dir.clone(),
            deb: self.config.deb.clone(),
        }
    }

    fn spawn_install(&mut self, key: String, manifest: Manifest, retry: bool) {
        let chunks = self.shared.chunks.clone();
        let context = self.install_context(&manifest);
        let work = self.work_tx.clone();
        tokio::spawn(async move {
            let (event, record) = run_install(manifest, chunks, context, retry).await;
            let _ = work.send(Work::Event(key, event, record)).await;
        });
    }

    /// Feeds the result of a background action back into its track.
    pub(super) fn on_track_event(
        &mut self,
        key: String,
        event: Event,
        record: Option<InstallRecord>,
    ) {
        if let (Some(record), Some(entry)) = (record, self.tracks.get(&key)) {
            let patch = entry.track.patch.clone();
            self.data_mut(&patch).install = Some(record);
            self.persist_data(&patch);
        }
        if matches!(
            event,
            Event::InstallSucceeded | Event::RollbackSucceeded | Event::InstallFailed { .. }
        ) {
            // Packages changed: observers should see it now, not at the
            // next periodic refresh.
            self.inventory_due = true;
        }
        if let Event::InstallFailed { error } | Event::RollbackFailed { error } = &event {
            tracing::error!(track = %key, error = %error, "patch action failed");
        }
        self.step_track(&key, event);
    }

    /// Asks the engine to postpone every pending reboot; returns how many
    /// tracks accepted.
    pub(super) fn postpone_reboots(&mut self) -> usize {
        let keys: Vec<String> = self
            .tracks
            .iter()
            .filter(|(_, e)| e.track.state == PatchState::RebootPending)
            .map(|(k, _)| k.clone())
            .collect();
        let mut accepted = 0;
        for key in keys {
            let before = self.tracks[&key].track.postpones;
            self.step_track(&key, Event::PostponeRequested);
            if self.tracks[&key].track.postpones > before {
                accepted += 1;
            }
        }
        accepted
    }

    /// Runs the native-updater and isolation commands when the settings
    /// that follow from all policies change.
    fn apply_host_settings(&mut self, round: &Round) {
        let policies: Vec<&Policy> = round.policies.values().collect();
        let tracks: Vec<&Track> = self.tracks.values().map(|e| &e.track).collect();
        let wanted = rollout::host_settings(&policies, &tracks, &round.member, round.now);
        let applied = self
            .shared
            .meta
            .misc::<rollout::HostSettings>("host_settings")
            .ok()
            .flatten()
            .unwrap_or_default();
        if wanted == applied {
            return;
        }
        let commands = self.config.commands.clone();
        if wanted.native_updater_disabled != applied.native_updater_disabled {
            let command = if wanted.native_updater_disabled {
                commands.disable_native_updater
            } else {
                commands.enable_native_updater
            };
            tracing::info!(
                disabled = wanted.native_updater_disabled,
                "native updater setting changed"
            );
            if let Some(command) = command {
                self.spawn_machine_command("native updater", command);
            }
        }
        if wanted.isolated != applied.isolated {
            tracing::warn!(
                isolated = wanted.isolated,
                "network isolation setting changed"
            );
            let command = if wanted.isolated {
                commands.isolate
            } else {
                commands.unisolate
            };
            if let Some(command) = command {
                self.spawn_machine_command("isolation", command);
            }
        }
        if let Err(e) = self.shared.meta.set_misc("host_settings", &wanted) {
            tracing::error!(error = %e, "cannot persist host settings");
        }
    }
}

/// Quotes `text` for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Assembles the payload and installs it. With `retry`, an earlier attempt
/// may have run: the manifest's detect command decides whether to run the
/// installer again.
async fn run_install(
    manifest: Manifest,
    chunks: std::sync::Arc<crate::store::ChunkStore>,
    context: install::InstallContext,
    retry: bool,
) -> (Event, Option<InstallRecord>) {
    if retry {
        if let Some(detect) = &manifest.detect {
            if install::run_command(detect, None, Duration::from_secs(60))
                .await
                .is_ok()
            {
                tracing::info!(patch = %manifest.patch_ref(), "interrupted install had finished (detect command succeeded)");
                return (Event::InstallSucceeded, None);
            }
        }
    }
    let assembled = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || chunks.assemble(&manifest)).await
    };
    let payload = match assembled {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => {
            let error = format!("cannot assemble payload: {e}");
            return (Event::InstallFailed { error }, None);
        }
        Err(e) => {
            let error = format!("assembly task failed: {e}");
            return (Event::InstallFailed { error }, None);
        }
    };
    match install::install(&manifest, &payload, &context).await {
        Ok(record) => (Event::InstallSucceeded, Some(record)),
        Err(e) => {
            let error = e.to_string();
            (Event::InstallFailed { error }, None)
        }
    }
}

/// Short text of why a track waits, for reports.
fn describe(reason: &rollout::Reason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default()
}
