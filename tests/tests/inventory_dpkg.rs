//! Three real nodes, each with a private dpkg root that contains a
//! different version of the test package `pmdemo` (1.0, 1.1 and 1.2). A signed `deb`
//! patch to 1.2, whose CVE ids, severity and affected range come from an
//! OSV advisory, is deployed by a policy that selects patches by minimum
//! severity. Only the two nodes below 1.2 install it, with dpkg into their
//! own roots, and a rollback order brings back the versions they had.
//!
//! The observer's inventory and compliance views are read through
//! `patchmesh-signer` at each step. dpkg only ever runs with `--root` on
//! folders inside the test's temporary folder, so the machine's own
//! packages are never touched. The test is skipped when `dpkg` or
//! `dpkg-deb` is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use patchmesh_node::deb::{DebConfig, Dpkg};
use patchmesh_node::inventory::{AdapterKind, InventoryConfig};
use patchmesh_tests::{patch_status, wait_installed, wait_until, Admin, Node, NodeOptions};
use serde_json::Value;

const PACKAGE: &str = "pmdemo";
const FIXED: &str = "1.2";
const PATCH: &str = "pmdemo@1.2";
const POLICY: &str = "pmdemo-baseline";
const ADVISORY_ID: &str = "PMDEMO-2026-0001";
const CVE: &str = "CVE-2026-40001";

/// OSV advisory for `pmdemo`: every version below 1.2 is affected, and the
/// CVSS v3.1 vector scores 9.8, which is critical.
const ADVISORY: &str = r#"{
  "schema_version": "1.6.0",
  "id": "PMDEMO-2026-0001",
  "modified": "2026-01-02T00:00:00Z",
  "published": "2026-01-01T00:00:00Z",
  "aliases": ["CVE-2026-40001"],
  "summary": "remote code execution in pmdemo",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{
    "package": {"ecosystem": "Debian:12", "name": "pmdemo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]
  }]
}"#;

/// os-release of every private root. The advisory's `Debian:12` ecosystem
/// limits the patch to `ID=debian`.
const OS_RELEASE: &str = "ID=debian\nVERSION_ID=\"12\"\n\
                          PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";

/// One simulated machine: a host name, its private dpkg root and the
/// version of `pmdemo` installed there before the test.
struct Machine {
    host: &'static str,
    start_version: &'static str,
    root: PathBuf,
    keep_dir: PathBuf,
}

impl Machine {
    fn status_file(&self) -> PathBuf {
        self.root.join("var/lib/dpkg/status")
    }

    /// Returns the config tables that point the node at this root.
    fn node_options(&self, archives: &Path) -> NodeOptions {
        let inventory = InventoryConfig {
            adapter: AdapterKind::Dpkg,
            dpkg_status: self.status_file(),
            os_release: self.root.join("etc/os-release"),
            reboot_required: self.root.join("var/run/reboot-required"),
            // The node refreshes at most once every 10 seconds.
            refresh_secs: 10,
            ..InventoryConfig::default()
        };
        NodeOptions::new(self.host, "hq")
            .inventory(inventory)
            .deb(self.deb_config(archives))
    }

    fn deb_config(&self, archives: &Path) -> DebConfig {
        DebConfig {
            root: self.root.clone(),
            keep_dir: self.keep_dir.clone(),
            archives: vec![archives.to_path_buf()],
            // Every install in this test must be one that can be rolled back.
            require_previous: true,
            ..DebConfig::default()
        }
    }
}

/// Returns whether `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `PATH` with the sbin folders, where dpkg looks for `ldconfig` and
/// `start-stop-daemon`.
fn dpkg_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/local/sbin:/usr/sbin:/sbin")
}

/// Builds `pmdemo_VERSION_all.deb` in `out`, with no maintainer scripts and
/// one file, `/usr/share/pmdemo/VERSION`.
fn build_deb(work: &Path, out: &Path, version: &str) -> PathBuf {
    let tree = work.join(format!("{PACKAGE}-{version}"));
    fs::create_dir_all(tree.join("DEBIAN")).expect("create DEBIAN");
    fs::create_dir_all(tree.join("usr/share").join(PACKAGE)).expect("create usr/share");
    let control = format!(
        "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n\
         Maintainer: patchmesh tests <tests@example.invalid>\n\
         Description: package for the patchmesh inventory tests\n"
    );
    fs::write(tree.join("DEBIAN/control"), control).expect("write control");
    fs::write(
        tree.join("usr/share").join(PACKAGE).join("VERSION"),
        format!("{version}\n"),
    )
    .expect("write VERSION");

    let deb = out.join(format!("{PACKAGE}_{version}_all.deb"));
    let output = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        output.status.success(),
        "dpkg-deb --build {version} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    deb
}

