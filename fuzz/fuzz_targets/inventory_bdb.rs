//! rpm's BerkeleyDB database (`inventory::read_rpm_bdb`: the hash reader's meta page, bucket
//! walk, hash pages, overflow chains, then `rpm::parse_header` on each record) and the reader's
//! raw records (`inventory::bdb::Db::for_each`, with a small item limit too). Input: the
//! `Packages` file. Checks that every package read has a name and bounded fields, that no item
//! beyond the limit is handed over, and that a second walk gives the same records.
#![no_main]

use edgeguard::collectors::inventory::{Manager, bdb::Db, read_rpm_bdb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packages) = read_rpm_bdb(data) {
        for p in &packages {
            assert_eq!(p.manager, Manager::Rpm);
            assert!(!p.name.is_empty());
            assert!(p.name.len() <= 256 && p.version.len() <= 256 && p.architecture.len() <= 256);
            assert!(p.source.as_deref() != Some(p.name.as_str()));
        }
    }
    let Ok(db) = Db::open(data, data.len() as u64) else {
        return;
    };
    let limit = 600;
    let walk = || {
        let mut records = Vec::new();
        let done = db.for_each(limit, |k, v| {
            assert!(k.len() as u64 <= limit && v.len() as u64 <= limit);
            records.push((k.to_vec(), v.to_vec()));
            records.len() < 1000
        });
        (done.is_ok(), records)
    };
    assert_eq!(walk(), walk());
});
