//! Accounts: passwd, group and shadow checks (uid 0, empty passwords, duplicates, shells).

use super::{
    ACCT_DUP_GID, ACCT_DUP_GROUP, ACCT_DUP_NAME, ACCT_DUP_UID, ACCT_EMPTY_PASSWORD,
    ACCT_SYSTEM_SHELL, ACCT_UID0, Outcome, listing, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::host::accounts::{self, PasswordState};
use crate::text::error_chain;
use std::collections::BTreeMap;

type Loaded<T> = Result<accounts::Parsed<T>, String>;

/// The account databases, read once per snapshot.
pub(super) struct Accounts {
    passwd: Loaded<accounts::User>,
    group: Loaded<accounts::Group>,
    /// `Ok(None)`: the host has no shadow file.
    shadow: Result<Option<accounts::Parsed<accounts::Shadow>>, String>,
    uid_min: u32,
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
        Accounts {
            passwd: read("/etc/passwd").map(|t| accounts::parse_passwd(&t)),
            group: read("/etc/group").map(|t| accounts::parse_group(&t)),
            shadow,
            uid_min,
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