/// Installs `deb` into the private root `root` with dpkg.
fn dpkg_install(root: &Path, deb: &Path) {
    let admin_dir = root.join("var/lib/dpkg");
    let output = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--force-not-root")
        .arg(format!("--admindir={}", admin_dir.display()))
        .arg(format!("--log={}", root.join("setup-dpkg.log").display()))
        .arg("-i")
        .arg(deb)
        .env("PATH", dpkg_path())
        .output()
        .expect("dpkg runs");
    assert!(
        output.status.success(),
        "dpkg -i {} into {} failed: {}{}",
        deb.display(),
        root.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns the installed version of `pmdemo` in dpkg's status file, read
/// here without the node's parser.
fn status_version(status_file: &Path) -> Option<String> {
    let text = fs::read_to_string(status_file).ok()?;
    text.split("\n\n")
        .find_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            };
            let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
            (field("Package") == Some(PACKAGE) && installed).then(|| field("Version"))?
        })
        .map(str::to_string)
}

/// Returns the version in the file the package ships, as unpacked in the
/// root.
fn shipped_version(root: &Path) -> Option<String> {
    let path = root.join("usr/share").join(PACKAGE).join("VERSION");
    fs::read_to_string(path).ok().map(|t| t.trim().to_string())
}

/// Returns the entry of `host` in `patchmesh-signer inventory --json`.
fn host_entry<'a>(inventory: &'a Value, host: &str) -> &'a Value {
    inventory["hosts"]
        .as_array()
        .expect("hosts array")
        .iter()
        .find(|entry| entry["host"] == host)
        .unwrap_or_else(|| panic!("host {host} missing from {inventory}"))
}

