//! Accounts: passwd, group and shadow checks (uid 0, empty passwords, duplicates, shells).

use super::{
    ACCT_AGING_INACTIVE, ACCT_AGING_LAST, ACCT_AGING_MAX, ACCT_AGING_MIN, ACCT_AGING_WARN,
    ACCT_DUP_GID, ACCT_DUP_GROUP, ACCT_DUP_NAME, ACCT_DUP_UID, ACCT_EMPTY_PASSWORD,
    ACCT_GROUPS_EXIST, ACCT_PLUS_GROUP, ACCT_PLUS_PASSWD, ACCT_PLUS_SHADOW, ACCT_ROOT_GID,
    ACCT_SHADOW_GROUP, ACCT_SHADOWED, ACCT_SYSTEM_SHELL, ACCT_UID0, HOME_DOTFILES, HOME_EXISTS,
    HOME_FORWARD, HOME_MODE, HOME_NETRC, HOME_OWNER, HOME_RHOSTS, Meta, Outcome,
    ROOT_PATH_RELATIVE, ROOT_PATH_WRITABLE, listing, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::host::accounts::{self, PasswordState};
use crate::text::error_chain;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

type Loaded<T> = Result<accounts::Parsed<T>, String>;

/// The account databases, read once per snapshot.
pub(super) struct Accounts {
    passwd: Loaded<accounts::User>,
    group: Loaded<accounts::Group>,
    /// `Ok(None)`: the host has no shadow file.
    shadow: Result<Option<accounts::Parsed<accounts::Shadow>>, String>,
    uid_min: u32,
    /// The files as read, for what the parsers skip (NIS `+` lines) or drop (shadow aging).
    raw: Raw,
}

/// The account files' text (`None`: absent or unreadable; the parsed fields say which).
#[derive(Default)]
struct Raw {
    passwd: Option<String>,
    shadow: Option<String>,
    group: Option<String>,
}

impl Accounts {
    pub(super) fn load(host: &HostRoot) -> Accounts {
        let read = |path: &str| host.read_to_string(path).map_err(|e| error_chain(&e));
        let shadow = match host.read_to_string("/etc/shadow") {
            Ok(t) => Ok(Some(accounts::parse_shadow(&t))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(error_chain(&e)),
        };
        let uid_min = host
            .read_to_string("/etc/login.defs")
            .ok()
            .and_then(|t| login_defs_uid_min(&t))
            .unwrap_or(1000);
        let passwd_text = read("/etc/passwd");
        let group_text = read("/etc/group");
        let shadow_text = host.read_to_string("/etc/shadow").ok();
        Accounts {
            passwd: passwd_text
                .as_ref()
                .map(|t| accounts::parse_passwd(t))
                .map_err(Clone::clone),
            group: group_text
                .as_ref()
                .map(|t| accounts::parse_group(t))
                .map_err(Clone::clone),
            shadow,
            uid_min,
            raw: Raw {
                passwd: passwd_text.ok(),
                shadow: shadow_text,
                group: group_text.ok(),
            },
        }
    }

    /// gid → group name, for group-owner checks.
    pub(super) fn group_name(&self, gid: u32) -> Option<&str> {
        let group = self.group.as_ref().ok()?;
        group
            .entries
            .iter()
            .find(|g| g.gid == gid)
            .map(|g| g.name.as_str())
    }

    /// uid → name, for owner checks.
    pub(super) fn name_of(&self, uid: u32) -> Option<&str> {
        let passwd = self.passwd.as_ref().ok()?;
        passwd
            .entries
            .iter()
            .find(|u| u.uid == uid)
            .map(|u| u.name.as_str())
    }
}

fn login_defs_uid_min(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some("UID_MIN"))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// Keys that occur more than once, each listed as `key: a, b`.
fn duplicates<'a>(items: impl Iterator<Item = (String, &'a str)>) -> Vec<String> {
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (key, name) in items {
        seen.entry(key).or_default().push(name);
    }
    seen.into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(key, names)| format!("{key}: {}", names.join(" ")))
        .collect()
}

/// Shells that do not give a login (CIS excludes sync, shutdown and halt by name).
fn is_nologin(user: &accounts::User) -> bool {
    let shell = user.shell.trim();
    shell.ends_with("/nologin")
        || shell.ends_with("/false")
        || shell == "/bin/true"
        || matches!(user.name.as_str(), "sync" | "shutdown" | "halt")
}

