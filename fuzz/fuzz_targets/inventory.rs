//! Package databases (`inventory::parse_deb_status`, `inventory::parse_apk`): files a root
//! process on the host writes, possibly corrupt after a power cut. Checks that every package
//! has a name, that fields stay within their bound, and that no stanza yields two packages.
#![no_main]

use edgeguard::collectors::inventory::{Manager, parse_apk, parse_deb_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let stanzas = text.split("\n\n").count();
    for packages in [
        parse_deb_status(&text, Manager::Dpkg),
        parse_deb_status(&text, Manager::Opkg),
        parse_apk(&text),
    ] {
        assert!(packages.len() <= stanzas);
        for p in &packages {
            assert!(!p.name.is_empty());
            assert!(p.name.len() <= 256 && p.version.len() <= 256 && p.architecture.len() <= 256);
            assert!(p.source.as_deref() != Some(p.name.as_str()));
        }
    }
});
