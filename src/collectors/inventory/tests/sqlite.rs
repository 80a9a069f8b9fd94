//! The SQLite reader against files written by the real SQLite (the `sqlite3` shell), and
//! against those files cut, bit-flipped and made to loop.

use super::super::sqlite::{Db, Error, MAX_FILE_BYTES, Value, column, varint};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the `sqlite3` shell on `db` with `script` on its standard input; its output.
pub(super) fn sqlite3(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the sqlite3 shell is needed (Debian package sqlite3; scripts/test.sh installs it): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Table `t`'s rows as the real SQLite reads them.
fn expected(db: &Path) -> Vec<(i64, Vec<u8>)> {
    sqlite3(db, "SELECT id, hex(b) FROM t ORDER BY id;")
        .lines()
        .map(|l| {
            let (id, hex) = l.split_once('|').unwrap();
            (id.parse().unwrap(), unhex(hex))
        })
        .collect()
}

/// Table `t`'s rows (column 1 a blob) as the reader reads them.
fn read(main: &[u8], wal: Option<&[u8]>) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let db = Db::open(main, main.len() as u64, wal.map(|w| (w, w.len() as u64)))?;
    let root = db.table_root("t")?;
    let mut rows = Vec::new();
    let mut bad = None;
    db.for_each_row(root, 1 << 20, |rowid, record| {
        match column(record, 1) {
            Ok(Value::Blob(b)) => rows.push((rowid, b.to_vec())),
            Ok(other) => bad = Some(Error::Corrupt(format!("{other:?}"))),
            Err(e) => bad = Some(e),
        }
        bad.is_none()
    })?;
    bad.map_or(Ok(rows), Err)
}

/// A table of a few hundred rows, some spilling over several overflow pages, a few deleted
/// (free pages), after another table (so its root is not page 2).
fn table_script(page_size: u32) -> String {
    format!(
        "PRAGMA page_size={page_size};
         CREATE TABLE other(x TEXT); INSERT INTO other VALUES ('before');
         CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<400)
           INSERT INTO t SELECT i, randomblob(CASE WHEN i%50=0 THEN 150000 ELSE (i*7919)%3000 END) FROM n;
         DELETE FROM t WHERE id%7=0;
         INSERT INTO t VALUES (-5, x''), (9000000000, x'00ff');"
    )
}

#[test]
fn every_row_of_a_multi_level_table_with_overflow_pages_is_read_in_each_page_size() {
    for page_size in [512u32, 1024, 4096, 65536] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        sqlite3(&path, &table_script(page_size));
        let want = expected(&path);
        assert_eq!(want.len(), 400 - 57 + 2);
        let bytes = std::fs::read(&path).unwrap();
        let db = Db::open(&bytes[..], bytes.len() as u64, None).unwrap();
        assert_eq!(db.page_size(), page_size);
        let root = db.table_root("t").unwrap();
        assert_ne!(root, 2);
        // The root is an interior page: the walk goes down at least one level.
        assert_eq!(
            bytes[(root as usize - 1) * page_size as usize],
            0x05,
            "page size {page_size}"
        );
        let got = read(&bytes, None).unwrap();
        assert_eq!(got.len(), want.len(), "page size {page_size}");
        assert!(got == want, "page size {page_size}: rows differ");
        assert!(got.iter().any(|(_, b)| b.len() > 2 * page_size as usize));
        assert!(matches!(db.table_root("nothing"), Err(Error::NoTable(_))));
    }
}

#[test]
fn utf16_databases_find_their_tables() {
    for encoding in ["UTF-16le", "UTF-16be"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        sqlite3(
            &path,
            &format!(
                "PRAGMA encoding='{encoding}'; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
                 INSERT INTO t VALUES (1, x'0102'), (2, randomblob(5000));"
            ),
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(read(&bytes, None).unwrap(), expected(&path), "{encoding}");
    }
}

#[test]
fn committed_wal_frames_are_read_torn_and_corrupt_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let path = dir.path().join("db");
    // Copies of the database and its WAL taken while the shell holds it open (on exit it
    // checkpoints and deletes the WAL): after one transaction, then after a second.
    sqlite3(
        &path,
        &format!(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);
             INSERT INTO t VALUES (1, x'01');
.system cp {d}/db {d}/db1 && cp {d}/db-wal {d}/db1-wal
             WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i+1 FROM n WHERE i<300)
               INSERT INTO t SELECT i, randomblob(i*13) FROM n;
.system cp {d}/db {d}/db2 && cp {d}/db-wal {d}/db2-wal
             "
        ),
    );
    let file = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    let (main1, wal1, main2, wal2) = (file("db1"), file("db1-wal"), file("db2"), file("db2-wal"));
    assert!(wal1.len() > 32 && wal2.len() > wal1.len());
    let first = vec![(1, vec![1u8])];
    let all = expected(&path);
    assert_eq!(all.len(), 300);

    // Everything is in the WAL: the main file alone does not even have the table yet.
    assert!(matches!(read(&main2, None), Err(Error::NoTable(_))));
    assert!(read(&main2, Some(&wal2)).unwrap() == all);
    assert_eq!(read(&main1, Some(&wal1)).unwrap(), first);
    let db = Db::open(
        &main2[..],
        main2.len() as u64,
        Some((&wal2[..], wal2.len() as u64)),
    )
    .unwrap();
    assert!(db.pages_in_wal() > 10);

    // The second transaction cut short (a crash while it was written): the first one stays.
    for cut in [wal1.len() + 1, wal1.len() + 600, wal2.len() - 1] {
        assert_eq!(
            read(&main2, Some(&wal2[..cut])).unwrap(),
            first,
            "cut at {cut}"
        );
    }
    // Its last frame (the commit) changed: the checksum fails, the first transaction stays.
    let mut flipped = wal2.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(read(&main2, Some(&flipped)).unwrap(), first);
    // A WAL whose header is invalid or empty (how rpm leaves it) holds nothing.
    let mut bad_header = wal2.clone();
    bad_header[12] ^= 1;
    for wal in [&bad_header[..], &[][..], &wal2[..20]] {
        assert!(matches!(read(&main2, Some(wal)), Err(Error::NoTable(_))));
    }
}

