//! The module image, run the way edgeAgent runs it, on this host, against the edgeHub and
//! workload API doubles.
//!
//! The container is created through the Docker API from `deployment.template.json` itself: its
//! `createOptions` deserialized verbatim into the create request (host PID and network, the
//! capabilities, `/:/host:ro`, the Docker socket, the named state volume), the manifest's `env`
//! plus the `IOTEDGE_*` variables, the workload socket bind-mounted at
//! `/var/run/iotedge/workload.sock`, and edgeAgent's owner label. The workload double signs only
//! for a caller inside that container (peer credentials → cgroup), as aziot-edged checks the
//! caller's PID. The module twin is the manifest's, with `{"value": null}` stored as `{}` (IoT
//! Hub keeps no nulls) and shorter timers so the test does not wait hours.
//!
//! Then, one after the other: messages arrive with the module's identity and properties; an exec
//! on the host and one inside another container are reported (the latter with the container's
//! name); a twin change is applied and reported; with both send timers at ten minutes an alert
//! still arrives on the `alerts` output within seconds (the route at priority 0 takes it); a
//! security message from another module, routed by the manifest's route into the module's input,
//! comes out upstream; edgeHub gone for 30 s loses nothing; the metrics endpoint bound to the
//! `azure-iot-edge` network's gateway answers a container on that network; `docker stop` exits 0
//! within Docker's 10 s; the restarted container resumes from the spool volume.
//!
//! Needs the image (`EDGEGUARD_TEST_IMAGE`, built by scripts/test.sh with scripts/build-image.sh),
//! root and a Docker daemon.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use edgeguard::config::CONFIG_OBJECT;
use edgeguard::event::{Event, Login, LoginResult, MessageHeader, Payload, envelope};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::device::{EdgeDevice, ModuleIdentity, module_env};
use support::docker::{IMAGE as BUSYBOX, Names, docker, docker_ok};
use support::edgehub::{EdgeHub, Telemetry};
use support::routes::{self, Origin, Route, Sink};

const HUB: &str = "testhub.azure-devices.net";
const DEVICE: &str = "dev1";
/// The module's name in the manifest: also its container's name, as edgeAgent names it.
const MODULE: &str = "edgeguard";
const GENERATION: &str = "638000000000000001";
/// Where edgeAgent mounts the workload socket in a module.
const WORKLOAD_IN_MODULE: &str = "/var/run/iotedge/workload.sock";
/// edgeAgent's label on the containers it owns.
const OWNER_LABEL: &str = "net.azure-devices.edge.owner";
const OWNER: &str = "Microsoft.Azure.Devices.Edge.Agent";
/// The network edgeAgent creates for modules.
const EDGE_NETWORK: &str = "azure-iot-edge";

/// Generous: the machine running this may be loaded.
const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image() -> String {
    std::env::var("EDGEGUARD_TEST_IMAGE").unwrap_or_else(|_| {
        panic!(
            "EDGEGUARD_TEST_IMAGE is not set: build the module image with \
             `scripts/build-image.sh amd64 TAG` and set it to TAG (scripts/test.sh does both)"
        )
    })
}

fn identity() -> ModuleIdentity {
    ModuleIdentity {
        hub: HUB,
        device: DEVICE,
        module: MODULE,
        generation: GENERATION,
        key: B64.encode([23u8; 32]),
    }
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(repo().join("deployment.template.json"))
        .expect("deployment.template.json");
    serde_json::from_str(&text).expect("the template is JSON")
}

fn module_of(manifest: &Value) -> &Value {
    &manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][MODULE]
}

/// The module twin's desired properties as IoT Hub delivers the manifest's: nulls removed
/// (`{"value": null}` becomes `{}`), with timers short enough for a test.
fn desired(manifest: &Value) -> Value {
    let mut desired = manifest["modulesContent"][MODULE]["properties.desired"].clone();
    let object = desired[CONFIG_OBJECT]
        .as_object_mut()
        .expect("the manifest's twin has the configuration object");
    for v in object.values_mut() {
        if v["value"].is_null() {
            *v = json!({});
        }
    }
    for (key, value) in [
        ("highPriorityMessageFrequency", json!("PT1S")),
        ("lowPriorityMessageFrequency", json!("PT2S")),
        // Every exec on its own (not merged into an hour-long window).
        ("aggregationEnabledProcessCreate", json!(false)),
        ("eventPriorityConnectionCreate", json!("Off")),
        ("eventPriorityProcessTerminate", json!("Off")),
    ] {
        object.insert(key.into(), json!({ "value": value }));
    }
    desired
}

