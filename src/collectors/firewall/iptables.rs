//! `iptables-save` text (legacy and nf_tables backends, IPv4 and IPv6) to firewall rules.

use super::{
    Backend, IpFamily, MAX_RULE_TEXT, Parsed, builtin_direction, empty_rule, more_conditions,
    policy_rule, protocol_name, set_once,
};
use crate::event::{FirewallAction, FirewallRule};
use crate::text::within_bytes;
use std::collections::HashMap;

/// Parses `iptables-save` / `ip6tables-save` output. Never fails: lines that do not parse are
/// skipped and counted, and a listing cut short is flagged (its policies are still reported).
pub fn parse_iptables_save(bytes: &[u8], family: IpFamily, backend: Backend) -> Parsed {
    struct Table {
        name: String,
        chains: Vec<(String, String)>,
        positions: HashMap<String, i64>,
    }
    let text = String::from_utf8_lossy(bytes);
    let mut parsed = Parsed::default();
    let mut table: Option<Table> = None;

    let close = |t: Table, parsed: &mut Parsed| {
        for (chain, policy) in t.chains {
            if policy == "-" {
                continue;
            }
            let count = t.positions.get(&chain).copied().unwrap_or(0);
            let mut rule = policy_rule(
                &policy,
                format!("{}/{chain}", t.name),
                builtin_direction(&chain),
                count + 1,
            );
            let extra = &mut rule.extra_details;
            extra.insert("Family".into(), family.as_str().into());
            extra.insert("Backend".into(), backend.as_str().into());
            extra.insert(
                "Rule".into(),
                within_bytes(&format!(":{chain} {policy}"), 64),
            );
            parsed.rules.push(rule);
        }
    };

    for line in text.lines() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = table.take() {
                // A new table before COMMIT: the previous one was cut short.
                parsed.malformed += 1;
                close(t, &mut parsed);
            }
            parsed
                .tables
                .push((family.as_str().to_string(), name.to_string()));
            table = Some(Table {
                name: name.to_string(),
                chains: Vec::new(),
                positions: HashMap::new(),
            });
        } else if line == "COMMIT" {
            match table.take() {
                Some(t) => close(t, &mut parsed),
                None => parsed.malformed += 1,
            }
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            match (table.as_mut(), parts.next(), parts.next()) {
                (Some(t), Some(chain), Some(policy)) => {
                    t.chains.push((chain.to_string(), policy.to_string()))
                }
                _ => parsed.malformed += 1,
            }
        } else {
            let Some(t) = table.as_mut() else {
                parsed.malformed += 1;
                continue;
            };
            match iptables_rule(line, &t.name, family, backend) {
                Some((chain, mut rule)) => {
                    let position = t.positions.entry(chain).or_insert(0);
                    *position += 1;
                    rule.priority = Some(*position);
                    parsed.rules.push(rule);
                }
                None => parsed.malformed += 1,
            }
        }
    }
    if let Some(t) = table.take() {
        parsed.truncated = true;
        close(t, &mut parsed);
    }
    parsed
}

