use super::*;
use crate::config::Aggregation;
use crate::event::{ConnectionCreate, Direction, ListeningPort, ProcessCreate};
use proptest::prelude::*;
use serde_json::Value;
use std::time::Duration;

fn process(cmd: &str, pid: u32) -> Event {
    Event::new(Payload::ProcessCreate(vec![ProcessCreate {
        executable: "/usr/bin/check".into(),
        command_line: cmd.into(),
        process_id: pid,
        parent_process_id: 1,
        user_id: "0".into(),
        user_name: Some("root".into()),
        extra_details: Default::default(),
    }]))
}

fn connection(dir: Direction, local_port: u16, remote_port: u16) -> Event {
    Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
        remote_address: "10.0.0.2".parse().unwrap(),
        remote_port,
        local_address: Some("10.0.0.1".parse().unwrap()),
        local_port: Some(local_port),
        direction: dir,
        protocol: "TCP".into(),
        process_id: 42,
        user_id: Some("1000".into()),
        executable: "/usr/bin/curl".into(),
        command_line: Some("curl x".into()),
        extra_details: Default::default(),
    }]))
}

/// `n` ports on loopback (ports on every interface would add a `Recommendation`, see
/// `recommendations_follow_the_snapshots`).
fn ports(n: u16) -> Event {
    ports_on("127.0.0.1", n)
}

fn ports_on(address: &str, n: u16) -> Event {
    Event::new(Payload::ListeningPorts(
        (0..n)
            .map(|p| ListeningPort {
                protocol: "TCP".into(),
                local_address: Some(address.parse().unwrap()),
                local_port: p,
                remote_address: None,
                remote_port: None,
                extra_details: Default::default(),
            })
            .collect(),
    ))
}

fn pipeline_with(f: impl FnOnce(&mut Config)) -> (Pipeline, Arc<Metrics>) {
    let mut cfg = Config::default();
    f(&mut cfg);
    let metrics = Arc::new(Metrics::for_tests());
    let header = MessageHeader::new("0.0.0-test", uuid::Uuid::new_v4());
    (
        Pipeline::new(header, Arc::new(cfg), metrics.clone()),
        metrics,
    )
}

fn drain(p: &mut Pipeline, t: Trigger) -> Vec<Value> {
    std::iter::from_fn(|| p.take_message(t))
        .map(|m| serde_json::from_slice(&m.body).expect("messages are JSON"))
        .collect()
}

