//! Docker daemon configuration checks (daemon.json, the socket).

use super::{
    DOCKER_DAEMON_JSON_FILE, DOCKER_ICC, DOCKER_INSECURE_REGISTRIES, DOCKER_LIVE_RESTORE,
    DOCKER_LOG_LIMITS, DOCKER_SOCKET, DOCKER_TCP_TLS, DOCKER_USERNS, Outcome, exists, host_meta,
    is_not_found, listing, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::{error_chain, within_bytes_marked};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;

/// Log drivers that do not grow a file on the device without bound.
const BOUNDED_LOG_DRIVERS: &[&str] = &[
    "local",
    "journald",
    "syslog",
    "none",
    "fluentd",
    "gelf",
    "awslogs",
    "splunk",
    "gcplogs",
    "logentries",
    "etwlogs",
];

pub(super) fn docker_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let installed = [
        "/etc/docker",
        "/usr/bin/dockerd",
        "/usr/sbin/dockerd",
        "/run/docker.sock",
        "/var/run/docker.sock",
    ]
    .iter()
    .any(|p| exists(host, p));
    let not_installed = || Outcome::Pass("docker not installed".into());

    // daemon.json: Ok(None) when absent (Docker's defaults apply).
    let daemon: Result<Option<serde_json::Map<String, Value>>, String> =
        match host.read("/etc/docker/daemon.json") {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(Some(m)),
                Ok(_) => Err("/etc/docker/daemon.json is not a JSON object".into()),
                Err(e) => Err(format!("/etc/docker/daemon.json is not valid JSON: {e}")),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(error_chain(&e)),
        };
    let setting = |f: &dyn Fn(&serde_json::Map<String, Value>) -> Outcome| -> Outcome {
        if !installed {
            return not_installed();
        }
        match &daemon {
            Err(e) => Outcome::Err(e.clone()),
            Ok(Some(m)) => f(m),
            Ok(None) => f(&serde_json::Map::new()),
        }
    };
    let show = |m: &serde_json::Map<String, Value>, key: &str, default: &str| match m.get(key) {
        Some(v) => format!("{key} {v}"),
        None => format!("{key} {default} (default)"),
    };

    out.push(record(
        &DOCKER_DAEMON_JSON_FILE,
        if !installed {
            not_installed()
        } else {
            match host_meta(host, "/etc/docker/daemon.json") {
                Ok(m) => {
                    let actual = format!("mode {:04o}, owner uid {}", m.mode() & 0o7777, m.uid());
                    if m.uid() == 0 && m.mode() & 0o022 == 0 {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
                Err(e) if is_not_found(&e) => Outcome::Pass("no /etc/docker/daemon.json".into()),
                Err(e) => Outcome::Err(format!("/etc/docker/daemon.json: {}", e.reason())),
            }
        },
    ));
    out.push(record(
        &DOCKER_ICC,
        setting(&|m| {
            let actual = show(m, "icc", "true");
            if m.get("icc") == Some(&Value::Bool(false)) {
                Outcome::Pass(actual)
            } else {
                Outcome::Fail(actual)
            }
        }),
    ));
    out.push(record(
        &DOCKER_USERNS,
        setting(&|m| match m.get("userns-remap").and_then(Value::as_str) {
            Some(u) if !u.is_empty() => Outcome::Pass(format!("userns-remap {u}")),
            _ => Outcome::Fail("userns-remap not set".into()),
        }),
    ));
    out.push(record(
        &DOCKER_LIVE_RESTORE,
        setting(&|m| {
            let actual = show(m, "live-restore", "false");
            if m.get("live-restore") == Some(&Value::Bool(true)) {
                Outcome::Pass(actual)
            } else {
                Outcome::Fail(actual)
            }
        }),
    ));
    out.push(record(
        &DOCKER_INSECURE_REGISTRIES,
        setting(&|m| match m.get("insecure-registries") {
            None => Outcome::Pass("no insecure-registries".into()),
            Some(Value::Array(a)) if a.is_empty() => Outcome::Pass("insecure-registries []".into()),
            Some(v) => Outcome::Fail(format!(
                "insecure-registries {}",
                within_bytes_marked(&v.to_string(), 200)
            )),
        }),
    ));
    out.push(record(
        &DOCKER_LOG_LIMITS,
        setting(&|m| {
            let driver = m
                .get("log-driver")
                .and_then(Value::as_str)
                .unwrap_or("json-file");
            let max_size = m
                .get("log-opts")
                .and_then(|o| o.get("max-size"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match (driver, max_size) {
                (d, _) if BOUNDED_LOG_DRIVERS.contains(&d) => {
                    Outcome::Pass(format!("log-driver {d}"))
                }
                (d, Some(size)) => Outcome::Pass(format!("log-driver {d}, max-size {size}")),
                ("json-file", None) => {
                    Outcome::Fail("log-driver json-file without log-opts max-size".into())
                }
                (d, None) => Outcome::Pass(format!("log-driver {d} (plugin; size not checked)")),
            }
        }),
    ));
    out.push(record(
        &DOCKER_TCP_TLS,
        setting(&|m| {
            let tcp: Vec<String> = m
                .get("hosts")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .filter_map(Value::as_str)
                        .filter(|h| h.starts_with("tcp://"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let verify = m.get("tlsverify") == Some(&Value::Bool(true));
            match (tcp.is_empty(), verify) {
                (true, _) => Outcome::Pass("no tcp:// host in daemon.json".into()),
                (false, true) => Outcome::Pass(format!("{} with tlsverify", listing(&tcp))),
                (false, false) => Outcome::Fail(format!("{} without tlsverify", listing(&tcp))),
            }
        }),
    ));
    out.push(record(
        &DOCKER_SOCKET,
        if !installed {
            not_installed()
        } else {
            let found = ["/run/docker.sock", "/var/run/docker.sock"]
                .iter()
                .map(|p| (p, host_meta(host, p)))
                .find(|(_, m)| !matches!(m, Err(e) if is_not_found(e)));
            match found {
                None => Outcome::Pass("no docker socket".into()),
                Some((p, Err(e))) => Outcome::Err(format!("{p}: {}", e.reason())),
                Some((p, Ok(m))) => {
                    let actual =
                        format!("{p} mode {:04o}, owner uid {}", m.mode() & 0o7777, m.uid());
                    if m.uid() == 0 && m.mode() & 0o002 == 0 {
                        Outcome::Pass(actual)
                    } else {
                        Outcome::Fail(actual)
                    }
                }
            }
        },
    ));
}
