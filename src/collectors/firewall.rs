//! `FirewallConfiguration`: the host's live packet-filter ruleset, from every backend it may use.
//!
//! A device can filter with nftables, with iptables on the legacy `x_tables` backend, with
//! iptables on the nf_tables backend, or with a mix (Docker still writes iptables rules), for IPv4
//! and IPv6. The retired agent read IPv4 iptables only, so a device filtering with nftables looked
//! unprotected. We ask each backend's own tool, because only the tools know their kernel formats:
//!
//! | tool | backend | format |
//! |---|---|---|
//! | `nft -j list ruleset` | `nftables` | JSON (libnftables-json(5)) |
//! | `iptables-legacy-save`, `ip6tables-legacy-save` | `iptables-legacy` | iptables-save text |
//! | `iptables-nft-save`, `ip6tables-nft-save` | `iptables-nft` | iptables-save text |
//! | `iptables-save`, `ip6tables-save` (only when neither variant exists) | from its header | iptables-save text |
//!
//! The tools are the host's own: when the host root is `/` they run directly, otherwise chrooted
//! into the host root (needs `CAP_SYS_CHROOT`; the module already shares the host's network
//! namespace, which is what the tools read). Each run has a time limit and an output cap.
//!
//! **De-duplication.** iptables-nft rules live in nf_tables, so `nft` lists them too, but it shows
//! their `xt` matches and targets only by name (`{"xt":{"type":"target","name":"REJECT"}}`).
//! Every nft table that iptables-nft-save also printed (same family and name) is therefore taken
//! from iptables-nft-save and dropped from the nft listing. Legacy tables are separate kernel
//! tables and never overlap.
//!
//! **Mapping.** One record per rule: `Priority` is the rule's 1-based position in its chain (as in
//! `iptables -L --line-numbers`), `ChainName` is `table/chain`, `Direction` is `In` for
//! input/prerouting/ingress chains and `Out` for output/postrouting/egress ones (omitted for
//! forward and user chains), `Action` is `Allow` (accept), `Deny` (drop, reject) or `Other`
//! (jump, goto, return, log, NAT, …; the verdict is in `ExtraDetails.Target`). A negated match
//! keeps iptables' notation (`!192.168.0.0/16`). Each base chain's policy becomes one more record
//! after its rules, with `ExtraDetails.Policy = "true"`.
//!
//! **No firewall.** When every tool that exists answered and the ruleset has no rule and only
//! accepting policies, nothing filters traffic. That is reported explicitly as one record with
//! `Enabled: false`, `Action: Allow`, `ChainName: "none"`, `ExtraDetails.NoFirewall = "true"` and
//! `ExtraDetails.Backend` listing every backend that answered (comma-separated), so "checked and
//! found nothing" differs from "could not check" (an empty snapshot plus a `Degraded` status).

use super::Periodic;
use crate::event::{
    CollectorHealth, CollectorStatus, Direction, Event, EventKind, ExtraDetails, FirewallAction,
    FirewallRule, Payload,
};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The collector's name (metric label and `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "firewall";

/// A tool that has not finished by then is killed: a wedged netlink socket must not stall the
/// periodic collectors.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most output read from one tool. Large Kubernetes-style rulesets are a few MiB; anything
/// bigger is refused rather than half-parsed.
pub const MAX_TOOL_OUTPUT: usize = 16 * 1024 * 1024;

/// The most records one snapshot carries; the rest are counted in the log.
pub const MAX_RULES: usize = 10_000;

/// `ExtraDetails.Rule` keeps at most this many bytes of the original rule text. Public so the
/// fuzz targets (fuzz/) can check the bound.
pub const MAX_RULE_TEXT: usize = 512;

/// Where the tools are looked for, inside the host root. Fixed, so a container `PATH` never
/// decides which binary runs as root.
const TOOL_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A firewall backend, as named in `ExtraDetails.Backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Nftables,
    IptablesLegacy,
    IptablesNft,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::IptablesNft => "iptables-nft",
        }
    }
}

/// The address family an iptables-save listing belongs to (`ExtraDetails.Family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// The nftables family name of the same tables (`ip`, `ip6`).
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        }
    }
}

/// What a parser made of one tool's output.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Rules and policy records, in listing order.
    pub rules: Vec<FirewallRule>,
    /// `(family, table)` of every table the listing contained (for de-duplication).
    pub tables: Vec<(String, String)>,
    /// Lines or objects that could not be understood and were skipped.
    pub malformed: usize,
    /// The listing ended inside a table (no `COMMIT`): the output was cut short.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("nft output is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("nft output has no \"nftables\" array")]
    Shape,
}

