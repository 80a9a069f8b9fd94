//! /proc and /etc text the collectors read for every process or snapshot: status, cmdline,
//! cgroup (container id), fib_trie and if_inet6 (local addresses), os-release, meminfo, uptime,
//! stat and CPU lists. A process controls its own cmdline and, inside a container, its cgroup
//! paths can carry names it chose. Checks the container id format, that it comes from the text,
//! and the command line bound.
#![no_main]

use edgeguard::collectors::system::{
    parse_boot_time, parse_cpu_list, parse_meminfo, parse_os_release, parse_uptime,
};
use edgeguard::host::netns::{parse_fib_trie_local, parse_if_inet6};
use edgeguard::host::procfs::{
    MAX_CMDLINE_BYTES, container_id_from_cgroup, parse_cmdline, parse_status,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The command line is raw bytes (NUL-separated argv, any encoding).
    if let Some(cmd) = parse_cmdline(data) {
        assert!(!cmd.is_empty());
        // Invalid bytes become U+FFFD (3 bytes); NULs become single spaces.
        assert!(cmd.len() <= 3 * data.len().min(MAX_CMDLINE_BYTES));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = container_id_from_cgroup(text) {
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(
            text.to_ascii_lowercase().contains(&id),
            "{id} not in the text"
        );
    }
    let status = parse_status(text);
    if let Some(name) = &status.name {
        assert!(text.contains(name.as_str()));
    }
    let _ = parse_fib_trie_local(text);
    assert!(parse_if_inet6(text).len() <= text.lines().count());
    let release = parse_os_release(text);
    assert!(release.len() <= text.lines().count());
    assert!(parse_meminfo(text).len() <= text.lines().count());
    let _ = parse_uptime(text);
    let _ = parse_boot_time(text);
    if let Some(n) = parse_cpu_list(text) {
        assert!(n >= 1);
    }
});
