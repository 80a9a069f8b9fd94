//! A double of edgeHub's MQTT head: MQTT 3.1.1 over TLS on 127.0.0.1 (ephemeral port).
//!
//! It checks what the real edgeHub checks, traced to its sources (Azure/iotedge
//! `edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Mqtt`, the protocol gateway's
//! `MqttAdapter`, DotNetty's `MqttDecoder`, the service SDK's `SharedAccessSignature`):
//!
//! - framing (DotNetty decoder): any packet whose full frame exceeds 262,144 bytes, a QoS 3
//!   publish, wrong fixed-header flags, server-to-client packet types, a CONNECT with the
//!   reserved flag or a password without a user name → connection closed without CONNACK;
//!   protocol level ≠ 4 → CONNACK 1 then close; the first packet must be CONNECT and there
//!   must be only one;
//! - user name (`MqttUsernameParser`): `host/device/module/?params` with a non-empty
//!   `api-version`; a user name that does not parse → CONNACK 3 (the parser throws and the
//!   protocol gateway answers "server unavailable");
//! - authentication → CONNACK 5 (the protocol gateway answers `RefusedNotAuthorized` for every
//!   authentication failure, never 4): no password, client id ≠ `{device}/{module}` of the
//!   user name, unknown identity, token that does not parse (`SharedAccessSignature ` + fields
//!   split on `&` then `=`; only the part between the first and second `=` counts, so a raw
//!   `=` in `sig` truncates it; every field but `sr` is URL-decoded, so a raw `+` becomes a
//!   space), signature ≠ base64(HMAC-SHA256(key, raw sr + "\n" + se)), expired (`se` + 5 min
//!   skew < now), audience;
//! - QoS 2 publish → connection closed; unsupported topic → closed; telemetry property bag
//!   parsed with the SDK's `UrlEncodedDictionarySerializer` rules (a malformed bag closes the
//!   connection, as the conversion throws);
//! - keep-alive: the connection is closed after 1.5 × keep-alive without any packet;
//! - a connection is dropped once its token expires (edgeHub re-authenticates periodically);
//! - a new connection for the same identity closes the previous one;
//! - subscriptions are classified like `SessionStatePersistenceProvider`; unknown ones are
//!   acknowledged but ignored; nothing is sent to a client that did not subscribe.
//!
//! Stricter than edgeHub (so a client passing here also passes there):
//! - the user name's first segment must be the hub host (edgeHub ignores it);
//! - the audience must be exactly `{hubHost}/devices/{d}/modules/{m}` (edgeHub also accepts
//!   the edge device host name, a device-scope audience, and does not look at the literal
//!   `devices`/`modules` segments); the host comparison is case-sensitive, like edgeHub's;
//! - the inputs subscription must be exactly `devices/{d}/modules/{m}/#`;
//! - publishing telemetry on the device topic is accepted (PUBACK) but recorded as a protocol
//!   error: it breaks module routes;
//! - keep-alive 0 or above 300 s is accepted but recorded as a protocol error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as MqttError, QoS, valid_filter};
use rustls::ServerConfig;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::bytes::BytesMut;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// Largest frame edgeHub's decoder accepts (fixed header included).
pub const MAX_FRAME: usize = 262_144;
/// Largest remaining length whose frame fits in `MAX_FRAME` (4-byte header for these sizes).
const MAX_REMAINING: usize = MAX_FRAME - 4;
/// Receive buffer of a connection on a [`EdgeHubConfig::slow_link`] (the kernel
/// doubles it for its bookkeeping).
pub const SLOW_RECV_BUFFER: usize = 4096;
/// Segment size the double advertises for a [`EdgeHubConfig::slow_link`].
pub const SLOW_MSS: usize = 1400;
/// edgeHub's `SharedAccessSignature` clock skew.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// What `Uri.EscapeDataString` leaves alone: the RFC 3986 unreserved characters.
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Configuration of the double.
#[derive(Clone)]
pub struct EdgeHubConfig {
    /// `IOTEDGE_IOTHUBHOSTNAME`, e.g. `testhub.azure-devices.net`.
    pub hub_host: String,
    pub device_id: String,
    pub module_id: String,
    /// The module's primary key, base64.
    pub module_key: String,
    /// The module's secondary key, base64 (edgeHub accepts a token signed with either).
    pub secondary_key: Option<String>,
    /// Server TLS config (see `certs::TestPki::server_config`).
    pub tls: Arc<ServerConfig>,
    /// Accepted clock skew on token expiry (edgeHub: 5 min).
    pub clock_skew: Duration,
    /// Drop an authenticated connection once `se` + `clock_skew` has passed.
    pub drop_on_token_expiry: bool,
    /// Close a connection after 1.5 × its keep-alive without any packet.
    pub enforce_keep_alive: bool,
    /// Answer reported-property patches with `&$version=N` (edgeHub omits it).
    pub reported_version_in_response: bool,
    /// Initial desired properties (without `$version`; the double adds `"$version": 1`).
    pub initial_desired: Value,
    /// A slow uplink of this many bytes per second (`None`: loopback speed). The double then
    /// reads from a connection in chunks of a tenth of that, through a receive buffer of
    /// [`SLOW_RECV_BUFFER`] bytes, and advertises an Ethernet-sized segment ([`SLOW_MSS`]), so
    /// a client writing more than the link carries sees its writes block, as on a congested
    /// cellular link. (Over loopback's 64 KiB segments the kernel would give the client a send
    /// buffer of over a megabyte, and its writes would never block.)
    pub slow_link: Option<usize>,
}

impl EdgeHubConfig {
    /// Defaults matching edgeHub: 5 min skew, expiry drop and keep-alive enforced.
    pub fn new(
        hub_host: &str,
        device_id: &str,
        module_id: &str,
        module_key: &str,
        tls: Arc<ServerConfig>,
    ) -> EdgeHubConfig {
        EdgeHubConfig {
            hub_host: hub_host.to_string(),
            device_id: device_id.to_string(),
            module_id: module_id.to_string(),
            module_key: module_key.to_string(),
            secondary_key: None,
            tls,
            clock_skew: CLOCK_SKEW,
            drop_on_token_expiry: true,
            enforce_keep_alive: true,
            reported_version_in_response: false,
            initial_desired: json!({}),
            slow_link: None,
        }
    }
}

/// How a CONNECT ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectOutcome {
    /// CONNACK 0.
    Accepted { session_present: bool },
    /// CONNACK with a non-zero return code, then close.
    Refused { code: u8, reason: String },
    /// Closed without CONNACK (malformed CONNECT).
    Closed { reason: String },
}

/// One CONNECT as received.
#[derive(Clone, Debug)]
pub struct ConnectAttempt {
    /// Connection serial number (also in `ClosedConnection`, `Telemetry`).
    pub conn_id: u64,
    pub at: SystemTime,
    /// TLS SNI the client sent.
    pub sni: Option<String>,
    /// Negotiated TLS version, e.g. `TLSv1_3`.
    pub tls_version: Option<String>,
    pub protocol_level: Option<u8>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub clean_session: bool,
    pub keep_alive: u16,
    /// `DeviceClientType` from the user name, URL-decoded.
    pub device_client_type: Option<String>,
    /// `se` of the token, when it parsed.
    pub token_expiry: Option<u64>,
    pub outcome: ConnectOutcome,
}

impl ConnectAttempt {
    pub fn accepted(&self) -> bool {
        matches!(self.outcome, ConnectOutcome::Accepted { .. })
    }
    /// The CONNACK code sent (0 accepted), None when closed without CONNACK.
    pub fn return_code(&self) -> Option<u8> {
        match &self.outcome {
            ConnectOutcome::Accepted { .. } => Some(0),
            ConnectOutcome::Refused { code, .. } => Some(*code),
            ConnectOutcome::Closed { .. } => None,
        }
    }
    /// Why it was refused or closed ("" when accepted).
    pub fn reason(&self) -> &str {
        match &self.outcome {
            ConnectOutcome::Accepted { .. } => "",
            ConnectOutcome::Refused { reason, .. } | ConnectOutcome::Closed { reason } => reason,
        }
    }
}