/// Why a tool gave no listing.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("not installed")]
    NotFound,
    #[error("host root path is not usable for chroot")]
    BadRoot,
    #[error("could not start")]
    Spawn(#[source] std::io::Error),
    #[error("reading its output")]
    Io(#[source] std::io::Error),
    #[error("did not finish within {0:?}")]
    Timeout(Duration),
    #[error("output larger than {0} bytes")]
    TooLarge(usize),
    #[error("exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
}

// ---------------------------------------------------------------------------------------------
// nft JSON

/// Parses `nft -j list ruleset` output. Unknown objects (sets, maps, counters, flowtables) are
/// ignored; rules whose chain was never declared still count, without a direction.
pub fn parse_nft_json(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let root: Value = serde_json::from_slice(bytes).map_err(ParseError::Json)?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or(ParseError::Shape)?;

    struct Chain {
        key: (String, String, String),
        hook: Option<String>,
        policy: Option<String>,
    }
    let mut parsed = Parsed::default();
    let mut chains: Vec<Chain> = Vec::new();
    let mut hooks: HashMap<(String, String, String), Option<String>> = HashMap::new();
    let mut rules: Vec<&serde_json::Map<String, Value>> = Vec::new();

    for item in items {
        let Some(obj) = item.as_object() else {
            parsed.malformed += 1;
            continue;
        };
        if let Some(t) = obj.get("table") {
            match (str_field(t, "family"), str_field(t, "name")) {
                (Some(f), Some(n)) => parsed.tables.push((f.to_string(), n.to_string())),
                _ => parsed.malformed += 1,
            }
        } else if let Some(c) = obj.get("chain") {
            match (
                str_field(c, "family"),
                str_field(c, "table"),
                str_field(c, "name"),
            ) {
                (Some(f), Some(t), Some(n)) => {
                    let key = (f.to_string(), t.to_string(), n.to_string());
                    let hook = str_field(c, "hook").map(str::to_string);
                    hooks.insert(key.clone(), hook.clone());
                    chains.push(Chain {
                        key,
                        hook,
                        policy: str_field(c, "policy").map(str::to_string),
                    });
                }
                _ => parsed.malformed += 1,
            }
        } else if let Some(r) = obj.get("rule") {
            match r.as_object() {
                Some(r) => rules.push(r),
                None => parsed.malformed += 1,
            }
        }
    }

    let mut positions: HashMap<(String, String, String), i64> = HashMap::new();
    for r in rules {
        let (Some(family), Some(table), Some(chain)) = (
            r.get("family").and_then(Value::as_str),
            r.get("table").and_then(Value::as_str),
            r.get("chain").and_then(Value::as_str),
        ) else {
            parsed.malformed += 1;
            continue;
        };
        let key = (family.to_string(), table.to_string(), chain.to_string());
        let position = positions.entry(key.clone()).or_insert(0);
        *position += 1;
        let hook = hooks.get(&key).cloned().flatten();
        let expr = r.get("expr").and_then(Value::as_array);
        let mut rule = nft_rule(expr.map(Vec::as_slice).unwrap_or(&[]), hook.as_deref());
        rule.priority = Some(*position);
        rule.chain_name = Some(format!("{table}/{chain}"));
        let extra = &mut rule.extra_details;
        extra.insert("Family".into(), family.to_string());
        extra.insert("Backend".into(), Backend::Nftables.as_str().into());
        if let Some(h) = &hook {
            extra.insert("Hook".into(), h.clone());
        }
        if let Some(handle) = r.get("handle").and_then(Value::as_u64) {
            extra.insert("Handle".into(), handle.to_string());
        }
        if let Some(c) = r.get("comment").and_then(Value::as_str) {
            extra.insert("Comment".into(), truncate(c, MAX_RULE_TEXT));
        }
        let text = expr
            .map(|e| Value::Array(e.clone()).to_string())
            .unwrap_or_default();
        extra.insert("Rule".into(), truncate(&text, MAX_RULE_TEXT));
        parsed.rules.push(rule);
    }

    for c in chains {
        let (Some(hook), Some(policy)) = (c.hook, c.policy) else {
            continue;
        };
        let (family, table, chain) = &c.key;
        let count = positions.get(&c.key).copied().unwrap_or(0);
        let mut rule = policy_rule(
            &policy,
            format!("{table}/{chain}"),
            hook_direction(&hook),
            count + 1,
        );
        let extra = &mut rule.extra_details;
        extra.insert("Family".into(), family.clone());
        extra.insert("Backend".into(), Backend::Nftables.as_str().into());
        extra.insert("Hook".into(), hook);
        extra.insert("Rule".into(), format!("policy {policy}"));
        parsed.rules.push(rule);
    }
    Ok(parsed)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Builds one record from a rule's expressions: the match fields we can name, and its verdict.
fn nft_rule(exprs: &[Value], hook: Option<&str>) -> FirewallRule {
    let mut rule = empty_rule(hook.and_then(hook_direction));
    let mut verdict: Option<(FirewallAction, String)> = None;
    let mut other: Option<String> = None;
    for e in exprs {
        let Some((name, body)) = e.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match name.as_str() {
            "match" => nft_match(body, &mut rule),
            "accept" => verdict = Some((FirewallAction::Allow, "accept".into())),
            "drop" => verdict = Some((FirewallAction::Deny, "drop".into())),
            "reject" => verdict = Some((FirewallAction::Deny, "reject".into())),
            "jump" | "goto" => {
                let target = str_field(body, "target").unwrap_or("?");
                verdict = Some((FirewallAction::Other, format!("{name} {target}")));
            }
            "return" | "continue" | "queue" | "vmap" => {
                verdict = Some((FirewallAction::Other, name.clone()));
            }
            "xt" if str_field(body, "type") == Some("target") => {
                let target = str_field(body, "name").unwrap_or("?");
                verdict = Some((iptables_target_action(target), target.to_string()));
            }
            "counter" | "limit" | "xt" | "quota" => {}
            // log, dnat, snat, masquerade, redirect, notrack, mangle, dup, fwd, ct helper, …
            _ => other = Some(name.clone()),
        }
    }
    let (action, target) = verdict
        .or_else(|| other.map(|o| (FirewallAction::Other, o)))
        .unwrap_or((FirewallAction::Other, "continue".into()));
    rule.action = action;
    if action == FirewallAction::Other {
        rule.extra_details.insert("Target".into(), target);
    }
    rule
}

/// Reads one `{"match": {"op", "left", "right"}}` into the record's fields.
fn nft_match(body: &Value, rule: &mut FirewallRule) {
    let (Some(left), Some(right)) = (body.get("left"), body.get("right")) else {
        return;
    };
    let negated = str_field(body, "op") == Some("!=");
    let value = || {
        let v = nft_value(right);
        if negated { format!("!{v}") } else { v }
    };
    if let Some(p) = left.get("payload") {
        let proto = str_field(p, "protocol").unwrap_or("");
        let field = str_field(p, "field").unwrap_or("");
        match (proto, field) {
            ("ip" | "ip6" | "arp", "saddr") => set_once(&mut rule.source_address, value()),
            ("ip" | "ip6" | "arp", "daddr") => set_once(&mut rule.destination_address, value()),
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                set_once(&mut rule.protocol, protocol_name(&nft_value(right)))
            }
            (_, "sport") => {
                set_once(&mut rule.source_port, value());
                implied_protocol(rule, proto);
            }
            (_, "dport") => {
                set_once(&mut rule.destination_port, value());
                implied_protocol(rule, proto);
            }
            ("icmp" | "icmpv6", _) => implied_protocol(rule, proto),
            _ => {}
        }
    } else if let Some(m) = left.get("meta") {
        match str_field(m, "key") {
            Some("l4proto") => set_once(&mut rule.protocol, protocol_name(&nft_value(right))),
            Some("iif" | "iifname") => {
                rule.extra_details.insert("InInterface".into(), value());
            }
            Some("oif" | "oifname") => {
                rule.extra_details.insert("OutInterface".into(), value());
            }
            _ => {}
        }
    }
}

fn implied_protocol(rule: &mut FirewallRule, proto: &str) {
    // `th` is "any transport header": no protocol implied.
    if !proto.is_empty() && proto != "th" {
        set_once(&mut rule.protocol, protocol_name(proto));
    }
}

/// The first match on a field wins; later ones stay visible in `ExtraDetails.Rule`.
fn set_once(slot: &mut Option<String>, value: String) {
    if slot.is_none() && !value.is_empty() {
        *slot = Some(value);
    }
}

/// Formats an nft right-hand value: `10.0.0.0/8`, `1000-2000`, `22,443`, `@setname`.
fn nft_value(v: &Value) -> String {
    fn go(v: &Value, depth: usize) -> String {
        if depth > 8 {
            return "?".into();
        }
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => items
                .iter()
                .map(|i| go(i, depth + 1))
                .collect::<Vec<_>>()
                .join(","),
            Value::Object(o) => {
                if let Some(p) = o.get("prefix") {
                    let addr = p.get("addr").map(|a| go(a, depth + 1)).unwrap_or_default();
                    let len = p.get("len").map(|l| go(l, depth + 1)).unwrap_or_default();
                    format!("{addr}/{len}")
                } else if let Some(Value::Array(r)) = o.get("range") {
                    r.iter()
                        .map(|i| go(i, depth + 1))
                        .collect::<Vec<_>>()
                        .join("-")
                } else if let Some(s) = o.get("set") {
                    go(s, depth + 1)
                } else {
                    truncate(&v.to_string(), 64)
                }
            }
            Value::Null => String::new(),
        }
    }
    truncate(&go(v, 0), MAX_RULE_TEXT)
}

