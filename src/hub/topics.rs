//! MQTT topic names for IoT Hub / edgeHub (iot-edge-protocol.md §4): builders for what we
//! publish and subscribe, and a parser for what arrives. Topics from the broker are untrusted:
//! anything unexpected parses to [`Inbound::Unknown`] or an error value.

use super::properties::{BagError, PropertyBag};

pub const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
pub const DESIRED_PATCHES: &str = "$iothub/twin/PATCH/properties/desired/#";
pub const METHOD_REQUESTS: &str = "$iothub/methods/POST/#";

/// The identity whose topics these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `devices/{d}/modules/{m}` or `devices/{d}` for a device identity.
    prefix: String,
    has_module: bool,
}

/// A message the broker sent us, classified by topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
    TwinResponse {
        status: u16,
        rid: String,
        version: Option<i64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`
    DesiredPatch { version: Option<i64> },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`
    MethodRequest { name: String, rid: String },
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`
    Input {
        name: String,
        properties: PropertyBag,
    },
    /// Anything else: ignored with a debug log.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("{what} topic has no {field}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what} topic has a malformed {field}")]
    Malformed {
        what: &'static str,
        field: &'static str,
    },
    #[error("input topic has a malformed property bag")]
    Bag(#[source] BagError),
}

/// Longest `$rid` or method name kept; edgeHub's are short, and they go back into our topics.
const MAX_TOKEN: usize = 128;

impl Topics {
    pub fn new(device_id: &str, module_id: Option<&str>) -> Topics {
        let prefix = match module_id {
            Some(m) => format!("devices/{device_id}/modules/{m}"),
            None => format!("devices/{device_id}"),
        };
        Topics {
            prefix,
            has_module: module_id.is_some(),
        }
    }

    /// Telemetry, on the module's own topic (the device topic would break module routes).
    pub fn telemetry(&self, bag: &PropertyBag) -> String {
        format!("{}/messages/events/{}", self.prefix, bag.encode())
    }

    /// Topic filters to subscribe after every CONNACK.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut subs = vec![
            TWIN_RESPONSES.to_string(),
            DESIRED_PATCHES.to_string(),
            METHOD_REQUESTS.to_string(),
        ];
        subs.extend(self.inputs_filter());
        subs
    }

    /// The module inputs filter, `devices/{d}/modules/{m}/#` (none for a device identity).
    pub fn inputs_filter(&self) -> Option<String> {
        self.has_module.then(|| format!("{}/#", self.prefix))
    }

    /// Parses an inbound topic.
    pub fn parse(&self, topic: &str) -> Result<Inbound, TopicError> {
        if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
            const WHAT: &str = "twin response";
            let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
            let status = status
                .parse::<u16>()
                .ok()
                .filter(|s| (100..600).contains(s))
                .ok_or(TopicError::Malformed {
                    what: WHAT,
                    field: "status",
                })?;
            let query = query_of(query);
            let rid = token(&query, "$rid", WHAT)?;
            let version = version(&query, WHAT)?;
            return Ok(Inbound::TwinResponse {
                status,
                rid,
                version,
            });
        }
        if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
            let query = query_of(rest);
            return Ok(Inbound::DesiredPatch {
                version: version(&query, "desired patch")?,
            });
        }
        if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
            const WHAT: &str = "method request";
            let (name, query) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() || name.len() > MAX_TOKEN {
                return Err(TopicError::Malformed {
                    what: WHAT,
                    field: "method name",
                });
            }
            let rid = token(&query_of(query), "$rid", WHAT)?;
            return Ok(Inbound::MethodRequest {
                name: name.to_string(),
                rid,
            });
        }
        if self.has_module {
            if let Some(rest) = topic
                .strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix("/inputs/"))
            {
                let (name, bag) = rest.split_once('/').unwrap_or((rest, ""));
                if name.is_empty() {
                    return Err(TopicError::Missing {
                        what: "input",
                        field: "input name",
                    });
                }
                let properties = PropertyBag::decode(bag).map_err(TopicError::Bag)?;
                return Ok(Inbound::Input {
                    name: name.to_string(),
                    properties,
                });
            }
        }
        Ok(Inbound::Unknown)
    }
}