/// A TLS connection that ended, and why.
#[derive(Clone, Debug)]
pub struct ClosedConnection {
    pub conn_id: u64,
    pub at: SystemTime,
    /// Whether the CONNECT had been accepted.
    pub authenticated: bool,
    pub reason: String,
}

/// Property bag of a topic: percent-decoded pairs in order; a key without value (or with an
/// empty one) has value "" (edgeHub stores null).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PropertyBag {
    pub pairs: Vec<(String, String)>,
    /// Text after a raw `/` that ended the bag (ignored by edgeHub).
    pub ignored_tail: String,
}

impl PropertyBag {
    /// Value of `key` (last occurrence wins, as in edgeHub).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.pairs.iter().cloned().collect()
    }
}

/// A PUBLISH received on a telemetry topic (module or device).
#[derive(Clone, Debug)]
pub struct Telemetry {
    pub conn_id: u64,
    pub topic: String,
    /// Parsed property bag, or why it is malformed.
    pub properties: Result<PropertyBag, String>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub pkid: u16,
    pub dup: bool,
    pub retain: bool,
    pub received_at: SystemTime,
    /// Published on the device topic instead of the module topic.
    pub device_topic: bool,
    /// PUBACK sent (false while withheld or for QoS 0).
    pub puback_sent: bool,
}

impl Telemetry {
    /// The property bag; panics (test helper) when it was malformed.
    pub fn props(&self) -> &PropertyBag {
        match &self.properties {
            Ok(bag) => bag,
            Err(e) => panic!("malformed property bag on {}: {e}", self.topic),
        }
    }
}

/// A twin request from the client.
#[derive(Clone, Debug)]
pub struct TwinRequest {
    pub conn_id: u64,
    /// `GET` or `PATCH`.
    pub kind: String,
    pub rid: String,
    pub body: Vec<u8>,
    /// Status answered, None when not answered (client not subscribed to responses).
    pub status: Option<u16>,
}

/// A message sent to the module's input.
#[derive(Clone, Debug)]
pub struct InputMessage {
    pub input: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// How many times it was published to the client.
    pub deliveries: u32,
    pub acked: bool,
}

/// Why `invoke_method` failed.
#[derive(Debug)]
pub enum MethodError {
    /// No connected client subscribed to `$iothub/methods/POST/#` within the timeout.
    NotSubscribed,
    /// No response within the timeout.
    Timeout,
    /// Response payload is not JSON.
    NotJson { status: u16, payload: Vec<u8> },
}

enum Out {
    Bytes(Vec<u8>),
    Close(String),
}

enum Inflight {
    Input(usize),
    Other,
}

struct Current {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    next_pkid: u16,
    inflight: HashMap<u16, Inflight>,
    clean_session: bool,
}

struct Generation {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

struct State {
    tls: Arc<ServerConfig>,
    generation: Option<Generation>,
    conn_seq: u64,
    current: Option<Current>,
    session_exists: bool,
    subs: BTreeMap<String, u8>,
    attempts: Vec<ConnectAttempt>,
    tls_failures: Vec<String>,
    closed: Vec<ClosedConnection>,
    telemetry: Vec<Telemetry>,
    protocol_errors: Vec<String>,
    withhold_pubacks: bool,
    withheld: Vec<(u64, u16, usize)>,
    desired: Value,
    reported: Value,
    twin_get_failures: Option<(u16, usize)>,
    twin_requests: Vec<TwinRequest>,
    rid_seq: u64,
    pending_methods: HashMap<String, oneshot::Sender<(u16, Vec<u8>)>>,
    inputs: Vec<InputMessage>,
}

struct Shared {
    cfg: EdgeHubConfig,
    port: u16,
    root: CancellationToken,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state and wakes every waiter.
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        r
    }
}

/// The running double. Clones share it; dropping the last clone stops it.
#[derive(Clone)]
pub struct EdgeHub {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl EdgeHub {
    /// Listens on 127.0.0.1 (ephemeral port) and serves on tokio tasks.
    pub async fn start(cfg: EdgeHubConfig) -> EdgeHub {
        let listener = bind(0, cfg.slow_link.is_some())
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("bound listener has an address")
            .port();
        let root = CancellationToken::new();
        let mut desired = cfg.initial_desired.clone();
        if !desired.is_object() {
            desired = json!({});
        }
        set_version(&mut desired, 1);
        let shared = Arc::new(Shared {
            port,
            root: root.clone(),
            state: Mutex::new(State {
                tls: cfg.tls.clone(),
                generation: None,
                conn_seq: 0,
                current: None,
                session_exists: false,
                subs: BTreeMap::new(),
                attempts: Vec::new(),
                tls_failures: Vec::new(),
                closed: Vec::new(),
                telemetry: Vec::new(),
                protocol_errors: Vec::new(),
                withhold_pubacks: false,
                withheld: Vec::new(),
                desired,
                reported: json!({ "$version": 1 }),
                twin_get_failures: None,
                twin_requests: Vec::new(),
                rid_seq: 0,
                pending_methods: HashMap::new(),
                inputs: Vec::new(),
            }),
            changed: watch::channel(0).0,
            cfg,
        });
        serve(&shared, listener);
        EdgeHub {
            shared,
            _guard: Arc::new(root.drop_guard()),
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.shared.port))
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Closes every connection and the listener (edgeHub down). Returns once all are closed.
    pub async fn stop(&self) {
        let generation = self.shared.update(|st| st.generation.take());
        if let Some(generation) = generation {
            generation.cancel.cancel();
            generation.tracker.close();
            generation.tracker.wait().await;
        }
    }

    /// Listens again on the same port after `stop` (edgeHub back). No-op when listening.
    pub async fn restart(&self) {
        if self.shared.lock().generation.is_some() {
            return;
        }
        let listener = bind(self.shared.port, self.shared.cfg.slow_link.is_some())
            .await
            .expect("rebind the edgeHub double's port");
        serve(&self.shared, listener);
    }

    /// Drops the current client connection (network blip) while still listening.
    pub fn disconnect_client(&self) {
        let st = self.shared.lock();
        if let Some(cur) = &st.current {
            let _ = cur.tx.send(Out::Close("dropped by the test".into()));
        }
    }

    /// TLS config for new connections (CA rotation).
    pub fn set_tls_config(&self, tls: Arc<ServerConfig>) {
        self.shared.lock().tls = tls;
    }

    /// While on, telemetry PUBLISHes are recorded but not acknowledged.
    pub fn set_withhold_pubacks(&self, on: bool) {
        self.shared.update(|st| st.withhold_pubacks = on);
    }

    /// Sends the withheld PUBACKs that belong to the current connection (the others are
    /// lost with their connection).
    pub fn release_withheld_pubacks(&self) {
        self.shared.update(|st| {
            let withheld = std::mem::take(&mut st.withheld);
            for (conn_id, pkid, index) in withheld {
                let Some(cur) = st.current.as_ref().filter(|c| c.id == conn_id) else {
                    continue;
                };
                if send_packet(&cur.tx, Packet::PubAck(PubAck::new(pkid))) {
                    if let Some(t) = st.telemetry.get_mut(index) {
                        t.puback_sent = true;
                    }
                }
            }
        });
    }

    /// Every connection whose CONNECT was accepted or refused, in order.
    pub fn attempts(&self) -> Vec<ConnectAttempt> {
        self.shared.lock().attempts.clone()
    }

    /// Number of accepted CONNECTs.
    pub fn accepted_connections(&self) -> usize {
        self.shared
            .lock()
            .attempts
            .iter()
            .filter(|a| a.accepted())
            .count()
    }