// ---------------------------------------------------------------------------------------------
// iptables-save text

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
            extra.insert("Rule".into(), truncate(&format!(":{chain} {policy}"), 64));
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
                    .insert("Comment".into(), truncate(&v, MAX_RULE_TEXT));
            }
            "-j" | "--jump" => target = Some(it.next()?.to_string()),
            "-g" | "--goto" => goto = Some(it.next()?.to_string()),
            _ => {
                // Any other option: skip its arguments (tokens up to the next option).
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
        extra.insert("Matches".into(), truncate(&matches.join(","), 128));
    }
    extra.insert("Family".into(), family.as_str().into());
    extra.insert("Backend".into(), backend.as_str().into());
    extra.insert("Rule".into(), truncate(line, MAX_RULE_TEXT));
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

fn iptables_target_action(target: &str) -> FirewallAction {
    match target {
        "ACCEPT" => FirewallAction::Allow,
        "DROP" | "REJECT" => FirewallAction::Deny,
        _ => FirewallAction::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// shared record helpers

fn empty_rule(direction: Option<Direction>) -> FirewallRule {
    FirewallRule {
        enabled: true,
        action: FirewallAction::Other,
        priority: None,
        chain_name: None,
        direction,
        application: None,
        source_address: None,
        source_port: None,
        destination_address: None,
        destination_port: None,
        protocol: None,
        extra_details: ExtraDetails::new(),
    }
}

fn policy_rule(
    policy: &str,
    chain_name: String,
    direction: Option<Direction>,
    priority: i64,
) -> FirewallRule {
    let mut rule = empty_rule(direction);
    rule.action = match policy.to_ascii_lowercase().as_str() {
        "accept" => FirewallAction::Allow,
        "drop" | "reject" => FirewallAction::Deny,
        _ => FirewallAction::Other,
    };
    if rule.action == FirewallAction::Other {
        rule.extra_details
            .insert("Target".into(), truncate(policy, 64));
    }
    rule.priority = Some(priority);
    rule.chain_name = Some(chain_name);
    rule.extra_details.insert("Policy".into(), "true".into());
    rule
}

fn hook_direction(hook: &str) -> Option<Direction> {
    match hook {
        "input" | "prerouting" | "ingress" => Some(Direction::In),
        "output" | "postrouting" | "egress" => Some(Direction::Out),
        _ => None,
    }
}

fn builtin_direction(chain: &str) -> Option<Direction> {
    match chain {
        "INPUT" | "PREROUTING" => Some(Direction::In),
        "OUTPUT" | "POSTROUTING" => Some(Direction::Out),
        _ => None,
    }
}

/// `TCP`, `UDP`, `ICMP`, `ICMPV6`, … from a name or an IP protocol number.
fn protocol_name(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "1" | "icmp" => "ICMP".into(),
        "6" | "tcp" => "TCP".into(),
        "17" | "udp" => "UDP".into(),
        "58" | "icmpv6" | "ipv6-icmp" | "icmp6" => "ICMPV6".into(),
        "132" | "sctp" => "SCTP".into(),
        "33" | "dccp" => "DCCP".into(),
        "136" | "udplite" => "UDPLITE".into(),
        "47" | "gre" => "GRE".into(),
        "50" | "esp" => "ESP".into(),
        "51" | "ah" => "AH".into(),
        other => truncate(&other.to_ascii_uppercase(), 32),
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    crate::text::prefix_within(s, max).to_string()
}

// ---------------------------------------------------------------------------------------------
// running the host's tools

/// One tool the collector may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// `None` for nft (its JSON names each table's family).
    pub family: Option<IpFamily>,
    /// `None` for plain `iptables-save`, whose backend is read from its output header.
    pub backend: Option<Backend>,
}

const NFT: Tool = Tool {
    program: "nft",
    args: &["-j", "list", "ruleset"],
    family: None,
    backend: Some(Backend::Nftables),
};

/// The iptables tools per family: legacy variant, nft variant, plain fallback.
const IPTABLES: [(IpFamily, [&str; 3]); 2] = [
    (
        IpFamily::V4,
        ["iptables-legacy-save", "iptables-nft-save", "iptables-save"],
    ),
    (
        IpFamily::V6,
        [
            "ip6tables-legacy-save",
            "ip6tables-nft-save",
            "ip6tables-save",
        ],
    ),
];

/// The result of running one tool.
#[derive(Debug)]
pub struct ToolRun {
    pub tool: Tool,
    pub result: Result<Vec<u8>, ToolError>,
}

/// Finds `program` in [`TOOL_DIRS`] under `root`; the path returned is the one to exec (inside
/// the chroot when `root` is not `/`). A dangling symlink still counts: exec reports it missing.
fn find_tool(root: &Path, program: &str) -> Option<String> {
    TOOL_DIRS.iter().find_map(|dir| {
        let inside = format!("{dir}/{program}");
        let outside = root.join(inside.trim_start_matches('/'));
        std::fs::symlink_metadata(outside).ok().map(|_| inside)
    })
}

/// Runs `program` from the host (chrooted into `root` when `chroot`), with a clean environment,
/// a time limit and an output cap. Returns its stdout.
pub fn run_tool(
    root: &Path,
    chroot: bool,
    program: &str,
    args: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<Vec<u8>, ToolError> {
    let path = find_tool(root, program).ok_or(ToolError::NotFound)?;
    let mut cmd = Command::new(&path);
    cmd.args(args)
        .env_clear()
        .env("PATH", TOOL_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if chroot {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        let dir =
            std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(|_| ToolError::BadRoot)?;
        // SAFETY: the closure runs in the forked child just before exec. It only calls chroot(2)
        // and chdir(2), which are async-signal-safe, on a C string allocated before the fork, and
        // it allocates nothing itself (`last_os_error` reads errno).
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ToolError::NotFound,
        _ => ToolError::Spawn(e),
    })?;

    // Both pipes are drained on their own threads so a chatty stderr cannot block the tool. The
    // stdout reader stops at the cap and raises `overflow`, and the tool is killed. Results come
    // back over channels with a grace period: a grandchild that inherited a pipe must not hang
    // the collector (its reader thread ends when the pipe closes).
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let overflow = overflow.clone();
        spawn_reader(&mut child, move || {
            let mut buf = Vec::new();
            let r = out.take(max_output as u64 + 1).read_to_end(&mut buf);
            if buf.len() > max_output {
                overflow.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = out_tx.send(r.map(|_| buf));
        })?;
    }
    if let Some(mut err) = child.stderr.take() {
        spawn_reader(&mut child, move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(4096).read_to_end(&mut buf);
            let _ = err_tx.send(buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
        })?;
    }

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if overflow.load(std::sync::atomic::Ordering::SeqCst) => {
                break Err(ToolError::TooLarge(max_output));
            }
            Ok(None) if Instant::now() >= deadline => break Err(ToolError::Timeout(timeout)),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(ToolError::Io(e)),
        }
    };
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status?;
    let out = match out_rx.recv_timeout(Duration::from_secs(1)) {
        Ok(out) => out,
        Err(_) => return Err(ToolError::Timeout(timeout)),
    };
    let err = err_rx
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    let out = out.map_err(ToolError::Io)?;
    if out.len() > max_output {
        return Err(ToolError::TooLarge(max_output));
    }
    if !status.success() {
        return Err(ToolError::Failed {
            status: status.to_string(),
            stderr: truncate(String::from_utf8_lossy(&err).trim(), 300),
        });
    }
    Ok(out)
}

