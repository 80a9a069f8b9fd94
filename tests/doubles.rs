//! Self-tests of the edgeHub and workload API doubles, driven by a plain rumqttc client and a
//! raw HTTP/1.1 client: they check the doubles refuse what edgeHub refuses and answer what
//! edgeHub answers, independently of the production client in `src/hub/`.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::certs::{GATEWAY_HOST, TestPki};
use support::edgehub::{ConnectOutcome, EdgeHub, EdgeHubConfig, MethodError, parse_property_bag};
use support::workload::{Workload, WorkloadConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const HUB: &str = "testhub.azure-devices.net";
const DEVICE: &str = "dev1";
const MODULE: &str = "edgeguard";
const T: Duration = Duration::from_secs(10);

fn module_key() -> String {
    B64.encode([7u8; 32])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn audience() -> String {
    format!("{HUB}/devices/{DEVICE}/modules/{MODULE}")
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// base64 HMAC-SHA256 of `sr\nse` with a base64 key (test-local, not the production code).
fn signature(key_b64: &str, sr: &str, se: u64) -> String {
    let key = B64.decode(key_b64).expect("test key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{sr}\n{se}").as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// A module SAS token for `aud`, expiring at `se`.
fn sas(key_b64: &str, aud: &str, se: u64) -> String {
    let sr = encode(aud);
    let sig = signature(key_b64, &sr, se);
    format!("SharedAccessSignature sr={sr}&sig={}&se={se}", encode(&sig))
}

fn username() -> String {
    format!("{HUB}/{DEVICE}/{MODULE}/?api-version=2021-04-12&DeviceClientType=edgeguard%2F0.1.0")
}

fn good_token() -> String {
    sas(&module_key(), &audience(), now() + 3600)
}

fn pki() -> TestPki {
    TestPki::new(GATEWAY_HOST)
}

async fn hub(pki: &TestPki) -> EdgeHub {
    EdgeHub::start(EdgeHubConfig::new(
        HUB,
        DEVICE,
        MODULE,
        &module_key(),
        pki.server_config(),
    ))
    .await
}

/// A rumqttc client whose event loop runs on a task and forwards events (errors as text).
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Opts {
    client_id: String,
    username: String,
    password: String,
    clean_session: bool,
    manual_acks: bool,
    keep_alive: u64,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            client_id: format!("{DEVICE}/{MODULE}"),
            username: username(),
            password: good_token(),
            clean_session: false,
            manual_acks: false,
            keep_alive: 60,
        }
    }
}

/// Connects to the hub as "localhost" (in the certificate, and resolvable), trusting `pki`.
/// `reconnect`: keep polling after errors (rumqttc reconnects on the next poll).
fn client(hub: &EdgeHub, pki: &TestPki, o: Opts, reconnect: bool) -> Client {
    let mut opts = MqttOptions::new(o.client_id, "localhost", hub.port());
    opts.set_credentials(o.username, o.password);
    opts.set_clean_session(o.clean_session);
    opts.set_manual_acks(o.manual_acks);
    opts.set_keep_alive(Duration::from_secs(o.keep_alive));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(pki.client_config()),
    )));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if tx.send(Err(e.to_string())).is_err() || !reconnect {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Client {
        client,
        events,
        task,
    }
}

impl Client {
    /// The next event matching `pred` (earlier ones are skipped), or panics after `T`.
    async fn expect(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(ev))) if pred(&ev) => return ev,
                Ok(Some(_)) => {}
                Ok(None) => panic!("event loop ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// The next error from the event loop.
    async fn expect_error(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(_))) => {}
                Ok(None) => panic!("event loop ended without an error"),
                Err(_) => panic!("timed out waiting for an error"),
            }
        }
    }

    async fn connack(&mut self) -> bool {
        match self
            .expect("CONNACK", |e| {
                matches!(e, Event::Incoming(Packet::ConnAck(_)))
            })
            .await
        {
            Event::Incoming(Packet::ConnAck(ack)) => {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                ack.session_present
            }
            _ => unreachable!(),
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        self.expect("SUBACK", |e| {
            matches!(e, Event::Incoming(Packet::SubAck(_)))
        })
        .await;
    }

    async fn publish(&self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, false, payload)
            .await
            .expect("queue PUBLISH");
    }

    /// The next incoming PUBLISH whose topic starts with `prefix`.
    async fn incoming(&mut self, prefix: &str) -> rumqttc::Publish {
        match self
            .expect(
                prefix,
                |e| matches!(e, Event::Incoming(Packet::Publish(p)) if p.topic.starts_with(prefix)),
            )
            .await
        {
            Event::Incoming(Packet::Publish(p)) => p,
            _ => unreachable!(),
        }
    }

    /// Waits `d` and fails if an event matching `pred` arrives meanwhile.
    async fn expect_none(&mut self, d: Duration, mut pred: impl FnMut(&Event) -> bool) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let Ok(ev) = ev {
                assert!(!pred(&ev), "unexpected event {ev:?}");
            }
        }
    }
}