fn events(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn process_events_aggregate_by_command_line_not_pid() {
    let (mut p, metrics) = pipeline_with(|_| {});
    let now = Instant::now();
    for pid in 0..5 {
        p.push(process("check --fast", 100 + pid), now);
    }
    p.push(process("check --slow", 7), now);
    assert_eq!(
        p.queued_events(),
        0,
        "aggregated events wait for their window"
    );
    p.flush_windows();
    let evs = events(&drain(&mut p, Trigger::All));
    assert_eq!(evs.len(), 2);
    for e in &evs {
        assert_eq!(e["Category"], "Aggregated");
        let extra = &e["Payload"][0]["ExtraDetails"];
        for k in [
            "StartTimeLocal",
            "StartTimeUtc",
            "EndTimeLocal",
            "EndTimeUtc",
        ] {
            assert!(extra[k].is_string(), "{k} missing in {extra}");
        }
    }
    let fast = evs
        .iter()
        .find(|e| e["Payload"][0]["CommandLine"] == "check --fast")
        .unwrap();
    assert_eq!(fast["Payload"][0]["ExtraDetails"]["HitCount"], "5");
    assert_eq!(
        fast["Payload"][0]["ProcessId"], 100,
        "the first occurrence is kept"
    );
    assert_eq!(
        metrics.value(
            "edgeguard_events_aggregated_total",
            &[("kind", "ProcessCreate")]
        ),
        Some(4.0)
    );
}

#[test]
fn connection_key_uses_local_port_in_and_remote_port_out() {
    let (mut p, _) = pipeline_with(|_| {});
    let now = Instant::now();
    // Outgoing: same remote port, ephemeral local ports differ → one key.
    p.push(connection(Direction::Out, 40000, 443), now);
    p.push(connection(Direction::Out, 40001, 443), now);
    // Outgoing to another remote port → another key.
    p.push(connection(Direction::Out, 40002, 8883), now);
    // Incoming: same local port, remote ports differ → one key.
    p.push(connection(Direction::In, 22, 50000), now);
    p.push(connection(Direction::In, 22, 50001), now);
    p.flush_windows();
    let evs = events(&drain(&mut p, Trigger::All));
    let mut hits: Vec<String> = evs
        .iter()
        .map(|e| {
            e["Payload"][0]["ExtraDetails"]["HitCount"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    hits.sort();
    assert_eq!(hits, ["1", "2", "2"]);
}

#[test]
fn disabled_aggregation_passes_events_through() {
    let (mut p, _) = pipeline_with(|c| {
        c.aggregation.insert(
            EventKind::ProcessCreate,
            Aggregation {
                enabled: false,
                interval: Duration::from_secs(3600),
            },
        );
    });
    let now = Instant::now();
    p.push(process("a", 1), now);
    p.push(process("a", 2), now);
    let evs = events(&drain(&mut p, Trigger::All));
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| e["Category"] == "Triggered"));
}

/// A snapshot with something to recommend queues a Low `Recommendation` beside it, once; the
/// same snapshot again adds nothing; a snapshot of a kind turned Off recommends nothing.
#[test]
fn recommendations_follow_the_snapshots() {
    let (mut p, _) = pipeline_with(|_| {});
    let now = Instant::now();
    p.push(ports_on("0.0.0.0", 2), now);
    p.push(ports_on("0.0.0.0", 2), now);
    let evs = events(&drain(&mut p, Trigger::All));
    let names: Vec<&str> = evs.iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["ListeningPorts", "ListeningPorts", "Recommendation"],
        "{evs:?}"
    );
    assert_eq!(evs[0]["Payload"].as_array().unwrap().len(), 2);
    let (mut off, _) = pipeline_with(|c| {
        c.event_priorities
            .insert(EventKind::ListeningPorts, Priority::Off);
    });
    off.push(ports_on("0.0.0.0", 2), now);
    assert_eq!(off.queued_events(), 0);
}

#[test]
fn priority_off_filters_and_counts() {
    let (mut p, metrics) = pipeline_with(|c| {
        c.event_priorities
            .insert(EventKind::ListeningPorts, Priority::Off);
    });
    p.push(ports(3), Instant::now());
    assert_eq!(p.queued_events(), 0);
    assert_eq!(
        metrics.value(
            "edgeguard_events_filtered_total",
            &[("kind", "ListeningPorts")]
        ),
        Some(1.0)
    );
}

/// A program run from /tmp, as the process collector reports it.
fn dropped_program(pid: u32) -> Event {
    let Payload::ProcessCreate(mut v) = process("dropper --x", pid).payload else {
        unreachable!()
    };
    v[0].executable = "/tmp/.x/dropper".into();
    Event::new(Payload::ProcessCreate(v))
}

#[test]
fn detection_sees_events_before_aggregation_and_queues_high_alerts() {
    let (mut p, metrics) = pipeline_with(|_| {});
    let now = Instant::now();
    p.push(dropped_program(1), now);
    assert!(p.take_alert_raised());
    assert!(!p.take_alert_raised(), "reported once");
    // The same program again is suppressed (counted), and aggregated as usual.
    p.push(dropped_program(2), now);
    assert!(!p.take_alert_raised());
    let rule = [("rule", "exec-from-temp-dir")];
    assert_eq!(metrics.value("edgeguard_alerts_total", &rule), Some(1.0));
    assert_eq!(
        metrics.value("edgeguard_alerts_suppressed_total", &rule),
        Some(1.0)
    );
    // Every rule has its series from the start.
    let other = [("rule", "uid0-account-added")];
    assert_eq!(metrics.value("edgeguard_alerts_total", &other), Some(0.0));
    // The alert is in the High lane, sent by the high timer without waiting for the window.
    let evs = events(&drain(&mut p, Trigger::High));
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["Name"], "Alert");
    assert_eq!(evs[0]["Category"], "Triggered");
    assert_eq!(evs[0]["Payload"][0]["RuleId"], "exec-from-temp-dir");
    assert_eq!(evs[0]["Payload"][0]["ProcessId"], 1);
    p.flush_windows();
    let evs = events(&drain(&mut p, Trigger::All));
    assert_eq!(evs[0]["Payload"][0]["ExtraDetails"]["HitCount"], "2");
}

