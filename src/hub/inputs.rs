//! Security messages from other modules, arriving on the `securityMessages` input (a route
//! `FROM /messages/modules/other/outputs/* INTO BrokeredEndpoint("/modules/edgeguard/inputs/securityMessages")`).
//!
//! They are untrusted bytes: the size is capped before parsing, the envelope is checked field by
//! field, and each event is validated on its own (known `Name`, matching `EventType`, a payload
//! of that kind, sane timestamps). Valid events join the pipeline like our own: they keep their
//! `Id`, `TimestampLocal` and `Category` (they happened on the sender's side, at that time, and an
//! `Aggregated` event stays one), and are then filtered by priority, aggregated and batched under
//! our envelope. A bad event is rejected alone; a bad envelope rejects the message. Either way
//! the input is acknowledged (rumqttc PUBACKs on receipt): a message that cannot be parsed now
//! never will be, and redelivering it forever would block the input.

use crate::event::{Category, Event, EventKind, EventType, Payload};
use crate::metrics::{DropReason, Metrics};
use crate::text::shorten;
use chrono::DateTime;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::properties::{CONNECTION_DEVICE_ID, CONNECTION_MODULE_ID, PropertyBag};

/// The input name other modules route security messages to.
pub const DEFAULT_INPUT: &str = "securityMessages";
/// A routed message is at most 256 KB; anything larger did not come through edgeHub.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// More events than a 256 KB message can sensibly hold.
pub const MAX_EVENTS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("message of {size} bytes exceeds {MAX_MESSAGE_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("message is not valid JSON (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("envelope: {0}")]
    Envelope(String),
}

/// What came out of one message.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// One reason per rejected event, e.g. `event 3 (Id …): unknown Name "Foo"`.
    pub rejected: Vec<String>,
}

/// One message from another module, as the hub task hands it over.
#[derive(Debug)]
pub struct InputMessage {
    pub input: String,
    pub properties: PropertyBag,
    pub payload: Vec<u8>,
}

/// Parses and validates a security message v1.0.
pub fn parse_security_message(bytes: &[u8]) -> Result<Parsed, InputError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(InputError::TooLarge { size: bytes.len() });
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| InputError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    let envelope = |m: &str| InputError::Envelope(m.to_string());
    let obj = doc
        .as_object()
        .ok_or_else(|| envelope("not a JSON object"))?;
    for field in ["AgentVersion", "AgentId"] {
        match obj.get(field) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => {}
            Some(_) => return Err(envelope(&format!("{field} is not a short string"))),
            None => return Err(envelope(&format!("{field} is missing"))),
        }
    }
    match obj.get("MessageSchemaVersion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(v) => {
            return Err(envelope(&format!(
                "MessageSchemaVersion {} is not \"1.0\"",
                short_json(v)
            )));
        }
        None => return Err(envelope("MessageSchemaVersion is missing")),
    }
    let events = obj
        .get("Events")
        .and_then(Value::as_array)
        .ok_or_else(|| envelope("Events is missing or not an array"))?;
    if events.len() > MAX_EVENTS {
        return Err(envelope(&format!(
            "{} events exceed the limit of {MAX_EVENTS}",
            events.len()
        )));
    }
    let mut parsed = Parsed::default();
    for (i, e) in events.iter().enumerate() {
        match parse_event(e) {
            Ok(event) => parsed.events.push(event),
            Err(reason) => {
                let id = e
                    .get("Id")
                    .and_then(Value::as_str)
                    .map(|id| format!(" (Id {})", shorten(id, 40)))
                    .unwrap_or_default();
                parsed.rejected.push(format!("event {i}{id}: {reason}"));
            }
        }
    }
    Ok(parsed)
}