/// Connects with `o` and returns the CONNACK return code (or the error text).
async fn connect_code(hub: &EdgeHub, pki: &TestPki, o: Opts) -> Result<(), String> {
    let mut c = client(hub, pki, o, false);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(deadline, c.events.recv()).await {
            Ok(Some(Ok(Event::Incoming(Packet::ConnAck(_))))) => return Ok(()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Err("event loop ended".into()),
            Err(_) => panic!("no CONNACK nor error"),
        }
    }
}

fn last_refusal(hub: &EdgeHub) -> (Option<u8>, String) {
    let a = hub.attempts().pop().expect("an attempt was recorded");
    (a.return_code(), a.reason().to_string())
}

fn refused_not_authorized(r: &Result<(), String>) -> bool {
    matches!(r, Err(e) if e.contains("NotAuthorized"))
}

#[tokio::test]
async fn correct_token_connects_and_session_persists() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(&hub, &pki, Opts::default(), true);
    assert!(!c.connack().await, "first connection has no session");
    assert!(hub.wait_connected(T).await);
    let a = &hub.attempts()[0];
    assert!(a.accepted());
    assert_eq!(a.client_id, format!("{DEVICE}/{MODULE}"));
    assert!(!a.clean_session);
    assert_eq!(a.keep_alive, 60);
    assert_eq!(a.protocol_level, Some(4));
    assert_eq!(a.sni.as_deref(), Some("localhost"));
    assert_eq!(a.device_client_type.as_deref(), Some("edgeguard/0.1.0"));
    assert!(a.token_expiry.is_some_and(|se| se > now()));

    c.subscribe("$iothub/methods/POST/#").await;
    hub.disconnect_client();
    c.expect_error().await;
    assert!(
        c.connack().await,
        "persistent session is present on reconnect"
    );
    assert!(hub.wait_connected(T).await);
    assert!(hub.subscriptions().contains_key("$iothub/methods/POST/#"));
    assert_eq!(hub.accepted_connections(), 2);
    assert!(
        hub.protocol_errors().is_empty(),
        "{:?}",
        hub.protocol_errors()
    );
}

#[tokio::test]
async fn clean_session_starts_without_subscriptions() {
    let pki = pki();
    let hub = hub(&pki).await;
    let o = || Opts {
        clean_session: true,
        ..Opts::default()
    };
    let mut c = client(&hub, &pki, o(), false);
    assert!(!c.connack().await);
    c.subscribe("$iothub/twin/res/#").await;
    drop(c);
    assert!(hub.wait_disconnected(T).await);
    assert!(hub.subscriptions().is_empty());
    let mut c = client(&hub, &pki, o(), false);
    assert!(!c.connack().await);
    assert!(hub.attempts()[1].clean_session);
}