    /// TLS handshakes that failed, with the server-side error.
    pub fn tls_failures(&self) -> Vec<String> {
        self.shared.lock().tls_failures.clone()
    }

    /// Connections that ended, with the reason (QoS 2, too large, keep-alive, …).
    pub fn closed_connections(&self) -> Vec<ClosedConnection> {
        self.shared.lock().closed.clone()
    }

    /// Protocol mistakes the client made (some fatal, some only recorded).
    pub fn protocol_errors(&self) -> Vec<String> {
        self.shared.lock().protocol_errors.clone()
    }

    /// An authenticated client is connected.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().current.is_some()
    }

    /// Session subscriptions (filter → granted QoS).
    pub fn subscriptions(&self) -> BTreeMap<String, u8> {
        self.shared.lock().subs.clone()
    }

    /// Telemetry received, in order (duplicates included).
    pub fn telemetry(&self) -> Vec<Telemetry> {
        self.shared.lock().telemetry.clone()
    }

    /// Desired properties, with `$version`.
    pub fn desired(&self) -> Value {
        self.shared.lock().desired.clone()
    }

    pub fn desired_version(&self) -> u64 {
        version_of(&self.shared.lock().desired)
    }

    /// Reported properties, with `$version`.
    pub fn reported(&self) -> Value {
        self.shared.lock().reported.clone()
    }

    /// Twin GET/PATCH requests received.
    pub fn twin_requests(&self) -> Vec<TwinRequest> {
        self.shared.lock().twin_requests.clone()
    }

    /// The next `count` twin GETs are answered with `status` (e.g. 429) and no body.
    pub fn fail_twin_gets(&self, status: u16, count: usize) {
        self.shared
            .update(|st| st.twin_get_failures = (count > 0).then_some((status, count)));
    }

    /// Merges `patch` (JSON merge patch) into desired, bumps `$version` and publishes
    /// `$iothub/twin/PATCH/properties/desired/?$version=N` to a subscribed client. Returns N.
    pub fn set_desired_patch(&self, patch: Value) -> u64 {
        self.shared.update(|st| {
            let version = apply_desired(st, &patch);
            if let Some(qos) = desired_qos(&st.subs) {
                let mut body = strip_version(&patch);
                set_version(&mut body, version);
                let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
                send_publish(
                    st,
                    &topic,
                    body.to_string().into_bytes(),
                    qos,
                    Inflight::Other,
                );
            }
            version
        })
    }

    /// Applies `patch` to desired and bumps `$version` without publishing (a lost patch).
    pub fn set_desired_patch_silently(&self, patch: Value) -> u64 {
        self.shared.update(|st| apply_desired(st, &patch))
    }

    /// Bumps desired `$version` without publishing: the client sees a gap on the next patch.
    pub fn skip_desired_version(&self) -> u64 {
        self.set_desired_patch_silently(json!({}))
    }

    /// Invokes a direct method: waits (within `timeout`) for a connected client subscribed to
    /// `$iothub/methods/POST/#`, publishes the request and waits for the response.
    pub async fn invoke_method(
        &self,
        name: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<(u16, Value), MethodError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let mut changes = self.shared.changed.subscribe();
        loop {
            // A plain lock, not `update`: notifying would wake this very loop and spin.
            let sent = (|| {
                let mut guard = self.shared.lock();
                let st = &mut *guard;
                let qos = methods_qos(&st.subs).filter(|_| st.current.is_some())?;
                st.rid_seq += 1;
                let rid = format!("{:x}", st.rid_seq);
                let topic = format!("$iothub/methods/POST/{name}/?$rid={rid}");
                st.pending_methods.insert(rid.clone(), tx.take()?);
                send_publish(
                    st,
                    &topic,
                    payload.to_string().into_bytes(),
                    qos,
                    Inflight::Other,
                );
                Some(rid)
            })();
            if let Some(rid) = sent {
                return match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok((status, body))) if body.is_empty() => Ok((status, Value::Null)),
                    Ok(Ok((status, body))) => match serde_json::from_slice(&body) {
                        Ok(v) => Ok((status, v)),
                        Err(_) => Err(MethodError::NotJson {
                            status,
                            payload: body,
                        }),
                    },
                    _ => {
                        self.shared.lock().pending_methods.remove(&rid);
                        Err(MethodError::Timeout)
                    }
                };
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(MethodError::NotSubscribed),
            }
        }
    }

    /// Queues a message for the module's input `input` (QoS 1 on
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`; the bag has `$.cdid` = the device and
    /// `$.cmid` = `"sender"` unless `properties` sets them). Delivered now if the client is
    /// subscribed, else on its next subscription; redelivered (DUP) until PUBACKed. Returns its
    /// index in `inputs()`.
    pub fn send_input(&self, input: &str, payload: &[u8], properties: &[(&str, &str)]) -> usize {
        let cfg = &self.shared.cfg;
        let mut props: Vec<(String, String)> = Vec::new();
        if !properties.iter().any(|(k, _)| *k == "$.cdid") {
            props.push(("$.cdid".into(), cfg.device_id.clone()));
        }
        if !properties.iter().any(|(k, _)| *k == "$.cmid") {
            props.push(("$.cmid".into(), "sender".into()));
        }
        props.extend(
            properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let bag = props
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join("&");
        let topic = format!(
            "devices/{}/modules/{}/inputs/{}/{}",
            cfg.device_id, cfg.module_id, input, bag
        );
        self.shared.update(|st| {
            st.inputs.push(InputMessage {
                input: input.to_string(),
                topic,
                payload: payload.to_vec(),
                deliveries: 0,
                acked: false,
            });
            flush_inputs(st, &cfg.device_id, &cfg.module_id);
            st.inputs.len() - 1
        })
    }

    /// Input messages and whether the client acknowledged them.
    pub fn inputs(&self) -> Vec<InputMessage> {
        self.shared.lock().inputs.clone()
    }

    /// Waits until `pred` holds (checked after every change), at most `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&EdgeHub) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.changed.subscribe();
        loop {
            if pred(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return pred(self),
            }
        }
    }

    /// Waits for an authenticated client.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |h| h.is_connected()).await
    }

    /// Waits until no client is connected.
    pub async fn wait_disconnected(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |h| !h.is_connected()).await
    }

    /// Waits for at least `n` telemetry messages and returns them all.
    pub async fn wait_telemetry(&self, n: usize, timeout: Duration) -> Vec<Telemetry> {
        self.wait_until(timeout, |h| h.shared.lock().telemetry.len() >= n)
            .await;
        self.telemetry()
    }

    /// Waits for at least `n` CONNECT attempts and returns them all.
    pub async fn wait_attempts(&self, n: usize, timeout: Duration) -> Vec<ConnectAttempt> {
        self.wait_until(timeout, |h| h.shared.lock().attempts.len() >= n)
            .await;
        self.attempts()
    }
}

async fn bind(port: u16, slow_link: bool) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    if slow_link {
        // Accepted connections inherit the segment size the listener advertises.
        set_int_option(&socket, libc::IPPROTO_TCP, libc::TCP_MAXSEG, SLOW_MSS);
    }
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(64)
}

fn serve(shared: &Arc<Shared>, listener: TcpListener) {
    let cancel = shared.root.child_token();
    let tracker = TaskTracker::new();
    shared.update(|st| {
        st.generation = Some(Generation {
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        })
    });
    let shared = shared.clone();
    let inner_tracker = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
            };
            inner_tracker.spawn(connection(shared.clone(), tcp, cancel.child_token()));
        }
    });
}

fn escape(s: &str) -> String {
    utf8_percent_encode(s, ESCAPE).to_string()
}

/// `WebUtility.UrlDecode`: `+` is a space, `%XX` decoded, invalid escapes kept.
fn url_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `Uri.UnescapeDataString`: `%XX` decoded, `+` kept, undecodable text kept as is.
fn unescape(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| s.to_string())
}