fn parse_event(e: &Value) -> Result<Event, String> {
    let obj = e.as_object().ok_or("not a JSON object")?;
    let string = |field: &str| -> Result<&str, String> {
        obj.get(field)
            .ok_or_else(|| format!("{field} is missing"))?
            .as_str()
            .ok_or_else(|| format!("{field} is not a string"))
    };
    let name = string("Name")?;
    let kind = EventKind::from_name(name)
        .ok_or_else(|| format!("unknown Name {}", short_json(&Value::from(name))))?;
    let id = Uuid::parse_str(string("Id")?).map_err(|_| "Id is not a GUID".to_string())?;
    let time = DateTime::parse_from_rfc3339(string("TimestampLocal")?)
        .map_err(|_| "TimestampLocal is not an RFC 3339 time".to_string())?;
    let utc = DateTime::parse_from_rfc3339(string("TimestampUTC")?)
        .map_err(|_| "TimestampUTC is not an RFC 3339 time".to_string())?;
    if (time - utc).num_seconds().abs() > 1 {
        return Err("TimestampLocal and TimestampUTC are different instants".into());
    }
    let category: Category =
        serde_json::from_value(obj.get("Category").cloned().unwrap_or_default())
            .map_err(|_| "Category is not Periodic, Triggered or Aggregated".to_string())?;
    let event_type: EventType =
        serde_json::from_value(obj.get("EventType").cloned().unwrap_or_default())
            .map_err(|_| "EventType is not Security, Operational or Diagnostic".to_string())?;
    if event_type != kind.event_type() {
        return Err(format!(
            "EventType {event_type:?} does not match {name} ({:?})",
            kind.event_type()
        ));
    }
    string("PayloadSchemaVersion")?;
    let is_empty = obj
        .get("IsEmpty")
        .ok_or("IsEmpty is missing")?
        .as_bool()
        .ok_or("IsEmpty is not a boolean")?;
    let raw = obj.get("Payload").ok_or("Payload is missing")?;
    if !raw.is_array() {
        return Err("Payload is not an array".into());
    }
    let payload = Payload::from_json(kind, raw.clone()).map_err(|e| {
        format!(
            "Payload is not a valid {name} payload: {}",
            shorten(&e.to_string(), 200)
        )
    })?;
    if is_empty != payload.is_empty() {
        return Err("IsEmpty does not match the payload".into());
    }
    if payload.is_empty() && category != Category::Periodic {
        return Err(format!("a {category:?} event cannot be empty"));
    }
    Ok(Event {
        id,
        time,
        category,
        payload,
        foreign: true,
    })
}

/// Events a sender may send at once (a full message's worth)...
pub const QUOTA_BURST: f64 = MAX_EVENTS as f64;
/// ...and per second after that: a module that forwards its leaf devices' security events is
/// far below it; one that floods the input is cut off instead of filling the agent's cache.
pub const QUOTA_PER_SECOND: f64 = 20.0;
/// Senders tracked at once; beyond, the one heard from least recently is forgotten.
const MAX_SENDERS: usize = 64;
/// Senders named in metric labels; the rest are counted as `other`.
const MAX_SENDER_LABELS: usize = 32;
/// A sender's rejected or over-quota events are logged at most this often (with counts).
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// One sender's token bucket and its log state.
#[derive(Debug)]
struct Sender {
    tokens: f64,
    refilled: tokio::time::Instant,
    label: String,
    logged: Option<tokio::time::Instant>,
    /// Refused since the last log line: (over quota, rejected).
    unlogged: (u64, u64),
}

/// Per-sender quotas: a token bucket each, bounded in number.
#[derive(Debug, Default)]
struct Quotas {
    senders: std::collections::HashMap<String, Sender>,
    labels: std::collections::HashSet<String>,
}

impl Quotas {
    fn sender(&mut self, key: &str, now: tokio::time::Instant) -> &mut Sender {
        if !self.senders.contains_key(key) {
            if self.senders.len() >= MAX_SENDERS
                && let Some(oldest) = self
                    .senders
                    .iter()
                    .min_by_key(|(_, s)| s.refilled)
                    .map(|(k, _)| k.clone())
            {
                self.senders.remove(&oldest);
            }
            let label = if self.labels.contains(key) || self.labels.len() < MAX_SENDER_LABELS {
                self.labels.insert(key.to_string());
                key.to_string()
            } else {
                "other".to_string()
            };
            self.senders.insert(
                key.to_string(),
                Sender {
                    tokens: QUOTA_BURST,
                    refilled: now,
                    label,
                    logged: None,
                    unlogged: (0, 0),
                },
            );
        }
        let s = self.senders.get_mut(key).expect("inserted above");
        let elapsed = now.duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * QUOTA_PER_SECOND).min(QUOTA_BURST);
        s.refilled = now;
        s
    }
}

impl Sender {
    /// Takes up to `n` tokens; returns how many events may pass.
    fn take(&mut self, n: usize) -> usize {
        let allowed = (self.tokens.floor() as usize).min(n);
        self.tokens -= allowed as f64;
        allowed
    }

    /// Whether a warning about this sender is due (at most one a minute).
    fn log_due(&mut self, now: tokio::time::Instant) -> bool {
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            self.logged = Some(now);
            true
        } else {
            false
        }
    }
}

