//! The node's config file, `config.toml` in its data folder, written by
//! `patchmesh-node init` and read by `patchmesh-node run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the config file inside the data folder.
pub const CONFIG_FILE: &str = "config.toml";

/// Node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host name used for targeting until an enrollment certificate exists.
    pub host: String,
    /// Site (office) the node belongs to.
    #[serde(default = "default_site")]
    pub site: String,
    /// Groups used for targeting until an enrollment certificate exists.
    #[serde(default)]
    pub groups: Vec<String>,
    /// libp2p multiaddrs to listen on.
    pub listen: Vec<String>,
    /// libp2p multiaddrs (with `/p2p/PEER`) to dial at start.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Address of the local control API; the port may be 0.
    pub control: SocketAddr,
    /// Whether this node collects reports from others.
    #[serde(default)]
    pub observer: bool,
    /// Whether mDNS discovery of LAN peers is on. Off unless asked for.
    #[serde(default)]
    pub mdns: bool,
    /// Whether this node may fetch chunks from other sites. When true, it
    /// does so only while it has a direct (not relayed) connection to a
    /// peer of another site. False turns WAN fetches off for good.
    #[serde(default = "yes")]
    pub wan: bool,
    /// Address ranges (CIDR, such as "10.20.0.0/16") besides loopback that
    /// the node may dial when it learns peers by exchange or mDNS. Bootstrap
    /// addresses are dialed as configured.
    #[serde(default)]
    pub dial_ranges: Vec<String>,
    /// Folder watched for `*.bundle` files (a USB mount on air-gapped
    /// sites); none when left out.
    #[serde(default)]
    pub import_dir: Option<PathBuf>,
    /// Largest difference in seconds between this node's clock and a
    /// bundle's signing time before a warning is logged.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
    /// Most connections other peers may have open to this node at once.
    /// Connections this node dials (bootstrap peers, relays, peers it
    /// picked) do not count, so peers that fill every inbound slot cannot
    /// cut it off from the peers it chose.
    #[serde(default = "default_max_inbound")]
    pub max_inbound_connections: u32,
    /// Transfer settings.
    #[serde(default)]
    pub transfer: TransferConfig,
    /// Circuit relay settings, for nodes behind NAT and the relays they use.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Inventory adapter and its sources.
    #[serde(default)]
    pub inventory: crate::inventory::InventoryConfig,
    /// dpkg settings of the `deb` installer.
    #[serde(default)]
    pub deb: crate::deb::DebConfig,
    /// Trust settings.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Commands that change the machine.
    #[serde(default)]
    pub commands: Commands,
    /// Test clock: only tests and the demo set it.
    #[serde(default)]
    pub clock: ClockConfig,
}

fn default_site() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

fn default_skew() -> u64 {
    3_600
}

/// Default for [`Config::max_inbound_connections`]: room for a large
/// office's nodes and the peers of other sites.
pub const DEFAULT_MAX_INBOUND: u32 = 512;

fn default_max_inbound() -> u32 {
    DEFAULT_MAX_INBOUND
}

/// Chunk transfer settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// Chunk requests in flight per peer.
    pub requests_per_peer: usize,
    /// Seconds before an unanswered chunk request is given up.
    pub request_timeout_secs: u64,
    /// Disk quota of the chunk store in bytes; 0 means no quota.
    pub chunk_quota_bytes: u64,
    /// Whether chunks are taken from same-site peers. Off only to measure
    /// the naive baseline where every node pulls everything over the WAN.
    pub lan_sharing: bool,
    /// Most chunk requests to other sites in flight at once. They share the
    /// site's WAN link, so more only queue there and time out.
    pub wan_requests_in_flight: usize,
    /// Cap on chunk bytes per second taken from other sites; 0 means none.
    /// Same-site transfers are never capped.
    pub wan_bytes_per_sec: u64,
    /// UTC time ranges (`HH:MM-HH:MM`, may cross midnight) when fetching
    /// from other sites is allowed; empty means always.
    pub wan_windows: Vec<String>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            requests_per_peer: 8,
            request_timeout_secs: 60,
            chunk_quota_bytes: 0,
            lan_sharing: true,
            wan_requests_in_flight: 16,
            wan_bytes_per_sec: 0,
            wan_windows: Vec::new(),
        }
    }
}

/// Circuit relay (libp2p circuit relay v2) settings.
///
/// A relay server lets peers that cannot be dialed (behind NAT) take
/// connections through it. Circuits carry gossip, sync requests and
/// reports, never chunks, so their limits stay small.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Whether this node serves as a relay for other peers.
    pub server: bool,
    /// Relay multiaddrs with `/p2p/PEER`: this node reserves a slot on each
    /// and listens through it, so peers that cannot dial it directly
    /// reach it there.
    pub addrs: Vec<String>,
    /// Maximum reservations the relay server keeps at once.
    pub max_reservations: usize,
    /// Maximum circuits the relay server carries at once.
    pub max_circuits: usize,
    /// Seconds after which the relay server closes a circuit, at least 1.
    pub max_circuit_secs: u64,
    /// Bytes, both directions together, after which the relay server
    /// closes a circuit, at least 1.
    pub max_circuit_bytes: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            server: false,
            addrs: Vec::new(),
            max_reservations: 128,
            max_circuits: 64,
            // Long enough for a hole punch and a burst of sync traffic.
            // The agent dials the peer again when its circuit closes.
            max_circuit_secs: 600,
            // Room for a full inventory of a few thousand packages (an
            // estimate: about 60 bytes per package). Chunks never travel
            // on a circuit.
            max_circuit_bytes: 1024 * 1024,
        }
    }
}