/// Returns the version of `pmdemo` in an inventory entry's package list.
fn listed_version(entry: &Value) -> Option<&str> {
    entry["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == PACKAGE)?["version"]
        .as_str()
}

/// Returns the patch names in an inventory entry's `missing` list.
fn missing_patches(entry: &Value) -> Vec<&str> {
    entry["missing"]
        .as_array()
        .expect("missing array")
        .iter()
        .filter_map(|m| m["patch"].as_str())
        .collect()
}

/// Returns `(compliant, targeted)` of `POLICY` in
/// `patchmesh-signer compliance --json`.
fn policy_share(compliance: &Value) -> Option<(u64, u64)> {
    let share = compliance["policies"]
        .as_array()?
        .iter()
        .find(|share| share["name"] == POLICY)?;
    Some((share["compliant"].as_u64()?, share["targeted"].as_u64()?))
}

#[test]
fn deb_patch_installs_where_missing() {
    if !runs("dpkg") || !runs("dpkg-deb") {
        eprintln!("skipped: dpkg and dpkg-deb are needed to build and install test packages");
        return;
    }
    let work = tempfile::tempdir().expect("temporary folder");
    let archives = work.path().join("archives");
    fs::create_dir_all(&archives).expect("create archives");
    let debs: Vec<PathBuf> = ["1.0", "1.1", FIXED]
        .iter()
        .map(|version| build_deb(work.path(), &archives, version))
        .collect();

    // Each machine gets an empty dpkg database, an os-release file and its
    // starting version of the package.
    let machines: Vec<Machine> = [("a", "1.0"), ("b", "1.1"), ("c", FIXED)]
        .into_iter()
        .map(|(host, start_version)| {
            let dir = work.path().join(host);
            let machine = Machine {
                host,
                start_version,
                root: dir.join("root"),
                keep_dir: dir.join("kept"),
            };
            Dpkg::new(&machine.deb_config(&archives), &dir)
                .init_admin_dir()
                .expect("create the dpkg admin folder");
            fs::create_dir_all(machine.root.join("etc")).expect("create etc");
            fs::write(machine.root.join("etc/os-release"), OS_RELEASE).expect("write os-release");
            let deb = archives.join(format!("{PACKAGE}_{start_version}_all.deb"));
            dpkg_install(&machine.root, &deb);
            assert_eq!(
                status_version(&machine.status_file()).as_deref(),
                Some(start_version),
                "{host} before the test"
            );
            machine
        })
        .collect();
    let [a, b, c] = &machines[..] else {
        unreachable!("three machines")
    };

    // Sign the fixed package as a deb patch, filled from the advisory.
    let admin = Admin::new();
    fs::write(admin.path("advisory.json"), ADVISORY).expect("write advisory");
    let payload = fs::read(&debs[2]).expect("read the fixed package");
    let patch = admin.add_patch_with(
        PACKAGE,
        FIXED,
        &payload,
        &["--deb", PACKAGE, "--advisory", "advisory.json"],
    );
    assert_eq!(patch.reference, PATCH);
    let expires = Timestamp::now() + SignedDuration::from_hours(24);
    let policy = admin.sign_policy_text(
        POLICY,
        &format!(
            "id = \"{POLICY}\"\nversion = 1\nexpires = \"{expires}\"\n\n\
             [content]\nmin_severity = \"important\"\n\n\
             [approval]\nmode = \"manual\"\n"
        ),
    );

    // Node a is also the observer the admin's views read.
    let observer = Node::start(&admin, a.node_options(&archives).observer());
    let others: Vec<Node> = [b, c]
        .into_iter()
        .map(|machine| Node::start(&admin, machine.node_options(&archives).bootstrap(&observer)))
        .collect();
    observer.wait_for_peers(2);

    // The observer receives each node's inventory with its starting version.
    let inventory = wait_until(
        "every node's inventory at the observer",
        Duration::from_secs(30),
        || {
            let view = admin.signer_json(&["inventory", "--node", &observer.url]);
            let all = machines.iter().all(|m| {
                view["hosts"].as_array().is_some_and(|hosts| {
                    hosts.iter().any(|entry| {
                        entry["host"] == m.host && listed_version(entry) == Some(m.start_version)
                    })
                })
            });
            all.then_some(view)
        },
    );
    for machine in &machines {
        let entry = host_entry(&inventory, machine.host);
        assert_eq!(entry["os"]["id"], "debian", "os of {}", machine.host);
        assert_eq!(entry["os"]["version_id"], "12", "os of {}", machine.host);
        assert_eq!(entry["package_count"], 1, "packages of {}", machine.host);
        assert_eq!(entry["missing"], serde_json::json!([]), "{}", machine.host);
    }

    // With the manifest held, a and b miss the patch, with the severity
    // and ids from the advisory, and c does not.
    admin.publish_ok(&observer.url, &[&patch.dir]);
    let inventory = wait_until("a and b to miss the patch", Duration::from_secs(30), || {
        let view = admin.signer_json(&["inventory", "--node", &observer.url]);
        let missing = [a, b]
            .iter()
            .all(|m| missing_patches(host_entry(&view, m.host)) == [PATCH]);
        missing.then_some(view)
    });
    for machine in [a, b] {
        let missing = &host_entry(&inventory, machine.host)["missing"][0];
        assert_eq!(missing["severity"], "critical", "{}", machine.host);
        let ids: Vec<&str> = missing["cves"]
            .as_array()
            .expect("cves array")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(ids, [ADVISORY_ID, CVE], "ids missing on {}", machine.host);
        assert_eq!(missing["released"], "2026-01-01", "{}", machine.host);
        assert_eq!(
            host_entry(&inventory, machine.host)["missing_by_severity"]["critical"],
            1,
            "{}",
            machine.host
        );
    }
    assert!(
        missing_patches(host_entry(&inventory, c.host)).is_empty(),
        "c runs the fixed version: {inventory}"
    );

    // The policy targets all three hosts; before approval only c complies.
    admin.publish_ok(&observer.url, &[&policy]);
    let compliance = wait_until("compliance of the policy", Duration::from_secs(30), || {
        let view = admin.signer_json(&["compliance", "--node", &observer.url]);
        policy_share(&view).is_some().then_some(view)
    });
    assert_eq!(policy_share(&compliance), Some((1, 3)), "{compliance}");

    let approval = admin.sign_action(&["approve", "--policy", POLICY], "approve.bin");
    admin.publish_ok(&observer.url, &[&approval]);
    wait_installed(&observer, &["a", "b"], PATCH, Duration::from_secs(60));
    for machine in [a, b] {
        assert_eq!(
            status_version(&machine.status_file()).as_deref(),
            Some(FIXED),
            "dpkg status of {} after install",
            machine.host
        );
        assert_eq!(
            shipped_version(&machine.root).as_deref(),
            Some(FIXED),
            "unpacked file in {} after install",
            machine.host
        );
    }

    // c received the approval and still took no step: the patch is fixed
    // there, so the severity-selected policy gives it no track.
    let node_c = &others[1];
    wait_until("c to receive the approval", Duration::from_secs(30), || {
        node_c
            .log()
            .lines()
            .any(|line| line.contains("object received") && line.contains("approval"))
            .then_some(())
    });
    assert!(
        !node_c.log().contains("patch targets this node"),
        "c tracked the patch:\n{}",
        node_c.log()
    );
    let status = observer.status().expect("observer status");
    assert_eq!(
        patch_status(&status, "c", PATCH),
        None,
        "c reported the patch"
    );
    assert_eq!(
        status_version(&c.status_file()).as_deref(),
        Some(FIXED),
        "dpkg status of c"
    );
    assert!(
        !c.root.join("var/lib/dpkg/patchmesh-dpkg.log").exists(),
        "the node ran dpkg in c's root"
    );

    // Every targeted host has the patch, so compliance is complete.
    let compliance = wait_until("compliance of 100 %", Duration::from_secs(30), || {
        let view = admin.signer_json(&["compliance", "--node", &observer.url]);
        (policy_share(&view) == Some((3, 3))).then_some(view)
    });
    assert_eq!(compliance["overall"]["percent"], 100.0, "{compliance}");
    assert_eq!(
        compliance["overall"]["oldest_missing_critical"],
        Value::Null,
        "{compliance}"
    );

    // The inventories follow the install at the next refresh.
    wait_until(
        "inventories to list the fixed version",
        Duration::from_secs(30),
        || {
            let view = admin.signer_json(&["inventory", "--node", &observer.url]);
            machines
                .iter()
                .all(|m| {
                    let entry = host_entry(&view, m.host);
                    listed_version(entry) == Some(FIXED) && missing_patches(entry).is_empty()
                })
                .then_some(())
        },
    );

    // A rollback order reinstalls the kept previous packages.
    let rollback = admin.sign_action(
        &["rollback", "--policy", POLICY, "--patch", PATCH],
        "rollback.bin",
    );
    admin.publish_ok(&observer.url, &[&rollback]);
    wait_until(
        "a and b to report the patch rolled back",
        Duration::from_secs(60),
        || {
            let status = observer.status()?;
            ["a", "b"]
                .iter()
                .all(|host| {
                    patch_status(&status, host, PATCH).is_some_and(|s| s["state"] == "rolled_back")
                })
                .then_some(())
        },
    );
    for machine in [a, b] {
        assert_eq!(
            status_version(&machine.status_file()).as_deref(),
            Some(machine.start_version),
            "dpkg status of {} after rollback",
            machine.host
        );
        assert_eq!(
            shipped_version(&machine.root).as_deref(),
            Some(machine.start_version),
            "unpacked file in {} after rollback",
            machine.host
        );
    }
    assert_eq!(
        status_version(&c.status_file()).as_deref(),
        Some(FIXED),
        "dpkg status of c after rollback"
    );

    // The package view shows the old versions again, and a and b count as
    // missing the patch.
    wait_until(
        "the package view to show the rolled-back versions",
        Duration::from_secs(30),
        || {
            let view =
                admin.signer_json(&["inventory", "--node", &observer.url, "--package", PACKAGE]);
            let hosts = view["hosts"].as_array()?;
            machines
                .iter()
                .all(|m| {
                    hosts
                        .iter()
                        .any(|row| row["host"] == m.host && row["version"] == m.start_version)
                })
                .then_some(())
        },
    );
    let compliance = admin.signer_json(&["compliance", "--node", &observer.url]);
    assert_eq!(policy_share(&compliance), Some((1, 3)), "{compliance}");
    assert_eq!(
        compliance["overall"]["oldest_missing_critical"]["patch"], PATCH,
        "{compliance}"
    );
}
