//! Measures the login collector's sshd parsing against fail2ban's annotated sshd test corpus:
//! how many of the lines annotated as failures (`# failJSON: { … "match": true … }`) it
//! recognises, which it misses, and which lines annotated as no failure it reports as one.
//!
//! The corpus is fail2ban's `fail2ban/tests/files/logs/sshd` (GPL-2.0, © the fail2ban
//! authors), read at run time and not copied into this repository:
//!
//! ```text
//! git clone --depth 1 https://github.com/fail2ban/fail2ban /tmp/fail2ban
//! EDGEGUARD_SSHD_CORPUS=/tmp/fail2ban/fail2ban/tests/files/logs/sshd \
//!     cargo test --test sshd_corpus -- --ignored --nocapture
//! ```
//!
//! Ignored by default (it needs the corpus). It fails below the goal: 95 % of the annotated
//! failures recognised, every `Accepted` line a success, and no `Failed …`-style immediate
//! failure on a line annotated as none.
//!
//! "Recognised" means: the line itself parses as a login or failure (with the annotated remote
//! host when the line carries one), or it is a line that completes a failure held for its
//! connection (e.g. `Connection closed by H [preauth]` after `Disconnecting: Too many
//! authentication failures for git`, see `login::Attempts`). fail2ban's annotations cover all
//! its modes (normal, ddos, extra, aggressive); lines are counted in all of them.

use chrono::{Local, TimeZone};
use edgeguard::collectors::login::{
    Attempts, AuthLine, AuthLogin, Role, SyslogTime, parse_auth_line,
};
use edgeguard::event::LoginResult;
use std::time::Instant;

struct Case {
    line: String,
    expect: serde_json::Value,
}

fn cases(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut pending: Option<serde_json::Value> = None;
    for line in text.lines() {
        if let Some(json) = line.strip_prefix("# failJSON:") {
            pending = serde_json::from_str(json.trim()).ok();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(expect) = pending.take() {
            out.push(Case {
                line: line.to_string(),
                expect,
            });
        }
    }
    out
}

fn same_host(ours: &str, theirs: &str) -> bool {
    let canon = |s: &str| {
        s.parse::<std::net::IpAddr>()
            .map(|a| a.to_canonical().to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    ours == theirs || canon(ours) == canon(theirs)
}

#[test]
#[ignore = "needs fail2ban's corpus: set EDGEGUARD_SSHD_CORPUS (see the module doc)"]
fn fail2ban_sshd_corpus() {
    let Ok(path) = std::env::var("EDGEGUARD_SSHD_CORPUS") else {
        panic!("set EDGEGUARD_SSHD_CORPUS to fail2ban/tests/files/logs/sshd");
    };
    let text = std::fs::read_to_string(&path).expect("reading the corpus");
    let cases = cases(&text);
    assert!(
        cases.len() > 50,
        "{path}: only {} annotated lines",
        cases.len()
    );
    let wall = Local.with_ymd_and_hms(2005, 12, 31, 12, 0, 0).unwrap();
    let mono = Instant::now();
    let mut attempts = Attempts::default();
    let (mut annotated, mut recognised, mut accepted, mut accepted_ok) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    let mut false_failures = Vec::new();
    let mut events = Vec::<AuthLogin>::new();
    for case in &cases {
        let parsed = parse_auth_line(&case.line);
        let mut released = Vec::new();
        attempts.feed(parsed.clone(), mono, wall, &mut released);
        let released_fail = released.iter().any(|a| a.result == LoginResult::Fail);
        events.extend(released);
        let want = case.expect["match"].as_bool().unwrap_or(false);
        let host = case.expect["host"].as_str();
        if case.line.contains("Accepted ") {
            accepted += 1;
            if let AuthLine::Login(a) = &parsed
                && a.result == LoginResult::Success
            {
                accepted_ok += 1;
            }
        }
        if want {
            annotated += 1;
            let ok = match &parsed {
                AuthLine::Login(a) => {
                    let host_ok = match (a.remote_host.as_deref(), host) {
                        (Some(ours), Some(theirs)) => same_host(ours, theirs),
                        _ => true,
                    };
                    let time_ok = match (a.time, case.expect["time"].as_str()) {
                        (
                            SyslogTime::Classic {
                                hour,
                                minute,
                                second,
                                ..
                            },
                            Some(t),
                        ) => t.ends_with(&format!("T{hour:02}:{minute:02}:{second:02}")),
                        _ => true,
                    };
                    host_ok && time_ok
                }
                AuthLine::Hint(_) => released_fail,
                _ => false,
            };
            if ok {
                recognised += 1;
            } else {
                misses.push(format!("{:?}\n      {}", short(&parsed), case.line));
            }
        } else if case.expect.get("constraint").is_none()
            && let AuthLine::Login(a) = &parsed
            && a.result == LoginResult::Fail
            && a.role == Role::Attempt
        {
            false_failures.push(case.line.clone());
        }
    }
    attempts.flush_all(&mut events);
    let failures = events
        .iter()
        .filter(|a| a.result == LoginResult::Fail)
        .count();
    let pct = 100.0 * recognised as f64 / annotated as f64;
    println!("fail2ban sshd corpus: {path}");
    println!("annotated failures recognised: {recognised}/{annotated} ({pct:.1} %)");
    println!("Accepted lines read as successes: {accepted_ok}/{accepted}");
    println!(
        "failure events after counting each attempt once: {failures} (from {} annotated lines)",
        cases.len()
    );
    println!("missed ({}):", misses.len());
    for m in &misses {
        println!("  - {m}");
    }
    println!(
        "immediate failures on lines annotated as none ({}):",
        false_failures.len()
    );
    for f in &false_failures {
        println!("  - {f}");
    }
    assert!(pct >= 95.0, "{pct:.1} % recognised, below 95 %");
    assert_eq!(accepted_ok, accepted);
    assert!(false_failures.is_empty());
}

fn short(p: &AuthLine) -> String {
    match p {
        AuthLine::Login(a) => format!(
            "{} {:?} user={:?} host={:?}",
            a.operation, a.result, a.user, a.remote_host
        ),
        AuthLine::Hint(h) => format!("hint host={:?} ends={}", h.remote_host, h.ends),
        other => format!("{other:?}"),
    }
}
