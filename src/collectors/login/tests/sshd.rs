//! sshd's message forms, syslog header variants, and counting one attempt once.

use super::*;
use std::time::Instant;

fn auth(line: &str) -> AuthLogin {
    match parse_auth_line(line) {
        AuthLine::Login(a) => *a,
        other => panic!("{line}: {other:?}"),
    }
}

/// (message after `sshd[PID]: `, operation, result, role, user, remote host, port, invalid)
type Row = (
    &'static str,
    &'static str,
    LoginResult,
    Role,
    &'static str,
    Option<&'static str>,
    Option<u16>,
    bool,
);

#[test]
fn sshd_forms() {
    use LoginResult::{Fail, Success};
    use Role::{Attempt, Connection, Immediate, PamFailure};
    let rows: &[Row] = &[
        (
            "Accepted password for alice from 203.0.113.5 port 50022 ssh2",
            "sshd:password",
            Success,
            Immediate,
            "alice",
            Some("203.0.113.5"),
            Some(50022),
            false,
        ),
        (
            "Accepted gssapi-with-mic for bob@EXAMPLE from 203.0.113.5 port 1 ssh2",
            "sshd:gssapi-with-mic",
            Success,
            Immediate,
            "bob@EXAMPLE",
            Some("203.0.113.5"),
            Some(1),
            false,
        ),
        (
            "Accepted keyboard-interactive/pam for carol from 2001:db8::1 port 2 ssh2",
            "sshd:keyboard-interactive",
            Success,
            Immediate,
            "carol",
            Some("2001:db8::1"),
            Some(2),
            false,
        ),
        (
            "Failed password for root from 198.51.100.7 port 41234 ssh2",
            "sshd:password",
            Fail,
            Attempt,
            "root",
            Some("198.51.100.7"),
            Some(41234),
            false,
        ),
        (
            "Failed password for invalid user admin from 198.51.100.7 port 41234 ssh2",
            "sshd:password",
            Fail,
            Attempt,
            "admin",
            Some("198.51.100.7"),
            Some(41234),
            true,
        ),
        (
            "Failed password for invalid user admin from 2001:db8::9",
            "sshd:password",
            Fail,
            Attempt,
            "admin",
            Some("2001:db8::9"),
            None,
            true,
        ),
        (
            "Failed keyboard-interactive/pam for invalid user x from 198.51.100.8 port 3 ssh2",
            "sshd:keyboard-interactive",
            Fail,
            Attempt,
            "x",
            Some("198.51.100.8"),
            Some(3),
            true,
        ),
        (
            "Failed keyboard-interactive for <invalid username> from 198.51.100.8 port 3 ssh2",
            "sshd:keyboard-interactive",
            Fail,
            Attempt,
            "<invalid username>",
            Some("198.51.100.8"),
            Some(3),
            true,
        ),
        (
            "Failed none for invalid user guest from 198.51.100.9 port 4 ssh2",
            "sshd:none",
            Fail,
            Connection,
            "guest",
            Some("198.51.100.9"),
            Some(4),
            true,
        ),
        (
            "Failed publickey for invalid user git from 198.51.100.9 port 4 ssh2: RSA SHA256:k",
            "sshd:publickey",
            Fail,
            Connection,
            "git",
            Some("198.51.100.9"),
            Some(4),
            true,
        ),
        (
            "Failed hostbased for dan from 198.51.100.10 port 5 ssh2: RSA SHA256:k, client user \"dan\", client host \"h from 1.1.1.1\"",
            "sshd:hostbased",
            Fail,
            Attempt,
            "dan",
            Some("198.51.100.10"),
            Some(5),
            false,
        ),
        (
            "ROOT LOGIN REFUSED FROM 198.51.100.11",
            "sshd:root-refused",
            Fail,
            Attempt,
            "root",
            Some("198.51.100.11"),
            None,
            false,
        ),
        (
            "ROOT LOGIN REFUSED FROM ::ffff:198.51.100.11 port 9 [preauth]",
            "sshd:root-refused",
            Fail,
            Attempt,
            "root",
            Some("::ffff:198.51.100.11"),
            Some(9),
            false,
        ),
        (
            "Invalid user oracle from 198.51.100.12 port 5555",
            "sshd:invalid-user",
            Fail,
            Connection,
            "oracle",
            Some("198.51.100.12"),
            Some(5555),
            true,
        ),
        (
            "Invalid user oracle from 198.51.100.12",
            "sshd:invalid-user",
            Fail,
            Connection,
            "oracle",
            Some("198.51.100.12"),
            None,
            true,
        ),
        (
            "Illegal user oracle from 198.51.100.12",
            "sshd:invalid-user",
            Fail,
            Connection,
            "oracle",
            Some("198.51.100.12"),
            None,
            true,
        ),
        (
            "input_userauth_request: invalid user oracle [preauth]",
            "sshd:invalid-user",
            Fail,
            Connection,
            "oracle",
            None,
            None,
            true,
        ),
        (
            "User guest from 198.51.100.13 not allowed because not listed in AllowUsers",
            "sshd:not-allowed",
            Fail,
            Connection,
            "guest",
            Some("198.51.100.13"),
            None,
            false,
        ),
        (
            "User guest from gw.example.net not allowed because none of user's groups are listed in AllowGroups",
            "sshd:not-allowed",
            Fail,
            Connection,
            "guest",
            Some("gw.example.net"),
            None,
            false,
        ),
        (
            "User guest from 198.51.100.13 not allowed because listed in DenyUsers",
            "sshd:not-allowed",
            Fail,
            Connection,
            "guest",
            Some("198.51.100.13"),
            None,
            false,
        ),
        (
            "User guest not allowed because account is locked",
            "sshd:not-allowed",
            Fail,
            Connection,
            "guest",
            None,
            None,
            false,
        ),
        (
            "User guest from 198.51.100.13 not allowed because shell /bin/nope does not exist",
            "sshd:not-allowed",
            Fail,
            Connection,
            "guest",
            Some("198.51.100.13"),
            None,
            false,
        ),
        (
            "Disconnecting: Too many authentication failures for git [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "git",
            None,
            None,
            false,
        ),
        (
            "Disconnecting: Too many authentication failures [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "",
            None,
            None,
            false,
        ),
        (
            "Disconnecting invalid user xx 198.51.100.14 port 7: Too many authentication failures [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "xx",
            Some("198.51.100.14"),
            Some(7),
            true,
        ),
        (
            "Disconnecting authenticating user root 198.51.100.14 port 7: Too many authentication failures [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "root",
            Some("198.51.100.14"),
            Some(7),
            false,
        ),
        (
            "error: maximum authentication attempts exceeded for root from 198.51.100.15 port 8 ssh2 [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "root",
            Some("198.51.100.15"),
            Some(8),
            false,
        ),
        (
            "error: maximum authentication attempts exceeded for invalid user xx from 198.51.100.15 port 8 ssh2 [preauth]",
            "sshd:too-many-failures",
            Fail,
            Connection,
            "xx",
            Some("198.51.100.15"),
            Some(8),
            true,
        ),
        (
            "Connection closed by authenticating user root 198.51.100.16 port 9 [preauth]",
            "sshd:preauth-closed",
            Fail,
            Connection,
            "root",
            Some("198.51.100.16"),
            Some(9),
            false,
        ),
        (
            "Connection reset by authenticating user root 198.51.100.16 port 9 [preauth]",
            "sshd:preauth-closed",
            Fail,
            Connection,
            "root",
            Some("198.51.100.16"),
            Some(9),
            false,
        ),
        (
            "Disconnected from invalid user  198.51.100.16 port 9 [preauth]",
            "sshd:preauth-closed",
            Fail,
            Connection,
            "",
            Some("198.51.100.16"),
            Some(9),
            true,
        ),
        (
            "Received disconnect from 198.51.100.17 port 10:3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
            "sshd:preauth-closed",
            Fail,
            Connection,
            "",
            Some("198.51.100.17"),
            Some(10),
            false,
        ),
        (
            "error: Received disconnect from 198.51.100.17: 14: No supported authentication methods available [preauth]",
            "sshd:preauth-closed",
            Fail,
            Connection,
            "",
            Some("198.51.100.17"),
            None,
            false,
        ),
        (
            "refused connect from h.example (198.51.100.18)",
            "sshd:refused-connect",
            Fail,
            Connection,
            "",
            Some("198.51.100.18"),
            None,
            false,
        ),
        (
            "Did not receive identification string from 198.51.100.19 port 11",
            "sshd:no-identification",
            Fail,
            Connection,
            "",
            Some("198.51.100.19"),
            Some(11),
            false,
        ),
        (
            "Bad protocol version identification 'x from 1.1.1.1' from 198.51.100.20 port 12",
            "sshd:bad-protocol",
            Fail,
            Connection,
            "",
            Some("198.51.100.20"),
            Some(12),
            false,
        ),
        (
            "fatal: Unable to negotiate with 198.51.100.21 port 13: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]",
            "sshd:negotiation-failed",
            Fail,
            Connection,
            "",
            Some("198.51.100.21"),
            Some(13),
            false,
        ),
        (
            "fatal: Unable to negotiate a key exchange method [preauth]",
            "sshd:negotiation-failed",
            Fail,
            Connection,
            "",
            None,
            None,
            false,
        ),
        (
            "fatal: Timeout before authentication for 198.51.100.22 port 14",
            "sshd:preauth-timeout",
            Fail,
            Connection,
            "",
            Some("198.51.100.22"),
            Some(14),
            false,
        ),
        (
            "error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"",
            "sshd:preauth-error",
            Fail,
            Connection,
            "",
            None,
            None,
            false,
        ),
        (
            "banner exchange: Connection from 198.51.100.23 port 15: invalid format",
            "sshd:preauth-error",
            Fail,
            Connection,
            "",
            Some("198.51.100.23"),
            Some(15),
            false,
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.24  user=root",
            "sshd:password",
            Fail,
            PamFailure,
            "root",
            Some("198.51.100.24"),
            None,
            false,
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.24",
            "sshd:password",
            Fail,
            PamFailure,
            "",
            Some("198.51.100.24"),
            None,
            false,
        ),
        (
            "error: PAM: Authentication failure for alice from 198.51.100.25",
            "sshd:keyboard-interactive",
            Fail,
            PamFailure,
            "alice",
            Some("198.51.100.25"),
            None,
            false,
        ),
        (
            "error: PAM: authentication error for alice from gw.example.net via 10.0.0.1",
            "sshd:keyboard-interactive",
            Fail,
            PamFailure,
            "alice",
            Some("gw.example.net"),
            None,
            false,
        ),
        (
            "error: PAM: User not known to the underlying authentication module for illegal user zz from 198.51.100.26",
            "sshd:keyboard-interactive",
            Fail,
            PamFailure,
            "zz",
            Some("198.51.100.26"),
            None,
            true,
        ),
    ];
    for &(msg, op, result, role, user, host, port, invalid) in rows {
        let line = format!("Nov 23 17:42:57 edge sshd[77]: {msg}");
        let a = auth(&line);
        assert_eq!(
            (a.operation.as_str(), a.result, a.role, a.user.as_str()),
            (op, result, role, user),
            "{msg}"
        );
        assert_eq!(
            (a.remote_host.as_deref(), a.remote_port, a.invalid_user),
            (host, port, invalid),
            "{msg}"
        );
        assert_eq!((a.service, a.pid), (Service::Sshd, Some(77)));
    }
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1]: Accepted publickey for git from 192.0.2.1 port 5 ssh2: ED25519 SHA256:abc",
    );
    assert_eq!(a.details, vec![("Key", "ED25519 SHA256:abc".to_string())]);
    // A probe names no user: the Login has no UserName rather than an empty one.
    let a = auth(
        "Nov 23 17:42:57 edge sshd[1]: Did not receive identification string from 192.0.2.1 port 5",
    );
    let login = a.to_login(AUTH_LOG, Local::now(), |_| Some(0));
    assert_eq!((login.user_name, login.user_id), (None, None));
}

