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
//! **Missing inputs.** A check whose subject is not installed passes ("nothing to misconfigure"):
//! no `/etc/ssh/sshd_config` → every sshd check passes with `Actual: sshd not installed`; no
//! `/etc/shadow`, `/etc/gshadow`, `/etc/sudoers` → their mode and owner checks pass; no Docker →
//! Docker checks pass; no `/etc/aziot` → IoT Edge checks pass; no `net.ipv6` sysctls → IPv6 is off
//! and its checks pass. A missing `/etc/passwd` or `/etc/group`, a missing kernel setting (other
//! than IPv6 and Yama), and any read error are `Err` with the reason in `Error`. Without Yama, ptrace
//! is unrestricted, so that check fails.
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

use super::Periodic;
use super::accounts::{self, PasswordState};
use crate::config::Config;
use crate::event::{BaselineCheck, BaselineResult, BaselineSeverity, Event, ExtraDetails, Payload};
use crate::host::HostRoot;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
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

/// Symlinks followed while resolving one host path (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

// ---------------------------------------------------------------------------------------------
// records

/// What a check is, independent of its result.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub id: &'static str,
    pub description: &'static str,
    pub severity: BaselineSeverity,
    pub remediation: &'static str,
    /// Where the id comes from (`ComplianceAsCode <rule>`), empty for our own ids.
    pub reference: &'static str,
}

/// A check's result: what was found (Pass/Fail) or why it could not be checked (Err).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Err(String),
}

fn record(meta: &Meta, outcome: Outcome) -> BaselineCheck {
    let mut extra = ExtraDetails::new();
    extra.insert("Remediation".into(), meta.remediation.into());
    if !meta.reference.is_empty() {
        extra.insert("Reference".into(), meta.reference.into());
    }
    let (result, error, actual) = match outcome {
        Outcome::Pass(actual) => (BaselineResult::Pass, String::new(), actual),
        Outcome::Fail(actual) => (BaselineResult::Fail, String::new(), actual),
        Outcome::Err(e) => (BaselineResult::Err, e, String::new()),
    };
    if !actual.is_empty() {
        extra.insert("Actual".into(), actual);
    }
    BaselineCheck {
        description: meta.description.into(),
        cce_id: meta.id.into(),
        result,
        error,
        severity: meta.severity,
        extra_details: extra,
    }
}

/// "a, b, c (12 total)" for long lists.
fn listing(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        s.push_str(&format!(" … ({} total)", items.len()));
    }
    s
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

use BaselineSeverity::{Critical, Important, Informational, Warning};

macro_rules! meta {
    ($name:ident, $id:literal, $sev:ident, $desc:literal, $fix:literal, $reference:literal) => {
        const $name: Meta = Meta {
            id: $id,
            description: $desc,
            severity: $sev,
            remediation: $fix,
            reference: $reference,
        };
    };
}

// ---------------------------------------------------------------------------------------------
// host paths: symlinks resolved inside the host root

/// The path of `host_path` under `root` with every symlink resolved the way the host would:
/// absolute targets are taken relative to the root and `..` never climbs above it. (A plain join
/// would follow `/var/run -> /run` into the container's own `/run`.)
pub fn resolve(root: &Path, host_path: &Path) -> std::io::Result<PathBuf> {
    fn push_components(todo: &mut Vec<OsString>, p: &Path) {
        let parts: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect();
        todo.extend(parts.into_iter().rev());
    }
    let mut done = PathBuf::new();
    let mut todo = Vec::new();
    push_components(&mut todo, host_path);
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&c);
        let full = root.join(&next);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(std::io::Error::other("too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&full)?;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            push_components(&mut todo, &target);
        } else {
            done = next;
        }
    }
    Ok(root.join(done))
}

/// `lstat` of a host path, symlinks along the way resolved inside the host root.
fn host_meta(host: &HostRoot, host_path: &str) -> std::io::Result<Metadata> {
    let p = resolve(host.root(), Path::new(host_path))?;
    std::fs::symlink_metadata(p)
}

/// Reads at most `limit` bytes of a resolved host file.
fn read_capped(host: &HostRoot, host_path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let p = resolve(host.root(), Path::new(host_path))?;
    let mut buf = Vec::new();
    std::fs::File::open(p)?.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn exists(host: &HostRoot, host_path: &str) -> bool {
    host_meta(host, host_path).is_ok()
}

// ---------------------------------------------------------------------------------------------
// sshd_config

/// The global settings of an sshd configuration.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SshdConfig {
    /// Lower-cased keyword → its first value.
    values: HashMap<String, String>,
    /// Lines that did not parse (a keyword without a value, an unterminated quote).
    pub malformed: usize,
    /// Files read through `Include`.
    pub included_files: usize,
}

impl SshdConfig {
    /// The value in effect for `keyword` (any case), if the configuration sets one.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values
            .get(&keyword.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// sshd's own limit on nested `Include`s.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Files read through `Include` in total, so a glob over a huge directory stays cheap. Public so
/// the fuzz targets (fuzz/) can check the bound.
pub const MAX_INCLUDED_FILES: usize = 64;

/// Parses an sshd configuration. `include` returns the contents of the files a pattern names, in
/// order (the collector reads them under the host root; tests pass a map).
pub fn parse_sshd_config(text: &str, include: &mut dyn FnMut(&str) -> Vec<String>) -> SshdConfig {
    let mut cfg = SshdConfig::default();
    parse_sshd_into(&mut cfg, text, include, 0);
    cfg
}

fn parse_sshd_into(
    cfg: &mut SshdConfig,
    text: &str,
    include: &mut dyn FnMut(&str) -> Vec<String>,
    depth: usize,
) {
    let mut in_match = false;
    for line in text.lines() {
        let (keyword, args) = match split_directive(line) {
            Directive::Blank => continue,
            Directive::Bad => {
                cfg.malformed += 1;
                continue;
            }
            Directive::Setting(keyword, args) => (keyword, args),
        };
        if keyword == "match" {
            in_match = true;
            continue;
        }
        if in_match {
            continue;
        }
        if keyword == "include" {
            if depth >= MAX_INCLUDE_DEPTH {
                cfg.malformed += 1;
                continue;
            }
            for pattern in &args {
                for content in include(pattern) {
                    if cfg.included_files >= MAX_INCLUDED_FILES {
                        break;
                    }
                    cfg.included_files += 1;
                    parse_sshd_into(cfg, &content, include, depth + 1);
                }
            }
            continue;
        }
        if let Some(first) = args.into_iter().next() {
            cfg.values.entry(keyword).or_insert(first);
        }
    }
}

/// One line of sshd_config.
enum Directive {
    /// Blank or comment.
    Blank,
    /// A keyword without a value, or an unterminated quote.
    Bad,
    /// The lower-cased keyword and its arguments (quotes removed; a `#` token starts a comment).
    Setting(String, Vec<String>),
}

fn split_directive(line: &str) -> Directive {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Directive::Blank;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            '#' if !quoted && !in_token => break,
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    args.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if quoted {
        return Directive::Bad;
    }
    if in_token {
        args.push(cur);
    }
    if keyword.is_empty() || args.is_empty() {
        return Directive::Bad;
    }
    Directive::Setting(keyword, args)
}

/// sshd's time format: `90`, `1m30s`, `2h`; `None` when malformed or absurd.
pub fn parse_sshd_time(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.trim().chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(num.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = num {
        total = total.checked_add(n)?;
    } else if s.trim().is_empty() {
        return None;
    }
    Some(total)
}

/// Shell-style match of a file name against `*` and `?` (no character classes). A leading `.`
/// must be matched explicitly, as glob(3) does.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if n.first() == Some(&'.') && p.first() != Some(&'.') {
        return false;
    }
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Reads the files an `Include` pattern names, under the host root.
fn read_includes(host: &HostRoot, pattern: &str) -> Vec<String> {
    let full = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/etc/ssh/{pattern}")
    };
    let (dir, name) = full.rsplit_once('/').unwrap_or(("/", full.as_str()));
    let dir = if dir.is_empty() { "/" } else { dir };
    if dir.contains(['*', '?']) {
        tracing::debug!(
            pattern,
            "sshd Include with a glob in a directory is not expanded"
        );
        return Vec::new();
    }
    let mut names: Vec<String> = if name.contains(['*', '?']) {
        let Ok(rd) = std::fs::read_dir(host.path(dir)) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| glob_match(name, n))
            .take(MAX_INCLUDED_FILES)
            .collect()
    } else {
        vec![name.to_string()]
    };
    names.sort();
    names
        .iter()
        .filter_map(|n| host.read_to_string(format!("{dir}/{n}")).ok())
        .collect()
}

type Sshd = Result<Option<SshdConfig>, String>;

