//! Settings in `key value` and `key=value` files: login.defs, useradd defaults, auditd.conf,
//! journald and coredump configuration. The table is `KV_RULES` in the catalogue.

use super::{KV_RULES, Meta, Outcome, glob_match, read_capped, record};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;
use std::collections::HashMap;

/// How a file separates keys from values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sep {
    /// `KEY value` (login.defs).
    Space,
    /// `key = value` (useradd, auditd.conf, systemd's `[Section]` files; sections are ignored:
    /// the keys checked are unique in their files).
    Equals,
}

pub(super) struct KvFile {
    pub(super) path: &'static str,
    /// Drop-in directories whose `*.conf` files override the main file, in lexical order
    /// (systemd's `journald.conf.d`).
    pub(super) dropins: &'static [&'static str],
    pub(super) sep: Sep,
    /// The result when the file is absent (the subject is not installed).
    pub(super) missing: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    /// A whole number in this range.
    Between(i64, i64),
    /// One of these words (any case).
    OneOf(&'static [&'static str]),
    /// An octal umask that masks at least these bits (027: no group write, nothing for others).
    UmaskCovers(u32),
}

/// What an unset key means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unset {
    /// The program's default, evaluated like a set value.
    Default(&'static str),
    /// Unset is a finding, with this note.
    Fail(&'static str),
}

pub(super) struct KvRule {
    pub(super) file: &'static KvFile,
    pub(super) key: &'static str,
    pub(super) cmp: Cmp,
    pub(super) unset: Unset,
    pub(super) meta: Meta,
}

/// Bytes read of each file, and drop-in files read per directory.
const MAX_KV_BYTES: u64 = 256 * 1024;
const MAX_DROPINS: usize = 64;

/// Parses one file into `values` (keys in any case; a later value overrides an earlier one, as
/// login.defs, auditd and systemd read them).
pub(super) fn parse_kv(text: &str, sep: Sep, values: &mut HashMap<String, String>) {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || line.starts_with('[')
        {
            continue;
        }
        let (key, value) = match sep {
            Sep::Space => {
                let mut parts = line.splitn(2, char::is_whitespace);
                let key = parts.next().unwrap_or("");
                let value = parts.next().unwrap_or("").split_whitespace().next();
                match value {
                    Some(v) => (key, v),
                    None => continue,
                }
            }
            Sep::Equals => match line.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim().trim_matches('"')),
                None => continue,
            },
        };
        if !key.is_empty() {
            values.insert(key.to_ascii_lowercase(), value.to_string());
        }
    }
}

/// A file's settings (lower-cased keys); `Ok(None)`: the file is absent.
type Loaded = Result<Option<HashMap<String, String>>, String>;

fn load_kv(host: &HostRoot, file: &KvFile) -> Loaded {
    let mut values = HashMap::new();
    match read_capped(host, file.path, MAX_KV_BYTES) {
        Ok(b) => parse_kv(&String::from_utf8_lossy(&b), file.sep, &mut values),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(format!("{}: {}", file.path, error_chain(&e))),
    }
    for dir in file.dropins {
        let Ok(rd) = host.read_dir(dir) else { continue };
        let mut names: Vec<String> = rd
            .map_while(Result::ok)
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| glob_match("*.conf", n))
            .take(MAX_DROPINS)
            .collect();
        names.sort();
        for n in names {
            if let Ok(b) = read_capped(host, &format!("{dir}/{n}"), MAX_KV_BYTES) {
                parse_kv(&String::from_utf8_lossy(&b), file.sep, &mut values);
            }
        }
    }
    Ok(Some(values))
}

pub(super) fn compare(cmp: Cmp, value: &str) -> bool {
    match cmp {
        Cmp::Between(lo, hi) => value.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
        Cmp::OneOf(words) => words.iter().any(|w| w.eq_ignore_ascii_case(value)),
        Cmp::UmaskCovers(bits) => {
            u32::from_str_radix(value, 8).is_ok_and(|m| m <= 0o777 && m & bits == bits)
        }
    }
}

pub(super) fn kv_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let mut cache: HashMap<&str, Loaded> = HashMap::new();
    for rule in KV_RULES {
        let loaded = cache
            .entry(rule.file.path)
            .or_insert_with(|| load_kv(host, rule.file));
        let outcome = match loaded {
            Err(e) => Outcome::Err(e.clone()),
            Ok(None) => Outcome::Pass(rule.file.missing.into()),
            Ok(Some(values)) => match (values.get(&rule.key.to_ascii_lowercase()), rule.unset) {
                (Some(v), _) => {
                    let actual = format!("{} {v}", rule.key);
                    if compare(rule.cmp, v) {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
                (None, Unset::Default(d)) => {
                    let actual = format!("{} {d} (default)", rule.key);
                    if compare(rule.cmp, d) {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
                (None, Unset::Fail(note)) => Outcome::Fail(note.into()),
            },
        };
        out.push(record(&rule.meta, outcome));
    }
}
