//! Metadata in sled: signed objects by id, the newest revision per slot, the
//! root chain, per-patch records, collected reports and counters.
//!
//! Chunks never go here; they are files (see [`super::chunks`]). Writes that
//! change several trees at once use a sled transaction, so a crash leaves
//! either the old or the new object in place, never a slot pointing nowhere.

use std::path::Path;

use patchmesh_protocol::wire::ObjectSummary;
use patchmesh_protocol::{Hash, Kind, Signed};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

mod batch;

pub use batch::Batch;

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// sled failed.
    #[error("metadata database: {0}")]
    Db(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("metadata database holds an undecodable {what} under key {key:?}: {reason}")]
    Corrupt {
        /// Tree name.
        what: &'static str,
        /// Key.
        key: String,
        /// Decoder message.
        reason: String,
    },
}

/// Newest revision held for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotEntry {
    /// Revision.
    pub revision: u64,
    /// Object id.
    pub id: Hash,
}

/// The node's sled database.
#[derive(Clone)]
pub struct MetaStore {
    db: sled::Db,
    objects: sled::Tree,
    slots: sled::Tree,
    roots: sled::Tree,
    patches: sled::Tree,
    reports: sled::Tree,
    misc: sled::Tree,
}

fn slot_key(kind: Kind, slot: &str) -> Vec<u8> {
    format!("{}/{}", kind.name(), slot).into_bytes()
}

