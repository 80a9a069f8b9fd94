//! auth.log / secure text (`login::split_lines`, `parse_auth_line`, `AuthLogin::to_login`). The
//! text is written by sshd, sudo and su from what remote clients send (user names). Checks that
//! line splitting never returns more than it was given, that a login's user, host and
//! operation come from the line itself, and that counting attempts once (`login::Attempts`)
//! never reports more than the lines it was given nor holds more than its bound.
#![no_main]

use chrono::{Local, TimeZone};
use edgeguard::collectors::login::{
    Attempts, AuthLine, MAX_CONNECTIONS, MAX_LINE_BYTES, parse_auth_line, split_lines,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed "now" keeps runs reproducible (classic syslog times have no year).
    let Some(now) = Local.timestamp_opt(1_795_000_000, 0).single() else {
        return;
    };
    let mono = std::time::Instant::now();
    for at_eof in [false, true] {
        let mut attempts = Attempts::default();
        let mut reported = Vec::new();
        let mut logins = 0;
        let mut skip_first = false;
        let (lines, consumed, _too_long) = split_lines(data, &mut skip_first, at_eof);
        assert!(consumed <= data.len());
        let kept: usize = lines.iter().map(|l| l.len()).sum();
        assert!(
            kept + lines.len() <= consumed + 1,
            "lines add up to more than consumed"
        );
        for raw in lines {
            assert!(raw.len() <= MAX_LINE_BYTES);
            assert!(!raw.contains(&b'\n'));
            let line = String::from_utf8_lossy(raw);
            let parsed = parse_auth_line(&line);
            if matches!(parsed, AuthLine::Login(_)) {
                logins += 1;
            }
            attempts.feed(parsed.clone(), mono, now, &mut reported);
            assert!(attempts.len() <= MAX_CONNECTIONS);
            if let AuthLine::Login(a) = parsed {
                assert!(
                    line.contains(a.user.as_str()),
                    "user {:?} not in {line:?}",
                    a.user
                );
                assert!(line.contains(a.hostname.as_str()));
                if let Some(h) = &a.remote_host {
                    assert!(line.contains(h.as_str()));
                }
                let login = a.to_login("/var/log/auth.log", now, |_| Some(0));
                assert_eq!(login.process_id, a.pid.unwrap_or(0));
                assert_eq!(login.remote_port, a.remote_port);
            }
        }
        attempts.flush_all(&mut reported);
        assert!(reported.len() <= logins, "more reported than login lines");
    }
});
