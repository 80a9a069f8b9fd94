//! The `edgeguard` binary as IoT Edge runs it (environment from edgeAgent, credentials from the
//! workload API, MQTT to edgeHub), against the doubles in `tests/support`, while events flow:
//! a 30 s edgeHub outage, SIGKILL mid-stream and a restart, and 10 s SAS tokens for a minute.
//!
//! The events are failed sshd logins appended to the auth log of a host root made for the test,
//! one user name per line (`u<N>`), so every event can be told apart and counted. Other sources
//! (kernel process and connection events) are switched off in the twin: this is about delivery.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use edgeguard::pipeline::spool::{self, Spool};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::agent::ChildGuard;
use support::certs::TestPki;
use support::device::{EdgeDevice, ModuleIdentity, module_env};
use support::edgehub::{EdgeHub, EdgeHubConfig, Telemetry};
use support::workload::Workload;

const HUB: &str = "testhub.azure-devices.net";
const DEVICE: &str = "dev1";
const MODULE: &str = "edgeguard";
const GENERATION: &str = "638000000000000000";
const AUTH_LOG: &str = "var/log/auth.log";
/// edgeHub's packet limit.
const MAX_PACKET: usize = 256 * 1024;

fn module_key() -> String {
    B64.encode([11u8; 32])
}

fn identity() -> ModuleIdentity {
    ModuleIdentity {
        hub: HUB,
        device: DEVICE,
        module: MODULE,
        generation: GENERATION,
        key: module_key(),
    }
}

/// Desired properties: Login (High) goes out every second; kernel sources are off.
fn desired() -> Value {
    json!({
        "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
            "highPriorityMessageFrequency": {"value": "PT1S"},
            "eventPriorityProcessCreate": {"value": "Off"},
            "eventPriorityProcessTerminate": {"value": "Off"},
            "eventPriorityConnectionCreate": {"value": "Off"},
        }
    })
}

/// One edge device: the doubles, a host root with an auth log, and the module's state volume.
struct Device {
    _pki: TestPki,
    hub: EdgeHub,
    workload: Workload,
    host: tempfile::TempDir,
    state: tempfile::TempDir,
    starts: std::cell::Cell<usize>,
    /// Connections the double had accepted when the last agent started ([`Device::wait_ready`]).
    connections_before: std::cell::Cell<usize>,
    /// The machine's own trees the host root shows (`proc`), bind-mounted in the agent's own
    /// mount namespace ([`support::agent::command_with_trees`]).
    trees: Vec<&'static str>,
    /// Held while the device lives: shared by most tests, exclusive for one that must not see
    /// other tests' processes ([`Device::alone`]).
    _turn: Turn,
}

