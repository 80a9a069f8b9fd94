use super::*;
use crate::collectors::Context;
use crate::config::Config;
use crate::event::{CollectorHealth, Event, LoginResult, Payload};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use chrono::{Datelike, Local, TimeZone};
use std::io::Write;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_795_000_000; // 2026-11-19

/// A utmp record written field by field at the layout's offsets.
#[allow(clippy::too_many_arguments)]
fn utmp(
    layout: UtmpLayout,
    kind: i16,
    pid: i32,
    line: &str,
    user: &[u8],
    host: &str,
    sec: i64,
    addr: [u8; 16],
) -> Vec<u8> {
    let mut b = vec![0u8; layout.size()];
    let put = |b: &mut [u8], s: &[u8]| b[..s.len()].copy_from_slice(s);
    b[0..2].copy_from_slice(&kind.to_ne_bytes());
    b[4..8].copy_from_slice(&pid.to_ne_bytes());
    put(&mut b[8..40], line.as_bytes());
    put(&mut b[40..44], b"ts/0");
    put(&mut b[44..76], user);
    put(&mut b[76..332], host.as_bytes());
    let (s, u, a) = layout.tail_offsets();
    match layout {
        UtmpLayout::Compat32 => {
            b[336..340].copy_from_slice(&4242_i32.to_ne_bytes());
            b[s..s + 4].copy_from_slice(&(sec as u32).to_ne_bytes());
            b[u..u + 4].copy_from_slice(&123_456_i32.to_ne_bytes());
        }
        UtmpLayout::Native64 => {
            b[336..344].copy_from_slice(&4242_i64.to_ne_bytes());
            b[s..s + 8].copy_from_slice(&sec.to_ne_bytes());
            b[u..u + 8].copy_from_slice(&123_456_i64.to_ne_bytes());
        }
    }
    b[a..a + 16].copy_from_slice(&addr);
    b
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..4].copy_from_slice(&a);
    r
}

fn sample(layout: UtmpLayout) -> Vec<u8> {
    let v6: [u8; 16] = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets();
    [
        utmp(layout, 2, 0, "~", b"reboot", "6.18.0", T0, [0; 16]),
        utmp(
            layout,
            USER_PROCESS,
            1200,
            "pts/0",
            b"alice",
            "203.0.113.9",
            T0 + 5,
            v4([203, 0, 113, 9]),
        ),
        utmp(
            layout,
            DEAD_PROCESS,
            1200,
            "pts/0",
            b"",
            "",
            T0 + 60,
            [0; 16],
        ),
        utmp(
            layout,
            6,
            1300,
            "ssh:notty",
            b"admin",
            "2001:db8::7",
            T0 + 70,
            v6,
        ),
    ]
    .concat()
}

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

fn auth(line: &str) -> AuthLogin {
    match parse_auth_line(line) {
        AuthLine::Login(a) => *a,
        other => panic!("{line}: {other:?}"),
    }
}

