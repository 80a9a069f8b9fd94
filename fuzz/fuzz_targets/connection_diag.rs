//! sock_diag replies (`connection::parse_diag_messages`): netlink messages from the kernel, used
//! to find a connection's owner. Checks the documented bound (at most one message per 16 bytes)
//! and that a parsed socket has one address family for both ends.
#![no_main]

use edgeguard::collectors::connection::{DiagMessage, parse_diag_messages};
use edgeguard::collectors::process::NLMSG_HDRLEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = parse_diag_messages(data) {
        assert!(messages.len() <= data.len() / NLMSG_HDRLEN);
        for (_, m) in messages {
            if let DiagMessage::Socket(s) = m {
                assert_eq!(s.local.is_ipv4(), s.remote.is_ipv4(), "{s:?}");
                assert!(s.inode <= u64::from(u32::MAX));
            }
        }
    }
});