#[test]
fn varints_and_record_values() {
    assert_eq!(varint(&[0x05]), Some((5, 1)));
    assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
    assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
    assert_eq!(varint(&[0x81]), None);
    assert_eq!(varint(&[]), None);
    // Header (8 bytes: its length, then NULL, int8, int16, int48, 0, 1, a 2-byte text), body.
    let record = [
        8u8, 0, 1, 2, 5, 8, 9, 17,   //
        0xfe, // -2
        0x01, 0x00, // 256
        0xff, 0xff, 0xff, 0xff, 0xff, 0xfd, // -3
        b'h', b'i',
    ];
    assert_eq!(column(&record, 0).unwrap(), Value::Null);
    assert_eq!(column(&record, 1).unwrap(), Value::Int(-2));
    assert_eq!(column(&record, 2).unwrap(), Value::Int(256));
    assert_eq!(column(&record, 3).unwrap(), Value::Int(-3));
    assert_eq!(column(&record, 4).unwrap(), Value::Int(0));
    assert_eq!(column(&record, 5).unwrap(), Value::Int(1));
    assert_eq!(column(&record, 6).unwrap(), Value::Text(b"hi"));
    assert_eq!(column(&record, 7).unwrap(), Value::Null);
    for cut in 0..record.len() - 1 {
        let _ = column(&record[..cut], 6);
    }
    assert!(column(&[2, 10], 0).is_err(), "reserved type");
    assert!(
        column(&[50, 1], 0).is_err(),
        "header longer than the record"
    );
    assert!(column(&[2, 0x40], 0).is_err(), "blob past the end");
}

fn be32_at(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn hostile_files_are_errors_never_panics_or_loops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    sqlite3(
        &path,
        "PRAGMA page_size=512; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<60)
           INSERT INTO t SELECT i, randomblob(i*11) FROM n;",
    );
    let good = std::fs::read(&path).unwrap();
    let want = expected(&path);
    assert_eq!(read(&good, None).unwrap(), want);

    // Not SQLite, empty, cut anywhere: errors (or, cut after every page used, the rows).
    assert!(matches!(read(b"", None), Err(Error::NotSqlite)));
    assert!(matches!(read(&[0; 4096], None), Err(Error::NotSqlite)));
    for cut in (0..good.len()).step_by(97) {
        if let Ok(rows) = read(&good[..cut], None) {
            assert_eq!(rows, want, "cut at {cut}");
        }
    }
    // Every byte flipped, one at a time (a torn or bit-rotted file): no panic, no hang.
    let mut flipped = good.clone();
    for at in 0..good.len() {
        flipped[at] ^= 0xff;
        let _ = read(&flipped, None);
        flipped[at] ^= 0xff;
    }

    // Absurd sizes.
    let db = Db::open(&good[..], good.len() as u64, None).unwrap();
    let root = db.table_root("t").unwrap();
    assert!(matches!(
        Db::open(&good[..], MAX_FILE_BYTES + 1, None),
        Err(Error::TooLarge(..))
    ));
    let mut huge = good.clone();
    be32_at(&mut huge, 28, u32::MAX);
    assert!(matches!(read(&huge, None), Err(Error::TooLarge(..))));
    for size in [0u16, 256, 1000, 3] {
        let mut odd = good.clone();
        odd[16..18].copy_from_slice(&size.to_be_bytes());
        assert!(
            matches!(read(&odd, None), Err(Error::Corrupt(_))),
            "page size {size}"
        );
    }
    let big_row = db.for_each_row(root, 100, |_, _| true);
    assert!(
        matches!(big_row, Err(Error::TooLarge("row", _))),
        "{big_row:?}"
    );

    // A tree page that points back at itself.
    let page = |n: u32| (n as usize - 1) * 512;
    assert_eq!(good[page(root)], 0x05);
    let mut cycle = good.clone();
    be32_at(&mut cycle, page(root) + 8, root);
    let e = read(&cycle, None).unwrap_err();
    assert!(e.to_string().contains("reached twice"), "{e}");
    // A child beyond the end of the file.
    let mut outside = good.clone();
    be32_at(&mut outside, page(root) + 8, 1_000);
    assert!(matches!(read(&outside, None), Err(Error::Corrupt(_))));
}

#[test]
fn an_overflow_chain_that_loops_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // One row of 5000 bytes: page 1 the schema, 2 the leaf, the rest its overflow chain.
    sqlite3(
        &path,
        "PRAGMA page_size=512; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB NOT NULL);
         INSERT INTO t VALUES (1, randomblob(5000));",
    );
    let good = std::fs::read(&path).unwrap();
    assert_eq!(read(&good, None).unwrap(), expected(&path));
    let pages = good.len() / 512;
    assert!(pages > 10);
    let mut looping = good.clone();
    for n in 3..=pages {
        be32_at(&mut looping, (n - 1) * 512, 3);
    }
    let e = read(&looping, None).unwrap_err();
    assert!(e.to_string().contains("reached twice"), "{e}");
    // A chain that ends before the payload does.
    let mut short = good.clone();
    be32_at(&mut short, 2 * 512, 0);
    let e = read(&short, None).unwrap_err();
    assert!(e.to_string().contains("ends early"), "{e}");
}
