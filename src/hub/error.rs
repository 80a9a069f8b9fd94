//! The hub layer's error type: short lowercase messages, the cause in `source()`, and
//! [`Error::is_transient`] to choose between "retry with backoff" and "report".

use rumqttc::ConnectionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("environment variable {name} is not set")]
    MissingVar { name: &'static str },
    #[error("environment variable {name} is malformed: {reason}")]
    BadVar { name: &'static str, reason: String },
    #[error("cannot read the CA certificate file {path}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable CA certificate in {what}")]
    NoCertificates { what: String },
    #[error("building the TLS client configuration")]
    Tls(#[source] rustls::Error),
    #[error("cannot reach the workload API at {uri}")]
    WorkloadConnect {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("workload API request failed")]
    WorkloadHttp(#[source] hyper::Error),
    #[error("workload API did not answer within {0:?}")]
    WorkloadTimeout(std::time::Duration),
    #[error("workload API answered {status}: {message}")]
    WorkloadStatus { status: u16, message: String },
    #[error("workload API sent an unusable response: {0}")]
    WorkloadResponse(String),
    #[error("connecting to {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        /// Boxed: rumqttc's error is large, and every `Result` in this module carries it.
        #[source]
        source: Box<ConnectionError>,
    },
    #[error("the MQTT client has stopped")]
    ClientClosed(#[source] rumqttc::ClientError),
    #[error("message of {size} bytes (body and properties) exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

impl Error {
    /// `true` when trying again later may succeed (network trouble, a restarting edgeHub or
    /// workload API, throttling); `false` when something must be fixed first (environment,
    /// certificates, credentials). The session retries both, but reports the second kind loudly
    /// and waits the longest backoff before trying again.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::MissingVar { .. }
            | Error::BadVar { .. }
            | Error::NoCertificates { .. }
            | Error::Tls(_)
            | Error::TooLarge { .. }
            | Error::WorkloadResponse(_) => false,
            Error::CaFile { .. } => false,
            Error::WorkloadConnect { .. }
            | Error::WorkloadHttp(_)
            | Error::WorkloadTimeout(_)
            | Error::ClientClosed(_) => true,
            Error::WorkloadStatus { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            Error::Connect { source, .. } => !matches!(
                **source,
                ConnectionError::ConnectionRefused(
                    rumqttc::ConnectReturnCode::BadUserNamePassword
                        | rumqttc::ConnectReturnCode::NotAuthorized
                        | rumqttc::ConnectReturnCode::BadClientId
                        | rumqttc::ConnectReturnCode::RefusedProtocolVersion
                ) | ConnectionError::Tls(_)
            ),
        }
    }

    /// A bounded label for `edgeguard_errors_total{component="hub",error_type}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingVar { .. } | Error::BadVar { .. } => "environment",
            Error::CaFile { .. } | Error::NoCertificates { .. } | Error::Tls(_) => "tls_config",
            Error::WorkloadConnect { .. }
            | Error::WorkloadHttp(_)
            | Error::WorkloadTimeout(_)
            | Error::WorkloadStatus { .. }
            | Error::WorkloadResponse(_) => "workload_api",
            Error::Connect { source, .. } => match **source {
                ConnectionError::ConnectionRefused(_) => "connection_refused",
                ConnectionError::Tls(_) => "tls",
                _ => "connection",
            },
            Error::ClientClosed(_) => "client_closed",
            Error::TooLarge { .. } => "too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn transient_or_not() {
        assert!(!Error::MissingVar { name: "X" }.is_transient());
        let status = |status| Error::WorkloadStatus {
            status,
            message: "m".into(),
        };
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(403).is_transient());
        assert!(!status(404).is_transient());
        let refused = Error::Connect {
            host: "h".into(),
            port: 8883,
            source: Box::new(ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized,
            )),
        };
        assert!(!refused.is_transient());
        assert_eq!(refused.metric_label(), "connection_refused");
        let timeout = Error::Connect {
            host: "h".into(),
            port: 8883,
            source: Box::new(ConnectionError::NetworkTimeout),
        };
        assert!(timeout.is_transient());
    }

    #[test]
    fn messages_are_short_and_keep_the_cause_apart() {
        let e = Error::WorkloadConnect {
            uri: "unix:///run/w.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the workload API at unix:///run/w.sock"
        );
        assert!(e.source().is_some());
        let e = Error::WorkloadStatus {
            status: 403,
            message: "module not found".into(),
        };
        assert_eq!(e.to_string(), "workload API answered 403: module not found");
    }
}