/// Starts a pipe reader thread; if the thread cannot be created, the tool is killed.
fn spawn_reader(
    child: &mut std::process::Child,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), ToolError> {
    match std::thread::Builder::new()
        .name("firewall-tool-pipe".into())
        .spawn(f)
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(ToolError::Io(e))
        }
    }
}

/// Runs every tool the host has: nft, then per family the legacy and nft iptables variants, or
/// the plain `iptables-save` when neither variant exists (an old distribution).
fn run_all(root: &Path) -> Vec<ToolRun> {
    let chroot = root != Path::new("/");
    let run = |tool: Tool| ToolRun {
        tool,
        result: run_tool(
            root,
            chroot,
            tool.program,
            tool.args,
            TOOL_TIMEOUT,
            MAX_TOOL_OUTPUT,
        ),
    };
    let mut runs = vec![run(NFT)];
    for (family, [legacy, nft, plain]) in IPTABLES {
        let tool = |program, backend| Tool {
            program,
            args: &[],
            family: Some(family),
            backend,
        };
        let l = run(tool(legacy, Some(Backend::IptablesLegacy)));
        let n = run(tool(nft, Some(Backend::IptablesNft)));
        let neither = matches!(l.result, Err(ToolError::NotFound))
            && matches!(n.result, Err(ToolError::NotFound));
        runs.push(l);
        runs.push(n);
        if neither {
            runs.push(run(tool(plain, None)));
        }
    }
    runs
}

/// The backend a plain `iptables-save` used, from its `# Generated by … (nf_tables)` header.
/// Legacy builds print no suffix (or `(legacy)`).
fn detect_backend(output: &[u8]) -> Backend {
    let head = &output[..output.len().min(4096)];
    let head = String::from_utf8_lossy(head);
    if head
        .lines()
        .any(|l| l.starts_with('#') && l.contains("(nf_tables)"))
    {
        Backend::IptablesNft
    } else {
        Backend::IptablesLegacy
    }
}

/// What one snapshot found.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub rules: Vec<FirewallRule>,
    /// Backends whose tool answered, in order, without repeats.
    pub checked: Vec<Backend>,
    /// Tools that are not installed.
    pub missing: Vec<&'static str>,
    /// Tools that failed or printed something unparsable: `tool: reason`.
    pub problems: Vec<String>,
}

/// Merges the tools' outputs into one ruleset (see the module doc for de-duplication).
pub fn snapshot(runs: &[ToolRun]) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut nft: Option<Parsed> = None;
    let mut iptables: Vec<Parsed> = Vec::new();
    let mut nft_owned: HashSet<(String, String)> = HashSet::new();

    for run in runs {
        let bytes = match &run.result {
            Ok(b) => b,
            Err(ToolError::NotFound) => {
                snap.missing.push(run.tool.program);
                continue;
            }
            Err(e) => {
                snap.problems
                    .push(format!("{}: {}", run.tool.program, error_chain(e)));
                continue;
            }
        };
        let backend = run.tool.backend.unwrap_or_else(|| detect_backend(bytes));
        let parsed = match run.tool.family {
            None => match parse_nft_json(bytes) {
                Ok(p) => p,
                Err(e) => {
                    snap.problems
                        .push(format!("{}: {}", run.tool.program, error_chain(&e)));
                    continue;
                }
            },
            Some(family) => parse_iptables_save(bytes, family, backend),
        };
        if parsed.malformed > 0 || parsed.truncated {
            tracing::debug!(
                tool = run.tool.program,
                malformed = parsed.malformed,
                truncated = parsed.truncated,
                "firewall listing had lines that did not parse"
            );
        }
        if !snap.checked.contains(&backend) {
            snap.checked.push(backend);
        }
        if backend == Backend::IptablesNft {
            nft_owned.extend(parsed.tables.iter().cloned());
        }
        if run.tool.family.is_none() {
            nft = Some(parsed);
        } else {
            iptables.push(parsed);
        }
    }

    if let Some(p) = nft {
        snap.rules.extend(p.rules.into_iter().filter(|r| {
            let family = r.extra_details.get("Family").map(String::as_str);
            let table = r
                .chain_name
                .as_deref()
                .and_then(|c| c.split_once('/'))
                .map(|(t, _)| t);
            match (family, table) {
                (Some(f), Some(t)) => !nft_owned.contains(&(f.to_string(), t.to_string())),
                _ => true,
            }
        }));
    }
    for p in iptables {
        snap.rules.extend(p.rules);
    }
    snap
}

/// True when nothing filters: no rule at all and every policy accepts.
fn filters_nothing(rules: &[FirewallRule]) -> bool {
    rules.iter().all(|r| {
        r.extra_details.get("Policy").is_some_and(|p| p == "true")
            && r.action == FirewallAction::Allow
    })
}