fn load_sshd(host: &HostRoot) -> Sshd {
    match host.read_to_string("/etc/ssh/sshd_config") {
        Ok(text) => Ok(Some(parse_sshd_config(&text, &mut |p| {
            read_includes(host, p)
        }))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Evaluates one sshd keyword (its default when unset) with `ok`.
fn sshd_setting(sshd: &Sshd, keyword: &str, default: &str, ok: impl Fn(&str) -> bool) -> Outcome {
    match sshd {
        Err(e) => Outcome::Err(e.clone()),
        Ok(None) => Outcome::Pass("sshd not installed".into()),
        Ok(Some(c)) => {
            let (value, note) = match c.get(keyword) {
                Some(v) => (v, ""),
                None => (default, " (default)"),
            };
            let actual = format!("{keyword} {value}{note}");
            if ok(value) {
                Outcome::Pass(actual)
            } else {
                Outcome::Fail(actual)
            }
        }
    }
}

fn is(value: &str, expected: &str) -> bool {
    value.eq_ignore_ascii_case(expected)
}

meta!(
    SSH_ROOT_LOGIN,
    "CCE-80901-2",
    Important,
    "SSH root login is disabled (PermitRootLogin no)",
    "Set 'PermitRootLogin no' in /etc/ssh/sshd_config and reload sshd.",
    "ComplianceAsCode sshd_disable_root_login"
);
meta!(
    SSH_PASSWORD_AUTH,
    "EG-SSH-PASSWORD-AUTH",
    Important,
    "SSH password authentication is disabled (PasswordAuthentication no)",
    "Use key-based logins and set 'PasswordAuthentication no' in /etc/ssh/sshd_config.",
    ""
);
meta!(
    SSH_EMPTY_PASSWORDS,
    "CCE-80896-4",
    Critical,
    "SSH logins with empty passwords are refused (PermitEmptyPasswords no)",
    "Set 'PermitEmptyPasswords no' in /etc/ssh/sshd_config (or remove the line).",
    "ComplianceAsCode sshd_disable_empty_passwords"
);
meta!(
    SSH_MAX_AUTH_TRIES,
    "CCE-82354-2",
    Warning,
    "SSH allows at most 4 authentication attempts per connection (MaxAuthTries)",
    "Set 'MaxAuthTries 4' (or lower) in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_max_auth_tries (cce@rhel7)"
);
meta!(
    SSH_X11,
    "CCE-83360-8",
    Warning,
    "SSH X11 forwarding is disabled (X11Forwarding no)",
    "Set 'X11Forwarding no' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_disable_x11_forwarding"
);
meta!(
    SSH_PROTOCOL,
    "CCE-80894-9",
    Critical,
    "SSH allows protocol 2 only",
    "Remove any 'Protocol 1' setting from /etc/ssh/sshd_config (OpenSSH 7.4+ only speaks 2).",
    "ComplianceAsCode sshd_allow_only_protocol2"
);
meta!(
    SSH_IGNORE_RHOSTS,
    "CCE-80899-8",
    Important,
    "SSH ignores .rhosts files (IgnoreRhosts yes)",
    "Set 'IgnoreRhosts yes' in /etc/ssh/sshd_config (or remove the line).",
    "ComplianceAsCode sshd_disable_rhosts"
);
meta!(
    SSH_HOSTBASED,
    "CCE-80786-7",
    Important,
    "SSH host-based authentication is disabled (HostbasedAuthentication no)",
    "Set 'HostbasedAuthentication no' in /etc/ssh/sshd_config.",
    "ComplianceAsCode disable_host_auth"
);
meta!(
    SSH_GRACE_TIME,
    "CCE-86551-9",
    Warning,
    "SSH login grace time is between 1 and 60 seconds (LoginGraceTime)",
    "Set 'LoginGraceTime 60' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_login_grace_time"
);
meta!(
    SSH_CLIENT_ALIVE,
    "CCE-80906-1",
    Informational,
    "SSH checks idle clients at most every 600 seconds (ClientAliveInterval 1-600)",
    "Set 'ClientAliveInterval 300' and 'ClientAliveCountMax 3' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_idle_timeout"
);

fn sshd_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let sshd = load_sshd(host);
    let num_at_most = |max: u64| move |v: &str| v.parse::<u64>().is_ok_and(|n| n <= max);
    let time_within = |lo: u64, hi: u64| {
        move |v: &str| parse_sshd_time(v).is_some_and(|t| (lo..=hi).contains(&t))
    };
    out.push(record(
        &SSH_ROOT_LOGIN,
        sshd_setting(&sshd, "PermitRootLogin", "prohibit-password", |v| {
            is(v, "no")
        }),
    ));
    out.push(record(
        &SSH_PASSWORD_AUTH,
        sshd_setting(&sshd, "PasswordAuthentication", "yes", |v| is(v, "no")),
    ));
    out.push(record(
        &SSH_EMPTY_PASSWORDS,
        sshd_setting(&sshd, "PermitEmptyPasswords", "no", |v| is(v, "no")),
    ));
    out.push(record(
        &SSH_MAX_AUTH_TRIES,
        sshd_setting(&sshd, "MaxAuthTries", "6", num_at_most(4)),
    ));
    out.push(record(
        &SSH_X11,
        sshd_setting(&sshd, "X11Forwarding", "no", |v| is(v, "no")),
    ));
    out.push(record(
        &SSH_PROTOCOL,
        sshd_setting(&sshd, "Protocol", "2", |v| {
            v.split(',').all(|p| p.trim() == "2")
        }),
    ));
    out.push(record(
        &SSH_IGNORE_RHOSTS,
        sshd_setting(&sshd, "IgnoreRhosts", "yes", |v| is(v, "yes")),
    ));
    out.push(record(
        &SSH_HOSTBASED,
        sshd_setting(&sshd, "HostbasedAuthentication", "no", |v| is(v, "no")),
    ));
    out.push(record(
        &SSH_GRACE_TIME,
        sshd_setting(&sshd, "LoginGraceTime", "120", time_within(1, 60)),
    ));
    out.push(record(
        &SSH_CLIENT_ALIVE,
        sshd_setting(&sshd, "ClientAliveInterval", "0", time_within(1, 600)),
    ));
}

// ---------------------------------------------------------------------------------------------
// accounts

meta!(
    ACCT_UID0,
    "CCE-80649-7",
    Critical,
    "Only root has user id 0",
    "Remove the extra uid 0 accounts or give them their own uid (usermod -u).",
    "ComplianceAsCode accounts_no_uid_except_zero"
);
meta!(
    ACCT_EMPTY_PASSWORD,
    "CCE-85972-8",
    Critical,
    "No account has an empty password",
    "Set a password (passwd <user>) or lock the account (passwd -l <user>).",
    "ComplianceAsCode no_empty_passwords_etc_shadow (cce@rhel9)"
);
meta!(
    ACCT_DUP_UID,
    "CCE-89903-9",
    Important,
    "Every account has a unique user id",
    "Give each account sharing a uid its own uid in /etc/passwd.",
    "ComplianceAsCode account_unique_id"
);
meta!(
    ACCT_DUP_NAME,
    "EG-ACCT-DUPLICATE-USERNAME",
    Important,
    "Every account name is unique",
    "Remove or rename duplicate entries in /etc/passwd (vipw).",
    ""
);
meta!(
    ACCT_DUP_GID,
    "CCE-86201-1",
    Warning,
    "Every group has a unique group id",
    "Give each group sharing a gid its own gid in /etc/group.",
    "ComplianceAsCode group_unique_id"
);
meta!(
    ACCT_DUP_GROUP,
    "CCE-86328-2",
    Warning,
    "Every group name is unique",
    "Remove or rename duplicate entries in /etc/group (vigr).",
    "ComplianceAsCode group_unique_name"
);
meta!(
    ACCT_SYSTEM_SHELL,
    "CCE-80843-6",
    Warning,
    "System accounts (uid below UID_MIN, except root) have no login shell",
    "Run 'usermod -s /usr/sbin/nologin <account>' for each listed account.",
    "ComplianceAsCode no_shelllogin_for_systemaccounts"
);

type Loaded<T> = Result<accounts::Parsed<T>, String>;

/// The account databases, read once per snapshot.
struct Accounts {
    passwd: Loaded<accounts::User>,
    group: Loaded<accounts::Group>,
    /// `Ok(None)`: the host has no shadow file.
    shadow: Result<Option<accounts::Parsed<accounts::Shadow>>, String>,
    uid_min: u32,
}

impl Accounts {
    fn load(host: &HostRoot) -> Accounts {
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

    /// uid → name, for owner checks.
    fn name_of(&self, uid: u32) -> Option<&str> {
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

fn account_checks(acc: &Accounts, out: &mut Vec<BaselineCheck>) {
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

// ---------------------------------------------------------------------------------------------
// file modes and owners

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

meta!(
    PASSWD_MODE,
    "CCE-80812-1",
    Important,
    "/etc/passwd mode is 0644 or stricter",
    "chmod 0644 /etc/passwd",
    "ComplianceAsCode file_permissions_etc_passwd"
);
meta!(
    PASSWD_OWNER,
    "CCE-80803-0",
    Important,
    "/etc/passwd is owned by root",
    "chown root /etc/passwd",
    "ComplianceAsCode file_owner_etc_passwd"
);
meta!(
    SHADOW_MODE,
    "CCE-80813-9",
    Critical,
    "/etc/shadow mode is 0640 or stricter",
    "chmod 0640 /etc/shadow",
    "ComplianceAsCode file_permissions_etc_shadow"
);
meta!(
    SHADOW_OWNER,
    "CCE-80804-8",
    Critical,
    "/etc/shadow is owned by root",
    "chown root /etc/shadow",
    "ComplianceAsCode file_owner_etc_shadow"
);
meta!(
    GROUP_MODE,
    "CCE-80810-5",
    Important,
    "/etc/group mode is 0644 or stricter",
    "chmod 0644 /etc/group",
    "ComplianceAsCode file_permissions_etc_group"
);
meta!(
    GROUP_OWNER,
    "CCE-80801-4",
    Important,
    "/etc/group is owned by root",
    "chown root /etc/group",
    "ComplianceAsCode file_owner_etc_group"
);
meta!(
    GSHADOW_MODE,
    "CCE-80811-3",
    Critical,
    "/etc/gshadow mode is 0640 or stricter",
    "chmod 0640 /etc/gshadow",
    "ComplianceAsCode file_permissions_etc_gshadow"
);
meta!(
    GSHADOW_OWNER,
    "CCE-80802-2",
    Critical,
    "/etc/gshadow is owned by root",
    "chown root /etc/gshadow",
    "ComplianceAsCode file_owner_etc_gshadow"
);
meta!(
    SUDOERS_MODE,
    "EG-FILE-SUDOERS-MODE",
    Critical,
    "/etc/sudoers mode is 0440 or stricter",
    "chmod 0440 /etc/sudoers",
    ""
);
meta!(
    SUDOERS_OWNER,
    "EG-FILE-SUDOERS-OWNER",
    Critical,
    "/etc/sudoers is owned by root",
    "chown root /etc/sudoers",
    ""
);
meta!(
    SSHD_CONFIG_MODE,
    "CCE-82894-7",
    Warning,
    "/etc/ssh/sshd_config mode is 0600 or stricter",
    "chmod 0600 /etc/ssh/sshd_config",
    "ComplianceAsCode file_permissions_sshd_config"
);
meta!(
    SSHD_CONFIG_OWNER,
    "CCE-82898-8",
    Important,
    "/etc/ssh/sshd_config is owned by root",
    "chown root /etc/ssh/sshd_config",
    "ComplianceAsCode file_owner_sshd_config"
);

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

fn file_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
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
                let e = format!("{}: {e}", rule.path);
                (Outcome::Err(e.clone()), Outcome::Err(e))
            }
        };
        out.push(record(&rule.mode, mode));
        out.push(record(&rule.owner, owner));
    }
}

// ---------------------------------------------------------------------------------------------
// kernel settings

#[derive(Debug, Clone, Copy)]
enum Expect {
    Eq(i64),
    AtLeast(i64),
    OneOf(&'static [i64]),
}

/// What a sysctl check does when the setting does not exist.
#[derive(Debug, Clone, Copy)]
enum Absent {
    Err,
    Pass(&'static str),
    Fail(&'static str),
}

struct SysctlRule {
    name: &'static str,
    expect: Expect,
    absent: Absent,
    meta: Meta,
}

macro_rules! sysctl {
    ($name:literal, $expect:expr, $absent:expr, $id:literal, $sev:ident, $desc:literal, $reference:literal) => {
        SysctlRule {
            name: $name,
            expect: $expect,
            absent: $absent,
            meta: Meta {
                id: $id,
                description: $desc,
                severity: $sev,
                remediation: concat!(
                    "Set the value in /etc/sysctl.d/99-hardening.conf (",
                    $name,
                    ") and run 'sysctl --system'."
                ),
                reference: $reference,
            },
        }
    };
}

const IPV6_OFF: Absent = Absent::Pass("IPv6 disabled");

const SYSCTL_RULES: &[SysctlRule] = &[
    sysctl!(
        "kernel.randomize_va_space",
        Expect::Eq(2),
        Absent::Err,
        "CCE-80916-0",
        Important,
        "Address space layout randomization is fully enabled (kernel.randomize_va_space = 2)",
        "ComplianceAsCode sysctl_kernel_randomize_va_space"
    ),
    sysctl!(
        "net.ipv4.conf.all.accept_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80917-8",
        Warning,
        "IPv4 ICMP redirects are ignored (net.ipv4.conf.all.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_accept_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.all.send_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80918-6",
        Warning,
        "IPv4 ICMP redirects are not sent (net.ipv4.conf.all.send_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_send_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.all.accept_source_route",
        Expect::Eq(0),
        Absent::Err,
        "CCE-81011-9",
        Warning,
        "IPv4 source-routed packets are refused (net.ipv4.conf.all.accept_source_route = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_accept_source_route"
    ),
    sysctl!(
        "net.ipv4.tcp_syncookies",
        Expect::Eq(1),
        Absent::Err,
        "CCE-80923-6",
        Warning,
        "TCP SYN cookies are enabled (net.ipv4.tcp_syncookies = 1)",
        "ComplianceAsCode sysctl_net_ipv4_tcp_syncookies"
    ),
    sysctl!(
        "kernel.kptr_restrict",
        Expect::AtLeast(1),
        Absent::Err,
        "CCE-80915-2",
        Warning,
        "Kernel pointers are hidden from unprivileged users (kernel.kptr_restrict >= 1)",
        "ComplianceAsCode sysctl_kernel_kptr_restrict"
    ),
    sysctl!(
        "kernel.dmesg_restrict",
        Expect::Eq(1),
        Absent::Err,
        "CCE-80913-7",
        Warning,
        "The kernel log is restricted to privileged users (kernel.dmesg_restrict = 1)",
        "ComplianceAsCode sysctl_kernel_dmesg_restrict"
    ),
    sysctl!(
        "kernel.yama.ptrace_scope",
        Expect::AtLeast(1),
        Absent::Fail("Yama LSM not enabled: ptrace unrestricted"),
        "CCE-80953-3",
        Warning,
        "ptrace is restricted to descendant processes (kernel.yama.ptrace_scope >= 1)",
        "ComplianceAsCode sysctl_kernel_yama_ptrace_scope"
    ),
    sysctl!(
        "net.ipv4.conf.all.rp_filter",
        Expect::OneOf(&[1, 2]),
        Absent::Err,
        "CCE-81021-8",
        Warning,
        "Reverse path filtering is enabled (net.ipv4.conf.all.rp_filter = 1 or 2)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_rp_filter"
    ),
    sysctl!(
        "net.ipv4.conf.all.log_martians",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81018-4",
        Informational,
        "Packets with impossible addresses are logged (net.ipv4.conf.all.log_martians = 1)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_log_martians"
    ),
    sysctl!(
        "fs.protected_hardlinks",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81027-5",
        Important,
        "Hard links to files of other users are restricted (fs.protected_hardlinks = 1)",
        "ComplianceAsCode sysctl_fs_protected_hardlinks"
    ),
    sysctl!(
        "fs.protected_symlinks",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81030-9",
        Important,
        "Symlinks in sticky world-writable directories are restricted (fs.protected_symlinks = 1)",
        "ComplianceAsCode sysctl_fs_protected_symlinks"
    ),
    sysctl!(
        "fs.suid_dumpable",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80912-9",
        Warning,
        "Setuid programs do not dump core (fs.suid_dumpable = 0)",
        "ComplianceAsCode sysctl_fs_suid_dumpable"
    ),
    sysctl!(
        "net.ipv6.conf.all.accept_redirects",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81009-3",
        Warning,
        "IPv6 ICMP redirects are ignored (net.ipv6.conf.all.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_all_accept_redirects"
    ),
    sysctl!(
        "net.ipv6.conf.all.accept_source_route",
        Expect::Eq(0),
        IPV6_OFF,
        "EG-SYSCTL-IPV6-ACCEPT-SOURCE-ROUTE",
        Warning,
        "IPv6 source-routed packets are refused (net.ipv6.conf.all.accept_source_route = 0)",
        ""
    ),
];

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
fn read_sysctl(host: &HostRoot, name: &str) -> Result<Option<String>, String> {
    let path = sysctl_path(name).ok_or_else(|| format!("invalid sysctl name {name:?}"))?;
    match host.read_to_string(&path) {
        Ok(v) => Ok(Some(v.split_whitespace().collect::<Vec<_>>().join(" "))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(error_chain(&e)),
    }
}

fn sysctl_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
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
                    } else {
                        Outcome::Fail(actual)
                    }
                }
            },
        };
        out.push(record(&rule.meta, outcome));
    }
}

