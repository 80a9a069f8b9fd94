//! `nft -j list ruleset`: libnftables JSON to firewall rules.

use super::{
    Backend, MAX_RULE_TEXT, ParseError, Parsed, empty_rule, hook_direction, iptables_target_action,
    more_conditions, policy_rule, protocol_name,
};
use crate::event::{FirewallAction, FirewallRule};
use crate::text::within_bytes;
use serde_json::Value;
use std::collections::HashMap;

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
            extra.insert("Comment".into(), within_bytes(c, MAX_RULE_TEXT));
        }
        let text = expr
            .map(|e| Value::Array(e.clone()).to_string())
            .unwrap_or_default();
        extra.insert("Rule".into(), within_bytes(&text, MAX_RULE_TEXT));
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
            "counter" => {}
            "limit" | "xt" | "quota" => more_conditions(&mut rule),
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
            ("icmp" | "icmpv6", _) => {
                implied_protocol(rule, proto);
                more_conditions(rule);
            }
            _ => more_conditions(rule),
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
            _ => more_conditions(rule),
        }
    } else {
        // ct state, mark, socket, fib, … : a condition without a field of its own.
        more_conditions(rule);
    }
}

fn implied_protocol(rule: &mut FirewallRule, proto: &str) {
    // `th` is "any transport header": no protocol implied.
    if !proto.is_empty() && proto != "th" {
        set_once(&mut rule.protocol, protocol_name(proto));
    }
}

/// The first match on a field wins; later ones stay visible in `ExtraDetails.Rule`.
pub(super) fn set_once(slot: &mut Option<String>, value: String) {
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
                    within_bytes(&v.to_string(), 64)
                }
            }
            Value::Null => String::new(),
        }
    }
    within_bytes(&go(v, 0), MAX_RULE_TEXT)
}
