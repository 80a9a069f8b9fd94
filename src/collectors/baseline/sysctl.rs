//! Kernel settings: the `/proc/sys` values the catalogue's sysctl rules expect.

use super::{Meta, Outcome, SYSCTL_RULES, record};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;

#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    Eq(i64),
    AtLeast(i64),
    OneOf(&'static [i64]),
}

/// What a sysctl check does when the setting does not exist.
#[derive(Debug, Clone, Copy)]
pub(super) enum Absent {
    Err,
    Pass(&'static str),
    Fail(&'static str),
}

pub(super) struct SysctlRule {
    pub(super) name: &'static str,
    pub(super) expect: Expect,
    pub(super) absent: Absent,
    /// A failing value is reported not applicable on a container host.
    pub(super) container_na: bool,
    pub(super) meta: Meta,
}

/// The host path of a sysctl, or `None` for a name that could escape `/proc/sys`.
fn sysctl_path(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 256
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        });
    valid.then(|| format!("/proc/sys/{}", name.replace('.', "/")))
}

/// A sysctl's current value (trimmed), `Ok(None)` when the kernel does not have it.
pub(super) fn read_sysctl(host: &HostRoot, name: &str) -> Result<Option<String>, String> {
    let path = sysctl_path(name).ok_or_else(|| format!("invalid sysctl name {name:?}"))?;
    match host.read_to_string(&path) {
        Ok(v) => Ok(Some(v.split_whitespace().collect::<Vec<_>>().join(" "))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Paths whose presence marks a container host (Docker, containerd, IoT Edge): such a host
/// forwards packets for its containers by design.
const CONTAINER_HOST_MARKERS: &[&str] = &[
    "/var/lib/docker",
    "/var/lib/containerd",
    "/etc/aziot",
    "/etc/docker",
];

/// Why this host is a container host, if it is one.
pub(super) fn container_host(host: &HostRoot) -> Option<String> {
    CONTAINER_HOST_MARKERS
        .iter()
        .find(|p| super::exists(host, p))
        .map(|p| format!("container host ({p} exists), forwarding is required"))
}

pub(super) fn sysctl_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    for rule in SYSCTL_RULES {
        let outcome = match read_sysctl(host, rule.name) {
            Err(e) => Outcome::Err(e),
            Ok(None) => match rule.absent {
                Absent::Err => Outcome::Err(format!("{} not available on this kernel", rule.name)),
                Absent::Pass(note) => Outcome::Pass(note.into()),
                Absent::Fail(note) => Outcome::Fail(note.into()),
            },
            Ok(Some(v)) => match v.parse::<i64>() {
                Err(_) => Outcome::Err(format!("{} has an unexpected value {v:?}", rule.name)),
                Ok(n) => {
                    let ok = match rule.expect {
                        Expect::Eq(x) => n == x,
                        Expect::AtLeast(x) => n >= x,
                        Expect::OneOf(xs) => xs.contains(&n),
                    };
                    let actual = format!("{} = {n}", rule.name);
                    if ok {
                        Outcome::Pass(actual)
                    } else if let Some(why) =
                        rule.container_na.then(|| container_host(host)).flatten()
                    {
                        Outcome::NotApplicable(format!("{actual}: {why}"))
                    } else {
                        Outcome::Fail(actual)
                    }
                }
            },
        };
        out.push(record(&rule.meta, outcome));
    }
}