/// Parses a property bag with the rules of the SDK's `UrlEncodedDictionarySerializer`
/// (used by edgeHub): `k=v&k2=v2`, keys and values percent-decoded, a key without `=` has no
/// value, a raw `/` ends the bag, `=` or `&` where a key should start and `=` inside a value
/// are errors, as is a trailing `&`.
pub fn parse_property_bag(s: &str) -> Result<PropertyBag, String> {
    #[derive(PartialEq)]
    enum St {
        Ready,
        Key,
        Value,
    }
    let b = s.as_bytes();
    let mut bag = PropertyBag::default();
    if b.is_empty() {
        return Ok(bag);
    }
    let mut st = St::Ready;
    let mut start = 0;
    let mut key = String::new();
    let mut pos = 0;
    loop {
        let c = b.get(pos).copied();
        match st {
            St::Ready => match c {
                None => return Err(format!("unexpected end of property bag {s:?}")),
                Some(b'=') | Some(b'&') => {
                    return Err(format!(
                        "unexpected '{}' at {pos} in property bag {s:?}",
                        c.map(char::from).unwrap_or(' ')
                    ));
                }
                Some(b'/') => {
                    bag.ignored_tail = s.get(pos + 1..).unwrap_or("").to_string();
                    return Ok(bag);
                }
                Some(_) => {
                    start = pos;
                    st = St::Key;
                }
            },
            St::Key => match c {
                None => {
                    bag.pairs.push((unescape(&s[start..pos]), String::new()));
                    return Ok(bag);
                }
                Some(b'=') => {
                    key = unescape(&s[start..pos]);
                    start = pos + 1;
                    st = St::Value;
                }
                Some(b'&') => {
                    bag.pairs.push((unescape(&s[start..pos]), String::new()));
                    st = St::Ready;
                }
                Some(b'/') => {
                    bag.pairs.push((unescape(&s[start..pos]), String::new()));
                    bag.ignored_tail = s.get(pos + 1..).unwrap_or("").to_string();
                    return Ok(bag);
                }
                Some(_) => {}
            },
            St::Value => match c {
                None => {
                    bag.pairs
                        .push((std::mem::take(&mut key), unescape(&s[start..pos])));
                    return Ok(bag);
                }
                Some(b'=') => {
                    return Err(format!(
                        "unexpected '=' in a value at {pos} in property bag {s:?}"
                    ));
                }
                Some(b'&') => {
                    bag.pairs
                        .push((std::mem::take(&mut key), unescape(&s[start..pos])));
                    st = St::Ready;
                }
                Some(b'/') => {
                    bag.pairs
                        .push((std::mem::take(&mut key), unescape(&s[start..pos])));
                    bag.ignored_tail = s.get(pos + 1..).unwrap_or("").to_string();
                    return Ok(bag);
                }
                Some(_) => {}
            },
        }
        pos += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Connection handling.

fn encode(packet: Packet) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    packet.write(&mut buf, usize::MAX).ok()?;
    Some(buf.to_vec())
}

fn send_packet(tx: &mpsc::UnboundedSender<Out>, packet: Packet) -> bool {
    match encode(packet) {
        Some(bytes) => tx.send(Out::Bytes(bytes)).is_ok(),
        None => false,
    }
}

/// Publishes to the current connection with QoS `qos` (0 or 1). Returns the packet id used
/// (0 for QoS 0) or None when no client is connected.
fn send_publish(
    st: &mut State,
    topic: &str,
    payload: Vec<u8>,
    qos: u8,
    kind: Inflight,
) -> Option<u16> {
    send_publish_dup(st, topic, payload, qos, kind, false)
}

fn send_publish_dup(
    st: &mut State,
    topic: &str,
    payload: Vec<u8>,
    qos: u8,
    kind: Inflight,
    dup: bool,
) -> Option<u16> {
    let cur = st.current.as_mut()?;
    let mut publish = Publish::new(
        topic,
        if qos >= 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        },
        payload,
    );
    publish.dup = dup && qos >= 1;
    if qos >= 1 {
        let mut pkid = cur.next_pkid;
        for _ in 0..u16::MAX {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            if !cur.inflight.contains_key(&pkid) {
                break;
            }
        }
        cur.next_pkid = pkid;
        publish.pkid = pkid;
        cur.inflight.insert(pkid, kind);
    }
    let pkid = publish.pkid;
    send_packet(&cur.tx, Packet::Publish(publish)).then_some(pkid)
}

fn desired_qos(subs: &BTreeMap<String, u8>) -> Option<u8> {
    subs.iter()
        .find(|(f, _)| f.starts_with("$iothub/twin/PATCH/properties/desired/"))
        .map(|(_, q)| *q)
}

fn methods_qos(subs: &BTreeMap<String, u8>) -> Option<u8> {
    subs.iter()
        .find(|(f, _)| f.starts_with("$iothub/methods/POST/"))
        .map(|(_, q)| *q)
}

fn twin_res_qos(subs: &BTreeMap<String, u8>) -> Option<u8> {
    subs.get("$iothub/twin/res/#").copied()
}

/// Delivers every unacknowledged input not in flight on the current connection.
fn flush_inputs(st: &mut State, device: &str, module: &str) {
    let Some(qos) = st
        .subs
        .get(&format!("devices/{device}/modules/{module}/#"))
        .copied()
    else {
        return;
    };
    let Some(cur) = st.current.as_ref() else {
        return;
    };
    let in_flight: Vec<usize> = cur
        .inflight
        .values()
        .filter_map(|k| match k {
            Inflight::Input(i) => Some(*i),
            Inflight::Other => None,
        })
        .collect();
    for i in 0..st.inputs.len() {
        if st.inputs[i].acked || in_flight.contains(&i) {
            continue;
        }
        let (topic, payload, dup) = {
            let m = &st.inputs[i];
            (m.topic.clone(), m.payload.clone(), m.deliveries > 0)
        };
        if send_publish_dup(st, &topic, payload, qos, Inflight::Input(i), dup).is_some() {
            st.inputs[i].deliveries += 1;
            if qos == 0 {
                st.inputs[i].acked = true;
            }
        }
    }
}

fn version_of(doc: &Value) -> u64 {
    doc.get("$version").and_then(Value::as_u64).unwrap_or(0)
}

fn set_version(doc: &mut Value, version: u64) {
    if let Value::Object(map) = doc {
        map.insert("$version".into(), json!(version));
    }
}

fn strip_version(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => {
            let mut map = map.clone();
            map.remove("$version");
            Value::Object(map)
        }
        other => other.clone(),
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn apply_desired(st: &mut State, patch: &Value) -> u64 {
    let version = version_of(&st.desired) + 1;
    merge_patch(&mut st.desired, &strip_version(patch));
    set_version(&mut st.desired, version);
    version
}

/// edgeHub's `ReportedPropertiesValidator`.
fn validate_reported(patch: &Value, raw_len: usize) -> Result<(), String> {
    const MAX_DEPTH: usize = 10;
    fn name_ok(name: &str) -> Result<(), String> {
        if name.len() > 1024 {
            return Err(format!("property name longer than 1024 bytes: {name:.10}…"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '.' | '$' | '#'))
        {
            return Err(format!("property name {name:?} contains {c:?}"));
        }
        Ok(())
    }
    fn value_ok(name: &str, v: &Value, depth: usize, in_array: bool) -> Result<(), String> {
        name_ok(name)?;
        match v {
            Value::Object(map) => {
                if depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH}"));
                }
                for (k, v) in map {
                    value_ok(k, v, depth + 1, in_array)?;
                }
            }
            Value::Array(items) => {
                if depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH}"));
                }
                array_ok(items, depth + 1)?;
            }
            Value::Null if in_array => {
                return Err(format!(
                    "property {name:?} of an object in an array is null"
                ));
            }
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                let ok = n
                    .as_i64()
                    .is_some_and(|i| (-4_503_599_627_370_496..=4_503_599_627_370_495).contains(&i));
                if !ok {
                    return Err(format!("property {name:?} is outside ±2^52"));
                }
            }
            Value::String(s) if s.len() > 4096 => {
                return Err(format!("value of {name:?} longer than 4096 bytes"));
            }
            _ => {}
        }
        Ok(())
    }
    fn array_ok(items: &[Value], depth: usize) -> Result<(), String> {
        for item in items {
            match item {
                Value::Null => return Err("arrays cannot contain null".into()),
                Value::Array(inner) => {
                    if depth > MAX_DEPTH {
                        return Err(format!("nesting deeper than {MAX_DEPTH}"));
                    }
                    array_ok(inner, depth + 1)?;
                }
                other => value_ok("", other, depth, true)?,
            }
        }
        Ok(())
    }
    if raw_len > 32 * 1024 {
        return Err(format!("reported patch of {raw_len} bytes exceeds 32 KiB"));
    }
    if !patch.is_object() {
        return Err("reported patch is not a JSON object".into());
    }
    value_ok("", patch, 0, false)
}