/// A test's turn: most tests run side by side; the behaviour-baseline test judges every program
/// the host runs, so it runs alone (other tests' programs would be anomalies to it, and spend
/// the rule's alert budget).
enum Turn {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

fn turns() -> std::sync::Arc<tokio::sync::RwLock<()>> {
    static TURNS: std::sync::OnceLock<std::sync::Arc<tokio::sync::RwLock<()>>> =
        std::sync::OnceLock::new();
    TURNS.get_or_init(Default::default).clone()
}

impl Device {
    /// Calls the agent's `flush` direct method and requires a 200; `what` names the call in the
    /// panic, which also says what the double saw of the connection.
    async fn flush(&self, what: &str) {
        let (status, _) = self
            .hub
            .invoke_method("flush", json!({}), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{what}: {e:?}\nconnected {}\nclosed {:?}\nprotocol errors {:?}\n{}",
                    self.hub.is_connected(),
                    self.hub
                        .closed_connections()
                        .iter()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>(),
                    self.hub.protocol_errors(),
                    self.logs()
                )
            });
        assert_eq!(status, 200, "{what}\n{}", self.logs());
    }

    async fn new(tune: impl FnOnce(&mut EdgeHubConfig)) -> Device {
        let turn = Turn::Shared(turns().read_owned().await);
        Device::with_turn(turn, tune).await
    }

    /// Like [`Device::new`], with no other test's device alive meanwhile.
    async fn alone(tune: impl FnOnce(&mut EdgeHubConfig)) -> Device {
        let turn = Turn::Alone(turns().write_owned().await);
        Device::with_turn(turn, tune).await
    }

    async fn with_turn(turn: Turn, tune: impl FnOnce(&mut EdgeHubConfig)) -> Device {
        let doubles = EdgeDevice::start(&identity(), |cfg| {
            cfg.initial_desired = desired();
            tune(cfg);
        })
        .await;
        let host = tempfile::tempdir().expect("host root");
        std::fs::create_dir_all(host.path().join("var/log")).expect("var/log");
        std::fs::write(host.path().join(AUTH_LOG), b"").expect("auth.log");
        let EdgeDevice { pki, hub, workload } = doubles;
        Device {
            _pki: pki,
            hub,
            workload,
            host,
            state: tempfile::tempdir().expect("state dir"),
            starts: std::cell::Cell::new(0),
            connections_before: std::cell::Cell::new(0),
            trees: Vec::new(),
            _turn: turn,
        }
    }

    /// Starts `edgeguard run` with the environment edgeAgent gives a module; stderr goes to
    /// `agent-<n>.log` in the state directory (printed when a test fails).
    fn start_agent(&self, extra: &[(&str, &str)]) -> ChildGuard {
        self.starts.set(self.starts.get() + 1);
        self.connections_before.set(self.hub.accepted_connections());
        let log = std::fs::File::create(self.log_path(self.starts.get())).expect("agent log");
        let mut c = if self.trees.is_empty() {
            support::agent::command()
        } else {
            support::agent::command_with_trees(self.host.path(), &self.trees)
        };
        support::agent::as_module(
            &mut c,
            module_env(&identity(), &self.workload.uri()),
            self.hub.port(),
            self.host.path(),
            self.state.path(),
            log,
        )
        .env("RUST_LOG", "info,edgeguard::collectors=warn")
        .args(["--shutdown-grace", "5"]);
        for (k, v) in extra {
            c.env(k, v);
        }
        ChildGuard(c.spawn().expect("edgeguard starts"))
    }

    /// Stops an agent with SIGTERM as edgeAgent does and checks that it exits cleanly.
    fn stop_agent(&self, agent: &mut Child) {
        assert!(
            terminate(agent, Duration::from_secs(15)),
            "no clean exit after SIGTERM\n{}",
            self.logs()
        );
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.state.path().join(format!("agent-{n}.log"))
    }

    /// Every agent log so far, for failure messages.
    fn logs(&self) -> String {
        (1..=self.starts.get())
            .map(|n| {
                let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!(
                    "--- agent run {n} (last 40 lines) ---\n{}\n",
                    tail.join("\n")
                )
            })
            .collect()
    }

    /// Waits until the agent is connected and follows the auth log (the login collector saves
    /// its positions before its first read; on a first start it reads from the end).
    async fn wait_ready(&self) {
        let positions = self.state.path().join("login-positions.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        // A connection accepted after this agent started: right after a SIGKILL the double may
        // not have noticed yet that the previous agent's connection is gone.
        let before = self.connections_before.get();
        while !(self.hub.accepted_connections() > before
            && self.hub.is_connected()
            && positions.exists())
        {
            assert!(
                Instant::now() < deadline,
                "agent not ready in 30 s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The follower saves where it starts (the end of each file, on a first start) before
        // its first read, so anything appended from now on is read.
    }

    /// Waits until `edgeguard status` says the spool holds at least `messages` messages.
    async fn wait_spooled(&self, messages: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = support::agent::command()
                .args(["status", "--json", "--state-dir"])
                .arg(self.state.path())
                .output()
                .expect("edgeguard status runs");
            let held = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|r| r["spool"]["messages"].as_u64())
                .unwrap_or(0);
            if held >= messages {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the spool held {held} messages, not {messages}, after {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Appends the failed logins of users `u<from>` … `u<to - 1>`, the way sshd logs them.
    fn append_logins(&self, from: u64, to: u64) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.host.path().join(AUTH_LOG))
            .expect("auth.log opens");
        let mut text = String::new();
        for n in from..to {
            text.push_str(&format!(
                "Dec  1 21:00:00 edge sshd[{pid}]: Failed password for u{n} from 198.51.100.7 port {port} ssh2\n",
                pid = 1000 + n,
                port = 40000 + n % 20000,
            ));
        }
        f.write_all(text.as_bytes()).expect("auth.log written");
    }

    /// Appends `count` logins from `from` on, `per_second` a second; returns the next number.
    async fn write_logins(&self, from: u64, count: u64, per_second: u64) -> u64 {
        let start = tokio::time::Instant::now();
        for i in 0..count {
            self.append_logins(from + i, from + i + 1);
            let next = start + Duration::from_millis((i + 1) * 1000 / per_second);
            tokio::time::sleep_until(next).await;
        }
        from + count
    }

    /// Waits until telemetry holds the logins of every user below `n`.
    async fn wait_logins(&self, n: u64, timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = login_users(&self.hub.telemetry());
            if (0..n).all(|u| got.contains(&u)) {
                return got;
            }
            if Instant::now() > deadline {
                let missing: Vec<u64> = (0..n).filter(|u| !got.contains(u)).collect();
                panic!(
                    "{} of {n} logins missing after {timeout:?}: {:?}…\nconnections: {:?}\nclosed: {:?}\n{}",
                    missing.len(),
                    &missing[..missing.len().min(20)],
                    self.hub
                        .attempts()
                        .iter()
                        .map(|a| (a.conn_id, a.reason().to_string()))
                        .collect::<Vec<_>>(),
                    self.hub.closed_connections(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Kills (SIGKILL) or stops (SIGTERM, then waits) an agent.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn terminate(child: &mut Child, timeout: Duration) -> bool {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            kill(child);
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The user numbers of the Login events in the messages edgeHub acknowledged (a message it
/// received but never acknowledged may not have been kept), in arrival order, with repeats.
fn login_users(telemetry: &[Telemetry]) -> Vec<u64> {
    telemetry
        .iter()
        .filter(|t| t.puback_sent)
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "Login")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["UserName"].as_str()?.strip_prefix('u')?.parse().ok())
        .collect()
}

/// Checks what every message must satisfy: module topic, properties, size.
fn check_messages(telemetry: &[Telemetry]) {
    for t in telemetry {
        assert!(!t.device_topic, "telemetry on the device topic");
        assert_eq!(t.qos, 1, "telemetry must be QoS 1");
        assert!(
            t.payload.len() + t.topic.len() < MAX_PACKET,
            "message of {} bytes",
            t.payload.len()
        );
        let props = t.properties.as_ref().expect("property bag parses");
        assert_eq!(props.get("$.ct"), Some("application/json"));
        assert_eq!(props.get("$.ce"), Some("utf-8"));
        assert!(props.get("$.mid").is_some_and(|m| !m.is_empty()));
        assert!(matches!(props.get("MessagePriority"), Some("High" | "Low")));
        let body = serde_json::from_slice::<Value>(&t.payload).expect("payload is JSON");
        // Alerts (the failed logins raise the brute-force rule) travel on their own output.
        let alerts_only = body["Events"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["Name"] == "Alert"));
        match props.get("$.on") {
            Some("alerts") => assert!(alerts_only, "only alerts on the alerts output"),
            other => assert_eq!(other, Some("securityEvents")),
        }
    }
}

/// Whether the first appearance of each number is in increasing order (repeats of earlier
/// messages after a reconnect are allowed: delivery is at least once).
fn first_seen_in_order(users: &[u64]) -> bool {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<u64> = users.iter().copied().filter(|u| seen.insert(*u)).collect();
    firsts.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_outage_loses_nothing_and_keeps_order() {
    let d = Device::new(|_| {}).await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;

    // 5 logins a second for 45 s; edgeHub is away for 30 s from about 5 s on. It goes down
    // holding a message it never acknowledged, which must be sent again.
    let writer = async {
        d.write_logins(0, 225, 5).await;
    };
    let outage = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        d.hub.set_withhold_pubacks(true);
        // Until a message is held unacknowledged (logins are read every second and batched
        // every second, so one normally comes within 2 s; a busy machine may take longer).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !d.hub.telemetry().iter().any(|t| !t.puback_sent)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d.hub.stop().await;
        let stopped_at = d.hub.telemetry().len();
        d.hub.set_withhold_pubacks(false);
        tokio::time::sleep(Duration::from_secs(30)).await;
        d.hub.restart().await;
        stopped_at
    };
    let ((), stopped_at) = tokio::join!(writer, outage);
    assert!(stopped_at > 0, "something was delivered before the outage");
    let unacked = d.hub.telemetry()[..stopped_at]
        .iter()
        .filter(|t| !t.puback_sent)
        .count();
    assert!(
        unacked > 0,
        "edgeHub went down with a message unacknowledged"
    );

    // The reconnect backoff after 30 s away is at most a minute.
    let users = d.wait_logins(225, Duration::from_secs(90)).await;
    let telemetry = d.hub.telemetry();
    check_messages(&telemetry);
    assert!(
        first_seen_in_order(&users),
        "logins out of order: {users:?}"
    );
    assert!(
        telemetry[stopped_at..]
            .iter()
            .any(|t| t.conn_id != telemetry[stopped_at - 1].conn_id),
        "delivery resumed on a new connection"
    );
    assert!(
        d.hub.protocol_errors().is_empty(),
        "{:?}",
        d.hub.protocol_errors()
    );
    d.stop_agent(&mut agent);
}

/// A slow uplink (the double reads 40 KB/s through a 4 KiB receive buffer and advertises
/// Ethernet-sized segments, so the agent's writes block for seconds, as on a congested cellular
/// link): direct methods answered while big messages are still being written, every login
/// delivered, all on the one connection, no protocol error. Written to catch a session that
/// cancels its MQTT poll while a write blocks (rumqttc drops a packet whose `feed` is
/// cancelled); a build with the 2-second cancelling tick of before 88af7c3 passed it as well
/// (three runs, 10 and 40 KB/s), so such a loss is not shown here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_uplink_answers_methods_and_loses_nothing() {
    let d = Device::new(|cfg| cfg.slow_link = Some(40_000)).await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;

    // About a megabyte of logins at once: ~25 s on this link, in messages of up to 200 KB.
    const LOGINS: u64 = 2_000;
    d.append_logins(0, LOGINS);
    // Until the first logins arrived: the link is busy with the rest from then on (~25 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while login_users(&d.hub.telemetry()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no login arrived in 60 s\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Methods while the agent's writes block, one after the other until the last login is
    // in: each answer waits behind the message being written.
    let mut answered = 0;
    while login_users(&d.hub.telemetry()).len() < LOGINS as usize {
        let asked = Instant::now();
        d.flush(&format!("method {answered} on the slow link"))
            .await;
        answered += 1;
        eprintln!("method {answered} answered in {:?}", asked.elapsed());
    }
    assert!(
        answered >= 2,
        "only {answered} methods while the link was busy"
    );
    d.wait_logins(LOGINS, Duration::from_secs(180)).await;
    check_messages(&d.hub.telemetry());
    assert!(
        d.hub.protocol_errors().is_empty(),
        "{:?}",
        d.hub.protocol_errors()
    );
    assert_eq!(
        d.hub.accepted_connections(),
        1,
        "one connection carried it all: {:?}\n{}",
        d.hub.closed_connections(),
        d.logs()
    );
    d.stop_agent(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_the_spool_held() {
    let d = Device::new(|_| {}).await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;

    // Logins flow; then edgeHub stops acknowledging, so messages pile up in the spool (one in
    // flight, the rest waiting), and the agent is killed mid-stream.
    let next = d.write_logins(0, 50, 20).await;
    d.hub.set_withhold_pubacks(true);
    let next = d.write_logins(next, 100, 20).await;
    // Until the spool holds at least two messages (the one in flight and one waiting).
    d.wait_spooled(2, Duration::from_secs(60)).await;
    kill(&mut agent);
    let before_kill = d.hub.telemetry().len();

    // What the agent had committed to its spool when it died.
    let path = d.state.path().join(spool::FILE_NAME);
    let committed: Vec<Vec<u8>> = {
        let mut s = Spool::open(&path, usize::MAX).expect("the spool opens after SIGKILL");
        let ids: Vec<u64> = s.pending().map(|e| e.id).collect();
        ids.into_iter()
            .map(|id| s.read(id).expect("a committed record reads back").to_vec())
            .collect()
    };
    assert!(
        committed.len() >= 2,
        "the spool held {} messages at the kill\n{}",
        committed.len(),
        d.logs()
    );
    d.hub.set_withhold_pubacks(false);
    d.hub.disconnect_client();

    // Restart on the same state volume; logins keep coming.
    let mut agent = d.start_agent(&[]);
    let next = d.write_logins(next, 50, 20).await;
    d.wait_logins(next, Duration::from_secs(60)).await;
    let after: Vec<Vec<u8>> = d.hub.telemetry()[before_kill..]
        .iter()
        .filter(|t| t.puback_sent)
        .map(|t| t.payload.clone())
        .collect();
    // Every committed message went out (and was acknowledged) after the restart, byte for
    // byte, in spool order.
    let mut pos = 0;
    for (i, body) in committed.iter().enumerate() {
        match after[pos..].iter().position(|b| b == body) {
            Some(p) => pos += p + 1,
            None => panic!(
                "spool message {i} of {} not delivered (in order) after the restart\n{}",
                committed.len(),
                d.logs()
            ),
        }
    }
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_second_tokens_keep_the_module_connected_for_a_minute() {
    // Tokens are checked strictly: a connection is dropped the moment its token expires.
    let d = Device::new(|cfg| cfg.clock_skew = Duration::ZERO).await;
    let mut agent = d.start_agent(&[("EDGEGUARD_TOKEN_LIFETIME", "10")]);
    d.wait_ready().await;
    let started = std::time::SystemTime::now();
    let next = d.write_logins(0, 120, 2).await;
    d.wait_logins(next, Duration::from_secs(15)).await;

    let attempts = d.hub.attempts();
    let accepted: Vec<_> = attempts.iter().filter(|a| a.accepted()).collect();
    assert!(
        accepted.len() >= 6,
        "expected a renewal every 8 s over a minute, got {} connections\n{}",
        accepted.len(),
        d.logs()
    );
    assert!(
        attempts.iter().all(|a| a.accepted()),
        "refused: {:?}",
        attempts
            .iter()
            .filter(|a| !a.accepted())
            .map(|a| a.reason().to_string())
            .collect::<Vec<_>>()
    );
    for a in &accepted {
        let lifetime = a.token_expiry.expect("token expiry") as i64
            - a.at
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs() as i64;
        assert!((8..=11).contains(&lifetime), "token lifetime {lifetime} s");
    }
    let closed = d.hub.closed_connections();
    assert!(
        closed.iter().all(|c| !c.reason.contains("expired")),
        "the hub dropped an expired token: {closed:?}"
    );
    // Never away for long: each renewal reconnects at once.
    for c in closed.iter().filter(|c| c.authenticated && c.at > started) {
        let back = accepted
            .iter()
            .filter(|a| a.conn_id > c.conn_id)
            .min_by_key(|a| a.conn_id);
        if let Some(back) = back {
            let gap = back.at.duration_since(c.at).unwrap_or_default();
            assert!(gap < Duration::from_secs(3), "reconnected after {gap:?}");
        }
    }
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_follows_the_twin() {
    let d = Device::new(|_| {}).await;
    let mut agent = d.start_agent(&[("RUST_LOG", "warn")]);
    d.wait_ready().await;
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let log_has = |needle: &str| {
        std::fs::read_to_string(d.log_path(1)).is_ok_and(|text| text.contains(needle))
    };
    // Started at warn: info and debug lines appear only once the twin says so. (Checked before
    // the patch is sent: after it, a loaded machine may let the agent log first.)
    assert!(!log_has(" DEBUG "), "debug before the patch\n{}", d.logs());
    d.hub
        .set_desired_patch(json!({ object: {"logLevel": {"value": "debug"}} }));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(log_has("log filter changed") && log_has(" DEBUG ")) {
        assert!(Instant::now() < deadline, "no debug logs\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.hub
            .wait_until(
                Duration::from_secs(10),
                |h| h.reported()[object]["logLevel"] == json!({"value": "debug"})
            )
            .await,
        "reported: {}",
        d.hub.reported()
    );
    // A level that is not one is rejected like any bad key; the filter stays.
    d.hub
        .set_desired_patch(json!({ object: {"logLevel": "verbose"} }));
    assert!(
        d.hub
            .wait_until(Duration::from_secs(10), |h| {
                h.reported()[object]["rejected"]
                    .to_string()
                    .contains("logLevel")
            })
            .await,
        "reported: {}",
        d.hub.reported()
    );
    assert_eq!(
        d.hub.reported()[object]["logLevel"],
        json!({"value": "debug"})
    );
    d.stop_agent(&mut agent);
}

/// Heartbeats as edgeHub sees them: `(Sequence, UptimeSeconds)` of every acknowledged one.
fn heartbeats(telemetry: &[Telemetry]) -> Vec<(u64, u64)> {
    telemetry
        .iter()
        .filter(|t| t.puback_sent)
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "Heartbeat")
        .filter_map(|e| {
            let r = &e["Payload"][0];
            Some((r["Sequence"].as_u64()?, r["UptimeSeconds"].as_u64()?))
        })
        .collect()
}

/// With the twin's `heartbeatFrequency` set, heartbeats arrive upstream on that interval by
/// themselves (the high timer is the default 7 minutes, so nothing else would send them), and
/// a twin change of the interval applies without restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_arrive_on_the_twin_interval_without_a_flush() {
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let d = Device::new(|cfg| {
        cfg.initial_desired = json!({ object: {"heartbeatFrequency": {"value": "PT2S"}} });
    })
    .await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;
    assert!(
        d.hub
            .wait_until(Duration::from_secs(60), |h| heartbeats(&h.telemetry())
                .len()
                >= 3)
            .await,
        "three heartbeats within a minute: {:?}\n{}",
        heartbeats(&d.hub.telemetry()),
        d.logs()
    );
    let beats = heartbeats(&d.hub.telemetry());
    let sequences: Vec<u64> = beats.iter().map(|b| b.0).collect();
    assert_eq!(
        &sequences[..3],
        &[1, 2, 3],
        "in order, none lost: {beats:?}"
    );
    assert!(beats[2].1 >= beats[0].1 + 2, "uptime grows: {beats:?}");
    // A long interval from the twin stops them (the next would be an hour away).
    d.hub
        .set_desired_patch(json!({ object: {"heartbeatFrequency": "PT1H"}}));
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                h.reported()[object]["heartbeatFrequency"] == json!({"value": "PT1H"})
            })
            .await,
        "reported: {}",
        d.hub.reported()
    );
    // One may have been on its way when the patch arrived; after that, none for 5 s.
    let settled = heartbeats(&d.hub.telemetry()).len() + 1;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        heartbeats(&d.hub.telemetry()).len() <= settled,
        "heartbeats kept coming after the interval was raised: {:?}",
        heartbeats(&d.hub.telemetry())
    );
    d.stop_agent(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_edgehub_is_away_keeps_everything_for_the_next_start() {
    let d = Device::new(|_| {}).await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;
    d.hub.stop().await;
    // Logins while edgeHub is away; edgeAgent stops the module (SIGTERM) before any could go.
    let next = d.write_logins(0, 40, 20).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        terminate(&mut agent, Duration::from_secs(20)),
        "clean exit after SIGTERM\n{}",
        d.logs()
    );
    assert!(login_users(&d.hub.telemetry()).is_empty());
    let log = std::fs::read_to_string(d.log_path(1)).unwrap_or_default();
    assert!(
        log.contains("unacknowledged messages stay in the spool"),
        "{}",
        d.logs()
    );
    // Back with edgeHub: what the first run read is delivered by the second.
    d.hub.restart().await;
    let mut agent = d.start_agent(&[]);
    let users = d.wait_logins(next, Duration::from_secs(30)).await;
    assert!(first_seen_in_order(&users), "{users:?}");
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
}

/// Whether any ProcessCreate in `telemetry` (acknowledged) carries `marker` in its command line.
fn exec_markers(telemetry: &[Telemetry]) -> HashSet<String> {
    exec_payloads(telemetry)
        .filter_map(|p| {
            let cmd = p["CommandLine"].as_str()?;
            let at = cmd.find("eg-kill-")?;
            Some(cmd[at..].split(' ').next()?.to_string())
        })
        .collect()
}

/// Process ids of acknowledged `ProcessCreate` events that carry no command line (the process
/// was a zombie before /proc could be read): such an event was delivered, only incomplete.
fn incomplete_exec_pids(telemetry: &[Telemetry]) -> HashSet<u64> {
    exec_payloads(telemetry)
        .filter(|p| p["CommandLine"].as_str().unwrap_or("").is_empty())
        .filter_map(|p| p["ProcessId"].as_u64())
        .collect()
}

fn exec_payloads(telemetry: &[Telemetry]) -> impl Iterator<Item = Value> + '_ {
    telemetry
        .iter()
        .filter(|t| t.puback_sent)
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "ProcessCreate")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
}

/// Steady load while agents are killed and restarted: a failed login and an exec with a unique
/// marker every 100 ms, and a loopback connection every 100 ms (load only). Default timers, so
/// everything waits in the agent's cache and aggregation windows until the final flush: only
/// the journal carries it across the kills.
///
/// An event must arrive when it was made while an agent was following, at least
/// [`AT_RISK`] before that agent was killed: one journal commit interval (1 s) plus the time to
/// be read (the auth log is polled every second; an exec is read at once). Events made later,
/// or while no agent ran (execs then are not seen at all), are counted apart. An exec whose
/// event arrived without its command line (under load the shell can exit before /proc is
/// read; issue 19's subject) is matched by its pid: it was delivered, only incomplete.
/// `EDGEGUARD_KILLS` sets the number of kills (default 5; 20 for the published figure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_under_load_lose_nothing_older_than_a_journal_commit() {
    const AT_RISK: Duration = Duration::from_secs(3);
    let kills: usize = std::env::var("EDGEGUARD_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut d = Device::new(|cfg| {
        cfg.initial_desired = json!({
            "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
                "maxLocalCacheSizeInBytes": {"value": 16_777_216},
            }
        });
    })
    .await;
    // The process collector reads the host's /proc through the host root.
    d.trees = vec!["proc"];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });

    // (marker, made at, login or exec)
    struct Made {
        n: u64,
        at: Instant,
        exec: String,
        pid: Option<u32>,
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut made: Vec<Made> = Vec::new();
    // (ready at, killed at) of every agent.
    let mut lives: Vec<(Instant, Instant)> = Vec::new();
    let mut n = 0u64;
    let mut last = None;
    for k in 0..=kills {
        let mut agent = d.start_agent(&[]);
        d.wait_ready().await;
        let ready = Instant::now();
        if k == kills {
            lives.push((ready, Instant::now() + Duration::from_secs(3600)));
            // Dropping the guard would kill it: this one stays for the flush.
            last = Some(agent);
            break;
        }
        let live_for = Duration::from_millis(4000 + fastrand::u64(0..4000));
        while ready.elapsed() < live_for {
            let exec = format!("eg-kill-{run}-{n}");
            d.append_logins(n, n + 1);
            let pid = std::process::Command::new("/bin/sh")
                .args(["-c", "sleep 0.3; true", &exec])
                .stdin(Stdio::null())
                .spawn()
                .ok()
                .map(|child| child.id());
            let _ = std::net::TcpStream::connect(("127.0.0.1", port));
            made.push(Made {
                n,
                at: Instant::now(),
                exec,
                pid,
            });
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        kill(&mut agent);
        lives.push((ready, Instant::now()));
    }
    // The last agent: send everything now.
    d.flush("the flush method after the last kill").await;

    let required = |m: &Made| {
        lives
            .iter()
            .any(|(ready, killed)| m.at >= *ready && m.at + AT_RISK <= *killed)
    };
    // An exec arrived when its marker did, or when an event for its pid came without a command
    // line (read too late, after the shell had exited: a collector limit, not a loss).
    let exec_arrived = |m: &Made, execs: &HashSet<String>, bare: &HashSet<u64>| {
        execs.contains(&m.exec) || m.pid.is_some_and(|p| bare.contains(&u64::from(p)))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (logins, execs, bare) = loop {
        let telemetry = d.hub.telemetry();
        let logins = login_users(&telemetry);
        let execs = exec_markers(&telemetry);
        let bare = incomplete_exec_pids(&telemetry);
        let missing = made
            .iter()
            .filter(|m| required(m))
            .filter(|m| !logins.contains(&m.n) || !exec_arrived(m, &execs, &bare))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break (logins, execs, bare);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (req, risk): (Vec<&Made>, Vec<&Made>) = made.iter().partition(|m| required(m));
    let lost_logins: Vec<u64> = req
        .iter()
        .filter(|m| !logins.contains(&m.n))
        .map(|m| m.n)
        .collect();
    let lost_execs: Vec<&str> = req
        .iter()
        .filter(|m| !exec_arrived(m, &execs, &bare))
        .map(|m| m.exec.as_str())
        .collect();
    let without_command_line =
        req.iter().filter(|m| !execs.contains(&m.exec)).count() - lost_execs.len();
    let risky_logins = risk.iter().filter(|m| logins.contains(&m.n)).count();
    let risky_execs = risk
        .iter()
        .filter(|m| exec_arrived(m, &execs, &bare))
        .count();
    eprintln!(
        "kills: {kills}; required: {} logins + {} execs, lost {} + {} ({without_command_line} execs arrived without their command line); at risk: {} of each, arrived {} logins and {} execs",
        req.len(),
        req.len(),
        lost_logins.len(),
        lost_execs.len(),
        risk.len(),
        risky_logins,
        risky_execs
    );
    assert!(
        lost_logins.is_empty() && lost_execs.is_empty(),
        "lost logins {lost_logins:?}, execs {lost_execs:?}\n{}",
        d.logs()
    );
    check_messages(&d.hub.telemetry());
    drop(last);
}

/// libfaketime's multi-threaded library (Debian `faketime`, installed by scripts/test.sh).
fn libfaketime() -> PathBuf {
    [
        "x86_64-linux-gnu",
        "aarch64-linux-gnu",
        "arm-linux-gnueabihf",
    ]
    .iter()
    .map(|t| PathBuf::from(format!("/usr/lib/{t}/faketime/libfaketimeMT.so.1")))
    .find(|p| p.exists())
    .expect("libfaketime is installed (Debian faketime; scripts/test.sh installs it)")
}

/// A device without RTC: the agent's wall clock starts two hours behind (libfaketime, moved
/// through a file while the agent runs; the monotonic clock is left alone), so its SAS tokens
/// are expired on arrival and edgeHub refuses them. When NTP steps the clock, a token signed
/// with the corrected time gets the module in at once, not after the refused-credentials
/// backoff (60 s). A later step back of twenty minutes gets a fresh token too (and stays
/// connected: it is still valid). Events made after the step carry the corrected time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_gets_a_fresh_token_at_once() {
    let d = Device::new(|_| {}).await;
    let clock = d.state.path().join("faketime");
    std::fs::write(&clock, "-2h\n").expect("clock file");
    let lib = libfaketime();
    let clock_path = clock.to_string_lossy().to_string();
    let mut agent = d.start_agent(&[
        ("LD_PRELOAD", lib.to_str().expect("a UTF-8 path")),
        ("FAKETIME_TIMESTAMP_FILE", &clock_path),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    // Refused: the token expired an hour before it was made, by edgeHub's clock.
    assert!(
        d.hub
            .wait_until(Duration::from_secs(30), |h| {
                h.attempts().iter().any(|a| !a.accepted())
            })
            .await,
        "no refused attempt\n{}",
        d.logs()
    );
    let refused = d.hub.attempts();
    assert!(refused.iter().all(|a| !a.accepted()), "{refused:?}");
    assert!(
        refused[0].reason().contains("expired"),
        "{}",
        refused[0].reason()
    );

    // NTP steps the clock forward two hours.
    std::fs::write(&clock, "+0\n").expect("clock file");
    let stepped = Instant::now();
    assert!(
        d.hub.wait_connected(Duration::from_secs(20)).await,
        "not connected within 20 s of the step (the credentials backoff is 60 s)\n{}",
        d.logs()
    );
    let took = stepped.elapsed();
    let accepted = d.hub.attempts().len();
    eprintln!("connected {took:?} after the clock step");

    // Events made now are stamped with the corrected clock.
    d.wait_ready().await;
    d.append_logins(0, 1);
    d.wait_logins(1, Duration::from_secs(30)).await;
    let now = chrono::Utc::now();
    let stamped: Vec<chrono::DateTime<chrono::Utc>> = d
        .hub
        .telemetry()
        .iter()
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "MessageStatistics" || e["Name"] == "Login")
        .filter_map(|e| e["TimestampUTC"].as_str()?.parse().ok())
        .collect();
    assert!(
        stamped.iter().any(|t| (now - *t).num_seconds().abs() < 120),
        "no event stamped with the corrected time: {stamped:?}"
    );

    // Stepped back twenty minutes: a new token (a new connection), still accepted.
    std::fs::write(&clock, "-20m\n").expect("clock file");
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                let a = h.attempts();
                a.len() > accepted && a.last().is_some_and(|a| a.accepted())
            })
            .await,
        "no fresh token after the backward step: {:?}\n{}",
        d.hub
            .attempts()
            .iter()
            .map(|a| a.reason().to_string())
            .collect::<Vec<_>>(),
        d.logs()
    );
    assert!(
        std::fs::read_to_string(d.log_path(1))
            .is_ok_and(|l| l.contains("the wall clock was stepped")),
        "the step is logged\n{}",
        d.logs()
    );
    d.stop_agent(&mut agent);
}