/// The explicit "checked, and nothing filters" record.
fn no_firewall_record(checked: &[Backend], base_chains: usize) -> FirewallRule {
    let mut rule = empty_rule(None);
    rule.enabled = false;
    rule.action = FirewallAction::Allow;
    rule.chain_name = Some("none".into());
    let extra = &mut rule.extra_details;
    extra.insert("NoFirewall".into(), "true".into());
    extra.insert(
        "Backend".into(),
        checked
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    extra.insert("AcceptingBaseChains".into(), base_chains.to_string());
    rule
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

/// Turns a snapshot into the records to send, and the health it implies.
pub fn records(snap: Snapshot) -> (Vec<FirewallRule>, CollectorHealth, String) {
    let (health, message) = if snap.checked.is_empty() {
        let mut parts = Vec::new();
        if !snap.missing.is_empty() {
            parts.push(format!(
                "no firewall tool found under the host root (missing: {})",
                snap.missing.join(", ")
            ));
        }
        parts.extend(snap.problems.iter().cloned());
        (CollectorHealth::Degraded, parts.join("; "))
    } else if !snap.problems.is_empty() {
        (
            CollectorHealth::Degraded,
            format!(
                "part of the ruleset unreadable: {}",
                snap.problems.join("; ")
            ),
        )
    } else {
        (
            CollectorHealth::Up,
            format!(
                "reading the ruleset from {}",
                snap.checked
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    if snap.checked.is_empty() {
        return (Vec::new(), health, message);
    }
    let mut rules = snap.rules;
    // "No firewall" is a claim about the whole ruleset: only when every tool answered.
    if filters_nothing(&rules) && snap.problems.is_empty() {
        rules = vec![no_firewall_record(&snap.checked, rules.len())];
    }
    if rules.len() > MAX_RULES {
        tracing::warn!(
            rules = rules.len(),
            kept = MAX_RULES,
            "firewall ruleset larger than one snapshot carries; the rest is left out"
        );
        rules.truncate(MAX_RULES);
    }
    (rules, health, message)
}

/// Runs a tool; swapped out in tests.
type Runner = Box<dyn FnMut(&Path) -> Vec<ToolRun> + Send>;

/// The periodic `FirewallConfiguration` collector. Blocking (it runs processes): called by
/// `run_periodic` on a blocking thread like every [`Periodic`].
pub struct FirewallCollector {
    metrics: Arc<Metrics>,
    runner: Runner,
    /// The last health reported, so a status event is sent on changes only.
    last: Option<(CollectorHealth, String)>,
}

impl FirewallCollector {
    pub fn new(metrics: Arc<Metrics>) -> FirewallCollector {
        FirewallCollector {
            metrics,
            runner: Box::new(run_all),
            last: None,
        }
    }

    #[cfg(test)]
    fn with_runner(metrics: Arc<Metrics>, runner: Runner) -> FirewallCollector {
        FirewallCollector {
            metrics,
            runner,
            last: None,
        }
    }

    /// A `CollectorStatus` event when health changed: Degraded whenever the message changes, Up
    /// only when recovering (a healthy start is not news).
    fn status_event(&mut self, health: CollectorHealth, message: String) -> Option<Event> {
        let changed = match &self.last {
            None => health != CollectorHealth::Up,
            Some((h, m)) => *h != health || (health != CollectorHealth::Up && *m != message),
        };
        self.metrics.collector_status(COLLECTOR, health, &message);
        self.last = Some((health, message.clone()));
        if !changed {
            return None;
        }
        match health {
            CollectorHealth::Up => tracing::info!(collector = COLLECTOR, "{message}"),
            _ => tracing::warn!(collector = COLLECTOR, status = health.as_str(), "{message}"),
        }
        let fallback = (health != CollectorHealth::Up)
            .then(|| "reporting the backends that answered; none: empty snapshot".to_string());
        Some(Event::new(Payload::CollectorStatus(vec![
            CollectorStatus {
                collector: COLLECTOR.to_string(),
                status: health,
                message,
                fallback,
                extra_details: ExtraDetails::new(),
            },
        ])))
    }
}

impl Periodic for FirewallCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let runs = (self.runner)(host.root());
        for run in &runs {
            if let Err(e) = &run.result
                && !matches!(e, ToolError::NotFound)
            {
                self.metrics.error(COLLECTOR, "tool_failed");
            }
        }
        let (rules, health, message) = records(snapshot(&runs));
        let mut events = Vec::new();
        if let Some(status) = self.status_event(health, message) {
            events.push(status);
        }
        events.push(if rules.is_empty() {
            Event::empty_snapshot(EventKind::FirewallConfiguration)
        } else {
            Event::new(Payload::FirewallConfiguration(rules))
        });
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/firewall")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn find<'a>(rules: &'a [FirewallRule], chain: &str, priority: i64) -> &'a FirewallRule {
        rules
            .iter()
            .find(|r| r.chain_name.as_deref() == Some(chain) && r.priority == Some(priority))
            .unwrap_or_else(|| panic!("no rule {chain}#{priority} in {rules:#?}"))
    }

    fn extra<'a>(r: &'a FirewallRule, key: &str) -> Option<&'a str> {
        r.extra_details.get(key).map(String::as_str)
    }

    #[test]
    fn nft_json_with_several_families_maps_every_rule_and_policy() {
        let p = parse_nft_json(&fixture("nft-families.json")).unwrap();
        assert_eq!(p.malformed, 0);
        assert_eq!(
            p.tables,
            [
                ("inet".to_string(), "filter".to_string()),
                ("ip".into(), "nat".into()),
                ("ip6".into(), "raw6".into()),
                ("netdev".into(), "ingress0".into()),
                ("bridge".into(), "br0".into()),
            ]
        );
        let r = &p.rules;
        // 11 input + 1 output + 2 custom + 1 other + 2 nat + 1 raw6 + 1 bridge = 19 rules,
        // plus policies of 3 inet base chains, 2 nat, 1 raw6, 1 netdev, 1 bridge = 8.
        assert_eq!(r.len(), 27);

        let ssh = find(r, "filter/input", 3);
        assert_eq!(ssh.action, FirewallAction::Allow);
        assert_eq!(ssh.direction, Some(Direction::In));
        assert_eq!(ssh.source_address.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ssh.destination_port.as_deref(), Some("22"));
        assert_eq!(ssh.protocol.as_deref(), Some("TCP"));
        assert_eq!(extra(ssh, "Family"), Some("inet"));
        assert_eq!(extra(ssh, "Backend"), Some("nftables"));
        assert_eq!(extra(ssh, "Comment"), Some("ssh from lan"));
        assert!(extra(ssh, "Rule").unwrap().contains("\"saddr\""));

        let v6 = find(r, "filter/input", 4);
        assert_eq!(v6.source_address.as_deref(), Some("2001:db8::/32"));
        assert_eq!(v6.destination_port.as_deref(), Some("22,443"));

        let range = find(r, "filter/input", 5);
        assert_eq!(range.action, FirewallAction::Deny);
        assert_eq!(range.destination_port.as_deref(), Some("1000-2000"));
        assert_eq!(range.protocol.as_deref(), Some("UDP"));

        assert_eq!(
            find(r, "filter/input", 6).source_address.as_deref(),
            Some("@blocked")
        );
        let reject = find(r, "filter/input", 7);
        assert_eq!(reject.action, FirewallAction::Deny);
        assert_eq!(reject.source_address.as_deref(), Some("!192.168.0.0/16"));
        assert_eq!(find(r, "filter/input", 8).protocol.as_deref(), Some("ICMP"));
        assert_eq!(
            find(r, "filter/input", 9).protocol.as_deref(),
            Some("ICMPV6")
        );
        let jump = find(r, "filter/input", 10);
        assert_eq!(jump.action, FirewallAction::Other);
        assert_eq!(extra(jump, "Target"), Some("jump custom"));
        assert_eq!(extra(find(r, "filter/input", 11), "Target"), Some("log"));
        assert_eq!(extra(find(r, "filter/input", 2), "InInterface"), Some("lo"));

        let policy = find(r, "filter/input", 12);
        assert_eq!(extra(policy, "Policy"), Some("true"));
        assert_eq!(policy.action, FirewallAction::Deny);
        assert_eq!(policy.direction, Some(Direction::In));

        let out = find(r, "filter/output", 1);
        assert_eq!(out.direction, Some(Direction::Out));
        assert_eq!(out.destination_address.as_deref(), Some("203.0.113.0/24"));
        assert_eq!(out.source_port.as_deref(), Some("1024-65535"));
        assert_eq!(find(r, "filter/forward", 1).direction, None);

        let ret = find(r, "filter/custom", 1);
        assert_eq!((ret.action, ret.direction), (FirewallAction::Other, None));
        assert_eq!(extra(ret, "Target"), Some("return"));
        let goto = find(r, "filter/custom", 2);
        assert_eq!(goto.source_address.as_deref(), Some("192.0.2.1-192.0.2.9"));
        assert_eq!(extra(goto, "Target"), Some("goto other"));
        assert_eq!(
            extra(find(r, "filter/other", 1), "Target"),
            Some("continue")
        );

        let dnat = find(r, "nat/prerouting", 1);
        assert_eq!(extra(dnat, "Target"), Some("dnat"));
        assert_eq!(extra(dnat, "Family"), Some("ip"));
        assert_eq!(
            extra(find(r, "nat/postrouting", 1), "OutInterface"),
            Some("eth0")
        );
        let raw = find(r, "raw6/pre", 1);
        assert_eq!(raw.destination_address.as_deref(), Some("::1"));
        assert_eq!(extra(raw, "Family"), Some("ip6"));
        assert_eq!(
            find(r, "ingress0/ing", 1).direction,
            Some(Direction::In),
            "netdev ingress policy"
        );
        assert_eq!(find(r, "br0/brfwd", 1).action, FirewallAction::Allow);
    }

    #[test]
    fn iptables_save_maps_policies_custom_chains_and_odd_options() {
        let p = parse_iptables_save(
            &fixture("iptables-nft-save.txt"),
            IpFamily::V4,
            Backend::IptablesNft,
        );
        assert_eq!((p.malformed, p.truncated), (0, false));
        assert_eq!(
            p.tables,
            [
                ("ip".to_string(), "filter".to_string()),
                ("ip".into(), "nat".into())
            ]
        );
        let r = &p.rules;
        // 10 filter rules + 3 filter policies + 2 nat rules + 4 nat policies.
        assert_eq!(r.len(), 19);
        let lo = find(r, "filter/INPUT", 1);
        assert_eq!(
            (lo.action, lo.direction),
            (FirewallAction::Allow, Some(Direction::In))
        );
        assert_eq!(extra(lo, "InInterface"), Some("lo"));
        let ssh = find(r, "filter/INPUT", 3);
        assert_eq!(ssh.source_address.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ssh.destination_port.as_deref(), Some("22"));
        assert_eq!(ssh.protocol.as_deref(), Some("TCP"));
        assert_eq!(extra(ssh, "Comment"), Some("ssh \"lan\" access"));
        assert_eq!(extra(ssh, "Matches"), Some("tcp,comment"));
        assert_eq!(extra(ssh, "Backend"), Some("iptables-nft"));
        assert_eq!(
            find(r, "filter/INPUT", 4).destination_port.as_deref(),
            Some("53,123,1000-2000")
        );
        let reject = find(r, "filter/INPUT", 5);
        assert_eq!(reject.action, FirewallAction::Deny);
        assert_eq!(reject.source_address.as_deref(), Some("!192.168.0.0/16"));
        assert_eq!(reject.destination_port.as_deref(), Some("!8080"));
        assert_eq!(
            find(r, "filter/INPUT", 6).source_address.as_deref(),
            Some("192.0.2.1-192.0.2.9")
        );
        assert_eq!(find(r, "filter/INPUT", 7).protocol.as_deref(), Some("ICMP"));
        let policy = find(r, "filter/INPUT", 8);
        assert_eq!(
            (policy.action, extra(policy, "Policy")),
            (FirewallAction::Deny, Some("true"))
        );
        let jump = find(r, "filter/FORWARD", 1);
        assert_eq!((jump.action, jump.direction), (FirewallAction::Other, None));
        assert_eq!(extra(jump, "Target"), Some("DOCKER-USER"));
        assert_eq!(
            extra(find(r, "filter/DOCKER-USER", 1), "Target"),
            Some("RETURN")
        );
        assert!(
            !r.iter()
                .any(|r| r.chain_name.as_deref() == Some("filter/DOCKER-USER")
                    && extra(r, "Policy").is_some()),
            "user chains have no policy"
        );
        let log = find(r, "filter/OUTPUT", 1);
        assert_eq!(log.direction, Some(Direction::Out));
        assert_eq!(log.source_port.as_deref(), Some("1024-65535"));
        assert_eq!(extra(log, "Target"), Some("LOG"));
        assert_eq!(extra(find(r, "nat/PREROUTING", 1), "Target"), Some("DNAT"));

        let v6 = parse_iptables_save(
            &fixture("ip6tables-legacy-save.txt"),
            IpFamily::V6,
            Backend::IptablesLegacy,
        );
        let dns = find(&v6.rules, "filter/OUTPUT", 1);
        assert_eq!(dns.destination_address.as_deref(), Some("2001:db8::1/128"));
        assert_eq!(dns.protocol.as_deref(), Some("UDP"));
        assert_eq!(extra(dns, "Family"), Some("ip6"));
        assert_eq!(extra(dns, "Backend"), Some("iptables-legacy"));
    }

    #[test]
    fn iptables_save_handles_counters_old_negation_goto_and_garbage() {
        let text = "# comment\r\n\
            -A INPUT -j DROP\n\
            *filter\r\n\
            :INPUT ACCEPT [12:345]\n\
            :FORWARD DROP [0:0]\n\
            :weird\n\
            [5:300] -A INPUT -s ! 10.1.0.0/16 -p 17 --sport 53 -j ACCEPT\n\
            -A INPUT -p tcp --tcp-flags FIN,SYN,RST,ACK SYN -m state --state NEW -g LOGDROP\n\
            -A INPUT -m comment --comment \"unterminated\n\
            -A INPUT --some-flag -p all -j CUSTOM --with opts\n\
            -A\n\
            bogus line\n\
            -A NOTDECLARED -d 192.0.2.0/24 -j REJECT --reject-with icmp-port-unreachable\n\
            COMMIT\n\
            COMMIT\n\
            *nat\n\
            :PREROUTING ACCEPT [0:0]\n\
            -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 8080\n";
        let p = parse_iptables_save(text.as_bytes(), IpFamily::V4, Backend::IptablesLegacy);
        // -A before a table, `:weird`, unterminated quote, bare `-A`, `bogus line`, extra COMMIT.
        assert_eq!(p.malformed, 6);
        assert!(p.truncated, "nat table never committed");
        let r = &p.rules;
        let dns = find(r, "filter/INPUT", 1);
        assert_eq!(dns.source_address.as_deref(), Some("!10.1.0.0/16"));
        assert_eq!(dns.protocol.as_deref(), Some("UDP"));
        assert_eq!(dns.source_port.as_deref(), Some("53"));
        assert_eq!(dns.action, FirewallAction::Allow);
        let goto = find(r, "filter/INPUT", 2);
        assert_eq!(extra(goto, "Target"), Some("goto LOGDROP"));
        assert_eq!(extra(goto, "Matches"), Some("state"));
        let custom = find(r, "filter/INPUT", 3);
        assert_eq!(custom.protocol, None);
        assert_eq!(extra(custom, "Target"), Some("CUSTOM"));
        assert_eq!(
            find(r, "filter/NOTDECLARED", 1).action,
            FirewallAction::Deny
        );
        assert_eq!(find(r, "filter/INPUT", 4).action, FirewallAction::Allow);
        assert_eq!(find(r, "filter/FORWARD", 1).action, FirewallAction::Deny);
        let redirect = find(r, "nat/PREROUTING", 1);
        assert_eq!(redirect.destination_port.as_deref(), Some("80"));
        assert_eq!(extra(find(r, "nat/PREROUTING", 2), "Policy"), Some("true"));
    }

    #[test]
    fn malformed_and_truncated_input_never_panics() {
        let full = fixture("nft-families.json");
        let end = full.trim_ascii_end().len();
        for cut in [0, 1, 10, full.len() / 2, end - 1] {
            assert!(parse_nft_json(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(parse_nft_json(b"{}"), Err(ParseError::Shape)));
        assert!(matches!(
            parse_nft_json(b"{\"nftables\": 5}"),
            Err(ParseError::Shape)
        ));
        let odd = br#"{"nftables":[7,{"table":{}},{"chain":{"family":"ip"}},{"rule":3},
            {"rule":{"family":"ip","table":"t","chain":"c","expr":[{"match":{}},{"match":{"left":1,"right":{"prefix":{}}}},42,{"accept":null}]}},
            {"rule":{"family":"ip","table":"t","chain":"c"}}]}"#;
        let p = parse_nft_json(odd).unwrap();
        assert_eq!(p.malformed, 4);
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].action, FirewallAction::Allow);
        assert_eq!(p.rules[1].priority, Some(2));
        // Deep nesting stays within serde_json's recursion limit: an error, not a crash.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_nft_json(deep.as_bytes()).is_err());

        let text = fixture("iptables-nft-save.txt");
        for cut in 0..text.len() {
            let _ = parse_iptables_save(&text[..cut], IpFamily::V4, Backend::IptablesNft);
        }
        let cut = parse_iptables_save(&text[..text.len() / 2], IpFamily::V4, Backend::IptablesNft);
        assert!(cut.truncated);
        assert!(!cut.rules.is_empty());
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
        let _ = parse_iptables_save(&junk, IpFamily::V6, Backend::IptablesLegacy);
        let _ = parse_nft_json(&junk);
    }

    fn ok(
        program: &'static str,
        family: Option<IpFamily>,
        backend: Option<Backend>,
        out: &[u8],
    ) -> ToolRun {
        ToolRun {
            tool: Tool {
                program,
                args: &[],
                family,
                backend,
            },
            result: Ok(out.to_vec()),
        }
    }

    fn missing(program: &'static str, family: Option<IpFamily>) -> ToolRun {
        ToolRun {
            tool: Tool {
                program,
                args: &[],
                family,
                backend: None,
            },
            result: Err(ToolError::NotFound),
        }
    }

    #[test]
    fn iptables_nft_tables_are_taken_from_iptables_nft_save_not_nft() {
        let runs = [
            ok(
                "nft",
                None,
                Some(Backend::Nftables),
                &fixture("nft-with-iptables-nft.json"),
            ),
            ok(
                "iptables-nft-save",
                Some(IpFamily::V4),
                Some(Backend::IptablesNft),
                &fixture("iptables-nft-save.txt"),
            ),
            ok(
                "ip6tables-nft-save",
                Some(IpFamily::V6),
                Some(Backend::IptablesNft),
                &fixture("ip6tables-nft-save.txt"),
            ),
            ok(
                "iptables-legacy-save",
                Some(IpFamily::V4),
                Some(Backend::IptablesLegacy),
                &fixture("iptables-legacy-save.txt"),
            ),
        ];
        let snap = snapshot(&runs);
        assert!(snap.problems.is_empty());
        assert_eq!(
            snap.checked,
            [
                Backend::Nftables,
                Backend::IptablesNft,
                Backend::IptablesLegacy
            ]
        );
        assert!(
            snap.rules
                .iter()
                .all(|r| extra(r, "Backend") != Some("nftables")),
            "every nft table here belongs to iptables-nft"
        );
        let reject = snap
            .rules
            .iter()
            .find(|r| extra(r, "Rule").is_some_and(|t| t.contains("REJECT")))
            .unwrap();
        assert_eq!(reject.action, FirewallAction::Deny);
        // 19 (v4 nft) + 5 (v6 nft: 2 rules, 3 policies) + 10 (legacy: 2 rules, 8 policies).
        assert_eq!(snap.rules.len(), 34);
    }

    #[test]
    fn an_empty_ruleset_is_reported_as_no_firewall() {
        let empty_nft = br#"{"nftables":[{"metainfo":{"version":"1.0.6"}}]}"#;
        let accept_only = b"*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let runs = [
            ok("nft", None, Some(Backend::Nftables), empty_nft),
            ok(
                "iptables-legacy-save",
                Some(IpFamily::V4),
                Some(Backend::IptablesLegacy),
                accept_only,
            ),
            missing("iptables-nft-save", Some(IpFamily::V4)),
        ];
        let (rules, health, _) = records(snapshot(&runs));
        assert_eq!(health, CollectorHealth::Up);
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert!(!r.enabled);
        assert_eq!(r.action, FirewallAction::Allow);
        assert_eq!(r.chain_name.as_deref(), Some("none"));
        assert_eq!(extra(r, "NoFirewall"), Some("true"));
        assert_eq!(extra(r, "Backend"), Some("nftables,iptables-legacy"));
        assert_eq!(extra(r, "AcceptingBaseChains"), Some("2"));

        // With a backend unreadable, an empty listing proves nothing.
        let failed = ToolRun {
            tool: NFT,
            result: Err(ToolError::Timeout(TOOL_TIMEOUT)),
        };
        let runs = [
            failed,
            ok(
                "iptables-legacy-save",
                Some(IpFamily::V4),
                Some(Backend::IptablesLegacy),
                accept_only,
            ),
        ];
        let (rules, health, message) = records(snapshot(&runs));
        assert_eq!(health, CollectorHealth::Degraded);
        assert!(message.contains("nft: did not finish"), "{message}");
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| extra(r, "NoFirewall").is_none()));

        // A drop policy alone is a firewall.
        let drop = b"*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
        let runs = [ok(
            "iptables-legacy-save",
            Some(IpFamily::V4),
            Some(Backend::IptablesLegacy),
            drop,
        )];
        let (rules, _, _) = records(snapshot(&runs));
        assert_eq!(rules.len(), 1);
        assert!(rules[0].enabled);
        assert_eq!(rules[0].action, FirewallAction::Deny);
    }

    #[test]
    fn plain_iptables_save_backend_comes_from_its_header() {
        assert_eq!(
            detect_backend(b"# Generated by iptables-save v1.8.9 (nf_tables) on x\n*filter\n"),
            Backend::IptablesNft
        );
        assert_eq!(
            detect_backend(b"# Generated by iptables-save v1.8.9 on x\n"),
            Backend::IptablesLegacy
        );
        assert_eq!(
            detect_backend(b"# Generated by iptables-save v1.6.1 on x\n"),
            Backend::IptablesLegacy
        );
    }

    #[test]
    fn collector_reports_degraded_once_when_no_tool_exists_and_up_on_recovery() {
        let metrics = Arc::new(Metrics::for_tests());
        let present = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = present.clone();
        let mut c = FirewallCollector::with_runner(
            metrics.clone(),
            Box::new(move |_| {
                if p.load(std::sync::atomic::Ordering::SeqCst) {
                    vec![ok(
                        "nft",
                        None,
                        Some(Backend::Nftables),
                        br#"{"nftables":[{"chain":{"family":"inet","table":"t","name":"in","hook":"input","policy":"drop"}}]}"#,
                    )]
                } else {
                    vec![
                        missing("nft", None),
                        missing("iptables-save", Some(IpFamily::V4)),
                    ]
                }
            }),
        );
        let host = HostRoot::default();
        let first = c.collect(&host);
        assert_eq!(first.len(), 2);
        let Payload::CollectorStatus(s) = &first[0].payload else {
            panic!("status first: {first:?}")
        };
        assert_eq!(s[0].status, CollectorHealth::Degraded);
        assert!(
            s[0].message.contains("nft, iptables-save"),
            "{}",
            s[0].message
        );
        assert!(first[1].is_empty());
        assert_eq!(first[1].kind(), EventKind::FirewallConfiguration);

        let second = c.collect(&host);
        assert_eq!(second.len(), 1, "degraded is reported once");

        present.store(true, std::sync::atomic::Ordering::SeqCst);
        let third = c.collect(&host);
        let Payload::CollectorStatus(s) = &third[0].payload else {
            panic!("recovery status: {third:?}")
        };
        assert_eq!(s[0].status, CollectorHealth::Up);
        let Payload::FirewallConfiguration(rules) = &third[1].payload else {
            panic!("rules: {third:?}")
        };
        assert_eq!(rules[0].action, FirewallAction::Deny);
        assert_eq!(c.collect(&host).len(), 1, "steady Up is quiet");
    }

    #[test]
    fn run_tool_enforces_timeout_output_cap_and_reports_failures() {
        let root = Path::new("/");
        let t = Instant::now();
        let e = run_tool(
            root,
            false,
            "sleep",
            &["30"],
            Duration::from_millis(200),
            1024,
        );
        assert!(matches!(e, Err(ToolError::Timeout(_))), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let e = run_tool(root, false, "yes", &[], Duration::from_secs(5), 1000);
        assert!(matches!(e, Err(ToolError::TooLarge(1000))), "{e:?}");
        let e = run_tool(
            root,
            false,
            "ls",
            &["/definitely/not/here"],
            TOOL_TIMEOUT,
            1024,
        );
        let Err(ToolError::Failed { stderr, .. }) = e else {
            panic!("{e:?}")
        };
        assert!(stderr.contains("No such file"), "{stderr}");
        let e = run_tool(
            root,
            false,
            "no-such-tool-edgeguard",
            &[],
            TOOL_TIMEOUT,
            1024,
        );
        assert!(matches!(e, Err(ToolError::NotFound)));
        let empty = tempfile::tempdir().unwrap();
        let e = run_tool(empty.path(), true, "nft", &[], TOOL_TIMEOUT, 1024);
        assert!(
            matches!(e, Err(ToolError::NotFound)),
            "nothing under an empty root"
        );
        // A grandchild holding stdout open cannot hang the collector.
        let t = Instant::now();
        let e = run_tool(
            root,
            false,
            "sh",
            &["-c", "sleep 5 & echo hi"],
            TOOL_TIMEOUT,
            1024,
        );
        assert!(matches!(e, Err(ToolError::Timeout(_))), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // Chrooted into `/` works like a direct run.
        let out = run_tool(root, true, "echo", &["hi"], TOOL_TIMEOUT, 1024).unwrap();
        assert_eq!(out, b"hi\n");
    }

    /// Deletes the test table even when an assertion fails.
    struct TableGuard(String);

    impl Drop for TableGuard {
        fn drop(&mut self) {
            let _ = Command::new("nft")
                .args(["delete", "table", "inet", &self.0])
                .status();
        }
    }

    /// Against this machine's kernel: needs root and the Debian packages `nftables` and
    /// `iptables`. Skips (passes) when `nft` is not installed.
    #[test]
    fn real_ruleset_shows_a_table_we_add() {
        if find_tool(Path::new("/"), "nft").is_none() {
            eprintln!("skipping: nft not installed (apt-get install nftables iptables)");
            return;
        }
        let name = format!("edgeguard_test_{}", std::process::id());
        let guard = TableGuard(name.clone());
        let nft = |command: &str| {
            let st = Command::new("nft")
                .args(command.split_whitespace())
                .status()
                .unwrap();
            assert!(st.success(), "nft {command}");
        };
        nft(&format!("add table inet {name}"));
        nft(&format!(
            "add chain inet {name} in {{ type filter hook input priority 10 ; policy accept ; }}"
        ));
        // TEST-NET-1 never routes: the rule drops nothing real.
        nft(&format!(
            "add rule inet {name} in ip saddr 192.0.2.0/24 tcp dport 9 drop"
        ));

        {
            let root = HostRoot::default();
            let mut c = FirewallCollector::new(Arc::new(Metrics::for_tests()));
            let started = Instant::now();
            let events = c.collect(&root);
            eprintln!(
                "firewall snapshot of this host took {:?}",
                started.elapsed()
            );
            let rules: Vec<&FirewallRule> = events
                .iter()
                .filter_map(|e| match &e.payload {
                    Payload::FirewallConfiguration(r) => Some(r),
                    _ => None,
                })
                .flatten()
                .collect();
            let ours: Vec<&&FirewallRule> = rules
                .iter()
                .filter(|r| r.chain_name.as_deref() == Some(&format!("{name}/in")))
                .collect();
            assert_eq!(ours.len(), 2, "rule and policy: {rules:#?}");
            let drop = ours.iter().find(|r| r.priority == Some(1)).unwrap();
            assert_eq!(drop.action, FirewallAction::Deny);
            assert_eq!(drop.direction, Some(Direction::In));
            assert_eq!(drop.source_address.as_deref(), Some("192.0.2.0/24"));
            assert_eq!(drop.destination_port.as_deref(), Some("9"));
            assert_eq!(drop.protocol.as_deref(), Some("TCP"));
            assert_eq!(extra(drop, "Backend"), Some("nftables"));
            assert_eq!(extra(drop, "Family"), Some("inet"));
        }
        // Chrooted into `/`, as the module does with `/host`.
        let runs: Vec<ToolRun> = [NFT]
            .into_iter()
            .map(|tool| ToolRun {
                tool,
                result: run_tool(
                    Path::new("/"),
                    true,
                    tool.program,
                    tool.args,
                    TOOL_TIMEOUT,
                    MAX_TOOL_OUTPUT,
                ),
            })
            .collect();
        let snap = snapshot(&runs);
        assert!(
            snap.rules
                .iter()
                .any(|r| r.chain_name.as_deref() == Some(&format!("{name}/in"))),
            "chrooted nft lists the table"
        );
        drop(guard);
        let listing = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&listing.stdout).contains(&name));
    }
}
