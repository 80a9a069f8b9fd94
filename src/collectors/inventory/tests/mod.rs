use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use std::process::Command;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const DPKG_STATUS: &str = "\
Package: openssl
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: foreign
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit
 This package contains the openssl binary.
 .
 Package: not-a-package

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2

Package: libssl3
Status: install ok installed
Architecture: armhf
Source: openssl
Version: 3.0.11-1~deb12u2

Package: telnet
Status: deinstall ok config-files
Architecture: amd64
Version: 0.17+2.4-2

Package: half
Status: install reinstreq half-installed
Architecture: all
Version: 1.0

Package: noversion
Status: install ok installed

garbage without a colon
Package:
Version: 1
";

fn names(v: &[Package]) -> Vec<(String, String)> {
    v.iter()
        .map(|p| (p.name.clone(), p.architecture.clone()))
        .collect()
}

#[test]
fn dpkg_status_keeps_installed_packages_with_arch_and_source() {
    let p = parse_deb_status(DPKG_STATUS, Manager::Dpkg);
    assert_eq!(
        names(&p),
        [
            ("openssl".into(), "amd64".into()),
            ("libssl3".into(), "amd64".into()),
            ("libssl3".into(), "armhf".into()),
            ("half".into(), "all".into()),
        ]
    );
    assert_eq!(p[0].version, "3.0.11-1~deb12u2");
    assert_eq!(p[0].source, None);
    assert_eq!(p[1].source.as_deref(), Some("openssl"));
}

#[test]
fn opkg_status_without_status_lines_counts_as_installed() {
    let text = "Package: busybox\nVersion: 1.36.1-r0\nArchitecture: cortexa7t2hf-neon-vfpv4\n\n\
                Package: dropbear\nVersion: 2022.83-r0\nStatus: install user installed\nArchitecture: cortexa7t2hf-neon-vfpv4\n";
    let p = parse_deb_status(text, Manager::Opkg);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.manager == Manager::Opkg));
    assert_eq!(p[1].name, "dropbear");
}

#[test]
fn apk_installed_db() {
    let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\no:musl\nm:Maintainer\n\n\
                P:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nF:lib\nR:libcrypto.so.3\n\n\
                P:broken\n\n";
    let p = parse_apk(text);
    assert_eq!(
        names(&p),
        [
            ("musl".into(), "x86_64".into()),
            ("libcrypto3".into(), "x86_64".into())
        ]
    );
    assert_eq!(
        p[0].source, None,
        "origin equal to the name is not repeated"
    );
    assert_eq!(p[1].source.as_deref(), Some("openssl"));
}

#[test]
fn hostile_databases_are_bounded_and_never_panic() {
    let long = "x".repeat(100_000);
    let text = format!(
        "Package: {long}\nVersion: {long}\nArchitecture: é{long}\n\n\u{0}\u{ffff}:\n\nPackage: ok\nVersion: 1\n"
    );
    let p = parse_deb_status(&text, Manager::Dpkg);
    assert_eq!(p.len(), 2);
    assert!(p[0].name.len() <= 256 && p[0].architecture.len() <= 256);
    for bytes in [&b"\xff\xfe:\n\n"[..], b"P:\nV:\n", b"::::\n\n\n\n", b""] {
        let text = String::from_utf8_lossy(bytes);
        let _ = parse_deb_status(&text, Manager::Dpkg);
        let _ = parse_apk(&text);
    }
}

fn inventory(packages: &[(&str, &str)]) -> Inventory {
    Inventory {
        managers: vec![Manager::Dpkg],
        packages: packages
            .iter()
            .map(|(n, v)| {
                let p = Package {
                    manager: Manager::Dpkg,
                    name: n.to_string(),
                    version: v.to_string(),
                    architecture: "amd64".into(),
                    source: None,
                };
                (p.key(), p)
            })
            .collect(),
        ..Inventory::default()
    }
}

#[test]
fn diff_names_installed_removed_and_changed_versions() {
    let old = inventory(&[("openssl", "3.0.11"), ("telnet", "0.17"), ("bash", "5.2")]);
    let new = inventory(&[("openssl", "3.0.13"), ("bash", "5.2"), ("nmap", "7.93")]);
    let mut got: Vec<(SoftwareOperation, String, String, Option<String>)> = diff(&old, &new)
        .into_iter()
        .map(|c| (c.operation, c.name, c.version, c.previous_version))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        [
            (
                SoftwareOperation::Installed,
                "nmap".into(),
                "7.93".into(),
                None
            ),
            (
                SoftwareOperation::VersionChanged,
                "openssl".into(),
                "3.0.13".into(),
                Some("3.0.11".into())
            ),
            (
                SoftwareOperation::Removed,
                "telnet".into(),
                "0.17".into(),
                None
            ),
        ]
    );
    // A manager not read this time is not reported as everything removed.
    let unread = Inventory::default();
    assert!(diff(&old, &unread).is_empty());
}

