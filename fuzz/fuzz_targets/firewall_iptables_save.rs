//! `iptables-save` / `ip6tables-save` output (`firewall::parse_iptables_save`), legacy and nft
//! backends. Checks that tables come only from `*table` lines, every record has a chain and a
//! position, and the free-text details stay within the collector's bound.
#![no_main]

use edgeguard::collectors::firewall::{Backend, IpFamily, MAX_RULE_TEXT, parse_iptables_save};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let table_lines = text.lines().filter(|l| l.trim().starts_with('*')).count();
    for (family, backend) in [
        (IpFamily::V4, Backend::IptablesLegacy),
        (IpFamily::V6, Backend::IptablesNft),
    ] {
        let parsed = parse_iptables_save(data, family, backend);
        assert!(parsed.tables.len() <= table_lines);
        for rule in &parsed.rules {
            assert!(rule.chain_name.is_some(), "{rule:?}");
            assert!(rule.priority.is_some_and(|p| p >= 1), "{rule:?}");
            assert_eq!(
                rule.extra_details.get("Family").map(String::as_str),
                Some(family.as_str())
            );
            // Documented bound of ExtraDetails.Rule; comments and match lists are cut shorter.
            for key in ["Rule", "Comment", "Matches"] {
                if let Some(v) = rule.extra_details.get(key) {
                    assert!(v.len() <= MAX_RULE_TEXT, "{key}: {} bytes", v.len());
                }
            }
        }
    }
});
