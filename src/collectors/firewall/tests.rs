use super::*;
use crate::collectors::Periodic;
use crate::event::{CollectorHealth, Direction, EventKind, FirewallAction, FirewallRule, Payload};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