#[test]
fn sshd_hints() {
    for (msg, host, port, ends) in [
        (
            "Connection from 198.51.100.1 port 5 on 10.0.0.2 port 22 rdomain \"\"",
            "198.51.100.1",
            Some(5),
            false,
        ),
        (
            "Connection closed by 198.51.100.1 port 5 [preauth]",
            "198.51.100.1",
            Some(5),
            true,
        ),
        (
            "Connection closed by 198.51.100.1",
            "198.51.100.1",
            None,
            true,
        ),
        (
            "Connection reset by 2001:db8::3 port 5 [preauth]",
            "2001:db8::3",
            Some(5),
            true,
        ),
        (
            "Disconnected from 198.51.100.1 port 5 [preauth]",
            "198.51.100.1",
            Some(5),
            true,
        ),
        (
            "Received disconnect from 198.51.100.1 port 5:11: Bye Bye [preauth]",
            "198.51.100.1",
            Some(5),
            true,
        ),
        (
            "Address 198.51.100.1 maps to x.example, but this does not map back to the address - POSSIBLE BREAK-IN ATTEMPT!",
            "198.51.100.1",
            None,
            false,
        ),
    ] {
        match parse_auth_line(&format!("Nov 23 17:42:57 edge sshd[9]: {msg}")) {
            AuthLine::Hint(h) => {
                assert_eq!(
                    (h.remote_host.as_deref(), h.remote_port, h.ends, h.pid),
                    (Some(host), port, ends, Some(9)),
                    "{msg}"
                );
                assert_eq!(h.hostname, "edge");
            }
            other => panic!("{msg}: {other:?}"),
        }
    }
}