/// The `$rid` of a topic's query (`…/?$rid=X[&…]`).
fn rid_of(topic: &str) -> Option<String> {
    let (_, query) = topic.split_once('?')?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("$rid="))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

/// Checks the fixed-header byte like DotNetty's decoder on a server: exact flags for every
/// client-to-server packet type; publish flags are checked when parsed.
fn check_signature(byte1: u8) -> Result<(), String> {
    match byte1 >> 4 {
        3 => Ok(()),
        _ => match byte1 {
            0x10 | 0x40 | 0x50 | 0x62 | 0x70 | 0x82 | 0xA2 | 0xC0 | 0xE0 => Ok(()),
            other => Err(format!("invalid first packet byte 0x{other:02x}")),
        },
    }
}

/// Protocol name, level and connect flags of a complete CONNECT frame.
fn connect_header(frame: &[u8]) -> Option<(Vec<u8>, u8, u8)> {
    let mut i = 1;
    for _ in 0..4 {
        let b = *frame.get(i)?;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let len = u16::from_be_bytes([*frame.get(i)?, *frame.get(i + 1)?]) as usize;
    i += 2;
    let name = frame.get(i..i + len)?.to_vec();
    i += len;
    Some((name, *frame.get(i)?, *frame.get(i + 1)?))
}

enum Flow {
    Continue,
    Close(String),
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    sni: Option<String>,
    tls_version: Option<String>,
    connected: bool,
    keep_alive: Option<Duration>,
    token_deadline: Option<tokio::time::Instant>,
}

async fn connection(shared: Arc<Shared>, tcp: TcpStream, cancel: CancellationToken) {
    let read_rate = shared.cfg.slow_link;
    if read_rate.is_some() {
        set_int_option(&tcp, libc::SOL_SOCKET, libc::SO_RCVBUF, SLOW_RECV_BUFFER);
    }
    let acceptor = TlsAcceptor::from(shared.lock().tls.clone());
    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
    let mut stream = tokio::select! {
        _ = cancel.cancelled() => return,
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.update(|st| st.tls_failures.push(e.to_string()));
                return;
            }
            Err(_) => {
                shared.update(|st| st.tls_failures.push("TLS handshake timed out".into()));
                return;
            }
        },
    };
    let (sni, tls_version) = {
        let (_, server) = stream.get_ref();
        (
            server.server_name().map(str::to_string),
            server.protocol_version().map(|v| format!("{v:?}")),
        )
    };
    let id = shared.update(|st| {
        st.conn_seq += 1;
        st.conn_seq
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        tx,
        sni,
        tls_version,
        connected: false,
        keep_alive: None,
        token_deadline: None,
    };
    let mut buf = BytesMut::with_capacity(4096);
    let mut last_activity = tokio::time::Instant::now();
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    // Under a read rate: at most a tenth of a second's bytes per read, and no read before
    // `next_read` (the time the previous chunk "took" on the slow link).
    let mut scratch = vec![0u8; read_rate.map_or(64 * 1024, |r| (r / 10).clamp(1, 64 * 1024))];
    let mut next_read = tokio::time::Instant::now();
    let reason: String = 'conn: loop {
        let may_read = tokio::time::Instant::now() >= next_read;
        let keep_alive_deadline = conn
            .keep_alive
            .map(|ka| last_activity + ka.mul_f64(1.5))
            .unwrap_or_else(far);
        let token_deadline = conn.token_deadline.unwrap_or_else(far);
        tokio::select! {
            _ = cancel.cancelled() => {
                // edgeHub going down: drop the socket without a TLS close_notify.
                break 'conn "server stopped".to_string();
            }
            _ = tokio::time::sleep_until(keep_alive_deadline) => {
                break 'conn "keep-alive timeout (no packet within 1.5 × keep-alive)".to_string();
            }
            _ = tokio::time::sleep_until(token_deadline) => {
                break 'conn "SAS token expired".to_string();
            }
            out = rx.recv() => match out {
                Some(Out::Bytes(bytes)) => {
                    if let Err(e) = stream.write_all(&bytes).await {
                        break 'conn format!("write failed: {e}");
                    }
                    let _ = stream.flush().await;
                }
                Some(Out::Close(reason)) => {
                    flush_pending(&mut rx, &mut stream).await;
                    let _ = stream.shutdown().await;
                    break 'conn reason;
                }
                None => break 'conn "channel closed".to_string(),
            },
            _ = tokio::time::sleep_until(next_read), if !may_read => {}
            read = stream.read(&mut scratch), if may_read => {
                let n = match read {
                    Ok(0) => break 'conn "client closed the connection".to_string(),
                    Ok(n) => n,
                    Err(e) => break 'conn format!("read failed: {e}"),
                };
                buf.extend_from_slice(&scratch[..n]);
                last_activity = tokio::time::Instant::now();
                if let Some(rate) = read_rate {
                    next_read = last_activity + Duration::from_secs_f64(n as f64 / rate as f64);
                }
                loop {
                    match conn.next_frame(&mut buf) {
                        Ok(None) => break,
                        Ok(Some(packet)) => {
                            if let Flow::Close(reason) = conn.handle(packet) {
                                flush_pending(&mut rx, &mut stream).await;
                                let _ = stream.shutdown().await;
                                break 'conn reason;
                            }
                        }
                        Err(reason) => {
                            if !conn.connected {
                                conn.record_attempt_closed(&reason);
                            } else {
                                conn.shared.update(|st| st.protocol_errors.push(reason.clone()));
                            }
                            flush_pending(&mut rx, &mut stream).await;
                            let _ = stream.shutdown().await;
                            break 'conn reason;
                        }
                    }
                }
            }
        }
    };
    shared.update(|st| {
        if st.current.as_ref().is_some_and(|c| c.id == id) {
            let clean = st.current.as_ref().is_some_and(|c| c.clean_session);
            st.current = None;
            if clean {
                st.subs.clear();
                st.session_exists = false;
            }
        }
        st.withheld.retain(|(c, _, _)| *c != id);
        st.closed.push(ClosedConnection {
            conn_id: id,
            at: SystemTime::now(),
            authenticated: conn.connected,
            reason,
        });
    });
}

/// Sets an integer socket option (the slow link's segment size and receive buffer).
fn set_int_option(socket: &impl std::os::fd::AsRawFd, level: i32, name: i32, value: usize) {
    let value = value as libc::c_int;
    // SAFETY: a valid socket descriptor and a pointer to an int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
}

