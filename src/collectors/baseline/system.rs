//! Whole-system checks: programs and files that should (not) be there (`PATH_RULES`), mount
//! options (`MOUNT_RULES`), the kernel command line, the LSM, time synchronisation, logging,
//! core-dump limits, login banners and sudo defaults.

use super::{
    AUDIT_BACKLOG, AUDIT_CMDLINE, BANNER_ISSUE, BANNER_ISSUE_NET, BANNER_MOTD, CORE_LIMIT,
    LSM_ENABLED, MOUNT_RULES, Meta, Outcome, PATH_RULES, SUDO_LOGFILE, SUDO_USE_PTY, SYSLOG,
    TIME_SYNC, exists, listing, read_capped, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;

/// Whether a rule wants its paths present or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// At least one of the paths exists.
    Present,
    /// None of the paths exists.
    Absent,
}

pub(super) struct PathRule {
    pub(super) paths: &'static [&'static str],
    pub(super) want: Want,
    /// The rule applies only when one of these exists (the subject is installed); empty: always.
    pub(super) only_if: &'static [&'static str],
    /// What `Actual` says when `only_if` finds nothing.
    pub(super) not_installed: &'static str,
    pub(super) meta: Meta,
}

/// A mount that should exist, or an option it should have.
pub(super) struct MountRule {
    pub(super) mountpoint: &'static str,
    /// `None`: the mount point must be a separate mount.
    pub(super) option: Option<&'static str>,
    pub(super) meta: Meta,
}

/// Bytes read of a configuration file here, and files read from a `.d` directory.
const MAX_CONF_BYTES: u64 = 256 * 1024;
const MAX_DROPINS: usize = 64;

fn path_outcome(host: &HostRoot, rule: &PathRule) -> Outcome {
    if !rule.only_if.is_empty() && !rule.only_if.iter().any(|p| exists(host, p)) {
        return Outcome::Pass(rule.not_installed.into());
    }
    let found: Vec<String> = rule
        .paths
        .iter()
        .filter(|p| exists(host, p))
        .map(|p| p.to_string())
        .collect();
    match (rule.want, found.is_empty()) {
        (Want::Present, false) | (Want::Absent, true) => Outcome::Pass(if found.is_empty() {
            format!("no {}", rule.paths.join(", "))
        } else {
            listing(&found)
        }),
        (Want::Present, true) => Outcome::Fail(format!("no {}", rule.paths.join(", "))),
        (Want::Absent, false) => Outcome::Fail(listing(&found)),
    }
}

/// One mount from mountinfo: mount point and options (per-mount and superblock).
#[derive(Debug)]
pub(super) struct Mount {
    pub(super) point: String,
    pub(super) options: Vec<String>,
}

