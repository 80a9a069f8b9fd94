//! Recommendations end to end: the real binary on this machine's own host, a TCP port opened on
//! every interface by the test, and twin settings that defeat themselves. The port must be
//! recommended against on a snapshot after it opens, and gone from the recommendations on a
//! snapshot after it closes; nothing is sent while nothing changes.

mod support;

use serde_json::Value;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::agent::Agent;
use support::schema::{errors, message_validator};

/// The `Recommendation` events of a message.
fn recommendations(m: &Value) -> Vec<Value> {
    m["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["Name"] == "Recommendation")
        .cloned()
        .collect()
}

fn subjects(e: &Value) -> Vec<(String, String)> {
    e["Payload"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["RecommendationId"].as_str().unwrap_or("").to_string(),
                r["Subject"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Reads messages until a `Recommendation` event satisfies `pred` (at most `timeout`); keeps
/// every recommendation event seen in `seen`.
fn wait_for(
    agent: &Agent,
    seen: &mut Vec<Value>,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let v = message_validator();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(m) = agent.next_message(Duration::from_millis(500)) else {
            continue;
        };
        for e in recommendations(&m) {
            assert_eq!(errors(&v, &m), Vec::<String>::new(), "{m}");
            seen.push(e.clone());
            if pred(&e) {
                return Some(e);
            }
        }
    }
    None
}

#[test]
fn a_port_open_on_every_interface_is_recommended_until_it_closes() {
    let state = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").expect("a port on every interface");
    let port = listener.local_addr().unwrap().port();
    let ours = (
        "open-port-all-interfaces".to_string(),
        format!("tcp/{port}"),
    );
    let mut cmd = support::agent::command();
    cmd.env(
        "EDGEGUARD_CONFIG_JSON",
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT1S",
            "snapshotFrequency":"PT2S","eventPriorityHeartbeat":"Off",
            "containerCollectionEnabled":false}"#,
    );
    let agent = Agent::start_with(cmd, state.path(), &["--metrics-addr", "off"]);
    let mut seen = Vec::new();

    let open = wait_for(&agent, &mut seen, Duration::from_secs(60), |e| {
        subjects(e).contains(&ours)
    });
    let open = open.unwrap_or_else(|| panic!("no recommendation about tcp/{port}: {seen:#?}"));
    let record = open["Payload"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Subject"] == ours.1.as_str())
        .unwrap()
        .clone();
    assert_eq!(record["Source"], "ListeningPorts");
    assert_eq!(record["Severity"], "Warning");
    assert!(
        record["ExtraDetails"]["Executable"]
            .as_str()
            .is_some_and(|x| x.contains("recommendations-")),
        "the test binary holds the port: {record}"
    );
    // The twin's own setting is recommended against too.
    assert!(
        subjects(&open).contains(&("heartbeat-off".to_string(), "twin".to_string())),
        "{open}"
    );

    drop(listener);
    let closed = wait_for(&agent, &mut seen, Duration::from_secs(60), |e| {
        !subjects(e).contains(&ours)
    });
    assert!(
        closed.is_some(),
        "tcp/{port} never left the recommendations: {seen:#?}"
    );
    let (_, rest, stderr) = agent.stop(Duration::from_secs(15));
    seen.extend(rest.iter().flat_map(recommendations));
    // Only changes were sent: no two consecutive recommendation events alike.
    for pair in seen.windows(2) {
        assert_ne!(
            pair[0]["Payload"], pair[1]["Payload"],
            "a recommendation event repeated the previous one; stderr: {stderr}"
        );
    }
}