#[tokio::test]
async fn bad_credentials_are_refused() {
    let pki = pki();
    let hub = hub(&pki).await;

    // Wrong key.
    let other_key = B64.encode([9u8; 32]);
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: sas(&other_key, &audience(), now() + 3600),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    let (code, reason) = last_refusal(&hub);
    assert_eq!(code, Some(5));
    assert!(reason.contains("signature"), "{reason}");

    // Client id not `{device}/{module}`.
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            client_id: format!("{DEVICE}/other"),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    assert!(last_refusal(&hub).1.contains("client id"));

    // Expired beyond the 5 min skew.
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: sas(&module_key(), &audience(), now() - 400),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    assert!(last_refusal(&hub).1.contains("expired"));

    // Expired but within the skew: accepted, like edgeHub.
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: sas(&module_key(), &audience(), now() - 100),
            ..Opts::default()
        },
    )
    .await;
    assert!(r.is_ok(), "{r:?}");

    // Audience of another module (correctly signed over that audience).
    let wrong_aud = format!("{HUB}/devices/{DEVICE}/modules/other");
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: sas(&module_key(), &wrong_aud, now() + 3600),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    assert!(last_refusal(&hub).1.contains("audience"));

    // Audience host in another case: edgeHub compares host names ordinally.
    let upper_aud = format!("{}/devices/{DEVICE}/modules/{MODULE}", HUB.to_uppercase());
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: sas(&module_key(), &upper_aud, now() + 3600),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");

    // User name without api-version: the parser throws, edgeHub answers "server unavailable".
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            username: format!("{HUB}/{DEVICE}/{MODULE}/?DeviceClientType=x"),
            ..Opts::default()
        },
    )
    .await;
    assert!(
        matches!(&r, Err(e) if e.contains("ServiceUnavailable")),
        "{r:?}"
    );
    assert_eq!(last_refusal(&hub).0, Some(3));

    // No password.
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: String::new(),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");

    // Not a SharedAccessSignature.
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: "hunter2".into(),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    assert!(last_refusal(&hub).1.contains("parse"));

    // Field order and an skn field do not matter.
    let se = now() + 3600;
    let sr = encode(&audience());
    let sig = encode(&signature(&module_key(), &sr, se));
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: format!("SharedAccessSignature se={se}&skn=&sig={sig}&sr={sr}"),
            ..Opts::default()
        },
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!hub.attempts().iter().any(|a| a.return_code() == Some(4)));
}

#[tokio::test]
async fn signature_must_be_url_encoded() {
    let pki = pki();
    let hub = hub(&pki).await;
    let sr = encode(&audience());
    // Find an expiry whose signature has a '+' (edgeHub decodes a raw '+' to a space).
    let (se, sig) = (now() + 3600..now() + 5000)
        .map(|se| (se, signature(&module_key(), &sr, se)))
        .find(|(_, sig)| sig.contains('+'))
        .expect("some signature contains '+'");
    let raw = format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}");
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: raw,
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
    assert!(last_refusal(&hub).1.contains("signature"));

    // The same signature, percent-encoded, is accepted.
    let encoded = format!("SharedAccessSignature sr={sr}&sig={}&se={se}", encode(&sig));
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: encoded,
            ..Opts::default()
        },
    )
    .await;
    assert!(r.is_ok(), "{r:?}");

    // sr must be signed exactly as sent: signing the decoded audience fails.
    let sig = encode(&signature(&module_key(), &audience(), se));
    let r = connect_code(
        &hub,
        &pki,
        Opts {
            password: format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}"),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused_not_authorized(&r), "{r:?}");
}

#[tokio::test]
async fn certificate_from_another_ca_or_host_is_refused() {
    let pki = pki();
    let other = TestPki::new(GATEWAY_HOST);
    let hub = EdgeHub::start(EdgeHubConfig::new(
        HUB,
        DEVICE,
        MODULE,
        &module_key(),
        other.server_config(),
    ))
    .await;
    let r = connect_code(&hub, &pki, Opts::default()).await;
    assert!(
        matches!(&r, Err(e) if e.to_lowercase().contains("tls") || e.contains("certificate")),
        "{r:?}"
    );
    assert!(hub.attempts().is_empty());
    assert!(hub.wait_until(T, |h| !h.tls_failures().is_empty()).await);

    // Right CA, wrong host name.
    let wrong = pki.issue_server("other.test", &["other.test"], false);
    hub.set_tls_config(wrong.server_config());
    let r = connect_code(&hub, &pki, Opts::default()).await;
    assert!(r.is_err(), "{r:?}");

    // Right CA, expired certificate.
    let expired = pki.issue_server(GATEWAY_HOST, &[GATEWAY_HOST, "localhost"], true);
    hub.set_tls_config(expired.server_config());
    assert!(connect_code(&hub, &pki, Opts::default()).await.is_err());

    // TLS 1.2 only still works with a default client.
    hub.set_tls_config(pki.server.server_config_tls12_only());
    assert!(connect_code(&hub, &pki, Opts::default()).await.is_ok());
    let a = hub.attempts().pop().expect("attempt");
    assert_eq!(a.tls_version.as_deref(), Some("TLSv1_2"));
}

