//! Modes and owners of files and directories: the account databases and their backups, sudoers,
//! sshd, cron and at, the login banners and the bootloader configuration. The table is
//! `FILE_RULES` in the catalogue; every rule gives a mode check, an owner check and (most) a
//! group-owner check.

use super::{Accounts, FILE_RULES, Meta, Outcome, host_meta, is_not_found, record};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use std::os::unix::fs::MetadataExt;

/// What a mode/owner check does when its file is absent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Missing {
    /// Nothing to protect: pass with this note.
    Pass(&'static str),
    /// The file must exist: the check cannot be done.
    Err,
}

pub(super) struct FileRule {
    /// Where the file may be; the first that exists is checked (`/boot/grub/grub.cfg` or
    /// `/boot/grub2/grub.cfg`).
    pub(super) paths: &'static [&'static str],
    /// No permission bit beyond these may be set.
    pub(super) max_mode: u32,
    /// Group names allowed as group owner besides gid 0 (`shadow` for `/etc/shadow`).
    pub(super) groups: &'static [&'static str],
    pub(super) missing: Missing,
    pub(super) mode: Meta,
    pub(super) owner: Meta,
    pub(super) group: Option<Meta>,
}

pub(super) fn file_checks(host: &HostRoot, accounts: &Accounts, out: &mut Vec<BaselineCheck>) {
    for rule in FILE_RULES {
        let mut found = None;
        let mut error = None;
        for path in rule.paths {
            match host_meta(host, path) {
                Ok(m) => {
                    found = Some((*path, m));
                    break;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    error = Some(format!("{path}: {}", e.reason()));
                    break;
                }
            }
        }
        let (mode, owner, group) = match (found, error) {
            (_, Some(e)) => (
                Outcome::Err(e.clone()),
                Outcome::Err(e.clone()),
                Outcome::Err(e),
            ),
            (Some((path, m)), None) => {
                let mode = m.mode() & 0o7777;
                let extra = mode & !rule.max_mode;
                let mode_actual = format!("{path} mode {mode:04o}");
                let owner_actual = format!("{path} owner uid {}", m.uid());
                let group_name = accounts.group_name(m.gid());
                let group_actual = match group_name {
                    Some(name) => format!("{path} group {name} (gid {})", m.gid()),
                    None => format!("{path} group gid {}", m.gid()),
                };
                let group_ok = m.gid() == 0 || group_name.is_some_and(|n| rule.groups.contains(&n));
                (
                    if extra == 0 {
                        Outcome::Pass(mode_actual)
                    } else {
                        Outcome::Fail(format!("{mode_actual} (extra bits {extra:04o})"))
                    },
                    if m.uid() == 0 {
                        Outcome::Pass(owner_actual)
                    } else {
                        Outcome::Fail(owner_actual)
                    },
                    if group_ok {
                        Outcome::Pass(group_actual)
                    } else {
                        Outcome::Fail(group_actual)
                    },
                )
            }
            (None, None) => match rule.missing {
                Missing::Pass(note) => (
                    Outcome::Pass(note.into()),
                    Outcome::Pass(note.into()),
                    Outcome::Pass(note.into()),
                ),
                Missing::Err => {
                    let e = format!("{} not found", rule.paths.join(" or "));
                    (
                        Outcome::Err(e.clone()),
                        Outcome::Err(e.clone()),
                        Outcome::Err(e),
                    )
                }
            },
        };
        out.push(record(&rule.mode, mode));
        out.push(record(&rule.owner, owner));
        if let Some(meta) = &rule.group {
            out.push(record(meta, group));
        }
    }
}
