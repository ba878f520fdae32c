//! Record of the root versions that removed keys from roles, so that a
//! rejection of an object signed by such a key names the rotation and the
//! fix.

use std::collections::BTreeMap;

use crate::envelope::{Signed, VerifyError};
use crate::keys::KeyId;
use crate::root::{Role, Root};

/// Root versions that removed keys from roles, learned by walking a root
/// chain oldest first with [`RemovedKeys::record`]. Only rotations walked
/// are known, so a key removed before the first root recorded is not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemovedKeys {
    /// Version of the root that removed each key, by role and key.
    removed_by: BTreeMap<(Role, KeyId), u64>,
}

impl RemovedKeys {
    /// Records the rotation from `previous` to its successor `next`. Keys
    /// of a role in `previous` that `next` does not list for that role were
    /// removed by `next`, and keys that `next` lists are no longer removed.
    pub fn record(&mut self, previous: &Root, next: &Root) {
        for role in Role::ALL {
            let keys_of = |root: &Root| {
                root.roles
                    .get(&role)
                    .map(|rule| rule.keys.clone())
                    .unwrap_or_default()
            };
            let next_keys = keys_of(next);
            for key in keys_of(previous) {
                if !next_keys.contains(&key) {
                    self.removed_by.insert((role, key), next.version);
                }
            }
            for key in next_keys {
                self.removed_by.remove(&(role, key));
            }
        }
    }

    /// Returns the version of the root that removed `key` from `role`, if a
    /// recorded rotation did.
    pub fn removed_by(&self, role: Role, key: &KeyId) -> Option<u64> {
        self.removed_by.get(&(role, *key)).copied()
    }

    /// Turns a threshold failure of `signed` into [`VerifyError::RemovedKey`]
    /// when one of its signatures is by a key a recorded rotation removed
    /// from the role. Any other error is returned unchanged.
    pub fn explain(&self, signed: &Signed, error: VerifyError) -> VerifyError {
        let VerifyError::Threshold {
            kind,
            role,
            valid,
            threshold,
            root_version,
            ..
        } = error
        else {
            return error;
        };
        let removed = signed.signatures.iter().find_map(|signature| {
            Some((signature.key_id, self.removed_by(role, &signature.key_id)?))
        });
        match removed {
            Some((key, removed_by)) => VerifyError::RemovedKey {
                kind,
                role,
                key,
                removed_by,
                valid,
                threshold,
                root_version,
            },
            None => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::keys::SecretKey;
    use crate::root::RoleKeys;

    /// Builds root `version` that lists the keys `listed` and gives every
    /// role the keys `signers`.
    fn root(version: u64, listed: &[&SecretKey], signers: &[&SecretKey]) -> Root {
        let ids: Vec<KeyId> = signers.iter().map(|key| key.id()).collect();
        Root {
            fleet: "test".into(),
            version,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1),
            keys: listed.iter().map(|key| (key.id(), key.public())).collect(),
            roles: Role::ALL
                .iter()
                .map(|role| {
                    let rule = RoleKeys {
                        keys: ids.clone(),
                        threshold: 1,
                    };
                    (*role, rule)
                })
                .collect(),
        }
    }

    #[test]
    fn record_tracks_removal_and_return() {
        let retained_key = SecretKey::generate();
        let removed_key = SecretKey::generate();
        let both = [&retained_key, &removed_key];
        let v1 = root(1, &both, &both);
        let v2 = root(2, &both, &[&retained_key]);
        let v3 = root(3, &both, &[&retained_key]);
        let v4 = root(4, &both, &both);
        let mut removed = RemovedKeys::default();

        removed.record(&v1, &v2);
        assert_eq!(removed.removed_by(Role::Policy, &removed_key.id()), Some(2));
        assert_eq!(removed.removed_by(Role::Policy, &retained_key.id()), None);

        removed.record(&v2, &v3);
        assert_eq!(
            removed.removed_by(Role::Patch, &removed_key.id()),
            Some(2),
            "a later rotation keeps the version that removed the key"
        );

        removed.record(&v3, &v4);
        assert_eq!(removed.removed_by(Role::Patch, &removed_key.id()), None);
    }

    #[test]
    fn explain_names_removing_root() {
        let retained_key = SecretKey::generate();
        let removed_key = SecretKey::generate();
        let unlisted_key = SecretKey::generate();
        let both = [&retained_key, &removed_key];
        let v1 = root(1, &both, &both);
        let v2 = root(2, &[&retained_key], &[&retained_key]);
        let mut removed = RemovedKeys::default();
        removed.record(&v1, &v2);

        let by_removed_key = Signed::sign(&v2, &[&removed_key]);
        let error = v2
            .check_threshold(Role::Policy, &by_removed_key)
            .unwrap_err();
        let explained = removed.explain(&by_removed_key, error);
        assert!(
            matches!(explained, VerifyError::RemovedKey { removed_by: 2, .. }),
            "{explained:?}"
        );
        let message = explained.to_string();
        assert!(message.contains(&removed_key.id().short()), "{message}");
        assert!(message.contains("root version 2 removed"), "{message}");
        assert!(message.contains("Re-sign it"), "{message}");

        // A key that no recorded root listed keeps the plain threshold error.
        let by_unlisted_key = Signed::sign(&v2, &[&unlisted_key]);
        let error = v2
            .check_threshold(Role::Policy, &by_unlisted_key)
            .unwrap_err();
        let text = error.to_string();
        let explained = removed.explain(&by_unlisted_key, error);
        assert!(
            matches!(explained, VerifyError::Threshold { .. }),
            "{explained:?}"
        );
        assert_eq!(explained.to_string(), text);
    }
}
