//! The encoder's output is byte for byte what it was before the hot path was reworked.
//!
//! `reference` is the previous encoder, kept verbatim here: the envelope with chrono-formatted
//! timestamp `String`s, `serde_json::to_vec`, and the old `encode_fitting` that cloned the event
//! before encoding. Every event kind is encoded by both, with odd strings (quotes, backslashes,
//! control characters, non-ASCII, empty) in every string field, optional fields present and
//! absent, and timestamps in many offsets and years.

use super::envelope::{self, EncodedEvent};
use super::*;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

mod reference {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Wire<'a> {
        id: Uuid,
        timestamp_local: String,
        #[serde(rename = "TimestampUTC")]
        timestamp_utc: String,
        category: Category,
        name: &'static str,
        event_type: EventType,
        is_empty: bool,
        payload_schema_version: &'static str,
        payload: &'a Payload,
    }

    pub fn encode(event: &Event) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            id: event.id,
            timestamp_local: event.time.to_rfc3339_opts(SecondsFormat::Millis, false),
            timestamp_utc: event
                .time
                .with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            category: event.category,
            name: event.kind().name(),
            event_type: event.kind().event_type(),
            is_empty: event.is_empty(),
            payload_schema_version: "1.0",
            payload: &event.payload,
        })
        .unwrap()
    }
}

fn text(s: &str, base: &str) -> String {
    format!("{base}{s}")
}

