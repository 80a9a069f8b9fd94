//! Message property bags: the `k=v&k2=v2` tail of telemetry and input topics
//! (iot-edge-protocol.md §4). Every key and value is percent-encoded; a raw `/` would end the
//! bag and a raw `=` in a value is an error. Bags from other modules are untrusted: decoding
//! returns errors, never panics, and caps what it keeps.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Encoded: everything but the unreserved characters, as the example in §4 shows
/// (`%24.on=securityEvents&%24.ct=application%2Fjson&%24.ce=utf-8`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// System property names.
pub const MESSAGE_ID: &str = "$.mid";
pub const CORRELATION_ID: &str = "$.cid";
pub const CONTENT_TYPE: &str = "$.ct";
pub const CONTENT_ENCODING: &str = "$.ce";
pub const OUTPUT_NAME: &str = "$.on";
pub const CREATION_TIME: &str = "$.ctime";
pub const INTERFACE_ID: &str = "$.ifid";
pub const CONNECTION_DEVICE_ID: &str = "$.cdid";
pub const CONNECTION_MODULE_ID: &str = "$.cmid";
/// The application property carrying the message's priority (security-events.md §1).
pub const MESSAGE_PRIORITY: &str = "MessagePriority";
/// `$.ifid` value marking an Azure security message.
pub const SECURITY_INTERFACE_ID: &str = "urn:azureiot:Security:SecurityAgent:1";

/// Most properties kept from one bag; the rest are an error (no module sends hundreds).
pub const MAX_PROPERTIES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BagError {
    #[error("property {index} has an empty name")]
    EmptyKey { index: usize },
    #[error("property {key:?} has a raw '=' in its value")]
    RawEquals { key: String },
    #[error("property {index} is not valid UTF-8 once decoded")]
    NotUtf8 { index: usize },
    #[error("more than {MAX_PROPERTIES} properties")]
    TooMany,
}

/// An ordered list of properties (names may repeat in a hostile bag; lookups take the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyBag(pub Vec<(String, String)>);

impl PropertyBag {
    pub fn new() -> PropertyBag {
        PropertyBag(Vec::new())
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((key.into(), value.into()));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `k=v&k2=v2`, every key and value percent-encoded. A property with an empty value is
    /// written `k=` so it decodes back to the same bag.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.extend(utf8_percent_encode(k, ENCODE));
            out.push('=');
            out.extend(utf8_percent_encode(v, ENCODE));
        }
        out
    }

    /// Bytes the bag adds to a routed message: every key and value, decoded (edgeHub's
    /// 256 KB limit counts them that way; the encoded form is at least as long, so callers
    /// that want a safe bound use [`Self::encode`]'s length instead).
    pub fn routed_size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Parses a bag. Empty pieces (`a=1&&b=2`, a trailing `&`) are skipped; a key without `=`
    /// has an empty value (IoT Hub allows value-less properties).
    pub fn decode(bag: &str) -> Result<PropertyBag, BagError> {
        let mut out = Vec::new();
        for (index, piece) in bag.split('&').filter(|p| !p.is_empty()).enumerate() {
            if out.len() == MAX_PROPERTIES {
                return Err(BagError::TooMany);
            }
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            let key = decode_part(k).ok_or(BagError::NotUtf8 { index })?;
            if key.is_empty() {
                return Err(BagError::EmptyKey { index });
            }
            if v.contains('=') {
                return Err(BagError::RawEquals { key });
            }
            let value = decode_part(v).ok_or(BagError::NotUtf8 { index })?;
            out.push((key, value));
        }
        Ok(PropertyBag(out))
    }
}

/// Percent-decodes one key or value. `+` stays `+` (this is not form encoding). An invalid
/// escape (`%zz`) is kept as it is, as URL decoders do.
fn decode_part(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> PropertyBag {
        PropertyBag(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn encodes_like_the_protocol_example() {
        let b = bag(&[
            (OUTPUT_NAME, "securityEvents"),
            (CONTENT_TYPE, "application/json"),
            (CONTENT_ENCODING, "utf-8"),
        ]);
        assert_eq!(
            b.encode(),
            "%24.on=securityEvents&%24.ct=application%2Fjson&%24.ce=utf-8"
        );
        assert_eq!(
            bag(&[(INTERFACE_ID, SECURITY_INTERFACE_ID)]).encode(),
            "%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
        );
    }

    #[test]
    fn round_trips() {
        for b in [
            bag(&[]),
            bag(&[("a", "")]),
            bag(&[("k&=/", "v&=/ +%"), ("ünï", "çödé"), ("$.mid", "1-2-3")]),
            bag(&[("MessagePriority", "High"), ("x", "a b")]),
        ] {
            let encoded = b.encode();
            assert!(!encoded.contains('/'), "{encoded}");
            assert_eq!(PropertyBag::decode(&encoded).unwrap(), b, "{encoded}");
        }
    }

    #[test]
    fn decodes_liberally_where_harmless() {
        let b = PropertyBag::decode("a=1&&b&c=%zz&d=x+y&").unwrap();
        assert_eq!(b, bag(&[("a", "1"), ("b", ""), ("c", "%zz"), ("d", "x+y")]));
        assert_eq!(b.get("c"), Some("%zz"));
        assert_eq!(b.get("nope"), None);
        assert_eq!(PropertyBag::decode("").unwrap(), bag(&[]));
    }

    #[test]
    fn malformed_bags_are_errors() {
        assert_eq!(
            PropertyBag::decode("a=1&=2").unwrap_err(),
            BagError::EmptyKey { index: 1 }
        );
        assert_eq!(
            PropertyBag::decode("a=b=c").unwrap_err(),
            BagError::RawEquals { key: "a".into() }
        );
        assert_eq!(
            PropertyBag::decode("a=%ff%fe").unwrap_err(),
            BagError::NotUtf8 { index: 0 }
        );
        let many = (0..=MAX_PROPERTIES)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(PropertyBag::decode(&many).unwrap_err(), BagError::TooMany);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let s: String = (0..len)
                .map(|i| {
                    let c = (seed >> (i % 56)) as u8;
                    ['a', '=', '&', '%', '2', 'F', 'ü', '/', '+'][(c % 9) as usize]
                })
                .collect();
            let _ = PropertyBag::decode(&s);
        }
    }
}
