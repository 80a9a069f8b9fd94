//! The production hub client (`edgeguard::hub`) against the edgeHub and workload API doubles:
//! connection and credentials, telemetry with PUBACK → Ack, twin, methods, inputs, outages,
//! token renewal, CA rotation and shutdown.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use edgeguard::config::{CONFIG_OBJECT, Config};
use edgeguard::event::{
    Event, EventKind, Login, LoginResult, MessageHeader, Payload, Priority, envelope,
};
use edgeguard::hub::{self, EdgeEnvironment, HubChannels, HubOptions};
use edgeguard::metrics::{DropReason, Metrics};
use edgeguard::pipeline::outbox::{Delivery, Record};
use edgeguard::pipeline::{Control, Output};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::certs::{GATEWAY_HOST, TestPki};
use support::device::{EdgeDevice, ModuleIdentity};
use support::edgehub::{EdgeHub, MethodError};
use support::workload::Workload;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HUB: &str = "testhub.azure-devices.net";
const DEVICE: &str = "dev1";
const MODULE: &str = "edgeguard";
const GENERATION: &str = "637000000000000000";
const T: Duration = Duration::from_secs(15);

fn module_key() -> String {
    B64.encode([7u8; 32])
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

struct Harness {
    pki: TestPki,
    hub: EdgeHub,
    workload: Workload,
    records: Option<mpsc::Sender<Record>>,
    deliveries: mpsc::Receiver<Delivery>,
    events: mpsc::Receiver<Event>,
    config: watch::Receiver<Arc<Config>>,
    control: Option<mpsc::Receiver<Control>>,
    snapshot: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), hub::Error>>>,
}

fn test_options() -> HubOptions {
    HubOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        flush_timeout: Duration::from_secs(3),
        ..HubOptions::default()
    }
}

async fn start(desired: Value, opts: HubOptions) -> Harness {
    let device = EdgeDevice::start(&identity(), |cfg| cfg.initial_desired = desired).await;
    // The environment IoT Edge gives a module, parsed by the production code.
    let vars: HashMap<&str, String> = device.module_env(&identity()).into_iter().collect();
    let mut env = EdgeEnvironment::from_vars(|k| vars.get(k).cloned())
        .expect("valid environment")
        .expect("an IoT Edge environment");
    let EdgeDevice { pki, hub, workload } = device;
    env.port = hub.port();

    let (records_tx, records_rx) = mpsc::channel(4);
    let (deliveries_tx, deliveries_rx) = mpsc::channel(16);
    let (events_tx, events_rx) = mpsc::channel(64);
    let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
    let (control_tx, control_rx) = mpsc::channel(4);
    let snapshot = Arc::new(Notify::new());
    let metrics = Arc::new(Metrics::for_tests());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(hub::run(
        env,
        opts,
        HubChannels {
            records: records_rx,
            deliveries: deliveries_tx,
            events: events_tx,
            config: config_tx,
            control: control_tx,
            snapshot: snapshot.clone(),
        },
        metrics.clone(),
        shutdown.clone(),
    ));
    Harness {
        pki,
        hub,
        workload,
        records: Some(records_tx),
        deliveries: deliveries_rx,
        events: events_rx,
        config: config_rx,
        control: Some(control_rx),
        snapshot,
        metrics,
        shutdown,
        task: Some(task),
    }
}

impl Harness {
    async fn send(&self, id: u64, priority: Priority, body: &[u8]) {
        self.send_to(Output::Events, id, priority, body).await
    }

    async fn send_to(&self, output: Output, id: u64, priority: Priority, body: &[u8]) {
        self.records
            .as_ref()
            .expect("records open")
            .send(Record {
                id,
                priority,
                output,
                body: body.into(),
                events: 1,
            })
            .await
            .expect("hub takes records");
    }

    async fn delivery(&mut self) -> Delivery {
        tokio::time::timeout(T, self.deliveries.recv())
            .await
            .expect("a delivery in time")
            .expect("deliveries open")
    }