#[test]
fn versions_side_by_side_are_installed_and_removed_one_by_one() {
    // rpm keeps several kernels: a new one beside the old is Installed, not VersionChanged.
    let one = inventory(&[("kernel", "6.1"), ("bash", "5.2")]);
    let mut two = inventory(&[("kernel", "6.2"), ("bash", "5.2")]);
    two.packages.extend(one.packages.clone());
    let ops = |a: &Inventory, b: &Inventory| -> Vec<(SoftwareOperation, String, Option<String>)> {
        diff(a, b)
            .into_iter()
            .map(|c| (c.operation, c.version, c.previous_version))
            .collect()
    };
    assert_eq!(two.packages.len(), 3);
    assert_eq!(
        ops(&one, &two),
        [(SoftwareOperation::Installed, "6.2".into(), None)]
    );
    assert_eq!(
        ops(&two, &one),
        [(SoftwareOperation::Removed, "6.2".into(), None)]
    );
    // One replaced by another in one transaction reads as an upgrade.
    let mut three = inventory(&[("kernel", "6.3"), ("bash", "5.2")]);
    three
        .packages
        .extend(inventory(&[("kernel", "6.2")]).packages);
    assert_eq!(
        ops(&two, &three),
        [(
            SoftwareOperation::VersionChanged,
            "6.3".into(),
            Some("6.1".into())
        )]
    );
}

#[test]
fn the_state_file_round_trips() {
    let inv = inventory(&[("openssl", "3.0.11"), ("bash", "5.2")]);
    let text = serde_json::to_vec(&inv).unwrap();
    let back: Inventory = serde_json::from_slice(&text).unwrap();
    assert_eq!(back, inv);
}

#[test]
fn the_real_host_database_is_read() {
    // This machine is Debian (scripts/test.sh needs apt): dpkg's own database lists dpkg.
    let inv = read_inventory(&HostRoot::default());
    assert!(
        inv.managers.contains(&Manager::Dpkg),
        "{:?}",
        inv.unreadable
    );
    assert!(
        inv.packages
            .values()
            .any(|p| p.name == "dpkg" && !p.version.is_empty()),
        "dpkg lists itself"
    );
    assert!(inv.packages.len() > 50, "{} packages", inv.packages.len());
    let events = SoftwareInventoryCollector.collect(&HostRoot::default());
    assert_eq!(events.len(), 1);
    match &events[0].payload {
        Payload::SoftwareInventory(r) => {
            assert_eq!(r.len(), inv.packages.len());
            assert!(r[0].extra_details["Managers"].contains("dpkg"));
        }
        other => panic!("{other:?}"),
    }
}

/// A host root whose dpkg database is written by the real dpkg (`--root`), as on a device.
struct Host {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
    build: tempfile::TempDir,
}

impl Host {
    /// Waits (10 s at most) until the watcher has saved its first look at the inventory.
    async fn wait_first_look_saved(&self, tick: Duration) {
        let saved = self.state.path().join(STATE_FILE);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !saved.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the first look is saved"
            );
            tokio::time::sleep(tick).await;
        }
    }

    fn new() -> Host {
        let h = Host {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            build: tempfile::tempdir().unwrap(),
        };
        let admin = h.root.path().join("var/lib/dpkg");
        for d in ["updates", "info", "triggers"] {
            std::fs::create_dir_all(admin.join(d)).unwrap();
        }
        std::fs::write(admin.join("status"), "").unwrap();
        h
    }

    /// Builds a package `name` `version` (one file under /usr/share) with dpkg-deb.
    fn deb(&self, name: &str, version: &str) -> std::path::PathBuf {
        let dir = self.build.path().join(format!("{name}-{version}"));
        std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(dir.join(format!("usr/share/{name}"))).unwrap();
        std::fs::write(dir.join(format!("usr/share/{name}/version")), version).unwrap();
        std::fs::write(
            dir.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: test <t@example.invalid>\nDescription: edgeguard test package\n"),
        )
        .unwrap();
        let deb = self.build.path().join(format!("{name}_{version}_all.deb"));
        let out = Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&dir)
            .arg(&deb)
            .output()
            .expect("dpkg-deb runs (Debian's dpkg)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        deb
    }

    fn dpkg(&self, args: &[&str]) {
        let out = Command::new("dpkg")
            .arg(format!("--root={}", self.root.path().display()))
            .args([
                "--force-not-root",
                "--force-script-chrootless",
                "--force-unsafe-io",
            ])
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("dpkg runs");
        assert!(
            out.status.success(),
            "dpkg {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn context(&self) -> (Context, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(64);
        let (_cfg, config) = watch::channel(Arc::new(Config::default()));
        (
            Context {
                host: HostRoot::new(self.root.path()),
                events: tx,
                metrics: Arc::new(Metrics::for_tests()),
                config,
                cancel: CancellationToken::new(),
                state_dir: self.state.path().to_path_buf(),
            },
            rx,
        )
    }
}

