//! The Prometheus endpoint of a running agent, read with a real Prometheus text parser.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::agent::{Agent, free_port};

fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_endpoint_serves_parseable_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(dir.path(), &["--metrics-addr", &addr]);
    agent
        .next_message(Duration::from_secs(10))
        .expect("a first message");
    // A program run from a temporary directory (this test's own, under /tmp) raises an alert,
    // counted per rule. Run until the process collector has seen one (it may still be starting).
    let probe = dir.path().join("eg-metrics-probe");
    std::fs::copy("/bin/true", &probe).unwrap();
    let mut scrape = None;
    for _ in 0..20 {
        assert!(
            std::process::Command::new(&probe)
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(500));
        let (status, body) = get(port, "/metrics");
        assert_eq!(status, 200);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let s = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        let rule = [("rule", "exec-from-temp-dir")];
        if value(&s, "edgeguard_alerts_total", &rule).unwrap() >= 1.0
            && value(&s, "edgeguard_sink_messages_acked_total", &[]).unwrap() >= 1.0
        {
            scrape = Some(s);
            break;
        }
    }
    let scrape = scrape.expect("an alert counted for the program run from /tmp");
    // Every rule has its series, raised and suppressed, from the start.
    for rule in edgeguard::detect::Rule::all() {
        for name in [
            "edgeguard_alerts_total",
            "edgeguard_alerts_suppressed_total",
        ] {
            assert!(
                value(&scrape, name, &[("rule", rule.id())]).is_some(),
                "{name} {{rule={}}} missing",
                rule.id()
            );
        }
    }
    assert_eq!(
        value(
            &scrape,
            "edgeguard_events_collected_total",
            &[("collector", "system"), ("kind", "SystemInformation")]
        ),
        Some(1.0)
    );
    assert!(value(&scrape, "edgeguard_sink_messages_acked_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(&scrape, "edgeguard_sink_messages_failed_total", &[]),
        Some(0.0)
    );
    assert!(value(&scrape, "edgeguard_process_resident_memory_bytes", &[]).unwrap() > 0.0);
    // Every sample carries the identity labels.
    for s in &scrape.samples {
        for label in ["iothub", "edge_device", "module_name", "instance_number"] {
            assert!(s.labels.get(label).is_some(), "{} lacks {label}", s.metric);
        }
        assert!(s.metric.starts_with("edgeguard_"), "{}", s.metric);
    }
    assert_eq!(get(port, "/").0, 404);

    let (ok, _, stderr) = agent.stop(Duration::from_secs(15));
    assert!(ok, "{stderr}");
}

#[test]
fn a_taken_metrics_port_does_not_stop_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let agent = Agent::start(dir.path(), &["--metrics-addr", &addr]);
    assert!(agent.next_message(Duration::from_secs(10)).is_some());
    let (ok, _, stderr) = agent.stop(Duration::from_secs(15));
    assert!(ok);
    assert!(stderr.contains("cannot serve metrics"), "{stderr}");
}