/// The inputs task: validates each message, applies each sender's quota, and sends the events
/// into the pipeline, waiting for room (inputs are acknowledged already; the bounded channel in
/// front of this task limits a burst, and overflows there are counted by the hub task). Events
/// beyond a sender's quota ([`QUOTA_BURST`], then [`QUOTA_PER_SECOND`]) are dropped and counted
/// (`edgeguard_input_events_total{sender,result="over_quota"}`); warnings about one sender come
/// at most once a minute. Returns when `messages` closes.
pub async fn run(
    mut messages: mpsc::Receiver<InputMessage>,
    events: mpsc::Sender<Event>,
    security_input: String,
    metrics: Arc<Metrics>,
) {
    let mut quotas = Quotas::default();
    while let Some(m) = messages.recv().await {
        if m.input != security_input {
            tracing::debug!(input = %m.input, bytes = m.payload.len(), "ignoring a message on an input we do not use");
            continue;
        }
        let from_module = m.properties.get(CONNECTION_MODULE_ID).unwrap_or("?");
        let from_device = m.properties.get(CONNECTION_DEVICE_ID).unwrap_or("?");
        let key = format!("{from_device}/{from_module}");
        let now = tokio::time::Instant::now();
        let sender = quotas.sender(&key, now);
        match parse_security_message(&m.payload) {
            Ok(parsed) => {
                let rejected = parsed.rejected.len();
                let offered = parsed.events.len();
                let allowed = sender.take(offered);
                let over = offered - allowed;
                metrics.input_events(&sender.label, "rejected", rejected as u64);
                metrics.input_events(&sender.label, "over_quota", over as u64);
                metrics.input_events(&sender.label, "accepted", allowed as u64);
                if over > 0 {
                    metrics.dropped("inputs", DropReason::InputQuota, over as u64);
                }
                for _ in 0..rejected {
                    metrics.error("inputs", "rejected");
                }
                sender.unlogged.0 += over as u64;
                sender.unlogged.1 += rejected as u64;
                if sender.unlogged != (0, 0) && sender.log_due(now) {
                    let (over_quota, rejected_events) = std::mem::take(&mut sender.unlogged);
                    tracing::warn!(
                        from_device,
                        from_module,
                        over_quota,
                        rejected = rejected_events,
                        first_reason = parsed.rejected.first().map(String::as_str).unwrap_or(""),
                        "refused events from another module (counts since the last such line)"
                    );
                }
                for event in parsed.events.into_iter().take(allowed) {
                    metrics.collected("inputs", event.kind());
                    if events.send(event).await.is_err() {
                        metrics.dropped("inputs", DropReason::Shutdown, 1);
                        return;
                    }
                }
                tracing::debug!(
                    from_device,
                    from_module,
                    allowed,
                    over,
                    rejected,
                    "security message merged"
                );
            }
            Err(e) => {
                metrics.error("inputs", "rejected");
                metrics.input_events(&sender.label, "rejected", 1);
                sender.unlogged.1 += 1;
                if sender.log_due(now) {
                    let (over_quota, rejected_events) = std::mem::take(&mut sender.unlogged);
                    tracing::warn!(
                        from_device,
                        from_module,
                        bytes = m.payload.len(),
                        over_quota,
                        rejected = rejected_events,
                        "rejected a security message from another module: {e}"
                    );
                }
            }
        }
    }
}

