//! Inventory of the machine a node runs on: operating system, kernel,
//! architecture, uptime, pending reboot and installed packages, listed by a
//! platform adapter ([`dpkg`] or [`command`]).
//!
//! [`Collector`] keeps the last good inventory: when a refresh fails (a
//! malformed status file, a command that hangs), the error is returned and
//! the inventory the node reports stays the one before. [`applicability`]
//! decides from an inventory which patches the machine is missing.

pub mod applicability;
pub mod command;
pub mod dpkg;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod system;
pub mod views;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use patchmesh_protocol::inventory::{Inventory, InventoryUpdate, OsInfo};
use serde::{Deserialize, Serialize};

/// Adapter that lists the installed packages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// No package list; the inventory has OS facts only.
    #[default]
    None,
    /// dpkg's status file.
    Dpkg,
    /// An admin-configured command that prints JSON.
    Command,
}

impl AdapterKind {
    /// snake_case name, as in the config and in inventories.
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::None => "none",
            AdapterKind::Dpkg => "dpkg",
            AdapterKind::Command => "command",
        }
    }
}

/// The `[inventory]` table of the node config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// Adapter that lists packages.
    pub adapter: AdapterKind,
    /// dpkg's status file, for the `dpkg` adapter.
    pub dpkg_status: PathBuf,
    /// Command run with `sh -c`, for the `command` adapter.
    pub command: String,
    /// Seconds before the command is killed and the refresh fails.
    pub command_timeout_secs: u64,
    /// The `os-release` file.
    pub os_release: PathBuf,
    /// Folder with `uptime` and `sys/kernel/osrelease`.
    pub proc_dir: PathBuf,
    /// File whose existence means a reboot is pending.
    pub reboot_required: PathBuf,
    /// Architecture in Debian's naming; empty means the agent's own build
    /// architecture.
    pub arch: String,
    /// Seconds between refreshes.
    pub refresh_secs: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            adapter: AdapterKind::None,
            dpkg_status: "/var/lib/dpkg/status".into(),
            command: String::new(),
            command_timeout_secs: 60,
            os_release: "/etc/os-release".into(),
            proc_dir: "/proc".into(),
            reboot_required: "/var/run/reboot-required".into(),
            arch: String::new(),
            refresh_secs: 3600,
        }
    }
}

/// Error from collecting an inventory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// A file could not be read.
    #[error("cannot read \"{path}\": {source}")]
    Read {
        /// File involved.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// A file is over its size limit.
    #[error("\"{path}\" is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// File involved.
        path: PathBuf,
        /// Size in bytes.
        size: u64,
        /// Limit in bytes.
        limit: u64,
    },
    /// A dpkg status file is malformed.
    #[error("dpkg status file \"{path}\" line {line}: {reason}")]
    StatusSyntax {
        /// Status file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// Problem found.
        reason: String,
    },
    /// A package version is not a valid Debian version.
    #[error(
        "\"{source_name}\" line {line}: package \"{package}\" has invalid version \
         \"{version}\" ({reason})"
    )]
    InvalidVersion {
        /// File or command the version came from.
        source_name: String,
        /// Line number, from 1.
        line: usize,
        /// Package name.
        package: String,
        /// The version text.
        version: String,
        /// Parser message.
        reason: String,
    },
    /// An `os-release` file is malformed.
    #[error("os-release file \"{path}\" line {line}: {reason}")]
    OsRelease {
        /// File involved.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// Problem found.
        reason: String,
    },
    /// A `/proc` file has unexpected content.
    #[error("\"{path}\": {reason}")]
    Proc {
        /// File involved.
        path: PathBuf,
        /// Problem found.
        reason: String,
    },
    /// The inventory command could not start.
    #[error("inventory command {command:?} failed to start: {source}")]
    CommandStart {
        /// The command.
        command: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The inventory command ran past its timeout.
    #[error(
        "inventory command {command:?} timed out after {timeout:?} and was killed (raise \
         inventory.command_timeout_secs if it is just slow)"
    )]
    CommandTimeout {
        /// The command.
        command: String,
        /// Timeout.
        timeout: Duration,
    },
    /// The inventory command exited non-zero.
    #[error("inventory command {command:?} exited with status {code:?}: {stderr}")]
    CommandFailed {
        /// The command.
        command: String,
        /// Exit status, `None` when killed by a signal.
        code: Option<i32>,
        /// Start of its standard error.
        stderr: String,
    },
    /// The inventory command printed something other than the expected JSON.
    #[error("inventory command output field \"{field}\": {reason}")]
    CommandOutput {
        /// Field path, such as `packages[3].version`.
        field: String,
        /// Problem found.
        reason: String,
    },
    /// The adapter is `command` but no command is configured.
    #[error("inventory.adapter is \"command\" but inventory.command is empty")]
    NoCommand,
    /// The collected inventory breaks a protocol limit.
    #[error("collected inventory is invalid: {0}")]
    Invalid(#[from] patchmesh_protocol::inventory::InventoryError),
}