#[test]
fn alert_priority_off_turns_detection_off_and_low_does_not_hurry() {
    let (mut p, metrics) = pipeline_with(|c| {
        c.event_priorities.insert(EventKind::Alert, Priority::Off);
    });
    p.push(dropped_program(1), Instant::now());
    assert!(!p.take_alert_raised());
    let rule = [("rule", "exec-from-temp-dir")];
    assert_eq!(metrics.value("edgeguard_alerts_total", &rule), Some(0.0));
    // Switched to Low at run time: alerts are raised and queued Low, with no early send.
    let mut low = p.config().clone();
    low.event_priorities.insert(EventKind::Alert, Priority::Low);
    p.set_config(Arc::new(low));
    p.push(dropped_program(2), Instant::now());
    assert!(!p.take_alert_raised());
    assert_eq!(metrics.value("edgeguard_alerts_total", &rule), Some(1.0));
    assert_eq!(drain(&mut p, Trigger::High), Vec::<Value>::new());
    let evs = events(&drain(&mut p, Trigger::Low));
    assert_eq!(evs[0]["Name"], "Alert");
    // One rule off at run time: that rule only.
    let mut off = p.config().clone();
    off.detection_rules_disabled = vec![crate::detect::Rule::ExecFromTempDir];
    p.set_config(Arc::new(off));
    let Payload::ProcessCreate(mut v) = dropped_program(3).payload else {
        unreachable!()
    };
    v[0].executable = "/tmp/other".into();
    p.push(Event::new(Payload::ProcessCreate(v)), Instant::now());
    assert_eq!(metrics.value("edgeguard_alerts_total", &rule), Some(1.0));
}

#[test]
fn custom_rules_apply_at_run_time_and_are_counted_by_id() {
    let (mut p, metrics) = pipeline_with(|_| {});
    let rule = serde_json::json!({
        "id": "vendor-cmd", "title": "Vendor command", "severity": "Warning",
        "description": "d", "remediation": "r", "kind": "ProcessCreate",
        "match": {"field": "CommandLine", "contains": "vendor-cmd"}
    });
    let with = |rules: &[Value]| {
        let mut c = p.config().clone();
        let (rules, errors) = crate::detect::CustomRules::parse(rules);
        assert!(errors.is_empty(), "{errors:?}");
        c.detection_custom_rules = rules;
        Arc::new(c)
    };
    let series = [("rule", "vendor-cmd")];
    let (on, off) = (with(std::slice::from_ref(&rule)), with(&[]));
    p.set_config(on);
    let now = Instant::now();
    p.push(process("vendor-cmd --sync", 1), now);
    assert!(p.take_alert_raised());
    assert_eq!(metrics.value("edgeguard_alerts_total", &series), Some(1.0));
    p.push(process("vendor-cmd --sync", 2), now);
    let suppressed = metrics.value("edgeguard_alerts_suppressed_total", &series);
    assert_eq!(suppressed, Some(1.0));
    let evs = events(&drain(&mut p, Trigger::High));
    assert_eq!(evs[0]["Name"], "Alert");
    assert_eq!(evs[0]["Payload"][0]["RuleId"], "vendor-cmd");
    // Removed: no more alerts.
    p.set_config(off);
    p.push(process("vendor-cmd --other", 3), now);
    assert!(!p.take_alert_raised());
    assert_eq!(metrics.value("edgeguard_alerts_total", &series), Some(1.0));
}

