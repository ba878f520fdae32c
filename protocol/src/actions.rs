//! Signed admin actions on a running rollout: approvals, halts, resumes and
//! rollback orders. Each gossips like a policy and is signed by the `policy`
//! role.
//!
//! Slots decide which objects replace each other in a node's store:
//!
//! - an approval's slot is `policy/*` when it approves every patch and
//!   `policy/name@version` when it names one patch, or the names joined by
//!   `,` for several, so approving another patch never withdraws an earlier
//!   approval;
//! - a halt's and a resume's slot is `policy` for the whole policy and
//!   `policy/wave` for one wave. Because halts and resumes are of different
//!   kinds, both are stored side by side, and [`halted`] decides between
//!   them: for a given wave, the latest `issued` of every live halt and
//!   resume that covers the wave wins, and a halt wins a tie;
//! - a rollback order's slot is `policy/name@version`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::envelope::{Body, Kind};
use crate::manifest::PatchRef;

/// Implements [`Body`] for a type with `revision`, `issued` and `expires`
/// fields, given how its slot is made.
macro_rules! body_fields {
    ($type:ty, $kind:expr, |$this:ident| $slot:expr) => {
        impl Body for $type {
            const KIND: Kind = $kind;

            fn slot(&self) -> String {
                let $this = self;
                $slot
            }

            fn revision(&self) -> u64 {
                self.revision
            }

            fn issued(&self) -> Timestamp {
                self.issued
            }

            fn expires(&self) -> Timestamp {
                self.expires
            }
        }
    };
}

pub(crate) use body_fields;

/// Body of a signed approval: a manual policy may deploy these patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Policy id.
    pub policy: String,
    /// Approved patches; empty approves every patch published (by manifest
    /// `issued`) at or before this approval's `issued`.
    pub patches: Vec<PatchRef>,
    /// Version within the slot.
    pub revision: u64,
    /// When it was signed.
    pub issued: Timestamp,
    /// After this time nodes ignore it.
    pub expires: Timestamp,
}

impl Approval {
    /// Whether this approval covers `patch`, published at `published`.
    pub fn covers(&self, policy: &str, patch: &PatchRef, published: Timestamp) -> bool {
        self.policy == policy
            && if self.patches.is_empty() {
                published <= self.issued
            } else {
                self.patches.contains(patch)
            }
    }
}

body_fields!(Approval, Kind::Approval, |this| this.slot_name());

impl Approval {
    fn slot_name(&self) -> String {
        if self.patches.is_empty() {
            return format!("{}/*", self.policy);
        }
        let mut names: Vec<String> = self.patches.iter().map(PatchRef::to_string).collect();
        names.sort();
        format!("{}/{}", self.policy, names.join(","))
    }
}

/// Body of a signed halt: nodes of the policy (or of one wave) start no new
/// install until a later resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// Policy id.
    pub policy: String,
    /// Wave name; `None` halts every wave.
    pub wave: Option<String>,
    /// Why, shown in reports.
    pub reason: String,
    /// Version within the slot.
    pub revision: u64,
    /// When it was signed; a later resume covering the same wave lifts it.
    pub issued: Timestamp,
    /// After this time nodes ignore it.
    pub expires: Timestamp,
}

/// Body of a signed resume: lifts earlier halts of the policy or wave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Policy id.
    pub policy: String,
    /// Wave name; `None` resumes every wave.
    pub wave: Option<String>,
    /// Version within the slot.
    pub revision: u64,
    /// When it was signed; it lifts halts issued before it.
    pub issued: Timestamp,
    /// After this time nodes ignore it.
    pub expires: Timestamp,
}

fn scope_slot(policy: &str, wave: &Option<String>) -> String {
    match wave {
        Some(wave) => format!("{policy}/{wave}"),
        None => policy.to_string(),
    }
}

fn covers_wave(policy: &str, scope: &Option<String>, target: (&str, Option<&str>)) -> bool {
    let (target_policy, target_wave) = target;
    policy == target_policy
        && match scope {
            None => true,
            Some(wave) => target_wave == Some(wave.as_str()),
        }
}

impl Halt {
    /// Whether this halt covers `wave` (or the node's lack of one) of `policy`.
    pub fn covers(&self, policy: &str, wave: Option<&str>) -> bool {
        covers_wave(&self.policy, &self.wave, (policy, wave))
    }
}

impl Resume {
    /// Whether this resume covers `wave` of `policy`.
    pub fn covers(&self, policy: &str, wave: Option<&str>) -> bool {
        covers_wave(&self.policy, &self.wave, (policy, wave))
    }
}

/// Returns the halt in force for `wave` of `policy` at `now`, if any.
///
/// Among live halts and resumes covering the wave, the one with the latest
/// `issued` wins. A halt wins a tie, so a resume must be signed after the
/// halt it lifts.
pub fn halted<'a>(
    halts: &'a [Halt],
    resumes: &[Resume],
    policy: &str,
    wave: Option<&str>,
    now: Timestamp,
) -> Option<&'a Halt> {
    let halt = halts
        .iter()
        .filter(|h| h.expires > now && h.covers(policy, wave))
        .max_by_key(|h| h.issued)?;
    let resumed = resumes
        .iter()
        .filter(|r| r.expires > now && r.covers(policy, wave))
        .any(|r| r.issued > halt.issued);
    (!resumed).then_some(halt)
}

