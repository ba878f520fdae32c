//! The `deb` installer against real dpkg, in private roots made in
//! temporary folders. Nothing here touches the machine's own packages:
//! every dpkg call gets `--root`, `--admindir` and `--log` inside the
//! temporary folder. Skipped with a message where dpkg is not installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use patchmesh_node::deb::{DebConfig, DebError, Dpkg};

fn dpkg_available() -> bool {
    let found = ["dpkg", "dpkg-deb"].iter().all(|program| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if !found {
        eprintln!("skipped: dpkg or dpkg-deb is not installed");
    }
    found
}

/// Builds `pm-demo` at `version` with one file holding the version.
fn build_deb(dir: &Path, package: &str, version: &str) -> PathBuf {
    let tree = dir.join(format!("tree-{package}-{version}"));
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    fs::create_dir_all(tree.join("usr/share/pm-demo")).unwrap();
    fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: patchmesh tests <tests@example.invalid>\nDescription: test package\n"
        ),
    )
    .unwrap();
    fs::write(tree.join("usr/share/pm-demo/version"), version).unwrap();
    let deb = dir.join(format!("{package}_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(status.status.success(), "{status:?}");
    deb
}

fn private_dpkg(dir: &Path, archives: Vec<PathBuf>) -> Dpkg {
    let config = DebConfig {
        root: dir.join("root"),
        archives,
        timeout_secs: 60,
        ..DebConfig::default()
    };
    let dpkg = Dpkg::new(&config, &dir.join("data"));
    dpkg.init_admin_dir().unwrap();
    dpkg
}

fn installed_file(dir: &Path) -> String {
    fs::read_to_string(dir.join("root/usr/share/pm-demo/version")).unwrap_or_default()
}

#[tokio::test]
async fn upgrade_then_rollback_restores_old_version() {
    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = build_deb(dir.path(), "pm-demo", "1.1-1");
    let new = build_deb(dir.path(), "pm-demo", "1.2-1");

    // The old version came from the operating system's archive folder.
    let archive = dir.path().join("archive");
    fs::create_dir_all(&archive).unwrap();
    fs::copy(&old, archive.join("pm-demo_1.1-1_all.deb")).unwrap();
    let dpkg = private_dpkg(dir.path(), vec![archive]);
    dpkg.install("pm-demo", &old).await.expect("first install");
    assert_eq!(installed_file(dir.path()), "1.1-1");

    let record = dpkg.install("pm-demo", &new).await.expect("upgrade");
    assert_eq!(record.version, "1.2-1");
    assert_eq!(record.previous_version.as_deref(), Some("1.1-1"));
    assert!(record.previous_deb.is_some());
    assert_eq!(installed_file(dir.path()), "1.2-1");
    assert_eq!(
        dpkg.installed_version("pm-demo", "all").unwrap().as_deref(),
        Some("1.2-1")
    );

    dpkg.rollback(&record).await.expect("rollback");
    assert_eq!(installed_file(dir.path()), "1.1-1");
    assert_eq!(
        dpkg.installed_version("pm-demo", "all").unwrap().as_deref(),
        Some("1.1-1")
    );
}

#[tokio::test]
async fn rollback_of_new_package_removes_it() {
    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path(), "pm-demo", "1.0-1");
    let dpkg = private_dpkg(dir.path(), vec![]);
    let record = dpkg.install("pm-demo", &deb).await.expect("install");
    assert_eq!(record.previous_version, None);
    dpkg.rollback(&record).await.expect("rollback");
    assert_eq!(dpkg.installed_version("pm-demo", "all").unwrap(), None);
    assert!(!dir.path().join("root/usr/share/pm-demo/version").exists());
}

