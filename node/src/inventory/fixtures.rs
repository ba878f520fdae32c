//! Inventories and manifests shared by the inventory tests.

use jiff::Timestamp;
use patchmesh_protocol::inventory::{Inventory, OsInfo, Package};
use patchmesh_protocol::manifest::Applicability;
use patchmesh_protocol::{Hash, Installer, Manifest, Severity};

/// Builds a Debian amd64 inventory of host `pc-1` with `(name, version)` packages.
pub fn debian_inventory(packages: &[(&str, &str)]) -> Inventory {
    let packages = packages
        .iter()
        .map(|(name, version)| Package {
            name: name.to_string(),
            version: version.to_string(),
            arch: "amd64".into(),
        })
        .collect();
    Inventory {
        peer: "12D3KooWTest".into(),
        host: "pc-1".into(),
        os: OsInfo {
            id: "debian".into(),
            arch: "amd64".into(),
            ..OsInfo::default()
        },
        uptime_secs: 0,
        reboot_pending: false,
        packages: Inventory::normalize_packages(packages),
        adapter: "dpkg".into(),
        agent_version: "0".into(),
        time: Timestamp::UNIX_EPOCH,
        seq: 1,
    }
}

/// Builds a valid one-chunk manifest of a `deb` patch.
pub fn deb_manifest(
    name: &str,
    version: &str,
    severity: Severity,
    applies_to: Applicability,
) -> Manifest {
    Manifest {
        name: name.into(),
        version: version.into(),
        revision: 1,
        issued: Timestamp::UNIX_EPOCH,
        expires: Timestamp::MAX,
        vendor: String::new(),
        severity,
        cvss: None,
        cves: vec![],
        released: None,
        size: 1,
        chunk_size: 65_536,
        chunks: vec![Hash([0; 32])],
        payload_hash: Hash([0; 32]),
        installer: Installer::Deb {
            package: name.into(),
        },
        detect: None,
        reboot_required: false,
        applies_to,
    }
}