/// Writes what is already queued (a CONNACK before a refusal close, …).
async fn flush_pending<S: tokio::io::AsyncWrite + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Out>,
    stream: &mut S,
) {
    while let Ok(out) = rx.try_recv() {
        if let Out::Bytes(bytes) = out {
            if stream.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }
    let _ = stream.flush().await;
}

impl Conn {
    /// The next complete packet in `buf`, None when more bytes are needed, Err(reason) when
    /// the stream is malformed (the connection must close).
    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, String> {
        let Some(&byte1) = buf.first() else {
            return Ok(None);
        };
        check_signature(byte1)?;
        if !self.connected && byte1 >> 4 != 1 {
            return Err(format!(
                "first packet must be CONNECT, got packet type {}",
                byte1 >> 4
            ));
        }
        if byte1 >> 4 == 1 {
            if self.connected {
                return Err("second CONNECT on a connection".into());
            }
            match rumqttc::mqttbytes::check(buf.iter(), MAX_REMAINING) {
                Ok(header) => {
                    let frame = buf.get(..header.frame_length()).unwrap_or(&[]);
                    let Some((name, level, flags)) = connect_header(frame) else {
                        return Err("malformed CONNECT".into());
                    };
                    if name != b"MQTT" {
                        return Err(format!(
                            "unexpected protocol name {:?}",
                            String::from_utf8_lossy(&name)
                        ));
                    }
                    if level != 4 {
                        let _ = send_packet(
                            &self.tx,
                            Packet::ConnAck(ConnAck::new(
                                ConnectReturnCode::RefusedProtocolVersion,
                                false,
                            )),
                        );
                        let reason = format!("protocol level {level}, expected 4 (MQTT 3.1.1)");
                        self.record_attempt(
                            Some(level),
                            None,
                            ConnectOutcome::Refused {
                                code: 1,
                                reason: reason.clone(),
                            },
                            None,
                        );
                        // Return an error only so the caller closes; the attempt is recorded.
                        return Err(format!("refused: {reason}"));
                    }
                    if flags & 0x01 != 0 {
                        return Err("CONNECT reserved flag set [MQTT-3.1.2-3]".into());
                    }
                    if flags & 0x40 != 0 && flags & 0x80 == 0 {
                        return Err("CONNECT password without user name [MQTT-3.1.2-22]".into());
                    }
                }
                Err(MqttError::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(format!("malformed CONNECT: {e}")),
            }
        }
        match Packet::read(buf, MAX_REMAINING) {
            Ok(packet) => Ok(Some(packet)),
            Err(MqttError::InsufficientBytes(_)) => Ok(None),
            Err(MqttError::PayloadSizeLimitExceeded(n)) => Err(format!(
                "packet too large: remaining length {n}, frame limit {MAX_FRAME} bytes"
            )),
            Err(e) => Err(format!("malformed packet: {e}")),
        }
    }

    fn record_attempt_closed(&self, reason: &str) {
        // A protocol-level refusal already recorded its attempt.
        if reason.starts_with("refused: ") {
            return;
        }
        self.record_attempt(
            None,
            None,
            ConnectOutcome::Closed {
                reason: reason.to_string(),
            },
            None,
        );
    }

    fn record_attempt(
        &self,
        level: Option<u8>,
        connect: Option<&rumqttc::mqttbytes::v4::Connect>,
        outcome: ConnectOutcome,
        token_expiry: Option<u64>,
    ) {
        let attempt = self.attempt(level, connect, outcome, token_expiry);
        self.shared.update(|st| st.attempts.push(attempt));
    }

    fn attempt(
        &self,
        level: Option<u8>,
        connect: Option<&rumqttc::mqttbytes::v4::Connect>,
        outcome: ConnectOutcome,
        token_expiry: Option<u64>,
    ) -> ConnectAttempt {
        ConnectAttempt {
            conn_id: self.id,
            at: SystemTime::now(),
            sni: self.sni.clone(),
            tls_version: self.tls_version.clone(),
            protocol_level: level,
            client_id: connect.map(|c| c.client_id.clone()).unwrap_or_default(),
            username: connect
                .and_then(|c| c.login.as_ref())
                .map(|l| l.username.clone())
                .filter(|u| !u.is_empty()),
            password: connect
                .and_then(|c| c.login.as_ref())
                .map(|l| l.password.clone())
                .filter(|p| !p.is_empty()),
            clean_session: connect.is_some_and(|c| c.clean_session),
            keep_alive: connect.map(|c| c.keep_alive).unwrap_or(0),
            device_client_type: connect
                .and_then(|c| c.login.as_ref())
                .and_then(|l| parse_username(&l.username).ok())
                .and_then(|u| u.params.get("DeviceClientType").cloned()),
            token_expiry,
            outcome,
        }
    }

    fn handle(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Connect(connect) => self.handle_connect(connect),
            Packet::PingReq => {
                send_packet(&self.tx, Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect => Flow::Close("client sent DISCONNECT".into()),
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                let cfg = &self.shared.cfg;
                let id = self.id;
                self.shared.update(|st| {
                    let kind = st
                        .current
                        .as_mut()
                        .filter(|c| c.id == id)
                        .and_then(|c| c.inflight.remove(&ack.pkid));
                    match kind {
                        Some(Inflight::Input(i)) => {
                            if let Some(m) = st.inputs.get_mut(i) {
                                m.acked = true;
                            }
                            flush_inputs(st, &cfg.device_id, &cfg.module_id);
                        }
                        Some(Inflight::Other) => {}
                        None => st
                            .protocol_errors
                            .push(format!("PUBACK for unknown packet id {}", ack.pkid)),
                    }
                });
                Flow::Continue
            }
            Packet::Subscribe(sub) => {
                let cfg = &self.shared.cfg;
                let mut codes = Vec::new();
                for f in &sub.filters {
                    if !valid_filter(&f.path) {
                        return self.fatal(format!("invalid topic filter {:?}", f.path));
                    }
                }
                let module_inputs =
                    format!("devices/{}/modules/{}/#", cfg.device_id, cfg.module_id);
                self.shared.update(|st| {
                    for f in &sub.filters {
                        let granted = (f.qos as u8).min(1);
                        codes.push(SubscribeReasonCode::Success(if granted == 1 {
                            QoS::AtLeastOnce
                        } else {
                            QoS::AtMostOnce
                        }));
                        let p = f.path.as_str();
                        let known = p.starts_with("$iothub/methods/POST/")
                            || p.starts_with("$iothub/twin/PATCH/properties/desired/")
                            || p == "$iothub/twin/res/#"
                            || p == module_inputs
                            || p.ends_with("messages/devicebound/#");
                        if !known {
                            st.protocol_errors.push(format!(
                                "subscription {p:?} is not one edgeHub knows: acknowledged and ignored"
                            ));
                        }
                        st.subs.insert(f.path.clone(), granted);
                    }
                    if let Some(cur) = st.current.as_ref() {
                        send_packet(&cur.tx, Packet::SubAck(SubAck::new(sub.pkid, codes)));
                    }
                    flush_inputs(st, &cfg.device_id, &cfg.module_id);
                });
                Flow::Continue
            }
            Packet::Unsubscribe(unsub) => {
                self.shared.update(|st| {
                    for t in &unsub.topics {
                        st.subs.remove(t);
                    }
                });
                send_packet(&self.tx, Packet::UnsubAck(UnsubAck::new(unsub.pkid)));
                Flow::Continue
            }
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                self.fatal("QoS 2 flow packet (edgeHub supports QoS 0 and 1)".into())
            }
            other => self.fatal(format!("unexpected packet from a client: {other:?}")),
        }
    }

    fn fatal(&self, reason: String) -> Flow {
        self.shared
            .update(|st| st.protocol_errors.push(reason.clone()));
        Flow::Close(reason)
    }

    fn handle_connect(&mut self, connect: rumqttc::mqttbytes::v4::Connect) -> Flow {
        let now = SystemTime::now();
        let (result, expiry) = authenticate(&self.shared.cfg, &connect, now);
        let refuse = |code: u8, reason: String| {
            let rc = match code {
                1 => ConnectReturnCode::RefusedProtocolVersion,
                2 => ConnectReturnCode::BadClientId,
                3 => ConnectReturnCode::ServiceUnavailable,
                4 => ConnectReturnCode::BadUserNamePassword,
                _ => ConnectReturnCode::NotAuthorized,
            };
            send_packet(&self.tx, Packet::ConnAck(ConnAck::new(rc, false)));
            self.record_attempt(
                Some(4),
                Some(&connect),
                ConnectOutcome::Refused {
                    code,
                    reason: reason.clone(),
                },
                expiry,
            );
            Flow::Close(format!("CONNECT refused ({code}): {reason}"))
        };
        if let Err((code, reason)) = result {
            return refuse(code, reason);
        }
        let cfg = &self.shared.cfg;
        let id = self.id;
        let tx = self.tx.clone();
        let clean = connect.clean_session;
        let mut attempt = self.attempt(
            Some(4),
            Some(&connect),
            ConnectOutcome::Accepted {
                session_present: false,
            },
            expiry,
        );
        self.shared.update(|st| {
            if let Some(old) = st.current.take() {
                let _ = old.tx.send(Out::Close(
                    "replaced by a new connection for the same identity".into(),
                ));
                if old.clean_session {
                    st.subs.clear();
                    st.session_exists = false;
                }
            }
            let present = !clean && st.session_exists;
            if clean {
                st.subs.clear();
                st.session_exists = false;
            } else {
                st.session_exists = true;
            }
            st.current = Some(Current {
                id,
                tx: tx.clone(),
                next_pkid: 0,
                inflight: HashMap::new(),
                clean_session: clean,
            });
            send_packet(
                &tx,
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, present)),
            );
            if connect.keep_alive == 0 || connect.keep_alive > 300 {
                st.protocol_errors.push(format!(
                    "keep-alive {} s (expected 1..=300)",
                    connect.keep_alive
                ));
            }
            attempt.outcome = ConnectOutcome::Accepted {
                session_present: present,
            };
            st.attempts.push(attempt);
            flush_inputs(st, &cfg.device_id, &cfg.module_id);
        });
        self.connected = true;
        if cfg.enforce_keep_alive && connect.keep_alive > 0 {
            self.keep_alive = Some(Duration::from_secs(u64::from(connect.keep_alive)));
        }
        if cfg.drop_on_token_expiry {
            if let Some(se) = expiry {
                let end = UNIX_EPOCH + Duration::from_secs(se) + cfg.clock_skew;
                let left = end.duration_since(now).unwrap_or(Duration::ZERO);
                self.token_deadline = Some(tokio::time::Instant::now() + left);
            }
        }
        Flow::Continue
    }

    fn handle_publish(&mut self, publish: Publish) -> Flow {
        if publish.qos == QoS::ExactlyOnce {
            return self.fatal(format!("QoS 2 publish on {:?}", publish.topic));
        }
        let topic = publish.topic.clone();
        if topic.is_empty() || topic.contains(['+', '#']) {
            return self.fatal(format!("invalid publish topic {topic:?}"));
        }
        let cfg = self.shared.cfg.clone();
        let module_prefix = format!(
            "devices/{}/modules/{}/messages/events/",
            cfg.device_id, cfg.module_id
        );
        let device_prefix = format!("devices/{}/messages/events/", cfg.device_id);
        let qos1 = publish.qos == QoS::AtLeastOnce;
        if let Some(bag) = topic
            .strip_prefix(&module_prefix)
            .map(|b| (b, false))
            .or_else(|| topic.strip_prefix(&device_prefix).map(|b| (b, true)))
        {
            let (bag, device_topic) = bag;
            let properties = parse_property_bag(bag);
            let malformed = properties.as_ref().err().cloned();
            let ack = qos1 && malformed.is_none();
            let id = self.id;
            let pkid = publish.pkid;
            self.shared.update(|st| {
                let withhold = ack && st.withhold_pubacks;
                if let Ok(b) = &properties {
                    if !b.ignored_tail.is_empty() {
                        st.protocol_errors.push(format!(
                            "property bag of {topic:?} has text after a raw '/' (ignored by edgeHub)"
                        ));
                    }
                }
                if device_topic {
                    st.protocol_errors.push(format!(
                        "telemetry on the device topic {topic:?}: module routes do not see it"
                    ));
                }
                st.telemetry.push(Telemetry {
                    conn_id: id,
                    topic: topic.clone(),
                    properties,
                    payload: publish.payload.to_vec(),
                    qos: publish.qos as u8,
                    pkid,
                    dup: publish.dup,
                    retain: publish.retain,
                    received_at: SystemTime::now(),
                    device_topic,
                    puback_sent: ack && !withhold,
                });
                let index = st.telemetry.len() - 1;
                if withhold {
                    st.withheld.push((id, pkid, index));
                } else if ack {
                    send_packet(&self.tx, Packet::PubAck(PubAck::new(pkid)));
                }
            });
            if let Some(e) = malformed {
                return self.fatal(format!("malformed property bag on {topic:?}: {e}"));
            }
            return Flow::Continue;
        }
        if topic.starts_with("devices/") {
            return self.fatal(format!(
                "publish on {topic:?}: not this module's telemetry topic"
            ));
        }
        if let Some(rest) = topic.strip_prefix("$iothub/twin/GET/") {
            return self.twin_get(rest, &topic, &publish);
        }
        if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/") {
            return self.twin_patch(rest, &topic, &publish);
        }
        if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
            return self.method_response(rest, &topic, &publish);
        }
        self.fatal(format!("publish on unsupported topic {topic:?}"))
    }

    fn puback(&self, publish: &Publish) {
        if publish.qos == QoS::AtLeastOnce {
            send_packet(&self.tx, Packet::PubAck(PubAck::new(publish.pkid)));
        }
    }

    fn twin_get(&mut self, rest: &str, topic: &str, publish: &Publish) -> Flow {
        let Some(rid) = rid_of(topic).filter(|_| rest.starts_with('?')) else {
            return self.fatal(format!("twin GET without $rid: {topic:?}"));
        };
        self.puback(publish);
        let id = self.id;
        self.shared.update(|st| {
            let mut request = TwinRequest {
                conn_id: id,
                kind: "GET".into(),
                rid: rid.clone(),
                body: publish.payload.to_vec(),
                status: None,
            };
            match twin_res_qos(&st.subs) {
                None => st
                    .protocol_errors
                    .push("twin GET before subscribing to $iothub/twin/res/#: no response".into()),
                Some(qos) => {
                    let (status, body) = match st.twin_get_failures {
                        Some((status, left)) => {
                            st.twin_get_failures = (left > 1).then_some((status, left - 1));
                            (status, Vec::new())
                        }
                        None => (
                            200,
                            json!({ "desired": st.desired, "reported": st.reported })
                                .to_string()
                                .into_bytes(),
                        ),
                    };
                    let topic = format!("$iothub/twin/res/{status}/?$rid={rid}");
                    send_publish(st, &topic, body, qos, Inflight::Other);
                    request.status = Some(status);
                }
            }
            st.twin_requests.push(request);
        });
        Flow::Continue
    }

    fn twin_patch(&mut self, rest: &str, topic: &str, publish: &Publish) -> Flow {
        let Some(rid) = rid_of(topic).filter(|_| rest.starts_with('?')) else {
            return self.fatal(format!("reported patch without $rid: {topic:?}"));
        };
        self.puback(publish);
        let id = self.id;
        let with_version = self.shared.cfg.reported_version_in_response;
        let parsed: Result<Value, String> =
            serde_json::from_slice(&publish.payload).map_err(|e| format!("not JSON: {e}"));
        let checked = parsed.and_then(|v| validate_reported(&v, publish.payload.len()).map(|_| v));
        self.shared.update(|st| {
            let status = match &checked {
                Ok(patch) => {
                    let version = version_of(&st.reported) + 1;
                    merge_patch(&mut st.reported, &strip_version(patch));
                    set_version(&mut st.reported, version);
                    204
                }
                Err(e) => {
                    st.protocol_errors
                        .push(format!("invalid reported patch (rid {rid}): {e}"));
                    400
                }
            };
            let mut request = TwinRequest {
                conn_id: id,
                kind: "PATCH".into(),
                rid: rid.clone(),
                body: publish.payload.to_vec(),
                status: None,
            };
            match twin_res_qos(&st.subs) {
                None => st.protocol_errors.push(
                    "reported patch before subscribing to $iothub/twin/res/#: no response".into(),
                ),
                Some(qos) => {
                    let mut topic = format!("$iothub/twin/res/{status}/?$rid={rid}");
                    if with_version && status == 204 {
                        topic.push_str(&format!("&$version={}", version_of(&st.reported)));
                    }
                    send_publish(st, &topic, Vec::new(), qos, Inflight::Other);
                    request.status = Some(status);
                }
            }
            st.twin_requests.push(request);
        });
        Flow::Continue
    }

    fn method_response(&mut self, rest: &str, topic: &str, publish: &Publish) -> Flow {
        let status = rest
            .split_once('/')
            .and_then(|(s, q)| q.starts_with('?').then(|| s.parse::<u16>().ok()).flatten());
        let (Some(status), Some(rid)) = (status, rid_of(topic)) else {
            return self.fatal(format!("malformed method response topic {topic:?}"));
        };
        self.puback(publish);
        self.shared.update(|st| {
            if publish.payload.len() > 128 * 1024 {
                st.protocol_errors.push(format!(
                    "method response of {} bytes exceeds 128 KiB",
                    publish.payload.len()
                ));
            }
            if !publish.payload.is_empty()
                && serde_json::from_slice::<Value>(&publish.payload).is_err()
            {
                st.protocol_errors
                    .push(format!("method response (rid {rid}) is not JSON"));
            }
            match st.pending_methods.remove(&rid) {
                Some(waiter) => {
                    let _ = waiter.send((status, publish.payload.to_vec()));
                }
                None => st
                    .protocol_errors
                    .push(format!("method response for unknown $rid {rid}")),
            }
        });
        Flow::Continue
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication.

struct Username {
    host: String,
    device: String,
    module: String,
    params: HashMap<String, String>,
}

/// edgeHub's `MqttUsernameParser`.
fn parse_username(username: &str) -> Result<Username, String> {
    if username.trim().is_empty() {
        return Err("empty user name".into());
    }
    let segs: Vec<&str> = username.split('/').collect();
    let last = segs.last().copied().unwrap_or("");
    let (device, module, query) = if let Some(q) = last.strip_prefix('?') {
        match segs.as_slice() {
            [_, d, _] => (d.trim(), "", q.trim()),
            [_, d, m, _] => (d.trim(), m.trim(), q.trim()),
            _ => {
                return Err(format!(
                    "user name {username:?} does not contain valid values"
                ));
            }
        }
    } else {
        match segs.as_slice() {
            [_, d, q] if q.contains("api-version=") => (d.trim(), "", q.trim()),
            [_, d, m, q] if q.contains("api-version=") => (d.trim(), m.trim(), q.trim()),
            _ => {
                return Err(format!(
                    "user name {username:?} does not contain valid values"
                ));
            }
        }
    };
    let mut params = HashMap::new();
    for p in query.split('&') {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        params.entry(k.to_string()).or_insert_with(|| unescape(v));
    }
    if params
        .get("api-version")
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(format!("user name {username:?} has no api-version"));
    }
    if device.is_empty() {
        return Err(format!("user name {username:?} has no device id"));
    }
    Ok(Username {
        host: segs.first().copied().unwrap_or("").to_string(),
        device: device.to_string(),
        module: module.to_string(),
        params,
    })
}

