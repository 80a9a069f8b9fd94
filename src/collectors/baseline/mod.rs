//! `OSBaseline`: security configuration checks of the host, one `BaselineCheck` record per check,
//! all in one event per snapshot.
//!
//! Every check reads the host through the host root (files, `/proc/sys`, file modes and owners)
//! and never runs host commands. A check has a stable id in `CceId`: the Common Configuration
//! Enumeration id where one exists, else an `EG-…` id of ours. CCE ids are platform-specific; we
//! use the RHEL 8 id from ComplianceAsCode (`ExtraDetails.Reference` names the rule and, where the
//! rule has no RHEL 8 id, the platform the id comes from). Each record carries
//! `ExtraDetails.Remediation`, and `ExtraDetails.Actual` says what was found.
//!
//! **Areas** (toward the CIS Distribution Independent Linux benchmark, Level 1 server; the count
//! is pinned by `tests::every_builtin_check_passes_on_a_hardened_host`): sshd settings and host
//! keys (sshd.rs, `SSHD_RULES`); accounts, password aging, root's PATH and interactive users'
//! homes (passwd.rs); PAM password quality, lockout, reuse and hashing (pam.rs); modes, owners
//! and groups of account files and their backups, sudoers, sshd_config, cron, at, banners and
//! grub.cfg (files.rs, `FILE_RULES`); kernel settings (sysctl.rs, `SYSCTL_RULES`); kernel
//! modules that should not load (modprobe.rs, `MODULE_RULES`); login.defs, useradd, auditd,
//! journald and coredump settings (kv.rs, `KV_RULES`); programs and files that should be
//! present or absent, mount options, the kernel command line, LSM, time sync, logging, core
//! limits, banner contents and sudo defaults (system.rs, `PATH_RULES`, `MOUNT_RULES`);
//! bounded walks (walks.rs; the running collector reuses each walk for an hour,
//! `WALK_REFRESH`); Docker; IoT Edge. Where many checks share a shape they are rows of
//! a table in catalogue.rs, evaluated by one generic function.
//!
//! **Not applicable.** The schema's results are only Pass/Fail/Error, so a check that cannot
//! apply passes with `ExtraDetails.NotApplicable = "true"` and the reason in `Actual`: mount
//! options of a mount point that is not a separate mount, a separate `/tmp` on a read-only root
//! (an embedded image), IP forwarding on a container host (Docker, containerd or IoT Edge
//! present), squashfs and jffs2 while they are in use.
//!
//! **Missing inputs.** A check whose subject is not installed passes ("nothing to misconfigure"):
//! no `/etc/ssh/sshd_config` → every sshd check passes with `Actual: sshd not installed`; no
//! `/etc/shadow`, `/etc/gshadow`, `/etc/sudoers` → their mode and owner checks pass; no Docker →
//! Docker checks pass; no `/etc/aziot` → IoT Edge checks pass; no `net.ipv6` sysctls → IPv6 is off
//! and its checks pass. A missing `/etc/passwd` or `/etc/group`, a missing kernel setting (other
//! than IPv6 and Yama), and any read error are `Err` with the reason in `Error`. Without Yama, ptrace
//! is unrestricted, so that check fails. Likewise absent subjects pass for the newer checks: no
//! PAM stack, no `login.defs`, no auditd (its settings and the `audit=` arguments), no
//! systemd-coredump, no cron or at, no GRUB, no pam_limits. The mount checks need the host's
//! `/proc/1/mountinfo` and are `Err` without it; the module checks read the modprobe
//! configuration, `/proc/modules` and, to pass modules the kernel does not have, the kernel's
//! `modules.dep` and `modules.builtin`. Programs are recognised by their usual paths (a daemon
//! stands for its package: the package database is not read), so a program installed elsewhere
//! is missed.
//!
//! **sshd_config.** Parsed the way sshd reads it for settings outside `Match`: keywords are
//! case-insensitive, `Keyword value` or `Keyword=value`, the first value of a keyword wins,
//! `Include` is expanded in place (globs in the last path component, relative paths under
//! `/etc/ssh`, files in lexical order, nested up to 16 deep). Everything after a `Match` line up to
//! the end of its file applies only to matching connections, so it is ignored here (an `Include`
//! inside a `Match` block too); as in sshd, a `Match` inside an included file ends with that file.
//! Unset keywords take OpenSSH's current defaults.
//!
//! **Custom checks.** With `baselineCustomChecksEnabled`, the file at
//! `baselineCustomChecksFilePath` (a host path, read through the host root) is run after the
//! built-in checks, provided its SHA-256 equals `baselineCustomChecksFileHash` (hex, any case). A
//! file whose hash does not match (or no hash at all) runs nothing and yields one `Err` record
//! instead. The format is a JSON array of objects:
//!
//! ```json
//! [
//!   {"id": "ACME-001", "description": "No hosts.equiv", "severity": "Important",
//!    "file_absent": "/etc/hosts.equiv"},
//!   {"id": "ACME-002", "description": "App config private", "severity": "Warning",
//!    "remediation": "chmod 600 /etc/app.conf", "file_mode_max": {"path": "/etc/app.conf", "mode": "0640"}},
//!   {"id": "ACME-003", "description": "Telnet off", "severity": "Critical",
//!    "file_contains": {"path": "/etc/inetd.conf", "text": "#telnet"}},
//!   {"id": "ACME-004", "description": "No forwarding", "severity": "Warning",
//!    "sysctl_equals": {"name": "net.ipv4.ip_forward", "value": "0"}},
//!   {"id": "ACME-005", "description": "Agent config present", "severity": "Informational",
//!    "file_exists": "/etc/acme/agent.toml"}
//! ]
//! ```
//!
//! `id`, `description` and `severity` (`Critical`, `Important`, `Warning`, `Informational`) are
//! required, `remediation` is optional, and each check has exactly one of `file_exists`,
//! `file_absent`, `file_mode_max` (octal string; passes when the file has no permission bit beyond
//! it, or does not exist), `file_contains` (plain substring, no regex; a missing file fails) or
//! `sysctl_equals` (whitespace-normalised comparison; a missing setting is `Err`). Unknown fields
//! make the file malformed. At most [`MAX_CUSTOM_CHECKS`] checks.