#[tokio::test]
async fn telemetry_is_recorded_with_its_property_bag() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    let topic = format!(
        "devices/{DEVICE}/modules/{MODULE}/messages/events/%24.on=securityEvents&%24.ct=application%2Fjson&%24.ce=utf-8&note=a%20b%2Bc&flag"
    );
    c.publish(&topic, QoS::AtLeastOnce, br#"{"x":1}"#.to_vec())
        .await;
    c.expect("PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    let t = hub.wait_telemetry(1, T).await.remove(0);
    assert_eq!(t.topic, topic);
    assert_eq!(t.payload, br#"{"x":1}"#);
    assert_eq!(t.qos, 1);
    assert!(t.puback_sent && !t.device_topic);
    let bag = t.props();
    assert_eq!(bag.get("$.on"), Some("securityEvents"));
    assert_eq!(bag.get("$.ct"), Some("application/json"));
    assert_eq!(bag.get("$.ce"), Some("utf-8"));
    assert_eq!(bag.get("note"), Some("a b+c"));
    assert_eq!(bag.get("flag"), Some(""));

    // Device topic: accepted, but a protocol error (breaks module routes).
    c.publish(
        &format!("devices/{DEVICE}/messages/events/"),
        QoS::AtLeastOnce,
        b"x".to_vec(),
    )
    .await;
    c.expect("PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    assert!(hub.telemetry()[1].device_topic);
    assert!(
        hub.protocol_errors()
            .iter()
            .any(|e| e.contains("device topic"))
    );

    // A raw '=' in a value: malformed bag, recorded, connection closed.
    c.publish(
        &format!("devices/{DEVICE}/modules/{MODULE}/messages/events/a=b=c"),
        QoS::AtLeastOnce,
        b"x".to_vec(),
    )
    .await;
    c.expect_error().await;
    let t = hub.wait_telemetry(3, T).await.remove(2);
    assert!(t.properties.is_err());
    assert!(!t.puback_sent);
    assert!(
        hub.wait_until(T, |h| !h.closed_connections().is_empty())
            .await
    );
    assert!(hub.closed_connections()[0].reason.contains("property bag"));
}

#[test]
fn property_bag_rules() {
    let bag = parse_property_bag("a=1&%24.cid=x%2Fy&k").expect("valid");
    assert_eq!(bag.get("a"), Some("1"));
    assert_eq!(bag.get("$.cid"), Some("x/y"));
    assert_eq!(bag.get("k"), Some(""));
    assert!(parse_property_bag("").expect("empty").pairs.is_empty());
    let bag = parse_property_bag("a=1/rest").expect("slash ends the bag");
    assert_eq!(bag.ignored_tail, "rest");
    for bad in ["a=b=c", "&a=1", "=1", "a=1&", "a=1&&b=2"] {
        assert!(parse_property_bag(bad).is_err(), "{bad}");
    }
    // Never panics on arbitrary text.
    for s in ["%", "%zz=%", "ü=ä&ö", "a=%E2%82", "/"] {
        let _ = parse_property_bag(s);
    }
}

#[tokio::test]
async fn qos2_and_oversize_publishes_close_the_connection() {
    let pki = pki();
    let hub = hub(&pki).await;
    let topic = format!("devices/{DEVICE}/modules/{MODULE}/messages/events/");

    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    c.publish(&topic, QoS::ExactlyOnce, b"x".to_vec()).await;
    c.expect_error().await;
    assert!(
        hub.wait_until(T, |h| h.closed_connections().len() == 1)
            .await
    );
    assert!(hub.closed_connections()[0].reason.contains("QoS 2"));

    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    c.publish(&topic, QoS::AtLeastOnce, vec![b'a'; 200_000])
        .await;
    c.expect("PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    c.publish(&topic, QoS::AtLeastOnce, vec![b'a'; 262_144])
        .await;
    c.expect_error().await;
    assert!(
        hub.wait_until(T, |h| h.closed_connections().len() == 2)
            .await
    );
    assert!(hub.closed_connections()[1].reason.contains("too large"));
    assert_eq!(hub.telemetry().len(), 1);
}

#[tokio::test]
async fn withheld_pubacks_are_released_on_demand() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    hub.set_withhold_pubacks(true);
    let topic = format!("devices/{DEVICE}/modules/{MODULE}/messages/events/");
    c.publish(&topic, QoS::AtLeastOnce, b"1".to_vec()).await;
    c.expect_none(Duration::from_millis(500), |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    let t = hub.wait_telemetry(1, T).await;
    assert!(!t[0].puback_sent);
    hub.release_withheld_pubacks();
    c.expect("PUBACK", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_)))
    })
    .await;
    assert!(hub.telemetry()[0].puback_sent);
}