/// Checks a CONNECT like edgeHub. Err((CONNACK code, reason)); the token's `se` when parsed.
fn authenticate(
    cfg: &EdgeHubConfig,
    connect: &rumqttc::mqttbytes::v4::Connect,
    now: SystemTime,
) -> (Result<(), (u8, String)>, Option<u64>) {
    let (username, password) = match &connect.login {
        Some(l) => (l.username.as_str(), l.password.as_str()),
        None => ("", ""),
    };
    if connect.client_id.trim().is_empty() {
        return (Err((3, "empty client id".into())), None);
    }
    let user = match parse_username(username) {
        Ok(u) => u,
        Err(e) => return (Err((3, e)), None),
    };
    if password.is_empty() {
        return (
            Err((
                5,
                "no password (SAS token) and no client certificate".into(),
            )),
            None,
        );
    }
    let identity = if user.module.is_empty() {
        user.device.clone()
    } else {
        format!("{}/{}", user.device, user.module)
    };
    let token = match parse_sas(password) {
        Ok(t) => t,
        Err(e) => return (Err((5, format!("token does not parse: {e}"))), None),
    };
    let expiry = token.expiry.filter(|e| *e >= 0.0).map(|e| e as u64);
    let fail = |reason: String| (Err((5, reason)), expiry);
    if connect.client_id != identity {
        return fail(format!(
            "client id {:?} is not the identity {identity:?} of the user name",
            connect.client_id
        ));
    }
    if user.host != cfg.hub_host {
        return fail(format!(
            "user name host {:?} is not the hub host {:?}",
            user.host, cfg.hub_host
        ));
    }
    if user.device != cfg.device_id || user.module != cfg.module_id {
        return fail(format!("unknown identity {identity:?}"));
    }
    let Some(se) = token.expiry else {
        return fail(format!("se {:?} is not a number", token.se));
    };
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if se + cfg.clock_skew.as_secs_f64() < now_secs {
        return fail(format!("token expired (se {se}, now {now_secs:.0})"));
    }
    let to_sign = format!("{}\n{}", token.sr, token.se);
    let keys = std::iter::once(&cfg.module_key).chain(cfg.secondary_key.iter());
    let matches = keys.filter_map(|k| B64.decode(k).ok()).any(|key| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        B64.encode(mac.finalize().into_bytes()) == token.sig
    });
    if !matches {
        return fail(format!(
            "signature {:?} does not match HMAC-SHA256 of sr {:?} + \"\\n\" + se {:?} with the module key",
            token.sig, token.sr, token.se
        ));
    }
    let audience = url_decode(url_decode(&token.sr).trim());
    let expected = format!(
        "{}/devices/{}/modules/{}",
        cfg.hub_host, cfg.device_id, cfg.module_id
    );
    if audience != expected {
        return fail(format!("audience {audience:?} is not {expected:?}"));
    }
    (Ok(()), expiry)
}

