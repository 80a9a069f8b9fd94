//! Interpretation: candidates, once-only keys, addresses and table lookups.

use super::*;

#[test]
fn candidates_follow_the_table() {
    let ours = |ip: IpAddr| ip.is_loopback() || ip == IpAddr::from([192, 0, 2, 2]);
    let theirs = |ip: IpAddr| (ip == IpAddr::from([172, 17, 0, 2])).then_some(9u64);
    let s = |src: &str, dst: &str| Syn {
        src: sa(src),
        dst: sa(dst),
        seq: 1,
    };
    let dirs = |syn: Syn, t: u8| -> Vec<(Option<u64>, Direction, u16)> {
        candidates(&syn, t, ours, theirs)
            .into_iter()
            .map(|c| (c.netns, c.direction, c.local.port()))
            .collect()
    };
    use Direction::{In, Out};
    // Loopback: one Out from the sent copy, one In from the received copy.
    let lo = s("127.0.0.1:5000", "127.0.0.1:80");
    assert_eq!(dirs(lo, PACKET_OUTGOING), vec![(None, Out, 5000)]);
    assert_eq!(dirs(lo, PACKET_HOST), vec![(None, In, 80)]);
    assert_eq!(dirs(lo, 1), vec![]);
    // Host to the internet, and back.
    assert_eq!(
        dirs(s("192.0.2.2:5000", "8.8.8.8:53"), PACKET_OUTGOING),
        vec![(None, Out, 5000)]
    );
    assert_eq!(
        dirs(s("8.8.8.8:5000", "192.0.2.2:22"), PACKET_HOST),
        vec![(None, In, 22)]
    );
    // Spoofed: a received packet claiming our source is no Out of ours.
    assert_eq!(dirs(s("192.0.2.2:5000", "8.8.8.8:53"), PACKET_HOST), vec![]);
    // Container out: veth (OTHERHOST) and bridge (HOST) copies are the container's Out.
    let c = s("172.17.0.2:5000", "8.8.8.8:53");
    assert_eq!(dirs(c, PACKET_OTHERHOST), vec![(Some(9), Out, 5000)]);
    assert_eq!(dirs(c, PACKET_HOST), vec![(Some(9), Out, 5000)]);
    // Forwarded to a container (after DNAT): its In.
    assert_eq!(
        dirs(s("8.8.8.8:5000", "172.17.0.2:80"), PACKET_OUTGOING),
        vec![(Some(9), In, 80)]
    );
    // Host to container: our Out and its In.
    assert_eq!(
        dirs(s("192.0.2.2:5000", "172.17.0.2:80"), PACKET_OUTGOING),
        vec![(None, Out, 5000), (Some(9), In, 80)]
    );
    // Someone else's traffic.
    assert_eq!(
        dirs(s("8.8.4.4:5000", "8.8.8.8:53"), PACKET_OTHERHOST),
        vec![]
    );
}

#[test]
fn copies_and_retransmissions_are_reported_once() {
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let out = Candidate {
        netns: None,
        direction: Direction::Out,
        local: sa("192.0.2.2:5000"),
        remote: sa("8.8.8.8:53"),
    };
    // The same SYN, masqueraded: another local end, same remote and sequence number.
    let container = Candidate {
        netns: Some(9),
        local: sa("172.17.0.2:5000"),
        ..out
    };
    assert!(seen.first(SeenKey::of(&container, 1), t0));
    assert!(!seen.first(SeenKey::of(&out, 1), t0));
    assert!(seen.first(SeenKey::of(&out, 2), t0), "a new connection");
    let inbound = Candidate {
        direction: Direction::In,
        local: sa("127.0.0.1:80"),
        remote: sa("127.0.0.1:5000"),
        netns: None,
    };
    assert!(seen.first(SeenKey::of(&inbound, 1), t0));
    assert!(!seen.first(SeenKey::of(&inbound, 1), t0 + Duration::from_secs(60)));
    assert!(seen.first(
        SeenKey::of(&inbound, 1),
        t0 + SEEN_TTL + Duration::from_secs(61)
    ));
    // Bounded.
    for i in 0..(SEEN_MAX as u32 * 2) {
        seen.first(SeenKey::of(&out, i + 10), t0);
    }
    assert!(seen.keys.len() <= SEEN_MAX && seen.order.len() <= SEEN_MAX);
    // After the storm, a quiet host: the storm's entries expire and their room goes back.
    let later = t0 + SEEN_TTL + Duration::from_secs(1);
    for i in 0..10u32 {
        assert!(seen.first(SeenKey::of(&out, u32::MAX - i), later));
    }
    assert_eq!(seen.order.len(), 10);
    assert!(
        seen.keys.capacity() <= 4 * crate::collectors::capacity::SLACK
            && seen.order.capacity() <= 4 * crate::collectors::capacity::SLACK,
        "{} {}",
        seen.keys.capacity(),
        seen.order.capacity()
    );
}

#[test]
fn addresses_of_a_namespace() {
    let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n     +-- 192.0.2.0/24 2 0 2\n        +-- 192.0.2.0/30 2 0 2\n           |-- 192.0.2.0\n              /24 link UNICAST\n           |-- 192.0.2.2\n              /32 host LOCAL\nLocal:\n           |-- 192.0.2.2\n              /32 host LOCAL\n           |-- garbage\n              /32 host LOCAL\n";
    let v4 = parse_fib_trie_local(trie);
    assert_eq!(
        v4,
        [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)].into()
    );
    let v6 = parse_if_inet6(
        "00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000002 04 40 00 82     eth0\nzz\n\n",
    );
    assert_eq!(v6, [Ipv6Addr::LOCALHOST, "fd00::2".parse().unwrap()].into());
    // The real files of this host parse to something containing loopback.
    let mine = local_addresses(&crate::host::HostRoot::default(), "/proc/self/net");
    assert!(mine.contains(&IpAddr::from([127, 0, 0, 1])));
}

#[test]
fn table_lookup_like_the_kernel() {
    let e = |l: &str, r: &str, state, inode| SocketEntry {
        local: sa(l),
        remote: sa(r),
        state,
        uid: 0,
        inode,
    };
    let table = [
        e("0.0.0.0:80", "0.0.0.0:0", TCP_LISTEN, 1),
        e("127.0.0.1:80", "0.0.0.0:0", TCP_LISTEN, 2),
        e("[::]:22", "[::]:0", TCP_LISTEN, 3),
        e("127.0.0.1:80", "127.0.0.1:5000", TCP_ESTABLISHED, 4),
        e(
            "[::ffff:10.0.0.1]:22",
            "[::ffff:10.0.0.9]:6000",
            TCP_ESTABLISHED,
            5,
        ),
    ];
    let find = |l: &str, r: &str| find_in_table(&table, sa(l), sa(r)).map(|e| e.inode);
    assert_eq!(find("127.0.0.1:80", "127.0.0.1:5000"), Some(4));
    assert_eq!(find("127.0.0.1:80", "127.0.0.1:5001"), None);
    assert_eq!(
        find("127.0.0.1:80", "0.0.0.0:0"),
        Some(2),
        "exact address first"
    );
    assert_eq!(
        find("10.0.0.1:80", "0.0.0.0:0"),
        Some(1),
        "then the wildcard"
    );
    assert_eq!(
        find("10.0.0.1:22", "0.0.0.0:0"),
        Some(3),
        "dual-stack listener"
    );
    assert_eq!(find("10.0.0.1:22", "10.0.0.9:6000"), Some(5), "v4-mapped");
    assert_eq!(find("10.0.0.1:23", "0.0.0.0:0"), None);
}