impl CollectError {
    fn read(path: &Path, source: std::io::Error) -> Self {
        CollectError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Identity fields every inventory carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// libp2p peer id (base58).
    pub peer: String,
    /// Host name from the certificate or config.
    pub host: String,
    /// Version of `patchmesh-node`.
    pub agent_version: String,
}

/// Collects one inventory with sequence number `seq`, without keeping state.
pub async fn collect(
    config: &InventoryConfig,
    identity: &Identity,
    now: Timestamp,
    seq: u64,
) -> Result<Inventory, CollectError> {
    let arch = (!config.arch.is_empty()).then_some(config.arch.as_str());
    let mut os = system::collect_os(&config.os_release, &config.proc_dir, arch)?;
    let uptime_secs = system::read_uptime(&config.proc_dir)?;
    let mut reboot_pending = system::reboot_pending(&config.reboot_required);

    let packages = match config.adapter {
        AdapterKind::None => Vec::new(),
        AdapterKind::Dpkg => dpkg::read_status(&config.dpkg_status)?,
        AdapterKind::Command => {
            if config.command.trim().is_empty() {
                return Err(CollectError::NoCommand);
            }
            let timeout = Duration::from_secs(config.command_timeout_secs.max(1));
            let listed = command::run(&config.command, timeout).await?;
            apply_os_override(&mut os, listed.os);
            reboot_pending = listed.reboot_pending.unwrap_or(reboot_pending);
            listed.packages
        }
    };

    let inventory = Inventory {
        peer: identity.peer.clone(),
        host: identity.host.clone(),
        os,
        uptime_secs,
        reboot_pending,
        packages: Inventory::normalize_packages(packages),
        adapter: config.adapter.name().to_string(),
        agent_version: identity.agent_version.clone(),
        time: now,
        seq,
    };
    inventory.validate()?;
    Ok(inventory)
}

fn apply_os_override(os: &mut OsInfo, update: command::OsOverride) {
    let fields = [
        (&mut os.id, update.id),
        (&mut os.version_id, update.version_id),
        (&mut os.pretty_name, update.pretty_name),
        (&mut os.kernel, update.kernel),
        (&mut os.arch, update.arch),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            *field = value;
        }
    }
}

/// Returns whether two inventories differ in what an observer shows. Uptime and
/// collection time change on every refresh, so they do not count.
fn differs(old: &Inventory, new: &Inventory) -> bool {
    old.os != new.os
        || old.reboot_pending != new.reboot_pending
        || old.packages != new.packages
        || old.adapter != new.adapter
        || old.agent_version != new.agent_version
}

/// Keeps the last good inventory and turns each refresh into the update to
/// send to observers.
///
/// Sequence numbers are the collection time in milliseconds since the Unix
/// epoch, raised by one where needed so they always grow. So they keep
/// growing across restarts without being stored, as long as the clock does
/// not go back.
#[derive(Debug)]
pub struct Collector {
    config: InventoryConfig,
    identity: Identity,
    last: Option<Inventory>,
    last_error: Option<String>,
}

impl Collector {
    /// Creates a collector that has no inventory yet.
    pub fn new(config: InventoryConfig, identity: Identity) -> Self {
        Collector {
            config,
            identity,
            last: None,
            last_error: None,
        }
    }

    /// Config it collects with.
    pub fn config(&self) -> &InventoryConfig {
        &self.config
    }

    /// Returns the last good inventory.
    pub fn current(&self) -> Option<&Inventory> {
        self.last.as_ref()
    }

    /// Message of the last failed refresh, cleared by a good one.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The whole last good inventory as an update, for an observer that
    /// has none or rejected a delta with a base mismatch.
    pub fn full_update(&self) -> Option<InventoryUpdate> {
        self.last.clone().map(InventoryUpdate::Full)
    }

