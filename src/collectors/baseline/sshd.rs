//! sshd_config: parsed the way sshd reads it outside `Match`, and the sshd checks.

use super::{
    Outcome, SSH_CLIENT_ALIVE, SSH_EMPTY_PASSWORDS, SSH_GRACE_TIME, SSH_HOSTBASED,
    SSH_IGNORE_RHOSTS, SSH_MAX_AUTH_TRIES, SSH_PASSWORD_AUTH, SSH_PROTOCOL, SSH_ROOT_LOGIN,
    SSH_X11, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;
use std::collections::HashMap;

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
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
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
pub(super) fn read_includes(host: &HostRoot, pattern: &str) -> Vec<String> {
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
        let Ok(rd) = host.read_dir(dir) else {
            return Vec::new();
        };
        rd.map_while(Result::ok)
            .filter_map(|e| e.name.into_string().ok())
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

pub(super) fn sshd_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
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
