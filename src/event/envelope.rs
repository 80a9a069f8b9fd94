//! Serialization of events and of the security message v1.0 envelope around them.
//!
//! Events are serialized once, when they enter a queue, so the batcher can count the exact size
//! of every message (`maxMessageSizeInBytes` counts the whole serialized message) and the cache can
//! count its memory in real bytes.

use super::timestamp::{self, Stamp};
use super::{Category, Event, EventKind, Payload};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The version string in the envelope's `AgentVersion`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The only message schema version there is.
pub const MESSAGE_SCHEMA_VERSION: &str = "1.0";

/// The part of every message before and after its events.
///
/// A message is `{prefix}{event},{event},…{SUFFIX}`, so its size is known without building it.
#[derive(Debug, Clone)]
pub struct MessageHeader {
    prefix: Vec<u8>,
}

const SUFFIX: &[u8] = b"]}";

impl MessageHeader {
    pub fn new(agent_version: &str, agent_id: Uuid) -> MessageHeader {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Head<'a> {
            agent_version: &'a str,
            agent_id: Uuid,
            message_schema_version: &'a str,
        }
        let mut prefix = serde_json::to_vec(&Head {
            agent_version,
            agent_id,
            message_schema_version: MESSAGE_SCHEMA_VERSION,
        })
        .expect("serializing plain strings cannot fail");
        // Replace the closing brace with the start of the Events array.
        prefix.pop();
        prefix.extend_from_slice(b",\"Events\":[");
        MessageHeader { prefix }
    }

    /// The size of a message holding events whose encoded sizes add up to `event_bytes`.
    pub fn message_size(&self, event_count: usize, event_bytes: usize) -> usize {
        self.prefix.len() + SUFFIX.len() + event_bytes + event_count.saturating_sub(1)
    }

    /// The largest encoded event that still fits into a message of `max_message_bytes` alone.
    pub fn max_event_size(&self, max_message_bytes: usize) -> usize {
        max_message_bytes.saturating_sub(self.prefix.len() + SUFFIX.len())
    }

    /// Builds the message body from encoded events.
    pub fn build<'a>(&self, events: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        self.build_sized(0, events)
    }

    /// Builds the message body into a buffer of `size` bytes reserved up front (the caller's
    /// [`message_size`](Self::message_size)), so a 200 KB body is not copied on every doubling.
    pub fn build_sized<'a>(
        &self,
        size: usize,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(self.prefix.len() + SUFFIX.len()));
        out.extend_from_slice(&self.prefix);
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e);
        }
        out.extend_from_slice(SUFFIX);
        out
    }
}

/// An event serialized to its JSON object, ready to be put into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub kind: EventKind,
    pub bytes: Box<[u8]>,
    /// Names of payload fields that were shortened to fit into a message.
    pub truncated: bool,
}

impl EncodedEvent {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("{kind} event of {size} bytes does not fit into a message of at most {limit} bytes")]
    TooLarge {
        kind: EventKind,
        size: usize,
        limit: usize,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Wire<'a> {
    id: Uuid,
    timestamp_local: Stamp,
    #[serde(rename = "TimestampUTC")]
    timestamp_utc: Stamp,
    category: Category,
    name: &'static str,
    event_type: super::EventType,
    is_empty: bool,
    payload_schema_version: &'static str,
    payload: &'a Payload,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            id: self.id,
            timestamp_local: timestamp::local(&self.time),
            timestamp_utc: timestamp::utc(&self.time),
            category: self.category,
            name: self.kind().name(),
            event_type: self.kind().event_type(),
            is_empty: self.is_empty(),
            payload_schema_version: "1.0",
            payload: &self.payload,
        }
        .serialize(s)
    }
}

/// Room reserved by [`encode`]: most events are 0.5–1 KiB, so one allocation usually suffices.
const ENCODE_CAPACITY: usize = 1024;