fn detail<'a>(a: &'a AuthLogin, key: &str) -> Option<&'a str> {
    a.details
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn sshd_lines() {
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1234]: Accepted password for alice from 203.0.113.5 port 50022 ssh2",
    );
    assert_eq!(
        (a.service, a.pid, a.operation.as_str()),
        (Service::Sshd, Some(1234), "sshd:password")
    );
    assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Success));
    assert_eq!(
        (a.remote_host.as_deref(), a.remote_port),
        (Some("203.0.113.5"), Some(50022))
    );
    assert_eq!(a.hostname, "edge");
    let a = auth(
        "2026-11-23T17:42:57.123456+00:00 edge sshd[99]: Accepted publickey for bob from 2001:db8::5 port 40000 ssh2: ED25519 SHA256:AbCd",
    );
    assert_eq!(a.operation, "sshd:publickey");
    assert_eq!(detail(&a, "Key"), Some("ED25519 SHA256:AbCd"));
    assert!(matches!(a.time, SyslogTime::Rfc3339(_)));
    let login = a.to_login(AUTH_LOG, Local::now(), |n| (n == "bob").then_some(1001));
    assert_eq!(login.user_id.as_deref(), Some("1001"));
    assert_eq!(login.remote_address, Some("2001:db8::5".parse().unwrap()));
    assert_eq!(login.executable, "/usr/sbin/sshd");
    assert_eq!(login.local_port, None);
    assert_eq!(login.extra_details["Time"], "2026-11-23T17:42:57.123+00:00");
    let a = auth(
        "Nov  3 01:02:03 edge sshd-session[7]: Accepted keyboard-interactive/pam for carol from 10.0.0.1 port 1 ssh2",
    );
    assert_eq!(a.operation, "sshd:keyboard-interactive");

    let a = auth(
        "Nov 23 17:42:57 edge sshd[1234]: Failed password for invalid user admin from 198.51.100.7 port 41234 ssh2",
    );
    assert_eq!(
        (a.user.as_str(), a.invalid_user, a.result),
        ("admin", true, LoginResult::Fail)
    );
    let login = a.to_login(AUTH_LOG, Local::now(), |_| Some(0));
    assert_eq!(login.user_id, None, "an invalid user has no uid");
    assert_eq!(login.extra_details["InvalidUser"], "true");
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1234]: Failed password for root from 198.51.100.7 port 41234 ssh2",
    );
    assert_eq!((a.user.as_str(), a.invalid_user), ("root", false));
    let a = auth("Nov 23 17:42:57 edge sshd[5]: Invalid user oracle from 198.51.100.8 port 5555");
    assert_eq!(
        (a.operation.as_str(), a.user.as_str()),
        ("sshd:invalid-user", "oracle")
    );
    let a = auth("Nov 23 17:42:57 edge sshd[5]: Invalid user  from 198.51.100.8 port 5555");
    assert_eq!(a.user, "");
    let a = auth(
        "Nov 23 17:42:57 edge sshd[6]: Connection closed by authenticating user root 198.51.100.9 port 60000 [preauth]",
    );
    assert_eq!(
        (a.operation.as_str(), a.user.as_str()),
        ("sshd:preauth-closed", "root")
    );
    assert_eq!(
        (a.remote_host.as_deref(), a.remote_port),
        (Some("198.51.100.9"), Some(60000))
    );
    let a = auth(
        "Nov 23 17:42:57 edge sshd[6]: Disconnected from authenticating user pi 198.51.100.9 port 60001 [preauth]",
    );
    assert_eq!(a.user, "pi");
    let a = auth(
        "Nov 23 17:42:57 edge sshd[6]: User guest from 198.51.100.10 not allowed because not listed in AllowUsers",
    );
    assert_eq!(
        (a.operation.as_str(), a.remote_port),
        ("sshd:not-allowed", None)
    );
    // UseDNS: a host name instead of an address.
    let a = auth(
        "Nov 23 17:42:57 edge sshd[6]: Accepted password for al from gw.example.net port 2 ssh2",
    );
    let login = a.to_login(AUTH_LOG, Local::now(), |_| None);
    assert_eq!(login.remote_address, None);
    assert_eq!(login.extra_details["RemoteHost"], "gw.example.net");
    // rsyslog's repeat reduction.
    let a = auth(
        "Nov 23 17:42:57 edge sshd[6]: message repeated 4 times: [ Failed password for root from 198.51.100.7 port 41234 ssh2]",
    );
    assert_eq!((a.repeat, a.user.as_str()), (Some(4), "root"));
}

#[test]
fn sshd_user_names_cannot_spoof_the_address() {
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1]: Invalid user x from 1.1.1.1 port 22 from 198.51.100.7 port 4000",
    );
    assert_eq!(a.user, "x from 1.1.1.1 port 22");
    assert_eq!(a.remote_host.as_deref(), Some("198.51.100.7"));
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1]: Failed password for invalid user y from 1.1.1.1 port 2 ssh2 from 198.51.100.7 port 4000 ssh2",
    );
    assert_eq!(a.remote_host.as_deref(), Some("198.51.100.7"));
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1]: Connection closed by authenticating user z 1.1.1.1 port 2 198.51.100.7 port 4000 [preauth]",
    );
    assert_eq!(
        (a.user.as_str(), a.remote_port),
        ("z 1.1.1.1 port 2", Some(4000))
    );
}

