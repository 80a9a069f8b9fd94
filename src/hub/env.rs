//! Who we are and where to connect, from the environment IoT Edge (or a user) gives the process.
//!
//! Three sources, in the C SDK's order of precedence (iot-edge-protocol.md §1):
//!
//! 1. `EdgeHubConnectionString` + `EdgeModuleCACertificateFile`: the edgeHub dev simulator.
//! 2. `IOTEDGE_*`: a module started by the IoT Edge runtime; keys stay in the workload API.
//! 3. `EDGEGUARD_CONNECTION_STRING`: a plain module or device connection string, straight to IoT
//!    Hub on 8883 with the system's public CA roots (running outside IoT Edge).
//!
//! Variables come through a lookup function so tests need not touch the process environment.

use super::Error;
use base64::Engine;

/// Variable holding a module or device connection string for runs outside IoT Edge.
pub const CONNECTION_STRING_VAR: &str = "EDGEGUARD_CONNECTION_STRING";
/// Workload API version when `IOTEDGE_APIVERSION` is not set.
pub const DEFAULT_WORKLOAD_API_VERSION: &str = "2019-01-30";
/// MQTT over TLS.
pub const MQTT_TLS_PORT: u16 = 8883;

/// Where the SAS token signature comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The module's key stays with the IoT Edge runtime; the workload API signs for us.
    Workload {
        /// `unix:///…` or `http://host:port`.
        uri: String,
        api_version: String,
        generation_id: String,
    },
    /// A shared access key from a connection string (already base64-decoded).
    Key(Vec<u8>),
}

impl std::fmt::Debug for Credentials {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Workload {
                uri,
                api_version,
                generation_id,
            } => f
                .debug_struct("Workload")
                .field("uri", uri)
                .field("api_version", api_version)
                .field("generation_id", generation_id)
                .finish(),
            Credentials::Key(_) => f.write_str("Key(…)"),
        }
    }
}

/// Which CA certificates the server certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The workload API's trust bundle (the edge CA), fetched again before every connection.
    WorkloadBundle,
    /// A PEM file (`EdgeModuleCACertificateFile`), read again before every connection.
    File(String),
    /// The system's public roots (straight to IoT Hub).
    PublicRoots,
}

/// Everything needed to open the module's MQTT session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeEnvironment {
    /// The IoT Hub host name: part of the SAS audience and of the MQTT username.
    pub hub_host: String,
    /// The host to open TLS to, and the name its certificate must carry (the edge device's
    /// hostname for edgeHub, the hub itself without a gateway).
    pub gateway_host: String,
    /// 8883; tests point it at a double's ephemeral port.
    pub port: u16,
    pub device_id: String,
    /// `None` for a device connection string: telemetry then goes on the device topic and
    /// there are no module inputs.
    pub module_id: Option<String>,
    pub credentials: Credentials,
    pub trust: Trust,
}

impl EdgeEnvironment {
    /// Reads the process environment. `Ok(None)`: no IoT Edge environment and no connection
    /// string, so there is no hub to talk to.
    pub fn from_process_env() -> Result<Option<EdgeEnvironment>, Error> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the environment through `var`. A variable set to an empty string counts as unset.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<EdgeEnvironment>, Error> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(cs) = get("EdgeHubConnectionString") {
            return from_simulator(&cs, get("EdgeModuleCACertificateFile")).map(Some);
        }
        const EDGE_VARS: [&str; 5] = [
            "IOTEDGE_IOTHUBHOSTNAME",
            "IOTEDGE_GATEWAYHOSTNAME",
            "IOTEDGE_DEVICEID",
            "IOTEDGE_MODULEID",
            "IOTEDGE_WORKLOADURI",
        ];
        if EDGE_VARS.iter().any(|name| get(name).is_some()) {
            return from_iotedge(&get).map(Some);
        }
        if let Some(cs) = get(CONNECTION_STRING_VAR) {
            return from_connection_string(&cs, CONNECTION_STRING_VAR).map(Some);
        }
        Ok(None)
    }

    /// The MQTT client id: `{deviceId}/{moduleId}` (or the device id alone).
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(m) => format!("{}/{}", self.device_id, m),
            None => self.device_id.clone(),
        }
    }
}

