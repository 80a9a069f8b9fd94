//! The IoT Edge workload API client: HTTP/1.1 over the unix socket (or TCP) that
//! `IOTEDGE_WORKLOADURI` names (iot-edge-protocol.md §2). Two calls: sign with the module key
//! (the key never leaves the runtime) and fetch the trust bundle (the edge CA, which can rotate).
//!
//! One short-lived connection per request: calls happen once per (re)connect, and a fresh
//! connection never trips over a runtime that restarted in between.

use super::Error;
use crate::text::shorten;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::time::Duration;

/// Characters left as they are in a path segment: the RFC 3986 unreserved set.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The runtime answers in milliseconds; anything slower is a hung socket.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A trust bundle is a few certificates; nothing legitimate comes near this.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

/// A workload API client for one module.
#[derive(Debug, Clone)]
pub struct WorkloadClient {
    uri: String,
    endpoint: Endpoint,
    api_version: String,
    module_id: String,
    generation_id: String,
    timeout: Duration,
}

impl WorkloadClient {
    /// `uri` is `unix:///path/to/workload.sock` or `http://host:port`.
    pub fn new(
        uri: &str,
        api_version: &str,
        module_id: &str,
        generation_id: &str,
    ) -> Result<WorkloadClient, Error> {
        let bad = |reason: &str| Error::BadVar {
            name: "IOTEDGE_WORKLOADURI",
            reason: reason.to_string(),
        };
        let endpoint = if let Some(path) = uri.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("expected unix:///absolute/path"));
            }
            Endpoint::Unix(path.into())
        } else if let Some(rest) = uri.strip_prefix("http://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(bad("expected http://host:port"));
            }
            Endpoint::Tcp(authority.to_string())
        } else {
            return Err(bad("expected a unix:// or http:// URI"));
        };
        Ok(WorkloadClient {
            uri: uri.to_string(),
            endpoint,
            api_version: api_version.to_string(),
            module_id: module_id.to_string(),
            generation_id: generation_id.to_string(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// How long one request may take, connection included.
    pub fn with_timeout(mut self, timeout: Duration) -> WorkloadClient {
        self.timeout = timeout;
        self
    }

    /// HMAC-SHA256 of `data` with the module's primary key: the raw digest bytes.
    pub async fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let path = format!(
            "/modules/{}/genid/{}/sign?api-version={}",
            utf8_percent_encode(&self.module_id, SEGMENT),
            utf8_percent_encode(&self.generation_id, SEGMENT),
            utf8_percent_encode(&self.api_version, SEGMENT),
        );
        let body = serde_json::json!({
            "keyId": "primary",
            "algo": "HMACSHA256",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let response = self
            .request(Method::POST, &path, Some(body.to_string()))
            .await?;
        let digest = response
            .get("digest")
            .and_then(|d| d.as_str())
            .ok_or_else(|| {
                Error::WorkloadResponse("sign response has no \"digest\" string".into())
            })?;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(digest)
            .map_err(|_| Error::WorkloadResponse("sign digest is not base64".into()))?;
        if digest.len() != 32 {
            return Err(Error::WorkloadResponse(format!(
                "sign digest is {} bytes, expected 32 (HMAC-SHA256)",
                digest.len()
            )));
        }
        Ok(digest)
    }

    /// The trust bundle: PEM text, possibly several certificates.
    pub async fn trust_bundle(&self) -> Result<String, Error> {
        let path = format!(
            "/trust-bundle?api-version={}",
            utf8_percent_encode(&self.api_version, SEGMENT)
        );
        let response = self.request(Method::GET, &path, None).await?;
        response
            .get("certificate")
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::WorkloadResponse(
                    "trust bundle response has no \"certificate\" string".into(),
                )
            })
    }

    /// One request on a fresh connection; a JSON object back, or the server's `{"message"}` as
    /// an error with the status.
    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, Error> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner(method, path_and_query, body),
        )
        .await
        .map_err(|_| Error::WorkloadTimeout(self.timeout))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, Error> {
        let connect_error = |source| Error::WorkloadConnect {
            uri: self.uri.clone(),
            source,
        };
        let (host, mut sender) = match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?;
                ("workload.sock".to_string(), handshake(stream).await?)
            }
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(connect_error)?;
                (authority.clone(), handshake(stream).await?)
            }
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, host)
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::WorkloadResponse(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(Error::WorkloadHttp)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => Error::WorkloadHttp(*e),
                Err(_) => Error::WorkloadResponse(format!(
                    "response body is larger than {MAX_RESPONSE_BYTES} bytes"
                )),
            })?
            .to_bytes();
        interpret(status, &bytes)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn handshake<S>(stream: S) -> Result<Sender, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::WorkloadHttp)?;
    // The connection future drives the socket; it ends when the request is done and the
    // sender dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "workload API connection ended with an error");
        }
    });
    Ok(sender)
}