#[test]
fn sudo_and_su_lines() {
    let a = auth(
        "Nov 23 17:42:57 edge sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id ; echo x",
    );
    assert_eq!(
        (a.service, a.pid, a.result),
        (Service::Sudo, None, LoginResult::Success)
    );
    assert_eq!((a.operation.as_str(), a.user.as_str()), ("sudo", "alice"));
    assert_eq!(detail(&a, "TargetUser"), Some("root"));
    assert_eq!(detail(&a, "Terminal"), Some("pts/0"));
    assert_eq!(detail(&a, "Command"), Some("/usr/bin/id ; echo x"));
    let login = a.to_login(AUTH_LOG, Local::now(), |_| Some(1000));
    assert_eq!(
        (login.process_id, login.executable.as_str()),
        (0, "/usr/bin/sudo")
    );
    let a = auth(
        "2026-11-23T17:42:57+01:00 edge sudo[812]:    alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/sh",
    );
    assert_eq!((a.result, a.pid), (LoginResult::Fail, Some(812)));
    assert_eq!(detail(&a, "Reason"), Some("3 incorrect password attempts"));
    assert_eq!(detail(&a, "Command"), Some("/bin/sh"));
    let a = auth(
        "Nov 23 17:42:57 edge sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
    );
    assert_eq!((a.user.as_str(), a.result), ("bob", LoginResult::Fail));
    let a = auth(
        "Nov 23 17:42:57 edge sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
    );
    assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Fail));
    assert_eq!(detail(&a, "TargetUser"), None);

    let a = auth("Nov 23 17:42:57 edge su[2345]: (to root) alice on pts/0");
    assert_eq!(
        (a.service, a.result, a.user.as_str()),
        (Service::Su, LoginResult::Success, "alice")
    );
    assert_eq!(detail(&a, "TargetUser"), Some("root"));
    assert_eq!(
        a.to_login(SECURE, Local::now(), |_| None).executable,
        "/bin/su"
    );
    let a = auth("Nov 23 17:42:57 edge su[2345]: FAILED SU (to root) alice on pts/0");
    assert_eq!(a.result, LoginResult::Fail);
    let a = auth(
        "Nov 23 17:42:57 edge su[2345]: pam_unix(su-l:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=root",
    );
    assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Fail));
    assert_eq!(detail(&a, "TargetUser"), Some("root"));
    let a = auth("Nov 23 17:42:57 edge su[1]: FAILED su for root by mallory");
    assert_eq!((a.user.as_str(), a.result), ("mallory", LoginResult::Fail));
    let a = auth("Nov 23 17:42:57 edge su[1]: Successful su for root by mallory");
    assert_eq!(a.result, LoginResult::Success);
}

#[test]
fn other_and_garbage_lines() {
    for line in [
        "Nov 23 17:42:57 edge sshd[1]: Received disconnect from 1.2.3.4 port 5:11: Bye [preauth]",
        "Nov 23 17:42:57 edge sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4",
        "Nov 23 17:42:57 edge sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
        "Nov 23 17:42:57 edge CRON[3]: pam_unix(cron:session): session closed for user root",
        "Nov 23 17:42:57 edge sshd[1]: Accepted password for",
        "Nov 23 17:42:57 edge sudo: unable to resolve host edge",
    ] {
        assert_eq!(parse_auth_line(line), AuthLine::Other, "{line}");
    }
    for line in [
        "",
        "garbage",
        "Foo 23 17:42:57 edge sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2",
        "Nov 32 17:42:57 edge sshd[1]: x",
        "Nov 23 25:42:57 edge sshd[1]: x",
        "Nov 23 17:42:57 edge sshd[x]: x",
        "Nov 23 17:42:57 edge",
        "2026-13-23T17:42:57Z edge sshd[1]: x",
        "\u{0}\u{1}\u{2}",
    ] {
        assert_eq!(parse_auth_line(line), AuthLine::Malformed, "{line:?}");
    }
    // Multi-byte characters anywhere must not split a char boundary.
    for line in [
        "Nov 23 17:42:57 é sshd[1]: Accepted é for é from é port 1 ssh2",
        "Nov 23 17:42:57 h su[1]: (to é) é on é",
    ] {
        let _ = parse_auth_line(line);
    }
}

