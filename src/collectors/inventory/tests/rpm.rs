//! rpm: header blobs (crafted and hostile) and sqlite databases written by the real rpm
//! (`rpmbuild` builds the packages, `rpm --justdb` installs them into a temporary database).

use super::super::rpm::{parse_header, source_name};
use super::super::sqlite::{Db, Value, column};
use super::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One entry of a crafted header: tag, type, data.
type Entry<'a> = (u32, u32, &'a [u8]);

/// A header blob as rpm stores it in its database (intro, index, data store).
fn header(entries: &[Entry]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (tag, ty, value) in entries {
        if *ty == 4 {
            while data.len() % 4 != 0 {
                data.push(0);
            }
        }
        for v in [*tag, *ty, data.len() as u32, 1] {
            index.extend_from_slice(&v.to_be_bytes());
        }
        data.extend_from_slice(value);
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    blob.extend(index);
    blob.extend(data);
    blob
}

#[test]
fn a_header_gives_name_epoch_version_release_arch_and_source() {
    let blob = header(&[
        (63, 7, &[0u8; 16]), // a region tag, skipped
        (1000, 6, b"openssl\0"),
        (1001, 6, b"3.0.7\0"),
        (1002, 6, b"25.fc38\0"),
        (1003, 4, &1u32.to_be_bytes()),
        (1022, 6, b"x86_64\0"),
        (1044, 6, b"openssl-3.0.7-25.fc38.src.rpm\0"),
        (1011, 6, b"Fedora Project\0"),
    ]);
    let p = parse_header(&blob).unwrap();
    assert_eq!(
        (p.manager, &*p.name, &*p.version, &*p.architecture, p.source),
        (Manager::Rpm, "openssl", "1:3.0.7-25.fc38", "x86_64", None)
    );
    // gpg-pubkey: no epoch, no arch; a library from another source package; a later entry
    // (appended after the immutable region) replaces an earlier one.
    let blob = header(&[
        (1000, 6, b"libssl\0"),
        (1001, 6, b"1.0\0"),
        (1002, 9, b"2\0"),
        (1044, 6, b"openssl-1.0-2.src.rpm\0"),
        (1001, 6, b"1.1\0"),
    ]);
    let p = parse_header(&blob).unwrap();
    assert_eq!(
        (&*p.version, &*p.architecture, p.source.as_deref()),
        ("1.1-2", "", Some("openssl"))
    );
    assert_eq!(source_name("a-b-c-1.2-3.el9.nosrc.rpm"), Some("a-b-c"));
    assert_eq!(source_name("weird.src.rpm"), None);
    assert_eq!(source_name("x.rpm"), None);
}

#[test]
fn hostile_headers_are_errors_never_panics() {
    let good = header(&[
        (1000, 6, b"eg\0"),
        (1001, 6, b"1\0"),
        (1002, 6, b"1\0"),
        (1003, 4, &7u32.to_be_bytes()),
        (1022, 6, b"noarch\0"),
    ]);
    assert_eq!(parse_header(&good).unwrap().version, "7:1-1");
    for cut in 0..good.len() {
        assert!(parse_header(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = good.clone();
    for at in 0..good.len() {
        for bit in [0x01, 0x80, 0xff] {
            flipped[at] ^= bit;
            if let Ok(p) = parse_header(&flipped) {
                assert!(!p.name.is_empty() && p.name.len() <= 256);
            }
            flipped[at] ^= bit;
        }
    }
    let absurd = |il: u32, dl: u32| {
        let mut b = good.clone();
        b[..4].copy_from_slice(&il.to_be_bytes());
        b[4..8].copy_from_slice(&dl.to_be_bytes());
        parse_header(&b)
    };
    for (il, dl) in [
        (0, 10),
        (u32::MAX, 10),
        (0x1_0000, 0),
        (5, u32::MAX),
        (5, 0x0fff_ffff),
    ] {
        assert!(absurd(il, dl).is_err(), "il {il} dl {dl}");
    }
    // Strings without their NUL, an epoch of the wrong type, a name that is not a string.
    for entries in [
        &[(1001u32, 6u32, &b"1\0"[..]), (1000, 6, b"eg")][..],
        &[(1000, 6, b"eg\0"), (1001, 6, b"1")],
        &[(1000, 6, b"eg\0"), (1001, 6, b"1\0"), (1003, 6, b"1\0")],
        &[(1000, 4, &[0, 0, 0, 1]), (1001, 6, b"1\0")],
        &[(1000, 6, b"\0"), (1001, 6, b"1\0")],
        &[(1001, 6, b"1\0")],
    ] {
        assert!(parse_header(&header(entries)).is_err(), "{entries:?}");
    }
    let long = format!("{}\0", "n".repeat(100_000));
    let p = parse_header(&header(&[(1000, 6, long.as_bytes()), (1001, 6, b"1\0")])).unwrap();
    assert_eq!(p.name.len(), 256);
}

/// rpmbuild and rpm, on a temporary top directory and database.
pub(super) struct Rpm {
    pub top: tempfile::TempDir,
    pub db: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("rpm and rpmbuild are needed (Debian package rpm; scripts/test.sh installs it): {cmd:?}: {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A spec: `name` (with `subpackages` more named `name-sub-NN`), its EVR, `BuildArch: noarch`
/// unless `noarch` is false, a description of `description` bytes.
pub(super) fn spec(
    name: &str,
    epoch: Option<u32>,
    version: &str,
    release: &str,
    noarch: bool,
    description: usize,
    subpackages: usize,
) -> String {
    let mut s = format!(
        "Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: edgeguard test\nLicense: MIT\nVendor: edgeguard tests\n"
    );
    if let Some(e) = epoch {
        s += &format!("Epoch: {e}\n");
    }
    if noarch {
        s += "BuildArch: noarch\n";
    }
    s += "%description\n";
    let line = "An edgeguard test package with a long description. ";
    let mut written = 0;
    while written < description {
        s += line;
        s += "\n";
        written += line.len() + 1;
    }
    s += "test\n%files\n";
    for i in 0..subpackages {
        s += &format!(
            "%package -n {name}-sub-{i:02}\nSummary: sub\n%description -n {name}-sub-{i:02}\nsub\n%files -n {name}-sub-{i:02}\n"
        );
    }
    s
}

impl Rpm {
    /// A new sqlite rpm database at `db`.
    pub fn new(db: &Path) -> Rpm {
        let r = Rpm {
            top: tempfile::tempdir().unwrap(),
            db: db.to_path_buf(),
        };
        std::fs::create_dir_all(db).unwrap();
        run(r.rpm().arg("--initdb"));
        r
    }

    pub fn rpm(&self) -> Command {
        let mut c = Command::new("rpm");
        c.arg("--dbpath")
            .arg(&self.db)
            .args(["--define", "_db_backend sqlite"]);
        c
    }

    /// Builds the packages of `spec` (for `target` when given); their files.
    pub fn build(&self, spec: &str, target: Option<&str>) -> Vec<PathBuf> {
        let rpms = self.top.path().join("RPMS");
        let _ = std::fs::remove_dir_all(&rpms);
        let path = self.top.path().join("test.spec");
        std::fs::write(&path, spec).unwrap();
        let mut c = Command::new("rpmbuild");
        c.args(["--quiet", "-bb", "--define"])
            .arg(format!("_topdir {}", self.top.path().display()));
        if let Some(t) = target {
            c.args(["--target", t]);
        }
        run(c.arg(&path));
        // Kept apart: the next build starts from an empty RPMS.
        let built = self.top.path().join("built");
        std::fs::create_dir_all(&built).unwrap();
        let mut out = Vec::new();
        for arch in std::fs::read_dir(&rpms).unwrap() {
            for f in std::fs::read_dir(arch.unwrap().path()).unwrap() {
                let f = f.unwrap();
                let to = built.join(f.file_name());
                std::fs::rename(f.path(), &to).unwrap();
                out.push(to);
            }
        }
        out.sort();
        out
    }

    /// `rpm <args> --justdb …` with the packages.
    pub fn install(&self, args: &[&str], packages: &[PathBuf]) {
        run(self
            .rpm()
            .args(args)
            .args(["--justdb", "--nodeps", "--ignorearch", "--ignoreos"])
            .args(packages));
    }

    /// What `rpm -qa` lists: name, `[epoch:]version-release`, architecture, source name.
    pub fn query(&self) -> BTreeSet<(String, String, String, Option<String>)> {
        run(self
            .rpm()
            .args(["-qa", "--qf", "%{NAME}|%{EVR}|%{ARCH}|%{SOURCERPM}\n"]))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let none = |s: &str| (s != "(none)").then(|| s.to_string());
            let source = source_name(f[3]).filter(|s| *s != f[0]).map(str::to_string);
            (
                f[0].to_string(),
                f[1].to_string(),
                none(f[2]).unwrap_or_default(),
                source,
            )
        })
        .collect()
    }
}

fn as_set(
    packages: impl IntoIterator<Item = Package>,
) -> BTreeSet<(String, String, String, Option<String>)> {
    packages
        .into_iter()
        .map(|p| {
            assert_eq!(p.manager, Manager::Rpm);
            (p.name, p.version, p.architecture, p.source)
        })
        .collect()
}

#[test]
fn a_database_written_by_rpm_reads_as_rpm_lists_it() {
    let root = tempfile::tempdir().unwrap();
    let r = Rpm::new(&root.path().join("var/lib/rpm"));
    let mut packages = r.build(
        &spec("eg-alpha", Some(2), "1.2", "3", true, 300_000, 40),
        None,
    );
    assert_eq!(packages.len(), 41);
    packages.extend(r.build(
        &spec("eg-beta", None, "0.9", "1.fc38", false, 10, 0),
        Some("aarch64"),
    ));
    packages.extend(r.build(&spec("eg-zero", Some(0), "1", "1", true, 10, 0), None));
    // Two versions of one name and architecture side by side, as rpm keeps kernels.
    packages.extend(r.build(&spec("eg-kernel", None, "6.1", "1", true, 10, 0), None));
    packages.extend(r.build(&spec("eg-kernel", None, "6.2", "1", true, 10, 0), None));
    r.install(&["-i"], &packages);

    let want = r.query();
    assert_eq!(want.len(), 45);
    assert!(want.contains(&("eg-alpha".into(), "2:1.2-3".into(), "noarch".into(), None)));
    assert!(want.contains(&(
        "eg-alpha-sub-07".into(),
        "2:1.2-3".into(),
        "noarch".into(),
        Some("eg-alpha".into())
    )));
    assert!(want.iter().any(|p| p.0 == "eg-beta" && p.2 == "aarch64"));
    assert!(want.iter().any(|p| p.0 == "eg-zero" && p.1 == "0:1-1"));

    let main = std::fs::read(r.db.join("rpmdb.sqlite")).unwrap();
    let wal = std::fs::read(r.db.join("rpmdb.sqlite-wal")).ok();
    assert_eq!(
        as_set(read_rpm_sqlite(&main, wal.as_deref()).unwrap()),
        want
    );

    // The table is a tree of several pages, and the long description's row overflows.
    let db = Db::open(&main[..], main.len() as u64, None).unwrap();
    let root_page = db.table_root("Packages").unwrap();
    let page_size = db.page_size() as usize;
    assert_eq!(
        main[(root_page as usize - 1) * page_size],
        0x05,
        "interior root"
    );
    let mut longest = 0;
    db.for_each_row(root_page, 1 << 30, |_, record| {
        if let Ok(Value::Blob(b)) = column(record, 1) {
            longest = longest.max(b.len());
        }
        true
    })
    .unwrap();
    assert!(longest > 50 * page_size, "longest header {longest} bytes");

    // Through the collector, from the host root.
    let host = HostRoot::new(root.path());
    let inv = read_inventory(&host);
    assert_eq!(inv.managers, [Manager::Rpm], "{:?}", inv.unreadable);
    assert!(inv.unreadable.is_empty() && inv.truncated.is_empty());
    assert_eq!(as_set(inv.packages.into_values()), want);
    let events = SoftwareInventoryCollector.collect(&host);
    match &events[0].payload {
        Payload::SoftwareInventory(r) => {
            assert_eq!(r.len(), 45);
            assert!(r.iter().all(|p| p.package_manager == "rpm"));
            assert_eq!(r[0].extra_details["Managers"], "rpm");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_watcher_reports_what_rpm_installs_upgrades_and_erases() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = Host::new();
    let r = Rpm::new(&h.root.path().join("usr/lib/sysimage/rpm"));
    let a1 = r.build(&spec("eg-alpha", None, "1.0", "1", true, 10, 0), None);
    let a2 = r.build(&spec("eg-alpha", Some(1), "2.0", "1", true, 10, 0), None);
    let b = r.build(&spec("eg-beta", None, "0.1", "1", true, 10, 0), None);
    rt.block_on(async {
        let tick = Duration::from_millis(50);
        let (ctx, mut rx) = h.context();
        let task = tokio::spawn(watch_every(ctx.clone(), tick));
        h.wait_first_look_saved(tick).await;
        r.install(&["-i"], &[a1[0].clone(), b[0].clone()]);
        assert_eq!(
            next_changes(&mut rx).await,
            [
                (
                    SoftwareOperation::Installed,
                    "eg-alpha".into(),
                    "1.0-1".into()
                ),
                (
                    SoftwareOperation::Installed,
                    "eg-beta".into(),
                    "0.1-1".into()
                ),
            ]
        );
        r.install(&["-U"], &a2);
        assert_eq!(
            next_changes(&mut rx).await,
            [(
                SoftwareOperation::VersionChanged,
                "eg-alpha".into(),
                "1:2.0-1".into()
            )]
        );
        run(r.rpm().args(["-e", "--justdb", "--nodeps", "eg-beta"]));
        assert_eq!(
            next_changes(&mut rx).await,
            [(SoftwareOperation::Removed, "eg-beta".into(), "0.1-1".into())]
        );
        ctx.cancel.cancel();
        task.await.unwrap();
    });
}

/// The fuzz target's seeds (`fuzz/make_seeds.py`) are databases the reader reads in full: the
/// fuzzer starts from inputs that reach the rows, through the WAL for one of them.
#[test]
fn the_fuzz_seeds_are_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/inventory_rpm");
    let seed = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let names = |p: Vec<Package>| -> Vec<String> { p.into_iter().map(|p| p.name).collect() };
    let want = ["openssl", "gpg-pubkey", "kernel-core"];
    assert_eq!(
        names(read_rpm_sqlite(&seed("rpmdb")[1..], None).unwrap()),
        want
    );
    let with_wal = seed("rpmdb-wal");
    let len = usize::from(u16::from_le_bytes([with_wal[1], with_wal[2]]));
    let (wal, main) = with_wal[3..].split_at(len);
    assert!(
        read_rpm_sqlite(main, None).is_err(),
        "the table is in the WAL only"
    );
    assert_eq!(names(read_rpm_sqlite(main, Some(wal)).unwrap()), want);
    assert_eq!(
        parse_header(&seed("header")[1..]).unwrap().version,
        "0:5.2.15-5.fc39"
    );
}