/// The events of one telemetry message.
fn events(t: &Telemetry) -> Vec<Value> {
    serde_json::from_slice::<Value>(&t.payload)
        .ok()
        .and_then(|v| v["Events"].as_array().cloned())
        .unwrap_or_default()
}

/// Payload records of `name` events in `t`.
fn records(t: &Telemetry, name: &str) -> Vec<Value> {
    events(t)
        .into_iter()
        .filter(|e| e["Name"] == name)
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// ProcessCreate records whose command line contains `marker`, over all telemetry so far.
fn execs_with(hub: &EdgeHub, marker: &str) -> Vec<Value> {
    hub.telemetry()
        .iter()
        .flat_map(|t| records(t, "ProcessCreate"))
        .filter(|r| {
            r["CommandLine"]
                .as_str()
                .is_some_and(|c| c.contains(marker))
        })
        .collect()
}

/// A unique word for this run.
fn marker(what: &str) -> String {
    format!("eg-e2e-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A shell script that lives a second and does not `exec` its last command (a shell would
/// replace itself with `sleep`, and the command line read from /proc would be `sleep`'s).
const SCRIPT: &str = "sleep 1; true";

/// Runs `sh -c SCRIPT MARKER` on the host (`$0` carries the marker into the command line).
fn host_exec(marker: &str) -> Child {
    Command::new("/bin/sh")
        .args(["-c", SCRIPT, marker])
        .stdin(Stdio::null())
        .spawn()
        .expect("sh runs")
}

/// The module container, removed (with its state volume) when dropped.
struct Module {
    id: String,
    volume: String,
}

impl Module {
    fn logs(&self) -> String {
        let (_, out, err) = docker(&["logs", "--tail", "200", &self.id]);
        format!("--- docker logs (stdout) ---\n{out}\n--- (stderr) ---\n{err}")
    }

    fn state(&self) -> Value {
        let text = docker_ok(&["inspect", "-f", "{{json .State}}", &self.id]);
        serde_json::from_str(&text).expect("container state is JSON")
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
    }
}

/// The gateway address of edgeAgent's `azure-iot-edge` network (created when missing).
fn edge_network_gateway() -> String {
    let (exists, _, _) = docker(&["network", "inspect", EDGE_NETWORK]);
    if !exists {
        docker_ok(&["network", "create", EDGE_NETWORK]);
    }
    docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        EDGE_NETWORK,
    ])
}

/// The manifest's createOptions as the container-create body edgeAgent sends.
fn create_body(manifest: &Value) -> ContainerCreateBody {
    serde_json::from_value(module_of(manifest)["settings"]["createOptions"].clone())
        .expect("createOptions is a Docker container-create body")
}

/// Creates a container named `name` from `body` with the module image (not started yet).
async fn create(name: &str, mut body: ContainerCreateBody) -> String {
    body.image = Some(image());
    let _ = docker(&["rm", "-f", name]);
    let client = Docker::connect_with_unix_defaults().expect("the Docker socket");
    client
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(name).build()),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("creating {name} from the manifest: {e}"))
        .id
}