fn from_iotedge(get: &impl Fn(&str) -> Option<String>) -> Result<EdgeEnvironment, Error> {
    let required = |name: &'static str| get(name).ok_or(Error::MissingVar { name });
    let hub_host = host_name(
        "IOTEDGE_IOTHUBHOSTNAME",
        required("IOTEDGE_IOTHUBHOSTNAME")?,
    )?;
    let gateway_host = host_name(
        "IOTEDGE_GATEWAYHOSTNAME",
        required("IOTEDGE_GATEWAYHOSTNAME")?,
    )?;
    let device_id = identifier("IOTEDGE_DEVICEID", required("IOTEDGE_DEVICEID")?)?;
    let module_id = identifier("IOTEDGE_MODULEID", required("IOTEDGE_MODULEID")?)?;
    let generation_id = identifier(
        "IOTEDGE_MODULEGENERATIONID",
        required("IOTEDGE_MODULEGENERATIONID")?,
    )?;
    let uri = required("IOTEDGE_WORKLOADURI")?;
    check_workload_uri(&uri)?;
    let scheme = required("IOTEDGE_AUTHSCHEME")?;
    if scheme != "sasToken" {
        return Err(Error::BadVar {
            name: "IOTEDGE_AUTHSCHEME",
            reason: format!("{scheme:?} is not supported (only sasToken)"),
        });
    }
    let api_version = match get("IOTEDGE_APIVERSION") {
        Some(v) if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => v,
        Some(v) => {
            return Err(Error::BadVar {
                name: "IOTEDGE_APIVERSION",
                reason: format!("{v:?} is not an API version like 2019-01-30"),
            });
        }
        None => DEFAULT_WORKLOAD_API_VERSION.to_string(),
    };
    Ok(EdgeEnvironment {
        hub_host,
        gateway_host,
        port: MQTT_TLS_PORT,
        device_id,
        module_id: Some(module_id),
        credentials: Credentials::Workload {
            uri,
            api_version,
            generation_id,
        },
        trust: Trust::WorkloadBundle,
    })
}

fn from_simulator(cs: &str, ca_file: Option<String>) -> Result<EdgeEnvironment, Error> {
    const NAME: &str = "EdgeHubConnectionString";
    let mut env = from_connection_string(cs, NAME)?;
    let fields = parse_connection_string(cs, NAME)?;
    let gateway = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("GatewayHostName"))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::BadVar {
            name: NAME,
            reason: "GatewayHostName is missing".into(),
        })?;
    env.gateway_host = host_name(NAME, gateway)?;
    let ca_file = ca_file.ok_or(Error::MissingVar {
        name: "EdgeModuleCACertificateFile",
    })?;
    env.trust = Trust::File(ca_file);
    if env.module_id.is_none() {
        return Err(Error::BadVar {
            name: NAME,
            reason: "ModuleId is missing".into(),
        });
    }
    Ok(env)
}

