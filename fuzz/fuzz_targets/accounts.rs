//! passwd, group and shadow (`accounts::parse_*`, `users::parse_accounts`, `users::local_users`):
//! hand-edited files on real devices. The input is split at NUL bytes into passwd, group and
//! shadow text. Checks that no line is counted twice, that the first entry of a name wins, and
//! that group members come out sorted and without duplicates.
#![no_main]

use edgeguard::host::accounts::{parse_group, parse_passwd, parse_shadow};
use edgeguard::collectors::users::{Accounts, diff, local_users, parse_accounts};
use libfuzzer_sys::fuzz_target;

fn lines(text: &str) -> usize {
    text.lines().count()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let passwd = parts.next().unwrap_or("");
    let group = parts.next();
    let shadow = parts.next();

    let p = parse_passwd(passwd);
    assert!(p.entries.len() + p.malformed <= lines(passwd));
    for u in &p.entries {
        assert!(!u.name.is_empty() && !u.name.contains(':'));
    }
    if let Some(g) = group {
        let parsed = parse_group(g);
        assert!(parsed.entries.len() + parsed.malformed <= lines(g));
    }
    if let Some(s) = shadow {
        let parsed = parse_shadow(s);
        assert!(parsed.entries.len() + parsed.malformed <= lines(s));
    }

    let acc = parse_accounts(passwd, group, shadow);
    assert!(acc.users.len() <= p.entries.len());
    for u in &p.entries {
        if let Some(kept) = acc.users.get(&u.name) {
            let first = p.entries.iter().find(|e| e.name == u.name);
            assert_eq!(first.map(|f| f.uid), Some(kept.uid), "first entry wins");
        }
    }
    for g in acc.groups.values() {
        assert!(g.members.windows(2).all(|w| w[0] < w[1]), "{:?}", g.members);
    }
    assert_eq!(local_users(&acc).len(), acc.users.len());
    // Everything is new compared with an empty host.
    let _ = diff(&Accounts::default(), &acc);
    assert!(
        diff(&acc, &acc).is_empty(),
        "no change between a snapshot and itself"
    );
});