/// Creates the module container as edgeAgent does, from the manifest (not started yet).
async fn create_module(
    manifest: &Value,
    workload_socket: &Path,
    hub_port: u16,
    metrics_addr: &str,
) -> Module {
    let module = module_of(manifest);
    let mut body = create_body(manifest);
    let host = body.host_config.get_or_insert_with(Default::default);
    // The state volume is the manifest's; it must start empty for this test.
    let volume = host
        .binds
        .iter()
        .flatten()
        .find_map(|b| b.strip_suffix(":/var/lib/edgeguard"))
        .expect("the manifest mounts a state volume")
        .to_string();
    let _ = docker(&["volume", "rm", "-f", &volume]);
    host.binds.get_or_insert_with(Vec::new).push(format!(
        "{}:{WORKLOAD_IN_MODULE}",
        workload_socket.display()
    ));
    let mut env: Vec<String> = module["env"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v["value"].as_str().expect("string env values")))
        .filter(|e| !e.starts_with("EDGEGUARD_METRICS_ADDR="))
        .collect();
    env.extend(
        module_env(&identity(), &format!("unix://{WORKLOAD_IN_MODULE}"))
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    // The doubles listen on an ephemeral port, not 8883; the metrics endpoint goes where the
    // README tells operators to put it for the metrics collector.
    env.push(format!("EDGEGUARD_HUB_PORT={hub_port}"));
    env.push(format!("EDGEGUARD_METRICS_ADDR={metrics_addr}"));
    env.push("RUST_LOG=info".into());
    body.env = Some(env);
    body.labels = Some(
        [
            (OWNER_LABEL.to_string(), OWNER.to_string()),
            ("net.azure-devices.edge.original-image".to_string(), image()),
        ]
        .into(),
    );
    Module {
        id: create(MODULE, body).await,
        volume,
    }
}

fn security_message(events: &[Event]) -> Vec<u8> {
    let header = MessageHeader::new("1.0.0", uuid::Uuid::new_v4());
    let encoded: Vec<Vec<u8>> = events.iter().map(envelope::encode).collect();
    header.build(encoded.iter().map(Vec::as_slice))
}

fn origin<'a>(module: &'a str, output: &'a str) -> Origin<'a> {
    Origin {
        device: DEVICE,
        module,
        output: Some(output),
    }
}

/// The one route a message from `module`'s `output` takes.
fn route_of<'r>(routes: &'r [Route], module: &str, output: &str) -> &'r Route {
    let hit = routes::routes_for(routes, &origin(module, output));
    assert_eq!(hit.len(), 1, "{module}/{output}: {hit:?}");
    hit[0]
}