/// Parses `HostName=..;DeviceId=..;[ModuleId=..;]SharedAccessKey=..` (keys case-insensitive,
/// as in the SDKs). Straight to the hub: the gateway is the hub itself, trusted by public roots.
pub fn from_connection_string(cs: &str, name: &'static str) -> Result<EdgeEnvironment, Error> {
    let fields = parse_connection_string(cs, name)?;
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let missing = |key: &str| Error::BadVar {
        name,
        reason: format!("{key} is missing"),
    };
    let hub_host = host_name(name, field("HostName").ok_or_else(|| missing("HostName"))?)?;
    let device_id = identifier(name, field("DeviceId").ok_or_else(|| missing("DeviceId"))?)?;
    let module_id = field("ModuleId").map(|m| identifier(name, m)).transpose()?;
    let key = field("SharedAccessKey").ok_or_else(|| {
        if field("x509").is_some() || field("SharedAccessSignature").is_some() {
            Error::BadVar {
                name,
                reason: "only SharedAccessKey authentication is supported".into(),
            }
        } else {
            missing("SharedAccessKey")
        }
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Error::BadVar {
            name,
            reason: "SharedAccessKey is not base64".into(),
        })?;
    Ok(EdgeEnvironment {
        gateway_host: hub_host.clone(),
        hub_host,
        port: MQTT_TLS_PORT,
        device_id,
        module_id,
        credentials: Credentials::Key(key),
        trust: Trust::PublicRoots,
    })
}

/// `k=v;k=v` pairs. A value may itself contain `=` (base64 keys end with it).
fn parse_connection_string(cs: &str, name: &'static str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(Error::BadVar {
                name,
                reason: format!(
                    "expected key=value pairs separated by ';', got {:?}",
                    shorten(part)
                ),
            });
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(Error::BadVar {
                name,
                reason: "a pair has an empty key".into(),
            });
        }
        if out
            .iter()
            .any(|(seen, _): &(String, String)| seen.eq_ignore_ascii_case(k))
        {
            return Err(Error::BadVar {
                name,
                reason: format!("{k} is given twice"),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// A DNS name (or IP literal) we can open TLS to and put into a SAS audience.
fn host_name(name: &'static str, value: String) -> Result<String, Error> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if ok {
        Ok(value)
    } else {
        Err(Error::BadVar {
            name,
            reason: format!("{:?} is not a host name", shorten(&value)),
        })
    }
}

/// A device, module or generation id. IoT Hub allows `[A-Za-z0-9-.%_*?!(),:=@$']` (up to 128
/// characters); anything else (`/`, `#`, `+`, spaces) would also break MQTT topics.
fn identifier(name: &'static str, value: String) -> Result<String, Error> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'%'
                        | b'_'
                        | b'*'
                        | b'?'
                        | b'!'
                        | b'('
                        | b')'
                        | b','
                        | b':'
                        | b'='
                        | b'@'
                        | b'$'
                        | b'\''
                )
        });
    if ok {
        Ok(value)
    } else {
        Err(Error::BadVar {
            name,
            reason: format!("{:?} is not a valid IoT Hub identifier", shorten(&value)),
        })
    }
}

fn check_workload_uri(uri: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::BadVar {
        name: "IOTEDGE_WORKLOADURI",
        reason: format!("{:?}: {reason}", shorten(uri)),
    };
    if let Some(path) = uri.strip_prefix("unix://") {
        if path.starts_with('/') && path.len() > 1 {
            return Ok(());
        }
        return Err(bad("expected unix:///absolute/path"));
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        let authority = rest.trim_end_matches('/');
        if let Some((host, port)) = authority.rsplit_once(':') {
            if !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok() {
                return Ok(());
            }
        }
        return Err(bad("expected http://host:port"));
    }
    Err(bad("expected a unix:// or http:// URI"))
}