#[tokio::test]
async fn twin_get_and_reported_patch_round_trip() {
    let pki = pki();
    let mut cfg = EdgeHubConfig::new(HUB, DEVICE, MODULE, &module_key(), pki.server_config());
    cfg.initial_desired = json!({ "interval": 10 });
    let hub = EdgeHub::start(cfg).await;
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;

    // GET before subscribing: no answer, protocol error.
    c.publish("$iothub/twin/GET/?$rid=0", QoS::AtMostOnce, Vec::new())
        .await;
    assert!(
        hub.wait_until(T, |h| h.twin_requests().len() == 1).await,
        "GET recorded"
    );
    assert!(hub.twin_requests()[0].status.is_none());
    assert!(hub.protocol_errors().iter().any(|e| e.contains("twin/res")));

    c.subscribe("$iothub/twin/res/#").await;
    c.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, Vec::new())
        .await;
    let res = c.incoming("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/200/?$rid=1");
    let doc: Value = serde_json::from_slice(&res.payload).expect("twin JSON");
    assert_eq!(doc["desired"]["interval"], 10);
    assert_eq!(doc["desired"]["$version"], 1);
    assert!(doc["reported"].is_object());

    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QoS::AtMostOnce,
        json!({ "a": 1, "b": { "c": 2 } }).to_string(),
    )
    .await;
    let res = c.incoming("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/204/?$rid=2");
    assert_eq!(hub.reported()["b"]["c"], 2);

    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3",
        QoS::AtLeastOnce,
        json!({ "b": null }).to_string(),
    )
    .await;
    let res = c.incoming("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/204/?$rid=3");
    assert!(hub.reported().get("b").is_none());
    assert_eq!(hub.reported()["a"], 1);

    // Invalid property name → 400.
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=4",
        QoS::AtMostOnce,
        json!({ "bad.name": 1 }).to_string(),
    )
    .await;
    let res = c.incoming("$iothub/twin/res/").await;
    assert_eq!(res.topic, "$iothub/twin/res/400/?$rid=4");

    // Throttled GET.
    hub.fail_twin_gets(429, 1);
    c.publish("$iothub/twin/GET/?$rid=5", QoS::AtMostOnce, Vec::new())
        .await;
    assert_eq!(
        c.incoming("$iothub/twin/res/").await.topic,
        "$iothub/twin/res/429/?$rid=5"
    );
}

#[tokio::test]
async fn desired_patches_reach_a_subscribed_client() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    assert_eq!(hub.set_desired_patch(json!({ "lost": true })), 2);
    c.subscribe("$iothub/twin/PATCH/properties/desired/#").await;
    assert_eq!(hub.set_desired_patch(json!({ "interval": 30 })), 3);
    let p = c.incoming("$iothub/twin/PATCH/properties/desired/").await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=3");
    let body: Value = serde_json::from_slice(&p.payload).expect("patch JSON");
    assert_eq!(body, json!({ "interval": 30, "$version": 3 }));
    assert_eq!(hub.skip_desired_version(), 4);
    hub.set_desired_patch(json!({ "interval": null }));
    let p = c.incoming("$iothub/twin/PATCH/properties/desired/").await;
    assert_eq!(p.topic, "$iothub/twin/PATCH/properties/desired/?$version=5");
    assert_eq!(hub.desired(), json!({ "lost": true, "$version": 5 }));
}