fn decode<T: DeserializeOwned>(
    what: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, MetaError> {
    postcard::from_bytes(bytes).map_err(|e| MetaError::Corrupt {
        what,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

impl MetaStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        // A small page cache keeps an idle agent's memory low; metadata of a
        // node is a few megabytes at most.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(4 * 1024 * 1024)
            .flush_every_ms(Some(200))
            .open()?;
        Ok(MetaStore {
            objects: db.open_tree("objects")?,
            slots: db.open_tree("slots")?,
            roots: db.open_tree("roots")?,
            patches: db.open_tree("patches")?,
            reports: db.open_tree("reports")?,
            misc: db.open_tree("misc")?,
            db,
        })
    }

    /// Forces every write so far to disk.
    pub fn flush(&self) -> Result<(), MetaError> {
        self.db.flush()?;
        Ok(())
    }

    /// Signed object by id.
    pub fn object(&self, id: &Hash) -> Result<Option<Signed>, MetaError> {
        match self.objects.get(id.0)? {
            None => Ok(None),
            Some(bytes) => Signed::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| MetaError::Corrupt {
                    what: "object",
                    key: id.to_hex(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Newest revision held for a slot.
    pub fn slot(&self, kind: Kind, slot: &str) -> Result<Option<SlotEntry>, MetaError> {
        let key = slot_key(kind, slot);
        match self.slots.get(&key)? {
            None => Ok(None),
            Some(bytes) => decode("slot", &key, &bytes).map(Some),
        }
    }

    /// Stores `signed` as the newest revision of its slot, dropping the
    /// object it replaces, in one transaction.
    pub fn put_object(&self, slot: &str, revision: u64, signed: &Signed) -> Result<(), MetaError> {
        let key = slot_key(signed.kind, slot);
        let id = signed.id();
        let entry =
            postcard::to_allocvec(&SlotEntry { revision, id }).expect("slot entries always encode");
        let bytes = signed.to_bytes();
        let result: Result<(), TransactionError<()>> =
            (&self.objects, &self.slots).transaction(|(objects, slots)| {
                if let Some(old) = slots.get(&key)? {
                    if let Ok(old) = postcard::from_bytes::<SlotEntry>(&old) {
                        if old.id != id {
                            objects.remove(&old.id.0)?;
                        }
                    }
                }
                objects.insert(&id.0, bytes.as_slice())?;
                slots.insert(key.as_slice(), entry.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Forgets a slot and the object it points to, in one transaction, so
    /// the next object of that slot is accepted at any revision.
    pub fn remove_slot(&self, kind: Kind, slot: &str) -> Result<(), MetaError> {
        let key = slot_key(kind, slot);
        let result: Result<(), TransactionError<()>> =
            (&self.objects, &self.slots).transaction(|(objects, slots)| {
                if let Some(old) = slots.remove(key.as_slice())? {
                    if let Ok(old) = postcard::from_bytes::<SlotEntry>(&old) {
                        objects.remove(&old.id.0)?;
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Every live object: the newest revision of each slot.
    pub fn live_objects(&self) -> Result<Vec<(ObjectSummary, Signed)>, MetaError> {
        let mut out = Vec::new();
        for item in self.slots.iter() {
            let (key, value) = item?;
            let entry: SlotEntry = decode("slot", &key, &value)?;
            let Some(signed) = self.object(&entry.id)? else {
                continue;
            };
            let text = String::from_utf8_lossy(&key);
            let slot = text
                .split_once('/')
                .map(|(_, s)| s)
                .unwrap_or("")
                .to_string();
            out.push((
                ObjectSummary {
                    id: entry.id,
                    kind: signed.kind,
                    slot,
                    revision: entry.revision,
                },
                signed,
            ));
        }
        Ok(out)
    }

    /// Live objects of one kind.
    pub fn live_of_kind(&self, kind: Kind) -> Result<Vec<Signed>, MetaError> {
        Ok(self
            .live_objects()?
            .into_iter()
            .filter(|(summary, _)| summary.kind == kind)
            .map(|(_, signed)| signed)
            .collect())
    }

    /// Stores a root version of the chain.
    pub fn put_root(&self, version: u64, signed: &Signed) -> Result<(), MetaError> {
        self.roots
            .insert(version.to_be_bytes(), signed.to_bytes())?;
        Ok(())
    }

    /// Every stored root version in order.
    pub fn roots(&self) -> Result<Vec<Signed>, MetaError> {
        let mut out = Vec::new();
        for item in self.roots.iter() {
            let (key, value) = item?;
            out.push(Signed::from_bytes(&value).map_err(|e| MetaError::Corrupt {
                what: "root",
                key: format!("{key:?}"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Per-patch record stored under `key`.
    pub fn patch_record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MetaError> {
        match self.patches.get(key)? {
            None => Ok(None),
            Some(bytes) => decode("patch record", key.as_bytes(), &bytes).map(Some),
        }
    }

    /// Stores a per-patch record and flushes it, since state transitions
    /// must survive a crash right after them.
    pub fn put_patch_record<T: Serialize>(&self, key: &str, record: &T) -> Result<(), MetaError> {
        let bytes = postcard::to_allocvec(record).expect("records always encode");
        self.patches.insert(key, bytes)?;
        self.patches.flush()?;
        Ok(())
    }

    /// Every per-patch record.
    pub fn patch_records<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, MetaError> {
        let mut out = Vec::new();
        for item in self.patches.iter() {
            let (key, value) = item?;
            let record = decode("patch record", &key, &value)?;
            out.push((String::from_utf8_lossy(&key).into_owned(), record));
        }
        Ok(out)
    }

    /// Stores a collected report unless one with an equal or higher sequence
    /// number is held for the same peer; returns whether it was stored.
    pub fn put_report(
        &self,
        peer: &str,
        seq: u64,
        record: &StoredReport,
    ) -> Result<bool, MetaError> {
        if let Some(bytes) = self.reports.get(peer)? {
            let held: StoredReport = decode("report", peer.as_bytes(), &bytes)?;
            if held.seq >= seq {
                return Ok(false);
            }
        }
        let bytes = postcard::to_allocvec(record).expect("reports always encode");
        self.reports.insert(peer, bytes)?;
        Ok(true)
    }

    /// Every collected report.
    pub fn reports(&self) -> Result<Vec<StoredReport>, MetaError> {
        let mut out = Vec::new();
        for item in self.reports.iter() {
            let (key, value) = item?;
            out.push(decode("report", &key, &value)?);
        }
        Ok(out)
    }

    /// Reads a counter or small value.
    pub fn misc<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MetaError> {
        match self.misc.get(key)? {
            None => Ok(None),
            Some(bytes) => decode("value", key.as_bytes(), &bytes).map(Some),
        }
    }

    /// Every small value whose key starts with `prefix`.
    pub fn misc_with_prefix<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, MetaError> {
        let mut out = Vec::new();
        for item in self.misc.scan_prefix(prefix) {
            let (key, value) = item?;
            out.push(decode("value", &key, &value)?);
        }
        Ok(out)
    }

    /// Writes a counter or small value.
    pub fn set_misc<T: Serialize>(&self, key: &str, value: &T) -> Result<(), MetaError> {
        let bytes = postcard::to_allocvec(value).expect("values always encode");
        self.misc.insert(key, bytes)?;
        Ok(())
    }
}

/// A report an observer collected.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredReport {
    /// Sequence number of the report.
    pub seq: u64,
    /// When the observer received it, RFC 3339.
    pub received: String,
    /// The signed report bytes, kept so they can be exported and verified again.
    pub signed: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchmesh_protocol::envelope::Signature;

    fn object(payload: &[u8]) -> Signed {
        Signed {
            kind: Kind::Policy,
            payload: payload.to_vec(),
            signatures: Vec::<Signature>::new(),
        }
    }

    #[test]
    fn newer_revision_replaces_older_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("db")).unwrap();
        let first = object(b"one");
        let second = object(b"two");
        store.put_object("p", 1, &first).unwrap();
        store.put_object("p", 2, &second).unwrap();
        assert_eq!(
            store.slot(Kind::Policy, "p").unwrap(),
            Some(SlotEntry {
                revision: 2,
                id: second.id()
            })
        );
        assert!(store.object(&first.id()).unwrap().is_none());
        assert_eq!(store.live_objects().unwrap().len(), 1);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = MetaStore::open(&path).unwrap();
            store.put_object("p", 1, &object(b"one")).unwrap();
            store.flush().unwrap();
        }
        let store = MetaStore::open(&path).unwrap();
        assert_eq!(store.live_objects().unwrap().len(), 1);
    }
}
