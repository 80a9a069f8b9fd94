use super::*;
use crate::metrics::Metrics;

#[test]
fn a_collector_keeps_since_while_its_state_holds() {
    let m = Metrics::for_tests();
    m.collector_status("process", CollectorHealth::Up, "following");
    let first = report(&m).collector_details["process"].clone();
    m.collector_status("process", CollectorHealth::Up, "still following");
    let second = report(&m).collector_details["process"].clone();
    assert_eq!(first.since, second.since);
    assert_eq!(second.message, "still following");
    m.collector_status("process", CollectorHealth::Down, "gone");
    let r = report(&m);
    assert_eq!(r.collectors["process"], "Down");
    assert_eq!(
        r.problems(Duration::from_secs(300)),
        vec!["collector process is Down: gone".to_string()]
    );
}

#[test]
fn the_hub_link_counts_only_past_its_grace() {
    let m = Metrics::for_tests();
    assert!(report(&m).connection.is_none(), "no hub, no link");
    m.set_hub_link("disconnected", Some("connection refused"), false);
    let r = report(&m);
    let link = r.connection.clone().expect("a link");
    assert_eq!(link.state, "disconnected");
    assert_eq!(link.last_error.as_deref(), Some("connection refused"));
    assert!(r.problems(Duration::from_secs(300)).is_empty());
    let mut late = r.clone();
    late.connection.as_mut().unwrap().seconds_in_state = 301;
    let problems = late.problems(Duration::from_secs(300));
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("edgeHub unreachable for 301 s"),
        "{problems:?}"
    );
    m.set_hub_link("connected", None, false);
    let mut connected = report(&m);
    connected.connection.as_mut().unwrap().seconds_in_state = 10_000;
    assert!(connected.problems(Duration::from_secs(300)).is_empty());
}

#[test]
fn alerts_drops_and_acknowledgements_are_in_the_report() {
    let m = Metrics::for_tests();
    m.alert(Rule::ExecFromTempDir, true);
    m.alert(Rule::ExecFromTempDir, true);
    m.alert(Rule::ExecFromTempDir, false);
    m.dropped("pipeline", crate::metrics::DropReason::CacheFull, 4);
    m.message_acked(100);
    let r = report(&m);
    assert_eq!(r.alerts_last_hour["exec-from-temp-dir"], 2);
    assert_eq!(r.alerts_last_hour["uid0-account-added"], 0);
    assert_eq!(r.drops["pipeline/cache_full"], 4);
    assert!(r.messages.last_acked.is_some());
    assert_eq!(r.messages.acked, 1);
    let text = r.render(Duration::from_secs(300));
    assert!(text.contains("exec-from-temp-dir 2"), "{text}");
    assert!(text.contains("pipeline/cache_full 4"), "{text}");
    // The report survives its own JSON round trip (what `edgeguard status` reads).
    let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn custom_rule_alerts_are_counted_by_id_within_a_bound() {
    let m = Metrics::for_tests();
    m.custom_alert("vendor-marker", true);
    m.custom_alert("vendor-marker", false);
    let raised = |rule: &str| m.value("edgeguard_alerts_total", &[("rule", rule)]);
    let suppressed = |rule: &str| m.value("edgeguard_alerts_suppressed_total", &[("rule", rule)]);
    assert_eq!(raised("vendor-marker"), Some(1.0));
    assert_eq!(suppressed("vendor-marker"), Some(1.0));
    assert_eq!(report(&m).alerts_last_hour["vendor-marker"], 1);
    // Past the bound, new ids share one series (the status report still names them).
    for i in 0..crate::metrics::MAX_CUSTOM_RULE_SERIES {
        m.custom_alert(&format!("r{i}"), false);
    }
    m.custom_alert("one-too-many", true);
    assert_eq!(raised("one-too-many"), None);
    assert_eq!(raised("custom-other"), Some(1.0));
    assert_eq!(report(&m).alerts_last_hour["one-too-many"], 1);
    m.custom_alert("vendor-marker", true);
    assert_eq!(raised("vendor-marker"), Some(2.0));
}

#[test]
fn durations_read_like_a_person_would_say_them() {
    assert_eq!(human_duration(42), "42s");
    assert_eq!(human_duration(250), "4m 10s");
    assert_eq!(human_duration(7500), "2h 5m");
    assert_eq!(human_duration(273_600), "3d 4h");
}
