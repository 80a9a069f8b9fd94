//! A validator for security messages built from the retired agents' published JSON schemas
//! (shared/reference/asc-security-schemas), with format checking on and `Aggregated` allowed.
//!
//! The schemas refer to each other by relative ids (`messageEventTypeDefinitions_v1_0.json#/ip`);
//! each file gets an absolute `$id` under one base and a retriever serves them from disk, so no
//! network is involved. edgeguard's own event kinds (`schemas/` in this repository) are added to
//! the envelope's list of event kinds.

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{Value, json};
use std::path::PathBuf;

const BASE: &str = "https://asc-schemas.invalid/";

pub fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/asc-security-schemas/security_message")
}

/// Loads one schema file, gives it an absolute id, lets the aggregatable kinds and the
/// envelope accept the `Aggregated` category the old agents actually sent, and
/// `ConnectedHardware` the `Triggered` category of edgeguard's hotplug events.
fn load(name: &str) -> Result<Value, String> {
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let path = if own.exists() {
        own
    } else {
        schema_dir().join("schemas").join(name)
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    v["$id"] = json!(format!("{BASE}{name}"));
    match name {
        "message_v1_0.json" => {
            let event = &mut v["properties"]["Events"]["items"]["oneOf"][0]["allOf"];
            event[0]["properties"]["Category"]["enum"]
                .as_array_mut()
                .ok_or("envelope Category enum moved")?
                .push(json!("Aggregated"));
            event[1]["oneOf"]
                .as_array_mut()
                .ok_or("envelope category/IsEmpty oneOf moved")?
                .push(json!({
                    "type": "object",
                    "properties": {
                        "Category": {"enum": ["Aggregated"]},
                        "IsEmpty": {"enum": [false]},
                        "Payload": {"type": "array", "minItems": 1}
                    }
                }));
            // edgeguard's own event kinds, in the same envelope.
            let kinds = event[2]["oneOf"]
                .as_array_mut()
                .ok_or("envelope event-kind oneOf moved")?;
            for own in own_schemas() {
                kinds.push(json!({ "$ref": format!("{own}#") }));
            }
        }
        // edgeguard sends hotplug events (a device plugged in or removed) as ConnectedHardware
        // of category Triggered; the published schema lists only the periodic snapshot.
        "messageEventSecurityConnectedHardware_v1_0.json" => {
            v["properties"]["Category"]["enum"]
                .as_array_mut()
                .ok_or("ConnectedHardware Category enum moved")?
                .push(json!("Triggered"));
        }
        "messageEventSecurityProcessCreate_v1_0.json"
        | "messageEventSecurityProcessTerminate_v1_0.json"
        | "messageEventSecurityConnectionCreate_v1_0.json" => {
            v["properties"]["Category"]["enum"]
                .as_array_mut()
                .ok_or("event Category enum moved")?
                .push(json!("Aggregated"));
        }
        _ => {}
    }
    Ok(v)
}

/// The schemas of edgeguard's own event kinds (`schemas/` in this repository).
pub fn own_schemas() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct LocalSchemas;

impl Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let name = s
            .strip_prefix(BASE)
            .ok_or_else(|| format!("refusing to fetch {s}"))?;
        let name = name.split('#').next().unwrap_or(name);
        Ok(load(name)?)
    }
}

/// A validator for whole security messages (`messageRoot.json`).
pub fn message_validator() -> Validator {
    let root = load("messageRoot.json").expect("messageRoot.json loads");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .with_format("date-time", is_rfc3339)
        .with_retriever(LocalSchemas)
        .build(&root)
        .expect("the reference schemas compile")
}

/// RFC 3339 date-time. RFC 3339 §5.6 lets a space stand for the `T` (one of the reference's
/// valid samples uses it); edgeguard itself always writes the `T`.
fn is_rfc3339(s: &str) -> bool {
    let normalized = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_string(),
    };
    chrono::DateTime::parse_from_rfc3339(&normalized).is_ok()
}

/// Validation errors of one message, as text (empty when valid).
pub fn errors(validator: &Validator, message: &Value) -> Vec<String> {
    validator
        .iter_errors(message)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// The reference samples: (valid, invalid) messages.
pub fn samples() -> (Vec<Value>, Vec<Value>) {
    let path = schema_dir().join("tests/samples.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("samples.json"))
        .expect("samples.json is JSON");
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    (list("valid"), list("invalid"))
}