    /// Collects a new inventory and returns what to send: the whole
    /// inventory the first time, a delta after that, and `None` when
    /// nothing an observer shows has changed. On error the last good
    /// inventory stays.
    pub async fn refresh(
        &mut self,
        now: Timestamp,
    ) -> Result<Option<InventoryUpdate>, CollectError> {
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let seq = match &self.last {
            Some(last) => millis.max(last.seq + 1),
            None => millis.max(1),
        };
        let next = match collect(&self.config, &self.identity, now, seq).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(host = %self.identity.host, %error, "inventory refresh failed; keeping the last good inventory");
                self.last_error = Some(error.to_string());
                return Err(error);
            }
        };
        self.last_error = None;

        let update = match &self.last {
            None => Some(InventoryUpdate::Full(next.clone())),
            Some(last) if differs(last, &next) => Some(InventoryUpdate::Delta(last.diff(&next))),
            Some(_) => None,
        };
        match &update {
            Some(_) => self.last = Some(next),
            None => {
                // Keep the sequence number the observer holds, so a later
                // delta still applies; refresh only uptime and time.
                if let Some(last) = &mut self.last {
                    last.uptime_secs = next.uptime_secs;
                    last.time = next.time;
                }
            }
        }
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Writes a private root with os-release, /proc files and a dpkg status
    /// file, and returns a config that reads them.
    fn private_root(dir: &Path, status: &str) -> InventoryConfig {
        fs::create_dir_all(dir.join("proc/sys/kernel")).unwrap();
        fs::write(dir.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        fs::write(dir.join("proc/uptime"), "100.5 200.0\n").unwrap();
        fs::write(
            dir.join("os-release"),
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian 12\"\n",
        )
        .unwrap();
        fs::write(dir.join("status"), status).unwrap();
        InventoryConfig {
            adapter: AdapterKind::Dpkg,
            dpkg_status: dir.join("status"),
            os_release: dir.join("os-release"),
            proc_dir: dir.join("proc"),
            reboot_required: dir.join("reboot-required"),
            arch: "amd64".into(),
            ..InventoryConfig::default()
        }
    }

    fn identity() -> Identity {
        Identity {
            peer: "12D3KooWTest".into(),
            host: "pc-1".into(),
            agent_version: "0.1.0".into(),
        }
    }

    const STATUS_V1: &str =
        "Package: demo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.1-1\n";
    const STATUS_V2: &str =
        "Package: demo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.2-1\n";

    #[tokio::test]
    async fn collector_sends_full_then_delta() {
        let dir = tempfile::tempdir().unwrap();
        let config = private_root(dir.path(), STATUS_V1);
        let mut collector = Collector::new(config, identity());
        let now = Timestamp::from_second(1_700_000_000).unwrap();

        let first = collector.refresh(now).await.expect("collects");
        let Some(InventoryUpdate::Full(inventory)) = first else {
            panic!("expected a full inventory, got {first:?}");
        };
        assert_eq!(inventory.os.id, "debian");
        assert_eq!(inventory.os.kernel, "6.1.0-test");
        assert_eq!(inventory.uptime_secs, 100);
        assert_eq!(inventory.packages.len(), 1);

        let unchanged = collector.refresh(now).await.expect("collects");
        assert_eq!(unchanged, None);

        fs::write(dir.path().join("status"), STATUS_V2).unwrap();
        fs::write(dir.path().join("reboot-required"), "").unwrap();
        let later = collector.refresh(now).await.expect("collects");
        let Some(InventoryUpdate::Delta(delta)) = later else {
            panic!("expected a delta, got {later:?}");
        };
        assert_eq!(delta.base_seq, inventory.seq);
        assert!(delta.seq > inventory.seq);
        assert_eq!(delta.changed.len(), 1);
        assert_eq!(delta.changed[0].version, "1.2-1");
        assert!(delta.reboot_pending);
        let applied = inventory.apply(delta).expect("applies");
        assert_eq!(Some(&applied), collector.current());
    }

    #[tokio::test]
    async fn failed_refresh_keeps_last_good_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let config = private_root(dir.path(), STATUS_V1);
        let mut collector = Collector::new(config, identity());
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        collector.refresh(now).await.expect("collects");
        let good = collector.current().cloned();

        fs::write(dir.path().join("status"), "Package: demo\nbroken line\n").unwrap();
        let err = collector.refresh(now).await.unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(collector.current().cloned(), good);
        assert!(collector.last_error().is_some());
    }

    #[tokio::test]
    async fn command_adapter_with_hanging_command_keeps_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = private_root(dir.path(), "");
        config.adapter = AdapterKind::Command;
        config.command = format!("cat {}", dir.path().join("list.json").display());
        fs::write(
            dir.path().join("list.json"),
            r#"{"packages":[{"name":"demo","version":"1.0"}]}"#,
        )
        .unwrap();
        let mut collector = Collector::new(config.clone(), identity());
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        collector.refresh(now).await.expect("collects");
        assert_eq!(collector.current().unwrap().adapter, "command");

        config.command = "sleep 10".into();
        config.command_timeout_secs = 1;
        collector.config = config;
        let err = collector.refresh(now).await.unwrap_err();
        assert!(matches!(err, CollectError::CommandTimeout { .. }), "{err}");
        assert_eq!(collector.current().unwrap().packages[0].name, "demo");
    }

    #[test]
    fn config_defaults_from_empty_table() {
        let config: InventoryConfig = toml::from_str("").unwrap();
        assert_eq!(config, InventoryConfig::default());
        let config: InventoryConfig =
            toml::from_str("adapter = \"dpkg\"\ndpkg_status = \"/r/var/lib/dpkg/status\"").unwrap();
        assert_eq!(config.adapter, AdapterKind::Dpkg);
    }
}
