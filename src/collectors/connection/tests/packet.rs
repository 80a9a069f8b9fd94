//! Packets, parsed as the untrusted bytes they are.

use super::*;

#[test]
fn syn_packets_parse() {
    let syn = tcp(40000, 443, 0xdeadbeef, TCP_SYN);
    let want = Syn {
        src: sa("10.0.0.1:40000"),
        dst: sa("10.0.0.2:443"),
        seq: 0xdeadbeef,
    };
    assert_eq!(
        parse_syn(&v4([10, 0, 0, 1], [10, 0, 0, 2], 0, &syn)),
        Ok(want)
    );
    // IP options, link padding after the packet.
    let mut padded = v4([10, 0, 0, 1], [10, 0, 0, 2], 3, &syn);
    padded.extend_from_slice(&[0xff; 10]);
    assert_eq!(parse_syn(&padded), Ok(want));
    // SYN with other flags (ECN, FIN from a scanner) is still a request.
    assert!(parse_syn(&v4([10, 0, 0, 1], [10, 0, 0, 2], 0, &tcp(1, 2, 0, 0xc3))).is_ok());

    let want6 = Syn {
        src: SocketAddr::new(A6.into(), 40000),
        dst: SocketAddr::new(B6.into(), 443),
        seq: 0xdeadbeef,
    };
    assert_eq!(parse_syn(&v6(A6, B6, IPPROTO_TCP, &syn)), Ok(want6));
    // Hop-by-hop, then destination options (2 units), then TCP.
    let chain = ext(0x3c, 0, &ext(IPPROTO_TCP, 2, &syn));
    assert_eq!(parse_syn(&v6(A6, B6, 0, &chain)), Ok(want6));
    // First fragment parses; a later one does not.
    assert_eq!(
        parse_syn(&v6(A6, B6, 44, &fragment(IPPROTO_TCP, 0, &syn))),
        Ok(want6)
    );
    assert_eq!(
        parse_syn(&v6(A6, B6, 44, &fragment(IPPROTO_TCP, 5, &syn))),
        Err(PacketError::Fragment)
    );
    // AH: (len + 2) × 4 bytes.
    let mut ah = vec![IPPROTO_TCP, 4];
    ah.extend_from_slice(&[0; 22]);
    ah.extend_from_slice(&syn);
    assert_eq!(parse_syn(&v6(A6, B6, 51, &ah)), Ok(want6));
}

#[test]
fn other_packets_are_errors() {
    let syn = tcp(40000, 443, 1, TCP_SYN);
    let ip4 = |p: &[u8]| v4([10, 0, 0, 1], [10, 0, 0, 2], 0, p);
    assert_eq!(
        parse_syn(&ip4(&tcp(1, 2, 0, TCP_SYN | TCP_ACK))),
        Err(PacketError::NotSyn)
    );
    assert_eq!(
        parse_syn(&ip4(&tcp(1, 2, 0, TCP_ACK))),
        Err(PacketError::NotSyn)
    );
    assert_eq!(
        parse_syn(&ip4(&tcp(0, 2, 0, TCP_SYN))),
        Err(PacketError::BadHeader)
    );
    let mut udp = ip4(&syn);
    udp[9] = 17;
    assert_eq!(parse_syn(&udp), Err(PacketError::NotTcp));
    let mut frag = ip4(&syn);
    frag[7] = 1;
    assert_eq!(parse_syn(&frag), Err(PacketError::Fragment));
    let mut short_ihl = ip4(&syn);
    short_ihl[0] = 0x44;
    assert_eq!(parse_syn(&short_ihl), Err(PacketError::BadHeader));
    let mut short_total = ip4(&syn);
    short_total[2..4].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(parse_syn(&short_total), Err(PacketError::Truncated));
    assert_eq!(parse_syn(&[0x10; 60]), Err(PacketError::NotIp));
    assert_eq!(parse_syn(&[]), Err(PacketError::Truncated));
    // ESP cannot be read; no-next-header has nothing.
    assert_eq!(parse_syn(&v6(A6, B6, 50, &syn)), Err(PacketError::NotTcp));
    assert_eq!(parse_syn(&v6(A6, B6, 59, &[])), Err(PacketError::NotTcp));
    // An endless chain of hop-by-hop headers stops.
    let mut chain = syn.clone();
    for _ in 0..20 {
        chain = ext(0, 0, &chain);
    }
    assert_eq!(
        parse_syn(&v6(A6, B6, 0, &chain)),
        Err(PacketError::BadHeader)
    );
    // An extension header claiming more than there is.
    assert_eq!(
        parse_syn(&v6(A6, B6, 0, &[IPPROTO_TCP, 255, 0, 0])),
        Err(PacketError::Truncated)
    );
}

#[test]
fn truncated_and_random_packets_never_panic() {
    let syn = tcp(40000, 443, 1, TCP_SYN);
    for p in [
        v4([10, 0, 0, 1], [10, 0, 0, 2], 2, &syn),
        v6(A6, B6, 0, &ext(44, 1, &fragment(IPPROTO_TCP, 0, &syn))),
    ] {
        let whole = parse_syn(&p).unwrap();
        for n in 0..p.len() {
            // 14 bytes of TCP header are enough; fewer must be an error, never another SYN.
            let cut = &p[..n];
            assert!(
                parse_syn(cut).is_err() || parse_syn(cut) == Ok(whole),
                "cut at {n}"
            );
            let _ = candidates(
                &Syn {
                    src: sa("1.1.1.1:1"),
                    dst: sa("1.1.1.1:1"),
                    seq: 0,
                },
                0,
                |_| true,
                |_| None,
            );
        }
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let mut p: Vec<u8> = (0..rng.usize(0..160)).map(|_| rng.u8(..)).collect();
        if let Some(b) = p.first_mut() {
            *b = (*b & 0x0f) | if rng.bool() { 0x40 } else { 0x60 };
        }
        let _ = parse_syn(&p);
        let _ = parse_diag_messages(&p);
        let _ = parse_diag_socket(&p);
    }
}