body_fields!(Halt, Kind::Halt, |this| scope_slot(
    &this.policy,
    &this.wave
));
body_fields!(Resume, Kind::Resume, |this| scope_slot(
    &this.policy,
    &this.wave
));
body_fields!(RollbackOrder, Kind::Rollback, |this| format!(
    "{}/{}",
    this.policy, this.patch
));

/// Body of a signed rollback order: nodes holding `patch` under `policy`
/// roll it back and do not install it again until a newer version, or an
/// approval issued after this order, names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOrder {
    /// Policy id.
    pub policy: String,
    /// The patch to roll back.
    pub patch: PatchRef,
    /// Why, shown in reports.
    pub reason: String,
    /// Version within the slot.
    pub revision: u64,
    /// When it was signed.
    pub issued: Timestamp,
    /// After this time nodes ignore it.
    pub expires: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::Signed;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn halt(wave: Option<&str>, issued: &str) -> Halt {
        Halt {
            policy: "p".into(),
            wave: wave.map(String::from),
            reason: "test".into(),
            revision: 1,
            issued: ts(issued),
            expires: ts("2030-01-01T00:00:00Z"),
        }
    }

    fn resume(wave: Option<&str>, issued: &str) -> Resume {
        Resume {
            policy: "p".into(),
            wave: wave.map(String::from),
            revision: 1,
            issued: ts(issued),
            expires: ts("2030-01-01T00:00:00Z"),
        }
    }

    const NOW: &str = "2027-06-01T00:00:00Z";

    #[test]
    fn later_resume_lifts_halt() {
        let halts = [halt(None, "2027-05-01T00:00:00Z")];
        let resumes = [resume(None, "2027-05-02T00:00:00Z")];
        assert!(halted(&halts, &resumes, "p", Some("pilot"), ts(NOW)).is_none());
        assert!(halted(&halts, &[], "p", Some("pilot"), ts(NOW)).is_some());
    }

    #[test]
    fn halt_after_resume_wins() {
        let halts = [halt(None, "2027-05-03T00:00:00Z")];
        let resumes = [resume(None, "2027-05-02T00:00:00Z")];
        assert!(halted(&halts, &resumes, "p", None, ts(NOW)).is_some());
    }

    #[test]
    fn halt_wins_a_tie() {
        let halts = [halt(None, "2027-05-02T00:00:00Z")];
        let resumes = [resume(None, "2027-05-02T00:00:00Z")];
        assert!(halted(&halts, &resumes, "p", None, ts(NOW)).is_some());
    }

    #[test]
    fn wave_halt_leaves_other_waves() {
        let halts = [halt(Some("pilot"), "2027-05-01T00:00:00Z")];
        assert!(halted(&halts, &[], "p", Some("pilot"), ts(NOW)).is_some());
        assert!(halted(&halts, &[], "p", Some("broad"), ts(NOW)).is_none());
        assert!(halted(&halts, &[], "other", Some("pilot"), ts(NOW)).is_none());
    }

    #[test]
    fn wave_resume_lifts_one_wave() {
        let halts = [halt(None, "2027-05-01T00:00:00Z")];
        let resumes = [resume(Some("pilot"), "2027-05-02T00:00:00Z")];
        assert!(halted(&halts, &resumes, "p", Some("pilot"), ts(NOW)).is_none());
        assert!(halted(&halts, &resumes, "p", Some("broad"), ts(NOW)).is_some());
    }

    #[test]
    fn expired_halt_is_ignored() {
        let mut old = halt(None, "2027-05-01T00:00:00Z");
        old.expires = ts("2027-05-15T00:00:00Z");
        assert!(halted(&[old], &[], "p", None, ts(NOW)).is_none());
    }

    #[test]
    fn slots_separate_scopes_and_patches() {
        assert_eq!(halt(None, NOW).slot(), "p");
        assert_eq!(halt(Some("pilot"), NOW).slot(), "p/pilot");
        assert_eq!(resume(Some("pilot"), NOW).slot(), "p/pilot");
        let mut approval = Approval {
            policy: "p".into(),
            patches: vec![],
            revision: 1,
            issued: ts(NOW),
            expires: ts("2030-01-01T00:00:00Z"),
        };
        assert_eq!(approval.slot(), "p/*");
        approval.patches = vec!["b@2".parse().unwrap(), "a@1".parse().unwrap()];
        assert_eq!(approval.slot(), "p/a@1,b@2");
    }

    #[test]
    fn approval_of_all_covers_only_earlier_patches() {
        let approval = Approval {
            policy: "p".into(),
            patches: vec![],
            revision: 1,
            issued: ts(NOW),
            expires: ts("2030-01-01T00:00:00Z"),
        };
        let patch: PatchRef = "demo@1".parse().unwrap();
        assert!(approval.covers("p", &patch, ts("2027-05-01T00:00:00Z")));
        assert!(!approval.covers("p", &patch, ts("2027-07-01T00:00:00Z")));
        assert!(!approval.covers("q", &patch, ts("2027-05-01T00:00:00Z")));
    }

    #[test]
    fn rollback_order_signs_and_decodes() {
        let key = SecretKey::generate();
        let order = RollbackOrder {
            policy: "p".into(),
            patch: "demo@1".parse().unwrap(),
            reason: "breaks printing".into(),
            revision: 1,
            issued: ts(NOW),
            expires: ts("2030-01-01T00:00:00Z"),
        };
        let signed = Signed::sign(&order, &[&key]);
        assert_eq!(signed.kind, Kind::Rollback);
        assert_eq!(signed.decode_body::<RollbackOrder>().unwrap(), order);
        assert_eq!(order.slot(), "p/demo@1");
    }
}
