//! The connector's wire format, from hand-made messages.

use super::*;

fn proc_event(what: u32, fields: &[u32]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&what.to_ne_bytes());
    d.extend_from_slice(&0u32.to_ne_bytes()); // cpu
    d.extend_from_slice(&123u64.to_ne_bytes()); // timestamp
    let mut data = [0u8; 24]; // the union is 24 bytes, zero-padded, as the kernel sends it
    for (i, f) in fields.iter().enumerate() {
        data[i * 4..i * 4 + 4].copy_from_slice(&f.to_ne_bytes());
    }
    d.extend_from_slice(&data);
    d
}

fn cn_msg(idx: u32, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for v in [idx, 1, seq, ack] {
        m.extend_from_slice(&v.to_ne_bytes());
    }
    m.extend_from_slice(&(data.len() as u16).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(data);
    m
}

fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0u8; 10]);
    m.extend_from_slice(payload);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

fn datagram(what: u32, fields: &[u32]) -> Vec<u8> {
    nlmsg(NLMSG_DONE, &cn_msg(1, 0, 0, &proc_event(what, fields)))
}

fn parse_all(buf: &[u8]) -> Vec<Result<ProcEvent, ParseError>> {
    parse_datagram(buf).collect()
}

#[test]
fn parses_fork_exec_exit_and_ack() {
    assert_eq!(
        parse_all(&datagram(PROC_EVENT_FORK, &[10, 10, 11, 11])),
        [Ok(ProcEvent::Fork {
            parent_pid: 10,
            parent_tgid: 10,
            child_pid: 11,
            child_tgid: 11
        })]
    );
    assert_eq!(
        parse_all(&datagram(PROC_EVENT_EXEC, &[11, 11])),
        [Ok(ProcEvent::Exec {
            pid: 11,
            tgid: 11,
            timestamp_ns: 123
        })]
    );
    assert_eq!(
        parse_all(&datagram(PROC_EVENT_EXIT, &[11, 11, 0x300, 17, 10, 10])),
        [Ok(ProcEvent::Exit {
            pid: 11,
            tgid: 11,
            exit_code: 0x300,
            exit_signal: 17,
            parent_tgid: Some(10)
        })]
    );
    // An old kernel leaves the parent zero.
    assert!(matches!(
        parse_all(&datagram(PROC_EVENT_EXIT, &[11, 11, 9, 17]))[0],
        Ok(ProcEvent::Exit {
            parent_tgid: None,
            ..
        })
    ));
    let ack = nlmsg(NLMSG_DONE, &cn_msg(1, 7, 8, &proc_event(0, &[1])));
    assert_eq!(
        parse_all(&ack),
        [Ok(ProcEvent::Ack {
            seq: 7,
            ack: 8,
            err: 1
        })]
    );
    assert_eq!(
        parse_all(&datagram(PROC_EVENT_UID, &[12, 11, 1000, 0])),
        [Ok(ProcEvent::Uid {
            pid: 12,
            tgid: 11,
            ruid: 1000,
            euid: 0
        })]
    );
    assert_eq!(
        parse_all(&datagram(0x200, &[1, 1])),
        [Ok(ProcEvent::Other { what: 0x200 })]
    );
    // Several messages in one datagram, with a NOOP between them.
    let mut two = datagram(PROC_EVENT_EXEC, &[5, 5]);
    two.extend(nlmsg(NLMSG_NOOP, &[]));
    two.extend(datagram(PROC_EVENT_EXEC, &[6, 6]));
    assert_eq!(
        parse_all(&two),
        [
            Ok(ProcEvent::Exec {
                pid: 5,
                tgid: 5,
                timestamp_ns: 123
            }),
            Ok(ProcEvent::Exec {
                pid: 6,
                tgid: 6,
                timestamp_ns: 123
            })
        ]
    );
}