#[tokio::test]
async fn method_invocation_round_trip() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
    let r = hub
        .invoke_method("ping", json!({}), Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(MethodError::NotSubscribed)), "{r:?}");

    c.subscribe("$iothub/methods/POST/#").await;
    let h = hub.clone();
    let call = tokio::spawn(async move { h.invoke_method("ping", json!({ "a": 1 }), T).await });
    let req = c.incoming("$iothub/methods/POST/").await;
    let (name_part, rid) = req.topic.split_once("/?$rid=").expect("rid in topic");
    assert_eq!(name_part, "$iothub/methods/POST/ping");
    assert_eq!(
        serde_json::from_slice::<Value>(&req.payload).expect("JSON"),
        json!({ "a": 1 })
    );
    c.publish(
        &format!("$iothub/methods/res/200/?$rid={rid}"),
        QoS::AtMostOnce,
        json!({ "ok": true }).to_string(),
    )
    .await;
    let (status, body) = call.await.expect("task").expect("method answered");
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "ok": true }));

    // No answer → timeout.
    let r = hub
        .invoke_method("slow", json!(null), Duration::from_millis(300))
        .await;
    assert!(matches!(r, Err(MethodError::Timeout)), "{r:?}");
}

#[tokio::test]
async fn inputs_are_delivered_and_redelivered_until_acked() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut c = client(
        &hub,
        &pki,
        Opts {
            manual_acks: true,
            ..Opts::default()
        },
        true,
    );
    c.connack().await;
    c.subscribe(&format!("devices/{DEVICE}/modules/{MODULE}/#"))
        .await;
    let i = hub.send_input("in1", b"hello", &[("k", "v w")]);
    let prefix = format!("devices/{DEVICE}/modules/{MODULE}/inputs/in1/");
    let p = c.incoming(&prefix).await;
    assert_eq!(&p.payload[..], b"hello");
    assert!(!p.dup);
    let bag = parse_property_bag(&p.topic[prefix.len()..]).expect("bag");
    assert_eq!(bag.get("$.cdid"), Some(DEVICE));
    assert_eq!(bag.get("$.cmid"), Some("sender"));
    assert_eq!(bag.get("k"), Some("v w"));
    assert!(!hub.inputs()[i].acked);

    // Not acknowledged: redelivered after a reconnect with the persistent session.
    hub.disconnect_client();
    c.expect_error().await;
    assert!(c.connack().await);
    let p = c.incoming(&prefix).await;
    assert!(p.dup);
    c.client.ack(&p).await.expect("queue PUBACK");
    assert!(hub.wait_until(T, |h| h.inputs()[i].acked).await);
    assert_eq!(hub.inputs()[i].deliveries, 2);
}

#[tokio::test]
async fn stop_and_restart_on_the_same_port() {
    let pki = pki();
    let hub = hub(&pki).await;
    let port = hub.port();
    let mut c = client(&hub, &pki, Opts::default(), true);
    c.connack().await;
    hub.stop().await;
    assert!(!hub.is_connected());
    c.expect_error().await;
    // While stopped, connections are refused.
    assert!(tokio::net::TcpStream::connect(hub.addr()).await.is_err());
    hub.restart().await;
    assert_eq!(hub.port(), port);
    assert!(c.connack().await, "session survives the outage");
    assert!(hub.wait_connected(T).await);
    assert_eq!(hub.accepted_connections(), 2);
}

#[tokio::test]
async fn new_connection_replaces_the_old_one() {
    let pki = pki();
    let hub = hub(&pki).await;
    let mut a = client(&hub, &pki, Opts::default(), false);
    a.connack().await;
    let mut b = client(&hub, &pki, Opts::default(), false);
    b.connack().await;
    a.expect_error().await;
    assert!(
        hub.wait_until(T, |h| h.closed_connections().len() == 1)
            .await
    );
    assert!(hub.closed_connections()[0].reason.contains("replaced"));
    assert!(hub.is_connected());
}

#[tokio::test]
async fn token_expiry_and_keep_alive_drop_the_connection() {
    let pki = pki();
    let mut cfg = EdgeHubConfig::new(HUB, DEVICE, MODULE, &module_key(), pki.server_config());
    cfg.clock_skew = Duration::ZERO;
    let hub = EdgeHub::start(cfg).await;
    let mut c = client(
        &hub,
        &pki,
        Opts {
            password: sas(&module_key(), &audience(), now() + 2),
            ..Opts::default()
        },
        false,
    );
    c.connack().await;
    c.expect_error().await;
    assert!(hub.closed_connections()[0].reason.contains("expired"));

    // Keep-alive 1 s and a silent client (raw TLS, no PINGREQ): closed after ~1.5 s.
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(&connect_frame(1, &good_token()))
        .await
        .expect("send CONNECT");
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.expect("CONNACK");
    assert_eq!(ack, [0x20, 0x02, 0x01, 0x00], "accepted, session present");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;
    assert!(
        hub.wait_until(T, |h| h.closed_connections().len() == 2)
            .await
    );
    assert!(hub.closed_connections()[1].reason.contains("keep-alive"));
}

