//! Kernel uevent datagrams (`hardware::uevent::parse`): `ACTION@DEVPATH\0KEY=VALUE\0…` as the
//! kernel multicasts them, the libudev re-broadcast format, and anything else a socket could
//! hand over. Checks that a parsed uevent keeps its bounds (at most `MAX_VARS` variables, an
//! absolute device path without `.`/`..` components, a subsystem) and that parsing is
//! deterministic.
#![no_main]

use edgeguard::collectors::hardware::uevent::{MAX_VARS, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = parse(data) {
        assert!(u.vars.len() <= MAX_VARS);
        assert!(u.devpath.starts_with('/'));
        assert!(!u.devpath.split('/').any(|c| c == "." || c == ".."));
        assert!(!u.subsystem.is_empty());
        assert!(u.sysname().len() <= u.devpath.len());
        assert_eq!(parse(data).ok(), Some(u));
    }
});
