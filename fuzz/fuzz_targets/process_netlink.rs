//! Netlink process-connector datagrams (`process::parse_datagram`): bytes straight from a kernel
//! socket. Checks that parsing terminates, yields at most one item per netlink header, and that
//! exit statuses decode to what a shell could show.
#![no_main]

use edgeguard::collectors::process::{
    NLMSG_HDRLEN, ProcEvent, decode_wait_status, parse_datagram, signal_name,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut items = 0usize;
    for item in parse_datagram(data) {
        items += 1;
        // Every message, good or bad, starts with a header of its own (or ends the iteration).
        assert!(
            items <= data.len() / NLMSG_HDRLEN + 1,
            "{items} items from {} bytes",
            data.len()
        );
        if let Ok(ProcEvent::Exit { exit_code, .. }) = item {
            let w = decode_wait_status(exit_code);
            assert!((0..=255).contains(&w.exit_status), "{w:?}");
            if let Some(sig) = w.signal {
                assert!((1..=127).contains(&sig), "{w:?}");
                let _ = signal_name(sig);
            }
        }
    }
});