async fn raw_tls(
    hub: &EdgeHub,
    pki: &TestPki,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(hub.addr())
        .await
        .expect("TCP connect");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config()));
    let name = rustls::pki_types::ServerName::try_from(GATEWAY_HOST).expect("valid name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// A CONNECT for the test identity, encoded by rumqttc.
fn connect_frame(keep_alive: u16, password: &str) -> Vec<u8> {
    let mut c = rumqttc::Connect::new(format!("{DEVICE}/{MODULE}"));
    c.keep_alive = keep_alive;
    c.clean_session = false;
    c.set_login(username(), password);
    let mut buf = tokio_util::bytes::BytesMut::new();
    c.write(&mut buf).expect("encode CONNECT");
    buf.to_vec()
}

#[tokio::test]
async fn malformed_input_is_recorded_and_never_crashes() {
    let pki = pki();
    let hub = hub(&pki).await;

    // Garbage first byte.
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("send");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;

    // A PINGREQ before CONNECT.
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(&[0xC0, 0x00]).await.expect("send");
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;

    // MQTT 5 CONNECT: CONNACK 1 then close.
    let mut frame = connect_frame(60, &good_token());
    let level = frame
        .windows(4)
        .position(|w| w == b"MQTT")
        .expect("protocol name")
        + 4;
    frame[level] = 5;
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(&frame).await.expect("send");
    let mut ack = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut ack)).await;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x01]);

    // Truncated CONNECT then EOF.
    let frame = connect_frame(60, &good_token());
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(&frame[..frame.len() / 2]).await.expect("send");
    s.shutdown().await.expect("close");

    // A huge declared length.
    let mut s = raw_tls(&hub, &pki).await;
    s.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F])
        .await
        .expect("send");
    let _ = tokio::time::timeout(T, s.read_to_end(&mut rest)).await;

    assert!(
        hub.wait_until(T, |h| h.closed_connections().len() == 5)
            .await
    );
    let attempts = hub.attempts();
    assert!(
        attempts
            .iter()
            .any(|a| matches!(&a.outcome, ConnectOutcome::Closed { reason } if reason.contains("first packet")))
    );
    assert!(attempts.iter().any(|a| a.return_code() == Some(1)));

    // Still serving.
    let mut c = client(&hub, &pki, Opts::default(), false);
    c.connack().await;
}

// ---------------------------------------------------------------------------------------------
// Workload API.

const GEN: &str = "638000000000000000";

async fn workload(module: &str, bundle: &str) -> Workload {
    Workload::start(WorkloadConfig {
        module_id: module.into(),
        generation_id: GEN.into(),
        module_key: module_key(),
        trust_bundle: bundle.into(),
    })
    .await
}