mod aziot;
mod catalogue;
mod check;
mod custom;
mod docker;
mod files;
mod kv;
mod modprobe;
mod pam;
mod passwd;
mod paths;
mod sshd;
mod sysctl;
mod system;
#[cfg(test)]
mod tests;
mod walks;

use aziot::*;
use catalogue::*;
pub use check::*;
pub use custom::*;
use docker::*;
use files::*;
use kv::*;
use modprobe::*;
use pam::*;
use passwd::*;
use paths::*;
pub use sshd::*;
use sysctl::*;
use system::*;
use walks::*;

use super::Periodic;
use crate::config::Config;
use crate::event::{BaselineCheck, Event, Payload};
use crate::host::HostRoot;
use std::sync::Arc;
use tokio::sync::watch;

/// The collector's name (metric label).
pub const COLLECTOR: &str = "baseline";

/// The most custom checks one file may hold.
pub const MAX_CUSTOM_CHECKS: usize = 256;

/// Bounds of the world-writable directory walk: it must finish in seconds on any device.
const WALK_MAX_DIRS: usize = 50_000;
const WALK_MAX_ENTRIES: usize = 1_000_000;
const WALK_MAX_DEPTH: usize = 32;

/// Bounds of the setuid/setgid walk (flat binary directories).
const SUID_MAX_ENTRIES: usize = 50_000;
const SUID_MAX_DEPTH: usize = 3;

/// Findings listed in `Actual`; the total is always given.
const MAX_LISTED: usize = 10;

/// Every built-in check, in a stable order.
pub fn run_builtin(host: &HostRoot) -> Vec<BaselineCheck> {
    builtin(host, None)
}

/// [`run_builtin`], reusing recent walks from `cache` ([`WALK_REFRESH`]).
fn builtin(host: &HostRoot, cache: Option<&mut WalkCache>) -> Vec<BaselineCheck> {
    let mut out = Vec::with_capacity(256);
    let accounts = Accounts::load(host);
    sshd_checks(host, &mut out);
    account_checks(&accounts, &mut out);
    account_extra_checks(host, &accounts, &mut out);
    pam_checks(host, &mut out);
    file_checks(host, &accounts, &mut out);
    sysctl_checks(host, &mut out);
    module_checks(host, &mut out);
    kv_checks(host, &mut out);
    system_checks(host, &mut out);
    walk_checks(host, cache, &mut out);
    docker_checks(host, &mut out);
    aziot_checks(host, &accounts, &mut out);
    out
}

/// The periodic `OSBaseline` collector. Blocking (it walks directories): called by
/// `run_periodic` on a blocking thread like every [`Periodic`]. Reads the custom-check settings
/// from the configuration at each snapshot.
pub struct BaselineCollector {
    config: watch::Receiver<Arc<Config>>,
    walks: WalkCache,
}

impl BaselineCollector {
    pub fn new(config: watch::Receiver<Arc<Config>>) -> BaselineCollector {
        BaselineCollector {
            config,
            walks: WalkCache::default(),
        }
    }
}

impl Periodic for BaselineCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let config = self.config.borrow().clone();
        let mut checks = builtin(host, Some(&mut self.walks));
        checks.extend(run_custom(
            host,
            config.baseline_custom_checks_enabled,
            config.baseline_custom_checks_file_path.as_deref(),
            config.baseline_custom_checks_file_hash.as_deref(),
        ));
        vec![Event::new(Payload::OSBaseline(checks))]
    }
}
