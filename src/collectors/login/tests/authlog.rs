//! Auth.log lines.

use super::*;

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
        "Nov 23 17:42:57 edge sshd[1]: Postponed publickey for git from 192.0.2.1 port 57904 ssh2 [preauth]",
        "Nov 23 17:42:57 edge sshd[1]: User child is on pid 4242",
        "Nov 23 17:42:57 edge sshd[1]: Failed publickey for git from 192.0.2.1 port 57904 ssh2: RSA SHA256:x",
        "Nov 23 17:42:57 edge sshd[1]: error: kex_exchange_identification: banner line too long",
        "Nov 23 17:42:57 edge sshd[1]: pam_unix(sshd:auth): check pass; user unknown",
        "Nov 23 17:42:57 edge sshd[1]: pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)",
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
        "<34>1 - edge sshd 1 - - Failed password for root from 1.2.3.4 port 1 ssh2",
        "<34>1 2026-11-23T17:42:57Z edge sshd x - - m",
        "<34>1 2026-11-23T17:42:57Z edge sshd 1 - [unterminated m",
        "<9999>1 2026-11-23T17:42:57Z edge sshd 1 - - m",
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