// ---------------------------------------------------------------------------------------------
// bounded filesystem walks

/// What a walk saw, and whether it stopped early.
#[derive(Debug, Default)]
struct Walk {
    found: Vec<String>,
    dirs: usize,
    entries: usize,
    truncated: bool,
    unreadable: usize,
}

/// Walks host directories without following symlinks, calling `visit` with each entry's host
/// path, `lstat` and whether it is a directory (files only when `files`). Stops at the limits.
#[allow(clippy::too_many_arguments)]
fn walk(
    host: &HostRoot,
    roots: &[&str],
    skip: &[&str],
    files: bool,
    max_depth: usize,
    max_dirs: usize,
    max_entries: usize,
    visit: &mut dyn FnMut(&Path, &Metadata) -> bool,
) -> Walk {
    let mut w = Walk::default();
    let mut stack: Vec<(PathBuf, usize)> = Vec::new();
    for root in roots.iter().rev() {
        // A root that is itself a symlink (`/bin -> usr/bin`) is covered by its target.
        if let Ok(m) = std::fs::symlink_metadata(host.path(root))
            && m.is_dir()
        {
            if visit(Path::new(root), &m) {
                w.found.push((*root).to_string());
            }
            stack.push((PathBuf::from(root), 0));
        }
    }
    'outer: while let Some((dir, depth)) = stack.pop() {
        w.dirs += 1;
        if w.dirs > max_dirs {
            w.truncated = true;
            break;
        }
        let Ok(rd) = std::fs::read_dir(host.path(&dir)) else {
            w.unreadable += 1;
            continue;
        };
        for entry in rd {
            w.entries += 1;
            if w.entries > max_entries {
                w.truncated = true;
                break 'outer;
            }
            let Ok(entry) = entry else {
                w.unreadable += 1;
                continue;
            };
            let Ok(ft) = entry.file_type() else {
                continue;
            };
            if ft.is_symlink() || !(ft.is_dir() || (files && ft.is_file())) {
                continue;
            }
            let child = dir.join(entry.file_name());
            // Skipped trees, and roots nested in other roots (`/var/tmp` in `/var`), walked once.
            if skip.iter().chain(roots).any(|s| child == Path::new(s)) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                w.unreadable += 1;
                continue;
            };
            if visit(&child, &meta) {
                w.found.push(child.display().to_string());
            }
            if ft.is_dir() && depth + 1 < max_depth {
                stack.push((child, depth + 1));
            }
        }
    }
    w.found.sort();
    w
}

meta!(
    WORLD_WRITABLE_STICKY,
    "CCE-80783-4",
    Warning,
    "Every world-writable directory has the sticky bit",
    "chmod +t each listed directory, or remove its world-write permission (chmod o-w).",
    "ComplianceAsCode dir_perms_world_writable_sticky_bits"
);
meta!(
    UNEXPECTED_SUID,
    "CCE-80817-0",
    Important,
    "No unexpected setuid programs in the system binary directories",
    "Review each listed program; remove the setuid bit (chmod u-s) unless it is needed.",
    "ComplianceAsCode file_permissions_unauthorized_suid"
);
meta!(
    UNEXPECTED_SGID,
    "CCE-80816-2",
    Warning,
    "No unexpected setgid programs in the system binary directories",
    "Review each listed program; remove the setgid bit (chmod g-s) unless it is needed.",
    "ComplianceAsCode file_permissions_unauthorized_sgid"
);

/// Directories where world-writable directories matter; `/proc`, `/sys`, `/host` and container
/// storage are never entered (container layers are not the host's configuration).
const WRITABLE_ROOTS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/etc", "/usr", "/var"];
const WRITABLE_SKIP: &[&str] = &[
    "/proc",
    "/sys",
    "/host",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
];

const SUID_ROOTS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// Setuid programs common distributions ship; anything else is listed.
const SUID_ALLOWED: &[&str] = &[
    "su",
    "sudo",
    "sudoedit",
    "passwd",
    "mount",
    "umount",
    "ping",
    "ping6",
    "chsh",
    "chfn",
    "newgrp",
    "gpasswd",
    "pkexec",
    "fusermount",
    "fusermount3",
    "newuidmap",
    "newgidmap",
    "ntfs-3g",
    "mount.nfs",
    "mount.cifs",
    "mount.ecryptfs_private",
    "unix_chkpwd",
    "pam_timestamp_check",
    "userhelper",
    "at",
    "crontab",
    "staprun",
    "Xorg.wrap",
    "traceroute6.iputils",
    "ssh-keysign",
];