struct Sas {
    sr: String,
    sig: String,
    se: String,
    expiry: Option<f64>,
}

/// The service SDK's `SharedAccessSignature.Parse`.
fn parse_sas(token: &str) -> Result<Sas, String> {
    let parts: Vec<&str> = token.split(char::is_whitespace).collect();
    if parts.len() != 2 || parts[0] != "SharedAccessSignature" {
        return Err("not `SharedAccessSignature <fields>`".into());
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for field in parts[1].trim().split('&') {
        if field.is_empty() {
            continue;
        }
        let mut kv = field.split('=');
        let key = kv.next().unwrap_or("");
        let Some(value) = kv.next() else {
            return Err(format!("field {field:?} has no '='"));
        };
        let value = if key.eq_ignore_ascii_case("sr") {
            value.to_string()
        } else {
            url_decode(value)
        };
        if fields.insert(key.to_ascii_lowercase(), value).is_some() {
            return Err(format!("duplicate field {key:?}"));
        }
    }
    let sig = fields.remove("sig").ok_or("missing field sig")?;
    let se = fields.remove("se").ok_or("missing field se")?;
    let sr = fields.remove("sr").ok_or("missing field sr")?;
    let expiry = se.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    Ok(Sas {
        sr,
        sig,
        se,
        expiry,
    })
}
