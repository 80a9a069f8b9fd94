//! nftables change notifications (`firewall::monitor::Batch`): netlink datagrams from the
//! kernel's nftables group, walked as untrusted bytes. Checks that a transaction never holds
//! more records than the cap and that every record counts at least one change.
#![no_main]

use edgeguard::collectors::firewall::monitor::{Batch, MAX_RECORDS, Parsed};
use edgeguard::kernel::netlink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut batch = Batch::default();
    for msg in netlink::messages(data).flatten() {
        let parsed = batch.add(&msg);
        if matches!(parsed, Parsed::Generation { .. }) {
            let records = batch.take(&parsed);
            assert!(records.len() <= MAX_RECORDS);
            assert!(records.iter().all(|r| r.count >= 1));
            assert!(batch.is_empty());
        }
    }
    let records = batch.take(&Parsed::Ignored);
    assert!(records.len() <= MAX_RECORDS);
});
