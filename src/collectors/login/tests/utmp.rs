//! Utmp records.

use super::*;

#[test]
fn layouts_match_glibc() {
    // libc mirrors glibc's struct utmpx for the target this test runs on.
    let size = std::mem::size_of::<libc::utmpx>();
    let layout = UtmpLayout::for_machine(std::env::consts::ARCH);
    assert_eq!(size, layout.size());
    let (sec, _, addr) = layout.tail_offsets();
    assert_eq!(std::mem::offset_of!(libc::utmpx, ut_tv), sec);
    assert_eq!(std::mem::offset_of!(libc::utmpx, ut_addr_v6), addr);
    assert_eq!(std::mem::offset_of!(libc::utmpx, ut_user), 44);
    assert_eq!(std::mem::offset_of!(libc::utmpx, ut_host), 76);
    assert_eq!(UtmpLayout::for_machine("x86_64"), UtmpLayout::Compat32);
    assert_eq!(UtmpLayout::for_machine("armv7l"), UtmpLayout::Compat32);
    assert_eq!(UtmpLayout::for_machine("i686"), UtmpLayout::Compat32);
    assert_eq!(UtmpLayout::for_machine("aarch64\n"), UtmpLayout::Native64);
}

#[cfg(target_env = "gnu")]
#[test]
fn reads_a_record_written_by_glibc() {
    unsafe extern "C" {
        fn updwtmpx(file: *const libc::c_char, ut: *const libc::utmpx);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wtmp");
    std::fs::write(&path, b"").unwrap();
    // SAFETY: utmpx is plain old data; all-zero is a valid value.
    let mut ut: libc::utmpx = unsafe { std::mem::zeroed() };
    ut.ut_type = libc::USER_PROCESS;
    ut.ut_pid = 4321;
    for (d, s) in ut.ut_line.iter_mut().zip(b"pts/7") {
        *d = *s as libc::c_char;
    }
    for (d, s) in ut.ut_user.iter_mut().zip(b"glibcuser") {
        *d = *s as libc::c_char;
    }
    for (d, s) in ut.ut_host.iter_mut().zip(b"198.51.100.4") {
        *d = *s as libc::c_char;
    }
    ut.ut_tv.tv_sec = T0 as _;
    ut.ut_addr_v6[0] = i32::from_ne_bytes([198, 51, 100, 4]);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: both pointers are valid for the call; glibc appends one record to the file.
    unsafe { updwtmpx(c_path.as_ptr(), &ut) };
    let bytes = std::fs::read(&path).unwrap();
    let layout = detect_layout(&bytes, UtmpLayout::Compat32).unwrap();
    assert_eq!(layout, UtmpLayout::for_machine(std::env::consts::ARCH));
    assert_eq!(bytes.len(), layout.size());
    let r = parse_utmp_record(&bytes, layout).unwrap();
    assert_eq!((r.kind, r.pid, r.seconds), (USER_PROCESS, 4321, T0));
    assert_eq!((r.line.as_str(), r.user.as_str()), ("pts/7", "glibcuser"));
    assert_eq!(r.addr, Some("198.51.100.4".parse().unwrap()));
}

#[test]
fn parses_both_layouts_and_detects_them() {
    for layout in [UtmpLayout::Compat32, UtmpLayout::Native64] {
        let other = match layout {
            UtmpLayout::Compat32 => UtmpLayout::Native64,
            UtmpLayout::Native64 => UtmpLayout::Compat32,
        };
        let buf = sample(layout);
        // The data wins over a wrong hint, also with a single record.
        assert_eq!(detect_layout(&buf, other), Some(layout), "{layout:?}");
        assert_eq!(
            detect_layout(&buf[layout.size()..2 * layout.size()], other),
            Some(layout)
        );
        let chunk = parse_utmp(&buf, layout);
        assert_eq!(
            (chunk.records.len(), chunk.consumed, chunk.malformed),
            (4, buf.len(), 0)
        );
        let login = &chunk.records[1];
        assert_eq!((login.kind, login.pid), (USER_PROCESS, 1200));
        assert_eq!(
            (login.line.as_str(), login.user.as_str()),
            ("pts/0", "alice")
        );
        assert_eq!(login.host, "203.0.113.9");
        assert_eq!((login.seconds, login.micros), (T0 + 5, 123_456));
        assert_eq!(login.remote_address(), Some("203.0.113.9".parse().unwrap()));
        let failed = &chunk.records[3];
        assert_eq!(
            failed.remote_address(),
            Some("2001:db8::7".parse().unwrap())
        );
        let l = utmp_login(failed, true, BTMP, executable_for_line(&failed.line));
        assert_eq!(l.operation, "btmp:failed");
        assert_eq!(l.result, LoginResult::Fail);
        assert_eq!(l.executable, "/usr/sbin/sshd");
        assert_eq!(l.user_name.as_deref(), Some("admin"));
        assert_eq!(l.extra_details["Terminal"], "ssh:notty");
        assert!(l.extra_details["Time"].starts_with("2026-11-"));
    }
    assert_eq!(detect_layout(&[], UtmpLayout::Compat32), None);
    assert_eq!(detect_layout(&[0u8; 4000], UtmpLayout::Compat32), None);
}

#[test]
fn truncated_and_garbage_utmp_never_panic() {
    let layout = UtmpLayout::Compat32;
    let buf = sample(layout);
    let cut = &buf[..2 * layout.size() + 100];
    let chunk = parse_utmp(cut, layout);
    assert_eq!(
        (chunk.records.len(), chunk.consumed),
        (2, 2 * layout.size())
    );
    assert!(matches!(
        parse_utmp_record(&buf[..10], layout),
        Err(Error::ShortRecord { len: 10, size: 384 })
    ));
    // A bad type is skipped and counted; names that are not UTF-8 are kept, replaced.
    let mut bad = utmp(layout, 77, 1, "x", b"u", "", T0, [0; 16]);
    bad.extend(utmp(
        layout,
        USER_PROCESS,
        1,
        "tty1",
        b"\xff\xferoot",
        "",
        T0,
        [0; 16],
    ));
    let chunk = parse_utmp(&bad, layout);
    assert_eq!(chunk.malformed, 1);
    assert_eq!(chunk.records[0].user, "\u{fffd}\u{fffd}root");
    // Arbitrary bytes: whatever comes out, no panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for l in [UtmpLayout::Compat32, UtmpLayout::Native64] {
        let _ = parse_utmp(&noise, l);
        for r in parse_utmp(&noise, l).records {
            let _ = (r.time(), r.remote_address());
        }
    }
    let _ = detect_layout(&noise, UtmpLayout::Native64);
}

#[test]
fn addresses_decode_as_openssh_writes_them() {
    assert_eq!(decode_addr(&[0; 16]), None);
    assert_eq!(
        decode_addr(&v4([10, 1, 2, 3])),
        Some("10.1.2.3".parse().unwrap())
    );
    let mapped = "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(decode_addr(&mapped), Some("192.0.2.1".parse().unwrap()));
    let v6 = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(decode_addr(&v6), Some("fe80::1".parse().unwrap()));
}
