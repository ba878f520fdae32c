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
            let after = keys_of(next);
            for key in keys_of(previous) {
                if !after.contains(&key) {
                    self.removed_by.insert((role, key), next.version);
                }
            }
            for key in after {
                self.removed_by.remove(&(role, key));
            }
        }
    }

    /// Version of the root that removed `key` from `role`, if a recorded
    /// rotation did.
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
        let removed = signed
            .signatures
            .iter()
            .find_map(|s| Some((s.key_id, self.removed_by(role, &s.key_id)?)));
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

    /// Builds root `version` that lists `all` and gives every role `signers`.
    fn root(version: u64, all: &[&SecretKey], signers: &[&SecretKey]) -> Root {
        let ids: Vec<KeyId> = signers.iter().map(|k| k.id()).collect();
        Root {
            fleet: "test".into(),
            version,
            issued: Timestamp::UNIX_EPOCH,
            expires: Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1),
            keys: all.iter().map(|k| (k.id(), k.public())).collect(),
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
        let kept = SecretKey::generate();
        let gone = SecretKey::generate();
        let v1 = root(1, &[&kept, &gone], &[&kept, &gone]);
        let v2 = root(2, &[&kept, &gone], &[&kept]);
        let v3 = root(3, &[&kept, &gone], &[&kept]);
        let v4 = root(4, &[&kept, &gone], &[&kept, &gone]);
        let mut removed = RemovedKeys::default();

        removed.record(&v1, &v2);
        assert_eq!(removed.removed_by(Role::Policy, &gone.id()), Some(2));
        assert_eq!(removed.removed_by(Role::Policy, &kept.id()), None);
        removed.record(&v2, &v3);
        assert_eq!(
            removed.removed_by(Role::Patch, &gone.id()),
            Some(2),
            "a later rotation keeps the version that removed the key"
        );
        removed.record(&v3, &v4);
        assert_eq!(removed.removed_by(Role::Patch, &gone.id()), None);
    }

    #[test]
    fn explain_names_removing_root() {
        let kept = SecretKey::generate();
        let gone = SecretKey::generate();
        let stranger = SecretKey::generate();
        let v1 = root(1, &[&kept, &gone], &[&kept, &gone]);
        let v2 = root(2, &[&kept], &[&kept]);
        let mut removed = RemovedKeys::default();
        removed.record(&v1, &v2);

        let by_gone = Signed::sign(&v2, &[&gone]);
        let error = v2.check_threshold(Role::Policy, &by_gone).unwrap_err();
        let explained = removed.explain(&by_gone, error);
        assert!(
            matches!(explained, VerifyError::RemovedKey { removed_by: 2, .. }),
            "{explained:?}"
        );
        let message = explained.to_string();
        assert!(message.contains(&gone.id().short()), "{message}");
        assert!(message.contains("root version 2 removed"), "{message}");
        assert!(message.contains("Re-sign it"), "{message}");

        // A key no recorded root listed keeps the plain threshold error.
        let by_stranger = Signed::sign(&v2, &[&stranger]);
        let error = v2.check_threshold(Role::Policy, &by_stranger).unwrap_err();
        let text = error.to_string();
        let explained = removed.explain(&by_stranger, error);
        assert!(
            matches!(explained, VerifyError::Threshold { .. }),
            "{explained:?}"
        );
        assert_eq!(explained.to_string(), text);
    }
}
