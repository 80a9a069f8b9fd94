//! rpm's sqlite database (`inventory::read_rpm_sqlite`: the SQLite reader's header, table
//! b-tree walk, overflow chains, WAL frames and record format, then `rpm::parse_header` on each
//! row) and header blobs alone. Input: a first byte whose low bit says whether a WAL follows
//! (then two bytes of its length, little-endian, and the WAL), then the main database file.
//! Checks that every package read has a name and bounded fields, and that a header blob parses
//! to the same package however it is reached.
#![no_main]

use edgeguard::collectors::inventory::{Manager, read_rpm_sqlite, rpm::parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (wal, main) = if flags & 1 == 1 && rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        (Some(&rest[2..2 + len]), &rest[2 + len..])
    } else {
        (None, rest)
    };
    if let Ok(packages) = read_rpm_sqlite(main, wal) {
        for p in &packages {
            assert_eq!(p.manager, Manager::Rpm);
            assert!(!p.name.is_empty());
            assert!(p.name.len() <= 256 && p.version.len() <= 256 && p.architecture.len() <= 256);
            assert!(p.source.as_deref() != Some(p.name.as_str()));
        }
    }
    if let Ok(p) = parse_header(rest) {
        assert!(!p.name.is_empty() && p.name.len() <= 256 && p.version.len() <= 256);
        assert_eq!(parse_header(rest).ok(), Some(p));
    }
});