#[test]
fn session_end_is_a_hint() {
    match parse_auth_line(
        "Nov 23 17:42:57 edge sshd[9]: Disconnected from user alice 198.51.100.1 port 5",
    ) {
        AuthLine::Hint(h) => assert_eq!(
            (h.remote_host.as_deref(), h.remote_port, h.ends),
            (Some("198.51.100.1"), Some(5), true)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn user_names_cannot_move_the_source() {
    for (msg, user, host) in [
        (
            "Failed password for invalid user test from 198.51.100.2 port 1 ssh2 from 192.0.2.7 port 2 ssh2",
            "test from 198.51.100.2 port 1 ssh2",
            "192.0.2.7",
        ),
        (
            "Failed password for invalid user test from 192.0.2.7 port 2 ssh2: from 198.51.100.2 port 1 ssh2",
            "test",
            "192.0.2.7",
        ),
        (
            "Failed password for invalid user from 198.51.100.2 from 192.0.2.7 port 2 ssh2",
            "from 198.51.100.2",
            "192.0.2.7",
        ),
        (
            "Failed password for bob from 192.0.2.7 port 2 ssh1: ruser x from 198.51.100.2",
            "bob",
            "192.0.2.7",
        ),
        (
            "Invalid user a from 198.51.100.2 port 3 from 192.0.2.7 port 2",
            "a from 198.51.100.2 port 3",
            "192.0.2.7",
        ),
    ] {
        let a = auth(&format!("Nov 23 17:42:57 edge sshd[9]: {msg}"));
        assert_eq!(
            (a.user.as_str(), a.remote_host.as_deref()),
            (user, Some(host)),
            "{msg}"
        );
    }
}

#[test]
fn header_forms() {
    let msg = "Failed password for root from 192.0.2.7 port 2 ssh2";
    for line in [
        format!("Nov 23 17:42:57 edge sshd[42]: {msg}"),
        format!("Nov  3 17:42:57 edge sshd[42]: {msg}"),
        format!("Nov 3 17:42:57 edge sshd[42]: {msg}"),
        format!("Nov 23 17:42:57 sshd[42]: {msg}"),
        format!("2026-11-23T17:42:57.123456+01:00 edge sshd[42]: {msg}"),
        format!("2026-11-23T17:42:57Z sshd[42]: {msg}"),
        format!("<38>1 2026-11-23T17:42:57.954167-04:00 edge sshd 42 - - {msg}"),
        format!("<38>1 2026-11-23T17:42:57Z edge sshd 42 - [tq a=\"1\"][x@1 t=\"[b\\]\"] {msg}"),
        format!("<38>1 2026-11-23T17:42:57Z - sshd 42 ID47 - \u{feff}{msg}"),
        format!("Nov 23 17:42:57 edge sshd[42]: [ID 800047 auth.info] {msg}"),
        format!("Nov 23 17:42:57 edge sshd-session[42]: {msg}"),
    ] {
        let a = auth(&line);
        assert_eq!(
            (a.pid, a.user.as_str(), a.remote_host.as_deref()),
            (Some(42), "root", Some("192.0.2.7")),
            "{line}"
        );
    }
    for line in [
        "Nov 23 17:42:57 [sshd]: User root from 192.0.2.7 not allowed because not listed in AllowUsers".to_string(),
        "Nov 23 17:42:57 [sshd] User root from 192.0.2.7 not allowed because not listed in AllowUsers".to_string(),
    ] {
        let a = auth(&line);
        assert_eq!(
            (a.pid, a.hostname.as_str(), a.user.as_str()),
            (None, "", "root"),
            "{line}"
        );
    }
    let a = auth(&format!(
        "<38>1 2026-11-23T17:42:57Z host.example sshd 42 - - {msg}"
    ));
    assert_eq!(a.hostname, "host.example");
    assert!(matches!(a.time, SyslogTime::Rfc3339(_)));
}

#[test]
fn login_and_escalation_lines() {
    let a = auth(
        "Nov 23 17:42:57 edge login[812]: FAILED LOGIN 1 FROM tty1 FOR root, Authentication failure",
    );
    assert_eq!(
        (a.service, a.result, a.user.as_str()),
        (Service::Login, LoginResult::Fail, "root")
    );
    assert_eq!(a.details[0], ("Terminal", "tty1".to_string()));
    let a = auth(
        "Nov 23 17:42:57 edge login[812]: FAILED LOGIN (2) on '/dev/ttyS0' FOR 'admin', Authentication failure",
    );
    assert_eq!(
        (a.user.as_str(), a.details[0].1.as_str()),
        ("admin", "ttyS0")
    );
    let a = auth("Nov 23 17:42:57 edge login[812]: ROOT LOGIN ON tty1");
    assert_eq!((a.result, a.user.as_str()), (LoginResult::Success, "root"));
    assert_eq!(
        a.to_login(AUTH_LOG, Local::now(), |_| Some(0)).executable,
        "/bin/login"
    );
    let a = auth("Nov 23 17:42:57 edge login[812]: ROOT LOGIN  on '/dev/ttyS0'");
    assert_eq!(a.details[0], ("Terminal", "ttyS0".to_string()));
    let a = auth("Nov 23 17:42:57 edge login[812]: LOGIN ON pts/3 BY alice FROM 192.0.2.4");
    assert_eq!(
        (a.user.as_str(), a.remote_host.as_deref()),
        ("alice", Some("192.0.2.4"))
    );
    let a = auth(
        "Nov 23 17:42:57 edge login[812]: pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=/dev/tty1 ruser= rhost=  user=root",
    );
    assert_eq!((a.result, a.user.as_str()), (LoginResult::Fail, "LOGIN"));

    let escalation = |a: &AuthLogin| {
        a.details
            .iter()
            .any(|(k, v)| *k == "PrivilegeEscalation" && v == "true")
    };
    let a = auth(
        "Nov 23 17:42:57 edge sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
    );
    assert!(escalation(&a));
    let a = auth(
        "Nov 23 17:42:57 edge sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=backup ; COMMAND=/usr/bin/id",
    );
    assert!(!escalation(&a));
    let a = auth("Nov 23 17:42:57 edge su[2]: (to root) alice on pts/0");
    assert!(escalation(&a));
    let a = auth("Nov 23 17:42:57 edge su[2]: (to alice) root on pts/0");
    assert!(!escalation(&a));
}

/// Feeds lines (all under `sshd[pid]` of host `edge`) and returns what is reported, held
/// lines included after `flush_all`.
fn count(lines: &[&str]) -> (Vec<AuthLogin>, Vec<AuthLogin>) {
    let mut attempts = Attempts::default();
    let now = Instant::now();
    let mut out = Vec::new();
    for l in lines {
        attempts.feed(parse_auth_line(l), now, Local::now(), &mut out);
    }
    let mut held = Vec::new();
    attempts.flush_all(&mut held);
    (out, held)
}

fn fails(v: &[AuthLogin]) -> Vec<(&str, &str, Option<&str>)> {
    v.iter()
        .filter(|a| a.result == LoginResult::Fail)
        .map(|a| {
            (
                a.operation.as_str(),
                a.user.as_str(),
                a.remote_host.as_deref(),
            )
        })
        .collect()
}

#[test]
fn one_attempt_is_one_failure() {
    // PAM's line and sshd's line for the same password attempt, twice, then the end.
    let (out, held) = count(&[
        "Nov 23 17:42:50 edge sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1  user=root",
        "Nov 23 17:42:52 edge sshd[10]: Failed password for root from 192.0.2.1 port 5 ssh2",
        "Nov 23 17:42:53 edge sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1  user=root",
        "Nov 23 17:42:55 edge sshd[10]: Failed password for root from 192.0.2.1 port 5 ssh2",
        "Nov 23 17:42:55 edge sshd[10]: error: maximum authentication attempts exceeded for root from 192.0.2.1 port 5 ssh2 [preauth]",
        "Nov 23 17:42:55 edge sshd[10]: Disconnecting authenticating user root 192.0.2.1 port 5: Too many authentication failures [preauth]",
    ]);
    assert_eq!(
        fails(&out),
        vec![("sshd:password", "root", Some("192.0.2.1")); 2]
    );
    assert!(held.is_empty());

    // An invalid user's connection: the name, two passwords, the close.
    let (out, held) = count(&[
        "Nov 23 17:42:50 edge sshd[11]: Invalid user oracle from 192.0.2.2 port 6",
        "Nov 23 17:42:51 edge sshd[11]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.2",
        "Nov 23 17:42:53 edge sshd[11]: Failed password for invalid user oracle from 192.0.2.2 port 6 ssh2",
        "Nov 23 17:42:54 edge sshd[11]: Failed password for invalid user oracle from 192.0.2.2 port 6 ssh2",
        "Nov 23 17:42:54 edge sshd[11]: Connection closed by invalid user oracle 192.0.2.2 port 6 [preauth]",
    ]);
    assert_eq!(fails(&out).len(), 2);
    assert!(held.is_empty());

    // A name probe only: one failure, when the connection ends.
    let (out, _) = count(&[
        "Nov 23 17:42:50 edge sshd[12]: Invalid user test from 192.0.2.3 port 7",
        "Nov 23 17:42:51 edge sshd[12]: Received disconnect from 192.0.2.3 port 7:11: Bye Bye [preauth]",
        "Nov 23 17:42:51 edge sshd[12]: Disconnected from invalid user test 192.0.2.3 port 7 [preauth]",
    ]);
    assert_eq!(
        fails(&out),
        vec![("sshd:invalid-user", "test", Some("192.0.2.3"))]
    );

    // Keys refused for an existing user: no failure per key; one for the connection, with
    // the address of the line that ends it.
    let (out, _) = count(&[
        "Nov 23 17:42:50 edge sshd[13]: Failed publickey for git from 192.0.2.4 port 8 ssh2: RSA SHA256:a",
        "Nov 23 17:42:50 edge sshd[13]: Failed publickey for git from 192.0.2.4 port 8 ssh2: RSA SHA256:b",
        "Nov 23 17:42:50 edge sshd[13]: Disconnecting: Too many authentication failures for git [preauth]",
        "Nov 23 17:42:50 edge sshd[13]: Connection closed by 192.0.2.4 port 8 [preauth]",
    ]);
    assert_eq!(
        fails(&out),
        vec![("sshd:too-many-failures", "git", Some("192.0.2.4"))]
    );

    // A host-less line gets the address a VERBOSE `Connection from` gave.
    let (out, held) = count(&[
        "Nov 23 17:42:50 edge sshd[14]: Connection from 192.0.2.5 port 9 on 10.0.0.1 port 22",
        "Nov 23 17:42:50 edge sshd[14]: fatal: Unable to negotiate a key exchange method [preauth]",
    ]);
    assert!(out.is_empty());
    assert_eq!(
        fails(&held),
        vec![("sshd:negotiation-failed", "", Some("192.0.2.5"))]
    );

    // A PAM stack whose first module fails and whose second succeeds: no failure.
    let (out, held) = count(&[
        "Nov 23 17:42:50 edge sshd[15]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.6  user=rda",
        "Nov 23 17:42:50 edge sshd[15]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=rda rhost=192.0.2.6 [preauth]",
        "Nov 23 17:42:50 edge sshd[15]: Accepted password for rda from 192.0.2.6 port 10 ssh2",
        "Nov 23 17:42:59 edge sshd[15]: Connection closed by 192.0.2.6",
    ]);
    assert!(fails(&out).is_empty() && held.is_empty());
    assert_eq!(out.len(), 1);
    // …but failures for other names before a success still count.
    let (out, _) = count(&[
        "Nov 23 17:42:50 edge sshd[16]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=root rhost=192.0.2.7",
        "Nov 23 17:42:51 edge sshd[16]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=sudoer rhost=192.0.2.7",
        "Nov 23 17:42:52 edge sshd[16]: Accepted password for known from 192.0.2.7 port 11 ssh2",
        "Nov 23 17:42:59 edge sshd[16]: Connection closed by 192.0.2.7",
    ]);
    let f = fails(&out);
    assert_eq!((f.len(), f[0].1, f[1].1), (2, "root", "sudoer"));

    // The same pid reused hours later is another connection.
    let (out, held) = count(&[
        "Nov 23 10:00:00 edge sshd[17]: Invalid user a from 192.0.2.8 port 1",
        "Nov 23 14:00:00 edge sshd[17]: Invalid user b from 192.0.2.9 port 1",
    ]);
    assert_eq!(
        fails(&out),
        vec![("sshd:invalid-user", "a", Some("192.0.2.8"))]
    );
    assert_eq!(
        fails(&held),
        vec![("sshd:invalid-user", "b", Some("192.0.2.9"))]
    );
}

#[test]
fn held_lines_are_released_after_the_hold_and_bounded() {
    let mut attempts = Attempts::default();
    let t0 = Instant::now();
    let mut out = Vec::new();
    attempts.feed(
        parse_auth_line("Nov 23 17:42:50 edge sshd[20]: Invalid user a from 192.0.2.8 port 1"),
        t0,
        Local::now(),
        &mut out,
    );
    attempts.flush_expired(t0 + HOLD / 2, &mut out);
    assert!(out.is_empty());
    attempts.flush_expired(t0 + HOLD, &mut out);
    assert_eq!(out.len(), 1);
    assert!(attempts.is_empty());

    for pid in 0..(MAX_CONNECTIONS as u32 + 10) {
        let line =
            format!("Nov 23 17:42:50 edge sshd[{pid}]: Invalid user a from 192.0.2.8 port 1");
        attempts.feed(parse_auth_line(&line), t0, Local::now(), &mut out);
    }
    assert_eq!(attempts.len(), MAX_CONNECTIONS);
    assert_eq!(out.len(), 1 + 10, "the oldest are reported to make room");
    // Lines from other programs, and sshd lines without a pid, are never held.
    attempts.feed(
        parse_auth_line(
            "Nov 23 17:42:50 edge sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
        ),
        t0,
        Local::now(),
        &mut out,
    );
    attempts.feed(
        parse_auth_line("Nov 23 17:42:50 edge sshd: Invalid user z from 192.0.2.8 port 1"),
        t0,
        Local::now(),
        &mut out,
    );
    assert_eq!(out.len(), 13);
}