/// Values from the environment are shown in errors, cut short so a pasted key does not end up
/// whole in a log.
fn shorten(s: &str) -> String {
    crate::text::shorten(s, 40)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn edge_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("IOTEDGE_IOTHUBHOSTNAME", "myhub.azure-devices.net"),
            ("IOTEDGE_GATEWAYHOSTNAME", "edgedevice"),
            ("IOTEDGE_DEVICEID", "dev1"),
            ("IOTEDGE_MODULEID", "edgeguard"),
            ("IOTEDGE_MODULEGENERATIONID", "637924391234"),
            (
                "IOTEDGE_WORKLOADURI",
                "unix:///var/run/iotedge/workload.sock",
            ),
            ("IOTEDGE_AUTHSCHEME", "sasToken"),
        ]
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        edge_vars()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect()
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut v = without(name);
        v.push((name, value));
        v
    }

    #[test]
    fn nothing_set_is_none() {
        assert_eq!(EdgeEnvironment::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(
            EdgeEnvironment::from_vars(vars(&[("PATH", "/bin"), ("IOTEDGE_DEVICEID", "")]))
                .unwrap(),
            None
        );
    }

    #[test]
    fn iotedge_variables() {
        let env = EdgeEnvironment::from_vars(vars(&edge_vars()))
            .unwrap()
            .unwrap();
        assert_eq!(env.hub_host, "myhub.azure-devices.net");
        assert_eq!(env.gateway_host, "edgedevice");
        assert_eq!(env.port, 8883);
        assert_eq!(env.device_id, "dev1");
        assert_eq!(env.module_id.as_deref(), Some("edgeguard"));
        assert_eq!(env.client_id(), "dev1/edgeguard");
        assert_eq!(env.trust, Trust::WorkloadBundle);
        assert_eq!(
            env.credentials,
            Credentials::Workload {
                uri: "unix:///var/run/iotedge/workload.sock".into(),
                api_version: "2019-01-30".into(),
                generation_id: "637924391234".into(),
            }
        );
        let env = EdgeEnvironment::from_vars(vars(&with("IOTEDGE_APIVERSION", "2022-08-03")))
            .unwrap()
            .unwrap();
        assert!(
            matches!(env.credentials, Credentials::Workload { ref api_version, .. } if api_version == "2022-08-03")
        );
        let env =
            EdgeEnvironment::from_vars(vars(&with("IOTEDGE_WORKLOADURI", "http://10.0.0.1:15581")))
                .unwrap()
                .unwrap();
        assert!(
            matches!(env.credentials, Credentials::Workload { ref uri, .. } if uri == "http://10.0.0.1:15581")
        );
    }

    #[test]
    fn every_missing_iotedge_variable_is_named() {
        for name in [
            "IOTEDGE_IOTHUBHOSTNAME",
            "IOTEDGE_GATEWAYHOSTNAME",
            "IOTEDGE_DEVICEID",
            "IOTEDGE_MODULEID",
            "IOTEDGE_MODULEGENERATIONID",
            "IOTEDGE_WORKLOADURI",
            "IOTEDGE_AUTHSCHEME",
        ] {
            let error = EdgeEnvironment::from_vars(vars(&without(name))).unwrap_err();
            assert!(
                matches!(error, Error::MissingVar { name: n } if n == name),
                "{name}: {error:?}"
            );
            assert!(error.to_string().contains(name));
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn every_malformed_iotedge_variable_is_named() {
        for (name, value) in [
            ("IOTEDGE_IOTHUBHOSTNAME", "my hub"),
            ("IOTEDGE_IOTHUBHOSTNAME", "hub/x"),
            ("IOTEDGE_GATEWAYHOSTNAME", "gate way"),
            ("IOTEDGE_DEVICEID", "dev/1"),
            ("IOTEDGE_DEVICEID", "dev#"),
            ("IOTEDGE_MODULEID", "mod+x"),
            ("IOTEDGE_MODULEGENERATIONID", "a b"),
            ("IOTEDGE_WORKLOADURI", "/var/run/iotedge/workload.sock"),
            ("IOTEDGE_WORKLOADURI", "unix://relative"),
            ("IOTEDGE_WORKLOADURI", "http://host"),
            ("IOTEDGE_WORKLOADURI", "https://host:443"),
            ("IOTEDGE_AUTHSCHEME", "x509"),
            ("IOTEDGE_APIVERSION", "2019-01-30&x=1"),
        ] {
            let error = EdgeEnvironment::from_vars(vars(&with(name, value))).unwrap_err();
            assert!(
                matches!(error, Error::BadVar { name: n, .. } if n == name),
                "{name}={value}: {error:?}"
            );
            assert!(error.to_string().contains(name), "{error}");
        }
        let long = "d".repeat(129);
        let mut v = without("IOTEDGE_DEVICEID");
        v.push(("IOTEDGE_DEVICEID", &long));
        assert!(EdgeEnvironment::from_vars(vars(&v)).is_err());
    }

    #[test]
    fn simulator_connection_string_wins() {
        let cs = format!(
            "HostName=myhub.azure-devices.net;GatewayHostName=mygateway;DeviceId=dev1;ModuleId=edgeguard;SharedAccessKey={KEY_B64}"
        );
        let mut v = edge_vars();
        v.push(("EdgeHubConnectionString", &cs));
        v.push(("EdgeModuleCACertificateFile", "/certs/ca.pem"));
        let env = EdgeEnvironment::from_vars(vars(&v)).unwrap().unwrap();
        assert_eq!(env.hub_host, "myhub.azure-devices.net");
        assert_eq!(env.gateway_host, "mygateway");
        assert_eq!(env.client_id(), "dev1/edgeguard");
        assert_eq!(env.trust, Trust::File("/certs/ca.pem".into()));
        assert_eq!(env.credentials, Credentials::Key((0u8..32).collect()));
        assert_eq!(format!("{:?}", env.credentials), "Key(…)");

        let error =
            EdgeEnvironment::from_vars(vars(&[("EdgeHubConnectionString", &cs)])).unwrap_err();
        assert!(
            matches!(
                error,
                Error::MissingVar {
                    name: "EdgeModuleCACertificateFile"
                }
            ),
            "{error:?}"
        );
        for bad in [
            format!("HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={KEY_B64}"),
            format!("HostName=h;GatewayHostName=g;DeviceId=d;SharedAccessKey={KEY_B64}"),
        ] {
            let error = EdgeEnvironment::from_vars(vars(&[
                ("EdgeHubConnectionString", &bad),
                ("EdgeModuleCACertificateFile", "/ca.pem"),
            ]))
            .unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::BadVar {
                        name: "EdgeHubConnectionString",
                        ..
                    }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn plain_connection_strings() {
        let module = format!(
            "HostName=myhub.azure-devices.net;DeviceId=dev1;ModuleId=edgeguard;SharedAccessKey={KEY_B64}"
        );
        let env = EdgeEnvironment::from_vars(vars(&[(CONNECTION_STRING_VAR, &module)]))
            .unwrap()
            .unwrap();
        assert_eq!(env.gateway_host, "myhub.azure-devices.net");
        assert_eq!(env.trust, Trust::PublicRoots);
        assert_eq!(env.client_id(), "dev1/edgeguard");

        // Device connection string, keys in another case, trailing ';'.
        let device =
            format!("hostname=myhub.azure-devices.net;deviceid=dev1;sharedaccesskey={KEY_B64};");
        let env = EdgeEnvironment::from_vars(vars(&[(CONNECTION_STRING_VAR, &device)]))
            .unwrap()
            .unwrap();
        assert_eq!(env.module_id, None);
        assert_eq!(env.client_id(), "dev1");

        // IOTEDGE_* wins over the plain string.
        let mut v = edge_vars();
        v.push((CONNECTION_STRING_VAR, &module));
        let env = EdgeEnvironment::from_vars(vars(&v)).unwrap().unwrap();
        assert_eq!(env.trust, Trust::WorkloadBundle);
    }

    #[test]
    fn malformed_connection_strings() {
        for bad in [
            "garbage",
            "HostName=h;DeviceId=d",
            "DeviceId=d;SharedAccessKey=AAAA",
            "HostName=h;SharedAccessKey=AAAA",
            "HostName=h;DeviceId=d;SharedAccessKey=not base64!",
            "HostName=h;DeviceId=d;SharedAccessKey=",
            "HostName=h;DeviceId=d;x509=true",
            "HostName=h;HostName=i;DeviceId=d;SharedAccessKey=AAAA",
            "HostName=h;DeviceId=a/b;SharedAccessKey=AAAA",
            "=x;HostName=h;DeviceId=d;SharedAccessKey=AAAA",
        ] {
            let error =
                EdgeEnvironment::from_vars(vars(&[(CONNECTION_STRING_VAR, bad)])).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::BadVar {
                        name: CONNECTION_STRING_VAR,
                        ..
                    }
                ),
                "{bad}: {error:?}"
            );
        }
        // The key is never echoed whole.
        let error = EdgeEnvironment::from_vars(vars(&[(
            CONNECTION_STRING_VAR,
            "HostName=h;DeviceId=d;SharedAccessKey=%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%",
        )]))
        .unwrap_err();
        assert!(
            !error
                .to_string()
                .contains("%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%")
        );
    }
}
