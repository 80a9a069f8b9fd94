//! The binary as a user runs it: `snapshot`, `run` with SIGTERM, `config check`, sinks, errors.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{Agent, event_names};
use support::schema::{errors, message_validator};

fn edgeguard() -> std::process::Command {
    support::agent::command()
}

/// The first event named `name` in some messages.
fn find_event(messages: &[Value], name: &str) -> Value {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["Name"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {messages:?}"))
}

fn twin_defaults() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../shared/reference/asc-security-schemas/security_module_twin/azureiotsecurity_default.json",
    )
}

fn stdout_messages(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

#[test]
fn snapshot_prints_one_schema_valid_message_about_this_host() {
    let state = tempfile::tempdir().unwrap();
    let out = edgeguard()
        .args(["snapshot", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = stdout_messages(&out.stdout);
    // One message holds every snapshot, unless together they pass the default message size
    // (a host with a large package inventory).
    let bytes: usize = out.stdout.split(|b| *b == b'\n').map(<[u8]>::len).sum();
    if bytes <= 204_800 {
        assert_eq!(messages.len(), 1, "one message holds every snapshot");
    }
    let v = message_validator();
    assert_eq!(errors(&v, &messages[0]), Vec::<String>::new());
    let mut names = event_names(&messages);
    names.sort();
    names.dedup();
    for kind in [
        "SystemInformation",
        "ListeningPorts",
        "LocalUsers",
        "FirewallConfiguration",
        "OSBaseline",
        "ConnectedHardware",
    ] {
        assert!(
            names.iter().any(|n| n == kind),
            "{kind} missing from {names:?}"
        );
    }
    let info = &find_event(&messages, "SystemInformation")["Payload"][0];
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["ExtraDetails"]["KernelRelease"], kernel.trim());
    assert!(info["TotalPhysicalMemoryInKB"].as_u64().unwrap() > 0);
    // The agent id persists across runs.
    let again = edgeguard()
        .args(["snapshot", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(
        stdout_messages(&again.stdout)[0]["AgentId"],
        messages[0]["AgentId"]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("edgeguard starting"));
}

#[test]
fn snapshot_reads_the_host_root_it_is_given() {
    let state = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::fs::write(
        host.path().join("etc/os-release"),
        "NAME=\"Fixture OS\"\nVERSION_ID=9\n",
    )
    .unwrap();
    std::fs::write(host.path().join("etc/hostname"), "fixture-host\n").unwrap();
    let out = edgeguard()
        .args(["snapshot", "--host-root"])
        .arg(host.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let m = stdout_messages(&out.stdout);
    let info = &find_event(&m, "SystemInformation")["Payload"][0];
    assert_eq!(info["OSName"], "Fixture OS");
    assert_eq!(info["HostName"], "fixture-host");
    assert!(
        info["ExtraDetails"]["Unavailable"]
            .as_str()
            .unwrap()
            .contains("/proc/meminfo")
    );
}

#[test]
fn config_check_accepts_the_twin_defaults() {
    let out = edgeguard()
        .args(["config", "check"])
        .arg(twin_defaults())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let obj = &reported["ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"];
    assert_eq!(obj["highPriorityMessageFrequency"]["value"], "PT7M");
    assert_eq!(obj["maxMessageSizeInBytes"]["value"], 204800);
}

fn write_twin(dir: &Path, desired: &str) -> PathBuf {
    let path = dir.join("twin.json");
    std::fs::write(&path, desired).unwrap();
    path
}

const BAD_TWIN: &str = r#"{"properties":{"desired":{"$version":7,
  "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration":{
    "highPriorityMessageFrequency":{"value":"every 7 minutes"},
    "maxLocalCacheSizeInBytes":"lots",
    "maxMessageSizeInBytes":{"value":10000},
    "eventPriorityListeningPorts":"off"}}}}"#;

#[test]
fn config_check_reports_each_bad_key_and_keeps_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_twin(dir.path(), BAD_TWIN);
    let out = edgeguard()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "highPriorityMessageFrequency",
        "maxLocalCacheSizeInBytes",
        "maxMessageSizeInBytes",
    ] {
        assert!(
            stderr.contains(&format!("rejected {key}")),
            "{key} not reported: {stderr}"
        );
    }
    assert!(stderr.contains("3 key(s) rejected"), "{stderr}");
    let reported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let obj = &reported["ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"];
    assert_eq!(obj["highPriorityMessageFrequency"]["value"], "PT7M");
    assert_eq!(obj["maxLocalCacheSizeInBytes"]["value"], 2560000);
    assert_eq!(obj["maxMessageSizeInBytes"]["value"], 204800);
    assert_eq!(
        obj["eventPriorityListeningPorts"]["value"], "Off",
        "the good key applied"
    );
    assert_eq!(obj["desiredVersion"], 7);
    assert_eq!(obj["rejected"].as_array().unwrap().len(), 3);
}