    async fn event(&mut self) -> Event {
        tokio::time::timeout(T, self.events.recv())
            .await
            .expect("an event in time")
            .expect("events open")
    }

    async fn reported(&self, pred: impl Fn(&Value) -> bool) -> Value {
        assert!(
            self.hub.wait_until(T, |h| pred(&h.reported())).await,
            "reported properties: {}",
            self.hub.reported()
        );
        self.hub.reported()
    }

    async fn config_until(&mut self, pred: impl Fn(&Config) -> bool) -> Arc<Config> {
        tokio::time::timeout(T, self.config.wait_for(|c| pred(c)))
            .await
            .expect("config in time")
            .expect("config sender alive")
            .clone()
    }

    /// Closes the records channel (the outbox is done) and waits for `run` to return.
    async fn stop(&mut self) {
        self.records = None;
        let task = self.task.take().expect("running");
        tokio::time::timeout(T, task)
            .await
            .expect("hub::run returns after the records close")
            .expect("no panic")
            .expect("no error");
    }

    fn errors(&self, component: &str, error_type: &str) -> f64 {
        self.metrics
            .value(
                "edgeguard_errors_total",
                &[("component", component), ("error_type", error_type)],
            )
            .unwrap_or(0.0)
    }
}

/// Polls `cond` (metrics change without notice) for up to `T`.
async fn wait_for(cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn login_event() -> Event {
    Event::new(Payload::Login(vec![Login {
        process_id: 42,
        user_id: Some("0".into()),
        user_name: Some("root".into()),
        operation: "Login".into(),
        executable: "/usr/sbin/sshd".into(),
        remote_address: Some("10.0.0.9".parse().expect("address")),
        remote_port: Some(50000),
        local_port: Some(22),
        result: LoginResult::Fail,
        extra_details: Default::default(),
    }]))
}

fn security_message(events: &[Event]) -> Vec<u8> {
    let header = MessageHeader::new("9.9.9", uuid::Uuid::new_v4());
    let encoded: Vec<Vec<u8>> = events.iter().map(envelope::encode).collect();
    header.build(encoded.iter().map(Vec::as_slice))
}

#[tokio::test]
async fn connects_like_a_module_and_acks_after_puback() {
    let mut h = start(json!({}), test_options()).await;
    assert!(
        h.hub.wait_connected(T).await,
        "attempts: {:?}",
        h.hub.attempts()
    );
    let attempt = &h.hub.attempts()[0];
    assert!(attempt.accepted(), "{attempt:?}");
    assert_eq!(attempt.client_id, "dev1/edgeguard");
    assert!(!attempt.clean_session);
    assert_eq!(attempt.keep_alive, 240);
    assert_eq!(attempt.sni.as_deref(), Some("localhost"));
    assert_eq!(
        attempt.device_client_type.as_deref(),
        Some(format!("edgeguard/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert!(
        attempt
            .username
            .as_deref()
            .unwrap_or_default()
            .starts_with("testhub.azure-devices.net/dev1/edgeguard/?api-version=")
    );
    // Signed by the workload API, after fetching the trust bundle.
    assert_eq!(h.workload.sign_calls(), 1);
    assert_eq!(h.workload.trust_bundle_calls(), 1);
    assert!(
        h.workload
            .requests()
            .iter()
            .all(|r| r.query.as_deref() == Some("api-version=2022-08-03"))
    );

    // Subscriptions, then the twin GET, then the reported properties.
    assert!(
        h.hub
            .wait_until(T, |hub| hub.subscriptions().len() == 4)
            .await
    );
    let subs = h.hub.subscriptions();
    for filter in [
        "$iothub/twin/res/#",
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
        "devices/dev1/modules/edgeguard/#",
    ] {
        assert!(subs.contains_key(filter), "{subs:?}");
    }
    let reported = h.reported(|r| r.get(CONFIG_OBJECT).is_some()).await;
    assert_eq!(
        reported["edgeguard"]["agentVersion"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(reported[CONFIG_OBJECT]["desiredVersion"], 1);
    assert_eq!(
        reported[CONFIG_OBJECT]["maxMessageSizeInBytes"]["value"],
        204_800
    );

    let body = br#"{"AgentVersion":"0.1.0","Events":[]}"#;
    h.send(1, Priority::High, body).await;
    assert_eq!(h.delivery().await, Delivery::Ack(1));
    h.send(2, Priority::Low, body).await;
    assert_eq!(h.delivery().await, Delivery::Ack(2));
    h.send_to(Output::Alerts, 3, Priority::High, body).await;
    assert_eq!(h.delivery().await, Delivery::Ack(3));
    let telemetry = h.hub.telemetry();
    assert_eq!(telemetry.len(), 3);
    assert_eq!(telemetry[2].props().get("$.on"), Some("alerts"));
    assert_eq!(telemetry[2].props().get("MessagePriority"), Some("High"));
    let t = &telemetry[0];
    assert!(!t.device_topic);
    assert!(
        t.topic
            .starts_with("devices/dev1/modules/edgeguard/messages/events/")
    );
    assert_eq!(t.qos, 1);
    assert_eq!(t.payload, body);
    let props = t.props();
    assert_eq!(props.get("$.on"), Some("securityEvents"));
    assert_eq!(props.get("$.ct"), Some("application/json"));
    assert_eq!(props.get("$.ce"), Some("utf-8"));
    assert_eq!(props.get("MessagePriority"), Some("High"));
    assert_eq!(props.get("$.ifid"), None);
    assert_ne!(props.get("$.mid"), telemetry[1].props().get("$.mid"));
    assert_eq!(telemetry[1].props().get("MessagePriority"), Some("Low"));
    assert!(
        h.hub.protocol_errors().is_empty(),
        "{:?}",
        h.hub.protocol_errors()
    );

    h.stop().await;
    assert!(h.hub.wait_disconnected(T).await);
    assert!(
        h.hub.protocol_errors().is_empty(),
        "{:?}",
        h.hub.protocol_errors()
    );
    let closed = h.hub.closed_connections();
    assert_eq!(
        closed.last().map(|c| c.reason.as_str()),
        Some("client sent DISCONNECT"),
        "{closed:?}"
    );
}

#[tokio::test]
async fn twin_updates_apply_without_restart() {
    let mut h = start(
        json!({CONFIG_OBJECT: {"snapshotFrequency": {"value": "PT1H"}}}),
        test_options(),
    )
    .await;
    let c = h
        .config_until(|c| c.snapshot_frequency == Duration::from_secs(3600))
        .await;
    assert_eq!(c.priority(EventKind::Login), Priority::High);

    // A patch naming one good and one unknown key.
    let v = h
        .hub
        .set_desired_patch(json!({CONFIG_OBJECT: {"eventPriorityLogin": "Off", "bogusKey": 1}}));
    let c = h
        .config_until(|c| c.priority(EventKind::Login) == Priority::Off)
        .await;
    assert_eq!(
        c.snapshot_frequency,
        Duration::from_secs(3600),
        "untouched key kept"
    );
    let e = h.event().await;
    let Payload::ConfigurationError(records) = &e.payload else {
        panic!("expected a ConfigurationError, got {:?}", e.kind());
    };
    assert_eq!(records[0].configuration_name, "bogusKey");
    let reported = h
        .reported(|r| r[CONFIG_OBJECT]["desiredVersion"] == json!(v))
        .await;
    assert_eq!(
        reported[CONFIG_OBJECT]["eventPriorityLogin"]["value"],
        "Off"
    );
    assert_eq!(reported[CONFIG_OBJECT]["rejected"][0]["key"], "bogusKey");
    assert!(
        h.metrics
            .value("edgeguard_config_desired_version", &[])
            .is_some_and(|x| x as u64 == v)
    );

    // A lost patch: the next one shows a gap, and the whole twin is read again.
    let gets_before = h
        .hub
        .twin_requests()
        .iter()
        .filter(|r| r.kind == "GET")
        .count();
    h.hub.set_desired_patch_silently(
        json!({CONFIG_OBJECT: {"lowPriorityMessageFrequency": "PT2H"}}),
    );
    h.hub
        .set_desired_patch(json!({CONFIG_OBJECT: {"highPriorityMessageFrequency": "PT3M"}}));
    let c = h
        .config_until(|c| c.high_priority_message_frequency == Duration::from_secs(180))
        .await;
    assert_eq!(c.low_priority_message_frequency, Duration::from_secs(7200));
    let gets = h
        .hub
        .twin_requests()
        .iter()
        .filter(|r| r.kind == "GET")
        .count();
    assert!(gets > gets_before, "a GET after the gap");
    assert!(
        h.hub.protocol_errors().is_empty(),
        "{:?}",
        h.hub.protocol_errors()
    );
    h.stop().await;
}

#[tokio::test]
async fn failed_twin_gets_are_retried() {
    let mut h = start(
        json!({CONFIG_OBJECT: {"snapshotFrequency": "PT2H"}}),
        test_options(),
    )
    .await;
    // After the first GET, make the next ones fail and force a new GET by dropping the
    // connection.
    h.config_until(|c| c.snapshot_frequency == Duration::from_secs(7200))
        .await;
    h.hub.fail_twin_gets(429, 2);
    h.hub.disconnect_client();
    assert!(
        h.hub
            .wait_until(T, |hub| hub
                .twin_requests()
                .iter()
                .filter(|r| r.kind == "GET" && r.status == Some(200))
                .count()
                >= 2)
            .await
    );
    assert!(wait_for(|| h.errors("hub", "twin_get") >= 2.0).await);
    h.stop().await;
}

#[tokio::test]
async fn direct_methods() {
    let mut h = start(json!({}), test_options()).await;
    let mut control = h.control.take().expect("control");
    tokio::spawn(async move {
        while let Some(Control::Flush(reply)) = control.recv().await {
            if let Some(r) = reply {
                let _ = r.send(());
            }
        }
    });
    let (status, body) = h
        .hub
        .invoke_method("status", json!({}), T)
        .await
        .expect("status answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["state"], "connected");
    assert_eq!(body["agentVersion"], env!("CARGO_PKG_VERSION"));

    let (status, _) = h
        .hub
        .invoke_method("snapshot", Value::Null, T)
        .await
        .expect("snapshot answers");
    assert_eq!(status, 200);
    tokio::time::timeout(T, h.snapshot.notified())
        .await
        .expect("collectors notified");

    let (status, body) = h
        .hub
        .invoke_method("flush", json!({}), T)
        .await
        .expect("flush answers");
    assert_eq!((status, body), (200, json!({"result": "flushed"})));

    let (status, body) = h
        .hub
        .invoke_method("reboot", json!({}), T)
        .await
        .expect("unknown answers");
    assert_eq!(status, 404);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown method")
    );

    let (status, _) = h
        .hub
        .invoke_method("status", json!([1, 2]), T)
        .await
        .expect("bad payload answers");
    assert_eq!(status, 400);
    assert!(!matches!(
        h.hub.invoke_method("status", json!({}), T).await,
        Err(MethodError::Timeout | MethodError::NotSubscribed)
    ));
    h.stop().await;
}

#[tokio::test]
async fn flush_without_a_pipeline_answer_times_out_in_time() {
    let mut h = start(json!({}), test_options()).await;
    // Keep the control receiver but never answer.
    let _control = h.control.take();
    let started = std::time::Instant::now();
    let (status, _) = h
        .hub
        .invoke_method("flush", json!({}), T)
        .await
        .expect("flush answers");
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_secs(10));
    h.stop().await;
}

#[tokio::test]
async fn security_messages_from_other_modules_join_the_pipeline() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    let original = login_event();
    let good = h.hub.send_input(
        "securityMessages",
        &security_message(std::slice::from_ref(&original)),
        &[],
    );
    let e = h.event().await;
    assert_eq!(e.id, original.id);
    assert_eq!(e.payload, original.payload);

    let garbage = h.hub.send_input("securityMessages", b"{not json", &[]);
    let other = h.hub.send_input("telemetryIn", b"hello", &[]);
    assert!(
        h.hub
            .wait_until(T, |hub| {
                let inputs = hub.inputs();
                [good, garbage, other].iter().all(|i| inputs[*i].acked)
            })
            .await,
        "every input is acknowledged: {:?}",
        h.hub.inputs()
    );
    assert!(wait_for(|| h.errors("inputs", "rejected") >= 1.0).await);
    assert!(
        h.events.try_recv().is_err(),
        "nothing from bad or other inputs"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_retries_what_was_in_flight() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.hub.set_withhold_pubacks(true);
    h.send(7, Priority::Low, b"{}").await;
    assert_eq!(h.hub.wait_telemetry(1, T).await.len(), 1);
    h.hub.stop().await;
    assert_eq!(h.delivery().await, Delivery::Retry(7));
    h.hub.set_withhold_pubacks(false);
    h.hub.restart().await;
    // The outbox sends it again; it is acknowledged on the new connection.
    h.send(7, Priority::Low, b"{}").await;
    assert_eq!(h.delivery().await, Delivery::Ack(7));
    assert!(h.hub.accepted_connections() >= 2);
    assert!(wait_for(|| h.errors("hub", "reconnect") >= 1.0).await);
    // Credentials and trust were fetched again for the new connection.
    assert!(h.workload.sign_calls() >= 2);
    assert!(h.workload.trust_bundle_calls() >= 2);
    h.stop().await;
}

#[tokio::test]
async fn records_sent_while_disconnected_go_out_after_reconnect() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.hub.stop().await;
    h.send(1, Priority::High, b"{\"n\":1}").await;
    h.send(2, Priority::High, b"{\"n\":2}").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.hub.restart().await;
    let mut acked = Vec::new();
    while acked.len() < 2 {
        match h.delivery().await {
            Delivery::Ack(id) => acked.push(id),
            Delivery::Retry(id) => {
                // Retried by the outbox in real life; here we resend at once.
                h.send(id, Priority::High, b"{}").await;
            }
        }
    }
    acked.sort();
    assert_eq!(acked, [1, 2]);
    h.stop().await;
}

#[tokio::test]
async fn the_token_is_renewed_before_it_expires() {
    let opts = HubOptions {
        token_lifetime: Duration::from_secs(3),
        ..test_options()
    };
    let mut h = start(json!({}), opts).await;
    assert!(
        h.hub
            .wait_until(Duration::from_secs(20), |hub| hub.accepted_connections()
                >= 3)
            .await,
        "attempts: {:?}",
        h.hub.attempts()
    );
    let attempts = h.hub.attempts();
    let expiries: Vec<u64> = attempts.iter().filter_map(|a| a.token_expiry).collect();
    assert!(expiries.windows(2).all(|w| w[0] <= w[1]));
    assert!(h.workload.sign_calls() >= 3);
    // Still delivering.
    h.send(1, Priority::Low, b"{}").await;
    assert_eq!(h.delivery().await, Delivery::Ack(1));
    h.stop().await;
}

#[tokio::test]
async fn a_rotated_edge_ca_is_picked_up_on_reconnect() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    let rotated = TestPki::new(GATEWAY_HOST);
    h.hub.set_tls_config(rotated.server_config());
    h.workload.set_trust_bundle(&rotated.ca_pem);
    h.hub.disconnect_client();
    assert!(
        h.hub
            .wait_until(T, |hub| hub.accepted_connections() >= 2)
            .await,
        "tls failures: {:?}",
        h.hub.tls_failures()
    );
    h.send(1, Priority::Low, b"{}").await;
    assert_eq!(h.delivery().await, Delivery::Ack(1));
    let _ = &h.pki;
    h.stop().await;
}

#[tokio::test]
async fn an_untrusted_server_is_refused_and_retried() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    let other = TestPki::new(GATEWAY_HOST);
    h.hub.set_tls_config(other.server_config());
    h.hub.disconnect_client();
    assert!(
        h.hub
            .wait_until(T, |hub| hub.tls_failures().len() >= 2)
            .await
    );
    assert_eq!(h.hub.accepted_connections(), 1);
    // Once the bundle has the new CA, the next attempt succeeds.
    h.workload.set_trust_bundle(&other.ca_pem);
    assert!(
        h.hub
            .wait_until(T, |hub| hub.accepted_connections() >= 2)
            .await
    );
    assert!(wait_for(|| h.errors("hub", "tls") >= 1.0).await);
    h.stop().await;
}

#[tokio::test]
async fn workload_api_failures_are_retried() {
    let mut h = start(json!({}), test_options()).await;
    // The first connection may be up already; fail the next calls and force a reconnect.
    assert!(h.hub.wait_connected(T).await);
    h.workload.fail_next(500, 3);
    h.hub.disconnect_client();
    assert!(
        h.hub
            .wait_until(T, |hub| hub.accepted_connections() >= 2)
            .await
    );
    assert!(wait_for(|| h.errors("hub", "workload_api") >= 1.0).await);
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_the_link_status_says_why() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.workload.set_module_key(&B64.encode([9u8; 32]));
    h.hub.disconnect_client();
    let attempts = h
        .hub
        .wait_until(T, |hub| {
            hub.attempts().iter().any(|a| a.return_code() == Some(5))
        })
        .await;
    assert!(attempts, "{:?}", h.hub.attempts());
    assert!(wait_for(|| h.errors("hub", "connection_refused") >= 1.0).await);
    h.workload.set_module_key(&module_key());
    assert!(
        h.hub
            .wait_until(T, |hub| hub.accepted_connections() >= 2)
            .await
    );
    let (status, body) = h
        .hub
        .invoke_method("status", Value::Null, T)
        .await
        .expect("status answers");
    assert_eq!(status, 200);
    assert_eq!(body["connection"]["state"], "connected");
    assert!(
        body["connection"]["reconnects"].as_u64().unwrap_or(0) >= 2,
        "{body}"
    );
    let last = body["connection"]["lastError"].as_str().unwrap_or_default();
    assert!(last.contains("NotAuthorized"), "{last}");
    h.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_dropped_not_retried_forever() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.records
        .as_ref()
        .expect("open")
        .send(Record {
            id: 1,
            priority: Priority::Low,
            output: Output::Events,
            body: vec![b'x'; hub::MAX_MESSAGE_BYTES].into(),
            events: 3,
        })
        .await
        .expect("sent");
    assert_eq!(h.delivery().await, Delivery::Ack(1));
    assert_eq!(h.metrics.dropped_total("hub", DropReason::TooLarge), 3);
    // The connection is fine and the next message goes out.
    h.send(2, Priority::Low, b"{}").await;
    assert_eq!(h.delivery().await, Delivery::Ack(2));
    assert!(
        h.hub.closed_connections().is_empty(),
        "{:?}",
        h.hub.closed_connections()
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_stops_events_but_keeps_delivering() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.shutdown.cancel();
    // The hub lets go of the event channel so the pipeline can finish.
    assert!(
        tokio::time::timeout(T, h.events.recv())
            .await
            .expect("events close in time")
            .is_none()
    );
    h.send(1, Priority::Low, b"{}").await;
    assert_eq!(h.delivery().await, Delivery::Ack(1));
    h.stop().await;
    assert!(h.hub.wait_disconnected(T).await);
}

#[tokio::test]
async fn stops_promptly_when_the_hub_is_unreachable() {
    let mut h = start(json!({}), test_options()).await;
    assert!(h.hub.wait_connected(T).await);
    h.hub.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
