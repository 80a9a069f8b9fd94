//! wtmp/btmp/utmp files (`login::parse_utmp`, `detect_layout`) in both record layouts, including
//! partial records at the end. Checks that whole records are consumed and counted exactly once,
//! that text fields stay within their fixed C field sizes, and that each record becomes a Login.
#![no_main]

use edgeguard::collectors::login::{
    UtmpLayout, detect_layout, executable_for_line, parse_utmp, utmp_login,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for layout in [UtmpLayout::Compat32, UtmpLayout::Native64] {
        let size = layout.size();
        let chunk = parse_utmp(data, layout);
        assert_eq!(chunk.consumed, data.len() / size * size);
        assert_eq!(chunk.records.len() + chunk.malformed, data.len() / size);
        for rec in &chunk.records {
            // ut_line[32], ut_user[32], ut_host[256]: one char at most per byte.
            assert!(rec.line.chars().count() <= 32);
            assert!(rec.user.chars().count() <= 32);
            assert!(rec.host.chars().count() <= 256);
            for failed in [false, true] {
                let login = utmp_login(rec, failed, "wtmp", executable_for_line(&rec.line));
                assert_eq!(login.user_name.as_deref(), Some(rec.user.as_str()));
            }
        }
        let detected = detect_layout(data, layout);
        if data.len() < UtmpLayout::Compat32.size() {
            assert_eq!(detected, None, "no whole record, no layout");
        }
    }
});
