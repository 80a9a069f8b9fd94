//! The hardware collector end to end: the real binary on this machine lists its interfaces in
//! the `ConnectedHardware` snapshot, then reports a veth pair created and deleted while it runs
//! as `Triggered` `ConnectedHardware` events (`Action` `Added`, then `Removed`), every message
//! valid against the published schemas. Needs root (`ip link add`) and iproute2.

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::agent::Agent;
use support::schema::{errors, message_validator};

/// Every ConnectedHardware event of a message, with its category.
fn hardware_events(m: &Value) -> Vec<&Value> {
    m["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["Name"] == "ConnectedHardware")
        .collect()
}

fn is_hotplug(e: &Value, name: &str, action: &str) -> bool {
    e["Category"] == "Triggered"
        && e["Payload"].as_array().is_some_and(|p| {
            p.iter().any(|r| {
                r["HardwareName"] == name
                    && r["ExtraDetails"]["Action"] == action
                    && r["ExtraDetails"]["Bus"] == "net"
            })
        })
}

/// Reads messages (all kept in `seen`) until one satisfies `found`, within `within`.
fn until(
    agent: &Agent,
    seen: &mut Vec<Value>,
    within: Duration,
    found: impl Fn(&Value) -> bool,
) -> bool {
    if seen.iter().any(&found) {
        return true;
    }
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(m) = agent.next_message(left) else {
            return false;
        };
        let hit = found(&m);
        seen.push(m);
        if hit {
            return true;
        }
    }
    false
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn interfaces_are_listed_and_a_veth_pair_is_reported_added_then_removed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (it creates network interfaces)");
    }
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("twin.json");
    std::fs::write(
        &config,
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT1S",
            "snapshotFrequency":"PT1H"}"#,
    )
    .unwrap();
    let agent = Agent::start(
        state.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            "off",
        ],
    );
    let mut seen = Vec::new();
    assert!(
        until(&agent, &mut seen, Duration::from_secs(60), |m| {
            hardware_events(m).iter().any(|e| {
                e["Category"] == "Periodic"
                    && e["Payload"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|r| r["HardwareName"] == "lo"))
            })
        }),
        "a ConnectedHardware snapshot listing lo"
    );
    // The watcher has taken its first look once it said how it runs.
    assert!(
        until(&agent, &mut seen, Duration::from_secs(30), |m| {
            m["Events"].as_array().into_iter().flatten().any(|e| {
                e["Name"] == "CollectorStatus" && e["Payload"][0]["Collector"] == "hardware"
            })
        }),
        "the hardware watcher's status"
    );

    let n = std::process::id() % 100_000;
    let (a, b) = (format!("eghwa{n}"), format!("eghwb{n}"));
    let _ = ip(&["link", "del", &a]);
    assert!(ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = ip(&["link", "del", &self.0]);
        }
    }
    let del = Del(a.clone());
    for name in [&a, &b] {
        assert!(
            until(&agent, &mut seen, Duration::from_secs(30), |m| {
                hardware_events(m)
                    .iter()
                    .any(|e| is_hotplug(e, name, "Added"))
            }),
            "{name} Added"
        );
    }
    drop(del);
    for name in [&a, &b] {
        assert!(
            until(&agent, &mut seen, Duration::from_secs(30), |m| {
                hardware_events(m)
                    .iter()
                    .any(|e| is_hotplug(e, name, "Removed"))
            }),
            "{name} Removed"
        );
    }
    let (ok, rest, stderr) = agent.stop(Duration::from_secs(20));
    assert!(ok, "{stderr}");
    seen.extend(rest);
    let v = message_validator();
    for m in &seen {
        assert_eq!(errors(&v, m), Vec::<String>::new(), "{m}");
    }
}
