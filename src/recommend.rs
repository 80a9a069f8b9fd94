//! Recommendations: what to change on the device, derived from what passes through the pipeline.
//!
//! The retired service turned snapshots into recommendations in the cloud; here the pipeline
//! shows every event to a [`Recommender`] (after the detector), which keeps the current
//! recommendations of each source — listening ports, firewall policy, OS baseline, container
//! posture, message statistics — and of the twin configuration. When a message is about to be
//! cut and a source's snapshot arrived since the last one (so, after the snapshot timer's round)
//! and the whole set differs from the one last sent, [`Recommender::take`] gives one
//! `Recommendation` event with every current recommendation; an empty event once none is left.
//! Nothing is sent while nothing changes, and one snapshot round gives one event, not one per
//! source.

use crate::config::Config;
use crate::event::{
    BaselineResult, BaselineSeverity, ContainerInventory, Direction, Event, EventKind,
    ExtraDetails, FirewallAction, FirewallRule, ListeningPort, MessageStatistics, Payload,
    Recommendation,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// At most this many recommendations in one event (most severe first); the rest are counted in
/// the last one's `ExtraDetails.Omitted`.
pub const MAX_RECOMMENDATIONS: usize = 100;
/// A description lists at most this many items (checks, findings).
const MAX_LISTED: usize = 10;
/// Fewer messages than this in a statistics interval say nothing about their sizes.
const MIN_MESSAGES: u64 = 20;
/// IoT Hub bills device-to-cloud messages in 4 KB units.
const BILLING_UNIT: u64 = 4096;
/// The twin's default timers (security-events.md): shorter ones are what fill units poorly.
const DEFAULT_HIGH: Duration = Duration::from_secs(7 * 60);
const DEFAULT_LOW: Duration = Duration::from_secs(5 * 3600);
/// Findings that make an IoT Edge module a way onto the host.
const MODULE_PRIVILEGES: &[&str] = &[
    "privileged",
    "host-network",
    "host-pid",
    "docker-socket-mounted",
    "sensitive-host-path",
];

/// The source name of the twin configuration's recommendations.
const CONFIGURATION: &str = "Configuration";

fn rank(s: BaselineSeverity) -> u8 {
    match s {
        BaselineSeverity::Critical => 0,
        BaselineSeverity::Important => 1,
        BaselineSeverity::Warning => 2,
        BaselineSeverity::Informational => 3,
    }
}

/// Keeps the current recommendations per source; see the module documentation.
#[derive(Debug, Default)]
pub struct Recommender {
    by_source: BTreeMap<&'static str, Vec<Recommendation>>,
    /// What the last `Recommendation` event carried (`None`: none sent yet).
    sent: Option<Vec<Recommendation>>,
    /// A source was seen since [`Recommender::take`] last looked.
    dirty: bool,
    /// This agent's own module (`IOTEDGE_MODULEID`): it needs host PID and network by design,
    /// so its container is not recommended against.
    own_module: Option<String>,
}

impl Recommender {
    pub fn new() -> Recommender {
        Recommender {
            own_module: std::env::var("IOTEDGE_MODULEID")
                .ok()
                .filter(|m| !m.is_empty()),
            ..Recommender::default()
        }
    }

    /// Looks at one event: a source's snapshot replaces that source's recommendations.
    pub fn observe(&mut self, event: &Event, config: &Config) {
        // Another module's snapshot says nothing about this device.
        if event.foreign {
            return;
        }
        let (source, found) = match &event.payload {
            Payload::ListeningPorts(v) => ("ListeningPorts", open_ports(v)),
            Payload::FirewallConfiguration(v) => ("FirewallConfiguration", firewall(v)),
            Payload::OSBaseline(v) => ("OSBaseline", baseline(v)),
            Payload::ContainerInventory(v) => (
                "ContainerInventory",
                containers(v, self.own_module.as_deref()),
            ),
            Payload::MessageStatistics(v) => ("MessageStatistics", messages(v, config)),
            _ => return,
        };
        self.by_source.insert(source, found);
        self.by_source.insert(CONFIGURATION, configuration(config));
        self.dirty = true;
    }

    /// The `Recommendation` event to queue, when a source was seen since the last call and the
    /// set of recommendations differs from the one last sent.
    pub fn take(&mut self) -> Option<Event> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let mut all: Vec<Recommendation> = self.by_source.values().flatten().cloned().collect();
        all.sort_by(|a, b| {
            (rank(a.severity), &a.recommendation_id, &a.subject).cmp(&(
                rank(b.severity),
                &b.recommendation_id,
                &b.subject,
            ))
        });
        if all.len() > MAX_RECOMMENDATIONS {
            let omitted = all.len() - MAX_RECOMMENDATIONS;
            all.truncate(MAX_RECOMMENDATIONS);
            if let Some(last) = all.last_mut() {
                last.extra_details
                    .insert("Omitted".into(), omitted.to_string());
            }
        }
        let unchanged = match &self.sent {
            Some(sent) => *sent == all,
            None => all.is_empty(),
        };
        if unchanged {
            return None;
        }
        self.sent = Some(all.clone());
        Some(if all.is_empty() {
            Event::empty_snapshot(EventKind::Recommendation)
        } else {
            Event::new(Payload::Recommendation(all))
        })
    }
}

