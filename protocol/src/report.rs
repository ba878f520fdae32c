//! Node reports: the state of every patch on one node, signed with the
//! node's own libp2p ed25519 key so an observer can check which node wrote
//! it, whoever relayed it.

use std::fmt;

use jiff::Timestamp;
use libp2p_identity::{Keypair, PeerId, PublicKey as NodePublicKey};
use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::hash::Hash;
use crate::limits;
use crate::manifest::PatchRef;

/// Where a patch stands on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchState {
    /// Targeted, not yet allowed to proceed.
    Pending,
    /// Approved, waiting to download.
    Approved,
    /// Downloaded or downloading, waiting for the maintenance window.
    WaitingWindow,
    /// Fetching chunks.
    Downloading,
    /// The installer is running.
    Installing,
    /// Installed; the reboot it needs has not happened yet.
    RebootPending,
    /// Installed.
    Installed,
    /// Install failed.
    Failed,
    /// The rollback is running.
    RollingBack,
    /// Rolled back.
    RolledBack,
}

impl PatchState {
    /// Whether the state is final for a wave's judgement.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PatchState::Installed | PatchState::Failed | PatchState::RolledBack
        )
    }

    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PatchState::Pending => "pending",
            PatchState::Approved => "approved",
            PatchState::WaitingWindow => "waiting_window",
            PatchState::Downloading => "downloading",
            PatchState::Installing => "installing",
            PatchState::RebootPending => "reboot_pending",
            PatchState::Installed => "installed",
            PatchState::Failed => "failed",
            PatchState::RollingBack => "rolling_back",
            PatchState::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for PatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One patch's status on a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchStatus {
    /// The patch.
    pub patch: PatchRef,
    /// Policy that brought it.
    pub policy: String,
    /// Current state.
    pub state: PatchState,
    /// When the state was entered.
    pub since: Timestamp,
    /// When the node first learned it should install the patch.
    pub started: Timestamp,
    /// Human-readable detail: an error, an exit status.
    pub detail: String,
    /// BLAKE3 of the payload the node assembled, once verified.
    pub payload_hash: Option<Hash>,
    /// Chunk bytes taken from peers of the same site.
    pub bytes_same_site: u64,
    /// Chunk bytes taken from peers of other sites.
    pub bytes_cross_site: u64,
}

/// Body of a node report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// libp2p peer id (base58) of the reporting node.
    pub peer: String,
    /// Host name from the node's certificate or config.
    pub host: String,
    /// Site.
    pub site: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Sequence number; an observer keeps only the highest per node.
    pub seq: u64,
    /// When the report was made, by the node's clock.
    pub time: Timestamp,
    /// Version of `patchmesh-node`.
    pub agent_version: String,
    /// Status of every patch the node tracks.
    pub patches: Vec<PatchStatus>,
    /// The node's stale alarm, if raised, so observers see it too.
    pub stale: Option<StaleAlarm>,
}

/// The newest admin-signed object a node stores, when it was signed longer
/// ago than the node's staleness limit (`trust.stale_after_secs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleAlarm {
    /// Kind of the object, such as `policy`.
    pub kind: Kind,
    /// Its slot: the policy id for a policy, `name@version` for a manifest.
    pub slot: String,
    /// Its revision.
    pub revision: u64,
    /// When it was signed.
    pub signed_at: Timestamp,
    /// Seconds from its signing time to the node's clock.
    pub age_secs: u64,
    /// Configured staleness limit in seconds.
    pub limit_secs: u64,
}

/// A report signed by the node that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReport {
    /// postcard bytes of the [`NodeReport`].
    pub payload: Vec<u8>,
    /// Protobuf-encoded libp2p public key of the node.
    pub public_key: Vec<u8>,
    /// Signature over the domain tag and payload.
    pub signature: Vec<u8>,
}

/// Why a report was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// Too large.
    #[error("node report is {size} bytes, over the limit of {limit} bytes")]
    Oversize {
        /// Size in bytes.
        size: usize,
        /// Limit in bytes.
        limit: usize,
    },
    /// Not decodable.
    #[error("malformed node report: {0}")]
    Malformed(String),
    /// Signature invalid.
    #[error("node report signature does not verify for key of peer {0}")]
    BadSignature(String),
    /// Signed by another node than it names.
    #[error("node report names peer {claimed} but is signed by peer {signer}")]
    WrongSigner {
        /// Peer named inside.
        claimed: String,
        /// Peer whose key signed.
        signer: String,
    },
}

const REPORT_TAG: &[u8] = b"patchmesh/v1/node_report\0";

