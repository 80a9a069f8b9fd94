//! Posture rules against real inspect answers (Debian's Docker 20.10, saved under
//! tests/fixtures/container/) and hand-made odd ones.

use super::*;
use crate::event::BaselineSeverity;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/container")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture is readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn inspect(v: Value) -> ContainerInspectResponse {
    serde_json::from_value(v).expect("an inspect answer")
}

fn ids(findings: &[PostureFinding]) -> Vec<String> {
    findings.iter().map(|f| f.id.clone()).collect()
}

fn details(findings: &[PostureFinding], id: &str) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.id == id)
        .map(|f| f.description.clone())
        .collect()
}

#[test]
fn a_badly_configured_container_has_every_finding() {
    // docker create --privileged --network host --pid host --ipc host --uts host
    //   -v /var/run/docker.sock:/var/run/docker.sock -v /:/host -v /etc:/hostetc:ro
    //   --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined
    //   --security-opt apparmor=unconfined --restart always -p 8080:80 edgeguard-test-busybox:1
    let f = evaluate(&inspect(fixture("inspect-bad.json")));
    assert_eq!(
        ids(&f),
        [
            "privileged",
            "host-network",
            "host-pid",
            "host-ipc",
            "host-uts",
            "sensitive-host-path",
            "sensitive-host-path",
            "docker-socket-mounted",
            "dangerous-capability",
            "dangerous-capability",
            "seccomp-unconfined",
            "apparmor-unconfined",
            "no-new-privileges-off",
            "runs-as-root",
            "no-memory-limit",
            "no-cpu-limit",
            "no-pids-limit",
            "writable-rootfs",
            "port-on-all-interfaces",
            "mutable-image-tag",
            "restart-policy",
            "no-healthcheck",
        ]
    );
    assert_eq!(
        details(&f, "sensitive-host-path"),
        ["host path / is mounted", "host path /etc is mounted"]
    );
    assert_eq!(
        details(&f, "dangerous-capability"),
        ["capability NET_ADMIN added", "capability SYS_ADMIN added"]
    );
    assert_eq!(
        details(&f, "port-on-all-interfaces"),
        ["port 8080->80/tcp is published on all host interfaces"]
    );
    let privileged = &f[0];
    assert_eq!(privileged.severity, BaselineSeverity::Critical);
    assert_eq!(privileged.cis_id.as_deref(), Some("5.4"));
    assert!(!privileged.remediation.is_empty());
    let socket = f.iter().find(|f| f.id == "docker-socket-mounted").unwrap();
    assert_eq!(socket.cis_id.as_deref(), Some("5.31"));
    // Every finding says how to fix it.
    assert!(f.iter().all(|f| !f.remediation.is_empty()));
}

#[test]
fn a_well_configured_container_has_no_finding() {
    // docker create --read-only --user 1000:1000 --memory 64m --cpus 0.5 --pids-limit 64
    //   --security-opt no-new-privileges --health-cmd true -p 127.0.0.1:8081:80 --cap-drop ALL
    //   sha256:<image id>
    let f = evaluate(&inspect(fixture("inspect-good.json")));
    assert_eq!(f, Vec::new());
}

#[test]
fn an_empty_answer_gets_only_the_findings_of_engine_defaults() {
    let f = evaluate(&ContainerInspectResponse::default());
    assert_eq!(
        ids(&f),
        [
            "no-new-privileges-off",
            "runs-as-root",
            "no-memory-limit",
            "no-cpu-limit",
            "no-pids-limit",
            "writable-rootfs",
            "no-healthcheck",
        ]
    );
    // Nulls everywhere parse and judge the same.
    let nulls = inspect(json!({
        "Id": null, "Config": null, "HostConfig": null, "Mounts": null, "State": null,
        "AppArmorProfile": null,
    }));
    assert_eq!(evaluate(&nulls), f);
}