/// Parses `/proc/<pid>/mountinfo`; later mounts on the same point hide earlier ones. Octal
/// escapes in mount points (`\040`) are decoded.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 {
            continue;
        }
        let point = unescape(fields[4]);
        let mut options: Vec<String> = fields[5].split(',').map(str::to_string).collect();
        if let Some(sb) = fields.get(sep + 3) {
            options.extend(sb.split(',').map(str::to_string));
        }
        mounts.retain(|m| m.point != point);
        mounts.push(Mount { point, options });
    }
    mounts
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    // The host's mounts as its init sees them (the agent's own mount namespace differs).
    let mounts = host
        .read_to_string("/proc/1/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .map_err(|e| format!("/proc/1/mountinfo: {}", error_chain(&e)));
    let read_only_root = mounts.as_ref().is_ok_and(|m| {
        m.iter()
            .any(|m| m.point == "/" && m.options.iter().any(|o| o == "ro"))
    });
    for rule in MOUNT_RULES {
        let outcome = match &mounts {
            Err(e) => Outcome::Err(e.clone()),
            Ok(mounts) => match (
                mounts.iter().find(|m| m.point == rule.mountpoint),
                rule.option,
            ) {
                (Some(m), None) => Outcome::Pass(format!(
                    "{} is a separate mount ({})",
                    m.point,
                    m.options.join(",")
                )),
                (None, None) if read_only_root => Outcome::NotApplicable(format!(
                    "{} is not a separate mount, but the root filesystem is read-only (an embedded image)",
                    rule.mountpoint
                )),
                (None, None) => {
                    Outcome::Fail(format!("{} is not a separate mount", rule.mountpoint))
                }
                (None, Some(_)) => Outcome::NotApplicable(format!(
                    "{} is not a separate mount, so it has no mount options of its own",
                    rule.mountpoint
                )),
                (Some(m), Some(opt)) => {
                    let actual = format!("{} mounted {}", m.point, m.options.join(","));
                    if m.options.iter().any(|o| o == opt) {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
            },
        };
        out.push(record(&rule.meta, outcome));
    }
}

/// A configuration file and the `*.conf` files of its `.d` directory, capped.
fn read_with_dropins(host: &HostRoot, file: &str, dir: &str) -> Result<Option<String>, String> {
    let mut text = match read_capped(host, file, MAX_CONF_BYTES) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(format!("{file}: {}", error_chain(&e))),
    };
    if let Ok(rd) = host.read_dir(dir) {
        let mut names: Vec<String> = rd
            .map_while(Result::ok)
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| !n.starts_with('.') && !n.ends_with('~'))
            .take(MAX_DROPINS)
            .collect();
        names.sort();
        for n in names {
            if let Ok(b) = read_capped(host, &format!("{dir}/{n}"), MAX_CONF_BYTES) {
                let t = text.get_or_insert_with(String::new);
                t.push('\n');
                t.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    Ok(text)
}

fn cmdline_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let auditd = ["/sbin/auditd", "/usr/sbin/auditd"]
        .iter()
        .any(|p| exists(host, p));
    let cmdline = host
        .read_to_string("/proc/cmdline")
        .map_err(|e| format!("/proc/cmdline: {}", error_chain(&e)));
    let arg = |name: &str| -> Result<Option<String>, String> {
        let c = cmdline.as_ref().map_err(Clone::clone)?;
        Ok(c.split_whitespace()
            .rev()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string))
    };
    let check = |name: &str, ok: &dyn Fn(&str) -> bool| -> Outcome {
        if !auditd {
            return Outcome::Pass("auditd not installed".into());
        }
        match arg(name) {
            Err(e) => Outcome::Err(e),
            Ok(None) => Outcome::Fail(format!("no {name}= on the kernel command line")),
            Ok(Some(v)) if ok(&v) => Outcome::Pass(format!("{name}={v}")),
            Ok(Some(v)) => Outcome::Fail(format!("{name}={v}")),
        }
    };
    out.push(record(&AUDIT_CMDLINE, check("audit", &|v| v == "1")));
    out.push(record(
        &AUDIT_BACKLOG,
        check("audit_backlog_limit", &|v| {
            v.parse::<u64>().is_ok_and(|n| n >= 8192)
        }),
    ));
}

fn lsm_outcome(host: &HostRoot) -> Outcome {
    if let Ok(lsm) = host.read_to_string("/sys/kernel/security/lsm") {
        let active: Vec<&str> = lsm
            .trim()
            .split(',')
            .filter(|m| matches!(*m, "apparmor" | "selinux" | "smack" | "tomoyo"))
            .collect();
        return if active.is_empty() {
            Outcome::Fail(format!("active LSMs: {}", lsm.trim()))
        } else {
            Outcome::Pass(format!("active LSMs: {}", lsm.trim()))
        };
    }
    // securityfs not mounted in the host root: the modules' own flags.
    if host
        .read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
    {
        return Outcome::Pass("AppArmor enabled".into());
    }
    if exists(host, "/sys/fs/selinux/enforce") {
        return Outcome::Pass("SELinux enabled".into());
    }
    Outcome::Fail("neither AppArmor nor SELinux is enabled".into())
}

/// Time synchronisation configured: any of these daemons' configuration or enablement links.
const TIME_SYNC_PATHS: &[&str] = &[
    "/etc/chrony/chrony.conf",
    "/etc/chrony.conf",
    "/etc/ntp.conf",
    "/etc/ntpsec/ntp.conf",
    "/etc/openntpd/ntpd.conf",
    "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
    "/etc/systemd/system/multi-user.target.wants/chronyd.service",
    "/etc/systemd/system/multi-user.target.wants/chrony.service",
];

/// A syslog daemon's configuration, or a persistent journal.
const SYSLOG_PATHS: &[&str] = &[
    "/etc/rsyslog.conf",
    "/etc/syslog-ng/syslog-ng.conf",
    "/etc/syslog.conf",
    "/var/log/journal",
];

fn any_present(host: &HostRoot, paths: &[&str], none: &str) -> Outcome {
    let found: Vec<String> = paths
        .iter()
        .filter(|p| exists(host, p))
        .map(|p| p.to_string())
        .collect();
    if found.is_empty() {
        Outcome::Fail(none.into())
    } else {
        Outcome::Pass(listing(&found))
    }
}

/// `* hard core 0` in limits.conf or limits.d (a later line for the same domain wins).
fn core_limit_outcome(host: &HostRoot) -> Outcome {
    let text = match read_with_dropins(host, "/etc/security/limits.conf", "/etc/security/limits.d")
    {
        Err(e) => return Outcome::Err(e),
        Ok(None) => return Outcome::Pass("pam_limits not installed".into()),
        Ok(Some(t)) => t,
    };
    let mut value = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [domain, kind, item, v, ..] = f.as_slice()
            && *domain == "*"
            && (*kind == "hard" || *kind == "-")
            && *item == "core"
        {
            value = Some(v.to_string());
        }
    }
    match value {
        Some(v) if v == "0" => Outcome::Pass("* hard core 0".into()),
        Some(v) => Outcome::Fail(format!("* hard core {v}")),
        None => Outcome::Fail("no '* hard core' limit".into()),
    }
}

