//! Several objects, roots and small values written in one sled transaction,
//! so a crash leaves either all of them or none: a bundle import must not
//! leave half of its objects admitted.

use patchmesh_protocol::{Hash, Signed};
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::{slot_key, MetaError, MetaStore, SlotEntry};

/// Writes for [`MetaStore::put_batch`].
#[derive(Default)]
pub struct Batch {
    roots: Vec<([u8; 8], Vec<u8>)>,
    objects: Vec<SlotWrite>,
    misc: Vec<(String, Option<Vec<u8>>)>,
}

/// One object to store as the newest revision of its slot.
struct SlotWrite {
    slot_key: Vec<u8>,
    id: Hash,
    /// Encoded [`SlotEntry`].
    entry: Vec<u8>,
    /// Encoded envelope.
    bytes: Vec<u8>,
}

impl Batch {
    /// Adds root `version`.
    pub fn root(&mut self, version: u64, signed: &Signed) {
        self.roots.push((version.to_be_bytes(), signed.to_bytes()));
    }

    /// Adds `signed` as revision `revision` of `slot`, replacing the object
    /// the slot points to, as [`MetaStore::put_object`] does.
    pub fn object(&mut self, slot: &str, revision: u64, signed: &Signed) {
        let id = signed.id();
        let entry =
            postcard::to_allocvec(&SlotEntry { revision, id }).expect("slot entries always encode");
        self.objects.push(SlotWrite {
            slot_key: slot_key(signed.kind, slot),
            id,
            entry,
            bytes: signed.to_bytes(),
        });
    }

    /// Sets the small value `key`, as [`MetaStore::set_misc`] does.
    pub fn set_misc<T: Serialize>(&mut self, key: &str, value: &T) {
        let bytes = postcard::to_allocvec(value).expect("values always encode");
        self.misc.push((key.to_string(), Some(bytes)));
    }

    /// Removes the small value `key`.
    pub fn remove_misc(&mut self, key: &str) {
        self.misc.push((key.to_string(), None));
    }
}

impl MetaStore {
    /// Applies every write of `batch` in one transaction and flushes it.
    pub fn put_batch(&self, batch: &Batch) -> Result<(), MetaError> {
        let result: Result<(), TransactionError<()>> =
            (&self.objects, &self.slots, &self.roots, &self.misc).transaction(
                |(objects, slots, roots, misc)| {
                    for (version, bytes) in &batch.roots {
                        roots.insert(&version[..], bytes.as_slice())?;
                    }
                    for write in &batch.objects {
                        replace_in_slot(objects, slots, write)?;
                    }
                    for (key, value) in &batch.misc {
                        match value {
                            Some(bytes) => misc.insert(key.as_bytes(), bytes.as_slice())?,
                            None => misc.remove(key.as_bytes())?,
                        };
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
        self.flush()
    }
}

/// Points a slot at a new object, dropping the object it pointed to.
fn replace_in_slot(
    objects: &TransactionalTree,
    slots: &TransactionalTree,
    write: &SlotWrite,
) -> Result<(), ConflictableTransactionError<()>> {
    if let Some(old) = slots.get(&write.slot_key)? {
        if let Ok(old) = postcard::from_bytes::<SlotEntry>(&old) {
            if old.id != write.id {
                objects.remove(&old.id.0)?;
            }
        }
    }
    objects.insert(&write.id.0, write.bytes.as_slice())?;
    slots.insert(write.slot_key.as_slice(), write.entry.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use patchmesh_protocol::envelope::Signature;
    use patchmesh_protocol::Kind;

    use super::*;

    fn object(payload: &[u8]) -> Signed {
        Signed {
            kind: Kind::Policy,
            payload: payload.to_vec(),
            signatures: Vec::<Signature>::new(),
        }
    }

    #[test]
    fn batch_replaces_slots_and_sets_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("db")).unwrap();
        let old = object(b"old");
        store.put_object("a", 1, &old).unwrap();
        store.set_misc("gone", &1u32).unwrap();

        let mut batch = Batch::default();
        batch.object("a", 2, &object(b"new"));
        batch.object("b", 1, &object(b"other"));
        batch.set_misc("count", &7u32);
        batch.remove_misc("gone");
        store.put_batch(&batch).unwrap();

        assert_eq!(store.live_objects().unwrap().len(), 2);
        assert!(store.object(&old.id()).unwrap().is_none());
        assert_eq!(store.misc::<u32>("count").unwrap(), Some(7));
        assert_eq!(store.misc::<u32>("gone").unwrap(), None);
    }
}
