//! `nft -j list ruleset` output (`firewall::parse_nft_json`), from the host's own nft binary.
//! Checks that every record has a chain and a position, and that the free-text details stay
//! within the collector's bound.
#![no_main]

use edgeguard::collectors::firewall::{MAX_RULE_TEXT, parse_nft_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_nft_json(data) else {
        return;
    };
    for rule in &parsed.rules {
        assert!(rule.chain_name.is_some(), "{rule:?}");
        assert!(rule.priority.is_some_and(|p| p >= 1), "{rule:?}");
        // Documented bound of ExtraDetails.Rule; comments are cut to the same length.
        for key in ["Rule", "Comment"] {
            if let Some(v) = rule.extra_details.get(key) {
                assert!(v.len() <= MAX_RULE_TEXT, "{key}: {} bytes", v.len());
            }
        }
    }
});