/// One test at a time: they share the host's collectors' view and the Docker engine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock only orders whole tests, each on its own runtime: holding it across awaits cannot
// deadlock.
#[allow(clippy::await_holding_lock)]
async fn the_module_runs_as_edge_agent_runs_it() {
    let _serial = serial();
    let image = image();
    support::docker::daemon_up();
    let busybox = support::docker::busybox_image();
    assert!(!busybox.is_empty());
    let manifest = manifest();
    let routes = routes::from_manifest(&manifest).expect("the manifest's routes parse");
    let device = EdgeDevice::start(&identity(), |cfg| {
        cfg.initial_desired = desired(&manifest);
    })
    .await;
    let hub = &device.hub;
    let gateway = edge_network_gateway();
    let metrics_port = {
        let l = std::net::TcpListener::bind((gateway.as_str(), 0)).expect("a free port");
        l.local_addr().expect("bound").port()
    };
    let metrics_addr = format!("{gateway}:{metrics_port}");
    let module = create_module(
        &manifest,
        device.workload.socket_path(),
        hub.port(),
        &metrics_addr,
    )
    .await;
    // From now on the workload API signs only for a process of that container, as aziot-edged
    // checks the caller's PID; this test process is refused.
    device.workload.require_container(&module.id);
    let outsider = edgeguard::hub::workload::WorkloadClient::new(
        &device.workload.uri(),
        "2022-08-03",
        MODULE,
        GENERATION,
    )
    .expect("a workload client");
    match outsider.sign(b"data").await {
        Err(edgeguard::hub::Error::WorkloadStatus { status: 403, .. }) => {}
        other => panic!("a caller outside the module container was not refused: {other:?}"),
    }
    docker_ok(&["start", &module.id]);
    let mut names = Names::new();
    names.adopt(MODULE);

    // --- Identity, properties, first messages.
    assert!(
        hub.wait_connected(T).await,
        "the module never connected: {:?}\n{}",
        hub.attempts(),
        module.logs()
    );
    let attempt = hub
        .attempts()
        .into_iter()
        .find(|a| a.accepted())
        .expect("an accepted connection");
    assert_eq!(attempt.client_id, format!("{DEVICE}/{MODULE}"));
    assert!(
        device
            .workload
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/sign") && r.status == 200),
        "the module signed its token through the workload socket"
    );
    let first = hub.wait_telemetry(1, T).await;
    assert!(!first.is_empty(), "no telemetry\n{}", module.logs());
    let t = &first[0];
    assert!(!t.device_topic, "published on the module topic");
    let props = t.props();
    assert_eq!(props.get("$.on"), Some(edgeguard::hub::DEFAULT_OUTPUT));
    assert_eq!(props.get("$.ct"), Some("application/json"));
    assert_eq!(props.get("$.ce"), Some("utf-8"));
    assert!(matches!(props.get("MessagePriority"), Some("High" | "Low")));
    let body: Value = serde_json::from_slice(&t.payload).expect("a JSON security message");
    assert_eq!(body["MessageSchemaVersion"], "1.0");
    assert_eq!(body["AgentVersion"], env!("CARGO_PKG_VERSION"));
    let agent_id = body["AgentId"].as_str().expect("AgentId").to_string();
    let events_route = route_of(&routes, MODULE, edgeguard::hub::DEFAULT_OUTPUT);
    assert_eq!(events_route.sink, Sink::Upstream);

    // --- An exec on the host, and one in another container (with its name).
    let host_marker = marker("host");
    let mut child = host_exec(&host_marker);
    let app = names.add("app");
    docker_ok(&["run", "-d", "--name", &app, BUSYBOX]);
    let ctr_marker = marker("ctr");
    docker_ok(&["exec", &app, "sh", "-c", SCRIPT, &ctr_marker]);
    let _ = child.wait();
    // The `docker exec` client on the host carries the marker too; the shell it starts in the
    // container is the one with the container's name.
    let in_app = |h: &EdgeHub| -> Vec<Value> {
        execs_with(h, &ctr_marker)
            .into_iter()
            .filter(|r| r["ExtraDetails"]["ContainerName"] == app.as_str())
            .collect()
    };
    assert!(
        hub.wait_until(T, |h| !execs_with(h, &host_marker).is_empty()
            && !in_app(h).is_empty())
            .await,
        "host exec: {:?}\ncontainer exec: {:?}\n{}",
        execs_with(hub, &host_marker),
        execs_with(hub, &ctr_marker),
        module.logs()
    );
    let host_exec_record = &execs_with(hub, &host_marker)[0];
    assert!(
        host_exec_record["ExtraDetails"]["ContainerName"].is_null(),
        "a host process has no container: {host_exec_record}"
    );
    let in_container = &in_app(hub)[0];
    assert!(
        in_container["ExtraDetails"]["ContainerId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{in_container}"
    );

    // --- A twin change, applied and reported: both timers at ten minutes.
    let version = hub.set_desired_patch(json!({ CONFIG_OBJECT: {
        "highPriorityMessageFrequency": {"value": "PT10M"},
        "lowPriorityMessageFrequency": {"value": "PT10M"},
    }}));
    assert!(
        hub.wait_until(T, |h| {
            let r = &h.reported()[CONFIG_OBJECT];
            r["desiredVersion"] == json!(version)
                && r["highPriorityMessageFrequency"]["value"] == "PT10M"
        })
        .await,
        "reported: {}\n{}",
        hub.reported(),
        module.logs()
    );

    // --- An alert arrives on its own output within seconds, timers notwithstanding.
    let dropper_dir = tempfile::Builder::new()
        .prefix("eg-e2e-")
        .tempdir_in("/tmp")
        .expect("a directory in /tmp");
    let dropper = dropper_dir.path().join("dropper");
    std::fs::copy("/bin/sleep", &dropper).expect("a program copied into /tmp");
    let dropper_path = dropper.to_string_lossy().to_string();
    let started = Instant::now();
    let _ = Command::new(&dropper).arg("1").status();
    let is_our_alert = |t: &Telemetry| {
        records(t, "Alert")
            .iter()
            .any(|r| r["Executable"] == dropper_path.as_str())
    };
    assert!(
        hub.wait_until(Duration::from_secs(30), |h| h
            .telemetry()
            .iter()
            .any(is_our_alert))
            .await,
        "no alert for {dropper_path}\n{}",
        module.logs()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the alert took {took:?}: not sent at once"
    );
    let alert = hub
        .telemetry()
        .into_iter()
        .find(|t| is_our_alert(t))
        .expect("found above");
    assert_eq!(
        alert.props().get("$.on"),
        Some(edgeguard::hub::DEFAULT_ALERTS_OUTPUT)
    );
    assert_eq!(alert.props().get("MessagePriority"), Some("High"));
    assert!(
        events(&alert).iter().all(|e| e["Name"] == "Alert"),
        "alerts travel alone"
    );
    let alerts_route = route_of(&routes, MODULE, edgeguard::hub::DEFAULT_ALERTS_OUTPUT);
    assert_eq!(alerts_route.sink, Sink::Upstream);
    assert_eq!(alerts_route.priority, 0);
    assert!(alerts_route.priority < events_route.priority);
    // Back to short timers for the rest.
    let version = hub.set_desired_patch(json!({ CONFIG_OBJECT: {
        "highPriorityMessageFrequency": {"value": "PT1S"},
        "lowPriorityMessageFrequency": {"value": "PT2S"},
    }}));
    assert!(
        hub.wait_until(T, |h| h.reported()[CONFIG_OBJECT]["desiredVersion"]
            == json!(version))
            .await
    );

    // --- Another module's security message, routed into edgeguard's input, goes upstream.
    let sender = "sensor";
    let into = route_of(&routes, sender, "securityMessages");
    let Sink::Input { module: to, input } = &into.sink else {
        panic!("{sender}'s security messages are not routed to a module input: {into:?}");
    };
    assert_eq!(to, MODULE);
    let login = Event::new(Payload::Login(vec![Login {
        process_id: 4242,
        user_id: Some("1000".into()),
        user_name: Some("operator".into()),
        operation: "Login".into(),
        executable: "/usr/sbin/sshd".into(),
        remote_address: Some("192.0.2.44".parse().expect("address")),
        remote_port: Some(50123),
        local_port: Some(22),
        result: LoginResult::Fail,
        extra_details: Default::default(),
    }]));
    let login_id = login.id.to_string();
    hub.send_input(input, &security_message(&[login]), &[("$.cmid", sender)]);
    assert!(
        hub.wait_until(T, |h| h
            .telemetry()
            .iter()
            .flat_map(events)
            .any(|e| e["Id"] == login_id.as_str()))
            .await,
        "the routed security message did not come out\n{}",
        module.logs()
    );

    // --- The metrics endpoint on the azure-iot-edge network's gateway, for the metrics
    // collector module on that network.
    let (ok, out, err) = docker(&[
        "run",
        "--rm",
        "--network",
        EDGE_NETWORK,
        BUSYBOX,
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{metrics_addr}/metrics"),
    ]);
    assert!(
        ok,
        "metrics from the edge network: {err}\n{}",
        module.logs()
    );
    assert!(out.contains("edgeguard_"), "{out}");

    // --- The image's health check (`edgeguard status` through the status socket) finds the
    // module healthy.
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = loop {
        let h = docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &module.id]);
        if h != "starting" || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        health,
        "healthy",
        "{}\n{}",
        docker_ok(&["inspect", "-f", "{{json .State.Health}}", &module.id]),
        module.logs()
    );

    // --- edgeHub gone for 30 s: nothing lost.
    hub.stop().await;
    let outage = Instant::now();
    let outage_markers: Vec<String> = (0..10).map(|i| marker(&format!("outage{i}"))).collect();
    for m in &outage_markers {
        let _ = host_exec(m).wait();
    }
    let rest = Duration::from_secs(30).saturating_sub(outage.elapsed());
    tokio::time::sleep(rest).await;
    hub.restart().await;
    assert!(
        hub.wait_until(Duration::from_secs(90), |h| outage_markers
            .iter()
            .all(|m| !execs_with(h, m).is_empty()))
            .await,
        "lost in the outage: {:?}\n{}",
        outage_markers
            .iter()
            .filter(|m| execs_with(hub, m).is_empty())
            .collect::<Vec<_>>(),
        module.logs()
    );

    // --- Unacknowledged at `docker stop`: a clean exit in time, and everything again after a
    // restart, from the spool volume.
    hub.set_withhold_pubacks(true);
    let spool_marker = marker("spool");
    let _ = host_exec(&spool_marker).wait();
    assert!(
        hub.wait_until(T, |h| !execs_with(h, &spool_marker).is_empty())
            .await,
        "the last exec was not sent\n{}",
        module.logs()
    );
    let seen_before = execs_with(hub, &spool_marker).len();
    let stopping = Instant::now();
    docker_ok(&["stop", &module.id]);
    let stop_took = stopping.elapsed();
    let state = module.state();
    assert_eq!(state["ExitCode"], 0, "{state}\n{}", module.logs());
    assert!(
        stop_took < Duration::from_secs(10),
        "docker stop took {stop_took:?}: the module outlived the stop timeout\n{}",
        module.logs()
    );
    hub.set_withhold_pubacks(false);
    docker_ok(&["start", &module.id]);
    assert!(
        hub.wait_until(T, |h| execs_with(h, &spool_marker).len() > seen_before)
            .await,
        "the spooled message was not sent again after the restart\n{}",
        module.logs()
    );
    let again = hub
        .telemetry()
        .into_iter()
        .rev()
        .find(|t| {
            records(t, "ProcessCreate").iter().any(|r| {
                r["CommandLine"]
                    .as_str()
                    .is_some_and(|c| c.contains(&spool_marker))
            })
        })
        .expect("seen above");
    let body: Value = serde_json::from_slice(&again.payload).expect("JSON");
    assert_eq!(
        body["AgentId"],
        agent_id.as_str(),
        "the same agent, from its volume"
    );
    assert!(
        hub.protocol_errors().is_empty(),
        "{:?}",
        hub.protocol_errors()
    );
    drop(names);
    drop(module);
    let _ = image;
}