/// Error for a payload signed with a node key that does not verify.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NodeSignatureError {
    /// The public key is not a protobuf-encoded libp2p key.
    MalformedKey(String),
    /// The signature does not verify. Contains the signer's peer id.
    BadSignature(String),
}

/// Signs `tag` followed by `payload` with a node's libp2p keypair and
/// returns the protobuf-encoded public key and the signature.
pub(crate) fn sign_node_payload(
    tag: &[u8],
    payload: &[u8],
    keypair: &Keypair,
) -> (Vec<u8>, Vec<u8>) {
    let mut message = tag.to_vec();
    message.extend_from_slice(payload);
    let signature = keypair
        .sign(&message)
        .expect("ed25519 signing does not fail");
    (keypair.public().encode_protobuf(), signature)
}

/// Verifies a signature made by [`sign_node_payload`] and returns the
/// signer's peer id in base58.
pub(crate) fn verify_node_payload(
    tag: &[u8],
    payload: &[u8],
    public_key: &[u8],
    signature: &[u8],
) -> Result<String, NodeSignatureError> {
    let key = NodePublicKey::try_decode_protobuf(public_key)
        .map_err(|e| NodeSignatureError::MalformedKey(e.to_string()))?;
    let signer = PeerId::from_public_key(&key).to_base58();
    let mut message = tag.to_vec();
    message.extend_from_slice(payload);
    if !key.verify(&message, signature) {
        return Err(NodeSignatureError::BadSignature(signer));
    }
    Ok(signer)
}

impl SignedReport {
    /// Signs `report` with the node's libp2p keypair.
    pub fn sign(report: &NodeReport, keypair: &Keypair) -> Self {
        let payload = postcard::to_allocvec(report).expect("in-memory reports always encode");
        let (public_key, signature) = sign_node_payload(REPORT_TAG, &payload, keypair);
        SignedReport {
            payload,
            public_key,
            signature,
        }
    }

    /// Binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("in-memory reports always encode")
    }

    /// Parses and verifies a signed report, returning its body.
    pub fn verify_bytes(bytes: &[u8]) -> Result<(Self, NodeReport), ReportError> {
        if bytes.len() > limits::MAX_REPORT_BYTES {
            return Err(ReportError::Oversize {
                size: bytes.len(),
                limit: limits::MAX_REPORT_BYTES,
            });
        }
        let signed: SignedReport =
            postcard::from_bytes(bytes).map_err(|e| ReportError::Malformed(e.to_string()))?;
        let report = signed.verify()?;
        Ok((signed, report))
    }

    /// Verifies the signature and signer and returns the body.
    pub fn verify(&self) -> Result<NodeReport, ReportError> {
        let signer =
            verify_node_payload(REPORT_TAG, &self.payload, &self.public_key, &self.signature)
                .map_err(|e| match e {
                    NodeSignatureError::MalformedKey(e) => {
                        ReportError::Malformed(format!("public key: {e}"))
                    }
                    NodeSignatureError::BadSignature(signer) => ReportError::BadSignature(signer),
                })?;
        let report: NodeReport = postcard::from_bytes(&self.payload)
            .map_err(|e| ReportError::Malformed(e.to_string()))?;
        if report.peer != signer {
            return Err(ReportError::WrongSigner {
                claimed: report.peer,
                signer,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_for(keypair: &Keypair) -> NodeReport {
        NodeReport {
            peer: keypair.public().to_peer_id().to_base58(),
            host: "pc-1".into(),
            site: "hq".into(),
            groups: vec![],
            seq: 1,
            time: Timestamp::UNIX_EPOCH,
            agent_version: "0".into(),
            patches: vec![],
            stale: None,
        }
    }

    #[test]
    fn signed_report_verifies() {
        let keypair = Keypair::generate_ed25519();
        let signed = SignedReport::sign(&report_for(&keypair), &keypair);
        let (_, report) = SignedReport::verify_bytes(&signed.to_bytes()).expect("verifies");
        assert_eq!(report.host, "pc-1");
    }

    #[test]
    fn report_naming_another_peer_is_rejected() {
        let keypair = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let signed = SignedReport::sign(&report_for(&other), &keypair);
        let err = signed.verify().unwrap_err();
        assert!(matches!(err, ReportError::WrongSigner { .. }), "{err}");
    }

    #[test]
    fn tampered_report_is_rejected() {
        let keypair = Keypair::generate_ed25519();
        let mut signed = SignedReport::sign(&report_for(&keypair), &keypair);
        let last = signed.payload.len() - 1;
        signed.payload[last] ^= 1;
        assert!(matches!(signed.verify(), Err(ReportError::BadSignature(_))));
    }
}