fn recommendation(
    id: &str,
    title: &str,
    severity: BaselineSeverity,
    subject: String,
    description: String,
    remediation: &str,
    source: &str,
) -> Recommendation {
    Recommendation {
        recommendation_id: id.into(),
        title: title.into(),
        severity,
        subject,
        description,
        remediation: remediation.into(),
        source: source.into(),
        extra_details: ExtraDetails::new(),
    }
}

/// Lists up to [`MAX_LISTED`] items, saying how many more there are.
fn listed<'a>(items: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = items.len();
    let mut text = items.take(MAX_LISTED).collect::<Vec<_>>().join("; ");
    if n > MAX_LISTED {
        text.push_str(&format!("; and {} more", n - MAX_LISTED));
    }
    text
}

/// A port of the host (not a container's own network namespace) open on every interface.
fn open_ports(ports: &[ListeningPort]) -> Vec<Recommendation> {
    let mut by_port: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in ports {
        let everywhere = p.local_address.is_none_or(|a| a.is_unspecified());
        if !everywhere || p.extra_details.contains_key("ContainerId") {
            continue;
        }
        let subject = format!("{}/{}", p.protocol.to_ascii_lowercase(), p.local_port);
        let programs = by_port.entry(subject).or_default();
        if let Some(exe) = p.extra_details.get("Executable") {
            if !programs.contains(exe) {
                programs.push(exe.clone());
            }
        }
    }
    by_port
        .into_iter()
        .map(|(subject, programs)| {
            let by = match programs.is_empty() {
                true => String::new(),
                false => format!(" ({})", programs.join(", ")),
            };
            let mut r = recommendation(
                "open-port-all-interfaces",
                "Port open on all interfaces",
                BaselineSeverity::Warning,
                subject.clone(),
                format!("{subject}{by} listens on every interface of the host, so every network the device is on can reach it"),
                "Bind the service to the address it serves (127.0.0.1 for local use), or allow the port only from the networks that need it in the firewall",
                "ListeningPorts",
            );
            if !programs.is_empty() {
                r.extra_details
                    .insert("Executable".into(), programs.join(","));
            }
            r
        })
        .collect()
}

/// An input or output chain whose default policy accepts, and rules in them that accept every
/// packet from anywhere ([`permissive`]).
fn firewall(rules: &[FirewallRule]) -> Vec<Recommendation> {
    let mut out = policies(rules);
    out.extend(rules.iter().filter_map(permissive));
    out
}

/// How much a chain that lets everything through exposes: incoming traffic more than outgoing.
fn exposure(direction: Direction) -> (BaselineSeverity, &'static str) {
    match direction {
        Direction::In => (BaselineSeverity::Important, "incoming"),
        Direction::Out => (BaselineSeverity::Warning, "outgoing"),
    }
}

/// An address condition that lets everything through (absent, or a whole address family).
fn any_address(a: &Option<String>) -> bool {
    a.as_deref()
        .is_none_or(|a| matches!(a, "" | "0.0.0.0/0" | "::/0" | "0/0"))
}

/// Whether a record's chain filters what the device receives or sends: iptables' filter table
/// (an ACCEPT in nat, mangle or raw filters nothing), nft chains on the input or output hook.
/// Records without a backend (hand-made) are judged by their direction alone.
fn judged_chain(r: &FirewallRule) -> bool {
    let extra = &r.extra_details;
    match extra.get("Backend").map(String::as_str) {
        Some(b) if b.starts_with("iptables") => r
            .chain_name
            .as_deref()
            .is_some_and(|c| c.starts_with("filter/")),
        Some("nftables") => matches!(
            extra.get("Hook").map(String::as_str),
            Some("input" | "output")
        ),
        _ => true,
    }
}