/// A banner that names the system: getty escapes for the OS and kernel (`\S` is agetty's
/// os-release name), or the OS's name.
fn banner_outcome(host: &HostRoot, path: &str, os_id: Option<&str>) -> Outcome {
    let text = match read_capped(host, path, MAX_CONF_BYTES) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.is_not_found() => return Outcome::Pass(format!("no {path}")),
        Err(e) => return Outcome::Err(format!("{path}: {}", error_chain(&e))),
    };
    let mut found: Vec<String> = ["\\m", "\\r", "\\s", "\\S", "\\v"]
        .iter()
        .filter(|e| text.contains(*e))
        .map(|e| e.to_string())
        .collect();
    if let Some(id) = os_id
        && id.len() >= 3
        && text.to_ascii_lowercase().contains(id)
    {
        found.push(format!("OS name {id:?}"));
    }
    if found.is_empty() {
        Outcome::Pass(format!("{path} does not name the system"))
    } else {
        Outcome::Fail(format!("{path} shows {}", found.join(", ")))
    }
}

fn os_id(host: &HostRoot) -> Option<String> {
    let text = host
        .read_to_string("/etc/os-release")
        .or_else(|_| host.read_to_string("/usr/lib/os-release"))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// `Defaults` lines of sudoers and sudoers.d.
fn sudo_defaults(host: &HostRoot) -> Result<Option<Vec<String>>, String> {
    let text = read_with_dropins(host, "/etc/sudoers", "/etc/sudoers.d")?;
    Ok(text.map(|t| {
        t.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Defaults") && !l.starts_with("Defaults!"))
            .map(str::to_string)
            .collect()
    }))
}

fn sudo_outcome(defaults: &Result<Option<Vec<String>>, String>, want: &str) -> Outcome {
    match defaults {
        Err(e) => Outcome::Err(e.clone()),
        Ok(None) => Outcome::Pass("sudo not installed".into()),
        Ok(Some(lines)) => {
            let hit = lines.iter().find(|l| {
                l.split([' ', '\t', ','])
                    .any(|w| w == want || w.starts_with(&format!("{want}=")))
            });
            match hit {
                Some(l) => Outcome::Pass(l.clone()),
                None => Outcome::Fail(format!("no 'Defaults {want}' in sudoers")),
            }
        }
    }
}

pub(super) fn system_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    for rule in PATH_RULES {
        out.push(record(&rule.meta, path_outcome(host, rule)));
    }
    mount_checks(host, out);
    cmdline_checks(host, out);
    out.push(record(&LSM_ENABLED, lsm_outcome(host)));
    out.push(record(
        &TIME_SYNC,
        any_present(
            host,
            TIME_SYNC_PATHS,
            "no chrony, ntpd or systemd-timesyncd configuration",
        ),
    ));
    out.push(record(
        &SYSLOG,
        any_present(
            host,
            SYSLOG_PATHS,
            "no syslog daemon configuration and no persistent journal",
        ),
    ));
    out.push(record(&CORE_LIMIT, core_limit_outcome(host)));
    let os = os_id(host);
    for (meta, path) in [
        (&BANNER_ISSUE, "/etc/issue"),
        (&BANNER_ISSUE_NET, "/etc/issue.net"),
        (&BANNER_MOTD, "/etc/motd"),
    ] {
        out.push(record(meta, banner_outcome(host, path, os.as_deref())));
    }
    let defaults = sudo_defaults(host);
    out.push(record(&SUDO_USE_PTY, sudo_outcome(&defaults, "use_pty")));
    out.push(record(&SUDO_LOGFILE, sudo_outcome(&defaults, "logfile")));
}