#[test]
fn windows_close_after_their_interval() {
    let (mut p, _) = pipeline_with(|_| {});
    let t0 = Instant::now();
    p.push(process("a", 1), t0);
    let close = p.next_window_close().unwrap();
    assert_eq!(close, t0 + Duration::from_secs(3600));
    p.expire_windows(close - Duration::from_millis(1));
    assert_eq!(p.queued_events(), 0);
    p.expire_windows(close);
    assert_eq!(p.queued_events(), 1);
    assert_eq!(p.next_window_close(), None);
}

#[test]
fn aggregation_map_is_bounded() {
    let (p, _) = pipeline_with(|_| {});
    let mut p = p.with_max_aggregation_keys(3);
    let now = Instant::now();
    for i in 0..7 {
        p.push(process(&format!("cmd {i}"), i), now);
    }
    // Keys 0-2 filled the window; key 3 flushed them; key 6 flushed 3-5.
    assert_eq!(p.queued_events(), 6);
    assert_eq!(p.aggregator.len(), 1);
}

#[test]
fn cache_evicts_low_before_high_and_reports_drops() {
    let (mut p, metrics) = pipeline_with(|c| {
        c.max_local_cache_size_in_bytes = 8192;
        c.max_message_size_in_bytes = 8192;
        for k in EventKind::AGGREGATABLE {
            c.aggregation.get_mut(&k).unwrap().enabled = false;
        }
    });
    let now = Instant::now();
    // ~1 KiB Low events then ~1 KiB High events (ListeningPorts is High by default).
    for i in 0..6 {
        p.push(process(&"x".repeat(800 + i), i as u32), now);
    }
    for _ in 0..6 {
        p.push(ports(12), now);
    }
    assert!(p.queued_bytes() <= 8192);
    let (high_n, _) = p.cache.queued(Priority::High);
    assert_eq!(high_n, 6, "no High event is evicted while Low ones remain");
    let dropped_low = 6 - p.cache.queued(Priority::Low).0 as u64;
    assert!(dropped_low > 0);
    assert_eq!(
        metrics.dropped_total("pipeline", DropReason::CacheFull),
        dropped_low
    );
    let stats = p.statistics_events();
    let v: Value = serde_json::from_slice(&envelope::encode(&stats[0])).unwrap();
    assert_eq!(v["Name"], "DroppedEventsStatistics");
    assert_eq!(v["Payload"][0]["Queue"], "High");
    assert_eq!(v["Payload"][0]["CollectedEvents"], 6);
    assert_eq!(v["Payload"][0]["DroppedEvents"], 0);
    assert_eq!(v["Payload"][1]["Queue"], "Low");
    assert_eq!(v["Payload"][1]["CollectedEvents"], 6);
    assert_eq!(v["Payload"][1]["DroppedEvents"], dropped_low);
    // The counters restart after each report.
    let again = p.statistics_events();
    let v: Value = serde_json::from_slice(&envelope::encode(&again[0])).unwrap();
    assert_eq!(v["Payload"][1]["CollectedEvents"], 0);
}

#[test]
fn smaller_cache_limit_evicts_at_once() {
    let (mut p, metrics) = pipeline_with(|_| {});
    let now = Instant::now();
    for _ in 0..20 {
        p.push(ports(12), now);
    }
    let before = p.queued_bytes();
    let mut cfg = p.config().clone();
    cfg.max_local_cache_size_in_bytes = 8192;
    cfg.max_message_size_in_bytes = 8192;
    p.set_config(Arc::new(cfg));
    assert!(before > 8192 && p.queued_bytes() <= 8192);
    assert!(metrics.dropped_total("pipeline", DropReason::CacheFull) > 0);
}

#[test]
fn high_timer_sends_high_topped_up_with_low() {
    let (mut p, _) = pipeline_with(|c| {
        for k in EventKind::AGGREGATABLE {
            c.aggregation.get_mut(&k).unwrap().enabled = false;
        }
    });
    let now = Instant::now();
    p.push(process("low", 1), now);
    assert!(p.take_message(Trigger::High).is_none(), "only Low queued");
    p.push(ports(1), now);
    let m = p.take_message(Trigger::High).unwrap();
    assert_eq!(m.priority, Priority::High);
    assert_eq!(m.events, 2, "topped up with the Low event");
    assert!(p.take_message(Trigger::Low).is_none());
}