#[test]
fn classic_timestamps_get_the_right_year() {
    let now = Local.with_ymd_and_hms(2027, 1, 2, 10, 0, 0).unwrap();
    let t = SyslogTime::Classic {
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 0,
    };
    assert_eq!(t.resolve(now).unwrap().year(), 2026);
    let t = SyslogTime::Classic {
        month: 1,
        day: 2,
        hour: 9,
        minute: 0,
        second: 0,
    };
    assert_eq!(t.resolve(now).unwrap().year(), 2027);
    let t = SyslogTime::Classic {
        month: 2,
        day: 30,
        hour: 9,
        minute: 0,
        second: 0,
    };
    assert_eq!(t.resolve(now), None);
}

#[test]
fn lines_split_with_partial_and_overlong_lines() {
    let mut skip = false;
    let (lines, used, long) = split_lines(b"a\nb\npart", &mut skip, false);
    assert_eq!((lines, used, long), (vec![&b"a"[..], b"b"], 4, 0));
    let (lines, used, _) = split_lines(b"a\npart", &mut skip, true);
    assert_eq!((lines, used), (vec![&b"a"[..], b"part"], 6));
    // An overlong unterminated line is dropped now, and its tail when it ends.
    let big = vec![b'x'; MAX_LINE_BYTES + 10];
    let (lines, used, long) = split_lines(&big, &mut skip, false);
    assert_eq!((lines.len(), used, long, skip), (0, big.len(), 1, true));
    let (lines, used, long) = split_lines(b"tail\nnext\n", &mut skip, false);
    assert_eq!(
        (lines, used, long, skip),
        (vec![&b"next"[..]], 10, 0, false)
    );
    let mut terminated = vec![b'y'; MAX_LINE_BYTES + 1];
    terminated.extend(b"\nok\n");
    let (lines, _, long) = split_lines(&terminated, &mut skip, false);
    assert_eq!((lines, long), (vec![&b"ok"[..]], 1));
}

// ---- following files ----

struct Host {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.root.path().join("var/log")).unwrap();
        std::fs::create_dir_all(h.root.path().join("etc")).unwrap();
        std::fs::write(
            h.root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        h
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }
    fn append(&self, p: &str, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(p))
            .unwrap();
        f.write_all(bytes).unwrap();
    }
    fn follower(&self, start: StartAt) -> LoginFollower {
        LoginFollower::open(HostRoot::new(self.root.path()), self.state.path(), start)
    }
}

fn ssh_fail(user: &str, port: u16) -> String {
    format!(
        "Nov 23 17:42:57 edge sshd[77]: Failed password for {user} from 198.51.100.7 port {port} ssh2\n"
    )
}