async fn next_changes(rx: &mut mpsc::Receiver<Event>) -> Vec<(SoftwareOperation, String, String)> {
    let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a SoftwareChange within 30 s")
        .expect("the watcher runs");
    match event.payload {
        Payload::SoftwareChange(c) => {
            let mut v: Vec<_> = c
                .into_iter()
                .map(|c| (c.operation, c.name, c.version))
                .collect();
            v.sort_by(|a, b| a.1.cmp(&b.1));
            v
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_watcher_reports_what_dpkg_installs_removes_and_upgrades_also_across_restarts() {
    let h = Host::new();
    let a1 = h.deb("eg-alpha", "1.0");
    let a2 = h.deb("eg-alpha", "2.0");
    let b = h.deb("eg-beta", "0.1");
    let tick = Duration::from_millis(50);
    let (ctx, mut rx) = h.context();
    let task = tokio::spawn(watch_every(ctx.clone(), tick));
    // First start ever: nothing reported, the inventory is saved.
    h.wait_first_look_saved(tick).await;
    assert!(rx.try_recv().is_err());

    h.dpkg(&["-i", a1.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(
        next_changes(&mut rx).await,
        [
            (
                SoftwareOperation::Installed,
                "eg-alpha".into(),
                "1.0".into()
            ),
            (SoftwareOperation::Installed, "eg-beta".into(), "0.1".into()),
        ]
    );
    h.dpkg(&["-i", a2.to_str().unwrap()]);
    assert_eq!(
        next_changes(&mut rx).await,
        [(
            SoftwareOperation::VersionChanged,
            "eg-alpha".into(),
            "2.0".into()
        )]
    );

    // Stopped, then a removal: reported once at the next start.
    ctx.cancel.cancel();
    task.await.unwrap();
    h.dpkg(&["--purge", "eg-beta"]);
    let (ctx, mut rx) = h.context();
    let task = tokio::spawn(watch_every(ctx.clone(), tick));
    assert_eq!(
        next_changes(&mut rx).await,
        [(SoftwareOperation::Removed, "eg-beta".into(), "0.1".into())]
    );
    // Nothing more while nothing changes (a few intervals).
    let quiet = tokio::time::timeout(tick * 10, rx.recv()).await;
    assert!(quiet.is_err(), "no repeated report: {quiet:?}");
    ctx.cancel.cancel();
    task.await.unwrap();
}

#[test]
fn ndb_is_named_not_silently_ignored_and_a_packages_file_not_berkeley_db_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap();
    std::fs::write(root.path().join("var/lib/rpm/Packages.db"), [0u8; 4096]).unwrap();
    let events = SoftwareInventoryCollector.collect(&HostRoot::new(root.path()));
    // No package read, but the snapshot is not a claim of "no packages" either.
    assert_eq!(events.len(), 1);
    assert!(events[0].payload.is_empty());
    let inv = read_inventory(&HostRoot::new(root.path()));
    assert_eq!(
        inv.unreadable,
        [format!("/var/lib/rpm/Packages.db: {UNSUPPORTED}")]
    );
    // A `Packages` is read by its magic: anything but a BerkeleyDB hash file is an error.
    std::fs::remove_file(root.path().join("var/lib/rpm/Packages.db")).unwrap();
    std::fs::write(root.path().join("var/lib/rpm/Packages"), [0u8; 4096]).unwrap();
    let inv = read_inventory(&HostRoot::new(root.path()));
    assert_eq!(
        inv.unreadable,
        ["/var/lib/rpm/Packages: not a BerkeleyDB database"]
    );
    assert!(inv.managers.is_empty());
    // A broken sqlite database is an error, not "unsupported"; the Packages beside it is not
    // read.
    std::fs::write(
        root.path().join("var/lib/rpm/rpmdb.sqlite"),
        b"SQLite format 3\0",
    )
    .unwrap();
    let inv = read_inventory(&HostRoot::new(root.path()));
    assert_eq!(
        inv.unreadable,
        ["/var/lib/rpm/rpmdb.sqlite: not an SQLite 3 database"]
    );
    assert!(inv.managers.is_empty());
}

mod bdb;
mod rpm;
mod sqlite;
