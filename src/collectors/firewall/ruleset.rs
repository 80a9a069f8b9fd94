//! One ruleset from every tool's output (de-duplicated), and the records and health it gives.

use super::{
    Backend, MAX_RULES, Parsed, ToolError, ToolRun, detect_backend, empty_rule,
    parse_iptables_save, parse_nft_json,
};
use crate::event::{CollectorHealth, FirewallAction, FirewallRule};
use crate::text::error_chain;
use std::collections::HashSet;

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
