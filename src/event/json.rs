//! JSON text for the envelope and the high-rate event kinds, written directly into a buffer.
//!
//! `ProcessCreate`, `ProcessTerminate` and `ConnectionCreate` are nearly every event an exec or
//! connection storm produces, and serde_json's generic path (field by field through the
//! `Serializer` trait, a byte-at-a-time escape scan, `fmt` for addresses and ports) was about half
//! of the pipeline's cost per event. Here the field names are constants, strings are scanned eight
//! bytes at a time, and numbers and IPv4 addresses are written without `fmt`. Every other kind
//! still goes through serde. The output is byte for byte serde_json's (`encode_tests` compares
//! both on every kind, odd strings and random text), so messages and their sizes do not change.

use super::{
    Category, ConnectionCreate, Direction, Event, EventType, ExtraDetails, Payload, ProcessCreate,
    ProcessTerminate, timestamp,
};
use std::io::Write;
use std::net::IpAddr;
use uuid::Uuid;

/// Appends the event object: the envelope, then its payload array.
pub fn event(out: &mut Vec<u8>, e: &Event) {
    let kind = e.kind();
    out.extend_from_slice(b"{\"Id\":\"");
    out.extend_from_slice(
        e.id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"TimestampLocal\":");
    string(out, timestamp::local(&e.time).as_str());
    out.extend_from_slice(b",\"TimestampUTC\":");
    string(out, timestamp::utc(&e.time).as_str());
    out.extend_from_slice(b",\"Category\":\"");
    out.extend_from_slice(category(e.category).as_bytes());
    out.extend_from_slice(b"\",\"Name\":\"");
    out.extend_from_slice(kind.name().as_bytes());
    out.extend_from_slice(b"\",\"EventType\":\"");
    out.extend_from_slice(event_type(kind.event_type()).as_bytes());
    out.extend_from_slice(b"\",\"IsEmpty\":");
    out.extend_from_slice(if e.is_empty() { b"true" } else { b"false" });
    out.extend_from_slice(b",\"PayloadSchemaVersion\":\"1.0\",\"Payload\":");
    match &e.payload {
        Payload::ProcessCreate(v) => array(out, v, process_create),
        Payload::ProcessTerminate(v) => array(out, v, process_terminate),
        Payload::ConnectionCreate(v) => array(out, v, connection_create),
        other => serde_json::to_writer(&mut *out, other)
            .expect("payloads hold only strings, numbers and maps with string keys"),
    }
    out.push(b'}');
}

fn category(c: Category) -> &'static str {
    match c {
        Category::Periodic => "Periodic",
        Category::Triggered => "Triggered",
        Category::Aggregated => "Aggregated",
    }
}

fn event_type(t: EventType) -> &'static str {
    match t {
        EventType::Security => "Security",
        EventType::Operational => "Operational",
        EventType::Diagnostic => "Diagnostic",
    }
}

fn array<T>(out: &mut Vec<u8>, records: &[T], write: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, r);
    }
    out.push(b']');
}

fn process_create(out: &mut Vec<u8>, r: &ProcessCreate) {
    out.extend_from_slice(b"{\"Executable\":");
    string(out, &r.executable);
    out.extend_from_slice(b",\"CommandLine\":");
    string(out, &r.command_line);
    out.extend_from_slice(b",\"ProcessId\":");
    uint(out, r.process_id.into());
    out.extend_from_slice(b",\"ParentProcessId\":");
    uint(out, r.parent_process_id.into());
    out.extend_from_slice(b",\"UserId\":");
    string(out, &r.user_id);
    if let Some(name) = &r.user_name {
        out.extend_from_slice(b",\"UserName\":");
        string(out, name);
    }
    extra_details(out, &r.extra_details);
    out.push(b'}');
}

fn process_terminate(out: &mut Vec<u8>, r: &ProcessTerminate) {
    out.extend_from_slice(b"{\"Executable\":");
    string(out, &r.executable);
    out.extend_from_slice(b",\"ProcessId\":");
    uint(out, r.process_id.into());
    out.extend_from_slice(b",\"ExitStatus\":");
    int(out, r.exit_status.into());
    extra_details(out, &r.extra_details);
    out.push(b'}');
}

