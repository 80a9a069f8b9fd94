//! systemd journal files (`login::JournalFile`: header, entry array chain, ENTRY and DATA
//! objects in the regular and compact layouts, compressed DATA payloads). The input is written
//! to a file (the reader works on files) and read to its end in small steps. Checks that every
//! read ends in entries or an error, that the walk never takes more entries than the header
//! counts, and that seqnums passed over are never returned. The input is also decoded as a
//! compressed payload in each of the three formats (`login::decompress`, the decoders behind
//! compressed DATA objects): never more than the limit. A panic inside a decoder, which
//! `decompress` turns into `Corrupt` in the agent, still aborts here (libFuzzer's panic hook).
#![no_main]

use edgeguard::collectors::login::{Compression, Decompressed, JournalFile, Walk, decompress};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    for c in [Compression::Zstd, Compression::Lz4, Compression::Xz] {
        let limit = 4096;
        match decompress(c, data, limit) {
            Decompressed::Whole(v) | Decompressed::TooLong(v) | Decompressed::Corrupt(v) => {
                assert!(v.len() <= limit)
            }
        }
    }
    let path = std::env::temp_dir().join(format!("edgeguard-fuzz-journal-{}", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let Ok(file) = std::fs::File::open(&path) else {
        return;
    };
    let Ok(jf) = JournalFile::open(file) else {
        return;
    };
    let skip_to = jf.header.head_entry_seqnum;
    let mut walk = Walk::default();
    // A chain can hold at most n_entries entries; each step takes at least one or stops.
    for _ in 0..64 {
        match jf.read_entries(&mut walk, 3, skip_to) {
            Ok(got) => {
                assert!(walk.taken <= jf.header.n_entries);
                assert!(got.entries.iter().all(|e| e.seqnum > skip_to));
                assert!(got.entries.len() <= 3);
                if !got.more {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
