use super::*;
use crate::event::{EventKind, envelope};
use chrono::{FixedOffset, TimeZone};

/// One event of every kind (the encoder's fixture), stamped at one fixed time and rendered
/// plain, one line each.
fn rendered() -> String {
    let time = FixedOffset::east_opt(3600)
        .expect("offset")
        .with_ymd_and_hms(2026, 12, 2, 16, 6, 21)
        .single()
        .expect("a time");
    let mut out = String::new();
    for mut e in crate::event::encode_tests::every_kind("") {
        e.time = time;
        let encoded = envelope::encode(&e);
        let body = format!(
            "{{\"Events\":[{}]}}",
            String::from_utf8(encoded).expect("UTF-8")
        );
        out.push_str(&render_message(body.as_bytes(), Style::Plain));
    }
    out
}

#[test]
fn every_kind_renders_as_in_the_snapshot() {
    let actual = rendered();
    let expected = include_str!("expected.txt");
    assert!(
        actual == expected,
        "the pretty format changed; if on purpose, update src/pretty/expected.txt to:\n{actual}"
    );
    for kind in EventKind::ALL {
        assert!(
            actual.lines().any(|l| l[20..].starts_with(kind.name())),
            "{} is not in the snapshot",
            kind.name()
        );
    }
}

#[test]
fn alerts_are_highlighted_on_a_terminal_only() {
    let alert = serde_json::json!({
        "Name": "Alert", "TimestampLocal": "2026-12-02T16:06:21.000+01:00",
        "Payload": [{"RuleId": "exec-from-temp-dir", "Severity": "Warning", "Executable": "/tmp/x"}]
    });
    let plain = render_event(&alert, Style::Plain);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(
        plain.contains("Warning exec-from-temp-dir /tmp/x"),
        "{plain}"
    );
    let color = render_event(&alert, Style::Color);
    assert!(
        color.contains(RED_BOLD) && color.ends_with(RESET),
        "{color:?}"
    );
    let process = serde_json::json!({"Name": "ProcessCreate", "Payload": [{"CommandLine": "ls"}]});
    assert!(!render_event(&process, Style::Color).contains(RED_BOLD));
}

#[test]
fn hostile_fields_stay_on_one_line_and_cannot_drive_the_terminal() {
    let e = serde_json::json!({
        "Name": "ProcessCreate", "TimestampLocal": "2026-12-02T16:06:21.000+01:00",
        "Payload": [{"CommandLine": "evil\n\u{1b}[2Jclear", "ProcessId": 1,
                     "ExtraDetails": {"HitCount": "3\u{1b}[31m"}}]
    });
    let line = render_event(&e, Style::Plain);
    assert!(!line.contains('\n') && !line.contains('\x1b'), "{line:?}");
    assert!(line.contains("evil\\n\\u{1b}[2Jclear"), "{line}");
}

#[test]
fn anything_that_is_not_a_security_message_is_one_line() {
    for body in [&b"not json"[..], b"{}", b"[1,2]", b"{\"Events\":{}}"] {
        assert_eq!(
            render_message(body, Style::Plain),
            "(not a security message)\n"
        );
    }
    let odd = br#"{"Events":[{"Name":7,"Payload":"x"},{},{"Name":"Future","Payload":[{},{}]}]}"#;
    let out = render_message(odd, Style::Plain);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("Future            2 records"), "{out}");
}

#[test]
fn empty_fields_are_left_out_and_a_vanished_process_says_so() {
    let alert = serde_json::json!({"Name": "Alert", "Payload": [{
        "RuleId": "exec-from-temp-dir", "Severity": "Warning", "CommandLine": "",
        "Executable": "/tmp/x", "ProcessId": 7
    }]});
    let line = render_event(&alert, Style::Plain);
    assert!(
        line.ends_with("Warning exec-from-temp-dir /tmp/x pid 7"),
        "{line:?}"
    );
    let gone = serde_json::json!({"Name": "ProcessCreate", "Payload": [{
        "CommandLine": "", "Executable": "", "ProcessId": 9, "UserName": "root",
        "ExtraDetails": {"Incomplete": "true", "Comm": "sh", "HitCount": "2"}
    }]});
    let line = render_event(&gone, Style::Plain);
    assert!(
        line.ends_with("root pid 9 (sh, gone before it was read) ×2"),
        "{line:?}"
    );
}