pub(super) fn account_checks(acc: &Accounts, out: &mut Vec<BaselineCheck>) {
    let found = |items: Vec<String>, none: &str| {
        if items.is_empty() {
            Outcome::Pass(none.into())
        } else {
            Outcome::Fail(listing(&items))
        }
    };
    let with_passwd = |f: &dyn Fn(&accounts::Parsed<accounts::User>) -> Outcome| match &acc.passwd {
        Ok(p) => f(p),
        Err(e) => Outcome::Err(e.clone()),
    };
    out.push(record(
        &ACCT_UID0,
        with_passwd(&|p| {
            let extra: Vec<String> = p
                .entries
                .iter()
                .filter(|u| u.uid == 0 && u.name != "root")
                .map(|u| u.name.clone())
                .collect();
            found(extra, "only root has uid 0")
        }),
    ));
    out.push(record(
        &ACCT_EMPTY_PASSWORD,
        match (&acc.passwd, &acc.shadow) {
            (Err(e), _) | (_, Err(e)) => Outcome::Err(e.clone()),
            (Ok(p), Ok(shadow)) => {
                let mut empty: Vec<String> = p
                    .entries
                    .iter()
                    .filter(|u| u.passwd_field.is_empty())
                    .map(|u| u.name.clone())
                    .collect();
                if let Some(s) = shadow {
                    empty.extend(
                        s.entries
                            .iter()
                            .filter(|e| e.password == PasswordState::Empty)
                            .map(|e| e.name.clone()),
                    );
                }
                empty.sort();
                empty.dedup();
                let none = if shadow.is_some() {
                    "no empty password in passwd or shadow"
                } else {
                    "no empty password in passwd (no /etc/shadow)"
                };
                found(empty, none)
            }
        },
    ));
    out.push(record(
        &ACCT_DUP_UID,
        with_passwd(&|p| {
            let d = duplicates(
                p.entries
                    .iter()
                    .map(|u| (format!("uid {}", u.uid), u.name.as_str())),
            );
            found(d, "all uids unique")
        }),
    ));
    out.push(record(
        &ACCT_DUP_NAME,
        with_passwd(&|p| {
            let d = duplicates(p.entries.iter().map(|u| (u.name.clone(), u.name.as_str())));
            found(d, "all account names unique")
        }),
    ));
    let with_group = |f: &dyn Fn(&accounts::Parsed<accounts::Group>) -> Outcome| match &acc.group {
        Ok(g) => f(g),
        Err(e) => Outcome::Err(e.clone()),
    };
    out.push(record(
        &ACCT_DUP_GID,
        with_group(&|g| {
            let d = duplicates(
                g.entries
                    .iter()
                    .map(|e| (format!("gid {}", e.gid), e.name.as_str())),
            );
            found(d, "all gids unique")
        }),
    ));
    out.push(record(
        &ACCT_DUP_GROUP,
        with_group(&|g| {
            let d = duplicates(g.entries.iter().map(|e| (e.name.clone(), e.name.as_str())));
            found(d, "all group names unique")
        }),
    ));
    out.push(record(
        &ACCT_SYSTEM_SHELL,
        with_passwd(&|p| {
            let shells: Vec<String> = p
                .entries
                .iter()
                .filter(|u| u.uid < acc.uid_min && u.name != "root" && !is_nologin(u))
                .map(|u| {
                    let shell = if u.shell.is_empty() {
                        "/bin/sh (empty)"
                    } else {
                        &u.shell
                    };
                    format!("{} ({shell})", u.name)
                })
                .collect();
            found(shells, "no system account has a login shell")
        }),
    ));
}

/// Users whose home directories are examined, and entries read in each home.
const MAX_HOMES: usize = 1000;
const MAX_HOME_ENTRIES: usize = 4096;

/// Lines of an account file that pull in NIS entries (`+`, `+name`, `-name`).
fn plus_lines(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect()
}

/// Password aging of a shadow entry with a password hash.
struct Aging {
    name: String,
    last: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
    warn: Option<i64>,
    inactive: Option<i64>,
}

fn shadow_aging(text: &str) -> Vec<Aging> {
    text.lines()
        .filter(|l| !l.starts_with('+') && !l.starts_with('-') && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let hash = *f.get(1)?;
            if hash.is_empty() || hash.starts_with('!') || hash.starts_with('*') {
                return None;
            }
            let num = |i: usize| f.get(i).and_then(|v| v.trim().parse::<i64>().ok());
            Some(Aging {
                name: f[0].to_string(),
                last: num(2),
                min: num(3),
                max: num(4),
                warn: num(5),
                inactive: num(6),
            })
        })
        .collect()
}

/// Interactive users: uid at or above UID_MIN with a login shell (not `nobody`).
fn interactive<'a>(
    acc: &'a Accounts,
    p: &'a accounts::Parsed<accounts::User>,
) -> Vec<&'a accounts::User> {
    p.entries
        .iter()
        .filter(|u| {
            u.uid >= acc.uid_min && u.uid != 65534 && !is_nologin(u) && u.home.starts_with('/')
        })
        .take(MAX_HOMES)
        .collect()
}