#[test]
fn statistics_count_acknowledged_messages() {
    let (mut p, metrics) = pipeline_with(|_| {});
    metrics.message_acked(1000);
    metrics.message_acked(5000);
    metrics.message_failed();
    let stats = p.statistics_events();
    let v: Value = serde_json::from_slice(&envelope::encode(&stats[1])).unwrap();
    assert_eq!(v["Name"], "MessageStatistics");
    assert_eq!(v["Payload"][0]["MessagesSent"], 2);
    assert_eq!(v["Payload"][0]["MessagesUnder4KB"], 1);
    assert_eq!(v["Payload"][0]["TotalFailed"], 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the event sizes, no message exceeds the limit and every event arrives once
    /// (possibly split or truncated, never lost while the cache has room).
    #[test]
    fn messages_never_exceed_the_limit(
        sizes in proptest::collection::vec(0usize..40_000, 1..60),
        max in prop_oneof![Just(8192u64), Just(12288), Just(65536), Just(262144)],
    ) {
        let (mut p, metrics) = pipeline_with(|c| {
            c.max_message_size_in_bytes = max;
            c.max_local_cache_size_in_bytes = 100_000_000;
            for k in EventKind::AGGREGATABLE {
                c.aggregation.get_mut(&k).unwrap().enabled = false;
            }
        });
        let now = Instant::now();
        for (i, s) in sizes.iter().enumerate() {
            p.push(process(&format!("{i}:{}", "y".repeat(*s)), i as u32), now);
        }
        let mut seen = Vec::new();
        while let Some(m) = p.take_message(Trigger::All) {
            prop_assert!(m.body.len() as u64 <= max, "{} > {}", m.body.len(), max);
            let v: Value = serde_json::from_slice(&m.body).unwrap();
            let evs = v["Events"].as_array().unwrap();
            prop_assert_eq!(evs.len(), m.events);
            for e in evs {
                let cmd = e["Payload"][0]["CommandLine"].as_str().unwrap();
                seen.push(cmd.split(':').next().unwrap().parse::<usize>().unwrap());
            }
        }
        seen.sort();
        prop_assert_eq!(seen, (0..sizes.len()).collect::<Vec<_>>());
        prop_assert_eq!(metrics.dropped_total("pipeline", DropReason::TooLarge), 0);
    }
}

mod task {
    use super::*;

    struct Harness {
        events: mpsc::Sender<Event>,
        control: mpsc::Sender<Control>,
        config: watch::Sender<Arc<Config>>,
        out: mpsc::Receiver<Message>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(cfg: Config) -> Harness {
        let metrics = Arc::new(Metrics::for_tests());
        let header = MessageHeader::new("t", uuid::Uuid::nil());
        let (config, config_rx) = watch::channel(Arc::new(cfg));
        let p = Pipeline::new(header, config_rx.borrow().clone(), metrics);
        let (events, ev_rx) = mpsc::channel(16);
        let (control, ctl_rx) = mpsc::channel(4);
        let (out_tx, out) = mpsc::channel(1);
        let task = tokio::spawn(run(p, ev_rx, ctl_rx, config_rx, out_tx, None));
        Harness {
            events,
            control,
            config,
            out,
            task,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_send_by_priority_and_nothing_when_idle() {
        let mut h = start(Config::default());
        h.events.send(ports(1)).await.unwrap(); // High
        h.events.send(process("a", 1)).await.unwrap(); // Low, aggregated for 1 h
        tokio::time::sleep(Duration::from_secs(7 * 60 - 1)).await;
        assert!(h.out.try_recv().is_err(), "nothing before the high timer");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m = h.out.try_recv().expect("high timer fired");
        assert_eq!(m.priority, Priority::High);
        assert_eq!(m.events, 1, "the ProcessCreate still sits in its window");
        // Idle high ticks send nothing.
        tokio::time::sleep(Duration::from_secs(7 * 60)).await;
        assert!(h.out.try_recv().is_err());
        // After the window (1 h) closes and the next high tick, the Low event is a top-up.
        tokio::time::sleep(Duration::from_secs(50 * 60)).await;
        let m = h.out.recv().await.unwrap();
        let v: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(v["Events"][0]["Category"], "Aggregated");
        drop(h.events);
        h.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_sends_at_once() {
        let mut h = start(Config {
            max_message_size_in_bytes: 8192,
            ..Config::default()
        });
        for _ in 0..12 {
            h.events.send(ports(12)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let m = h.out.try_recv().expect("sent without waiting for a timer");
        assert!(m.body.len() <= 8192 && m.body.len() > 6000);
        drop(h.events);
        h.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_alert_is_sent_at_once_not_on_the_high_timer() {
        let mut h = start(Config::default());
        h.events.send(ports(1)).await.unwrap(); // High, waits for the timer
        h.events.send(dropped_program(7)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let names = |m: &Message| -> Vec<String> {
            let v: Value = serde_json::from_slice(&m.body).unwrap();
            v["Events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["Name"].as_str().unwrap().to_string())
                .collect()
        };
        let m = h
            .out
            .try_recv()
            .expect("sent without waiting for the 7-minute timer");
        assert_eq!(names(&m), ["Alert"], "alerts travel alone");
        assert_eq!(m.output, Output::Alerts);
        assert_eq!(m.priority, Priority::High);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let m = h.out.try_recv().expect("the High lane goes with it");
        assert_eq!(names(&m), ["ListeningPorts"]);
        assert_eq!(m.output, Output::Events);
        drop(h.events);
        h.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn flush_sends_everything_and_replies() {
        let mut h = start(Config::default());
        h.events.send(process("a", 1)).await.unwrap();
        h.events.send(ports(2)).await.unwrap();
        let (tx, rx) = oneshot::channel();
        h.control.send(Control::Flush(Some(tx))).await.unwrap();
        let m = h.out.recv().await.unwrap();
        assert_eq!(m.events, 2);
        rx.await.unwrap();
        drop(h.events);
        h.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_windows_and_queues() {
        let mut h = start(Config::default());
        for i in 0..3 {
            h.events.send(process("a", i)).await.unwrap();
        }
        h.events.send(ports(1)).await.unwrap();
        drop(h.events);
        let mut got = 0;
        while let Some(m) = h.out.recv().await {
            got += m.events;
        }
        assert_eq!(
            got, 2,
            "one aggregated ProcessCreate and one ListeningPorts"
        );
        h.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn config_changes_apply_without_restart() {
        let mut h = start(Config::default());
        let cfg = Config {
            high_priority_message_frequency: Duration::from_secs(10),
            ..Config::default()
        };
        h.config.send(Arc::new(cfg)).unwrap();
        h.events.send(ports(1)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(h.out.try_recv().is_ok(), "the new 10 s high timer applied");
        drop(h.events);
        h.task.await.unwrap();
    }
}

mod durable {
    //! The journal: what the pipeline held survives a crash, exactly once.
    use super::*;
    use crate::pipeline::spool::{FILE_NAME, Spool};

    /// A pipeline with a journal over a fresh spool file, its events Low and aggregated.
    fn open(dir: &std::path::Path) -> (Pipeline, Spool) {
        let mut spool = Spool::open(dir.join(FILE_NAME), 10 << 20).expect("spool");
        let rows = spool.take_journal();
        let (p, _) = pipeline_with(|c| {
            c.aggregation.insert(
                EventKind::ConnectionCreate,
                Aggregation {
                    enabled: false,
                    interval: Duration::from_secs(3600),
                },
            );
        });
        let mut p = p.with_journal();
        p.restore(rows);
        (p, spool)
    }

    fn commit(p: &mut Pipeline, spool: &mut Spool) {
        if let Some(batch) = p.journal_batch() {
            spool.write_journal(&batch).expect("journal commit");
        }
    }

    /// What a message taken now holds, stored in the spool as the outbox would.
    fn store_all(p: &mut Pipeline, spool: &mut Spool) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(m) = p.take_message(Trigger::All) {
            spool
                .append_to(m.output, m.priority, &m.body, m.events, &m.seqs)
                .expect("append");
            out.push(serde_json::from_slice(&m.body).unwrap());
        }
        out
    }

    fn hit_counts(events: &[Value]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["Name"] == "ProcessCreate")
            .map(|e| {
                (
                    e["Payload"][0]["CommandLine"].as_str().unwrap().to_string(),
                    e["Payload"][0]["ExtraDetails"]["HitCount"]
                        .as_str()
                        .unwrap_or("1")
                        .to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn queued_events_and_open_windows_survive_a_crash_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let (mut p, mut spool) = open(dir.path());
            for i in 0..5 {
                p.push(process("health-check", i), now);
            }
            p.push(process("other", 9), now);
            p.push(connection(Direction::Out, 50000, 443), now);
            commit(&mut p, &mut spool);
            // More hits after the commit: a crash loses these (the last interval) only.
            p.push(process("health-check", 6), now);
            // Crash: nothing else is written.
        }
        let (mut p, mut spool) = open(dir.path());
        commit(&mut p, &mut spool);
        let all = events(&store_all(&mut p, &mut spool));
        assert_eq!(
            hit_counts(&all),
            vec![
                ("health-check".to_string(), "5".to_string()),
                ("other".to_string(), "1".to_string())
            ],
            "windows come back closed, with the hits committed before the crash"
        );
        assert_eq!(
            all.iter()
                .filter(|e| e["Name"] == "ConnectionCreate")
                .count(),
            1
        );
        commit(&mut p, &mut spool);
        drop((p, spool));
        // Everything is now in messages: a second restart queues nothing again.
        let (mut p, mut spool) = open(dir.path());
        assert_eq!(p.queued_events(), 0);
        assert!(p.take_message(Trigger::All).is_none());
        assert_eq!(
            spool.pending().count(),
            1,
            "the one message of the second run"
        );
        assert!(spool.take_journal().queue.is_empty());
    }

    #[test]
    fn evicted_and_sent_events_leave_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let (mut p, mut spool) = open(dir.path());
            p.set_config(Arc::new(Config {
                max_local_cache_size_in_bytes: 2_000,
                ..p.config().clone()
            }));
            for port in 0..20 {
                p.push(connection(Direction::Out, 50000 + port, 443), now);
                commit(&mut p, &mut spool);
            }
            let kept = p.queued_events();
            assert!(kept < 20, "the small cache evicted some: {kept}");
            let stored = events(&store_all(&mut p, &mut spool));
            assert_eq!(stored.len(), kept);
            commit(&mut p, &mut spool);
        }
        let (p, _spool) = open(dir.path());
        assert_eq!(
            p.queued_events(),
            0,
            "neither evicted nor sent events come back"
        );
    }

    #[test]
    fn events_sent_before_their_commit_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let (mut p, mut spool) = open(dir.path());
            p.push(connection(Direction::Out, 50000, 443), now);
            let m = p.take_message(Trigger::All).expect("a message");
            assert!(
                m.seqs.is_empty(),
                "its row was never written: nothing to delete"
            );
            spool
                .append_to(m.output, m.priority, &m.body, m.events, &m.seqs)
                .unwrap();
            commit(&mut p, &mut spool);
        }
        let (p, spool) = open(dir.path());
        assert_eq!(p.queued_events(), 0);
        assert_eq!(spool.pending().count(), 1);
    }

    #[test]
    fn a_failed_commit_goes_again_with_the_next() {
        let (p, _) = pipeline_with(|c| {
            c.aggregation.insert(
                EventKind::ConnectionCreate,
                Aggregation {
                    enabled: false,
                    interval: Duration::from_secs(3600),
                },
            );
        });
        let mut p = p.with_journal();
        let now = Instant::now();
        p.push(connection(Direction::Out, 1, 2), now);
        let first = p.journal_batch().expect("a batch");
        assert_eq!(first.inserts.len(), 1);
        p.journal_failed(first);
        p.push(connection(Direction::Out, 3, 4), now);
        let both = p.journal_batch().expect("a batch");
        assert_eq!(both.inserts.len(), 2);
        assert!(p.journal_batch().is_none());
    }
}
