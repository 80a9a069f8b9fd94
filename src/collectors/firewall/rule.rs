//! What the nft and iptables parsers share: empty and policy records, chain directions,
//! protocol names.

use crate::event::{Direction, ExtraDetails, FirewallAction, FirewallRule};
use crate::text::within_bytes;

pub(super) fn empty_rule(direction: Option<Direction>) -> FirewallRule {
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

pub(super) fn policy_rule(
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
            .insert("Target".into(), within_bytes(policy, 64));
    }
    rule.priority = Some(priority);
    rule.chain_name = Some(chain_name);
    rule.extra_details.insert("Policy".into(), "true".into());
    rule
}

/// Marks a rule with a condition its record's fields do not show (connection state, marks,
/// rate limits, other match modules): `ExtraDetails.MoreConditions`. A reader judging how
/// permissive a rule is (the recommender) must not take such a rule for "everything".
pub(super) fn more_conditions(rule: &mut FirewallRule) {
    rule.extra_details
        .insert("MoreConditions".into(), "true".into());
}

pub(super) fn hook_direction(hook: &str) -> Option<Direction> {
    match hook {
        "input" | "prerouting" | "ingress" => Some(Direction::In),
        "output" | "postrouting" | "egress" => Some(Direction::Out),
        _ => None,
    }
}

pub(super) fn builtin_direction(chain: &str) -> Option<Direction> {
    match chain {
        "INPUT" | "PREROUTING" => Some(Direction::In),
        "OUTPUT" | "POSTROUTING" => Some(Direction::Out),
        _ => None,
    }
}

/// `TCP`, `UDP`, `ICMP`, `ICMPV6`, … from a name or an IP protocol number.
pub(super) fn protocol_name(p: &str) -> String {
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
        other => within_bytes(&other.to_ascii_uppercase(), 32),
    }
}
