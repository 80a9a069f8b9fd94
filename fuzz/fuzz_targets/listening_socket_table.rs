//! /proc/net/{tcp,tcp6,udp,udp6} tables (`listening::parse_socket_table`) and the fd / netns link
//! targets. Checks that no line is counted twice, that both ends of an entry share a family, and
//! that an address re-printed the way the kernel prints it parses back to itself.
#![no_main]

use edgeguard::host::netns::parse_ns_link;
use edgeguard::host::sockets::{
    Protocol, is_listening, parse_hex_address, parse_socket_link, parse_socket_table,
};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};

/// The kernel's `%08X` per 32-bit word of the address loaded as a native integer, then the port.
fn kernel_text(a: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match a.ip() {
        IpAddr::V4(v4) => vec![v4.octets()],
        IpAddr::V6(v6) => v6
            .octets()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let mut s: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
    s.push_str(&format!(":{:04X}", a.port()));
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let table = parse_socket_table(text);
    assert!(table.entries.len() + table.malformed <= text.lines().count());
    for e in &table.entries {
        assert_eq!(e.local.is_ipv4(), e.remote.is_ipv4(), "{e:?}");
        for a in [e.local, e.remote] {
            assert_eq!(parse_hex_address(&kernel_text(a)), Some(a));
        }
        let _ = is_listening(Protocol::Tcp, e);
        let _ = is_listening(Protocol::Udp, e);
    }
    for line in text.lines() {
        if let Some(a) = parse_hex_address(line) {
            assert_eq!(parse_hex_address(&kernel_text(a)), Some(a), "{line:?}");
        }
        let _ = parse_socket_link(line);
        let _ = parse_ns_link(line);
    }
});