/// A minimal HTTP/1.1 client over the unix socket (hyper's client feature is not enabled).
async fn http(
    socket: &Path,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the workload socket");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    s.write_all(body).await.expect("write body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.expect("read response");
    let text = String::from_utf8(resp).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn sign_body(data: &[u8]) -> Vec<u8> {
    json!({ "keyId": "primary", "algo": "HMACSHA256", "data": B64.encode(data) })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn workload_sign_and_trust_bundle() {
    let pki = pki();
    let w = workload(MODULE, &pki.ca_pem).await;
    let sock = w.socket_path().to_path_buf();
    assert!(w.uri().starts_with("unix:///"));
    let sign_path = format!("/modules/{MODULE}/genid/{GEN}/sign?api-version=2019-01-30");
    let sr = encode(&audience());
    let data = format!("{sr}\n{}", now() + 3600);

    let (status, body) = http(
        &sock,
        "POST",
        &sign_path,
        Some("application/json"),
        &sign_body(data.as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).expect("key");
    mac.update(data.as_bytes());
    assert_eq!(body["digest"], B64.encode(mac.finalize().into_bytes()));
    assert_eq!(w.sign_calls(), 1);

    // No Content-Type is read as JSON too.
    let (status, _) = http(&sock, "POST", &sign_path, None, &sign_body(b"x")).await;
    assert_eq!(status, 200);

    let (status, body) = http(
        &sock,
        "GET",
        "/trust-bundle?api-version=2019-01-30",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["certificate"], pki.ca_pem.as_str());
    assert_eq!(w.trust_bundle_calls(), 1);

    // CA rotation.
    let rotated = TestPki::new(GATEWAY_HOST);
    w.set_trust_bundle(&rotated.ca_pem);
    let (_, body) = http(
        &sock,
        "GET",
        "/trust-bundle?api-version=2022-08-03",
        None,
        b"",
    )
    .await;
    assert_eq!(body["certificate"], rotated.ca_pem.as_str());
    assert_eq!(w.trust_bundle_calls(), 2);
}

/// (target, method, content type, body, expected status).
type Case<'a> = (String, &'a str, Option<&'a str>, Vec<u8>, u16);

#[tokio::test]
async fn workload_errors() {
    let w = workload("my$mod", "pem").await;
    let sock = w.socket_path().to_path_buf();
    let ok = |s: &str| format!("/modules/my%24mod/genid/{GEN}/sign?api-version=2019-01-30{s}");
    let json_ct = Some("application/json");

    // Percent-encoded module id.
    assert_eq!(
        http(&sock, "POST", &ok(""), json_ct, &sign_body(b"x"))
            .await
            .0,
        200
    );

    let cases: Vec<Case> = vec![
        (
            format!("/modules/my%24mod/genid/{GEN}/sign"),
            "POST",
            json_ct,
            sign_body(b"x"),
            400,
        ),
        ("/trust-bundle".into(), "GET", None, vec![], 400),
        (
            "/trust-bundle?api-version=2099-01-01".into(),
            "GET",
            None,
            vec![],
            400,
        ),
        (
            format!("/modules/other/genid/{GEN}/sign?api-version=2019-01-30"),
            "POST",
            json_ct,
            sign_body(b"x"),
            403,
        ),
        (
            "/modules/my%24mod/genid/1/sign?api-version=2019-01-30".into(),
            "POST",
            json_ct,
            sign_body(b"x"),
            404,
        ),
        (
            "/nope?api-version=2019-01-30".into(),
            "GET",
            None,
            vec![],
            404,
        ),
        (ok(""), "GET", None, vec![], 400),
        (ok(""), "POST", Some("text/plain"), sign_body(b"x"), 400),
        (ok(""), "POST", json_ct, vec![], 400),
        (ok(""), "POST", json_ct, b"{not json".to_vec(), 422),
        (
            ok(""),
            "POST",
            json_ct,
            br#"{"keyId":"primary","algo":"HMACSHA256"}"#.to_vec(),
            422,
        ),
        (
            ok(""),
            "POST",
            json_ct,
            br#"{"keyId":"secondary","algo":"HMACSHA256","data":"eA=="}"#.to_vec(),
            400,
        ),
        (
            ok(""),
            "POST",
            json_ct,
            br#"{"keyId":"primary","algo":"SHA1","data":"eA=="}"#.to_vec(),
            400,
        ),
        (
            ok(""),
            "POST",
            json_ct,
            br#"{"keyId":"primary","algo":"HMACSHA256","data":"!!"}"#.to_vec(),
            400,
        ),
    ];
    for (target, method, ct, body, want) in cases {
        let (status, value) = http(&sock, method, &target, ct, &body).await;
        assert_eq!(status, want, "{method} {target}: {value}");
        assert!(value["message"].is_string(), "{method} {target}: {value}");
    }
    assert_eq!(w.sign_calls(), 1);

    w.fail_next(500, 1);
    assert_eq!(
        http(&sock, "POST", &ok(""), json_ct, &sign_body(b"x"))
            .await
            .0,
        500
    );
    assert_eq!(
        http(&sock, "POST", &ok(""), json_ct, &sign_body(b"x"))
            .await
            .0,
        200
    );
    assert_eq!(w.requests().last().map(|r| r.status), Some(200));
}