#[test]
fn odd_but_valid_answers() {
    let c = inspect(json!({
        "AppArmorProfile": "",
        "Config": {
            "User": "0:0",
            "Image": "repo/app@sha256:0123",
            "Healthcheck": {"Test": ["NONE"]},
        },
        "HostConfig": {
            "NetworkMode": "HOST",
            "PidMode": "container:abc",
            "CapAdd": ["sys_ptrace", "cap_sys_module", "CAP_CHOWN", "SYS_PTRACE"],
            "Binds": ["//etc/:/x", "data:/data", "/dev/ttyUSB0:/dev/ttyUSB0", "/devices:/d", "/proc2:/p"],
            "PortBindings": {
                "80/tcp": null,
                "53/udp": [{"HostIp": "::", "HostPort": "53"}],
                "443/tcp": [{"HostIp": "10.0.0.1", "HostPort": "443"}],
                "9/tcp": [{}],
            },
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 0},
            "SecurityOpt": ["seccomp:unconfined", "no-new-privileges:true"],
            "Memory": -1,
            "CpuShares": 1024,
            "PidsLimit": -1,
            "ReadonlyRootfs": true,
        },
        "Mounts": [
            {"Type": "volume", "Source": "/var/lib/docker/volumes/data/_data", "Destination": "/data"},
            {"Type": "bind", "Source": "/etc", "Destination": "/x"},
            {"Source": "/sys/fs/cgroup", "Destination": "/sys/fs/cgroup"},
        ],
    }));
    let f = evaluate(&c);
    assert_eq!(
        ids(&f),
        [
            "host-network",
            "sensitive-host-path",
            "sensitive-host-path",
            "sensitive-host-path",
            "dangerous-capability",
            "dangerous-capability",
            "seccomp-unconfined",
            "runs-as-root",
            "no-memory-limit",
            "no-cpu-limit",
            "no-pids-limit",
            "port-on-all-interfaces",
            "port-on-all-interfaces",
            "restart-policy",
            "no-healthcheck",
        ]
    );
    assert_eq!(
        details(&f, "sensitive-host-path"),
        [
            "host path /dev/ttyUSB0 is mounted",
            "host path /etc is mounted",
            "host path /sys/fs/cgroup is mounted",
        ]
    );
    assert_eq!(
        details(&f, "dangerous-capability"),
        ["capability SYS_MODULE added", "capability SYS_PTRACE added"]
    );
    assert_eq!(
        details(&f, "port-on-all-interfaces"),
        [
            "port 53->53/udp is published on all host interfaces",
            "port 9/tcp is published on all host interfaces",
        ]
    );
}

#[test]
fn users_restart_policies_and_limits() {
    for (user, root) in [
        ("", true),
        ("root", true),
        ("0", true),
        ("00:0", true),
        ("root:wheel", true),
        ("1000", false),
        ("app", false),
        ("1000:0", false),
        ("10", false),
    ] {
        assert_eq!(runs_as_root(user), root, "{user:?}");
    }
    let restart = |name: &str, retries: i64| {
        let c = inspect(
            json!({"HostConfig": {"RestartPolicy": {"Name": name, "MaximumRetryCount": retries}}}),
        );
        ids(&evaluate(&c)).contains(&"restart-policy".to_string())
    };
    assert!(restart("always", 0));
    assert!(restart("unless-stopped", 0));
    assert!(restart("on-failure", 0));
    assert!(restart("on-failure", 100));
    assert!(!restart("on-failure", 5));
    assert!(!restart("no", 0));
    assert!(!restart("", 0));
    let cpu = |host: Value| {
        !ids(&evaluate(&inspect(json!({ "HostConfig": host })))).contains(&"no-cpu-limit".into())
    };
    assert!(cpu(json!({"NanoCpus": 500_000_000})));
    assert!(cpu(json!({"CpuQuota": 50_000})));
    assert!(cpu(json!({"CpuShares": 512})));
    assert!(cpu(json!({"CpusetCpus": "0"})));
    assert!(!cpu(json!({"CpuShares": 1024, "CpusetCpus": " "})));
    assert!(is_sensitive("/"));
    assert!(is_sensitive("/var/run/secrets"));
    assert!(!is_sensitive("/var/runner"));
    assert!(!is_sensitive("/home/app"));
    assert_eq!(
        normalise_path("//var/./run//docker.sock/"),
        "/var/run/docker.sock"
    );
}
