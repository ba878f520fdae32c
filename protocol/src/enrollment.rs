//! Enrollment certificates: the `enroll` role binds a node's libp2p peer id
//! to its host name, site and groups, and revocations withdraw that binding.
//!
//! Targets and wave decisions trust membership only from a live enrollment
//! that no revocation of an equal or higher revision withdraws.

use jiff::Timestamp;
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::actions::body_fields;
use crate::envelope::{Body, Kind};
use crate::manifest::is_safe_name;
use crate::policy::Membership;

/// Body of a signed enrollment certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// libp2p peer id of the node, base58.
    pub peer: String,
    /// Host name the node is known by.
    pub host: String,
    /// Site the node sits in.
    pub site: String,
    /// Groups the node belongs to.
    pub groups: Vec<String>,
    /// Version within the slot (the peer id).
    pub revision: u64,
    /// When it was signed.
    pub issued: Timestamp,
    /// After this time the enrollment no longer counts.
    pub expires: Timestamp,
}

/// Body of a signed revocation of a node's enrollment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// libp2p peer id of the node, base58.
    pub peer: String,
    /// Enrollments of this peer with a revision at or below this one are
    /// withdrawn; re-enrolling takes a higher revision.
    pub revision: u64,
    /// When it was signed.
    pub issued: Timestamp,
    /// After this time nodes may drop the revocation; keep it past the
    /// expiry of every enrollment it withdraws.
    pub expires: Timestamp,
}

/// Error for an enrollment field nodes cannot act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("enrollment field \"{field}\": {problem}")]
pub struct EnrollmentError {
    /// Field name.
    pub field: &'static str,
    /// Problem with the value, and what is allowed.
    pub problem: String,
}

fn check_name(field: &'static str, value: &str) -> Result<(), EnrollmentError> {
    if is_safe_name(value) {
        return Ok(());
    }
    Err(EnrollmentError {
        field,
        problem: format!(
            "{value:?} is invalid (1 to 128 letters, digits, '.', '-', '_', '+', '~' or ':')"
        ),
    })
}

fn check_peer(peer: &str) -> Result<(), EnrollmentError> {
    peer.parse::<PeerId>()
        .map(|_| ())
        .map_err(|e| EnrollmentError {
            field: "peer",
            problem: format!("{peer:?} is not a base58 libp2p peer id ({e})"),
        })
}

impl Enrollment {
    /// Checks the peer id, host, site and group names.
    pub fn validate(&self) -> Result<(), EnrollmentError> {
        check_peer(&self.peer)?;
        check_name("host", &self.host)?;
        check_name("site", &self.site)?;
        for group in &self.groups {
            check_name("groups", group)?;
        }
        if self.groups.len() > 64 {
            return Err(EnrollmentError {
                field: "groups",
                problem: format!("{} groups, over the limit of 64", self.groups.len()),
            });
        }
        if self.revision == 0 {
            return Err(EnrollmentError {
                field: "revision",
                problem: "0 is not allowed (revisions start at 1)".into(),
            });
        }
        Ok(())
    }

    /// The membership targeting rules see for this node.
    pub fn membership(&self) -> Membership {
        Membership {
            host: self.host.clone(),
            site: self.site.clone(),
            groups: self.groups.clone(),
        }
    }

    /// Whether the enrollment counts at `now`, given the revocations held.
    pub fn is_live(&self, revocations: &[Revocation], now: Timestamp) -> bool {
        self.expires > now
            && !revocations
                .iter()
                .any(|r| r.peer == self.peer && r.revision >= self.revision)
    }
}

impl Revocation {
    /// Checks the peer id.
    pub fn validate(&self) -> Result<(), EnrollmentError> {
        check_peer(&self.peer)
    }
}

body_fields!(Enrollment, Kind::Enrollment, |this| this.peer.clone());
body_fields!(Revocation, Kind::Revocation, |this| this.peer.clone());

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;

    fn enrollment() -> Enrollment {
        Enrollment {
            peer: Keypair::generate_ed25519()
                .public()
                .to_peer_id()
                .to_base58(),
            host: "pc-1".into(),
            site: "hq".into(),
            groups: vec!["workstations".into()],
            revision: 2,
            issued: "2027-01-01T00:00:00Z".parse().unwrap(),
            expires: "2028-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn valid_enrollment_passes() {
        let e = enrollment();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.slot(), e.peer);
        assert_eq!(e.membership().groups, ["workstations"]);
    }

    #[test]
    fn rejects_bad_names() {
        let mut e = enrollment();
        e.host = "../etc".into();
        assert_eq!(e.validate().unwrap_err().field, "host");
        let mut e = enrollment();
        e.groups.push(String::new());
        assert_eq!(e.validate().unwrap_err().field, "groups");
        let mut e = enrollment();
        e.peer = "not-a-peer".into();
        let err = e.validate().unwrap_err();
        assert_eq!(err.field, "peer");
        assert!(err.problem.contains("not-a-peer"), "{err}");
    }

    #[test]
    fn revocation_withdraws_equal_and_lower_revisions() {
        let e = enrollment();
        let now = "2027-06-01T00:00:00Z".parse().unwrap();
        let mut revocation = Revocation {
            peer: e.peer.clone(),
            revision: 1,
            issued: now,
            expires: "2029-01-01T00:00:00Z".parse().unwrap(),
        };
        assert!(e.is_live(std::slice::from_ref(&revocation), now));
        revocation.revision = 2;
        assert!(!e.is_live(&[revocation], now));
        assert!(!e.is_live(&[], "2028-01-01T00:00:00Z".parse().unwrap()));
    }
}