/// Trust settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Seconds after which the newest admin-signed object held counts as
    /// stale, so the node warns in its log and status that peers may be
    /// withholding newer ones; 0 turns the warning off. The default of 31
    /// days suits fleets whose admins sign at least once a month.
    pub stale_after_secs: u64,
    /// Maximum root rotations trusted past the pinned root, 1 to
    /// `limits::MAX_ROOT_HOPS` (the default). A node at the limit rejects
    /// newer roots until a newer `root.bin` is pinned. Lowering it below the
    /// rotations a node already walked stops that node from starting.
    pub max_root_hops: u64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            stale_after_secs: 31 * 24 * 3600,
            max_root_hops: patchmesh_protocol::limits::MAX_ROOT_HOPS as u64,
        }
    }
}

/// Commands that change the machine; `{payload}`-style placeholders are
/// documented per field. Tests and the demo point them at recording scripts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Commands {
    /// Reboots the machine.
    pub reboot: Option<String>,
    /// Notifies the user; `{message}` is replaced by the notice text.
    pub notify: Option<String>,
    /// Turns the native updater off.
    pub disable_native_updater: Option<String>,
    /// Turns the native updater back on.
    pub enable_native_updater: Option<String>,
    /// Isolates the machine from the network, except patchmesh's traffic.
    pub isolate: Option<String>,
    /// Lifts the isolation.
    pub unisolate: Option<String>,
}

/// Test clock: `now = start + offset + elapsed × speed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Seconds added to the system clock.
    pub offset_secs: i64,
    /// How many test seconds pass per real second.
    pub speed: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            offset_secs: 0,
            speed: 1.0,
        }
    }
}

/// Error for a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error(
        "cannot read config {path}: {source} (run `patchmesh-node init --data-dir DIR` first)"
    )]
    Read {
        /// Path tried.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a config.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// Path read.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

impl Config {
    /// Reads `config.toml` from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let max_hops = patchmesh_protocol::limits::MAX_ROOT_HOPS as u64;
        if !(1..=max_hops).contains(&config.trust.max_root_hops) {
            return Err(ConfigError::Parse {
                path,
                message: format!(
                    "trust.max_root_hops {} is outside 1 to {max_hops}",
                    config.trust.max_root_hops
                ),
            });
        }
        // libp2p-relay 0.22 treats a byte limit of 0 as no limit, and a
        // duration of 0 closes every circuit as soon as it opens.
        if config.relay.max_circuit_bytes == 0 {
            return Err(ConfigError::Parse {
                path,
                message: "relay.max_circuit_bytes is 0, which turns the relay's byte limit \
                          off; set a byte count such as 1048576"
                    .into(),
            });
        }
        if config.relay.max_circuit_secs == 0 {
            return Err(ConfigError::Parse {
                path,
                message: "relay.max_circuit_secs is 0, which closes every relay circuit at \
                          once; set seconds such as 600"
                    .into(),
            });
        }
        if !(config.clock.speed > 0.0 && config.clock.speed.is_finite()) {
            return Err(ConfigError::Parse {
                path,
                message: format!(
                    "clock.speed {} is not a positive number",
                    config.clock.speed
                ),
            });
        }
        Ok(config)
    }

    /// TOML text of the config.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configs always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let config = Config {
            host: "pc-1".into(),
            site: "hq".into(),
            groups: vec!["workstations".into()],
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
            bootstrap: vec![],
            control: "127.0.0.1:0".parse().unwrap(),
            observer: true,
            mdns: false,
            wan: true,
            dial_ranges: vec![],
            import_dir: None,
            max_clock_skew_secs: 3_600,
            max_inbound_connections: 64,
            transfer: TransferConfig::default(),
            relay: RelayConfig {
                server: true,
                addrs: vec!["/ip4/10.0.0.1/udp/4001/quic-v1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5F6TGCZeJ6DyK8tQfDD".into()],
                ..RelayConfig::default()
            },
            inventory: Default::default(),
            deb: Default::default(),
            trust: TrustConfig::default(),
            commands: Commands::default(),
            clock: ClockConfig::default(),
        };
        let back: Config = toml::from_str(&config.to_toml()).expect("parses");
        assert_eq!(back, config);
    }

    #[test]
    fn zero_relay_circuit_limits_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let base: Config =
            toml::from_str("host = \"pc-1\"\nlisten = []\ncontrol = \"127.0.0.1:0\"\n")
                .expect("minimal config parses");
        let cases = [
            (
                "max_circuit_bytes",
                RelayConfig {
                    max_circuit_bytes: 0,
                    ..RelayConfig::default()
                },
            ),
            (
                "max_circuit_secs",
                RelayConfig {
                    max_circuit_secs: 0,
                    ..RelayConfig::default()
                },
            ),
        ];
        for (field, relay) in cases {
            let config = Config {
                relay,
                ..base.clone()
            };
            std::fs::write(dir.path().join(CONFIG_FILE), config.to_toml()).unwrap();
            let err = Config::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(&format!("relay.{field} is 0")), "{err}");
        }
        std::fs::write(dir.path().join(CONFIG_FILE), base.to_toml()).unwrap();
        assert!(Config::load(dir.path()).is_ok());
    }

    #[test]
    fn missing_config_names_the_path_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("patchmesh-node init"), "{err}");
    }
}