#[test]
fn config_check_on_unreadable_or_malformed_files_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = edgeguard()
        .args(["config", "check"])
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    let path = write_twin(dir.path(), "{\"properties\": ");
    let out = edgeguard()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn rejected_local_keys_become_configuration_error_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_twin(dir.path(), BAD_TWIN);
    let out = edgeguard()
        .args(["snapshot", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = stdout_messages(&out.stdout);
    let v = message_validator();
    for m in &messages {
        assert_eq!(errors(&v, m), Vec::<String>::new());
    }
    let names = event_names(&messages);
    assert_eq!(
        names.iter().filter(|n| *n == "ConfigurationError").count(),
        3
    );
    assert!(names.contains(&"SystemInformation".to_string()));
}

#[test]
fn file_sink_appends_messages() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.jsonl");
    for _ in 0..2 {
        let out = edgeguard()
            .args(["snapshot", "--sink", "file", "--output"])
            .arg(&file)
            .arg("--state-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout with the file sink"
        );
    }
    let text = std::fs::read(&file).unwrap();
    let runs = event_names(&stdout_messages(&text))
        .iter()
        .filter(|n| *n == "SystemInformation")
        .count();
    assert_eq!(runs, 2, "both snapshots are in the file");
}

#[test]
fn an_incomplete_iot_edge_environment_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = edgeguard()
        .env("IOTEDGE_MODULEID", "edgeguard")
        .args(["run", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IOTEDGE_IOTHUBHOSTNAME"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_state_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "").unwrap();
    let out = edgeguard()
        .args(["snapshot", "--state-dir"])
        .arg(file.join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state-dir"));
}

#[test]
fn run_sends_a_first_message_within_a_second_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let agent = Agent::start(dir.path(), &["--metrics-addr", "off"]);
    let first = agent
        .next_message(Duration::from_secs(10))
        .expect("a first message");
    let first_after = start.elapsed();
    // Collector health or the SystemInformation snapshot come first; the snapshot soon after.
    let mut seen = event_names(&[first]);
    while !seen.iter().any(|n| n == "SystemInformation") {
        let m = agent
            .next_message(Duration::from_secs(10))
            .expect("a SystemInformation message");
        seen.extend(event_names(&[m]));
    }
    let (ok, rest, stderr) = agent.stop(Duration::from_secs(15));
    assert!(ok, "{stderr}");
    let v = message_validator();
    for m in &rest {
        assert_eq!(errors(&v, m), Vec::<String>::new());
    }
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("edgeguard stopped"), "{stderr}");
    // Generous against a loaded CI machine; the footprint issue measures the real figure.
    assert!(
        first_after < Duration::from_secs(5),
        "first message after {first_after:?}"
    );
}

#[test]
fn config_check_into_a_closed_pipe_does_not_panic() {
    let mut child = edgeguard()
        .args(["config", "check"])
        .arg(twin_defaults())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is written (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}
