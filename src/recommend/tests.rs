use super::*;
use crate::event::{BaselineCheck, PostureFinding};
use std::net::IpAddr;

fn port(proto: &str, addr: &str, port: u16, extra: &[(&str, &str)]) -> ListeningPort {
    ListeningPort {
        protocol: proto.into(),
        local_address: Some(addr.parse::<IpAddr>().unwrap()),
        local_port: port,
        remote_address: None,
        remote_port: None,
        extra_details: extra
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

/// Observes `e` and takes what it gives, as the pipeline does around a message cut.
trait Once {
    fn once(&mut self, e: &Event, c: &Config) -> Option<Event>;
}

impl Once for Recommender {
    fn once(&mut self, e: &Event, c: &Config) -> Option<Event> {
        self.observe(e, c);
        self.take()
    }
}

fn ids(e: &Event) -> Vec<(String, String)> {
    match &e.payload {
        Payload::Recommendation(v) => v
            .iter()
            .map(|r| (r.recommendation_id.clone(), r.subject.clone()))
            .collect(),
        other => panic!("not a recommendation: {other:?}"),
    }
}

fn pair(id: &str, subject: &str) -> (String, String) {
    (id.to_string(), subject.to_string())
}

#[test]
fn open_ports_are_recommended_once_and_cleared_when_closed() {
    let config = Config::default();
    let mut r = Recommender::default();
    let ports = |v: Vec<ListeningPort>| Event::new(Payload::ListeningPorts(v));
    let open = ports(vec![
        port("tcp", "0.0.0.0", 22, &[("Executable", "/usr/sbin/sshd")]),
        port("tcp", "::", 22, &[("Executable", "/usr/sbin/sshd")]),
        port("tcp", "127.0.0.1", 631, &[]),
        port("tcp", "0.0.0.0", 8080, &[("ContainerId", "c0ffee")]),
        port("udp", "::", 5353, &[]),
    ]);
    let first = r.once(&open, &config).expect("a first recommendation");
    assert_eq!(
        ids(&first),
        [
            pair("open-port-all-interfaces", "tcp/22"),
            pair("open-port-all-interfaces", "udp/5353")
        ]
    );
    let Payload::Recommendation(v) = &first.payload else {
        unreachable!()
    };
    assert!(v[0].description.contains("/usr/sbin/sshd"), "{v:?}");
    assert_eq!(first.kind(), EventKind::Recommendation);
    // The same snapshot again: nothing new, nothing sent.
    assert!(r.once(&open, &config).is_none());
    // Other events are not sources.
    let other = Event::empty_snapshot(EventKind::LocalUsers);
    assert!(r.once(&other, &config).is_none());
    // Closed: one empty event, then silence.
    let closed = ports(vec![port("tcp", "127.0.0.1", 631, &[])]);
    let cleared = r.once(&closed, &config).expect("cleared");
    assert!(cleared.is_empty());
    assert!(r.once(&closed, &config).is_none());
}

#[test]
fn nothing_to_recommend_sends_nothing() {
    let mut r = Recommender::default();
    let closed = Event::new(Payload::ListeningPorts(vec![port(
        "tcp",
        "127.0.0.1",
        1,
        &[],
    )]));
    assert!(r.once(&closed, &Config::default()).is_none());
    // Another module's snapshot is not this device's.
    let mut foreign = Event::new(Payload::ListeningPorts(vec![port(
        "tcp",
        "0.0.0.0",
        1,
        &[],
    )]));
    foreign.foreign = true;
    assert!(r.once(&foreign, &Config::default()).is_none());
}

#[test]
fn firewall_baseline_containers_and_twin() {
    let mut config = Config::default();
    let mut r = Recommender {
        own_module: Some("edgeguard".into()),
        ..Recommender::default()
    };
    let policy = |chain: &str, action, direction| FirewallRule {
        enabled: true,
        action,
        priority: Some(0),
        chain_name: Some(chain.into()),
        direction,
        application: None,
        source_address: None,
        source_port: None,
        destination_address: None,
        destination_port: None,
        protocol: None,
        extra_details: [("Policy".to_string(), "true".to_string())].into(),
    };
    let fw = Event::new(Payload::FirewallConfiguration(vec![
        policy("INPUT", FirewallAction::Allow, Some(Direction::In)),
        policy("FORWARD", FirewallAction::Deny, None),
        policy("OUTPUT", FirewallAction::Allow, Some(Direction::Out)),
    ]));
    let e = r.once(&fw, &config).unwrap();
    assert_eq!(
        ids(&e),
        [
            pair("permissive-firewall-policy", "INPUT"),
            pair("permissive-firewall-policy", "OUTPUT")
        ]
    );
    let check = |d: &str, result, severity| BaselineCheck {
        description: d.into(),
        cce_id: format!("CCE-{d}"),
        result,
        error: String::new(),
        severity,
        extra_details: Default::default(),
    };
    use BaselineSeverity::*;
    let os = Event::new(Payload::OSBaseline(vec![
        check("a", BaselineResult::Fail, Critical),
        check("b", BaselineResult::Pass, Critical),
        check("c", BaselineResult::Fail, Warning),
        check("d", BaselineResult::Fail, Warning),
        check("e", BaselineResult::Fail, Informational),
        check("f", BaselineResult::Err, Important),
    ]));
    let e = r.once(&os, &config).unwrap();
    let Payload::Recommendation(v) = &e.payload else {
        unreachable!()
    };
    let baseline: Vec<_> = v
        .iter()
        .filter(|r| r.recommendation_id == "os-baseline-failed")
        .collect();
    assert_eq!(baseline.len(), 2, "{baseline:?}");
    assert_eq!(baseline[0].severity, Critical, "most severe first");
    assert_eq!(
        baseline[1].description,
        "2 Warning OS baseline checks failed: c; d"
    );
    assert_eq!(baseline[1].extra_details["CceIds"], "CCE-c,CCE-d");
    let finding = |id: &str, severity| PostureFinding {
        id: id.into(),
        severity,
        description: format!("{id} found"),
        remediation: format!("fix {id}"),
        cis_id: None,
    };
    let container = |name: &str, module: Option<&str>, findings| ContainerInventory {
        container_id: format!("{name}-id"),
        container_name: Some(name.into()),
        image: None,
        image_id: None,
        module_name: module.map(str::to_string),
        state: Some("running".into()),
        findings,
        extra_details: Default::default(),
    };
    let inventory = Event::new(Payload::ContainerInventory(vec![
        container(
            "web",
            Some("web"),
            vec![
                finding("host-network", Important),
                finding("no-memory-limit", Warning),
            ],
        ),
        container(
            "edgeguard",
            Some("edgeguard"),
            vec![finding("host-pid", Important)],
        ),
        container("tidy", None, vec![finding("no-pids-limit", Warning)]),
        container("root", None, vec![finding("privileged", Critical)]),
    ]));
    let e = r.once(&inventory, &config).unwrap();
    let got = ids(&e);
    for expected in [
        pair("container-posture", "web"),
        pair("edge-module-privileged", "web"),
        pair("container-posture", "root"),
    ] {
        assert!(got.contains(&expected), "{expected:?} in {got:?}");
    }
    assert!(
        !got.iter().any(|(_, s)| s == "edgeguard" || s == "tidy"),
        "{got:?}"
    );
    // The twin: timers in conflict, detection and heartbeat off.
    config.high_priority_message_frequency = Duration::from_secs(3600);
    config.low_priority_message_frequency = Duration::from_secs(600);
    config
        .event_priorities
        .insert(EventKind::Alert, crate::event::Priority::Off);
    config
        .event_priorities
        .insert(EventKind::Heartbeat, crate::event::Priority::Off);
    let e = r.once(&inventory, &config).unwrap();
    let got = ids(&e);
    for id in ["twin-timers-conflict", "detection-off", "heartbeat-off"] {
        assert!(got.contains(&pair(id, "twin")), "{id} in {got:?}");
    }
}

#[test]
fn small_messages_under_short_timers() {
    let stats = |sent, small| {
        Event::new(Payload::MessageStatistics(vec![MessageStatistics {
            messages_sent: sent,
            messages_under_4kb: small,
            total_failed: 0,
            extra_details: Default::default(),
        }]))
    };
    let short = Config {
        high_priority_message_frequency: Duration::from_secs(3),
        ..Config::default()
    };
    let mut r = Recommender::default();
    // Defaults: small messages are heartbeats and alerts, not the twin's doing.
    assert!(r.once(&stats(100, 100), &Config::default()).is_none());
    // Too few to say; mostly full messages.
    assert!(r.once(&stats(10, 10), &short).is_none());
    assert!(r.once(&stats(100, 9), &short).is_none());
    let e = r.once(&stats(100, 10), &short).unwrap();
    assert_eq!(ids(&e), [pair("under-utilised-messages", "twin")]);
}

#[test]
fn a_flood_is_capped_and_counted() {
    let mut r = Recommender::default();
    let ports: Vec<_> = (1..=150).map(|p| port("tcp", "0.0.0.0", p, &[])).collect();
    let e = r
        .once(
            &Event::new(Payload::ListeningPorts(ports)),
            &Config::default(),
        )
        .unwrap();
    let Payload::Recommendation(v) = &e.payload else {
        unreachable!()
    };
    assert_eq!(v.len(), MAX_RECOMMENDATIONS);
    assert_eq!(v.last().unwrap().extra_details["Omitted"], "50");
}

/// The real parsers' records of real rulesets: rules that accept everything from anywhere are
/// recommended against, narrowed ones (address, port, state, loopback, ICMP) are not, and only
/// chains that filter (iptables' filter table, nft input/output hooks) are judged.
#[test]
fn permissive_rules_from_real_rulesets() {
    use crate::collectors::firewall::{Backend, IpFamily, parse_iptables_save, parse_nft_json};
    let save = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A INPUT -j ACCEPT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -s 10.0.0.0/8 -j ACCEPT
-A INPUT -m limit --limit 5/min -j ACCEPT
-A INPUT -p tcp -j ACCEPT
-A INPUT -i eth0 -j ACCEPT
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -j ACCEPT
COMMIT
";
    // What a fresh recommender makes of one ruleset, and the subjects of one recommendation.
    let recommend = |rules: Vec<FirewallRule>| {
        Recommender::default()
            .once(
                &Event::new(Payload::FirewallConfiguration(rules)),
                &Config::default(),
            )
            .unwrap()
    };
    let subjects = |got: &[(String, String)], id: &str| -> Vec<String> {
        got.iter()
            .filter(|(i, _)| i == id)
            .map(|(_, s)| s.clone())
            .collect()
    };
    let parsed = parse_iptables_save(save.as_bytes(), IpFamily::V4, Backend::IptablesNft);
    let e = recommend(parsed.rules);
    let got = ids(&e);
    let rules = subjects(&got, "permissive-firewall-rule");
    assert_eq!(rules.len(), 3, "{got:?}");
    assert!(rules[0].ends_with("filter/INPUT #7"), "{rules:?}");
    assert!(rules[1].ends_with("filter/INPUT #8"), "{rules:?}");
    assert!(rules[2].ends_with("filter/OUTPUT #2"), "{rules:?}");
    // The policies: filter's OUTPUT accepts; nat's chains are not judged.
    let policies = subjects(&got, "permissive-firewall-policy");
    assert_eq!(policies.len(), 1, "{got:?}");
    assert!(policies[0].ends_with("filter/OUTPUT"), "{policies:?}");
    let Payload::Recommendation(v) = &e.payload else {
        unreachable!()
    };
    let first = v
        .iter()
        .find(|r| r.recommendation_id == "permissive-firewall-rule")
        .unwrap();
    assert_eq!(first.severity, BaselineSeverity::Important);
    assert!(
        first.description.contains("every TCP incoming packet"),
        "{}",
        first.description
    );
    assert_eq!(first.extra_details["Rule"], "-A INPUT -p tcp -j ACCEPT");

    // nft: `ct state` and `iifname lo` rules are narrowed; a bare accept is not.
    let nft = br#"{"nftables": [
      {"table": {"family": "inet", "name": "filter", "handle": 1}},
      {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1,
                 "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "filter", "name": "pre", "handle": 2,
                 "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
      {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 3, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 4, "expr": [
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 5, "expr": [
        {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}},
      {"rule": {"family": "inet", "table": "filter", "chain": "pre", "handle": 6, "expr": [
        {"accept": null}]}}
    ]}"#;
    let parsed = parse_nft_json(nft).unwrap();
    assert_eq!(
        ids(&recommend(parsed.rules)),
        [pair("permissive-firewall-rule", "inet filter/input #3")]
    );
}
