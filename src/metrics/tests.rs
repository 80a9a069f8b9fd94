use super::*;

#[test]
fn renders_with_identity_labels() {
    let m = Metrics::new(&Identity {
        iothub: "hub.azure-devices.net".into(),
        edge_device: "dev1".into(),
        module_name: "edgeguard".into(),
        instance_number: "abc".into(),
    });
    m.dropped("pipeline", DropReason::CacheFull, 3);
    let text = m.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("edgeguard_events_dropped_total{"))
        .expect("the drop counter is rendered");
    for label in [
        "iothub=\"hub.azure-devices.net\"",
        "edge_device=\"dev1\"",
        "module_name=\"edgeguard\"",
        "instance_number=\"abc\"",
        "reason=\"cache_full\"",
        "stage=\"pipeline\"",
    ] {
        assert!(line.contains(label), "{label} missing in {line}");
    }
    assert!(line.ends_with(" 3"), "{line}");
    assert_eq!(
        m.value(
            "edgeguard_events_dropped_total",
            &[("reason", "cache_full")]
        ),
        Some(3.0)
    );
    assert_eq!(m.dropped_total("pipeline", DropReason::CacheFull), 3);
}

#[test]
fn drops_are_logged_once_a_minute_and_the_tail_is_not_lost() {
    let m = Metrics::for_tests();
    let key = ("pipeline", DropReason::CacheFull);
    let pending = |m: &Metrics| m.drop_log.lock().unwrap().get(&key).map(|e| e.1);
    // The first drop is logged at once; the next ones within the minute are only counted.
    m.dropped(key.0, key.1, 1);
    assert_eq!(pending(&m), Some(0));
    m.dropped(key.0, key.1, 4);
    m.dropped(key.0, key.1, 1);
    assert_eq!(pending(&m), Some(5));
    assert_eq!(
        m.log_pending_drops(false),
        0,
        "not before the minute has passed"
    );
    // A minute later with no new drop, the periodic call logs the 5 left over.
    m.drop_log.lock().unwrap().get_mut(&key).unwrap().0 -= DROP_LOG_INTERVAL;
    assert_eq!(m.log_pending_drops(false), 1);
    assert_eq!(pending(&m), Some(0));
    assert_eq!(m.log_pending_drops(false), 0, "nothing left to log");
    // At shutdown whatever is counted is logged, minute or not.
    m.dropped(key.0, key.1, 2);
    assert_eq!(m.log_pending_drops(false), 0);
    assert_eq!(m.log_pending_drops(true), 1);
    assert_eq!(m.dropped_total(key.0, key.1), 8);
}

/// The agent's own process figures (/proc/self), apart from the registry's tests.
mod process_tests {
    use super::*;

    #[test]
    fn cpu_time_parses_even_with_odd_command_names() {
        let stat =
            "1234 (we ird) (name)) S 1 1 1 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 100 0 0";
        let ticks = crate::kernel::sys::clock_ticks() as f64;
        assert_eq!(cpu_seconds_from_stat(stat), Some(400.0 / ticks));
        assert_eq!(cpu_seconds_from_stat("garbage"), None);
        assert_eq!(cpu_seconds_from_stat("1 (x) S 1"), None);
    }

    #[test]
    fn process_figures_are_real() {
        let m = Metrics::for_tests();
        m.render();
        let rss = m
            .value("edgeguard_process_resident_memory_bytes", &[])
            .unwrap();
        assert!(rss > 100_000.0, "{rss}");
    }
}