/// `CollectorStatus` records (collector, status, message) in a container's stdout messages.
fn statuses(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "CollectorStatus")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("Collector"), s("Status"), s("Message"))
        })
        .collect()
}

/// The manifest's createOptions for a container of this test: its own (anonymous) state volume
/// instead of the module's named one, and `adjust` applied.
fn variant(
    manifest: &Value,
    adjust: impl FnOnce(&mut bollard::models::HostConfig),
) -> ContainerCreateBody {
    let mut body = create_body(manifest);
    let host = body.host_config.get_or_insert_with(Default::default);
    if let Some(binds) = host.binds.as_mut() {
        binds.retain(|b| !b.ends_with(":/var/lib/edgeguard"));
    }
    adjust(host);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn without_its_create_options_the_module_says_what_it_misses() {
    let _serial = serial();
    support::docker::daemon_up();
    let manifest = manifest();
    let mut names = Names::new();

    // A snapshot with the manifest's options, and one without NET_ADMIN: the firewall ruleset
    // cannot be read without it, and the collector says so.
    let snapshot = |name: String, body: ContainerCreateBody| async move {
        let mut body = body;
        body.cmd = Some(vec!["snapshot".into(), "--sink".into(), "stdout".into()]);
        let id = create(&name, body).await;
        docker_ok(&["start", "-a", &id])
    };
    let full = snapshot(names.add("caps"), variant(&manifest, |_| {})).await;
    let no_net_admin = snapshot(
        names.add("no-net-admin"),
        variant(&manifest, |h| {
            if let Some(caps) = h.cap_add.as_mut() {
                caps.retain(|c| c != "NET_ADMIN");
            }
        }),
    )
    .await;
    let firewall = |out: &str| -> Vec<(String, String)> {
        statuses(out)
            .into_iter()
            .filter(|(c, _, _)| c == "firewall")
            .map(|(_, s, m)| (s, m))
            .collect()
    };
    assert!(
        firewall(&no_net_admin)
            .iter()
            .any(|(s, m)| s == "Degraded" && m.contains("Operation not permitted")),
        "without NET_ADMIN: {:?}",
        firewall(&no_net_admin)
    );
    let rules = |out: &str| -> usize {
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["Name"] == "FirewallConfiguration")
            .map(|e| e["Payload"].as_array().map_or(0, Vec::len))
            .sum()
    };
    assert!(
        firewall(&full).iter().all(|(s, _)| s != "Degraded") && rules(&full) > 0,
        "with the manifest's capabilities: {:?}, {} rules (Docker's own rules at least)",
        firewall(&full),
        rules(&full)
    );
}