fn users(batch: &Batch) -> Vec<String> {
    batch
        .logins
        .iter()
        .map(|l| l.user_name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn auth_log_is_followed_once_across_rotation_and_restart() {
    let h = Host::new();
    h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
    let mut f = h.follower(StartAt::End);
    f.save().unwrap();
    assert!(f.poll().logins.is_empty(), "first start skips history");
    h.append(AUTH_LOG, ssh_fail("a1", 2).as_bytes());
    h.append(
        AUTH_LOG,
        b"Nov 23 17:42:57 edge sshd[77]: Failed password for a2 from 1.2.3.4 po",
    );
    let b = f.poll();
    assert_eq!(users(&b), ["a1"]);
    assert_eq!(b.logins[0].remote_port, Some(2));
    assert_eq!(b.logins[0].user_id, None);
    assert!(f.poll().logins.is_empty(), "reported once");
    h.append(AUTH_LOG, b"rt 3 ssh2\n");
    assert_eq!(users(&f.poll()), ["a2"]);

    // Rotation: rename, the writer finishes in the old file, then a new file.
    std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
    h.append("/var/log/auth.log.1", ssh_fail("late", 4).as_bytes());
    h.append(AUTH_LOG, ssh_fail("new1", 5).as_bytes());
    assert_eq!(users(&f.poll()), ["late", "new1"]);
    h.append("/var/log/auth.log.1", ssh_fail("later", 6).as_bytes());
    assert_eq!(users(&f.poll()), ["later"]);
    f.save().unwrap();

    // Restart from the saved state: no repeats, the rotated file is still followed.
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    h.append(AUTH_LOG, ssh_fail("after", 7).as_bytes());
    h.append("/var/log/auth.log.1", ssh_fail("oldest", 8).as_bytes());
    assert_eq!(users(&f.poll()), ["oldest", "after"]);
    for _ in 0..ROTATED_QUIET_POLLS {
        f.poll();
    }
    f.save().unwrap();

    // Rotated while stopped: the rest of the old file, then the new one from its start.
    h.append(AUTH_LOG, ssh_fail("unread", 9).as_bytes());
    std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
    h.append(AUTH_LOG, ssh_fail("fresh", 10).as_bytes());
    let mut f = h.follower(StartAt::End);
    assert_eq!(users(&f.poll()), ["unread", "fresh"]);
    assert!(f.poll().logins.is_empty());
    f.save().unwrap();

    // Truncated in place (copytruncate): read again from the start.
    std::fs::write(h.path(AUTH_LOG), ssh_fail("t", 11)).unwrap();
    assert_eq!(users(&f.poll()), ["t"]);
}

#[test]
fn first_start_can_replay_and_missing_files_are_read_when_they_appear() {
    let h = Host::new();
    h.append(SECURE, ssh_fail("old", 1).as_bytes());
    let mut f = h.follower(StartAt::Beginning);
    assert_eq!(users(&f.poll()), ["old"]);
    assert_eq!(f.present(), [SECURE]);
    f.save().unwrap();
    // A file that did not exist at the last run is new from its first byte.
    h.append(AUTH_LOG, ssh_fail("appeared", 2).as_bytes());
    let mut f = h.follower(StartAt::End);
    assert_eq!(users(&f.poll()), ["appeared"]);
    h.append(
        WTMP,
        &utmp(
            UtmpLayout::Native64,
            USER_PROCESS,
            9,
            "tty1",
            b"alice",
            "",
            T0,
            [0; 16],
        ),
    );
    let b = f.poll();
    assert_eq!(users(&b), ["alice"]);
    assert_eq!(b.logins[0].user_id.as_deref(), Some("1000"));
    assert_eq!(b.logins[0].executable, "/bin/login");
}

#[test]
fn wtmp_and_btmp_are_followed_record_by_record() {
    let h = Host::new();
    let layout = UtmpLayout::for_machine(&machine(&HostRoot::new(h.root.path())));
    h.append(WTMP, &sample(layout));
    h.append(BTMP, &sample(layout)[..layout.size() + 10]); // history with a partial record
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    // A record being written at the first start is completed: it is new, so reported.
    h.append(BTMP, &sample(layout)[layout.size() + 10..2 * layout.size()]);
    assert_eq!(users(&f.poll()), ["alice"]);

    let rec = utmp(
        layout,
        USER_PROCESS,
        1,
        "pts/3",
        b"alice",
        "192.0.2.50",
        T0,
        v4([192, 0, 2, 50]),
    );
    let logout = utmp(layout, DEAD_PROCESS, 1, "pts/3", b"", "", T0, [0; 16]);
    h.append(WTMP, &[rec.clone(), logout].concat());
    let fail = utmp(
        layout,
        6,
        2,
        "ssh:notty",
        b"\xffbad",
        "192.0.2.51",
        T0,
        v4([192, 0, 2, 51]),
    );
    h.append(BTMP, &fail[..100]);
    let b = f.poll();
    assert_eq!(users(&b), ["alice"], "logouts are not logins");
    let l = &b.logins[0];
    assert_eq!(
        (l.operation.as_str(), l.result, l.process_id),
        ("wtmp:login", LoginResult::Success, 1)
    );
    assert_eq!(l.remote_address, Some("192.0.2.50".parse().unwrap()));
    assert_eq!(l.extra_details["Source"], WTMP);
    h.append(BTMP, &fail[100..]);
    let b = f.poll();
    assert_eq!(users(&b), ["\u{fffd}bad"]);
    assert_eq!(
        (b.logins[0].result, b.logins[0].executable.as_str()),
        (LoginResult::Fail, "/usr/sbin/sshd")
    );
    f.save().unwrap();

    // Restart, then logrotate's wtmp rotation (rename + create).
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    std::fs::rename(h.path(WTMP), h.path("/var/log/wtmp.1")).unwrap();
    h.append(WTMP, &rec);
    assert_eq!(users(&f.poll()), ["alice"]);
    assert!(f.poll().logins.is_empty());

    // Garbage appended: skipped and counted, and following goes on.
    h.append(WTMP, &vec![0xAB; layout.size()]);
    h.append(WTMP, &rec);
    let b = f.poll();
    assert_eq!((users(&b), b.malformed), (vec!["alice".to_string()], 1));
}

#[test]
fn corrupt_state_is_a_first_start() {
    let h = Host::new();
    h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
    std::fs::write(h.state.path().join(STATE_FILE), b"{not json").unwrap();
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
}

#[test]
fn the_real_host_files_read_without_error() {
    // Read-only: a follower on the real root with a throwaway state directory.
    let state = tempfile::tempdir().unwrap();
    let mut f = LoginFollower::open(HostRoot::default(), state.path(), StartAt::Beginning);
    let b = f.poll();
    for l in &b.logins {
        assert!(!l.operation.is_empty());
    }
    if let Ok(bytes) = std::fs::read(WTMP) {
        let hint = UtmpLayout::for_machine(std::env::consts::ARCH);
        if let Some(layout) = detect_layout(&bytes, hint) {
            assert_eq!(layout, hint);
        }
    }
}

fn context(h: &Host) -> (Context, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel(64);
    let (_cfg, config) = watch::channel(Arc::new(Config::default()));
    let ctx = Context {
        host: HostRoot::new(h.root.path()),
        events: tx,
        metrics: Arc::new(Metrics::for_tests()),
        config,
        cancel: CancellationToken::new(),
        state_dir: h.state.path().to_path_buf(),
    };
    (ctx, rx)
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Payload {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .payload
}

#[tokio::test]
async fn the_task_reports_status_emits_logins_and_stops() {
    let h = Host::new();
    let (ctx, mut rx) = context(&h);
    let opts = LoginOptions {
        poll: Duration::from_millis(20),
        ..LoginOptions::default()
    };
    let task = tokio::spawn(run_with(ctx.clone(), opts.clone()));
    match next(&mut rx).await {
        Payload::CollectorStatus(s) => {
            assert_eq!(s[0].status, CollectorHealth::Degraded);
            assert!(
                s[0].message.contains("/var/log/auth.log"),
                "{}",
                s[0].message
            );
        }
        other => panic!("{other:?}"),
    }
    h.append(AUTH_LOG, ssh_fail("root", 9).as_bytes());
    match next(&mut rx).await {
        Payload::CollectorStatus(s) => assert_eq!(s[0].status, CollectorHealth::Up),
        other => panic!("{other:?}"),
    }
    match next(&mut rx).await {
        Payload::Login(l) => {
            assert_eq!(
                (l[0].user_name.as_deref(), l[0].user_id.as_deref()),
                (Some("root"), Some("0"))
            );
            assert_eq!(l[0].process_id, 77);
        }
        other => panic!("{other:?}"),
    }
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    // Restarted: nothing repeated, and no status while healthy.
    let (ctx, mut rx) = context(&h);
    let task = tokio::spawn(run_with(ctx.clone(), opts));
    h.append(AUTH_LOG, ssh_fail("second", 10).as_bytes());
    match next(&mut rx).await {
        Payload::Login(l) => assert_eq!(l[0].user_name.as_deref(), Some("second")),
        other => panic!("{other:?}"),
    }
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.try_recv().is_err());
}
