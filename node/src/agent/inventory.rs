//! The node's own inventory, refreshed in the background and sent to
//! observers as signed updates (whole, then only what changed), and the
//! observer's side that verifies and keeps them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use patchmesh_protocol::inventory::{Inventory, InventoryError, InventoryUpdate, SignedInventory};
use patchmesh_protocol::wire::{SyncRequest, SyncResponse};

use super::{Agent, SyncPurpose, Work};
use crate::inventory::Collector;

/// Key prefix of stored inventories in the metadata store.
const INVENTORY_KEY: &str = "inventory/";

impl Agent {
    /// Starts a refresh when one is due: at start, every `refresh_secs`,
    /// and after installs and rollbacks (`inventory_due` set).
    pub(super) fn maybe_refresh_inventory(&mut self) {
        let every = Duration::from_secs(self.config.inventory.refresh_secs.max(10));
        let due = self.inventory_due || self.last_inventory.is_none_or(|t| t.elapsed() >= every);
        if !due || self.inventory_running {
            return;
        }
        self.inventory_due = false;
        self.inventory_running = true;
        self.last_inventory = Some(Instant::now());
        let collector = Arc::clone(&self.collector);
        let work = self.work_tx.clone();
        let now = self.shared.clock.now();
        let full = std::mem::take(&mut self.inventory_full_next);
        tokio::spawn(async move {
            let mut collector = collector.lock().await;
            let update = match collector.refresh(now).await {
                // A new observer has no base for a delta: send it all.
                _ if full => collector.full_update(),
                Ok(update) => update,
                Err(_) => None,
            };
            let current = collector.current().cloned();
            let _ = work
                .send(Work::Inventory(update.map(Box::new), current.map(Box::new)))
                .await;
        });
    }

    /// Takes a finished refresh: keeps the inventory for applicability and
    /// sends the update to observers.
    pub(super) fn on_inventory(
        &mut self,
        update: Option<InventoryUpdate>,
        current: Option<Inventory>,
    ) {
        self.inventory_running = false;
        let changed = current.as_ref().map(|i| i.seq) != self.inventory.as_ref().map(|i| i.seq);
        self.inventory = current;
        if changed {
            self.inputs_changed();
        }
        let Some(update) = update else { return };
        let signed = SignedInventory::sign(&update, &self.keypair).to_bytes();
        if self.config.observer {
            let peer = self.local;
            self.accept_inventory(peer, &signed);
        }
        let observers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| e.hello.as_ref().is_some_and(|h| h.observer))
            .map(|(p, _)| *p)
            .collect();
        for peer in observers {
            self.send_sync(
                peer,
                SyncRequest::Inventory(signed.clone()),
                SyncPurpose::Inventory,
            );
        }
    }

    /// Verifies and stores an inventory update on an observer. A delta
    /// against another base is refused, and the sender then sends the whole
    /// inventory.
    pub(super) fn accept_inventory(&mut self, from: PeerId, bytes: &[u8]) -> SyncResponse {
        if !self.config.observer {
            return SyncResponse::Refused("this node is not an observer".into());
        }
        let (_, update) = match SignedInventory::verify_bytes(bytes) {
            Ok(verified) => verified,
            Err(error) => {
                tracing::warn!(peer = %from, error = %error, "rejected inventory");
                self.penalise(from, 10, "invalid inventory");
                return SyncResponse::Refused(error.to_string());
            }
        };
        let key = format!("{INVENTORY_KEY}{}", update.peer());
        let held: Option<Inventory> = self.shared.meta.misc(&key).ok().flatten();
        match update.apply(held.as_ref()) {
            Ok(inventory) => {
                if let Err(e) = self.shared.meta.set_misc(&key, &inventory) {
                    tracing::error!(peer = %inventory.peer, error = %e, "cannot store inventory");
                }
                tracing::debug!(peer = %inventory.peer, host = %inventory.host, packages = inventory.packages.len(), "inventory stored");
                SyncResponse::InventoryAccepted
            }
            Err(error @ InventoryError::BaseMismatch { .. }) => {
                SyncResponse::Refused(format!("base mismatch: {error}"))
            }
            Err(error) => {
                tracing::warn!(peer = %from, error = %error, "rejected inventory update");
                SyncResponse::Refused(error.to_string())
            }
        }
    }

    /// An observer refused our inventory delta: send it whole next time.
    pub(super) fn on_inventory_refused(&mut self, reason: &str) {
        if reason.starts_with("base mismatch") {
            self.inventory_full_next = true;
            self.inventory_due = true;
        }
    }
}

/// Every inventory an observer holds.
pub fn stored_inventories(meta: &crate::store::MetaStore) -> Vec<Inventory> {
    meta.misc_with_prefix::<Inventory>(INVENTORY_KEY)
        .unwrap_or_default()
}

/// A collector shared with the background refresh task.
pub(super) type SharedCollector = Arc<tokio::sync::Mutex<Collector>>;
