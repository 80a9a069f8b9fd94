//! Modes and owners of the account, sudoers and sshd files.

use super::{
    GROUP_MODE, GROUP_OWNER, GSHADOW_MODE, GSHADOW_OWNER, Meta, Outcome, PASSWD_MODE, PASSWD_OWNER,
    SHADOW_MODE, SHADOW_OWNER, SSHD_CONFIG_MODE, SSHD_CONFIG_OWNER, SUDOERS_MODE, SUDOERS_OWNER,
    host_meta, is_not_found, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use std::os::unix::fs::MetadataExt;

/// What a mode/owner check does when its file is absent.
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// Nothing to protect: pass with this note.
    Pass(&'static str),
    /// The file must exist: the check cannot be done.
    Err,
}

struct FileRule {
    path: &'static str,
    /// No permission bit beyond these may be set.
    max_mode: u32,
    missing: Missing,
    mode: Meta,
    owner: Meta,
}

const FILE_RULES: &[FileRule] = &[
    FileRule {
        path: "/etc/passwd",
        max_mode: 0o644,
        missing: Missing::Err,
        mode: PASSWD_MODE,
        owner: PASSWD_OWNER,
    },
    FileRule {
        path: "/etc/shadow",
        max_mode: 0o640,
        missing: Missing::Pass("no /etc/shadow"),
        mode: SHADOW_MODE,
        owner: SHADOW_OWNER,
    },
    FileRule {
        path: "/etc/group",
        max_mode: 0o644,
        missing: Missing::Err,
        mode: GROUP_MODE,
        owner: GROUP_OWNER,
    },
    FileRule {
        path: "/etc/gshadow",
        max_mode: 0o640,
        missing: Missing::Pass("no /etc/gshadow"),
        mode: GSHADOW_MODE,
        owner: GSHADOW_OWNER,
    },
    FileRule {
        path: "/etc/sudoers",
        max_mode: 0o440,
        missing: Missing::Pass("sudo not installed"),
        mode: SUDOERS_MODE,
        owner: SUDOERS_OWNER,
    },
    FileRule {
        path: "/etc/ssh/sshd_config",
        max_mode: 0o600,
        missing: Missing::Pass("sshd not installed"),
        mode: SSHD_CONFIG_MODE,
        owner: SSHD_CONFIG_OWNER,
    },
];

pub(super) fn file_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    for rule in FILE_RULES {
        let (mode, owner) = match host_meta(host, rule.path) {
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                let extra = mode & !rule.max_mode;
                let mode_actual = format!("{} mode {mode:04o}", rule.path);
                let owner_actual = format!("{} owner uid {}", rule.path, m.uid());
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
                )
            }
            Err(e) if is_not_found(&e) => match rule.missing {
                Missing::Pass(note) => (Outcome::Pass(note.into()), Outcome::Pass(note.into())),
                Missing::Err => {
                    let e = format!("{} not found", rule.path);
                    (Outcome::Err(e.clone()), Outcome::Err(e))
                }
            },
            Err(e) => {
                let e = format!("{}: {}", rule.path, e.reason());
                (Outcome::Err(e.clone()), Outcome::Err(e))
            }
        };
        out.push(record(&rule.mode, mode));
        out.push(record(&rule.owner, owner));
    }
}