fn short_json(v: &Value) -> String {
    shorten(&v.to_string(), 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Login, LoginResult, MessageHeader, envelope};
    use serde_json::json;

    fn login_event() -> Event {
        Event::new(Payload::Login(vec![Login {
            process_id: 42,
            user_id: Some("0".into()),
            user_name: Some("root".into()),
            operation: "Login".into(),
            executable: "/usr/sbin/sshd".into(),
            remote_address: Some("10.0.0.9".parse().unwrap()),
            remote_port: Some(50000),
            local_port: Some(22),
            result: LoginResult::Fail,
            extra_details: Default::default(),
        }]))
    }

    /// A message built by our own encoder: what another edgeguard (or the old agent) sends.
    fn message(events: &[Event]) -> Vec<u8> {
        let header = MessageHeader::new("9.9.9", Uuid::new_v4());
        let encoded: Vec<Vec<u8>> = events.iter().map(envelope::encode).collect();
        header.build(encoded.iter().map(Vec::as_slice))
    }

    fn event_json(e: &Event) -> Value {
        serde_json::to_value(e).unwrap()
    }

    fn with_events(events: Vec<Value>) -> Vec<u8> {
        json!({"AgentVersion": "1.0", "AgentId": "x", "MessageSchemaVersion": "1.0", "Events": events})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_good_envelope_round_trips() {
        let original = login_event();
        let empty = Event::empty_snapshot(EventKind::LocalUsers);
        let parsed = parse_security_message(&message(&[original.clone(), empty.clone()])).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        assert_eq!(parsed.events.len(), 2);
        let e = &parsed.events[0];
        assert_eq!(e.id, original.id);
        assert_eq!(e.category, Category::Triggered);
        assert_eq!(e.payload, original.payload);
        // Milliseconds survive; the instant is the same.
        assert_eq!(e.time.timestamp_millis(), original.time.timestamp_millis());
        assert!(parsed.events[1].is_empty());
    }

    #[test]
    fn bad_json_and_envelopes_reject_the_message() {
        assert!(matches!(
            parse_security_message(b"{not json").unwrap_err(),
            InputError::Json { line: 1, .. }
        ));
        assert!(matches!(
            parse_security_message(b"").unwrap_err(),
            InputError::Json { .. }
        ));
        for doc in [
            json!([]),
            json!({"AgentId": "x", "MessageSchemaVersion": "1.0", "Events": []}),
            json!({"AgentVersion": 1, "AgentId": "x", "MessageSchemaVersion": "1.0", "Events": []}),
            json!({"AgentVersion": "1", "AgentId": "x", "MessageSchemaVersion": "2.0", "Events": []}),
            json!({"AgentVersion": "1", "AgentId": "x", "MessageSchemaVersion": "1.0"}),
            json!({"AgentVersion": "1", "AgentId": "x", "MessageSchemaVersion": "1.0", "Events": {}}),
        ] {
            let e = parse_security_message(doc.to_string().as_bytes()).unwrap_err();
            assert!(matches!(e, InputError::Envelope(_)), "{doc}: {e:?}");
        }
        let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(parse_security_message(deep.as_bytes()).is_err());
    }

    #[test]
    fn bad_events_are_rejected_alone() {
        let good = event_json(&login_event());
        let mut unknown = good.clone();
        unknown["Name"] = json!("NoSuchEvent");
        let mut wrong_type = good.clone();
        wrong_type["EventType"] = json!("Operational");
        let mut bad_payload = good.clone();
        bad_payload["Payload"] = json!([{"ProcessId": "not a number"}]);
        let mut bad_id = good.clone();
        bad_id["Id"] = json!("123");
        let mut bad_time = good.clone();
        bad_time["TimestampLocal"] = json!("yesterday");
        let mut skewed = good.clone();
        skewed["TimestampUTC"] = json!("1999-01-01T00:00:00.000Z");
        let mut empty_triggered = good.clone();
        empty_triggered["Payload"] = json!([]);
        empty_triggered["IsEmpty"] = json!(true);
        let mut lying_empty = good.clone();
        lying_empty["IsEmpty"] = json!(true);
        let mut no_category = good.clone();
        no_category.as_object_mut().unwrap().remove("Category");
        let parsed = parse_security_message(&with_events(vec![
            good.clone(),
            unknown,
            wrong_type,
            bad_payload,
            bad_id,
            bad_time,
            skewed,
            empty_triggered,
            lying_empty,
            no_category,
            json!("not an event"),
        ]))
        .unwrap();
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.rejected.len(), 10, "{:#?}", parsed.rejected);
        assert!(
            parsed.rejected[0].contains("unknown Name \"NoSuchEvent\""),
            "{}",
            parsed.rejected[0]
        );
        assert!(parsed.rejected[0].starts_with("event 1 (Id "));
    }

    #[test]
    fn huge_payloads_are_refused_before_parsing() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            parse_security_message(&big).unwrap_err(),
            InputError::TooLarge {
                size: MAX_MESSAGE_BYTES + 1
            }
        );
        let many: Vec<Value> = (0..=MAX_EVENTS).map(|_| json!(1)).collect();
        assert!(matches!(
            parse_security_message(&with_events(many)).unwrap_err(),
            InputError::Envelope(_)
        ));
    }

    #[tokio::test]
    async fn the_task_merges_good_events_and_counts_bad_ones() {
        let metrics = Arc::new(Metrics::for_tests());
        let (in_tx, in_rx) = mpsc::channel(4);
        let (ev_tx, mut ev_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(in_rx, ev_tx, DEFAULT_INPUT.into(), metrics.clone()));
        let mut props = PropertyBag::new();
        props.push(CONNECTION_MODULE_ID, "other");
        for (input, payload) in [
            ("securityMessages", b"garbage".to_vec()),
            ("somethingElse", message(&[login_event()])),
            ("securityMessages", message(&[login_event()])),
        ] {
            in_tx
                .send(InputMessage {
                    input: input.into(),
                    properties: props.clone(),
                    payload,
                })
                .await
                .unwrap();
        }
        drop(in_tx);
        let e = ev_rx.recv().await.unwrap();
        assert_eq!(e.kind(), EventKind::Login);
        task.await.unwrap();
        assert!(ev_rx.recv().await.is_none());
        assert_eq!(
            metrics.value(
                "edgeguard_errors_total",
                &[("component", "inputs"), ("error_type", "rejected")]
            ),
            Some(1.0)
        );
    }

    fn from(module: &str) -> PropertyBag {
        let mut props = PropertyBag::new();
        props
            .push(CONNECTION_DEVICE_ID, "dev1")
            .push(CONNECTION_MODULE_ID, module);
        props
    }

    #[tokio::test(start_paused = true)]
    async fn each_sender_has_a_quota_and_a_flood_is_cut_off() {
        let metrics = Arc::new(Metrics::for_tests());
        let (in_tx, in_rx) = mpsc::channel(64);
        let (ev_tx, mut ev_rx) = mpsc::channel(8192);
        let task = tokio::spawn(run(in_rx, ev_tx, DEFAULT_INPUT.into(), metrics.clone()));
        let send = |module: &str, n: usize| InputMessage {
            input: DEFAULT_INPUT.into(),
            properties: from(module),
            payload: message(&vec![login_event(); n]),
        };
        // A burst (five messages of 400 events) passes; more right after does not.
        for _ in 0..5 {
            in_tx.send(send("chatty", MAX_EVENTS / 5)).await.unwrap();
        }
        in_tx.send(send("chatty", 10)).await.unwrap();
        // Another sender has a quota of its own.
        in_tx.send(send("quiet", 3)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        // A second later, QUOTA_PER_SECOND more may pass.
        in_tx.send(send("chatty", 100)).await.unwrap();
        drop(in_tx);
        task.await.unwrap();
        let mut got = 0;
        while ev_rx.try_recv().is_ok() {
            got += 1;
        }
        let allowed = QUOTA_PER_SECOND as usize;
        assert_eq!(got, MAX_EVENTS + 3 + allowed);
        let count = |sender: &str, result: &str| {
            metrics.value(
                "edgeguard_input_events_total",
                &[("sender", sender), ("result", result)],
            )
        };
        assert_eq!(
            count("dev1/chatty", "accepted"),
            Some((MAX_EVENTS + allowed) as f64)
        );
        assert_eq!(
            count("dev1/chatty", "over_quota"),
            Some((10 + 100 - allowed) as f64)
        );
        assert_eq!(count("dev1/quiet", "accepted"), Some(3.0));
        assert_eq!(
            metrics.dropped_total("inputs", DropReason::InputQuota),
            (110 - allowed) as u64
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sender_labels_are_bounded() {
        let metrics = Arc::new(Metrics::for_tests());
        let (in_tx, in_rx) = mpsc::channel(128);
        let (ev_tx, mut ev_rx) = mpsc::channel(128);
        let task = tokio::spawn(run(in_rx, ev_tx, DEFAULT_INPUT.into(), metrics.clone()));
        for i in 0..(MAX_SENDER_LABELS + 5) {
            in_tx
                .send(InputMessage {
                    input: DEFAULT_INPUT.into(),
                    properties: from(&format!("m{i}")),
                    payload: message(&[login_event()]),
                })
                .await
                .unwrap();
        }
        drop(in_tx);
        task.await.unwrap();
        while ev_rx.try_recv().is_ok() {}
        let text = metrics.render();
        let labelled = text
            .lines()
            .filter(|l| {
                l.starts_with("edgeguard_input_events_total{") && l.contains("result=\"accepted\"")
            })
            .count();
        assert_eq!(labelled, MAX_SENDER_LABELS + 1, "32 names and `other`");
        assert_eq!(
            metrics.value(
                "edgeguard_input_events_total",
                &[("sender", "other"), ("result", "accepted")]
            ),
            Some(5.0)
        );
    }
}
