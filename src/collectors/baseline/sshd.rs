//! sshd_config: parsed the way sshd reads it outside `Match`, and the sshd checks.

use super::{Meta, Outcome, SSH_HOST_KEYS, SSHD_RULES, listing, record};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

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

/// What an sshd keyword's value must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum SshdExpect {
    /// One of these words (any case).
    Is(&'static [&'static str]),
    /// A number no larger than this.
    NumAtMost(u64),
    /// A time (sshd's format) in this range of seconds.
    TimeWithin(u64, u64),
    /// Only protocol 2.
    Protocol2,
    /// A comma-separated algorithm list (with sshd's `+`, `-`, `^` forms applied to the default)
    /// containing none of these; `*` at the end of one matches any suffix.
    NoneOf(&'static [&'static str]),
    /// `MaxStartups start:rate:full` (or one number) with start and full at most these.
    MaxStartups(u64, u64),
    /// Any value (not `none`).
    Set,
}

pub(super) struct SshdRule {
    pub(super) keyword: &'static str,
    /// OpenSSH's default when unset.
    pub(super) default: &'static str,
    /// Other keywords that satisfy the rule when any of them is set (`AllowUsers` for
    /// `AllowGroups`), or that satisfy it with this value (`DisableForwarding yes`).
    pub(super) alternatives: &'static [(&'static str, Option<&'static str>)],
    pub(super) expect: SshdExpect,
    pub(super) meta: Meta,
}

/// The algorithm list sshd uses: `+x` appends to, `-x` removes from and `^x` prepends to the
/// default.
fn effective_list(value: &str, default: &str) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .collect()
    };
    if let Some(add) = value.strip_prefix('+') {
        let mut l = split(default);
        l.extend(split(add));
        l
    } else if let Some(remove) = value.strip_prefix('-') {
        let remove = split(remove);
        split(default)
            .into_iter()
            .filter(|a| !remove.iter().any(|r| pattern_match(r, a)))
            .collect()
    } else if let Some(first) = value.strip_prefix('^') {
        let mut l = split(first);
        l.extend(split(default));
        l
    } else {
        split(value)
    }
}

fn pattern_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn evaluate(expect: SshdExpect, value: &str, default: &str) -> Result<(), String> {
    let ok = match expect {
        SshdExpect::Is(words) => words.iter().any(|w| w.eq_ignore_ascii_case(value)),
        SshdExpect::NumAtMost(max) => value.parse::<u64>().is_ok_and(|n| n <= max),
        SshdExpect::TimeWithin(lo, hi) => {
            parse_sshd_time(value).is_some_and(|t| (lo..=hi).contains(&t))
        }
        SshdExpect::Protocol2 => value.split(',').all(|p| p.trim() == "2"),
        SshdExpect::NoneOf(weak) => {
            let bad: Vec<String> = effective_list(value, default)
                .into_iter()
                .filter(|a| weak.iter().any(|w| pattern_match(w, a)))
                .collect();
            if !bad.is_empty() {
                return Err(format!("weak: {}", bad.join(",")));
            }
            true
        }
        SshdExpect::MaxStartups(start_max, full_max) => {
            let parts: Vec<Option<u64>> = value.split(':').map(|p| p.parse().ok()).collect();
            match parts.as_slice() {
                [Some(start)] => *start <= start_max,
                [Some(start), Some(_), Some(full)] => *start <= start_max && *full <= full_max,
                _ => false,
            }
        }
        SshdExpect::Set => !value.eq_ignore_ascii_case("none"),
    };
    if ok { Ok(()) } else { Err(String::new()) }
}

fn sshd_rule(sshd: &Sshd, rule: &SshdRule) -> Outcome {
    let c = match sshd {
        Err(e) => return Outcome::Err(e.clone()),
        Ok(None) => return Outcome::Pass("sshd not installed".into()),
        Ok(Some(c)) => c,
    };
    for (keyword, want) in rule.alternatives {
        if let Some(v) = c.get(keyword)
            && want.is_none_or(|w| w.eq_ignore_ascii_case(v))
        {
            return Outcome::Pass(format!("{keyword} {v}"));
        }
    }
    let (value, note) = match c.get(rule.keyword) {
        Some(v) => (v, ""),
        None => (rule.default, " (default)"),
    };
    let actual = format!("{} {value}{note}", rule.keyword);
    match evaluate(rule.expect, value, rule.default) {
        Ok(()) => Outcome::Pass(actual),
        Err(why) if why.is_empty() => Outcome::Fail(actual),
        Err(why) => Outcome::Fail(format!("{actual} ({why})")),
    }
}

pub(super) fn sshd_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let sshd = load_sshd(host);
    for rule in SSHD_RULES {
        out.push(record(&rule.meta, sshd_rule(&sshd, rule)));
    }
    out.push(record(&SSH_HOST_KEYS, host_key_outcome(host, &sshd)));
}

/// Host private keys (`/etc/ssh/ssh_host_*_key`) readable by root alone (0640 allows the
/// `ssh_keys` group some distributions use).
fn host_key_outcome(host: &HostRoot, sshd: &Sshd) -> Outcome {
    if matches!(sshd, Ok(None)) {
        return Outcome::Pass("sshd not installed".into());
    }
    let Ok(rd) = host.read_dir("/etc/ssh") else {
        return Outcome::Pass("no /etc/ssh".into());
    };
    let mut names: Vec<String> = rd
        .map_while(Result::ok)
        .filter_map(|e| e.name.into_string().ok())
        .filter(|n| glob_match("ssh_host_*_key", n))
        .take(MAX_INCLUDED_FILES)
        .collect();
    names.sort();
    let mut bad = Vec::new();
    for n in &names {
        let path = format!("/etc/ssh/{n}");
        match host.symlink_metadata(&path) {
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                if mode & !0o640 != 0 || m.uid() != 0 {
                    bad.push(format!("{path} mode {mode:04o} uid {}", m.uid()));
                }
            }
            Err(e) => bad.push(format!("{path}: {}", e.reason())),
        }
    }
    if names.is_empty() {
        Outcome::Pass("no host keys in /etc/ssh".into())
    } else if bad.is_empty() {
        Outcome::Pass(format!("{} host keys, all 0600/0640 root", names.len()))
    } else {
        Outcome::Fail(listing(&bad))
    }
}
