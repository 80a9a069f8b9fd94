//! The binary as a user runs it: `snapshot`, `run` with SIGTERM, `config check`, sinks, errors.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::schema::{errors, message_validator};

fn edgeguard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeguard"));
    // A developer's or CI's environment must not leak an IoT Edge identity or config into tests.
    for var in [
        "IOTEDGE_MODULEID",
        "EdgeHubConnectionString",
        "EDGEGUARD_CONFIG",
        "EDGEGUARD_CONFIG_JSON",
        "EDGEGUARD_SINK",
        "EDGEGUARD_OUTPUT",
        "EDGEGUARD_HOST_ROOT",
        "EDGEGUARD_STATE_DIR",
    ] {
        c.env_remove(var);
    }
    c.env("RUST_LOG", "info");
    c
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
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect()
}

fn event_names(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["Name"].as_str().unwrap_or_default().to_string())
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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let messages = stdout_messages(&out.stdout);
    assert_eq!(messages.len(), 1);
    let v = message_validator();
    assert_eq!(errors(&v, &messages[0]), Vec::<String>::new());
    assert_eq!(event_names(&messages), ["SystemInformation"]);
    let info = &messages[0]["Events"][0]["Payload"][0];
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["ExtraDetails"]["KernelRelease"], kernel.trim());
    assert!(info["TotalPhysicalMemoryInKB"].as_u64().unwrap() > 0);
    // The agent id persists across runs.
    let again = edgeguard()
        .args(["snapshot", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(stdout_messages(&again.stdout)[0]["AgentId"], messages[0]["AgentId"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("edgeguard starting"));
}

#[test]
fn snapshot_reads_the_host_root_it_is_given() {
    let state = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::fs::write(host.path().join("etc/os-release"), "NAME=\"Fixture OS\"\nVERSION_ID=9\n").unwrap();
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
    let info = &m[0]["Events"][0]["Payload"][0];
    assert_eq!(info["OSName"], "Fixture OS");
    assert_eq!(info["HostName"], "fixture-host");
    assert!(info["ExtraDetails"]["Unavailable"].as_str().unwrap().contains("/proc/meminfo"));
}

#[test]
fn config_check_accepts_the_twin_defaults() {
    let out = edgeguard().args(["config", "check"]).arg(twin_defaults()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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
    let out = edgeguard().args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["highPriorityMessageFrequency", "maxLocalCacheSizeInBytes", "maxMessageSizeInBytes"] {
        assert!(stderr.contains(&format!("rejected {key}")), "{key} not reported: {stderr}");
    }
    assert!(stderr.contains("3 key(s) rejected"), "{stderr}");
    let reported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let obj = &reported["ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"];
    assert_eq!(obj["highPriorityMessageFrequency"]["value"], "PT7M");
    assert_eq!(obj["maxLocalCacheSizeInBytes"]["value"], 2560000);
    assert_eq!(obj["maxMessageSizeInBytes"]["value"], 204800);
    assert_eq!(obj["eventPriorityListeningPorts"]["value"], "Off", "the good key applied");
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
    let out = edgeguard().args(["config", "check"]).arg(&path).output().unwrap();
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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let messages = stdout_messages(&out.stdout);
    let v = message_validator();
    for m in &messages {
        assert_eq!(errors(&v, m), Vec::<String>::new());
    }
    let names = event_names(&messages);
    assert_eq!(names.iter().filter(|n| *n == "ConfigurationError").count(), 3);
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
        assert!(out.stdout.is_empty(), "nothing on stdout with the file sink");
    }
    let text = std::fs::read(&file).unwrap();
    assert_eq!(stdout_messages(&text).len(), 2);
}

#[test]
fn under_iot_edge_without_a_sink_it_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = edgeguard()
        .env("IOTEDGE_MODULEID", "edgeguard")
        .args(["run", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("edgeHub"));
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
    let mut child = edgeguard()
        .args(["run", "--state-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first message").unwrap();
    let first_after = start.elapsed();
    let m: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event_names(&[m]), ["SystemInformation"]);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(lines.next().is_none(), "nothing left to flush");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("edgeguard stopped"), "{stderr}");
    // Generous against a loaded CI machine; the footprint issue measures the real figure.
    assert!(first_after < Duration::from_secs(5), "first message after {first_after:?}");
}