/// One `-A CHAIN …` line (optionally prefixed by `[packets:bytes]` counters, as `-c` prints).
fn iptables_rule(
    line: &str,
    table: &str,
    family: IpFamily,
    backend: Backend,
) -> Option<(String, FirewallRule)> {
    let tokens = split_args(line)?;
    let mut it = tokens.iter().map(String::as_str).peekable();
    if it.peek().is_some_and(|t| t.starts_with('[')) {
        it.next();
    }
    if !matches!(it.next(), Some("-A" | "--append" | "-I" | "--insert")) {
        return None;
    }
    let chain = it.next()?.to_string();
    let mut rule = empty_rule(builtin_direction(&chain));
    rule.chain_name = Some(format!("{table}/{chain}"));
    let mut target: Option<String> = None;
    let mut goto: Option<String> = None;
    let mut matches: Vec<&str> = Vec::new();
    let mut negated = false;

    while let Some(opt) = it.next() {
        if opt == "!" {
            negated = true;
            continue;
        }
        match opt {
            "-s" | "--source" | "--src" | "--src-range" => {
                set_once(&mut rule.source_address, take_value(&mut it, negated)?)
            }
            "-d" | "--destination" | "--dst" | "--dst-range" => {
                set_once(&mut rule.destination_address, take_value(&mut it, negated)?)
            }
            "-p" | "--protocol" => {
                let p = take_value(&mut it, negated)?;
                if p != "all" && p != "0" {
                    let (neg, name) = match p.strip_prefix('!') {
                        Some(n) => ("!", n),
                        None => ("", p.as_str()),
                    };
                    set_once(&mut rule.protocol, format!("{neg}{}", protocol_name(name)));
                }
            }
            "--dport" | "--destination-port" | "--dports" | "--destination-ports" => set_once(
                &mut rule.destination_port,
                take_value(&mut it, negated)?.replace(':', "-"),
            ),
            "--sport" | "--source-port" | "--sports" | "--source-ports" => set_once(
                &mut rule.source_port,
                take_value(&mut it, negated)?.replace(':', "-"),
            ),
            "-i" | "--in-interface" => {
                let v = take_value(&mut it, negated)?;
                rule.extra_details.insert("InInterface".into(), v);
            }
            "-o" | "--out-interface" => {
                let v = take_value(&mut it, negated)?;
                rule.extra_details.insert("OutInterface".into(), v);
            }
            "-m" | "--match" => matches.push(it.next()?),
            "--comment" => {
                let v = take_value(&mut it, negated)?;
                rule.extra_details
                    .insert("Comment".into(), within_bytes(&v, MAX_RULE_TEXT));
            }
            "-j" | "--jump" => target = Some(it.next()?.to_string()),
            "-g" | "--goto" => goto = Some(it.next()?.to_string()),
            _ => {
                // Any other option: a condition the record does not show (skip its
                // arguments: tokens up to the next option).
                more_conditions(&mut rule);
                while it.peek().is_some_and(|t| !t.starts_with('-') && *t != "!") {
                    it.next();
                }
            }
        }
        negated = false;
    }

    let (action, verdict) = match (&target, &goto) {
        (_, Some(g)) => (FirewallAction::Other, format!("goto {g}")),
        (Some(t), None) => (iptables_target_action(t), t.clone()),
        (None, None) => (FirewallAction::Other, "continue".to_string()),
    };
    rule.action = action;
    let extra = &mut rule.extra_details;
    if action == FirewallAction::Other {
        extra.insert("Target".into(), verdict);
    }
    if !matches.is_empty() {
        extra.insert("Matches".into(), within_bytes(&matches.join(","), 128));
    }
    extra.insert("Family".into(), family.as_str().into());
    extra.insert("Backend".into(), backend.as_str().into());
    extra.insert("Rule".into(), within_bytes(line, MAX_RULE_TEXT));
    Some((chain, rule))
}

/// The argument of an option, with `!` before the option (`negated`) or, in the old syntax, before
/// the argument (`-s ! 10.0.0.0/8`) kept as a `!` prefix.
fn take_value<'a>(
    it: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
    negated: bool,
) -> Option<String> {
    let mut v = it.next()?;
    let mut neg = negated;
    if v == "!" {
        neg = true;
        v = it.next()?;
    }
    Some(if neg { format!("!{v}") } else { v.to_string() })
}

/// Splits an iptables-save line into arguments: whitespace-separated, with `"…"` quoting and
/// `\"` / `\\` escapes as iptables-save writes them. `None` for an unterminated quote.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(n) => cur.push(n),
                None => return None,
            },
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_token = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_token {
        out.push(cur);
    }
    Some(out)
}

pub(super) fn iptables_target_action(target: &str) -> FirewallAction {
    match target {
        "ACCEPT" => FirewallAction::Allow,
        "DROP" | "REJECT" => FirewallAction::Deny,
        _ => FirewallAction::Other,
    }
}
