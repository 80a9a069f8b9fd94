//! rpm's BerkeleyDB `Packages`: hash databases written by the real Berkeley DB (`db5.3_load`)
//! from header blobs written by the real rpm (`rpmbuild` packages installed with `rpm
//! --justdb` into a sqlite database, whose blobs the `sqlite3` shell hands over), read by the
//! reader and checked against the real rpm reading the same file (its `bdb_ro` backend) and
//! against `db5.3_dump`; then those files cut, mutated and made to loop.

use super::super::bdb::{Db, Error, MAX_FILE_BYTES};
use super::rpm::{Rpm, spec};
use super::sqlite::sqlite3;
use super::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

/// A package as `rpm -q` lists it: name, `[epoch:]version-release`, architecture, source.
type Listed = (String, String, String, Option<String>);

/// A key and value of a database.
type Record = (Vec<u8>, Vec<u8>);

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} is needed (scripts/test.sh installs it): {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Loads `records` into the hash database `file` (created, or added to when it exists) with
/// the real Berkeley DB: `db5.3_load` reading its printable dump format; `config` are its
/// `-c name=value` options (page size, byte order, checksums, duplicates).
fn db_load(file: &Path, records: &[Record], config: &[&str]) {
    let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    for (k, v) in records {
        dump += &format!(" {}\n {}\n", hex(k), hex(v));
    }
    dump += "DATA=END\n";
    let dump_path = file.with_extension("dump");
    std::fs::write(&dump_path, dump).unwrap();
    let mut cmd = Command::new("db5.3_load");
    for c in config {
        cmd.args(["-c", c]);
    }
    cmd.args(["-t", "hash", "-f"]).arg(&dump_path).arg(file);
    run(&mut cmd, "db5.3_load (Debian package db5.3-util)");
    std::fs::remove_file(dump_path).unwrap();
}

/// Every key and value of `file` as the real Berkeley DB lists them (`db5.3_dump`), in its
/// cursor order.
fn db_dump(file: &Path) -> Vec<Record> {
    let out = run(
        Command::new("db5.3_dump").arg(file),
        "db5.3_dump (Debian package db5.3-util)",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (_, body) = text.split_once("HEADER=END\n").unwrap();
    let lines: Vec<Vec<u8>> = body
        .lines()
        .take_while(|l| *l != "DATA=END")
        .map(|l| unhex(l.strip_prefix(' ').unwrap()))
        .collect();
    lines
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// `db5.3_stat -d`: its numbers by description.
fn db_stat(file: &Path) -> BTreeMap<String, u64> {
    let out = run(
        Command::new("db5.3_stat").arg("-d").arg(file),
        "db5.3_stat (Debian package db5.3-util)",
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (n, what) = l.split_once('\t')?;
            Some((what.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// The reader's keys and values of `file`, in its order.
fn read_records(bytes: &[u8]) -> Result<Vec<Record>, Error> {
    let db = Db::open(bytes, bytes.len() as u64)?;
    let mut out = Vec::new();
    db.for_each(1 << 30, |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    })?;
    Ok(out)
}

fn listed(p: Package) -> Listed {
    assert_eq!(p.manager, Manager::Rpm);
    (p.name, p.version, p.architecture, p.source)
}

/// What the real rpm lists from the BerkeleyDB `Packages` in `dir` (its read-only BerkeleyDB
/// backend), in its order. rpm warns about the index databases missing beside it.
fn rpm_bdb_query(dir: &Path) -> Vec<Listed> {
    let out = run(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(dir)
            .args(["--define", "_db_backend bdb_ro", "-qa", "--qf"])
            .arg("%{NAME}|%{EVR}|%{ARCH}|%{SOURCERPM}\n"),
        "rpm (Debian package rpm)",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.lines().any(|l| l.starts_with("error")),
        "rpm: {stderr}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let source = super::super::rpm::source_name(f[3])
                .filter(|s| *s != f[0])
                .map(str::to_string);
            let arch = if f[2] == "(none)" { "" } else { f[2] };
            (f[0].to_string(), f[1].to_string(), arch.to_string(), source)
        })
        .collect()
}

/// 300 rpm header blobs written by the real rpm, and what rpm lists from them.
struct Fixture {
    /// (header instance, blob), by instance.
    blobs: Vec<(u32, Vec<u8>)>,
    /// `rpm -qa` on the sqlite database the blobs come from.
    listed: BTreeSet<Listed>,
}

impl Fixture {
    /// The blobs of the packages named by `pick`, as `Packages` records (keys in the byte
    /// order given), after rpm's record 0 (its instance counter).
    fn records(&self, big_endian: bool, pick: impl Fn(&Package) -> bool) -> Vec<Record> {
        let key = |n: u32| {
            if big_endian {
                n.to_be_bytes().to_vec()
            } else {
                n.to_le_bytes().to_vec()
            }
        };
        let next = self.blobs.iter().map(|b| b.0).max().unwrap() + 1;
        let mut out = vec![(key(0), key(next))];
        for (hnum, blob) in &self.blobs {
            if pick(&super::super::rpm::parse_header(blob).unwrap()) {
                out.push((key(*hnum), blob.clone()));
            }
        }
        out
    }

    /// What rpm lists of the packages named by `pick`.
    fn listed(&self, pick: impl Fn(&Listed) -> bool) -> BTreeSet<Listed> {
        self.listed.iter().filter(|p| pick(p)).cloned().collect()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let r = Rpm::new(&dir.path().join("rpm"));
        // A header of 300 KB (an overflow chain of many pages at any page size) with 294
        // subpackages of about 1.2 KB each (over a page of 512 bytes, inline at 64 KiB).
        let mut packages = r.build(
            &spec("eg-bdb", Some(3), "1.2", "4", true, 300_000, 294),
            None,
        );
        packages.extend(r.build(&spec("eg-wide", None, "2", "1", true, 6_000, 0), None));
        packages.extend(r.build(
            &spec("eg-beta", None, "0.9", "1.el8", false, 10, 0),
            Some("aarch64"),
        ));
        packages.extend(r.build(&spec("eg-zero", Some(0), "1", "1", true, 10, 0), None));
        // Two versions side by side (as rpm keeps kernels); the watcher test swaps them.
        packages.extend(r.build(&spec("eg-up", None, "1.0", "1", true, 10, 0), None));
        packages.extend(r.build(&spec("eg-up", Some(1), "2.0", "1", true, 10, 0), None));
        r.install(&["-i"], &packages);
        let listed = r.query();
        assert_eq!(listed.len(), 300);
        let blobs = sqlite3(
            &r.db.join("rpmdb.sqlite"),
            "SELECT hnum, hex(blob) FROM Packages ORDER BY hnum;",
        )
        .lines()
        .map(|l| {
            let (hnum, blob) = l.split_once('|').unwrap();
            (hnum.parse().unwrap(), unhex(blob))
        })
        .collect::<Vec<_>>();
        assert_eq!(blobs.len(), 300);
        Fixture { blobs, listed }
    })
}

#[test]
fn packages_written_by_berkeley_db_read_as_rpm_lists_them() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    // (page size, db5.3_load options, big-endian, whether rpm reads it)
    let variants: [(u32, &[&str], bool, bool); 6] = [
        (4096, &["db_pagesize=4096"], false, true),
        (512, &["db_pagesize=512"], false, true),
        (65536, &["db_pagesize=65536"], false, true),
        // A low fill factor: a table of many buckets.
        (4096, &["db_pagesize=4096", "h_ffactor=4"], false, true),
        // As written on a big-endian host.
        (1024, &["db_pagesize=1024", "db_lorder=4321"], true, true),
        // With page checksums (their item index is 6 bytes further; rpm's bdb_ro reader
        // cannot read them, Berkeley DB can).
        (2048, &["db_pagesize=2048", "chksum=1"], false, false),
    ];
    for (i, (page_size, config, big_endian, rpm_reads)) in variants.into_iter().enumerate() {
        let db_dir = dir.path().join(format!("v{i}"));
        std::fs::create_dir(&db_dir).unwrap();
        let file = db_dir.join("Packages");
        db_load(&file, &f.records(big_endian, |_| true), config);
        let bytes = std::fs::read(&file).unwrap();
        let db = Db::open(&bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(
            (db.page_size(), db.big_endian(), db.version()),
            (page_size, big_endian, 9),
            "{config:?}"
        );

        // Every record as Berkeley DB itself lists them, in its cursor order.
        let records = read_records(&bytes).unwrap();
        assert_eq!(records.len(), 301, "{config:?}");
        assert!(records == db_dump(&file), "{config:?}: not db5.3_dump's");

        // The packages as rpm lists them, in rpm's order too.
        let ours: Vec<Listed> = read_rpm_bdb(&bytes)
            .unwrap()
            .into_iter()
            .map(listed)
            .collect();
        if rpm_reads {
            assert_eq!(ours, rpm_bdb_query(&db_dir), "{config:?}");
        }
        assert_eq!(
            ours.into_iter().collect::<BTreeSet<_>>(),
            f.listed,
            "{config:?}"
        );

        // The file has the structure each variant is for.
        let stat = db_stat(&file);
        let n = |what: &str| stat[what];
        assert!(n("Number of overflow pages") > 0, "{config:?}: {stat:?}");
        let longest = records.iter().map(|r| r.1.len()).max().unwrap();
        assert!(longest > 4 * page_size as usize, "{config:?}");
        match (page_size, config.len()) {
            // Every header over a page: overflow chains, and buckets of several pages.
            (512, _) => {
                assert!(n("Number of overflow pages") > 600, "{stat:?}");
                assert!(n("Number of bucket overflow pages") > 0, "{stat:?}");
            }
            // The headers inline in the hash pages, buckets of several pages.
            (65536, _) => {
                assert_eq!(n("Number of overflow pages"), 5, "{stat:?}");
                assert!(n("Number of bucket overflow pages") > 0, "{stat:?}");
            }
            (4096, 2) => assert!(n("Number of hash buckets") > 50, "{stat:?}"),
            _ => {}
        }
        assert_eq!(db.buckets(), n("Number of hash buckets"));
    }
}

#[test]
fn a_bucket_page_never_written_is_an_empty_bucket() {
    // One record in a new database: Berkeley DB leaves the other initial bucket's page a hole
    // of zeros, which it reads as empty (rpm's own bdb_ro reader refuses such a file, but an
    // rpm database of real size has no bucket that was never written).
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Packages");
    let one: Vec<Record> = f
        .records(false, |p| p.name == "eg-zero")
        .into_iter()
        .skip(1)
        .collect();
    db_load(&file, &one, &[]);
    let bytes = std::fs::read(&file).unwrap();
    let page_size = Db::open(&bytes[..], bytes.len() as u64)
        .unwrap()
        .page_size() as usize;
    assert!(
        bytes
            .chunks(page_size)
            .skip(1)
            .any(|p| p.iter().all(|&b| b == 0)),
        "a page of zeros"
    );
    assert_eq!(read_records(&bytes).unwrap(), db_dump(&file));
    let p = read_rpm_bdb(&bytes).unwrap();
    assert_eq!(
        p.into_iter().map(listed).collect::<BTreeSet<_>>(),
        f.listed(|p| p.0 == "eg-zero")
    );
}

/// The page size of `bytes` (a little-endian database) and its pages' types.
fn pages(bytes: &[u8]) -> (usize, Vec<u8>) {
    let page_size = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    (page_size, bytes.chunks(page_size).map(|p| p[25]).collect())
}

fn put32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(bytes: &mut [u8], at: usize, v: u16) {
    bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hash_pages_of_berkeley_db_before_4_6_read_the_same() {
    // Berkeley DB < 4.6 (hash version 8) wrote unsorted hash pages (type 2) of the same
    // layout; db5.3 writes only version 9, so its file is relabelled.
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Packages");
    db_load(&file, &f.records(false, |_| true), &["db_pagesize=512"]);
    let mut bytes = std::fs::read(&file).unwrap();
    let want = read_records(&bytes).unwrap();
    put32(&mut bytes, 16, 8);
    let (page_size, types) = pages(&bytes);
    for (n, t) in types.iter().enumerate() {
        if *t == 13 {
            bytes[n * page_size + 25] = 2;
        }
    }
    let db = Db::open(&bytes[..], bytes.len() as u64).unwrap();
    assert_eq!(db.version(), 8);
    assert!(read_records(&bytes).unwrap() == want);
}

#[test]
fn duplicates_other_access_methods_and_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Duplicate data items (never in rpm's database), written by Berkeley DB.
    let file = dir.path().join("dups");
    let records: Vec<Record> = (0..3u8).map(|i| (b"k".to_vec(), vec![i; 10])).collect();
    db_load(&file, &records, &["duplicates=1"]);
    assert_eq!(db_dump(&file).len(), 3);
    let bytes = std::fs::read(&file).unwrap();
    let err = read_records(&bytes).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(read_rpm_bdb(&bytes).unwrap_err().contains("duplicate"));
    // A B-tree database (rpm's indexes).
    let file = dir.path().join("btree");
    let mut cmd = Command::new("db5.3_load");
    cmd.args(["-t", "btree", "-T", "-f", "/dev/stdin"])
        .arg(&file)
        .stdin(std::fs::File::open("/dev/null").unwrap());
    run(&mut cmd, "db5.3_load (Debian package db5.3-util)");
    let bytes = std::fs::read(&file).unwrap();
    assert!(matches!(read_records(&bytes), Err(Error::NotHash("btree"))));
    // Anything else: by the magic.
    let ndb = [b"RpmP".as_slice(), &[0u8; 4092]].concat();
    for other in [
        &b""[..],
        b"SQLite format 3\0",
        &ndb,
        &[0u8; 4096],
        &[0xffu8; 100],
    ] {
        assert!(matches!(read_records(other), Err(Error::NotBdb)));
        assert_eq!(
            read_rpm_bdb(other).unwrap_err(),
            "not a BerkeleyDB database"
        );
    }
}

/// A small real database (30 packages, 512-byte pages: overflow chains everywhere; a fill
/// factor of 2: many buckets), little-endian, and its packages.
fn small() -> (Vec<u8>, Vec<Package>) {
    static SMALL: OnceLock<(Vec<u8>, Vec<Package>)> = OnceLock::new();
    SMALL
        .get_or_init(|| {
            let f = fixture();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("Packages");
            let mut records = f.records(false, |p| {
                p.name != "eg-bdb" && !p.name.starts_with("eg-bdb-sub-0")
            });
            records.truncate(31);
            db_load(&file, &records, &["db_pagesize=512", "h_ffactor=2"]);
            let bytes = std::fs::read(&file).unwrap();
            let packages = read_rpm_bdb(&bytes).unwrap();
            assert_eq!(packages.len(), 30);
            (bytes, packages)
        })
        .clone()
}

fn corrupt(r: Result<Vec<Record>, Error>) -> String {
    match r {
        Err(Error::Corrupt(why)) => why,
        other => panic!("not corrupt: {:?}", other.map(|r| r.len())),
    }
}

#[test]
fn a_cut_file_and_bad_pages_are_errors() {
    let (bytes, _) = small();
    let (page_size, types) = pages(&bytes);
    // Cut anywhere: short of the meta page, or of the pages it counts.
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        assert!(read_records(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let hash: Vec<usize> = (1..types.len()).filter(|&n| types[n] == 13).collect();
    let overflow: Vec<usize> = (1..types.len()).filter(|&n| types[n] == 7).collect();
    assert!(
        hash.len() > 2 && overflow.len() > 30,
        "{} hash pages, {} overflow pages",
        hash.len(),
        overflow.len()
    );
    let at = |n: usize, off: usize| n * page_size + off;
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        read_records(&b)
    };

    // An overflow chain that loops (a page to itself), ends early, or goes past the end; a
    // hash page chained to itself.
    let chained = *overflow
        .iter()
        .find(|&&n| bytes[at(n, 16)..at(n, 20)] != [0; 4])
        .unwrap();
    let why = corrupt(with(&|b| put32(b, at(chained, 16), chained as u32)));
    assert!(why.contains("reached twice"), "{why}");
    let why = corrupt(with(&|b| put32(b, at(chained, 16), 0)));
    assert!(why.contains("chain ends"), "{why}");
    for to in [types.len() as u32, u32::MAX] {
        let why = corrupt(with(&|b| put32(b, at(chained, 16), to)));
        assert!(why.contains("outside"), "{why}");
    }
    let why = corrupt(with(&|b| put32(b, at(hash[0], 16), hash[0] as u32)));
    assert!(why.contains("reached twice"), "{why}");
    // A chain into a hash page; an overflow page of no bytes, or of more than it holds.
    corrupt(with(&|b| put32(b, at(chained, 16), hash[1] as u32)));
    corrupt(with(&|b| put16(b, at(chained, 22), 0)));
    corrupt(with(&|b| put16(b, at(chained, 22), page_size as u16)));
    // A page that is not the one it was reached as.
    corrupt(with(&|b| put32(b, at(hash[0], 8), 7)));

    // Item offsets before the index, past the page or the previous item, odd or absurd
    // counts; an item of an unknown type.
    let full = *hash
        .iter()
        .find(|&&n| u16::from_le_bytes([bytes[at(n, 20)], bytes[at(n, 21)]]) >= 4)
        .unwrap();
    for (off, v) in [
        (26, page_size as u16),
        (26, 0),
        (28, 25),
        (30, 2000),
        (20, 3),
        (20, 0xffff),
    ] {
        corrupt(with(&|b| put16(b, at(full, off), v)));
    }
    let entries = u16::from_le_bytes([bytes[at(full, 20)], bytes[at(full, 21)]]) as usize;
    let item = (0..entries / 2)
        .map(|k| {
            let i = at(full, 28 + 4 * k);
            u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize
        })
        .find(|&item| bytes[at(full, item)] == 3)
        .expect("an off-page value");
    corrupt(with(&|b| b[at(full, item)] = 9));
    // Its length: absurd, none, more than the chain holds; beyond the caller's limit.
    assert!(matches!(
        with(&|b| put32(b, at(full, item + 8), u32::MAX)),
        Err(Error::TooLarge(..))
    ));
    corrupt(with(&|b| put32(b, at(full, item + 8), 0)));
    let why = corrupt(with(&|b| put32(b, at(full, item + 8), 100_000)));
    assert!(why.contains("chain ends") || why.contains("bytes"), "{why}");
    let db = Db::open(&bytes[..], bytes.len() as u64).unwrap();
    assert!(matches!(
        db.for_each(100, |_, _| true),
        Err(Error::TooLarge(..))
    ));

    // The meta page.
    let meta_errors: [(usize, u32); 8] = [
        (16, 7),        // hash version
        (20, 1000),     // page size
        (20, 1 << 17),  // page size
        (32, u32::MAX), // last page: beyond the file bound
        (32, 2),        // last page: fewer pages than buckets
        (72, u32::MAX), // highest bucket
        (96, u32::MAX), // the first bucket's page
        (100, 1 << 30), // the second's
    ];
    for (off, v) in meta_errors {
        assert!(with(&|b| put32(b, off, v)).is_err(), "meta {off} = {v}");
    }
    assert!(matches!(with(&|b| b[24] = 1), Err(Error::Unsupported(_))));
    assert!(matches!(with(&|b| b[25] = 9), Err(Error::Corrupt(_))));
    assert!(matches!(
        Db::open(&bytes[..], MAX_FILE_BYTES + 1),
        Err(Error::TooLarge("database", _))
    ));
    // A header that is not one fails the whole database.
    let chain = u32::from_le_bytes(
        bytes[at(full, item + 4)..at(full, item + 8)]
            .try_into()
            .unwrap(),
    );
    let why = read_rpm_bdb(&{
        let mut b = bytes.clone();
        let first = at(chain as usize, 26);
        b[first..first + 8].fill(0xff);
        b
    })
    .unwrap_err();
    assert!(why.contains("bad rpm header"), "{why}");
}

#[test]
fn random_mutations_of_a_real_file_never_panic() {
    let (bytes, packages) = small();
    let (page_size, _) = pages(&bytes);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut read, mut same) = (0, 0);
    for round in 0..20_000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let r = next();
            // Page headers and the item index half of the time; anywhere else the rest.
            let at = if r % 2 == 0 {
                let page = (r >> 8) as usize % (b.len() / page_size);
                page * page_size + (r >> 40) as usize % 40
            } else {
                (r >> 8) as usize % b.len()
            };
            b[at] = match (r >> 32) % 4 {
                0 => 0,
                1 => 0xff,
                2 => b[at] ^ (1 << ((r >> 36) % 8)),
                _ => (r >> 48) as u8,
            };
        }
        if round % 10 == 0 {
            b.truncate((next() as usize) % (b.len() + 1));
        }
        if let Ok(p) = read_rpm_bdb(&b) {
            read += 1;
            if p == packages {
                same += 1;
            }
            for p in p {
                assert!(!p.name.is_empty() && p.name.len() <= 256 && p.version.len() <= 256);
            }
        }
    }
    // Many mutations land where nothing is read (free space, log sequence numbers), some change
    // a header's strings, the rest break the file.
    assert!(
        same > 1000 && read > same && read < 16_000,
        "{read} read, {same} unchanged"
    );
}

#[test]
fn the_collector_reads_packages_from_the_host_root() {
    let f = fixture();
    for place in ["var/lib/rpm", "usr/lib/sysimage/rpm"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(place);
        std::fs::create_dir_all(&dir).unwrap();
        db_load(&dir.join("Packages"), &f.records(false, |_| true), &[]);
        let host = HostRoot::new(root.path());
        let inv = read_inventory(&host);
        assert_eq!(inv.managers, [Manager::Rpm], "{:?}", inv.unreadable);
        assert!(inv.unreadable.is_empty() && inv.truncated.is_empty());
        assert_eq!(
            inv.packages
                .into_values()
                .map(listed)
                .collect::<BTreeSet<_>>(),
            f.listed
        );
        let events = SoftwareInventoryCollector.collect(&host);
        match &events[0].payload {
            Payload::SoftwareInventory(r) => {
                assert_eq!(r.len(), 300);
                assert!(r.iter().all(|p| p.package_manager == "rpm"));
                assert_eq!(r[0].extra_details["Managers"], "rpm");
                assert!(!r[0].extra_details.contains_key("Unsupported"));
            }
            other => panic!("{other:?}"),
        }
        // ndb beside it is named, not read.
        std::fs::write(dir.join("Packages.db"), b"RpmP\0\0\0\0").unwrap();
        let inv = read_inventory(&host);
        assert_eq!(inv.managers, [Manager::Rpm]);
        assert_eq!(
            inv.unreadable,
            [format!("/{place}/Packages.db: {UNSUPPORTED}")]
        );
    }

    // A broken Packages fails rpm's inventory (no partial list); rpm ≥ 4.16's sqlite database
    // beside a Packages is the one read.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    db_load(&dir.join("Packages"), &f.records(false, |_| true), &[]);
    let mut bytes = std::fs::read(dir.join("Packages")).unwrap();
    let (page_size, types) = pages(&bytes);
    let overflow = types.iter().position(|&t| t == 7).unwrap();
    put16(&mut bytes, overflow * page_size + 22, 0);
    std::fs::write(dir.join("Packages"), &bytes).unwrap();
    let inv = read_inventory(&HostRoot::new(root.path()));
    assert!(inv.managers.is_empty() && inv.packages.is_empty());
    assert_eq!(inv.unreadable.len(), 1);
    assert!(
        inv.unreadable[0].starts_with("/var/lib/rpm/Packages: corrupt BerkeleyDB database"),
        "{:?}",
        inv.unreadable
    );
    std::fs::write(dir.join("rpmdb.sqlite"), b"SQLite format 3\0").unwrap();
    let inv = read_inventory(&HostRoot::new(root.path()));
    assert_eq!(
        inv.unreadable,
        ["/var/lib/rpm/rpmdb.sqlite: not an SQLite 3 database"]
    );
}

#[test]
fn the_watcher_reports_what_changes_in_packages() {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = Host::new();
    let dir = h.root.path().join("var/lib/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Packages");
    let some = |p: &Package| p.name == "eg-wide" || (p.name == "eg-up" && p.version == "1.0-1");
    db_load(&file, &f.records(false, some), &[]);
    rt.block_on(async {
        let tick = Duration::from_millis(50);
        let (ctx, mut rx) = h.context();
        let task = tokio::spawn(watch_every(ctx.clone(), tick));
        h.wait_first_look_saved(tick).await;

        // Berkeley DB adds two records to the file in place.
        let added: Vec<Record> = f
            .records(false, |p| p.name == "eg-beta" || p.name == "eg-zero")
            .into_iter()
            .skip(1)
            .collect();
        db_load(&file, &added, &[]);
        assert_eq!(
            next_changes(&mut rx).await,
            [
                (
                    SoftwareOperation::Installed,
                    "eg-beta".into(),
                    "0.9-1.el8".into()
                ),
                (
                    SoftwareOperation::Installed,
                    "eg-zero".into(),
                    "0:1-1".into()
                ),
            ]
        );

        // A new file in its place: eg-up upgraded, eg-beta gone.
        let next = dir.join("Packages.new");
        db_load(
            &next,
            &f.records(false, |p| {
                p.name == "eg-wide"
                    || p.name == "eg-zero"
                    || (p.name == "eg-up" && p.version != "1.0-1")
            }),
            &[],
        );
        std::fs::rename(&next, &file).unwrap();
        assert_eq!(
            next_changes(&mut rx).await,
            [
                (
                    SoftwareOperation::Removed,
                    "eg-beta".into(),
                    "0.9-1.el8".into()
                ),
                (
                    SoftwareOperation::VersionChanged,
                    "eg-up".into(),
                    "1:2.0-1".into()
                ),
            ]
        );
        ctx.cancel.cancel();
        task.await.unwrap();
    });
}
