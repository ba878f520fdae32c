//! Node inventories: the operating system and installed packages of one
//! machine, signed with the node's own libp2p ed25519 key like a
//! [`crate::report::SignedReport`], so an observer can check which node
//! wrote it, whoever relayed it.
//!
//! A node sends its whole [`Inventory`] once and then only an
//! [`InventoryDelta`] against the sequence number the observer holds. An
//! observer that holds another sequence number rejects the delta with
//! [`InventoryError::BaseMismatch`], and the node then sends the whole
//! inventory again.

use std::collections::BTreeMap;

use jiff::Timestamp;
use libp2p_identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::limits;
use crate::report::{sign_node_payload, verify_node_payload, NodeSignatureError};

const INVENTORY_TAG: &[u8] = b"patchmesh/v1/node_inventory\0";

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    /// Package name in the platform's package manager.
    pub name: String,
    /// Installed version, in the package manager's own syntax.
    pub version: String,
    /// Package architecture (`amd64`, `all`); empty when the platform has
    /// none.
    pub arch: String,
}

impl Package {
    /// Name and architecture, which identify a package on one machine
    /// (dpkg can hold `libc6:amd64` and `libc6:i386` at once).
    pub fn key(&self) -> PackageKey {
        PackageKey {
            name: self.name.clone(),
            arch: self.arch.clone(),
        }
    }
}

/// Name and architecture of a package, without its version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageKey {
    /// Package name.
    pub name: String,
    /// Package architecture.
    pub arch: String,
}

/// Operating system of a machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID` from `/etc/os-release` (`debian`, `ubuntu`).
    pub id: String,
    /// `VERSION_ID` from `/etc/os-release` (`12`), empty when absent.
    pub version_id: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub pretty_name: String,
    /// Kernel release (`6.1.0-18-amd64`).
    pub kernel: String,
    /// Architecture in Debian's naming (`amd64`, `arm64`).
    pub arch: String,
}

/// Body of a node inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// libp2p peer id (base58) of the node.
    pub peer: String,
    /// Host name from the node's certificate or config.
    pub host: String,
    /// Operating system.
    pub os: OsInfo,
    /// Seconds since the machine booted.
    pub uptime_secs: u64,
    /// Whether the machine waits for a reboot to finish an update.
    pub reboot_pending: bool,
    /// Installed packages, sorted by name and architecture.
    pub packages: Vec<Package>,
    /// Adapter that listed the packages (`dpkg`, `command`).
    pub adapter: String,
    /// Version of `patchmesh-node`.
    pub agent_version: String,
    /// When the inventory was collected, by the node's clock.
    pub time: Timestamp,
    /// Sequence number; it grows with every change the node sends.
    pub seq: u64,
}

/// Changes of an inventory against the one with sequence number
/// `base_seq`. The header fields (OS, uptime, reboot) are always sent whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryDelta {
    /// libp2p peer id (base58) of the node.
    pub peer: String,
    /// Host name.
    pub host: String,
    /// Sequence number of the inventory these changes apply to.
    pub base_seq: u64,
    /// Sequence number of the inventory after the changes.
    pub seq: u64,
    /// Operating system.
    pub os: OsInfo,
    /// Seconds since the machine booted.
    pub uptime_secs: u64,
    /// Whether a reboot is pending.
    pub reboot_pending: bool,
    /// Adapter that listed the packages.
    pub adapter: String,
    /// Version of `patchmesh-node`.
    pub agent_version: String,
    /// When the inventory was collected.
    pub time: Timestamp,
    /// Packages that were not installed before.
    pub added: Vec<Package>,
    /// Packages no longer installed.
    pub removed: Vec<PackageKey>,
    /// Packages installed before with another version.
    pub changed: Vec<Package>,
}

/// Message from a node to an observer: its whole inventory or a delta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryUpdate {
    /// The whole inventory.
    Full(Inventory),
    /// Changes against an earlier inventory.
    Delta(InventoryDelta),
}

impl InventoryUpdate {
    /// Peer id the update names.
    pub fn peer(&self) -> &str {
        match self {
            InventoryUpdate::Full(inventory) => &inventory.peer,
            InventoryUpdate::Delta(delta) => &delta.peer,
        }
    }