/// PATH assignments for root: `/etc/environment` and root's shell profiles, literal values only
/// (`$PATH` references are skipped). Approximate: a shell can build PATH in ways a reader cannot
/// follow.
const ROOT_PATH_FILES: &[&str] = &[
    "/etc/environment",
    "/root/.profile",
    "/root/.bash_profile",
    "/root/.bashrc",
];

fn root_paths(host: &HostRoot) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for file in ROOT_PATH_FILES {
        let Ok(text) = host.read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let l = line.trim();
            let l = l.strip_prefix("export ").unwrap_or(l).trim();
            let Some(value) = l.strip_prefix("PATH=") else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            let entries: Vec<String> = value
                .split(':')
                .filter(|e| !e.contains('$'))
                .map(str::to_string)
                .collect();
            // `PATH=$PATH:` adds an empty entry only when the literal part is empty.
            out.push((file.to_string(), entries));
        }
    }
    out
}

pub(super) fn account_extra_checks(host: &HostRoot, acc: &Accounts, out: &mut Vec<BaselineCheck>) {
    let found = |items: Vec<String>, none: &str| {
        if items.is_empty() {
            Outcome::Pass(none.into())
        } else {
            Outcome::Fail(listing(&items))
        }
    };
    for (meta, text, missing_ok) in [
        (
            &ACCT_PLUS_PASSWD,
            acc.raw.passwd.as_deref(),
            acc.passwd.is_ok(),
        ),
        (&ACCT_PLUS_SHADOW, acc.raw.shadow.as_deref(), true),
        (
            &ACCT_PLUS_GROUP,
            acc.raw.group.as_deref(),
            acc.group.is_ok(),
        ),
    ] {
        let outcome = if text.is_none() && !missing_ok {
            match (&acc.passwd, &acc.group) {
                (Err(e), _) | (_, Err(e)) => Outcome::Err(e.clone()),
                _ => Outcome::Err("unreadable".into()),
            }
        } else {
            found(plus_lines(text), "no NIS + entries")
        };
        out.push(record(meta, outcome));
    }
    let (passwd, group) = match (&acc.passwd, &acc.group) {
        (Ok(p), Ok(g)) => (p, g),
        (Err(e), _) | (_, Err(e)) => {
            for meta in [
                &ACCT_ROOT_GID,
                &ACCT_GROUPS_EXIST,
                &ACCT_SHADOW_GROUP,
                &ACCT_SHADOWED,
            ] {
                out.push(record(meta, Outcome::Err(e.clone())));
            }
            return;
        }
    };
    out.push(record(
        &ACCT_ROOT_GID,
        match passwd.entries.iter().find(|u| u.name == "root") {
            Some(r) if r.gid == 0 => Outcome::Pass("root gid 0".into()),
            Some(r) => Outcome::Fail(format!("root gid {}", r.gid)),
            None => Outcome::Fail("no root account".into()),
        },
    ));
    out.push(record(
        &ACCT_GROUPS_EXIST,
        found(
            passwd
                .entries
                .iter()
                .filter(|u| !group.entries.iter().any(|g| g.gid == u.gid))
                .map(|u| format!("{} (gid {})", u.name, u.gid))
                .collect(),
            "every primary group exists",
        ),
    ));
    out.push(record(
        &ACCT_SHADOW_GROUP,
        match group.entries.iter().find(|g| g.name == "shadow") {
            None => Outcome::Pass("no shadow group".into()),
            Some(g) => {
                let mut members = g.members.clone();
                members.extend(
                    passwd
                        .entries
                        .iter()
                        .filter(|u| u.gid == g.gid)
                        .map(|u| format!("{} (primary)", u.name)),
                );
                found(members, "shadow group has no members")
            }
        },
    ));
    out.push(record(
        &ACCT_SHADOWED,
        found(
            passwd
                .entries
                .iter()
                .filter(|u| !matches!(u.passwd_field.as_str(), "x" | "" | "*" | "!" | "!!"))
                .map(|u| u.name.clone())
                .collect(),
            "every password is in /etc/shadow",
        ),
    ));

    // Password aging of accounts with a password.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let aging = acc.raw.shadow.as_deref().map(shadow_aging);
    type Rule = (&'static Meta, fn(&Aging, i64) -> Option<String>);
    let rules: [Rule; 5] = [
        (&ACCT_AGING_MAX, |a, _| match a.max {
            Some(m) if (1..=365).contains(&m) => None,
            m => Some(format!(
                "{} (max {})",
                a.name,
                m.map_or("unset".into(), |m| m.to_string())
            )),
        }),
        (&ACCT_AGING_MIN, |a, _| match a.min {
            Some(m) if m >= 1 => None,
            m => Some(format!(
                "{} (min {})",
                a.name,
                m.map_or("unset".into(), |m| m.to_string())
            )),
        }),
        (&ACCT_AGING_WARN, |a, _| match a.warn {
            Some(w) if w >= 7 => None,
            w => Some(format!(
                "{} (warn {})",
                a.name,
                w.map_or("unset".into(), |w| w.to_string())
            )),
        }),
        (&ACCT_AGING_INACTIVE, |a, _| match a.inactive {
            Some(i) if (0..=30).contains(&i) => None,
            i => Some(format!(
                "{} (inactive {})",
                a.name,
                i.map_or("unset".into(), |i| i.to_string())
            )),
        }),
        (&ACCT_AGING_LAST, |a, today| match a.last {
            Some(l) if l > today => {
                Some(format!("{} (changed on day {l}, today is {today})", a.name))
            }
            _ => None,
        }),
    ];
    for (meta, bad) in rules {
        out.push(record(
            meta,
            match (&acc.shadow, &aging) {
                (Err(e), _) => Outcome::Err(e.clone()),
                (Ok(None), _) | (_, None) => Outcome::Pass("no /etc/shadow".into()),
                (Ok(Some(_)), Some(aging)) => found(
                    aging.iter().filter_map(|a| bad(a, today)).collect(),
                    &format!("{} accounts with a password checked", aging.len()),
                ),
            },
        ));
    }

    // root's PATH.
    let paths = root_paths(host);
    let note = "from /etc/environment and root's profiles; approximate";
    let none = format!("no PATH assignment found ({note})");
    let mut relative = Vec::new();
    let mut writable = Vec::new();
    for (file, entries) in &paths {
        for e in entries {
            if e.is_empty() || !e.starts_with('/') {
                relative.push(format!("{file}: {:?}", e));
            } else if let Ok(m) = host.metadata(e)
                && m.is_dir()
                && m.mode() & 0o022 != 0
            {
                writable.push(format!("{file}: {e} ({:04o})", m.mode() & 0o7777));
            }
        }
    }
    let outcome = |items: Vec<String>| {
        if paths.is_empty() {
            Outcome::Pass(none.clone())
        } else if items.is_empty() {
            Outcome::Pass(format!("{} PATH assignments ({note})", paths.len()))
        } else {
            Outcome::Fail(listing(&items))
        }
    };
    out.push(record(&ROOT_PATH_RELATIVE, outcome(relative)));
    out.push(record(&ROOT_PATH_WRITABLE, outcome(writable)));

    // Home directories of interactive users.
    let users = interactive(acc, passwd);
    let mut missing = Vec::new();
    let mut loose = Vec::new();
    let mut not_owned = Vec::new();
    let mut dot_writable = Vec::new();
    let mut netrc = Vec::new();
    let mut rhosts = Vec::new();
    let mut forward = Vec::new();
    for u in &users {
        let m = match host.metadata(&u.home) {
            Ok(m) if m.is_dir() => m,
            _ => {
                missing.push(format!("{} ({})", u.name, u.home));
                continue;
            }
        };
        if m.mode() & 0o027 != 0 {
            loose.push(format!("{} ({:04o})", u.home, m.mode() & 0o7777));
        }
        if m.uid() != u.uid {
            not_owned.push(format!("{} (uid {}, user {})", u.home, m.uid(), u.name));
        }
        let Ok(mut rd) = host.read_dir(&u.home) else {
            continue;
        };
        let mut seen = 0;
        while let Some(Ok(entry)) = rd.next() {
            seen += 1;
            if seen > MAX_HOME_ENTRIES {
                break;
            }
            let name = entry.name.to_string_lossy().into_owned();
            if !name.starts_with('.') {
                continue;
            }
            let path = format!("{}/{name}", u.home.trim_end_matches('/'));
            match name.as_str() {
                ".netrc" => netrc.push(path.clone()),
                ".rhosts" | ".shosts" => rhosts.push(path.clone()),
                ".forward" => forward.push(path.clone()),
                _ => {}
            }
            if let Ok(meta) = rd.symlink_metadata(&entry.name)
                && meta.is_file()
                && meta.mode() & 0o022 != 0
            {
                dot_writable.push(format!("{path} ({:04o})", meta.mode() & 0o7777));
            }
        }
    }
    let summary = format!("{} interactive users", users.len());
    for (meta, items) in [
        (&HOME_EXISTS, missing),
        (&HOME_MODE, loose),
        (&HOME_OWNER, not_owned),
        (&HOME_DOTFILES, dot_writable),
        (&HOME_NETRC, netrc),
        (&HOME_RHOSTS, rhosts),
        (&HOME_FORWARD, forward),
    ] {
        out.push(record(meta, found(items, &summary)));
    }
}
