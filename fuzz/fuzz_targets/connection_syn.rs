//! Captured packets (`connection::parse_syn`, and `parse_segment` for SYN-ACKs): any byte string
//! from the AF_PACKET socket. Checks that a parsed SYN has non-zero ports, one address family for
//! both ends, and the family the IP version nibble says, and that `parse_segment` agrees with
//! `parse_syn`.
#![no_main]

use edgeguard::collectors::connection::{Segment, parse_segment, parse_syn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match (parse_segment(data), parse_syn(data)) {
        (Ok(Segment::Syn(a)), Ok(b)) => assert_eq!(a, b),
        (Ok(Segment::SynAck { server, client, .. }), Err(_)) => {
            assert_ne!(server.port(), 0);
            assert_ne!(client.port(), 0);
            assert_eq!(server.is_ipv4(), client.is_ipv4());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("parse_segment {a:?} but parse_syn {b:?}"),
    }
    if let Ok(syn) = parse_syn(data) {
        assert_ne!(syn.src.port(), 0);
        assert_ne!(syn.dst.port(), 0);
        assert_eq!(syn.src.is_ipv4(), syn.dst.is_ipv4());
        let version = data[0] >> 4;
        assert_eq!(
            syn.src.is_ipv4(),
            version == 4,
            "version {version}, {syn:?}"
        );
        // The smallest packet that can carry a SYN: IP header plus the TCP flags byte.
        let min = if version == 4 { 20 + 14 } else { 40 + 14 };
        assert!(data.len() >= min, "{} bytes gave {syn:?}", data.len());
    }
});