fn connection_create(out: &mut Vec<u8>, r: &ConnectionCreate) {
    out.extend_from_slice(b"{\"RemoteAddress\":\"");
    address(out, &r.remote_address);
    out.extend_from_slice(b"\",\"RemotePort\":\"");
    uint(out, r.remote_port.into());
    out.push(b'"');
    if let Some(a) = &r.local_address {
        out.extend_from_slice(b",\"LocalAddress\":\"");
        address(out, a);
        out.push(b'"');
    }
    if let Some(p) = r.local_port {
        out.extend_from_slice(b",\"LocalPort\":\"");
        uint(out, p.into());
        out.push(b'"');
    }
    out.extend_from_slice(match r.direction {
        Direction::In => b",\"Direction\":\"In\"",
        Direction::Out => b",\"Direction\":\"Out\"",
    });
    out.extend_from_slice(b",\"Protocol\":");
    string(out, &r.protocol);
    out.extend_from_slice(b",\"ProcessId\":");
    uint(out, r.process_id.into());
    if let Some(uid) = &r.user_id {
        out.extend_from_slice(b",\"UserId\":");
        string(out, uid);
    }
    out.extend_from_slice(b",\"Executable\":");
    string(out, &r.executable);
    if let Some(c) = &r.command_line {
        out.extend_from_slice(b",\"CommandLine\":");
        string(out, c);
    }
    extra_details(out, &r.extra_details);
    out.push(b'}');
}

/// `,"ExtraDetails":{…}` in key order, or nothing when there are none (as the records' serde
/// attributes say: `skip_serializing_if = "ExtraDetails::is_empty"`).
fn extra_details(out: &mut Vec<u8>, extra: &ExtraDetails) {
    if extra.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"ExtraDetails\":{");
    for (i, (k, v)) in extra.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// An address as `Display` writes it (what serde does for a human-readable format); IPv4, the
/// common case, without `fmt`.
fn address(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                uint(out, octet.into());
            }
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A number in decimal.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub fn int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    uint(out, n.unsigned_abs());
}

const LANES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes in `w` is below 0x20, a quote or a backslash: the bytes JSON
/// (and serde_json) escapes. Exact as a yes/no answer: `(x - 0x01…) & !x & 0x80…` is non-zero
/// exactly when some byte of `x` is zero, and with `0x20…` it finds bytes below 0x20.
fn word_needs_escape(w: u64) -> bool {
    let control = w.wrapping_sub(LANES * 0x20) & !w;
    let q = w ^ (LANES * u64::from(b'"'));
    let quote = q.wrapping_sub(LANES) & !q;
    let b = w ^ (LANES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(LANES) & !b;
    (control | quote | backslash) & HIGH_BITS != 0
}

/// The character after the backslash for a byte that must be escaped (`u` for `\u00XX`), or 0.
fn escape_of(b: u8) -> u8 {
    match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0..=0x1f => b'u',
        _ => 0,
    }
}

/// A quoted, escaped JSON string, escaped exactly as serde_json does (control characters,
/// quote and backslash; everything else, non-ASCII included, as is).
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().expect("a slice of eight bytes"));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let esc = escape_of(b);
        if esc != 0 {
            out.extend_from_slice(&bytes[start..i]);
            if esc == b'u' {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.push(b'\\');
                out.push(esc);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_string(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    #[test]
    fn every_byte_value_is_escaped_as_serde_json_does() {
        for b in 0u8..=0x7f {
            let s = format!("ab{}cdefghij{}", b as char, b as char);
            let mut out = Vec::new();
            string(&mut out, &s);
            assert_eq!(out, serde_string(&s), "byte {b:#x}");
        }
    }

    #[test]
    fn the_word_check_agrees_with_the_byte_check() {
        for b in 0u8..=0xff {
            for pos in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[pos] = b;
                let w = u64::from_le_bytes(bytes);
                assert_eq!(word_needs_escape(w), escape_of(b) != 0, "{b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn numbers_and_addresses() {
        for n in [0u64, 7, 10, 99, 4_294_967_295, u64::MAX] {
            let mut out = Vec::new();
            uint(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for n in [0i64, -1, i64::from(i32::MIN), i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            int(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.7",
            "::ffff:1.2.3.4",
            "2001:db8::1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut out = Vec::new();
            address(&mut out, &ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_does(s in any::<String>()) {
            let mut out = Vec::new();
            string(&mut out, &s);
            prop_assert_eq!(out, serde_string(&s));
        }

        #[test]
        fn mostly_control_and_quote_text(s in "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{1f6e1}]{0,40}") {
            let mut out = Vec::new();
            string(&mut out, &s);
            prop_assert_eq!(out, serde_string(&s));
        }
    }
}