    /// Sequence number of the inventory after this update.
    pub fn seq(&self) -> u64 {
        match self {
            InventoryUpdate::Full(inventory) => inventory.seq,
            InventoryUpdate::Delta(delta) => delta.seq,
        }
    }

    /// Applies the update to `held`, the inventory the observer holds for
    /// this peer, and returns the new inventory.
    pub fn apply(self, held: Option<&Inventory>) -> Result<Inventory, InventoryError> {
        match self {
            InventoryUpdate::Full(inventory) => Ok(inventory),
            InventoryUpdate::Delta(delta) => match held {
                Some(held) => held.apply(delta),
                None => Err(InventoryError::BaseMismatch {
                    held: None,
                    base: delta.base_seq,
                }),
            },
        }
    }
}

/// Error for a rejected inventory or delta.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InventoryError {
    /// Too large.
    #[error("node inventory is {size} bytes, over the limit of {limit} bytes")]
    Oversize {
        /// Size in bytes.
        size: usize,
        /// Limit in bytes.
        limit: usize,
    },
    /// Not decodable.
    #[error("malformed node inventory: {0}")]
    Malformed(String),
    /// Signature invalid.
    #[error("node inventory signature does not verify for key of peer {0}")]
    BadSignature(String),
    /// Signed by another node than it names.
    #[error("node inventory names peer {claimed} but is signed by peer {signer}")]
    WrongSigner {
        /// Peer named inside.
        claimed: String,
        /// Peer whose key signed.
        signer: String,
    },
    /// A field is too long, empty or repeated.
    #[error("node inventory field {field:?}: {reason}")]
    Invalid {
        /// Field path, such as `packages[3].version`.
        field: String,
        /// Problem found.
        reason: String,
    },
    /// A delta for another base than the inventory held.
    #[error(
        "inventory delta applies to sequence number {base}, but the inventory held has {} \
         (the node must send its whole inventory)",
        held.map_or_else(|| "none".to_string(), |seq| seq.to_string())
    )]
    BaseMismatch {
        /// Sequence number held, if any.
        held: Option<u64>,
        /// Sequence number the delta applies to.
        base: u64,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InventoryError {
    InventoryError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_text(field: &str, text: &str, max: usize, required: bool) -> Result<(), InventoryError> {
    if required && text.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if text.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes, over the limit of {max} bytes", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_os(os: &OsInfo) -> Result<(), InventoryError> {
    let max = limits::MAX_INVENTORY_TEXT_LEN;
    check_text("os.id", &os.id, max, false)?;
    check_text("os.version_id", &os.version_id, max, false)?;
    check_text("os.pretty_name", &os.pretty_name, max, false)?;
    check_text("os.kernel", &os.kernel, max, false)?;
    check_text("os.arch", &os.arch, max, false)
}

fn check_package(field: &str, package: &Package) -> Result<(), InventoryError> {
    check_text(
        &format!("{field}.name"),
        &package.name,
        limits::MAX_NAME_LEN,
        true,
    )?;
    check_text(
        &format!("{field}.version"),
        &package.version,
        limits::MAX_NAME_LEN,
        true,
    )?;
    check_text(
        &format!("{field}.arch"),
        &package.arch,
        limits::MAX_NAME_LEN,
        false,
    )
}

impl Inventory {
    /// Checks lengths and counts, and that packages are sorted by name and
    /// architecture with no key repeated.
    pub fn validate(&self) -> Result<(), InventoryError> {
        check_text("host", &self.host, limits::MAX_NAME_LEN, true)?;
        check_text("adapter", &self.adapter, limits::MAX_NAME_LEN, false)?;
        check_text(
            "agent_version",
            &self.agent_version,
            limits::MAX_NAME_LEN,
            false,
        )?;
        check_os(&self.os)?;
        if self.packages.len() > limits::MAX_INVENTORY_PACKAGES {
            return Err(invalid(
                "packages",
                format!(
                    "lists {} packages, over the limit of {}",
                    self.packages.len(),
                    limits::MAX_INVENTORY_PACKAGES
                ),
            ));
        }
        for (index, package) in self.packages.iter().enumerate() {
            let field = format!("packages[{index}]");
            check_package(&field, package)?;
            if index > 0 && self.packages[index - 1].key() >= package.key() {
                return Err(invalid(
                    field,
                    format!(
                        "package {:?} ({}) is repeated or out of order (sort by name, then \
                         architecture)",
                        package.name, package.arch
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sorts packages by name and architecture and drops repeated keys,
    /// keeping the last one listed.
    pub fn normalize_packages(packages: Vec<Package>) -> Vec<Package> {
        let map: BTreeMap<PackageKey, Package> =
            packages.into_iter().map(|p| (p.key(), p)).collect();
        map.into_values().collect()
    }

    /// Installed packages named `name`, of any architecture.
    pub fn packages_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Package> + 'a {
        let start = self.packages.partition_point(|p| p.name.as_str() < name);
        self.packages[start..]
            .iter()
            .take_while(move |p| p.name == name)
    }

    /// Changes that turn `self` into `next`.
    pub fn diff(&self, next: &Inventory) -> InventoryDelta {
        let before: BTreeMap<PackageKey, &Package> =
            self.packages.iter().map(|p| (p.key(), p)).collect();
        let after: BTreeMap<PackageKey, &Package> =
            next.packages.iter().map(|p| (p.key(), p)).collect();
        let mut added = Vec::new();
        let mut changed = Vec::new();
        for (key, package) in &after {
            match before.get(key) {
                None => added.push((*package).clone()),
                Some(old) if old.version != package.version => changed.push((*package).clone()),
                Some(_) => {}
            }
        }
        let removed = before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .cloned()
            .collect();
        InventoryDelta {
            peer: next.peer.clone(),
            host: next.host.clone(),
            base_seq: self.seq,
            seq: next.seq,
            os: next.os.clone(),
            uptime_secs: next.uptime_secs,
            reboot_pending: next.reboot_pending,
            adapter: next.adapter.clone(),
            agent_version: next.agent_version.clone(),
            time: next.time,
            added,
            removed,
            changed,
        }
    }

    /// Applies `delta` and returns the new inventory, checked with
    /// [`Inventory::validate`].
    pub fn apply(&self, delta: InventoryDelta) -> Result<Inventory, InventoryError> {
        if delta.base_seq != self.seq || delta.peer != self.peer {
            return Err(InventoryError::BaseMismatch {
                held: Some(self.seq),
                base: delta.base_seq,
            });
        }
        if delta.seq <= delta.base_seq {
            return Err(invalid(
                "seq",
                format!(
                    "{} is not above the base sequence number {}",
                    delta.seq, delta.base_seq
                ),
            ));
        }
        let mut packages: BTreeMap<PackageKey, Package> =
            self.packages.iter().map(|p| (p.key(), p.clone())).collect();
        for key in &delta.removed {
            if packages.remove(key).is_none() {
                return Err(invalid(
                    "removed",
                    format!("package {:?} ({}) is not installed", key.name, key.arch),
                ));
            }
        }
        for package in delta.added {
            let key = package.key();
            if packages.insert(key.clone(), package).is_some() {
                return Err(invalid(
                    "added",
                    format!("package {:?} ({}) is already installed", key.name, key.arch),
                ));
            }
        }
        for package in delta.changed {
            let key = package.key();
            if packages.insert(key.clone(), package).is_none() {
                return Err(invalid(
                    "changed",
                    format!("package {:?} ({}) is not installed", key.name, key.arch),
                ));
            }
        }
        let inventory = Inventory {
            peer: delta.peer,
            host: delta.host,
            os: delta.os,
            uptime_secs: delta.uptime_secs,
            reboot_pending: delta.reboot_pending,
            packages: packages.into_values().collect(),
            adapter: delta.adapter,
            agent_version: delta.agent_version,
            time: delta.time,
            seq: delta.seq,
        };
        inventory.validate()?;
        Ok(inventory)
    }
}

/// An inventory update signed by the node that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInventory {
    /// postcard bytes of the [`InventoryUpdate`].
    pub payload: Vec<u8>,
    /// Protobuf-encoded libp2p public key of the node.
    pub public_key: Vec<u8>,
    /// Signature over the domain tag and payload.
    pub signature: Vec<u8>,
}

impl SignedInventory {
    /// Signs `update` with the node's libp2p keypair.
    pub fn sign(update: &InventoryUpdate, keypair: &Keypair) -> Self {
        let payload = postcard::to_allocvec(update).expect("in-memory inventories always encode");
        let (public_key, signature) = sign_node_payload(INVENTORY_TAG, &payload, keypair);
        SignedInventory {
            payload,
            public_key,
            signature,
        }
    }

    /// Binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("in-memory inventories always encode")
    }

    /// Parses and verifies a signed inventory update, returning its body.
    pub fn verify_bytes(bytes: &[u8]) -> Result<(Self, InventoryUpdate), InventoryError> {
        if bytes.len() > limits::MAX_INVENTORY_BYTES {
            return Err(InventoryError::Oversize {
                size: bytes.len(),
                limit: limits::MAX_INVENTORY_BYTES,
            });
        }
        let signed: SignedInventory =
            postcard::from_bytes(bytes).map_err(|e| InventoryError::Malformed(e.to_string()))?;
        let update = signed.verify()?;
        Ok((signed, update))
    }

    /// Verifies the signature, the signer and the limits of the body and
    /// returns the body. A delta is checked again once applied.
    pub fn verify(&self) -> Result<InventoryUpdate, InventoryError> {
        let signer = verify_node_payload(
            INVENTORY_TAG,
            &self.payload,
            &self.public_key,
            &self.signature,
        )
        .map_err(|e| match e {
            NodeSignatureError::MalformedKey(e) => {
                InventoryError::Malformed(format!("public key: {e}"))
            }
            NodeSignatureError::BadSignature(signer) => InventoryError::BadSignature(signer),
        })?;
        let update: InventoryUpdate = postcard::from_bytes(&self.payload)
            .map_err(|e| InventoryError::Malformed(e.to_string()))?;
        if update.peer() != signer {
            return Err(InventoryError::WrongSigner {
                claimed: update.peer().to_string(),
                signer,
            });
        }
        match &update {
            InventoryUpdate::Full(inventory) => inventory.validate()?,
            InventoryUpdate::Delta(delta) => {
                check_text("host", &delta.host, limits::MAX_NAME_LEN, true)?;
                check_os(&delta.os)?;
                let count = delta.added.len() + delta.changed.len() + delta.removed.len();
                if count > limits::MAX_INVENTORY_PACKAGES {
                    return Err(invalid(
                        "added",
                        format!(
                            "delta lists {count} packages, over the limit of {}",
                            limits::MAX_INVENTORY_PACKAGES
                        ),
                    ));
                }
            }
        }
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        }
    }

    fn inventory_for(keypair: &Keypair, seq: u64, packages: Vec<Package>) -> Inventory {
        Inventory {
            peer: keypair.public().to_peer_id().to_base58(),
            host: "pc-1".into(),
            os: OsInfo {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-18-amd64".into(),
                arch: "amd64".into(),
            },
            uptime_secs: 60,
            reboot_pending: false,
            packages: Inventory::normalize_packages(packages),
            adapter: "dpkg".into(),
            agent_version: "0.1.0".into(),
            time: Timestamp::UNIX_EPOCH,
            seq,
        }
    }

    #[test]
    fn signed_inventory_verifies() {
        let keypair = Keypair::generate_ed25519();
        let inventory = inventory_for(&keypair, 1, vec![package("bash", "5.2.15-2+b2")]);
        let signed = SignedInventory::sign(&InventoryUpdate::Full(inventory.clone()), &keypair);
        let (_, update) = SignedInventory::verify_bytes(&signed.to_bytes()).expect("verifies");
        assert_eq!(update, InventoryUpdate::Full(inventory));
    }

    #[test]
    fn inventory_signed_by_other_node_is_rejected() {
        let keypair = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let update = InventoryUpdate::Full(inventory_for(&other, 1, vec![]));
        let err = SignedInventory::sign(&update, &keypair)
            .verify()
            .unwrap_err();
        assert!(matches!(err, InventoryError::WrongSigner { .. }), "{err}");
    }

    #[test]
    fn report_signature_does_not_verify_as_inventory() {
        // The domain tags differ, so a signed report's bytes cannot be
        // replayed as an inventory.
        let keypair = Keypair::generate_ed25519();
        let update = InventoryUpdate::Full(inventory_for(&keypair, 1, vec![]));
        let payload = postcard::to_allocvec(&update).unwrap();
        let (public_key, signature) =
            sign_node_payload(b"patchmesh/v1/node_report\0", &payload, &keypair);
        let forged = SignedInventory {
            payload,
            public_key,
            signature,
        };
        assert!(matches!(
            forged.verify(),
            Err(InventoryError::BadSignature(_))
        ));
    }

    #[test]
    fn oversized_inventory_is_rejected_before_decoding() {
        let bytes = vec![0u8; limits::MAX_INVENTORY_BYTES + 1];
        let err = SignedInventory::verify_bytes(&bytes).unwrap_err();
        assert!(matches!(err, InventoryError::Oversize { .. }), "{err}");
    }

    #[test]
    fn delta_round_trip() {
        let keypair = Keypair::generate_ed25519();
        let old = inventory_for(
            &keypair,
            1,
            vec![
                package("bash", "5.2.15-2"),
                package("curl", "7.88.1-10"),
                package("zlib1g", "1:1.2.13.dfsg-1"),
            ],
        );
        let new = inventory_for(
            &keypair,
            2,
            vec![
                package("bash", "5.2.15-2"),
                package("curl", "7.88.1-10+deb12u5"),
                package("openssl", "3.0.11-1"),
            ],
        );
        let delta = old.diff(&new);
        assert_eq!(delta.added, vec![package("openssl", "3.0.11-1")]);
        assert_eq!(delta.changed, vec![package("curl", "7.88.1-10+deb12u5")]);
        assert_eq!(delta.removed, vec![package("zlib1g", "").key()]);
        assert_eq!(old.apply(delta).expect("applies"), new);
    }

    #[test]
    fn delta_for_other_base_is_rejected() {
        let keypair = Keypair::generate_ed25519();
        let old = inventory_for(&keypair, 1, vec![]);
        let new = inventory_for(&keypair, 3, vec![package("bash", "5")]);
        let mut delta = old.diff(&new);
        delta.base_seq = 2;
        let err = old.apply(delta.clone()).unwrap_err();
        assert_eq!(
            err,
            InventoryError::BaseMismatch {
                held: Some(1),
                base: 2
            }
        );
        let err = InventoryUpdate::Delta(delta).apply(None).unwrap_err();
        assert_eq!(
            err,
            InventoryError::BaseMismatch {
                held: None,
                base: 2
            }
        );
    }

    #[test]
    fn validate_rejects_unsorted_packages() {
        let keypair = Keypair::generate_ed25519();
        let mut inventory = inventory_for(&keypair, 1, vec![]);
        inventory.packages = vec![package("zsh", "5"), package("bash", "5")];
        let err = inventory.validate().unwrap_err();
        assert!(err.to_string().contains("packages[1]"), "{err}");
    }

    #[test]
    fn validate_rejects_empty_version() {
        let keypair = Keypair::generate_ed25519();
        let inventory = inventory_for(&keypair, 1, vec![package("bash", "")]);
        let err = inventory.validate().unwrap_err();
        assert!(err.to_string().contains("packages[0].version"), "{err}");
    }

    #[test]
    fn packages_named_finds_every_architecture() {
        let keypair = Keypair::generate_ed25519();
        let mut i386 = package("libc6", "2.36-9");
        i386.arch = "i386".into();
        let inventory = inventory_for(
            &keypair,
            1,
            vec![package("bash", "5"), package("libc6", "2.36-9"), i386],
        );
        let found: Vec<&str> = inventory
            .packages_named("libc6")
            .map(|p| p.arch.as_str())
            .collect();
        assert_eq!(found, vec!["amd64", "i386"]);
        assert_eq!(inventory.packages_named("nope").count(), 0);
    }
}
