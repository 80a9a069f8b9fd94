//! Every event kind edgeguard produces validates against the published v1.0 schemas.

mod support;

use edgeguard::config::{self, Config};
use edgeguard::event::*;
use edgeguard::metrics::Metrics;
use edgeguard::pipeline::{Pipeline, Trigger};
use serde_json::{Value, json};
use std::sync::Arc;
use support::schema::{errors, message_validator, samples};
use uuid::Uuid;

#[test]
fn the_validator_accepts_the_valid_samples_and_rejects_the_invalid_ones() {
    let v = message_validator();
    let (valid, invalid) = samples();
    assert_eq!(valid.len(), 13, "the reference has 13 valid samples");
    for (i, m) in valid.iter().enumerate() {
        assert_eq!(errors(&v, m), Vec::<String>::new(), "valid sample {i}");
    }
    assert!(!invalid.is_empty());
    for (i, m) in invalid.iter().enumerate() {
        assert!(!v.is_valid(m), "invalid sample {i} passed: {m}");
    }
}

fn extra(pairs: &[(&str, &str)]) -> ExtraDetails {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One realistic event of every kind, with optional fields both present and absent.
fn every_kind() -> Vec<Event> {
    let mut all = kinds_but_recommendation();
    // Recommendations as the recommender derives them from the snapshots above.
    let mut recommender = edgeguard::recommend::Recommender::new();
    let config = Config::default();
    for e in &all {
        recommender.observe(e, &config);
    }
    let derived = recommender
        .take()
        .expect("the snapshots give recommendations");
    assert!(!derived.is_empty());
    all.push(derived);
    all
}

fn kinds_but_recommendation() -> Vec<Event> {
    let container = extra(&[
        ("ContainerId", "0123456789ab"),
        ("ContainerName", "edgeHub"),
    ]);
    vec![
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: "/bin/sh".into(),
            command_line: "sh -c 'echo \"hi\"'".into(),
            process_id: 4242,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: Some("root".into()),
            extra_details: container.clone(),
        }])),
        Event::new(Payload::ProcessTerminate(vec![ProcessTerminate {
            executable: "/bin/sh".into(),
            process_id: 4242,
            exit_status: -9,
            extra_details: Default::default(),
        }])),
        Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
            remote_address: "2001:db8::1".parse().unwrap(),
            remote_port: 8883,
            local_address: Some("fe80::1".parse().unwrap()),
            local_port: Some(51000),
            direction: Direction::Out,
            protocol: "TCP".into(),
            process_id: 99,
            user_id: Some("1000".into()),
            executable: "/usr/bin/curl".into(),
            command_line: Some("curl https://x".into()),
            extra_details: container,
        }])),
        Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
            remote_address: "192.0.2.7".parse().unwrap(),
            remote_port: 50123,
            local_address: None,
            local_port: None,
            direction: Direction::In,
            protocol: "TCP".into(),
            process_id: 0,
            user_id: None,
            executable: "".into(),
            command_line: None,
            extra_details: Default::default(),
        }])),
        Event::new(Payload::Login(vec![Login {
            process_id: 777,
            user_id: None,
            user_name: Some("admin".into()),
            operation: "sshd".into(),
            executable: "/usr/sbin/sshd".into(),
            remote_address: Some("198.51.100.3".parse().unwrap()),
            remote_port: Some(40022),
            local_port: Some(22),
            result: LoginResult::Fail,
            extra_details: extra(&[("Reason", "invalid user")]),
        }])),
        Event::new(Payload::ListeningPorts(vec![
            ListeningPort {
                protocol: "TCP".into(),
                local_address: Some("::".parse().unwrap()),
                local_port: 22,
                remote_address: Some("::".parse().unwrap()),
                remote_port: Some(0),
                extra_details: extra(&[("ProcessId", "1")]),
            },
            ListeningPort {
                protocol: "UDP".into(),
                local_address: None,
                local_port: 53,
                remote_address: None,
                remote_port: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::SystemInformation(vec![SystemInformation {
            os_name: Some("Debian GNU/Linux".into()),
            os_version: Some("12".into()),
            os_architecture: Some("armv7l".into()),
            host_name: Some("edge-01".into()),
            total_physical_memory_kb: Some(1_000_000),
            free_physical_memory_kb: Some(10),
            ..Default::default()
        }])),
        Event::new(Payload::LocalUsers(vec![LocalUser {
            user_name: "root".into(),
            user_id: "0".into(),
            group_names: "root;adm".into(),
            group_ids: "0;4".into(),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::FirewallConfiguration(vec![FirewallRule {
            enabled: true,
            action: FirewallAction::Deny,
            priority: Some(1),
            chain_name: Some("INPUT".into()),
            direction: Some(Direction::In),
            application: None,
            source_address: Some("10.0.0.0/8".into()),
            source_port: Some("*".into()),
            destination_address: None,
            destination_port: Some("22,53".into()),
            protocol: Some("TCP".into()),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::OSBaseline(vec![BaselineCheck {
            description: "Root login over ssh is disabled".into(),
            cce_id: "CCE-4387-1".into(),
            result: BaselineResult::Fail,
            error: "".into(),
            severity: BaselineSeverity::Critical,
            extra_details: extra(&[("Remediation", "PermitRootLogin no")]),
        }])),
        Event::new(Payload::ConnectedHardware(vec![ConnectedHardware {
            hardware_category: "USB".into(),
            hardware_sub_category: "Storage".into(),
            hardware_name: "Flash drive".into(),
            extra_details: Default::default(),
        }])),
        {
            // A hotplug event: the snapshot kind, Triggered.
            let mut e = Event::new(Payload::ConnectedHardware(vec![ConnectedHardware {
                hardware_category: "Network".into(),
                hardware_sub_category: "Virtual Adapter".into(),
                hardware_name: "veth0".into(),
                extra_details: extra(&[("Action", "Added"), ("Bus", "net")]),
            }]));
            e.category = Category::Triggered;
            e
        },
        Event::new(Payload::KernelModule(vec![
            KernelModule {
                name: "usb_storage".into(),
                action: ModuleAction::Loaded,
                size: Some(81920),
                extra_details: extra(&[("Taint", "OE"), ("Source", "proc_modules")]),
            },
            KernelModule {
                name: "loop".into(),
                action: ModuleAction::Removed,
                size: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::Diagnostic(vec![Diagnostic {
            severity: DiagnosticSeverity::Warning,
            message: "netlink unavailable".into(),
            process_id: 1,
            thread_id: 1,
            correlation_id: Some(Uuid::new_v4()),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::ConfigurationError(vec![ConfigurationError {
            configuration_name: "maxMessageSizeInBytes".into(),
            error_type: ConfigErrorType::NotOptimal,
            used_configuration: "204800".into(),
            message: "not a multiple of 4096".into(),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::DroppedEventsStatistics(vec![
            DroppedEventsStatistics {
                queue: QueueName::Low,
                collected_events: 10,
                dropped_events: 2,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::MessageStatistics(vec![MessageStatistics {
            messages_sent: 3,
            messages_under_4kb: 1,
            total_failed: 0,
            extra_details: Default::default(),
        }])),
        Event::new(Payload::CollectorStatus(vec![CollectorStatus {
            collector: "process".into(),
            status: CollectorHealth::Degraded,
            message: "netlink process connector unavailable: permission denied".into(),
            fallback: Some("scanning /proc every second".into()),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::Heartbeat(vec![Heartbeat {
            agent_version: "0.1.0".into(),
            uptime_seconds: 300,
            sequence: 1,
            spool_messages: 2,
            spool_bytes: 8192,
            queued_events: 17,
            collectors_up: 10,
            collectors_degraded: 1,
            collectors_down: 0,
            dropped_events: 0,
            extra_details: extra(&[("collector.connection", "Degraded")]),
        }])),
        Event::new(Payload::SoftwareInventory(vec![
            SoftwarePackage {
                name: "libssl3".into(),
                version: "3.0.11-1~deb12u2".into(),
                architecture: "amd64".into(),
                package_manager: "dpkg".into(),
                source: Some("openssl".into()),
                extra_details: extra(&[("Managers", "dpkg")]),
            },
            SoftwarePackage {
                name: "busybox".into(),
                version: "1.36.1-r0".into(),
                architecture: String::new(),
                package_manager: "opkg".into(),
                source: None,
                extra_details: Default::default(),
            },
            SoftwarePackage {
                name: "openssl-libs".into(),
                version: "1:3.0.7-25.fc38".into(),
                architecture: "x86_64".into(),
                package_manager: "rpm".into(),
                source: Some("openssl".into()),
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::SoftwareChange(vec![
            SoftwareChange {
                operation: SoftwareOperation::VersionChanged,
                name: "openssl".into(),
                version: "3.0.13-1~deb12u1".into(),
                previous_version: Some("3.0.11-1~deb12u2".into()),
                architecture: "amd64".into(),
                package_manager: "dpkg".into(),
                extra_details: Default::default(),
            },
            SoftwareChange {
                operation: SoftwareOperation::Installed,
                name: "nmap".into(),
                version: "7.93+dfsg1-1".into(),
                previous_version: None,
                architecture: "amd64".into(),
                package_manager: "dpkg".into(),
                extra_details: Default::default(),
            },
            SoftwareChange {
                operation: SoftwareOperation::Installed,
                name: "kernel-core".into(),
                version: "6.5.6-300.fc39".into(),
                previous_version: None,
                architecture: "x86_64".into(),
                package_manager: "rpm".into(),
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::FirewallChange(vec![
            FirewallChange {
                operation: "RuleDeleted".into(),
                family: "inet".into(),
                table: "filter".into(),
                chain: Some("input".into()),
                count: 42,
                extra_details: extra(&[
                    ("ProcessName", "nft"),
                    ("ProcessId", "4242"),
                    ("Backend", "nftables"),
                ]),
            },
            FirewallChange {
                operation: "RulesetChanged".into(),
                family: "ip".into(),
                table: "filter".into(),
                chain: None,
                count: 1,
                extra_details: extra(&[("EntriesBefore", "9"), ("EntriesAfter", "3")]),
            },
        ])),
        Event::new(Payload::FileChange(vec![
            FileChange {
                path: "/usr/bin/sudo2".into(),
                operation: FileOperation::Attributes,
                owner_id: Some("0".into()),
                owner_name: Some("root".into()),
                mode: Some("4755".into()),
                size: Some(232_416),
                hash_before: Some(
                    "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd".into(),
                ),
                hash_after: Some(
                    "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd".into(),
                ),
                extra_details: extra(&[
                    ("Count", "1"),
                    ("SetuidGained", "true"),
                    ("ModeBefore", "0755"),
                ]),
            },
            FileChange {
                path: "/etc/ld.so.preload".into(),
                operation: FileOperation::Deleted,
                owner_id: None,
                owner_name: None,
                mode: None,
                size: None,
                hash_before: None,
                hash_after: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::UserChange(vec![UserChange {
            operation: AccountOperation::UserChanged,
            name: "backdoor".into(),
            id: "0".into(),
            details: Some("uid 1001 -> 0".into()),
            extra_details: extra(&[("NewUid0", "true")]),
        }])),
        Event::new(Payload::ContainerEvent(vec![
            ContainerEvent {
                action: "exec_start".into(),
                object_type: ContainerObject::Container,
                container_id: Some("3f1d9c2e4b5a".into()),
                container_name: Some("edgeHub".into()),
                image: Some("mcr.microsoft.com/azureiotedge-hub:1.4".into()),
                image_digest: Some("sha256:0123".into()),
                module_name: Some("edgeHub".into()),
                exit_code: Some(137),
                command: Some("/bin/sh -c id".into()),
                signal: Some("9".into()),
                extra_details: extra(&[("ExecId", "e1")]),
            },
            ContainerEvent {
                action: "pull".into(),
                object_type: ContainerObject::Image,
                container_id: None,
                container_name: None,
                image: None,
                image_digest: None,
                module_name: None,
                exit_code: None,
                command: None,
                signal: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::ContainerInventory(vec![
            ContainerInventory {
                container_id: "3f1d9c2e4b5a".into(),
                container_name: Some("edgeHub".into()),
                image: Some("mcr.microsoft.com/azureiotedge-hub:1.4".into()),
                image_id: Some("sha256:0123".into()),
                module_name: Some("edgeHub".into()),
                state: Some("running".into()),
                findings: vec![PostureFinding {
                    id: "privileged".into(),
                    severity: BaselineSeverity::Critical,
                    description: "runs privileged".into(),
                    remediation: "Remove --privileged".into(),
                    cis_id: Some("5.4".into()),
                }],
                extra_details: Default::default(),
            },
            ContainerInventory {
                container_id: "00".into(),
                container_name: None,
                image: None,
                image_id: None,
                module_name: None,
                state: None,
                findings: vec![],
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::ContainerImages(vec![ContainerImage {
            image_id: "sha256:0123".into(),
            tags: vec!["busybox:1".into()],
            digests: vec![],
            size_bytes: 1_000_000,
            created: Some("2024-05-01T10:00:00Z".into()),
            extra_details: Default::default(),
        }])),
        // Alerts as the detector raises them, one per rule.
        alerts(),
        // Periodic snapshots may be empty.
        Event::empty_snapshot(EventKind::ContainerInventory),
        Event::empty_snapshot(EventKind::ListeningPorts),
        Event::empty_snapshot(EventKind::FirewallConfiguration),
    ]
}

/// One alert of every rule, raised by the detector from the events that trigger it.
fn alerts() -> Event {
    use edgeguard::detect::{BRUTE_FORCE_THRESHOLD, Detector, Finding, Rule};
    let mut d = Detector::new();
    let now = tokio::time::Instant::now();
    let mut found = Vec::new();
    let mut process = |exe: &str, container: &[(&str, &str)]| {
        let e = Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: exe.into(),
            command_line: format!("{exe} -x"),
            process_id: 77,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: None,
            extra_details: extra(container),
        }]));
        d.inspect(&e, now, &mut found);
    };
    process(
        "/tmp/.x/dropper",
        &[("ContainerId", "c0ffee"), ("ContainerName", "web")],
    );
    process("/memfd:stage2 (deleted)", &[]);
    let exec = Event::new(Payload::ContainerEvent(vec![ContainerEvent {
        action: "exec_start".into(),
        object_type: ContainerObject::Container,
        container_id: Some("c0ffee".into()),
        container_name: None,
        image: None,
        image_digest: None,
        module_name: None,
        exit_code: None,
        command: Some("/bin/bash".into()),
        signal: None,
        extra_details: Default::default(),
    }]));
    d.inspect(&exec, now, &mut found);
    for _ in 0..BRUTE_FORCE_THRESHOLD {
        let login = Event::new(Payload::Login(vec![Login {
            process_id: 9,
            user_id: None,
            user_name: Some("root".into()),
            operation: "sshd:password".into(),
            executable: "/usr/sbin/sshd".into(),
            remote_address: Some("203.0.113.9".parse().unwrap()),
            remote_port: Some(40022),
            local_port: Some(22),
            result: LoginResult::Fail,
            extra_details: Default::default(),
        }]));
        d.inspect(&login, now, &mut found);
    }
    let user = Event::new(Payload::UserChange(vec![UserChange {
        operation: AccountOperation::UserAdded,
        name: "toor".into(),
        id: "0".into(),
        details: None,
        extra_details: extra(&[("NewUid0", "true")]),
    }]));
    d.inspect(&user, now, &mut found);
    // And one data rule's, with its evidence fields.
    let shadow = Event::new(Payload::ProcessCreate(vec![ProcessCreate {
        executable: "/usr/bin/cat".into(),
        command_line: "cat /etc/shadow".into(),
        process_id: 78,
        parent_process_id: 1,
        user_id: "0".into(),
        user_name: Some("root".into()),
        extra_details: extra(&[]),
    }]));
    d.inspect(&shadow, now, &mut found);
    let mut rules = Vec::new();
    let alerts = found
        .into_iter()
        .map(|f| match f {
            Finding::Raised(rule, a) => {
                rules.push(rule);
                *a
            }
            other => panic!("nothing should be suppressed: {other:?}"),
        })
        .collect();
    assert_eq!(
        rules,
        Rule::all()
            .take(5)
            .chain(Rule::from_id("credential-file-access"))
            .collect::<Vec<_>>(),
        "one alert of every code rule, and one of a data rule"
    );
    Event::new(Payload::Alert(alerts))
}

fn message(events: &[Event]) -> Value {
    let h = MessageHeader::new("0.1.0", Uuid::new_v4());
    let encoded: Vec<Vec<u8>> = events.iter().map(envelope::encode).collect();
    serde_json::from_slice(&h.build(encoded.iter().map(Vec::as_slice))).unwrap()
}

#[test]
fn every_event_kind_is_schema_valid() {
    let v = message_validator();
    let all = every_kind();
    let kinds: std::collections::BTreeSet<EventKind> = all.iter().map(Event::kind).collect();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "one event of every kind");
    for e in &all {
        let m = message(std::slice::from_ref(e));
        assert_eq!(errors(&v, &m), Vec::<String>::new(), "{}: {m}", e.kind());
    }
    assert_eq!(errors(&v, &message(&all)), Vec::<String>::new());
}

#[test]
fn pipeline_output_is_schema_valid_including_aggregated_truncated_and_split_events() {
    let v = message_validator();
    let cfg = Config {
        max_message_size_in_bytes: 8192,
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::for_tests());
    let mut p = Pipeline::new(
        MessageHeader::new("0.1.0", Uuid::new_v4()),
        Arc::new(cfg),
        metrics,
    );
    let now = tokio::time::Instant::now();
    for e in every_kind() {
        p.push(e.clone(), now);
        p.push(e, now);
    }
    // A command line far larger than a message, and a snapshot that must be split.
    let mut huge = every_kind().remove(0);
    if let Payload::ProcessCreate(r) = &mut huge.payload {
        r[0].command_line = "A".repeat(50_000);
        r[0].process_id = 1;
    }
    p.push(huge, now);
    let ports: Vec<ListeningPort> = (0..400)
        .map(|i| ListeningPort {
            protocol: "TCP".into(),
            local_address: Some("0.0.0.0".parse().unwrap()),
            local_port: i,
            remote_address: None,
            remote_port: None,
            extra_details: Default::default(),
        })
        .collect();
    p.push(Event::new(Payload::ListeningPorts(ports)), now);
    for e in p.statistics_events() {
        p.push(e, now);
    }
    p.flush_windows();
    let mut categories = std::collections::BTreeSet::new();
    let mut truncated = 0;
    let mut count = 0;
    while let Some(m) = p.take_message(Trigger::All) {
        assert!(m.body.len() <= 8192);
        let m: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(errors(&v, &m), Vec::<String>::new(), "{m}");
        for e in m["Events"].as_array().unwrap() {
            categories.insert(e["Category"].as_str().unwrap().to_string());
            truncated += e["Payload"][0]["ExtraDetails"]["Truncated"].is_string() as usize;
        }
        count += 1;
    }
    assert!(count > 1);
    assert_eq!(truncated, 1);
    assert_eq!(
        categories.into_iter().collect::<Vec<_>>(),
        ["Aggregated", "Periodic", "Triggered"]
    );
}

#[test]
fn configuration_errors_are_schema_valid() {
    let v = message_validator();
    let (_, rejected) = config::from_desired(&json!({
        "highPriorityMessageFrequency": {"value": "7 minutes"},
        "maxLocalCacheSizeInBytes": "lots",
        "maxMessageSizeInBytes": 10000,
    }));
    assert_eq!(rejected.len(), 3);
    let events: Vec<Event> = rejected.iter().map(|r| r.to_event()).collect();
    assert_eq!(errors(&v, &message(&events)), Vec::<String>::new());
}

#[test]
fn the_validator_catches_what_the_old_c_agent_got_wrong() {
    // Numbers in ExtraDetails and an IPv6 address that is not one must fail: this proves the
    // checks above can fail.
    let v = message_validator();
    let mut m = message(&every_kind()[..1]);
    m["Events"][0]["Payload"][0]["ExtraDetails"]["HitCount"] = json!(5);
    assert!(!v.is_valid(&m));
    let mut m = message(&every_kind()[2..3]);
    m["Events"][0]["Payload"][0]["RemoteAddress"] = json!("not-an-address");
    assert!(!v.is_valid(&m));
    // edgeguard's own kinds are checked as strictly.
    let status = every_kind()
        .into_iter()
        .find(|e| e.kind() == EventKind::CollectorStatus)
        .unwrap();
    let mut m = message(&[status]);
    assert!(v.is_valid(&m));
    m["Events"][0]["Payload"][0]["Status"] = json!("Sideways");
    assert!(!v.is_valid(&m));
    let inventory = every_kind()
        .into_iter()
        .find(|e| e.kind() == EventKind::ContainerInventory)
        .unwrap();
    let mut m = message(&[inventory]);
    assert!(v.is_valid(&m));
    m["Events"][0]["Payload"][0]["Findings"][0]["Severity"] = json!("Scary");
    assert!(!v.is_valid(&m));
    m["Events"][0]["Payload"][0]["Findings"][0] = json!({"Id": "x"});
    assert!(!v.is_valid(&m));
}
