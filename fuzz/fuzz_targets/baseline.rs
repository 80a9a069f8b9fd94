//! OS baseline inputs: sshd_config with `Include` (`baseline::parse_sshd_config`), sshd time
//! values (`parse_sshd_time`) and the custom checks file (`parse_custom_checks`, JSON from a path
//! named in the twin). Checks the include bound, that every value in effect comes from the text
//! (less its quotes), that plain seconds read as themselves, and the custom check count limit.
#![no_main]

use edgeguard::collectors::baseline::{
    MAX_CUSTOM_CHECKS, MAX_INCLUDED_FILES, parse_custom_checks, parse_sshd_config, parse_sshd_time,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(checks) = parse_custom_checks(data) {
        assert!(checks.len() <= MAX_CUSTOM_CHECKS);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every `Include` names the input itself: the worst case for nesting. The call count is
    // capped only to keep the harness fast; the parser's own bounds are what is checked.
    let mut calls = 0usize;
    let cfg = parse_sshd_config(text, &mut |_pattern| {
        calls += 1;
        if calls <= 256 {
            vec![text.to_string()]
        } else {
            Vec::new()
        }
    });
    assert!(cfg.included_files <= MAX_INCLUDED_FILES);
    for line in text.lines() {
        let Some(keyword) = line.split([' ', '\t', '=']).find(|k| !k.is_empty()) else {
            continue;
        };
        let Some(value) = cfg.get(keyword) else {
            continue;
        };
        // Quotes are removed from a token, so the value is in the text once quotes are gone.
        assert!(!value.contains('"'), "{keyword} = {value:?}");
        assert!(
            text.replace('"', "").contains(value),
            "{keyword} = {value:?} is not in the text"
        );
        let secs = parse_sshd_time(value);
        if !value.trim().is_empty() && value.trim().bytes().all(|b| b.is_ascii_digit()) {
            assert_eq!(secs, value.trim().parse::<u64>().ok(), "{value:?}");
        }
    }
});