/// Turns a status and body into the JSON object, or an error carrying the server's message.
fn interpret(status: StatusCode, body: &[u8]) -> Result<serde_json::Value, Error> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if !status.is_success() {
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(|m| m.as_str())
            .map(|m| shorten(m, 500))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                if text.trim().is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    shorten(text.trim(), 500)
                }
            });
        return Err(Error::WorkloadStatus {
            status: status.as_u16(),
            message,
        });
    }
    match json {
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(Error::WorkloadResponse(format!(
            "expected a JSON object with status {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn uris() {
        let c = WorkloadClient::new("unix:///run/w.sock", "2019-01-30", "m", "g").unwrap();
        assert_eq!(c.endpoint, Endpoint::Unix("/run/w.sock".into()));
        let c = WorkloadClient::new("http://127.0.0.1:15581/", "2019-01-30", "m", "g").unwrap();
        assert_eq!(c.endpoint, Endpoint::Tcp("127.0.0.1:15581".into()));
        for bad in [
            "unix://w.sock",
            "https://x:1",
            "http://",
            "http://x/y",
            "w.sock",
        ] {
            assert!(WorkloadClient::new(bad, "v", "m", "g").is_err(), "{bad}");
        }
    }

    #[test]
    fn error_statuses_carry_the_message() {
        let e = interpret(StatusCode::FORBIDDEN, br#"{"message":"Module not found"}"#).unwrap_err();
        assert!(
            matches!(&e, Error::WorkloadStatus { status: 403, message } if message == "Module not found"),
            "{e:?}"
        );
        let e = interpret(StatusCode::INTERNAL_SERVER_ERROR, b"").unwrap_err();
        assert!(
            matches!(&e, Error::WorkloadStatus { status: 500, message } if message == "Internal Server Error")
        );
        assert!(e.is_transient());
        let e = interpret(StatusCode::BAD_REQUEST, b"plain text").unwrap_err();
        assert!(matches!(&e, Error::WorkloadStatus { message, .. } if message == "plain text"));
        assert!(matches!(
            interpret(StatusCode::OK, b"[1]").unwrap_err(),
            Error::WorkloadResponse(_)
        ));
        assert!(matches!(
            interpret(StatusCode::OK, b"{").unwrap_err(),
            Error::WorkloadResponse(_)
        ));
        assert_eq!(
            interpret(StatusCode::OK, br#"{"a":1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
    }

    /// A one-request HTTP server on a unix socket: records the request text, answers `reply`.
    async fn serve_once(
        dir: &std::path::Path,
        reply: &'static str,
    ) -> (String, Arc<Mutex<String>>) {
        let path = dir.join("workload.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers and, if any, a body of Content-Length bytes.
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            *seen2.lock().unwrap() = String::from_utf8_lossy(&buf).to_string();
            s.write_all(reply.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        (format!("unix://{}", path.display()), seen)
    }

    #[tokio::test]
    async fn signs_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let digest = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{\"digest\":\"{digest}\"}}",
                digest.len() + 13
            )
            .into_boxed_str(),
        );
        let (uri, seen) = serve_once(dir.path(), reply).await;
        let client = WorkloadClient::new(&uri, "2022-08-03", "edge guard", "gen1").unwrap();
        assert_eq!(client.sign(b"hello").await.unwrap(), vec![7u8; 32]);
        let request = seen.lock().unwrap().clone();
        assert!(
            request.starts_with(
                "POST /modules/edge%20guard/genid/gen1/sign?api-version=2022-08-03 HTTP/1.1\r\n"
            ),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"keyId": "primary", "algo": "HMACSHA256", "data": "aGVsbG8="})
        );
    }

    #[tokio::test]
    async fn trust_bundle_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (uri, seen) = serve_once(
            dir.path(),
            "HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\n{\"certificate\":\"-----BEGIN...\"}",
        )
        .await;
        let client = WorkloadClient::new(&uri, "2019-01-30", "m", "g").unwrap();
        assert_eq!(client.trust_bundle().await.unwrap(), "-----BEGIN...");
        assert!(
            seen.lock()
                .unwrap()
                .starts_with("GET /trust-bundle?api-version=2019-01-30 HTTP/1.1\r\n")
        );

        let dir = tempfile::tempdir().unwrap();
        let (uri, _) = serve_once(
            dir.path(),
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 27\r\n\r\n{\"message\":\"wrong process\"}",
        )
        .await;
        let client = WorkloadClient::new(&uri, "2019-01-30", "m", "g").unwrap();
        let e = client.sign(b"x").await.unwrap_err();
        assert!(
            matches!(&e, Error::WorkloadStatus { status: 403, message } if message == "wrong process"),
            "{e:?}"
        );

        let client = WorkloadClient::new("unix:///nonexistent/w.sock", "v", "m", "g").unwrap();
        let e = client.trust_bundle().await.unwrap_err();
        assert!(matches!(e, Error::WorkloadConnect { .. }), "{e:?}");
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let client = WorkloadClient::new(&format!("unix://{}", path.display()), "v", "m", "g")
            .unwrap()
            .with_timeout(Duration::from_millis(200));
        let e = client.trust_bundle().await.unwrap_err();
        assert!(matches!(e, Error::WorkloadTimeout(_)), "{e:?}");
    }
}