/// Setgid programs common distributions ship.
const SGID_ALLOWED: &[&str] = &[
    "chage",
    "expiry",
    "crontab",
    "at",
    "ssh-agent",
    "wall",
    "write",
    "bsd-write",
    "dotlockfile",
    "dotlock.mailutils",
    "unix_chkpwd",
    "mlocate",
    "plocate",
    "locate",
    "screen",
    "netreport",
    "usernetctl",
    "lockdev",
    "mail-lock",
    "mail-unlock",
    "mail-touchlock",
    "Xorg.wrap",
];

fn walk_note(w: &Walk) -> String {
    let mut note = format!(
        "{} directories, {} entries examined",
        w.dirs.min(WALK_MAX_DIRS),
        w.entries
    );
    if w.truncated {
        note.push_str("; walk limit reached, the rest was not examined");
    }
    note
}

fn walk_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let w = walk(
        host,
        WRITABLE_ROOTS,
        WRITABLE_SKIP,
        false,
        WALK_MAX_DEPTH,
        WALK_MAX_DIRS,
        WALK_MAX_ENTRIES,
        &mut |_, m| m.is_dir() && m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0,
    );
    out.push(record(
        &WORLD_WRITABLE_STICKY,
        if w.found.is_empty() {
            Outcome::Pass(walk_note(&w))
        } else {
            Outcome::Fail(format!("{} ({})", listing(&w.found), walk_note(&w)))
        },
    ));

    let mut suid = Vec::new();
    let mut sgid = Vec::new();
    let w = walk(
        host,
        SUID_ROOTS,
        &[],
        true,
        SUID_MAX_DEPTH,
        usize::MAX,
        SUID_MAX_ENTRIES,
        &mut |path, m| {
            if !m.is_file() {
                return false;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if m.mode() & 0o4000 != 0 && !SUID_ALLOWED.contains(&name.as_str()) {
                suid.push(path.display().to_string());
            }
            if m.mode() & 0o2000 != 0 && !SGID_ALLOWED.contains(&name.as_str()) {
                sgid.push(path.display().to_string());
            }
            false
        },
    );
    for (meta, found) in [(&UNEXPECTED_SUID, suid), (&UNEXPECTED_SGID, sgid)] {
        let mut note = format!("{} entries examined", w.entries);
        if w.truncated {
            note.push_str("; walk limit reached");
        }
        out.push(record(
            meta,
            if found.is_empty() {
                Outcome::Pass(note)
            } else {
                Outcome::Fail(format!("{} ({note})", listing(&found)))
            },
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Docker

meta!(
    DOCKER_DAEMON_JSON_FILE,
    "EG-DOCKER-DAEMON-JSON-PERMISSIONS",
    Important,
    "/etc/docker/daemon.json is owned by root and not writable by group or others",
    "chown root:root /etc/docker/daemon.json && chmod 0644 /etc/docker/daemon.json",
    ""
);
meta!(
    DOCKER_ICC,
    "EG-DOCKER-ICC",
    Warning,
    "Docker inter-container communication on the default bridge is disabled (icc false)",
    "Set \"icc\": false in /etc/docker/daemon.json and restart Docker (IoT Edge modules use their own network).",
    ""
);
meta!(
    DOCKER_USERNS,
    "EG-DOCKER-USERNS-REMAP",
    Informational,
    "Docker remaps container root to an unprivileged host user (userns-remap)",
    "Set \"userns-remap\": \"default\" in /etc/docker/daemon.json if every module supports it.",
    ""
);
meta!(
    DOCKER_LIVE_RESTORE,
    "EG-DOCKER-LIVE-RESTORE",
    Informational,
    "Containers keep running while the Docker daemon restarts (live-restore true)",
    "Set \"live-restore\": true in /etc/docker/daemon.json.",
    ""
);
meta!(
    DOCKER_INSECURE_REGISTRIES,
    "EG-DOCKER-INSECURE-REGISTRIES",
    Important,
    "Docker uses no insecure (plain HTTP or unverified TLS) registries",
    "Remove \"insecure-registries\" from /etc/docker/daemon.json; give registries valid TLS certificates.",
    ""
);
meta!(
    DOCKER_LOG_LIMITS,
    "EG-DOCKER-LOG-LIMITS",
    Warning,
    "Docker container logs are size-limited (log driver local, or json-file with max-size)",
    "Set \"log-driver\": \"local\", or \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"} in /etc/docker/daemon.json.",
    ""
);
meta!(
    DOCKER_TCP_TLS,
    "EG-DOCKER-TCP-TLS",
    Critical,
    "The Docker API is not exposed over TCP without TLS client verification",
    "Remove tcp:// entries from \"hosts\" in /etc/docker/daemon.json, or set \"tlsverify\": true with certificates.",
    ""
);
meta!(
    DOCKER_SOCKET,
    "EG-DOCKER-SOCKET-PERMISSIONS",
    Critical,
    "The Docker socket is owned by root and not world-writable",
    "Restore the socket's defaults (root:docker, 0660): check docker.socket's SocketMode and SocketGroup.",
    ""
);

/// Log drivers that do not grow a file on the device without bound.
const BOUNDED_LOG_DRIVERS: &[&str] = &[
    "local",
    "journald",
    "syslog",
    "none",
    "fluentd",
    "gelf",
    "awslogs",
    "splunk",
    "gcplogs",
    "logentries",
    "etwlogs",
];

fn docker_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let installed = [
        "/etc/docker",
        "/usr/bin/dockerd",
        "/usr/sbin/dockerd",
        "/run/docker.sock",
        "/var/run/docker.sock",
    ]
    .iter()
    .any(|p| exists(host, p));
    let not_installed = || Outcome::Pass("docker not installed".into());

    // daemon.json: Ok(None) when absent (Docker's defaults apply).
    let daemon: Result<Option<serde_json::Map<String, Value>>, String> =
        match host.read("/etc/docker/daemon.json") {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(Some(m)),
                Ok(_) => Err("/etc/docker/daemon.json is not a JSON object".into()),
                Err(e) => Err(format!("/etc/docker/daemon.json is not valid JSON: {e}")),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(error_chain(&e)),
        };
    let setting = |f: &dyn Fn(&serde_json::Map<String, Value>) -> Outcome| -> Outcome {
        if !installed {
            return not_installed();
        }
        match &daemon {
            Err(e) => Outcome::Err(e.clone()),
            Ok(Some(m)) => f(m),
            Ok(None) => f(&serde_json::Map::new()),
        }
    };
    let show = |m: &serde_json::Map<String, Value>, key: &str, default: &str| match m.get(key) {
        Some(v) => format!("{key} {v}"),
        None => format!("{key} {default} (default)"),
    };

    out.push(record(
        &DOCKER_DAEMON_JSON_FILE,
        if !installed {
            not_installed()
        } else {
            match host_meta(host, "/etc/docker/daemon.json") {
                Ok(m) => {
                    let actual = format!("mode {:04o}, owner uid {}", m.mode() & 0o7777, m.uid());
                    if m.uid() == 0 && m.mode() & 0o022 == 0 {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
                Err(e) if is_not_found(&e) => Outcome::Pass("no /etc/docker/daemon.json".into()),
                Err(e) => Outcome::Err(format!("/etc/docker/daemon.json: {e}")),
            }
        },
    ));
    out.push(record(
        &DOCKER_ICC,
        setting(&|m| {
            let actual = show(m, "icc", "true");
            if m.get("icc") == Some(&Value::Bool(false)) {
                Outcome::Pass(actual)
            } else {
                Outcome::Fail(actual)
            }
        }),
    ));
    out.push(record(
        &DOCKER_USERNS,
        setting(&|m| match m.get("userns-remap").and_then(Value::as_str) {
            Some(u) if !u.is_empty() => Outcome::Pass(format!("userns-remap {u}")),
            _ => Outcome::Fail("userns-remap not set".into()),
        }),
    ));
    out.push(record(
        &DOCKER_LIVE_RESTORE,
        setting(&|m| {
            let actual = show(m, "live-restore", "false");
            if m.get("live-restore") == Some(&Value::Bool(true)) {
                Outcome::Pass(actual)
            } else {
                Outcome::Fail(actual)
            }
        }),
    ));
    out.push(record(
        &DOCKER_INSECURE_REGISTRIES,
        setting(&|m| match m.get("insecure-registries") {
            None => Outcome::Pass("no insecure-registries".into()),
            Some(Value::Array(a)) if a.is_empty() => Outcome::Pass("insecure-registries []".into()),
            Some(v) => Outcome::Fail(format!(
                "insecure-registries {}",
                truncate(&v.to_string(), 200)
            )),
        }),
    ));
    out.push(record(
        &DOCKER_LOG_LIMITS,
        setting(&|m| {
            let driver = m
                .get("log-driver")
                .and_then(Value::as_str)
                .unwrap_or("json-file");
            let max_size = m
                .get("log-opts")
                .and_then(|o| o.get("max-size"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match (driver, max_size) {
                (d, _) if BOUNDED_LOG_DRIVERS.contains(&d) => {
                    Outcome::Pass(format!("log-driver {d}"))
                }
                (d, Some(size)) => Outcome::Pass(format!("log-driver {d}, max-size {size}")),
                ("json-file", None) => {
                    Outcome::Fail("log-driver json-file without log-opts max-size".into())
                }
                (d, None) => Outcome::Pass(format!("log-driver {d} (plugin; size not checked)")),
            }
        }),
    ));
    out.push(record(
        &DOCKER_TCP_TLS,
        setting(&|m| {
            let tcp: Vec<String> = m
                .get("hosts")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .filter_map(Value::as_str)
                        .filter(|h| h.starts_with("tcp://"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let verify = m.get("tlsverify") == Some(&Value::Bool(true));
            match (tcp.is_empty(), verify) {
                (true, _) => Outcome::Pass("no tcp:// host in daemon.json".into()),
                (false, true) => Outcome::Pass(format!("{} with tlsverify", listing(&tcp))),
                (false, false) => Outcome::Fail(format!("{} without tlsverify", listing(&tcp))),
            }
        }),
    ));
    out.push(record(
        &DOCKER_SOCKET,
        if !installed {
            not_installed()
        } else {
            let found = ["/run/docker.sock", "/var/run/docker.sock"]
                .iter()
                .map(|p| (p, host_meta(host, p)))
                .find(|(_, m)| !matches!(m, Err(e) if is_not_found(e)));
            match found {
                None => Outcome::Pass("no docker socket".into()),
                Some((p, Err(e))) => Outcome::Err(format!("{p}: {e}")),
                Some((p, Ok(m))) => {
                    let actual =
                        format!("{p} mode {:04o}, owner uid {}", m.mode() & 0o7777, m.uid());
                    if m.uid() == 0 && m.mode() & 0o002 == 0 {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
            }
        },
    ));
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    let kept = crate::text::prefix_within(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

// ---------------------------------------------------------------------------------------------
// IoT Edge

meta!(
    AZIOT_CONFIG,
    "EG-AZIOT-CONFIG-PERMISSIONS",
    Critical,
    "/etc/aziot/config.toml (provisioning secrets) is not readable by others and owned by root or an aziot user",
    "chown root:root /etc/aziot/config.toml && chmod 0600 /etc/aziot/config.toml",
    ""
);
meta!(
    AZIOT_SERVICE_CONFIG,
    "EG-AZIOT-SERVICE-CONFIG-PERMISSIONS",
    Important,
    "IoT Edge service configuration under /etc/aziot/*/ is not world-readable and owned by root or aziot users",
    "Restore ownership (e.g. chown -R aziotks:aziotks /etc/aziot/keyd) and remove world access (chmod -R o-rwx /etc/aziot/*/).",
    ""
);

/// Owners the IoT Edge packages use for their configuration.
fn aziot_owner_ok(acc: &Accounts, uid: u32) -> bool {
    uid == 0
        || acc
            .name_of(uid)
            .is_some_and(|n| n.starts_with("aziot") || n.starts_with("iotedge"))
}

fn aziot_checks(host: &HostRoot, acc: &Accounts, out: &mut Vec<BaselineCheck>) {
    let installed = match host_meta(host, "/etc/aziot") {
        Ok(m) => m.is_dir(),
        Err(_) => false,
    };
    if !installed {
        for meta in [&AZIOT_CONFIG, &AZIOT_SERVICE_CONFIG] {
            out.push(record(meta, Outcome::Pass("IoT Edge not installed".into())));
        }
        return;
    }
    let describe =
        |path: &str, m: &Metadata| format!("{path} mode {:04o} uid {}", m.mode() & 0o7777, m.uid());
    out.push(record(
        &AZIOT_CONFIG,
        match host_meta(host, "/etc/aziot/config.toml") {
            Ok(m) => {
                let actual = describe("/etc/aziot/config.toml", &m);
                if m.mode() & 0o027 == 0 && aziot_owner_ok(acc, m.uid()) {
                    Outcome::Pass(actual)
                } else {
                    Outcome::Fail(actual)
                }
            }
            Err(e) if is_not_found(&e) => Outcome::Pass("no /etc/aziot/config.toml".into()),
            Err(e) => Outcome::Err(format!("/etc/aziot/config.toml: {e}")),
        },
    ));

    // Every service directory (/etc/aziot/keyd, identityd, …) and what is inside, two levels.
    let mut roots: Vec<String> = match std::fs::read_dir(host.path("/etc/aziot")) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| format!("/etc/aziot/{}", e.file_name().to_string_lossy()))
            .take(64)
            .collect(),
        Err(e) => {
            out.push(record(
                &AZIOT_SERVICE_CONFIG,
                Outcome::Err(format!("/etc/aziot: {e}")),
            ));
            return;
        }
    };
    roots.sort();
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let w = walk(host, &roots, &[], true, 3, 1000, 5000, &mut |_, m| {
        m.mode() & 0o006 != 0 || !aziot_owner_ok(acc, m.uid())
    });
    out.push(record(
        &AZIOT_SERVICE_CONFIG,
        if w.found.is_empty() {
            Outcome::Pass(format!(
                "{} service directories, {} entries examined",
                roots.len(),
                w.entries
            ))
        } else {
            Outcome::Fail(listing(&w.found))
        },
    ));
}

// ---------------------------------------------------------------------------------------------
// custom checks

/// One check of a custom checks file (see the module doc for the format).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCheck {
    pub id: String,
    pub description: String,
    pub severity: BaselineSeverity,
    #[serde(default)]
    pub remediation: Option<String>,
    #[serde(default)]
    pub file_exists: Option<String>,
    #[serde(default)]
    pub file_absent: Option<String>,
    #[serde(default)]
    pub file_mode_max: Option<FileModeMax>,
    #[serde(default)]
    pub file_contains: Option<FileContains>,
    #[serde(default)]
    pub sysctl_equals: Option<SysctlEquals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModeMax {
    pub path: String,
    /// Octal, as text (`"0640"`): JSON has no octal numbers.
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileContains {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlEquals {
    pub name: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CustomChecksError {
    #[error("custom checks file is malformed")]
    Malformed(#[source] serde_json::Error),
    #[error("custom checks file has {count} checks, more than {limit}")]
    TooMany { count: usize, limit: usize },
}

/// Parses a custom checks file. Each check's kind is validated when it runs, so one bad entry
/// does not hide the others.
pub fn parse_custom_checks(bytes: &[u8]) -> Result<Vec<CustomCheck>, CustomChecksError> {
    let checks: Vec<CustomCheck> =
        serde_json::from_slice(bytes).map_err(CustomChecksError::Malformed)?;
    if checks.len() > MAX_CUSTOM_CHECKS {
        return Err(CustomChecksError::TooMany {
            count: checks.len(),
            limit: MAX_CUSTOM_CHECKS,
        });
    }
    Ok(checks)
}

/// Largest file `file_contains` reads.
const MAX_CONTAINS_BYTES: u64 = 4 * 1024 * 1024;

/// Runs one custom check against the host.
pub fn run_custom_check(host: &HostRoot, check: &CustomCheck) -> BaselineCheck {
    let kinds = [
        check.file_exists.is_some(),
        check.file_absent.is_some(),
        check.file_mode_max.is_some(),
        check.file_contains.is_some(),
        check.sysctl_equals.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    let outcome = if kinds != 1 {
        Outcome::Err(
            "needs exactly one of file_exists, file_absent, file_mode_max, file_contains, sysctl_equals"
                .into(),
        )
    } else if let Some(path) = &check.file_exists {
        match host_meta(host, path) {
            Ok(_) => Outcome::Pass(format!("{path} exists")),
            Err(e) if is_not_found(&e) => Outcome::Fail(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {e}")),
        }
    } else if let Some(path) = &check.file_absent {
        match host_meta(host, path) {
            Ok(_) => Outcome::Fail(format!("{path} exists")),
            Err(e) if is_not_found(&e) => Outcome::Pass(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {e}")),
        }
    } else if let Some(FileModeMax { path, mode }) = &check.file_mode_max {
        match u32::from_str_radix(mode.trim(), 8) {
            Ok(max) if max <= 0o7777 => match host_meta(host, path) {
                Ok(m) => {
                    let actual = m.mode() & 0o7777;
                    let text = format!("{path} mode {actual:04o}");
                    if actual & !max == 0 {
                        Outcome::Pass(text)
                    } else {
                        Outcome::Fail(text)
                    }
                }
                Err(e) if is_not_found(&e) => Outcome::Pass(format!("{path} not found")),
                Err(e) => Outcome::Err(format!("{path}: {e}")),
            },
            _ => Outcome::Err(format!("invalid octal mode {mode:?}")),
        }
    } else if let Some(FileContains { path, text }) = &check.file_contains {
        match read_capped(host, path, MAX_CONTAINS_BYTES) {
            Ok(bytes) => {
                let content = String::from_utf8_lossy(&bytes);
                if content.contains(text.as_str()) {
                    Outcome::Pass(format!("{path} contains the text"))
                } else {
                    Outcome::Fail(format!("{path} does not contain the text"))
                }
            }
            Err(e) if is_not_found(&e) => Outcome::Fail(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {e}")),
        }
    } else if let Some(SysctlEquals { name, value }) = &check.sysctl_equals {
        let want = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match read_sysctl(host, name) {
            Ok(Some(v)) if v == want => Outcome::Pass(format!("{name} = {v}")),
            Ok(Some(v)) => Outcome::Fail(format!("{name} = {v}")),
            Ok(None) => Outcome::Err(format!("{name} not available on this kernel")),
            Err(e) => Outcome::Err(e),
        }
    } else {
        Outcome::Err("no check kind".into())
    };
    let mut r = record(
        &Meta {
            id: "",
            description: "",
            severity: check.severity,
            remediation: "",
            reference: "",
        },
        outcome,
    );
    r.cce_id = truncate(&check.id, 64);
    r.description = truncate(&check.description, 512);
    match &check.remediation {
        Some(fix) => r
            .extra_details
            .insert("Remediation".into(), truncate(fix, 512)),
        None => r.extra_details.remove("Remediation"),
    };
    r.extra_details.insert("Custom".into(), "true".into());
    r
}

meta!(
    CUSTOM_FILE,
    "EG-CUSTOM-CHECKS-FILE",
    Warning,
    "Custom baseline checks file (baselineCustomChecksFilePath) can be used",
    "Check baselineCustomChecksFilePath, and set baselineCustomChecksFileHash to the file's SHA-256 (sha256sum).",
    ""
);

/// Runs the custom checks the configuration names, or explains in one `Err` record why not.
pub fn run_custom(
    host: &HostRoot,
    enabled: bool,
    path: Option<&str>,
    hash: Option<&str>,
) -> Vec<BaselineCheck> {
    if !enabled {
        return Vec::new();
    }
    let fail = |e: String| vec![record(&CUSTOM_FILE, Outcome::Err(e))];
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        return fail("custom checks file path not set".into());
    };
    let Some(expected) = hash.map(str::trim).filter(|h| !h.is_empty()) else {
        return fail("custom checks file hash not set".into());
    };
    let bytes = match read_capped(host, path, crate::host::MAX_FILE_BYTES + 1) {
        Ok(b) if b.len() as u64 > crate::host::MAX_FILE_BYTES => {
            return fail(format!(
                "custom checks file larger than {} bytes",
                crate::host::MAX_FILE_BYTES
            ));
        }
        Ok(b) => b,
        Err(e) => return fail(format!("custom checks file unreadable: {path}: {e}")),
    };
    if !sha256_hex(&bytes).eq_ignore_ascii_case(expected) {
        tracing::warn!(
            collector = COLLECTOR,
            path,
            "custom baseline checks file hash mismatch: custom checks not run"
        );
        return fail("custom checks file hash mismatch".into());
    }
    match parse_custom_checks(&bytes) {
        Ok(checks) => checks.iter().map(|c| run_custom_check(host, c)).collect(),
        Err(e) => fail(error_chain(&e)),
    }
}

/// SHA-256 of `data` as lowercase hex (the form `baselineCustomChecksFileHash` is compared in).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// the collector

/// Every built-in check, in a stable order.
pub fn run_builtin(host: &HostRoot) -> Vec<BaselineCheck> {
    let mut out = Vec::with_capacity(64);
    let accounts = Accounts::load(host);
    sshd_checks(host, &mut out);
    account_checks(&accounts, &mut out);
    file_checks(host, &mut out);
    sysctl_checks(host, &mut out);
    walk_checks(host, &mut out);
    docker_checks(host, &mut out);
    aziot_checks(host, &accounts, &mut out);
    out
}

/// The periodic `OSBaseline` collector. Blocking (it walks directories): called by
/// `run_periodic` on a blocking thread like every [`Periodic`]. Reads the custom-check settings
/// from the configuration at each snapshot.
pub struct BaselineCollector {
    config: watch::Receiver<Arc<Config>>,
}

impl BaselineCollector {
    pub fn new(config: watch::Receiver<Arc<Config>>) -> BaselineCollector {
        BaselineCollector { config }
    }
}

impl Periodic for BaselineCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let config = self.config.borrow().clone();
        let mut checks = run_builtin(host);
        checks.extend(run_custom(
            host,
            config.baseline_custom_checks_enabled,
            config.baseline_custom_checks_file_path.as_deref(),
            config.baseline_custom_checks_file_hash.as_deref(),
        ));
        vec![Event::new(Payload::OSBaseline(checks))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake host root in a temporary directory. Needs root (it chowns files).
    struct Root {
        dir: tempfile::TempDir,
    }

    impl Root {
        fn new() -> Root {
            Root {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn host(&self) -> HostRoot {
            HostRoot::new(self.dir.path())
        }

        fn at(&self, path: &str) -> PathBuf {
            self.dir.path().join(path.trim_start_matches('/'))
        }

        fn write(&self, path: &str, content: &str, mode: u32) -> &Root {
            let p = self.at(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            self
        }

        fn mkdir(&self, path: &str, mode: u32) -> &Root {
            let p = self.at(path);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            self
        }

        fn chown(&self, path: &str, uid: u32) -> &Root {
            std::os::unix::fs::chown(self.at(path), Some(uid), None).unwrap();
            self
        }

        fn symlink(&self, target: &str, path: &str) -> &Root {
            let p = self.at(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
            self
        }

        fn sysctls(&self, values: &[(&str, &str)]) -> &Root {
            for (name, value) in values {
                self.write(
                    &format!("/proc/sys/{}", name.replace('.', "/")),
                    &format!("{value}\n"),
                    0o644,
                );
            }
            self
        }
    }

    fn by_id(records: &[BaselineCheck]) -> BTreeMap<String, &BaselineCheck> {
        records.iter().map(|r| (r.cce_id.clone(), r)).collect()
    }

    fn actual(r: &BaselineCheck) -> &str {
        r.extra_details
            .get("Actual")
            .map(String::as_str)
            .unwrap_or("")
    }

    const GOOD_SYSCTLS: &[(&str, &str)] = &[
        ("kernel.randomize_va_space", "2"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.all.accept_source_route", "0"),
        ("net.ipv4.tcp_syncookies", "1"),
        ("kernel.kptr_restrict", "2"),
        ("kernel.dmesg_restrict", "1"),
        ("kernel.yama.ptrace_scope", "1"),
        ("net.ipv4.conf.all.rp_filter", "2"),
        ("net.ipv4.conf.all.log_martians", "1"),
        ("fs.protected_hardlinks", "1"),
        ("fs.protected_symlinks", "1"),
        ("fs.suid_dumpable", "0"),
        ("net.ipv6.conf.all.accept_redirects", "0"),
        ("net.ipv6.conf.all.accept_source_route", "0"),
    ];

    const BAD_SYSCTLS: &[(&str, &str)] = &[
        ("kernel.randomize_va_space", "1"),
        ("net.ipv4.conf.all.accept_redirects", "1"),
        ("net.ipv4.conf.all.send_redirects", "1"),
        ("net.ipv4.conf.all.accept_source_route", "1"),
        ("net.ipv4.tcp_syncookies", "0"),
        ("kernel.kptr_restrict", "0"),
        ("kernel.dmesg_restrict", "0"),
        ("kernel.yama.ptrace_scope", "0"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.all.log_martians", "0"),
        ("fs.protected_hardlinks", "0"),
        ("fs.protected_symlinks", "0"),
        ("fs.suid_dumpable", "2"),
        ("net.ipv6.conf.all.accept_redirects", "1"),
        ("net.ipv6.conf.all.accept_source_route", "1"),
    ];

    /// A host where every built-in check passes.
    fn good_host() -> Root {
        let r = Root::new();
        r.write(
            "/etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\n\
             MaxAuthTries 3\nLoginGraceTime 1m\nClientAliveInterval 300\nMatch User backup\n  PasswordAuthentication yes\n",
            0o600,
        )
        .write(
            "/etc/ssh/sshd_config.d/10-edge.conf",
            "X11Forwarding no\nIgnoreRhosts yes\n",
            0o600,
        )
        .write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
             sync:x:4:65534:sync:/bin:/bin/sync\naziotks:x:990:990::/nonexistent:/usr/sbin/nologin\n\
             user:x:1000:1000::/home/user:/bin/bash\n",
            0o644,
        )
        .write("/etc/group", "root:x:0:\ndaemon:x:1:\nuser:x:1000:\n", 0o644)
        .write(
            "/etc/shadow",
            "root:!:19000::::::\ndaemon:*:19000::::::\nuser:$6$salt$hash:19000::::::\n",
            0o640,
        )
        .write("/etc/gshadow", "root:*::\n", 0o640)
        .write("/etc/sudoers", "root ALL=(ALL) ALL\n", 0o440)
        .write("/etc/login.defs", "UID_MIN 1000\n", 0o644)
        .sysctls(GOOD_SYSCTLS)
        .mkdir("/tmp", 0o1777)
        .mkdir("/var/tmp", 0o1777)
        .write("/usr/bin/su", "", 0o4755)
        .write("/usr/bin/chage", "", 0o2755)
        .write("/usr/bin/plain", "", 0o755)
        .symlink("usr/bin", "/bin")
        .write(
            "/etc/docker/daemon.json",
            r#"{"icc": false, "userns-remap": "default", "live-restore": true,
                "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
                "hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": true}"#,
            0o644,
        )
        .write("/run/docker.sock", "", 0o660)
        // Absolute symlink: must resolve inside the host root, not in the test machine's /run.
        .symlink("/run", "/var/run")
        .write("/etc/aziot/config.toml", "[provisioning]\n", 0o600)
        .mkdir("/etc/aziot/keyd/config.d", 0o700)
        .mkdir("/etc/aziot/keyd", 0o700)
        .write("/etc/aziot/keyd/config.toml", "[aziot_keys]\n", 0o600)
        .chown("/etc/aziot/keyd", 990)
        .chown("/etc/aziot/keyd/config.d", 990)
        .chown("/etc/aziot/keyd/config.toml", 990);
        r
    }

    /// A host where every built-in check fails.
    fn bad_host() -> Root {
        let r = Root::new();
        r.write(
            "/etc/ssh/sshd_config",
            "PermitRootLogin yes\nPasswordAuthentication yes\nPermitEmptyPasswords yes\n\
             MaxAuthTries 10\nX11Forwarding yes\nProtocol 2,1\nIgnoreRhosts no\n\
             HostbasedAuthentication yes\nLoginGraceTime 0\n",
            0o644,
        )
        .chown("/etc/ssh/sshd_config", 1000)
        .write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
             daemon:x:1:1::/usr/sbin:/bin/bash\nnopass::1001:1001::/home/n:/bin/sh\n\
             user:x:1000:1000::/home/user:/bin/bash\nuser:x:1002:1002::/home/user2:/bin/bash\n",
            0o666,
        )
        .chown("/etc/passwd", 1000)
        .write(
            "/etc/group",
            "root:x:0:\nwheel:x:0:\nuser:x:1000:\nuser:x:1001:\n",
            0o666,
        )
        .chown("/etc/group", 1000)
        .write("/etc/shadow", "root:!::\nuser::19000::\n", 0o644)
        .chown("/etc/shadow", 1000)
        .write("/etc/gshadow", "root:*::\n", 0o644)
        .chown("/etc/gshadow", 1000)
        .write("/etc/sudoers", "ALL ALL=(ALL) NOPASSWD: ALL\n", 0o666)
        .chown("/etc/sudoers", 1000)
        .sysctls(BAD_SYSCTLS)
        .mkdir("/tmp", 0o1777)
        .mkdir("/var/tmp", 0o777)
        .mkdir("/usr/share/dropbox", 0o777)
        .write("/usr/bin/su", "", 0o4755)
        .write("/usr/bin/backdoor", "", 0o4755)
        .write("/usr/local/sbin/mailer", "", 0o2755)
        .write(
            "/etc/docker/daemon.json",
            r#"{"icc": true, "insecure-registries": ["10.0.0.1:5000"], "hosts": ["tcp://0.0.0.0:2375"]}"#,
            0o666,
        )
        .chown("/etc/docker/daemon.json", 1000)
        .write("/var/run/docker.sock", "", 0o666)
        .write("/etc/aziot/config.toml", "[provisioning]\n", 0o644)
        .chown("/etc/aziot/config.toml", 1234)
        .mkdir("/etc/aziot/keyd", 0o755)
        .write("/etc/aziot/keyd/config.toml", "", 0o644);
        r
    }

    #[test]
    fn every_builtin_check_passes_on_a_hardened_host() {
        let root = good_host();
        let records = run_builtin(&root.host());
        assert!(records.len() >= 40, "{} checks", records.len());
        let ids = by_id(&records);
        assert_eq!(ids.len(), records.len(), "ids are unique");
        for r in &records {
            assert_eq!(
                r.result,
                BaselineResult::Pass,
                "{} {}: {} / {}",
                r.cce_id,
                r.description,
                r.error,
                actual(r)
            );
            assert!(r.error.is_empty());
            assert!(!actual(r).is_empty(), "{} says what it found", r.cce_id);
            assert!(!r.extra_details["Remediation"].is_empty());
            assert!(r.cce_id.starts_with("CCE-") || r.cce_id.starts_with("EG-"));
        }
        assert_eq!(
            actual(ids["CCE-83360-8"]),
            "X11Forwarding no",
            "read from the included file"
        );
        assert_eq!(
            actual(ids["CCE-80901-2"]),
            "PermitRootLogin no",
            "Match block ignored"
        );
        assert_eq!(
            actual(ids["CCE-80896-4"]),
            "PermitEmptyPasswords no (default)"
        );
        assert!(actual(ids["EG-DOCKER-SOCKET-PERMISSIONS"]).contains("mode 0660"));
        assert!(
            ids["CCE-80649-7"].extra_details["Reference"].contains("accounts_no_uid_except_zero")
        );
    }

    #[test]
    fn every_builtin_check_fails_on_a_neglected_host() {
        let root = bad_host();
        let records = run_builtin(&root.host());
        for r in &records {
            assert_eq!(
                r.result,
                BaselineResult::Fail,
                "{} {}: {} / {}",
                r.cce_id,
                r.description,
                r.error,
                actual(r)
            );
        }
        let ids = by_id(&records);
        assert_eq!(actual(ids["CCE-80649-7"]), "toor");
        assert_eq!(actual(ids["CCE-85972-8"]), "nopass, user");
        assert_eq!(actual(ids["CCE-89903-9"]), "uid 0: root toor");
        assert_eq!(actual(ids["EG-ACCT-DUPLICATE-USERNAME"]), "user: user user");
        assert_eq!(actual(ids["CCE-86201-1"]), "gid 0: root wheel");
        assert_eq!(actual(ids["CCE-86328-2"]), "user: user user");
        assert_eq!(
            actual(ids["CCE-80843-6"]),
            "toor (/bin/sh), daemon (/bin/bash)",
            "an extra uid 0 account is a system account too"
        );
        assert!(actual(ids["CCE-80812-1"]).contains("mode 0666 (extra bits 0022)"));
        assert!(actual(ids["CCE-80783-4"]).starts_with("/usr/share/dropbox, /var/tmp"));
        assert!(actual(ids["CCE-80817-0"]).starts_with("/usr/bin/backdoor ("));
        assert!(actual(ids["CCE-80816-2"]).starts_with("/usr/local/sbin/mailer ("));
        assert_eq!(
            actual(ids["CCE-80906-1"]),
            "ClientAliveInterval 0 (default)"
        );
        assert_eq!(
            actual(ids["EG-DOCKER-TCP-TLS"]),
            "tcp://0.0.0.0:2375 without tlsverify"
        );
        assert!(actual(ids["EG-AZIOT-SERVICE-CONFIG-PERMISSIONS"]).contains("/etc/aziot/keyd"));
    }

    #[test]
    fn missing_inputs_pass_or_err_as_documented() {
        let root = Root::new();
        let records = run_builtin(&root.host());
        let ids = by_id(&records);
        let result = |id: &str| ids[id].result;
        // Nothing installed: pass.
        for id in [
            "CCE-80901-2",
            "CCE-82894-7",
            "EG-FILE-SUDOERS-MODE",
            "CCE-80813-9",
        ] {
            assert_eq!(result(id), BaselineResult::Pass, "{id}");
        }
        assert_eq!(actual(ids["CCE-80901-2"]), "sshd not installed");
        assert_eq!(actual(ids["EG-DOCKER-ICC"]), "docker not installed");
        assert_eq!(
            actual(ids["EG-AZIOT-CONFIG-PERMISSIONS"]),
            "IoT Edge not installed"
        );
        assert_eq!(actual(ids["CCE-81009-3"]), "IPv6 disabled");
        assert_eq!(result("CCE-80953-3"), BaselineResult::Fail, "no Yama");
        // Required inputs missing: errors that say why.
        for id in [
            "CCE-80649-7",
            "CCE-89903-9",
            "CCE-86201-1",
            "CCE-80812-1",
            "CCE-80916-0",
        ] {
            assert_eq!(result(id), BaselineResult::Err, "{id}");
            assert!(!ids[id].error.is_empty());
        }
        assert_eq!(ids["CCE-80812-1"].error, "/etc/passwd not found");
        assert_eq!(
            ids["CCE-80916-0"].error,
            "kernel.randomize_va_space not available on this kernel"
        );

        // Unreadable sshd_config (a directory): every sshd check is Err.
        root.mkdir("/etc/ssh/sshd_config", 0o755);
        root.sysctls(&[("kernel.randomize_va_space", "two")]);
        root.mkdir("/etc/docker", 0o755)
            .write("/etc/docker/daemon.json", "{not json", 0o644);
        let records = run_builtin(&root.host());
        let ids = by_id(&records);
        assert_eq!(ids["CCE-80901-2"].result, BaselineResult::Err);
        assert!(ids["CCE-80901-2"].error.contains("sshd_config"));
        assert!(ids["CCE-80916-0"].error.contains("unexpected value"));
        assert_eq!(ids["EG-DOCKER-ICC"].result, BaselineResult::Err);
        assert!(ids["EG-DOCKER-ICC"].error.contains("not valid JSON"));
        // Docker present without daemon.json: defaults apply.
        root.write("/etc/docker/daemon.json", "{}", 0o644);
        let records = run_builtin(&root.host());
        let ids = by_id(&records);
        assert_eq!(actual(ids["EG-DOCKER-ICC"]), "icc true (default)");
        assert_eq!(ids["EG-DOCKER-LOG-LIMITS"].result, BaselineResult::Fail);
        assert_eq!(
            ids["EG-DOCKER-INSECURE-REGISTRIES"].result,
            BaselineResult::Pass
        );
    }

    fn includes(map: &[(&str, &[&str])]) -> impl FnMut(&str) -> Vec<String> {
        let map: HashMap<String, Vec<String>> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        move |p| map.get(p).cloned().unwrap_or_default()
    }

    #[test]
    fn sshd_config_include_match_duplicates_and_garbage() {
        let text = "# comment\n\
            PermitRootLogin no\n\
            permitrootlogin yes\n\
            Include sshd_config.d/*.conf\n\
            PasswordAuthentication=no\n\
            MaxAuthTries   3 # trailing comment\n\
            Banner \"/etc/issue net\"\n\
            garbage\n\
            X11Forwarding \"unterminated\n\
            \tKbdInteractiveAuthentication   =   no\n\
            Match User bob\n\
              PasswordAuthentication yes\n\
              X11Forwarding yes\n\
              Include late.conf\n";
        let mut requested = Vec::new();
        let mut inner = includes(&[(
            "sshd_config.d/*.conf",
            &[
                "X11Forwarding no\nPermitRootLogin yes\nMatch Address 10.0.0.1\nLoginGraceTime 10\n",
                "LoginGraceTime 30\n",
            ],
        )]);
        let cfg = parse_sshd_config(text, &mut |p| {
            requested.push(p.to_string());
            inner(p)
        });
        assert_eq!(cfg.get("PermitRootLogin"), Some("no"), "first value wins");
        assert_eq!(
            cfg.get("x11forwarding"),
            Some("no"),
            "from the include, before the bad line"
        );
        assert_eq!(
            cfg.get("LoginGraceTime"),
            Some("30"),
            "a Match in an include ends with it"
        );
        assert_eq!(cfg.get("PasswordAuthentication"), Some("no"));
        assert_eq!(cfg.get("MaxAuthTries"), Some("3"));
        assert_eq!(cfg.get("Banner"), Some("/etc/issue net"));
        assert_eq!(cfg.get("KbdInteractiveAuthentication"), Some("no"));
        assert_eq!(cfg.malformed, 2);
        assert_eq!(cfg.included_files, 2);
        assert_eq!(
            requested,
            ["sshd_config.d/*.conf"],
            "Include inside Match is not read"
        );

        // An Include loop stops at the depth limit.
        let cfg = parse_sshd_config("Include self\n", &mut |_| {
            vec!["Include self\nPort 22\n".to_string()]
        });
        assert!(cfg.included_files <= MAX_INCLUDED_FILES);
        assert_eq!(cfg.get("Port"), Some("22"));
        assert_eq!(cfg.malformed, 1);

        // Arbitrary bytes never panic.
        let junk: String = (0..5000u32)
            .map(|i| char::from_u32(i * 7919 % 0x2FF).unwrap_or('x'))
            .collect();
        let _ = parse_sshd_config(&junk, &mut |_| Vec::new());
    }

    #[test]
    fn sshd_includes_are_read_from_the_host_root_in_order() {
        let r = Root::new();
        r.write(
            "/etc/ssh/sshd_config.d/20-b.conf",
            "PermitRootLogin yes\n",
            0o600,
        )
        .write(
            "/etc/ssh/sshd_config.d/10-a.conf",
            "PermitRootLogin no\n",
            0o600,
        )
        .write("/etc/ssh/sshd_config.d/.hidden.conf", "Port 1\n", 0o600)
        .write("/etc/ssh/sshd_config.d/notes.txt", "Port 2\n", 0o600)
        .write("/etc/ssh/extra", "Port 3\n", 0o600);
        let host = r.host();
        let files = read_includes(&host, "/etc/ssh/sshd_config.d/*.conf");
        assert_eq!(files, ["PermitRootLogin no\n", "PermitRootLogin yes\n"]);
        assert_eq!(read_includes(&host, "extra"), ["Port 3\n"]);
        assert!(read_includes(&host, "/etc/*/x").is_empty());
        assert!(read_includes(&host, "/nonexistent/*.conf").is_empty());
    }

    #[test]
    fn sshd_time_and_glob_helpers() {
        assert_eq!(parse_sshd_time("60"), Some(60));
        assert_eq!(parse_sshd_time("1m30s"), Some(90));
        assert_eq!(parse_sshd_time("2M"), Some(120));
        assert_eq!(parse_sshd_time("5m10"), Some(310));
        assert_eq!(parse_sshd_time("1h"), Some(3600));
        assert_eq!(parse_sshd_time("x"), None);
        assert_eq!(parse_sshd_time(""), None);
        assert_eq!(parse_sshd_time("m"), None);
        assert_eq!(parse_sshd_time("99999999999999999999"), None);
        assert!(glob_match("*.conf", "a.conf"));
        assert!(!glob_match("*.conf", ".a.conf"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*a*b", "xaxxb"));
        assert!(!glob_match("a*", "b"));
        assert!(glob_match("exact", "exact"));
    }

    #[test]
    fn resolve_keeps_symlinks_and_dotdot_inside_the_root() {
        let r = Root::new();
        r.write("/a/b", "x", 0o644)
            .symlink("/a", "/abs")
            .symlink("a", "/rel")
            .symlink("../../../../a", "/a/up")
            .symlink("/l2", "/l1")
            .symlink("/l1", "/l2");
        let root = r.dir.path();
        let want = root.join("a/b");
        assert_eq!(resolve(root, Path::new("/abs/b")).unwrap(), want);
        assert_eq!(resolve(root, Path::new("/rel/b")).unwrap(), want);
        assert_eq!(resolve(root, Path::new("/../../a/b")).unwrap(), want);
        assert_eq!(resolve(root, Path::new("/a/up/b")).unwrap(), want);
        assert!(resolve(root, Path::new("/l1/x")).is_err(), "symlink loop");
        assert!(is_not_found(
            &resolve(root, Path::new("/a/missing")).unwrap_err()
        ));
    }

    const CHECKS: &str = r##"[
        {"id": "ACME-001", "description": "hosts.equiv absent", "severity": "Important",
         "file_absent": "/etc/hosts.equiv"},
        {"id": "ACME-002", "description": "app config private", "severity": "Warning",
         "remediation": "chmod 600 /etc/app.conf",
         "file_mode_max": {"path": "/etc/app.conf", "mode": "0640"}},
        {"id": "ACME-003", "description": "telnet commented", "severity": "Critical",
         "file_contains": {"path": "/etc/inetd.conf", "text": "#telnet"}},
        {"id": "ACME-004", "description": "no forwarding", "severity": "Warning",
         "sysctl_equals": {"name": "net.ipv4.ip_forward", "value": " 0 "}},
        {"id": "ACME-005", "description": "agent config", "severity": "Informational",
         "file_exists": "/../../etc/app.conf"},
        {"id": "ACME-006", "description": "two kinds", "severity": "Warning",
         "file_exists": "/etc/app.conf", "file_absent": "/etc/app.conf"},
        {"id": "ACME-007", "description": "bad mode", "severity": "Warning",
         "file_mode_max": {"path": "/etc/app.conf", "mode": "rw-r--r--"}},
        {"id": "ACME-008", "description": "bad sysctl name", "severity": "Warning",
         "sysctl_equals": {"name": "../../etc/passwd", "value": "0"}}
    ]"##;

    fn custom_host() -> Root {
        let r = Root::new();
        r.write("/etc/app.conf", "x", 0o600)
            .write("/etc/inetd.conf", "#telnet stream tcp\n", 0o644)
            .sysctls(&[("net.ipv4.ip_forward", "0")])
            .write("/etc/edgeguard/checks.json", CHECKS, 0o644);
        r
    }

    #[test]
    fn custom_checks_with_a_good_hash_run() {
        let r = custom_host();
        let hash = sha256_hex(CHECKS.as_bytes()).to_ascii_uppercase();
        let records = run_custom(
            &r.host(),
            true,
            Some("/etc/edgeguard/checks.json"),
            Some(&hash),
        );
        let ids = by_id(&records);
        assert_eq!(records.len(), 8);
        for id in ["ACME-001", "ACME-002", "ACME-003", "ACME-004", "ACME-005"] {
            assert_eq!(ids[id].result, BaselineResult::Pass, "{id}: {:?}", ids[id]);
            assert_eq!(ids[id].extra_details["Custom"], "true");
        }
        assert_eq!(
            ids["ACME-002"].extra_details["Remediation"],
            "chmod 600 /etc/app.conf"
        );
        assert!(!ids["ACME-001"].extra_details.contains_key("Remediation"));
        assert_eq!(ids["ACME-003"].severity, Critical);
        assert!(ids["ACME-006"].error.contains("exactly one"));
        assert!(ids["ACME-007"].error.contains("invalid octal mode"));
        assert!(ids["ACME-008"].error.contains("invalid sysctl name"));

        // The same checks failing.
        r.write("/etc/hosts.equiv", "+\n", 0o644)
            .write("/etc/app.conf", "x", 0o666)
            .write("/etc/inetd.conf", "telnet stream tcp\n", 0o644)
            .sysctls(&[("net.ipv4.ip_forward", "1")]);
        std::fs::remove_file(r.at("/etc/app.conf")).unwrap();
        let records = run_custom(
            &r.host(),
            true,
            Some("/etc/edgeguard/checks.json"),
            Some(&hash),
        );
        let ids = by_id(&records);
        for id in ["ACME-001", "ACME-003", "ACME-004", "ACME-005"] {
            assert_eq!(ids[id].result, BaselineResult::Fail, "{id}: {:?}", ids[id]);
        }
        assert_eq!(
            ids["ACME-002"].result,
            BaselineResult::Pass,
            "absent file has no mode"
        );
        r.write("/etc/app.conf", "x", 0o666);
        let records = run_custom(
            &r.host(),
            true,
            Some("/etc/edgeguard/checks.json"),
            Some(&hash),
        );
        assert_eq!(by_id(&records)["ACME-002"].result, BaselineResult::Fail);
    }

    #[test]
    fn custom_checks_with_a_bad_hash_or_bad_file_do_not_run() {
        let r = custom_host();
        let host = r.host();
        let path = Some("/etc/edgeguard/checks.json");
        let only_error = |records: Vec<BaselineCheck>| {
            assert_eq!(records.len(), 1, "{records:?}");
            assert_eq!(records[0].result, BaselineResult::Err);
            assert_eq!(records[0].cce_id, "EG-CUSTOM-CHECKS-FILE");
            records[0].error.clone()
        };
        let wrong = sha256_hex(b"something else");
        assert_eq!(
            only_error(run_custom(&host, true, path, Some(&wrong))),
            "custom checks file hash mismatch"
        );
        assert_eq!(
            only_error(run_custom(&host, true, path, None)),
            "custom checks file hash not set"
        );
        assert_eq!(
            only_error(run_custom(&host, true, None, Some(&wrong))),
            "custom checks file path not set"
        );
        assert!(
            only_error(run_custom(&host, true, Some("/nope.json"), Some(&wrong)))
                .starts_with("custom checks file unreadable")
        );
        assert!(run_custom(&host, false, path, Some(&wrong)).is_empty());

        for bad in [
            "[{\"id\": \"X\"",
            "{\"id\": \"X\"}",
            r#"[{"id": "X", "description": "d", "severity": "Severe", "file_exists": "/x"}]"#,
            r#"[{"id": "X", "description": "d", "severity": "Warning", "file_exists": "/x", "typo": 1}]"#,
        ] {
            r.write("/etc/edgeguard/checks.json", bad, 0o644);
            let hash = sha256_hex(bad.as_bytes());
            let e = only_error(run_custom(&host, true, path, Some(&hash)));
            assert!(
                e.starts_with("custom checks file is malformed"),
                "{bad}: {e}"
            );
        }
        let many = format!(
            "[{}]",
            vec![r#"{"id":"X","description":"d","severity":"Warning","file_exists":"/x"}"#; 300]
                .join(",")
        );
        r.write("/etc/edgeguard/checks.json", &many, 0o644);
        let e = only_error(run_custom(
            &host,
            true,
            path,
            Some(&sha256_hex(many.as_bytes())),
        ));
        assert!(e.contains("more than 256"), "{e}");
    }

    #[test]
    fn collector_reads_custom_check_settings_from_the_config_watch() {
        let r = custom_host();
        let mut config = Config::default();
        let (tx, rx) = watch::channel(Arc::new(config.clone()));
        let mut c = BaselineCollector::new(rx);
        assert_eq!(c.name(), "baseline");
        let count = |events: Vec<Event>| -> (usize, usize) {
            assert_eq!(events.len(), 1);
            let Payload::OSBaseline(records) = &events[0].payload else {
                panic!("not a baseline event")
            };
            let custom = records
                .iter()
                .filter(|r| r.extra_details.contains_key("Custom"))
                .count();
            (records.len(), custom)
        };
        let (builtin, custom) = count(c.collect(&r.host()));
        assert!(builtin >= 40);
        assert_eq!(custom, 0);
        config.baseline_custom_checks_enabled = true;
        config.baseline_custom_checks_file_path = Some("/etc/edgeguard/checks.json".into());
        config.baseline_custom_checks_file_hash = Some(sha256_hex(CHECKS.as_bytes()));
        tx.send(Arc::new(config)).unwrap();
        assert_eq!(count(c.collect(&r.host())), (builtin + 8, 8));
    }

    #[test]
    fn sha256_matches_fips_vectors_and_sha256sum() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            sha256_hex(&vec![b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        let dir = tempfile::tempdir().unwrap();
        for len in [1usize, 55, 56, 57, 63, 64, 65, 119, 120, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &data).unwrap();
            let out = std::process::Command::new("sha256sum")
                .arg(&p)
                .output()
                .unwrap();
            let want = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                sha256_hex(&data),
                want.split_whitespace().next().unwrap(),
                "{len}"
            );
        }
    }

    /// On this machine's real root: every check runs, nothing panics, every record is complete.
    #[test]
    fn real_host_baseline_runs_every_check() {
        let started = std::time::Instant::now();
        let records = run_builtin(&HostRoot::default());
        let took = started.elapsed();
        assert!(records.len() >= 40);
        assert_eq!(by_id(&records).len(), records.len());
        for r in &records {
            match r.result {
                BaselineResult::Err => assert!(!r.error.is_empty(), "{}", r.cce_id),
                _ => assert!(!actual(r).is_empty(), "{}", r.cce_id),
            }
            eprintln!(
                "{:?} {} {} | {}{}",
                r.result,
                r.cce_id,
                r.description,
                r.error,
                actual(r)
            );
        }
        eprintln!("{} checks in {took:?}", records.len());
        // Kernel settings are readable here, so none of them errs.
        let ids = by_id(&records);
        assert_ne!(ids["CCE-80916-0"].result, BaselineResult::Err);
        assert!(took < std::time::Duration::from_secs(60));
    }
}