/// A rule (not a chain policy) of an input or output chain that accepts every packet from
/// anywhere: no address, port or condition beyond a protocol (ICMP aside: accepting pings is
/// ordinary), and not a loopback interface's rule.
fn permissive(r: &FirewallRule) -> Option<Recommendation> {
    let extra = &r.extra_details;
    if r.action != FirewallAction::Allow
        || !r.enabled
        || extra.contains_key("Policy")
        || extra.contains_key("MoreConditions")
    {
        return None;
    }
    if !judged_chain(r) {
        return None;
    }
    let chain = r.chain_name.as_deref().unwrap_or("");
    let loopback = |k: &str| extra.get(k).is_some_and(|i| i == "lo");
    if loopback("InInterface") || loopback("OutInterface") {
        return None;
    }
    let icmp = r.protocol.as_deref().is_some_and(|p| p.starts_with("ICMP"));
    let everything = any_address(&r.source_address)
        && any_address(&r.destination_address)
        && r.source_port.is_none()
        && r.destination_port.is_none()
        && !icmp;
    if !everything {
        return None;
    }
    let (severity, what) = exposure(r.direction?);
    let position = r.priority.map(|p| format!(" #{p}")).unwrap_or_default();
    let family = extra
        .get("Family")
        .map(|f| format!("{f} "))
        .unwrap_or_default();
    let subject = format!("{family}{chain}{position}");
    let protocol = r
        .protocol
        .as_deref()
        .map(|p| format!("{p} "))
        .unwrap_or_default();
    let interface = ["InInterface", "OutInterface"]
        .iter()
        .find_map(|k| extra.get(*k))
        .map(|i| format!(" on interface {i}"))
        .unwrap_or_default();
    let mut rec = recommendation(
        "permissive-firewall-rule",
        "Firewall rule accepts everything",
        severity,
        subject,
        format!(
            "rule{position} of chain {chain} accepts every {protocol}{what} packet{interface}, from any address to any port: the rules after it never see that traffic"
        ),
        "Narrow the rule to the sources and ports the device needs, or remove it and accept only established connections and the device's services",
        "FirewallConfiguration",
    );
    if let Some(text) = extra.get("Rule") {
        rec.extra_details.insert("Rule".into(), text.clone());
    }
    Some(rec)
}

/// An input or output chain whose default policy accepts.
fn policies(rules: &[FirewallRule]) -> Vec<Recommendation> {
    rules
        .iter()
        .filter(|r| r.extra_details.get("Policy").map(String::as_str) == Some("true"))
        .filter(|r| r.action == FirewallAction::Allow && judged_chain(r))
        .filter_map(|r| {
            let (severity, what) = exposure(r.direction?);
            let chain = r.chain_name.clone().unwrap_or_else(|| "(unnamed)".into());
            let family = r.extra_details.get("Family").cloned();
            let subject = match &family {
                Some(f) => format!("{f} {chain}"),
                None => chain.clone(),
            };
            Some(recommendation(
                "permissive-firewall-policy",
                "Firewall accepts by default",
                severity,
                subject,
                format!("chain {chain}'s default policy accepts every {what} packet no rule stops"),
                "Set the chain's policy to DROP and accept only what the device needs (established connections, loopback, its services)",
                "FirewallConfiguration",
            ))
        })
        .collect()
}

/// One recommendation per severity of failed OS baseline checks (not-applicable ones passed).
fn baseline(checks: &[crate::event::BaselineCheck]) -> Vec<Recommendation> {
    let mut failed: BTreeMap<u8, Vec<&crate::event::BaselineCheck>> = BTreeMap::new();
    for c in checks.iter().filter(|c| c.result == BaselineResult::Fail) {
        if c.severity != BaselineSeverity::Informational {
            failed.entry(rank(c.severity)).or_default().push(c);
        }
    }
    failed
        .into_values()
        .map(|checks| {
            let severity = checks[0].severity;
            let mut r = recommendation(
                "os-baseline-failed",
                "OS baseline checks failed",
                severity,
                format!("{severity:?}"),
                format!(
                    "{} {severity:?} OS baseline checks failed: {}",
                    checks.len(),
                    listed(checks.iter().map(|c| c.description.as_str()))
                ),
                "Apply each failed check's remediation (ExtraDetails.Remediation of the OSBaseline event)",
                "OSBaseline",
            );
            let ids: Vec<&str> = checks
                .iter()
                .map(|c| c.cce_id.as_str())
                .filter(|i| !i.is_empty())
                .collect();
            if !ids.is_empty() {
                r.extra_details.insert("CceIds".into(), ids.join(","));
            }
            r
        })
        .collect()
}

