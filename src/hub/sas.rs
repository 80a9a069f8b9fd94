//! SAS tokens for the MQTT password (iot-edge-protocol.md §3).
//!
//! `SharedAccessSignature sr={sr}&sig={sig}&se={se}` where `sr` is the URL-encoded audience, the
//! signed bytes are exactly `{sr}\n{se}`, and `sig` is the base64 HMAC-SHA256, percent-encoded
//! (edgeHub URL-decodes it: a raw `+` would become a space). MQTT 3.1.1 cannot refresh a
//! password in-band, so the session reconnects with a fresh token at 80 % of its lifetime, as the
//! C SDK does.

use super::Error;
use super::workload::WorkloadClient;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Encoded in `sr` and `sig`: everything but the RFC 3986 unreserved characters.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The C SDK's default token lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// What signs the token: the workload API (the key stays with the runtime) or a key from a
/// connection string. An enum rather than a trait object: two real implementations, and tests
/// use `Key` or a workload API double.
#[derive(Clone)]
pub enum Signer {
    Workload(Arc<WorkloadClient>),
    Key(Arc<[u8]>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Workload(_) => f.write_str("Signer::Workload"),
            Signer::Key(_) => f.write_str("Signer::Key(…)"),
        }
    }
}

impl Signer {
    /// The raw HMAC-SHA256 digest of `data`.
    pub async fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            Signer::Workload(client) => client.sign(data).await,
            Signer::Key(key) => Ok(hmac_sha256(key, data)),
        }
    }
}

/// HMAC-SHA256 with a raw (already base64-decoded) key.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `{hub}/devices/{device}/modules/{module}` (or without the module part for a device).
pub fn audience(hub_host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{hub_host}/devices/{device_id}/modules/{m}"),
        None => format!("{hub_host}/devices/{device_id}"),
    }
}

/// Percent-encodes everything outside the unreserved set (`/` → `%2F`, `+` → `%2B`, `=` → `%3D`).
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODE).to_string()
}

/// The exact bytes signed: the encoded `sr`, a newline, the expiry.
pub fn string_to_sign(sr: &str, expiry: u64) -> String {
    format!("{sr}\n{expiry}")
}

/// The token from its parts; `digest` is the raw HMAC.
pub fn format_token(sr: &str, digest: &[u8], expiry: u64) -> String {
    let sig = base64::engine::general_purpose::STANDARD.encode(digest);
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}",
        url_encode(&sig)
    )
}

/// A signed token and when it stops being accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    pub token: String,
    /// Unix seconds.
    pub expiry: u64,
}

impl std::fmt::Debug for SasToken {
    /// A token is a credential for its lifetime: never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken")
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// Signs a token for `audience` valid from `now_unix` for `lifetime`.
pub async fn generate(
    signer: &Signer,
    audience: &str,
    now_unix: u64,
    lifetime: Duration,
) -> Result<SasToken, Error> {
    let sr = url_encode(audience);
    let expiry = now_unix.saturating_add(lifetime.as_secs().max(1));
    let digest = signer.sign(string_to_sign(&sr, expiry).as_bytes()).await?;
    Ok(SasToken {
        token: format_token(&sr, &digest, expiry),
        expiry,
    })
}

/// When to reconnect with a fresh token: at 80 % of its lifetime.
pub fn renewal_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8)
}

/// Seconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU2Nzg5";

    fn key() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(KEY_B64)
            .unwrap()
    }

    #[test]
    fn audience_and_encoding() {
        let aud = audience("myhub.azure-devices.net", "dev1", Some("edgeguard"));
        assert_eq!(
            aud,
            "myhub.azure-devices.net/devices/dev1/modules/edgeguard"
        );
        assert_eq!(
            url_encode(&aud),
            "myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fedgeguard"
        );
        assert_eq!(audience("h", "d", None), "h/devices/d");
        assert_eq!(url_encode("a+b/c=d e"), "a%2Bb%2Fc%3Dd%20e");
    }

    #[tokio::test]
    async fn token_matches_a_hand_computed_vector() {
        let aud = "myhub.azure-devices.net/devices/dev1/modules/edgeguard";
        let expiry = 1_700_003_600u64;
        // By hand: HMAC-SHA256(key, "<encoded sr>\n<se>"), base64, percent-encoded.
        let sr = "myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fedgeguard";
        let mut mac = Hmac::<Sha256>::new_from_slice(&key()).unwrap();
        mac.update(format!("{sr}\n{expiry}").as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sig_enc = sig
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let expected = format!("SharedAccessSignature sr={sr}&sig={sig_enc}&se={expiry}");

        let signer = Signer::Key(key().into());
        let token = generate(&signer, aud, 1_700_000_000, DEFAULT_LIFETIME)
            .await
            .unwrap();
        assert_eq!(token.expiry, expiry);
        assert_eq!(token.token, expected);
        // A SHA-256 digest is 32 bytes: base64 always ends with one '=', which must be encoded.
        assert!(sig.ends_with('='));
        assert!(token.token.contains("%3D&se="));
        assert!(!format!("{token:?}").contains("sig"));
    }

    #[tokio::test]
    async fn plus_and_slash_in_signatures_are_encoded() {
        // Search expiries until the signature holds both '+' and '/'.
        let signer = Signer::Key(key().into());
        let sr = url_encode("h/devices/d/modules/m");
        let mut found = false;
        for se in 0..500u64 {
            let digest = signer
                .sign(string_to_sign(&sr, se).as_bytes())
                .await
                .unwrap();
            let raw = base64::engine::general_purpose::STANDARD.encode(&digest);
            if raw.contains('+') && raw.contains('/') {
                let token = format_token(&sr, &digest, se);
                let sig = token
                    .split("&sig=")
                    .nth(1)
                    .and_then(|s| s.split("&se=").next())
                    .unwrap();
                assert!(!sig.contains('+') && !sig.contains('/') && !sig.contains('='));
                assert!(sig.contains("%2B") && sig.contains("%2F") && sig.ends_with("%3D"));
                let decoded = percent_encoding::percent_decode_str(sig)
                    .decode_utf8()
                    .unwrap();
                assert_eq!(decoded, raw);
                found = true;
                break;
            }
        }
        assert!(found);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn renews_at_eighty_percent() {
        assert_eq!(renewal_after(DEFAULT_LIFETIME), Duration::from_secs(2880));
        assert_eq!(
            renewal_after(Duration::from_secs(10)),
            Duration::from_secs(8)
        );
    }
}