/// Every record of events named `name` in the messages edgeHub received.
fn records_named(telemetry: &[Telemetry], name: &str) -> Vec<Value> {
    telemetry
        .iter()
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == name)
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Issue 17, item 3: a custom rule pushed through the twin alerts on a real process without a
/// restart; a bad rule beside it is rejected alone (a `ConfigurationError` naming it, and in
/// the reported `rejected`); removing the key removes the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_rules_from_the_twin_alert_on_real_processes_without_restart() {
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let mut d = Device::new(|cfg| {
        // ProcessCreate stays Off (not sent) but the detector sees every exec; the
        // ConfigurationError (Low) goes out within a second.
        cfg.initial_desired[object]["lowPriorityMessageFrequency"] = json!({"value": "PT1S"});
    })
    .await;
    d.trees = vec!["proc"];
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;

    let marker = format!("eg-custom-{}", uuid::Uuid::new_v4().simple());
    let good = json!({
        "id": "vendor-marker",
        "title": "Vendor marker run",
        "severity": "Important",
        "techniques": ["T1059.004"],
        "description": "A shell ran the vendor marker.",
        "remediation": "Ask the vendor.",
        "kind": "ProcessCreate",
        "match": {"field": "CommandLine", "contains": marker}
    });
    let bad = json!({
        "id": "bad-rule", "title": "t", "severity": "Warning", "description": "d",
        "remediation": "r", "kind": "ProcessCreate",
        "match": {"field": "NoSuchField", "equals": "x"}
    });
    d.hub.set_desired_patch(
        json!({ object: {"detectionCustomRules": {"value": [bad, good.clone()]}} }),
    );
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                let shown = &h.reported()[object]["detectionCustomRules"]["value"];
                shown
                    .as_str()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    == Some(json!([good]))
            })
            .await,
        "reported: {}\n{}",
        d.hub.reported(),
        d.logs()
    );
    let rejected = d.hub.reported()[object]["rejected"].to_string();
    assert!(rejected.contains("bad-rule"), "{rejected}");

    // A real shell whose command line carries the marker (one per try: each is its own subject).
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let run_marked = |n: usize| {
        std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.2", &format!("{marker}-{n}")])
            .stdin(Stdio::null())
            .spawn()
            .expect("sh starts")
    };
    let mut children = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let alerts = records_named(&d.hub.telemetry(), "Alert");
        if let Some(a) = alerts.iter().find(|a| a["RuleId"] == "vendor-marker") {
            break a.clone();
        }
        assert!(Instant::now() < deadline, "no custom alert\n{}", d.logs());
        children.push(run_marked(children.len()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(alert["Severity"], "Important", "{alert}");
    assert_eq!(alert["Title"], "Vendor marker run", "{alert}");
    assert_eq!(alert["Techniques"], json!(["T1059.004"]), "{alert}");
    assert!(
        alert["CommandLine"]
            .as_str()
            .unwrap_or("")
            .contains(&marker),
        "{alert}"
    );
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    assert!(
        alert["ProcessId"]
            .as_u64()
            .is_some_and(|p| pids.contains(&(p as u32))),
        "{alert} not one of {pids:?}"
    );
    // The bad rule, reported as a ConfigurationError naming it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let errors = records_named(&d.hub.telemetry(), "ConfigurationError");
        let found = errors.iter().find(|e| {
            e["ConfigurationName"] == "detectionCustomRules"
                && e["Message"].as_str().unwrap_or("").contains("bad-rule")
        });
        if let Some(e) = found {
            assert!(
                e["Message"].as_str().unwrap().contains("NoSuchField"),
                "{e}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ConfigurationError: {errors:?}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Removing the key removes the rule: a marked shell run after that raises nothing, which
    // shows once a program run after it from a temporary directory has alerted (the detector
    // sees execs in order).
    d.hub
        .set_desired_patch(json!({ object: {"detectionCustomRules": null} }));
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                h.reported()[object]["detectionCustomRules"]["value"] == json!("")
            })
            .await,
        "reported: {}",
        d.hub.reported()
    );
    // A program run from a temporary directory alerts once the pipeline has seen execs made
    // after the removal was reported (by then it has taken the new configuration).
    let d = &d;
    let run_dropped = |name: &str| {
        let dropped = tmp.path().join(name);
        std::fs::copy("/bin/true", &dropped).expect("copy true");
        let text = dropped.to_str().unwrap().to_string();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let _ = std::process::Command::new(&text).status();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let alerts = records_named(&d.hub.telemetry(), "Alert");
                let seen =
                    |a: &Value| a["RuleId"] == "exec-from-temp-dir" && a["Executable"] == *text;
                if alerts.iter().any(seen) {
                    return alerts;
                }
                assert!(
                    Instant::now() < deadline,
                    "no alert for {text}\n{}",
                    d.logs()
                );
            }
        }
    };
    run_dropped("eg-custom-dropped-1").await;
    let mut after = run_marked(1_000_000);
    // The marked shell, then another program from the temporary directory: when that one's
    // alert is in, the marked exec was inspected before it.
    let alerts = run_dropped("eg-custom-dropped-2").await;
    let after_marker = format!("{marker}-1000000");
    let stale: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            a["CommandLine"]
                .as_str()
                .unwrap_or("")
                .contains(&after_marker)
        })
        .collect();
    assert!(stale.is_empty(), "the removed rule still alerts: {stale:?}");
    let _ = after.wait();
    for mut c in children {
        let _ = c.wait();
    }
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
}