#[test]
fn skips_truncated_and_foreign_messages() {
    let good = datagram(PROC_EVENT_EXEC, &[5, 5]);
    // Every truncation of a valid message is an error, never a panic or a wrong event.
    for cut in 1..good.len() {
        let r = parse_all(&good[..cut]);
        assert!(r.iter().all(|e| e.is_err()), "cut at {cut}: {r:?}");
    }
    assert_eq!(parse_all(&[]), []);
    // nlmsg_len smaller than the header, or larger than the buffer.
    let mut bad = good.clone();
    bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert_eq!(parse_all(&bad), [Err(ParseError::Truncated)]);
    bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
    assert_eq!(parse_all(&bad), [Err(ParseError::Truncated)]);
    // cn_msg.len larger than the message.
    let mut cn = cn_msg(1, 0, 0, &proc_event(PROC_EVENT_EXEC, &[5, 5]));
    cn[16..18].copy_from_slice(&500u16.to_ne_bytes());
    assert_eq!(
        parse_all(&nlmsg(NLMSG_DONE, &cn)),
        [Err(ParseError::Truncated)]
    );
    // An exit event cut short inside its data.
    let mut short = proc_event(PROC_EVENT_EXIT, &[1, 1]);
    short.truncate(PROC_EVENT_HEADER_LEN + 8);
    assert_eq!(
        parse_all(&nlmsg(NLMSG_DONE, &cn_msg(1, 0, 0, &short))),
        [Err(ParseError::ShortEvent)]
    );
    // Another connector channel, an error message.
    assert_eq!(
        parse_all(&nlmsg(
            NLMSG_DONE,
            &cn_msg(9, 0, 0, &proc_event(2, &[1, 1]))
        )),
        [Err(ParseError::OtherChannel)]
    );
    assert_eq!(
        parse_all(&nlmsg(2, &[0u8; 20])),
        [Err(ParseError::UnexpectedType(2))]
    );
    // A bad message after a good one: the good one still counts.
    let mut mixed = good.clone();
    mixed.extend_from_slice(&[0xff; 7]);
    assert_eq!(
        parse_all(&mixed),
        [
            Ok(ProcEvent::Exec {
                pid: 5,
                tgid: 5,
                timestamp_ns: 123
            }),
            Err(ParseError::Truncated)
        ]
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let n = parse_datagram(&bytes).count();
        proptest::prop_assert!(n <= bytes.len() / NLMSG_HDRLEN + 1);
    }
}

#[test]
fn subscription_message_round_trips() {
    let m = subscription_message(PROC_CN_MCAST_LISTEN, 42, 7);
    assert_eq!(m.len(), 40);
    assert_eq!(u32_at(&m, 0), Some(40));
    let cn = &m[NLMSG_HDRLEN..];
    assert_eq!(u32_at(cn, 8), Some(42));
    assert_eq!(u32_at(cn, 12), Some(7));
    assert_eq!(u16_at(cn, 16), Some(4));
    assert_eq!(u32_at(cn, CN_MSG_LEN), Some(PROC_CN_MCAST_LISTEN));
}

#[test]
fn wait_statuses_read_like_a_shell() {
    assert_eq!(
        decode_wait_status(3 << 8),
        WaitStatus {
            exit_status: 3,
            signal: None,
            core_dumped: false
        }
    );
    assert_eq!(decode_wait_status(0).exit_status, 0);
    assert_eq!(
        decode_wait_status(9),
        WaitStatus {
            exit_status: 137,
            signal: Some(9),
            core_dumped: false
        }
    );
    assert!(decode_wait_status(0x80 | 11).core_dumped);
    assert_eq!(decode_wait_status(u32::MAX).exit_status, 255);
    assert_eq!(signal_name(9).as_deref(), Some("SIGKILL"));
    assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
    assert_eq!(signal_name(35).as_deref(), Some("SIGRTMIN+3"));
    assert_eq!(signal_name(0), None);
    assert_eq!(signal_name(u32::MAX), None);
}

#[test]
fn filtered_subscription_carries_the_event_bits() {
    let m = filtered_subscription_message(PROC_CN_MCAST_LISTEN, PROC_EVENT_EXEC, 42, 7);
    assert_eq!(m.len(), 44);
    assert_eq!(u32_at(&m, 0), Some(44));
    let cn = &m[NLMSG_HDRLEN..];
    assert_eq!(u32_at(cn, 12), Some(7));
    assert_eq!(u16_at(cn, 16), Some(8));
    assert_eq!(u32_at(cn, CN_MSG_LEN), Some(PROC_CN_MCAST_LISTEN));
    assert_eq!(u32_at(cn, CN_MSG_LEN + 4), Some(PROC_EVENT_EXEC));
}

#[test]
fn kernels_from_6_6_filter_events() {
    for (release, filters) in [
        ("6.6.0", true),
        ("6.18.0-1-amd64", true),
        ("7.0-rc1", true),
        ("6.5.13-arch1", false),
        ("6.1.0-27-armmp", false),
        ("5.15.0-91-generic", false),
        ("4.19.0+", false),
        ("", false),
        ("six", false),
        ("6", false),
    ] {
        assert_eq!(kernel_filters_events(release), filters, "{release}");
    }
}

#[test]
fn timed_events_carry_the_kernel_time() {
    let d = datagram(PROC_EVENT_EXEC, &[10, 10]);
    let timed: Vec<_> = parse_datagram_timed(&d).collect();
    assert_eq!(timed.len(), 1);
    let (time, event) = timed[0].unwrap();
    assert!(matches!(event, ProcEvent::Exec { pid: 10, .. }));
    assert_eq!(time, 123, "proc_event() writes 123 as the time");
}