/// Serializes one event object.
pub fn encode(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    encode_into(event, &mut out);
    out
}

/// Appends one serialized event object to `out` (no intermediate buffer or `Value`); the same
/// bytes as serde_json on [`Event`]'s `Serialize`, written by [`super::json`].
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    super::json::event(out, event);
}

/// Serializes an event so that each piece is at most `limit` bytes.
///
/// A snapshot with many records is split into several events of the same kind; a single record
/// that is still too large has its longest strings shortened (named in `ExtraDetails.Truncated`).
/// Only when even that cannot make it fit is the event refused, for the caller to count as dropped.
pub fn encode_fitting(event: &Event, limit: usize) -> Result<Vec<EncodedEvent>, EncodeError> {
    let mut out = Vec::with_capacity(1);
    encode_fitting_into(event, limit, &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// [`encode_fitting`] for the hot path: serializes through the caller's `scratch` buffer (kept
/// between calls, so encoding does not grow a fresh `Vec` per event) and appends the pieces to
/// `out`. Each piece is copied once into an exactly sized allocation. The event is cloned only
/// when it has to be split.
pub fn encode_fitting_into(
    event: &Event,
    limit: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<EncodedEvent>,
) -> Result<(), EncodeError> {
    scratch.clear();
    encode_into(event, scratch);
    if scratch.len() <= limit {
        out.push(EncodedEvent {
            kind: event.kind(),
            bytes: Box::from(scratch.as_slice()),
            truncated: false,
        });
        return Ok(());
    }
    if event.payload.len() > 1 {
        let mut first = event.clone();
        let mut second = first.clone();
        second.id = super::new_id();
        second.payload = first.payload.split_off(first.payload.len() / 2);
        encode_fitting_into(&first, limit, scratch, out)?;
        return encode_fitting_into(&second, limit, scratch, out);
    }
    let kind = event.kind();
    match truncate(event, limit) {
        Some(bytes) => {
            out.push(EncodedEvent {
                kind,
                bytes: bytes.into_boxed_slice(),
                truncated: true,
            });
            Ok(())
        }
        None => Err(EncodeError::TooLarge {
            kind,
            size: scratch.len(),
            limit,
        }),
    }
}

const TRUNCATION_MARK: &str = "...";

/// Shortens the longest strings of a single-record payload until the event fits in `limit`.
fn truncate(event: &Event, limit: usize) -> Option<Vec<u8>> {
    let mut value = serde_json::to_value(event).ok()?;
    let mut truncated_fields: Vec<String> = Vec::new();
    for _ in 0..32 {
        let len = serde_json::to_vec(&value).ok()?.len();
        if len <= limit {
            return serde_json::to_vec(&value).ok();
        }
        let excess = len - limit;
        let record = value.get_mut("Payload")?.get_mut(0)?.as_object_mut()?;
        let field = longest_string_field(record)?;
        let slot = match field.1 {
            Some(ref extra_key) => record
                .get_mut("ExtraDetails")?
                .get_mut(extra_key.as_str())?,
            None => record.get_mut(field.0.as_str())?,
        };
        let s = slot.as_str()?;
        // Cut the raw text by the excess plus room for the mark and the note added below.
        let want = s.len().checked_sub(excess + TRUNCATION_MARK.len() + 64)?;
        let mut cut = want;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let shortened = format!("{}{}", &s[..cut], TRUNCATION_MARK);
        *slot = Value::String(shortened);
        let name = match field.1 {
            Some(k) => format!("ExtraDetails.{k}"),
            None => field.0,
        };
        if !truncated_fields.contains(&name) {
            truncated_fields.push(name);
        }
        let extra = record
            .entry("ExtraDetails")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()?;
        extra.insert(
            "Truncated".to_string(),
            Value::String(truncated_fields.join(",")),
        );
    }
    None
}

/// The longest string in a record: `(field, None)` for a top-level field, `(_, Some(key))` for a
/// value inside `ExtraDetails`.
fn longest_string_field(
    record: &serde_json::Map<String, Value>,
) -> Option<(String, Option<String>)> {
    let mut best: Option<(usize, String, Option<String>)> = None;
    let mut consider = |len: usize, field: &str, extra: Option<&str>| {
        if best.as_ref().is_none_or(|b| len > b.0) {
            best = Some((len, field.to_string(), extra.map(str::to_string)));
        }
    };
    for (k, v) in record {
        match v {
            Value::String(s) => consider(s.len(), k, None),
            Value::Object(m) if k == "ExtraDetails" => {
                for (ek, ev) in m {
                    if let Value::String(s) = ev {
                        if ek != "Truncated" {
                            consider(s.len(), k, Some(ek));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    best.map(|(_, f, e)| (f, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ListeningPort, ProcessCreate};

    fn process(cmdline: String) -> Event {
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: "/bin/sh".into(),
            command_line: cmdline,
            process_id: 10,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: Some("root".into()),
            extra_details: Default::default(),
        }]))
    }

    #[test]
    fn message_size_is_exact() {
        let h = MessageHeader::new("1.2.3", Uuid::new_v4());
        let events: Vec<Vec<u8>> = (0..5)
            .map(|i| encode(&process("x".repeat(i * 7))))
            .collect();
        let total: usize = events.iter().map(Vec::len).sum();
        let msg = h.build(events.iter().map(Vec::as_slice));
        assert_eq!(msg.len(), h.message_size(events.len(), total));
        let v: Value = serde_json::from_slice(&msg).unwrap();
        assert_eq!(v["Events"].as_array().unwrap().len(), 5);
        assert_eq!(v["MessageSchemaVersion"], "1.0");
    }

    #[test]
    fn long_command_line_is_truncated_and_noted() {
        let e = process("a".repeat(10_000));
        let pieces = encode_fitting(&e, 2_000).unwrap();
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].truncated);
        assert!(pieces[0].len() <= 2_000);
        let v: Value = serde_json::from_slice(&pieces[0].bytes).unwrap();
        assert_eq!(v["Payload"][0]["ExtraDetails"]["Truncated"], "CommandLine");
        assert!(
            v["Payload"][0]["CommandLine"]
                .as_str()
                .unwrap()
                .ends_with("...")
        );
    }

    #[test]
    fn multibyte_text_is_cut_on_a_char_boundary() {
        let e = process("é".repeat(5_000));
        let pieces = encode_fitting(&e, 1_500).unwrap();
        let v: Value = serde_json::from_slice(&pieces[0].bytes).unwrap();
        assert!(
            v["Payload"][0]["CommandLine"]
                .as_str()
                .unwrap()
                .starts_with("éé")
        );
    }

    #[test]
    fn large_snapshot_is_split_into_fitting_events() {
        let ports: Vec<ListeningPort> = (0..2000)
            .map(|p| ListeningPort {
                protocol: "TCP".into(),
                local_address: Some("127.0.0.1".parse().unwrap()),
                local_port: p,
                remote_address: None,
                remote_port: None,
                extra_details: Default::default(),
            })
            .collect();
        let e = Event::new(Payload::ListeningPorts(ports));
        let pieces = encode_fitting(&e, 8_000).unwrap();
        assert!(pieces.len() > 1);
        let mut seen = 0;
        for p in &pieces {
            assert!(p.len() <= 8_000);
            let v: Value = serde_json::from_slice(&p.bytes).unwrap();
            seen += v["Payload"].as_array().unwrap().len();
        }
        assert_eq!(seen, 2000);
    }

    #[test]
    fn an_event_that_cannot_fit_is_refused() {
        let e = process("short".into());
        let err = encode_fitting(&e, 50).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::TooLarge {
                kind: EventKind::ProcessCreate,
                ..
            }
        ));
    }
}