pub fn twin_get(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

pub fn twin_patch_reported(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

pub fn method_response(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// The query after `?` (the `?` itself optional), as a property bag; a malformed one is empty
/// so the field lookups below report what is missing.
fn query_of(s: &str) -> PropertyBag {
    let q = s.strip_prefix('?').unwrap_or(s);
    PropertyBag::decode(q).unwrap_or_default()
}

/// A `$rid`-like value we will echo into a topic: short, no topic wildcards or separators.
fn token(
    query: &PropertyBag,
    field: &'static str,
    what: &'static str,
) -> Result<String, TopicError> {
    let v = query
        .get(field)
        .ok_or(TopicError::Missing { what, field })?;
    let ok = !v.is_empty()
        && v.len() <= MAX_TOKEN
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'+' | b'#' | b'&' | b'='));
    if ok {
        Ok(v.to_string())
    } else {
        Err(TopicError::Malformed { what, field })
    }
}

fn version(query: &PropertyBag, what: &'static str) -> Result<Option<i64>, TopicError> {
    match query.get("$version") {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| TopicError::Malformed {
                what,
                field: "$version",
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::properties::{CONTENT_TYPE, OUTPUT_NAME};

    fn module() -> Topics {
        Topics::new("dev1", Some("edgeguard"))
    }

    #[test]
    fn builders() {
        let t = module();
        let mut bag = PropertyBag::new();
        bag.push(OUTPUT_NAME, "securityEvents")
            .push(CONTENT_TYPE, "application/json");
        assert_eq!(
            t.telemetry(&bag),
            "devices/dev1/modules/edgeguard/messages/events/%24.on=securityEvents&%24.ct=application%2Fjson"
        );
        assert_eq!(
            Topics::new("dev1", None).telemetry(&PropertyBag::new()),
            "devices/dev1/messages/events/"
        );
        assert_eq!(
            t.subscriptions(),
            vec![
                "$iothub/twin/res/#",
                "$iothub/twin/PATCH/properties/desired/#",
                "$iothub/methods/POST/#",
                "devices/dev1/modules/edgeguard/#",
            ]
        );
        assert_eq!(Topics::new("d", None).subscriptions().len(), 3);
        assert_eq!(twin_get("7"), "$iothub/twin/GET/?$rid=7");
        assert_eq!(
            twin_patch_reported("8"),
            "$iothub/twin/PATCH/properties/reported/?$rid=8"
        );
        assert_eq!(
            method_response(404, "x1"),
            "$iothub/methods/res/404/?$rid=x1"
        );
    }

    #[test]
    fn parses_twin_topics() {
        let t = module();
        assert_eq!(
            t.parse("$iothub/twin/res/200/?$rid=1").unwrap(),
            Inbound::TwinResponse {
                status: 200,
                rid: "1".into(),
                version: None
            }
        );
        assert_eq!(
            t.parse("$iothub/twin/res/204/?$rid=2&$version=12").unwrap(),
            Inbound::TwinResponse {
                status: 204,
                rid: "2".into(),
                version: Some(12)
            }
        );
        // Percent-encoded names, as a bag may carry them.
        assert_eq!(
            t.parse("$iothub/twin/res/429/?%24rid=3").unwrap(),
            Inbound::TwinResponse {
                status: 429,
                rid: "3".into(),
                version: None
            }
        );
        assert_eq!(
            t.parse("$iothub/twin/PATCH/properties/desired/?$version=5")
                .unwrap(),
            Inbound::DesiredPatch { version: Some(5) }
        );
        assert_eq!(
            t.parse("$iothub/twin/PATCH/properties/desired/").unwrap(),
            Inbound::DesiredPatch { version: None }
        );
    }

    #[test]
    fn parses_methods_and_inputs() {
        let t = module();
        assert_eq!(
            t.parse("$iothub/methods/POST/status/?$rid=ab12").unwrap(),
            Inbound::MethodRequest {
                name: "status".into(),
                rid: "ab12".into()
            }
        );
        let Inbound::Input { name, properties } = t
            .parse("devices/dev1/modules/edgeguard/inputs/securityMessages/%24.cdid=dev1&%24.cmid=other&%24.ct=application%2Fjson")
            .unwrap()
        else {
            panic!("not an input");
        };
        assert_eq!(name, "securityMessages");
        assert_eq!(properties.get("$.cmid"), Some("other"));
        assert_eq!(properties.get("$.ct"), Some("application/json"));
        assert_eq!(
            t.parse("devices/dev1/modules/edgeguard/inputs/x").unwrap(),
            Inbound::Input {
                name: "x".into(),
                properties: PropertyBag::new()
            }
        );
        // Someone else's inputs, device-bound messages and strangers are not ours.
        for other in [
            "devices/dev1/modules/other/inputs/x/",
            "devices/dev1/modules/edgeguard/messages/devicebound/a=b",
            "$iothub/twin/GETX",
            "",
        ] {
            assert_eq!(t.parse(other).unwrap(), Inbound::Unknown, "{other}");
        }
        assert_eq!(
            Topics::new("dev1", None)
                .parse("devices/dev1/inputs/x/")
                .unwrap(),
            Inbound::Unknown
        );
    }

    #[test]
    fn malformed_topics_are_errors() {
        let t = module();
        for bad in [
            "$iothub/twin/res/abc/?$rid=1",
            "$iothub/twin/res/99/?$rid=1",
            "$iothub/twin/res/200/",
            "$iothub/twin/res/200/?$rid=",
            "$iothub/twin/res/200/?$rid=1&$version=x",
            "$iothub/twin/res/200/?$rid=a%2Fb",
            "$iothub/twin/PATCH/properties/desired/?$version=1.5",
            "$iothub/methods/POST//?$rid=1",
            "$iothub/methods/POST/status/",
            "$iothub/methods/POST/status/?$rid=%23",
            "devices/dev1/modules/edgeguard/inputs//a=b",
            "devices/dev1/modules/edgeguard/inputs/x/a=b=c",
        ] {
            assert!(t.parse(bad).is_err(), "{bad}");
        }
        let long = format!("$iothub/methods/POST/{}/?$rid=1", "m".repeat(200));
        assert!(t.parse(&long).is_err());
    }
}