fn extra(pairs: &[(&str, &str)]) -> ExtraDetails {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One event of every kind (the schema test's fixture) with `s` mixed into every string field.
pub(crate) fn every_kind(s: &str) -> Vec<Event> {
    let container = extra(&[
        ("ContainerId", "0123456789ab"),
        ("ContainerName", "edgeHub"),
        ("Odd", s),
        (s, "key"),
    ]);
    vec![
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: text(s, "/bin/sh"),
            command_line: text(s, "sh -c 'echo \"hi\"'"),
            process_id: 4242,
            parent_process_id: 1,
            user_id: text(s, "0"),
            user_name: Some(text(s, "root")),
            extra_details: container.clone(),
        }])),
        Event::new(Payload::ProcessTerminate(vec![ProcessTerminate {
            executable: text(s, "/bin/sh"),
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
            protocol: text(s, "TCP"),
            process_id: 99,
            user_id: Some(text(s, "1000")),
            executable: text(s, "/usr/bin/curl"),
            command_line: Some(text(s, "curl https://x")),
            extra_details: container,
        }])),
        Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
            remote_address: "192.0.2.7".parse().unwrap(),
            remote_port: 50123,
            local_address: None,
            local_port: None,
            direction: Direction::In,
            protocol: text(s, "TCP"),
            process_id: 0,
            user_id: None,
            executable: text(s, ""),
            command_line: None,
            extra_details: Default::default(),
        }])),
        Event::new(Payload::Login(vec![Login {
            process_id: 777,
            user_id: None,
            user_name: Some(text(s, "admin")),
            operation: text(s, "sshd"),
            executable: text(s, "/usr/sbin/sshd"),
            remote_address: Some("198.51.100.3".parse().unwrap()),
            remote_port: Some(40022),
            local_port: Some(22),
            result: LoginResult::Fail,
            extra_details: extra(&[("Reason", "invalid user")]),
        }])),
        Event::new(Payload::ListeningPorts(vec![
            ListeningPort {
                protocol: text(s, "TCP"),
                local_address: Some("::".parse().unwrap()),
                local_port: 22,
                remote_address: Some("::".parse().unwrap()),
                remote_port: Some(0),
                extra_details: extra(&[("ProcessId", "1")]),
            },
            ListeningPort {
                protocol: text(s, "UDP"),
                local_address: None,
                local_port: 53,
                remote_address: None,
                remote_port: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::SystemInformation(vec![SystemInformation {
            os_name: Some(text(s, "Debian GNU/Linux")),
            os_version: Some(text(s, "12")),
            os_architecture: Some(text(s, "armv7l")),
            host_name: Some(text(s, "edge-01")),
            total_physical_memory_kb: Some(1_000_000),
            free_physical_memory_kb: Some(10),
            ..Default::default()
        }])),
        Event::new(Payload::LocalUsers(vec![LocalUser {
            user_name: text(s, "root"),
            user_id: text(s, "0"),
            group_names: text(s, "root;adm"),
            group_ids: text(s, "0;4"),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::FirewallConfiguration(vec![FirewallRule {
            enabled: true,
            action: FirewallAction::Deny,
            priority: Some(1),
            chain_name: Some(text(s, "INPUT")),
            direction: Some(Direction::In),
            application: None,
            source_address: Some(text(s, "10.0.0.0/8")),
            source_port: Some(text(s, "*")),
            destination_address: None,
            destination_port: Some(text(s, "22,53")),
            protocol: Some(text(s, "TCP")),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::OSBaseline(vec![BaselineCheck {
            description: text(s, "Root login over ssh is disabled"),
            cce_id: text(s, "CCE-4387-1"),
            result: BaselineResult::Fail,
            error: text(s, ""),
            severity: BaselineSeverity::Critical,
            extra_details: extra(&[("Remediation", "PermitRootLogin no")]),
        }])),
        Event::new(Payload::ConnectedHardware(vec![ConnectedHardware {
            hardware_category: text(s, "USB"),
            hardware_sub_category: text(s, "Storage"),
            hardware_name: text(s, "Flash drive"),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::Diagnostic(vec![Diagnostic {
            severity: DiagnosticSeverity::Warning,
            message: text(s, "netlink unavailable"),
            process_id: 1,
            thread_id: 1,
            correlation_id: Some(Uuid::new_v4()),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::ConfigurationError(vec![ConfigurationError {
            configuration_name: text(s, "maxMessageSizeInBytes"),
            error_type: ConfigErrorType::NotOptimal,
            used_configuration: text(s, "204800"),
            message: text(s, "not a multiple of 4096"),
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
            collector: text(s, "process"),
            status: CollectorHealth::Degraded,
            message: text(
                s,
                "netlink process connector unavailable: permission denied",
            ),
            fallback: Some(text(s, "scanning /proc every second")),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::UserChange(vec![UserChange {
            operation: AccountOperation::UserChanged,
            name: text(s, "backdoor"),
            id: text(s, "0"),
            details: Some(text(s, "uid 1001 -> 0")),
            extra_details: extra(&[("NewUid0", "true")]),
        }])),
        Event::new(Payload::ContainerEvent(vec![
            ContainerEvent {
                action: text(s, "exec_start"),
                object_type: ContainerObject::Container,
                container_id: Some(text(s, "3f1d9c2e4b5a")),
                container_name: Some(text(s, "edgeHub")),
                image: Some(text(s, "mcr.microsoft.com/azureiotedge-hub:1.4")),
                image_digest: Some(text(s, "sha256:0123")),
                module_name: Some(text(s, "edgeHub")),
                exit_code: Some(137),
                command: Some(text(s, "/bin/sh -c id")),
                signal: Some(text(s, "9")),
                extra_details: extra(&[("ExecId", "e1")]),
            },
            ContainerEvent {
                action: text(s, "pull"),
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
                container_id: text(s, "3f1d9c2e4b5a"),
                container_name: Some(text(s, "edgeHub")),
                image: Some(text(s, "mcr.microsoft.com/azureiotedge-hub:1.4")),
                image_id: Some(text(s, "sha256:0123")),
                module_name: Some(text(s, "edgeHub")),
                state: Some(text(s, "running")),
                findings: vec![PostureFinding {
                    id: text(s, "privileged"),
                    severity: BaselineSeverity::Critical,
                    description: text(s, "runs privileged"),
                    remediation: text(s, "Remove --privileged"),
                    cis_id: Some(text(s, "5.4")),
                }],
                extra_details: Default::default(),
            },
            ContainerInventory {
                container_id: text(s, "00"),
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
            image_id: text(s, "sha256:0123"),
            tags: vec![text(s, "busybox:1")],
            digests: vec![],
            size_bytes: 1_000_000,
            created: Some(text(s, "2024-05-01T10:00:00Z")),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::Alert(vec![
            Alert {
                rule_id: text(s, "shell-in-container"),
                severity: BaselineSeverity::Warning,
                description: text(s, "a shell was started in running container web: sh"),
                remediation: text(s, "Confirm the session was planned"),
                title: Some(text(s, "Shell started in a running container")),
                techniques: vec![text(s, "T1609")],
                event_count: 1,
                process_id: Some(4242),
                executable: Some(text(s, "/tmp/x")),
                command_line: Some(text(s, "sh -c id")),
                user_id: Some(text(s, "0")),
                user_name: Some(text(s, "root")),
                remote_address: Some("2001:db8::1".parse().unwrap()),
                container_id: Some(text(s, "c0ffee")),
                container_name: Some(text(s, "web")),
                module_name: Some(text(s, "web")),
                extra_details: [(text(s, "Source"), text(s, "sshd"))].into(),
            },
            Alert {
                rule_id: text(s, "login-brute-force"),
                severity: BaselineSeverity::Important,
                description: String::new(),
                remediation: String::new(),
                title: None,
                techniques: Vec::new(),
                event_count: u64::MAX,
                process_id: None,
                executable: None,
                command_line: None,
                user_id: None,
                user_name: None,
                remote_address: None,
                container_id: None,
                container_name: None,
                module_name: None,
                extra_details: Default::default(),
            },
        ])),
        Event::new(Payload::Heartbeat(vec![Heartbeat {
            agent_version: text(s, "0.1.0"),
            uptime_seconds: u64::MAX,
            sequence: 1,
            spool_messages: 0,
            spool_bytes: 0,
            queued_events: 3,
            collectors_up: 11,
            collectors_degraded: 1,
            collectors_down: 0,
            dropped_events: 0,
            extra_details: extra(&[("collector.connection", "Degraded"), (s, "x")]),
        }])),
        Event::new(Payload::SoftwareInventory(vec![SoftwarePackage {
            name: text(s, "libssl3"),
            version: text(s, "3.0.11-1~deb12u2"),
            architecture: text(s, "amd64"),
            package_manager: "dpkg".into(),
            source: Some(text(s, "openssl")),
            extra_details: extra(&[("Managers", "dpkg")]),
        }])),
        Event::new(Payload::SoftwareChange(vec![SoftwareChange {
            operation: SoftwareOperation::VersionChanged,
            name: text(s, "openssl"),
            version: text(s, "3.0.13-1~deb12u1"),
            previous_version: Some(text(s, "3.0.11-1~deb12u2")),
            architecture: text(s, "amd64"),
            package_manager: "dpkg".into(),
            extra_details: Default::default(),
        }])),
        Event::new(Payload::FirewallChange(vec![FirewallChange {
            operation: "RuleDeleted".into(),
            family: text(s, "inet"),
            table: text(s, "filter"),
            chain: Some(text(s, "input")),
            count: 42,
            extra_details: extra(&[("ProcessName", "nft"), (s, "x")]),
        }])),
        Event::new(Payload::KernelModule(vec![
            KernelModule {
                name: text(s, "rootkit_mod"),
                action: ModuleAction::Loaded,
                size: Some(16384),
                extra_details: [(text(s, "Taint"), text(s, "OE"))].into(),
            },
            KernelModule {
                name: text(s, "loop"),
                action: ModuleAction::Removed,
                size: None,
                extra_details: Default::default(),
            },
        ])),
        {
            // A hotplug event: the snapshot kind, Triggered.
            let mut e = Event::new(Payload::ConnectedHardware(vec![ConnectedHardware {
                hardware_category: text(s, "Network"),
                hardware_sub_category: text(s, "Virtual Adapter"),
                hardware_name: text(s, "veth0"),
                extra_details: [
                    (text(s, "Action"), text(s, "Added")),
                    (text(s, "KernelName"), text(s, "veth0")),
                ]
                .into(),
            }]));
            e.category = Category::Triggered;
            e
        },
        Event::new(Payload::FileChange(vec![
            FileChange {
                path: text(s, "/etc/cron.d/job"),
                operation: FileOperation::Modified,
                owner_id: Some(text(s, "0")),
                owner_name: Some(text(s, "root")),
                mode: Some(text(s, "4755")),
                size: Some(u64::MAX),
                hash_before: Some(text(s, "aa")),
                hash_after: Some(text(s, "bb")),
                extra_details: [(text(s, "Count"), text(s, "3"))].into(),
            },
            FileChange {
                path: String::new(),
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
        Event::new(Payload::Recommendation(vec![Recommendation {
            recommendation_id: text(s, "open-port-all-interfaces"),
            title: text(s, "Port open on all interfaces"),
            severity: BaselineSeverity::Warning,
            subject: text(s, "tcp/22"),
            description: text(s, "tcp/22 (/usr/sbin/sshd) listens on every interface"),
            remediation: text(s, "Bind the service to the address it serves"),
            source: text(s, "ListeningPorts"),
            extra_details: extra(&[("Executable", "/usr/sbin/sshd"), (s, "x")]),
        }])),
        // Periodic snapshots may be empty.
        Event::empty_snapshot(EventKind::ContainerInventory),
        Event::empty_snapshot(EventKind::ListeningPorts),
        Event::empty_snapshot(EventKind::FirewallConfiguration),
        Event::empty_snapshot(EventKind::Recommendation),
    ]
}

/// Strings that need escaping or are otherwise unusual in JSON.
const ODD: &[&str] = &[
    "",
    "\"quoted\" and 'single'",
    "back\\slash \\\" \\u0000",
    "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}\u{7f}",
    "é ü ß 中文 🛡️ \u{2028}\u{2029} \u{feff} \u{202e}rtl",
    "</script><!-- & %s {} [] ,:",
    " ",
];

/// Local times with various offsets and years, including ones the fast timestamp path does not
/// handle (out-of-range years, an offset with seconds).
fn times() -> Vec<DateTime<FixedOffset>> {
    let mut out = Vec::new();
    for (offset, secs, nanos) in [
        (3600, 1_741_940_813, 589_000_000),
        (0, 0, 0),
        (-(9 * 3600 + 30 * 60), 1_709_210_096, 999_999_999),
        (14 * 3600, 253_402_300_799, 123_456_789),
        (-43_200, -62_167_219_200, 1_000_000),
        (5 * 3600 + 45 * 60 + 17, 1_600_000_000, 42),
        (0, 300_000_000_000, 7_000_000),
        (0, -62_200_000_000, 0),
    ] {
        let tz = FixedOffset::east_opt(offset).unwrap();
        out.push(tz.timestamp_opt(secs, nanos).unwrap());
    }
    out
}

fn all_events() -> Vec<Event> {
    let mut out = Vec::new();
    for (i, s) in ODD.iter().enumerate() {
        for (j, mut e) in every_kind(s).into_iter().enumerate() {
            let times = times();
            e.time = times[(i + j) % times.len()];
            if j % 3 == 0 && e.kind().is_aggregatable() {
                e.category = Category::Aggregated;
            }
            out.push(e);
        }
    }
    out
}

#[test]
fn encode_is_byte_identical_to_the_previous_encoder() {
    let events = all_events();
    let mut kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), EventKind::ALL.len(), "every kind is covered");
    for e in &events {
        let new = envelope::encode(e);
        let old = reference::encode(e);
        assert_eq!(
            String::from_utf8_lossy(&new),
            String::from_utf8_lossy(&old),
            "{e:?}"
        );
        assert_eq!(new, old);
        // And the reusable-buffer path appends the same bytes after whatever is there.
        let mut buf = b"prefix".to_vec();
        envelope::encode_into(e, &mut buf);
        assert_eq!(&buf[6..], &old[..]);
    }
}

#[test]
fn every_time_is_formatted_as_chrono_did() {
    for t in times() {
        assert_eq!(
            format_local(&t),
            t.to_rfc3339_opts(SecondsFormat::Millis, false)
        );
        assert_eq!(
            format_utc(&t),
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }
}

/// The previous `encode_fitting`: clone, encode, split in halves or truncate.
fn reference_fitting(event: &Event, limit: usize) -> Option<Vec<Vec<u8>>> {
    let bytes = reference::encode(event);
    if bytes.len() <= limit {
        return Some(vec![bytes]);
    }
    if event.payload.len() > 1 {
        let mut first = event.clone();
        let mut second = first.clone();
        second.payload = first.payload.split_off(first.payload.len() / 2);
        let mut out = reference_fitting(&first, limit)?;
        out.extend(reference_fitting(&second, limit)?);
        return Some(out);
    }
    // A single record: the truncation itself is unchanged; compare it on a fitting limit.
    None
}

/// The Id of a split-off piece is a fresh random one: compare everything else.
fn without_id(bytes: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    v["Id"] = Value::Null;
    v
}

#[test]
fn fitting_splits_exactly_as_before() {
    for e in all_events() {
        let full = reference::encode(&e).len();
        for limit in [full, full - 1, full / 2, full / 3, 700] {
            let new = envelope::encode_fitting(&e, limit);
            let Some(old) = reference_fitting(&e, limit) else {
                continue;
            };
            let new: Vec<EncodedEvent> = new.unwrap();
            assert_eq!(new.len(), old.len(), "pieces of {e:?} at {limit}");
            for (n, o) in new.iter().zip(&old) {
                assert!(!n.truncated);
                assert_eq!(n.kind, e.kind());
                assert_eq!(n.bytes.len(), o.len());
                assert!(n.bytes.len() <= limit);
                assert_eq!(without_id(&n.bytes), without_id(o));
            }
            assert_eq!(&*new[0].bytes, &old[0][..], "the first piece keeps its id");
        }
    }
}

#[test]
fn truncated_single_records_fit_and_say_so() {
    for e in all_events().into_iter().filter(|e| e.payload.len() == 1) {
        let full = reference::encode(&e).len();
        let Ok(pieces) = envelope::encode_fitting(&e, full - 10) else {
            continue;
        };
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].truncated);
        assert!(pieces[0].bytes.len() <= full - 10);
        let v: Value = serde_json::from_slice(&pieces[0].bytes).unwrap();
        assert!(v["Payload"][0]["ExtraDetails"]["Truncated"].is_string());
    }
}

mod random {
    //! The hand-written writer of the high-rate kinds against serde_json on generated records.
    use super::*;
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            any::<[u8; 4]>().prop_map(|o| IpAddr::V6(std::net::Ipv4Addr::from(o).to_ipv6_mapped())),
        ]
    }

    fn extra_details() -> impl Strategy<Value = ExtraDetails> {
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4)
    }

    fn payload() -> impl Strategy<Value = Payload> {
        let create = (
            any::<String>(),
            any::<String>(),
            any::<u32>(),
            any::<u32>(),
            any::<String>(),
            any::<Option<String>>(),
            extra_details(),
        )
            .prop_map(|(executable, command_line, pid, ppid, uid, name, extra)| {
                ProcessCreate {
                    executable,
                    command_line,
                    process_id: pid,
                    parent_process_id: ppid,
                    user_id: uid,
                    user_name: name,
                    extra_details: extra,
                }
            });
        let terminate = (any::<String>(), any::<u32>(), any::<i32>(), extra_details()).prop_map(
            |(executable, pid, status, extra)| ProcessTerminate {
                executable,
                process_id: pid,
                exit_status: status,
                extra_details: extra,
            },
        );
        let connection = (
            (
                ip(),
                any::<u16>(),
                proptest::option::of(ip()),
                any::<Option<u16>>(),
            ),
            (
                any::<bool>(),
                any::<String>(),
                any::<u32>(),
                any::<Option<String>>(),
            ),
            (any::<String>(), any::<Option<String>>(), extra_details()),
        )
            .prop_map(
                |((ra, rp, la, lp), (inbound, proto, pid, uid), (exe, cmd, extra))| {
                    ConnectionCreate {
                        remote_address: ra,
                        remote_port: rp,
                        local_address: la,
                        local_port: lp,
                        direction: if inbound {
                            Direction::In
                        } else {
                            Direction::Out
                        },
                        protocol: proto,
                        process_id: pid,
                        user_id: uid,
                        executable: exe,
                        command_line: cmd,
                        extra_details: extra,
                    }
                },
            );
        prop_oneof![
            proptest::collection::vec(create, 0..3).prop_map(Payload::ProcessCreate),
            proptest::collection::vec(terminate, 0..3).prop_map(Payload::ProcessTerminate),
            proptest::collection::vec(connection, 0..3).prop_map(Payload::ConnectionCreate),
        ]
    }

    proptest! {
        #[test]
        fn generated_events_encode_as_serde_json_did(
            payload in payload(),
            aggregated in any::<bool>(),
            time in 0usize..8,
        ) {
            let mut e = Event::new(payload);
            e.time = times()[time];
            if aggregated {
                e.category = Category::Aggregated;
            }
            let new = envelope::encode(&e);
            let old = reference::encode(&e);
            prop_assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old));
        }
    }
}