#[tokio::test]
async fn missing_previous_package_blocks_rollback() {
    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = build_deb(dir.path(), "pm-demo", "1.1-1");
    let new = build_deb(dir.path(), "pm-demo", "1.2-1");

    // Install the old version with plain dpkg, so no copy of it is kept.
    let root = dir.path().join("root");
    let dpkg = private_dpkg(dir.path(), vec![]);
    let status = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .arg(format!("--log={}", dir.path().join("dpkg.log").display()))
        .arg("--force-not-root")
        .arg("-i")
        .arg(&old)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");

    let record = dpkg.install("pm-demo", &new).await.expect("upgrade");
    assert_eq!(record.previous_deb, None);
    let err = dpkg.rollback(&record).await.unwrap_err();
    assert!(matches!(err, DebError::NoPrevious { .. }), "{err}");
    assert!(err.to_string().contains("\"1.1-1\""), "{err}");

    // With require_previous the upgrade itself is rejected.
    let strict = Dpkg::new(
        &DebConfig {
            root: root.clone(),
            require_previous: true,
            archives: vec![],
            keep_dir: dir.path().join("other-keep"),
            ..DebConfig::default()
        },
        dir.path(),
    );
    let err = strict.install("pm-demo", &old).await.unwrap_err();
    assert!(matches!(err, DebError::NoPrevious { .. }), "{err}");
}

#[tokio::test]
async fn package_name_must_match_manifest() {
    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path(), "pm-other", "1.0-1");
    let dpkg = private_dpkg(dir.path(), vec![]);
    let err = dpkg.install("pm-demo", &deb).await.unwrap_err();
    assert!(matches!(err, DebError::WrongPackage { .. }), "{err}");
    assert_eq!(dpkg.installed_version("pm-other", "all").unwrap(), None);
}

#[tokio::test]
async fn broken_deb_fails_with_dpkg_output() {
    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("broken.deb");
    fs::write(&deb, b"not an archive").unwrap();
    let dpkg = private_dpkg(dir.path(), vec![]);
    let err = dpkg.install("pm-demo", &deb).await.unwrap_err();
    assert!(matches!(err, DebError::Exit { .. }), "{err}");
}

#[tokio::test]
async fn inventory_sees_install_and_rollback() {
    use jiff::Timestamp;
    use patchmesh_node::inventory::applicability::evaluate;
    use patchmesh_node::inventory::{AdapterKind, Collector, Identity, InventoryConfig};
    use patchmesh_protocol::inventory::InventoryUpdate;
    use patchmesh_protocol::manifest::{Applicability, PackageFix};

    if !dpkg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = build_deb(dir.path(), "pm-demo", "1.1-1");
    let new = build_deb(dir.path(), "pm-demo", "1.2-1");
    let dpkg = private_dpkg(dir.path(), vec![]);
    dpkg.install("pm-demo", &old).await.expect("first install");

    // OS facts come from files in the temporary folder too.
    let proc_dir = dir.path().join("proc");
    fs::create_dir_all(proc_dir.join("sys/kernel")).unwrap();
    fs::write(proc_dir.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
    fs::write(proc_dir.join("uptime"), "5.0 5.0\n").unwrap();
    fs::write(dir.path().join("os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    let config = InventoryConfig {
        adapter: AdapterKind::Dpkg,
        dpkg_status: dpkg.status_file(),
        os_release: dir.path().join("os-release"),
        proc_dir,
        reboot_required: dir.path().join("reboot-required"),
        arch: "amd64".into(),
        ..InventoryConfig::default()
    };
    let identity = Identity {
        peer: "12D3KooWTest".into(),
        host: "pc-1".into(),
        agent_version: "0".into(),
    };
    let mut collector = Collector::new(config, identity);
    let fix = Applicability {
        os: vec!["debian".into()],
        packages: vec![PackageFix {
            package: "pm-demo".into(),
            introduced: None,
            fixed: "1.2".into(),
        }],
        ..Applicability::default()
    };

    let now = Timestamp::now();
    collector.refresh(now).await.expect("collects");
    let before = collector.current().unwrap().clone();
    assert!(evaluate(&fix, &before).unwrap().needs_install());

    let record = dpkg.install("pm-demo", &new).await.expect("upgrade");
    let update = collector.refresh(now).await.expect("collects");
    assert!(
        matches!(update, Some(InventoryUpdate::Delta(_))),
        "{update:?}"
    );
    assert!(!evaluate(&fix, collector.current().unwrap())
        .unwrap()
        .needs_install());

    dpkg.rollback(&record).await.expect("rollback");
    collector.refresh(now).await.expect("collects");
    assert!(evaluate(&fix, collector.current().unwrap())
        .unwrap()
        .needs_install());
}