/// Issue 17, item 3: per-rule overrides from the twin apply without a restart. Failed logins
/// from one address raise `login-brute-force` once its threshold is set to 3 (its own is 10),
/// with the severity set beside it; a bad entry is rejected alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_overrides_from_the_twin_apply_without_restart() {
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let d = Device::new(|cfg| {
        cfg.initial_desired[object]["lowPriorityMessageFrequency"] = json!({"value": "PT1S"});
    })
    .await;
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;
    // Below the rule's own threshold: the logins arrive, no alert.
    d.append_logins(0, 3);
    d.wait_logins(3, Duration::from_secs(20)).await;
    let brute = |t: &[Telemetry]| {
        records_named(t, "Alert")
            .into_iter()
            .filter(|a| a["RuleId"] == "login-brute-force")
            .collect::<Vec<_>>()
    };
    assert_eq!(brute(&d.hub.telemetry()), Vec::<Value>::new());

    d.hub
        .set_desired_patch(json!({ object: {"detectionRuleOverrides": {"value": {
            "login-brute-force": {"threshold": 3, "window": "PT10M", "severity": "Critical"},
            "no-such-rule": {"severity": "Warning"},
        }}}}));
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                let shown = &h.reported()[object]["detectionRuleOverrides"]["value"];
                shown
                    .as_str()
                    .is_some_and(|t| t.contains("login-brute-force"))
            })
            .await,
        "reported: {}\n{}",
        d.hub.reported(),
        d.logs()
    );
    let rejected = d.hub.reported()[object]["rejected"].to_string();
    assert!(rejected.contains("no-such-rule"), "{rejected}");
    // One more from the same address alerts: the three before the change count (correlation
    // state is kept across a change), and 4 is past the new threshold. The next two start over.
    d.append_logins(3, 6);
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = brute(&d.hub.telemetry());
        if !alerts.is_empty() {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "no brute-force alert\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["EventCount"], 4, "{}", alerts[0]);
    assert_eq!(alerts[0]["Severity"], "Critical", "{}", alerts[0]);
    assert_eq!(alerts[0]["RemoteAddress"], "198.51.100.7", "{}", alerts[0]);
    // The bad entry, as a ConfigurationError naming it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !records_named(&d.hub.telemetry(), "ConfigurationError")
        .iter()
        .any(|e| {
            e["ConfigurationName"] == "detectionRuleOverrides"
                && e["Message"].as_str().unwrap_or("").contains("no-such-rule")
        })
    {
        assert!(
            Instant::now() < deadline,
            "no ConfigurationError\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
}

/// Issue 17, item 3: allow-lists from the twin apply without a restart. A real program outside
/// `detectionAllowedProcesses` raises `process-not-allowed` while listed ones raise nothing; a
/// successful login by a user outside `detectionAllowedUsers` raises `login-not-allowed`, one by
/// a listed user from a listed network nothing; a bad entry rejects its key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_from_the_twin_alert_on_real_programs_and_logins() {
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let mut d = Device::new(|cfg| {
        cfg.initial_desired[object]["lowPriorityMessageFrequency"] = json!({"value": "PT1S"});
    })
    .await;
    d.trees = vec!["proc"];
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;

    // A program in a directory of its own (not a temporary one: only the allow-list fires).
    let dir = PathBuf::from(format!(
        "/var/lib/eg-allow-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("program directory");
    let program = dir.join("unlisted-tool");
    std::fs::copy("/bin/true", &program).expect("copy true");
    let program_text = program.to_str().unwrap().to_string();

    d.hub.set_desired_patch(json!({ object: {
        "detectionAllowedProcesses": {"value": "/usr/,/bin/,/sbin/,/lib/"},
        "detectionAllowedUsers": {"value": "alice"},
        "detectionAllowedLoginSources": {"value": "198.51.100.0/24"},
        "detectionAllowedConnections": {"value": "10.0.0.0/33"},
    }}));
    assert!(
        d.hub
            .wait_until(Duration::from_secs(20), |h| {
                h.reported()[object]["detectionAllowedUsers"]["value"] == "alice"
            })
            .await,
        "reported: {}\n{}",
        d.hub.reported(),
        d.logs()
    );
    let rejected = d.hub.reported()[object]["rejected"].to_string();
    assert!(
        rejected.contains("detectionAllowedConnections"),
        "{rejected}"
    );

    // Listed programs and the unlisted one, until the unlisted one's alert is in (the pipeline
    // takes the configuration it reported before it inspects execs made after that).
    let deadline = Instant::now() + Duration::from_secs(30);
    let alerts = loop {
        let _ = std::process::Command::new("/bin/true").status();
        let _ = std::process::Command::new(&program).status();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let alerts = records_named(&d.hub.telemetry(), "Alert");
        let seen =
            |a: &Value| a["RuleId"] == "process-not-allowed" && a["Executable"] == *program_text;
        if alerts.iter().any(seen) {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "no process-not-allowed alert for {program_text}\n{}",
            d.logs()
        );
    };
    let listed: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            a["RuleId"] == "process-not-allowed"
                && ["/bin/", "/usr/"]
                    .iter()
                    .any(|p| a["Executable"].as_str().unwrap_or("").starts_with(p))
        })
        .collect();
    assert!(listed.is_empty(), "listed programs alerted: {listed:?}");

    // Logins: alice from the listed network passes, bob (unlisted) alerts.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.host.path().join(AUTH_LOG))
        .expect("auth.log opens");
    f.write_all(
        b"Dec  1 21:00:00 edge sshd[2001]: Accepted publickey for alice from 198.51.100.9 port 40001 ssh2\n\
          Dec  1 21:00:01 edge sshd[2002]: Accepted password for bob from 198.51.100.9 port 40002 ssh2\n",
    )
    .expect("auth.log written");
    let deadline = Instant::now() + Duration::from_secs(20);
    let login_alerts = loop {
        let alerts: Vec<Value> = records_named(&d.hub.telemetry(), "Alert")
            .into_iter()
            .filter(|a| a["RuleId"] == "login-not-allowed")
            .collect();
        if !alerts.is_empty() {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "no login-not-allowed\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Both lines were read together: bob's alert in means alice's login was inspected too.
    assert_eq!(login_alerts.len(), 1, "{login_alerts:?}");
    assert_eq!(login_alerts[0]["UserName"], "bob", "{}", login_alerts[0]);
    assert_eq!(login_alerts[0]["RemoteAddress"], "198.51.100.9");
    check_messages(&d.hub.telemetry());
    d.stop_agent(&mut agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17, item 5: the learned behaviour baseline with real programs through the edgeHub
/// double. A program run while learning stays quiet afterwards, a new one raises one
/// `behaviour-anomaly`; the `baseline-reset` method forgets what was learned (the old program
/// then alerts); the baseline survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviour_baseline_learns_alerts_on_what_is_new_resets_and_survives_a_restart() {
    let object = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";
    let mut d = Device::alone(|cfg| {
        let o = &mut cfg.initial_desired[object];
        o["behaviourLearningPeriod"] = json!({"value": "PT1H"});
        o["eventPriorityProcessCreate"] = json!({"value": "High"});
        o["aggregationEnabledProcessCreate"] = json!({"value": false});
    })
    .await;
    d.trees = vec!["proc"];
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;
    let ready = Instant::now();

    // Programs in a directory of their own (not a temporary one, which has rules of its own).
    let dir = PathBuf::from(format!(
        "/var/lib/eg-behaviour-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("program directory");
    let program = |name: &str| {
        let p = dir.join(name);
        std::fs::copy("/bin/true", &p).expect("copy true");
        p.to_str().unwrap().to_string()
    };
    let (known, novel, relearned, novel2, novel3) = (
        program("known"),
        program("novel"),
        program("relearned"),
        program("novel2"),
        program("novel3"),
    );
    let hub = &d.hub;
    let anomalies = |path: &str| -> usize {
        records_named(&hub.telemetry(), "Alert")
            .iter()
            .filter(|a| a["RuleId"] == "behaviour-anomaly" && a["ExtraDetails"]["Value"] == path)
            .count()
    };
    // Runs `path` until its ProcessCreate is upstream: the pipeline saw it (and so learned it,
    // or judged it) before sending it.
    let run_until_reported = |path: String| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = std::process::Command::new(&path).status();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let reported = records_named(&hub.telemetry(), "ProcessCreate")
                .iter()
                .any(|p| p["Executable"] == *path);
            if reported {
                return;
            }
            assert!(Instant::now() < deadline, "no ProcessCreate of {path}");
        }
    };
    let set_period = |period: &'static str| async move {
        hub.set_desired_patch(json!({ object: {"behaviourLearningPeriod": {"value": period}}}));
        assert!(
            hub.wait_until(Duration::from_secs(20), |h| {
                h.reported()[object]["behaviourLearningPeriod"]["value"] == period
            })
            .await,
            "reported: {}",
            hub.reported()
        );
    };
    // Learning ends one second after it started, once the twin says PT1S (learning started
    // before the agent was ready).
    let watch_after = |since: Instant| async move {
        tokio::time::sleep_until((since + Duration::from_millis(1500)).into()).await;
        set_period("PT1S").await;
    };
    let wait_anomaly = |path: String| async move {
        // 70 s: longer than the rule's one-minute alert budget, should the host's own new
        // programs have spent it.
        let deadline = Instant::now() + Duration::from_secs(70);
        while anomalies(&path) == 0 {
            let _ = std::process::Command::new(&path).status();
            assert!(Instant::now() < deadline, "no behaviour-anomaly for {path}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    // The listening-port snapshot a start takes, seen upstream (so judged or learned).
    let snapshots = || records_named(&hub.telemetry(), "ListeningPorts").len();

    // Learning: `known` is run and seen; nothing alerts.
    run_until_reported(known.clone()).await;
    watch_after(ready).await;
    // Watching: `novel` alerts once; `known`, run as often, does not.
    let _ = std::process::Command::new(&known).status();
    wait_anomaly(novel.clone()).await;
    run_until_reported(known.clone()).await;
    let _ = std::process::Command::new(&novel).status();
    run_until_reported(novel2.clone()).await;
    assert_eq!(anomalies(&known), 0, "{}", d.logs());
    assert_eq!(
        anomalies(&novel),
        1,
        "one alert per new behaviour\n{}",
        d.logs()
    );
    let anomaly = records_named(&hub.telemetry(), "Alert")
        .into_iter()
        .find(|a| a["ExtraDetails"]["Value"] == *novel)
        .expect("found above");
    assert_eq!(anomaly["Severity"], "Informational", "{anomaly}");
    assert_eq!(anomaly["ExtraDetails"]["Anomaly"], "exec", "{anomaly}");
    assert_eq!(anomaly["ExtraDetails"]["Scope"], "host", "{anomaly}");
    assert_eq!(anomaly["Executable"], *novel, "{anomaly}");

    // Reset by the direct method while learning for an hour again: `relearned` is learned,
    // `known` is forgotten.
    set_period("PT1H").await;
    let (status, body) = hub
        .invoke_method("baseline-reset", json!({}), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("baseline-reset answers: {e:?}\n{}", d.logs()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "baseline reset", "{body}");
    assert!(body["learningEndsUnixSeconds"].as_u64().is_some(), "{body}");
    let reset = Instant::now();
    run_until_reported(relearned.clone()).await;
    watch_after(reset).await;
    wait_anomaly(known.clone()).await;
    run_until_reported(relearned.clone()).await;
    assert_eq!(anomalies(&relearned), 0, "{}", d.logs());

    // A restart keeps the baseline: `relearned` stays quiet, `novel3` alerts. The agent
    // restarts learning (so the start's snapshot of listening ports is learned, not a burst
    // of anomalies), then watches.
    set_period("PT1H").await;
    let before = snapshots();
    d.stop_agent(&mut agent);
    let mut agent = d.start_agent(&[]);
    d.wait_ready().await;
    assert!(
        hub.wait_until(Duration::from_secs(30), |_| snapshots() > before)
            .await,
        "no listening-port snapshot after the restart\n{}",
        d.logs()
    );
    set_period("PT1S").await;
    wait_anomaly(novel3.clone()).await;
    run_until_reported(relearned.clone()).await;
    assert_eq!(anomalies(&relearned), 0, "{}", d.logs());
    assert!(
        d.state.path().join("behaviour.json").exists(),
        "the baseline is in the state directory"
    );
    check_messages(&hub.telemetry());
    d.stop_agent(&mut agent);
    let _ = std::fs::remove_dir_all(&dir);
}