/// Containers with Critical or Important posture findings, and IoT Edge modules that run
/// privileged or with the host's namespaces, socket or system directories.
fn containers(inventory: &[ContainerInventory], own_module: Option<&str>) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for c in inventory {
        let name = c
            .container_name
            .clone()
            .unwrap_or_else(|| c.container_id.chars().take(12).collect());
        if c.module_name.is_some() && c.module_name.as_deref() == own_module {
            continue;
        }
        let serious: Vec<_> = c
            .findings
            .iter()
            .filter(|f| rank(f.severity) <= rank(BaselineSeverity::Important))
            .collect();
        if let Some(worst) = serious.iter().min_by_key(|f| rank(f.severity)) {
            let mut r = recommendation(
                "container-posture",
                "Container runs with risky settings",
                worst.severity,
                name.clone(),
                format!(
                    "container {name}: {}",
                    listed(serious.iter().map(|f| f.description.as_str()))
                ),
                &worst.remediation,
                "ContainerInventory",
            );
            let ids: Vec<&str> = serious.iter().map(|f| f.id.as_str()).collect();
            r.extra_details.insert("Findings".into(), ids.join(","));
            out.push(r);
        }
        let Some(module) = &c.module_name else {
            continue;
        };
        let privileges: Vec<&str> = c
            .findings
            .iter()
            .map(|f| f.id.as_str())
            .filter(|id| MODULE_PRIVILEGES.contains(id))
            .collect();
        if !privileges.is_empty() {
            let mut r = recommendation(
                "edge-module-privileged",
                "IoT Edge module runs with host privileges",
                BaselineSeverity::Important,
                module.clone(),
                format!(
                    "module {module} runs with {}: a compromise of the module is a compromise of the device",
                    privileges.join(", ")
                ),
                "Remove Privileged, NetworkMode/PidMode host and host-path binds from the module's createOptions in the deployment; grant the specific devices and capabilities it needs",
                "ContainerInventory",
            );
            r.extra_details
                .insert("Findings".into(), privileges.join(","));
            out.push(r);
        }
    }
    out
}

/// Many small messages under short timers: each message costs at least one 4 KB unit.
fn messages(stats: &[MessageStatistics], config: &Config) -> Vec<Recommendation> {
    let (sent, small) = stats.iter().fold((0, 0), |(s, u), m| {
        (s + m.messages_sent, u + m.messages_under_4kb)
    });
    let short_timers = config.high_priority_message_frequency < DEFAULT_HIGH
        || config.low_priority_message_frequency < DEFAULT_LOW;
    if sent < MIN_MESSAGES || small * 10 < sent || !short_timers {
        return Vec::new();
    }
    let mut r = recommendation(
        "under-utilised-messages",
        "Messages use little of their 4 KB billing units",
        BaselineSeverity::Informational,
        "twin".into(),
        format!(
            "{small} of {sent} messages were under {BILLING_UNIT} bytes, and the twin's timers are shorter than the defaults (high {}s, low {}s): IoT Hub bills every message at least one 4 KB unit",
            config.high_priority_message_frequency.as_secs(),
            config.low_priority_message_frequency.as_secs()
        ),
        "Raise highPriorityMessageFrequency and lowPriorityMessageFrequency (defaults PT7M and PT5H) so each message carries more events; alerts are sent at once whatever the timers",
        "MessageStatistics",
    );
    r.extra_details
        .insert("MessagesSent".into(), sent.to_string());
    r.extra_details
        .insert("MessagesUnder4KB".into(), small.to_string());
    vec![r]
}

/// Twin settings that defeat their purpose or each other.
fn configuration(config: &Config) -> Vec<Recommendation> {
    use crate::event::Priority;
    let mut out = Vec::new();
    let mut add = |id: &str, title: &str, severity, description: String, remediation: &str| {
        out.push(recommendation(
            id,
            title,
            severity,
            "twin".into(),
            description,
            remediation,
            CONFIGURATION,
        ))
    };
    let (high, low) = (
        config.high_priority_message_frequency,
        config.low_priority_message_frequency,
    );
    if high > low {
        add(
            "twin-timers-conflict",
            "High-priority events wait longer than low-priority ones",
            BaselineSeverity::Warning,
            format!(
                "highPriorityMessageFrequency ({}s) is longer than lowPriorityMessageFrequency ({}s): High events are sent later than Low ones",
                high.as_secs(),
                low.as_secs()
            ),
            "Set highPriorityMessageFrequency shorter than lowPriorityMessageFrequency",
        );
    }
    if config.priority(EventKind::Alert) == Priority::Off {
        add(
            "detection-off",
            "On-device detection is off",
            BaselineSeverity::Important,
            "eventPriorityAlert is Off: no rule runs and no alert is raised".into(),
            "Set eventPriorityAlert to High; turn single rules off with detectionRulesDisabled instead",
        );
    }
    if config.priority(EventKind::Heartbeat) == Priority::Off {
        add(
            "heartbeat-off",
            "Heartbeat is off",
            BaselineSeverity::Warning,
            "eventPriorityHeartbeat is Off: a silent device cannot be told from a quiet one".into(),
            "Set eventPriorityHeartbeat to High (the default)",
        );
    }
    out
}

#[cfg(test)]
mod tests;
