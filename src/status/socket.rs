//! The status socket: `STATE_DIR/status.sock`, HTTP/1.1, one resource (`GET /status`, the
//! [`Report`](super::Report) as JSON). The agent serves it during `run`; `edgeguard status` reads
//! it. Created 0600: the report names the device's weaknesses.

use super::report;
use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The socket's file name in the state directory.
pub const FILE_NAME: &str = "status.sock";

/// At most this many status requests are answered at once (a local tool, not a service).
const MAX_CLIENTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the status socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no agent answers on {path} (is `edgeguard run` running with this --state-dir?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the status from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's answer is not a status report: {0}")]
    Answer(String),
}

/// Binds `path` (replacing a socket an earlier run left behind), mode 0600.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, Error> {
    let err = |source| Error::Bind {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        // Only a socket is ours to replace; anything else there is left alone.
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(err)?;
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Answers `GET /status` on `listener` until `cancel`, then removes the socket file.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::UnixListener,
    path: PathBuf,
    cancel: CancellationToken,
) {
    let limits = crate::local_http::Limits {
        component: "status",
        clients: MAX_CLIENTS,
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(10),
    };
    crate::local_http::serve(metrics, listener, limits, respond, cancel).await;
    let _ = std::fs::remove_file(&path);
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/status" {
        return reply(StatusCode::NOT_FOUND, "not found; try /status\n".into());
    }
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match serde_json::to_string(&report(metrics)) {
        Ok(json) => {
            let mut r = reply(StatusCode::OK, json);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Asks the agent whose socket is `path` for its report (blocking; for the CLI).
pub fn query(path: &Path, timeout: Duration) -> Result<super::Report, Error> {
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(timeout)).map_err(read_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(read_err)?;
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(read_err)?;
    let mut answer = Vec::new();
    // A report is a few KB; a peer sending more is not an agent.
    stream
        .take(4 << 20)
        .read_to_end(&mut answer)
        .map_err(read_err)?;
    parse_answer(&answer)
}

/// The report in an HTTP/1.1 answer (`Connection: close`, so the body is the rest; hyper may
/// also send it chunked).
fn parse_answer(answer: &[u8]) -> Result<super::Report, Error> {
    let bad = |what: &str| Error::Answer(what.to_string());
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no HTTP header"))?;
    let head = std::str::from_utf8(&answer[..split]).map_err(|_| bad("header is not UTF-8"))?;
    let body = &answer[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .ok_or_else(|| bad("no status line"))?;
    if status != "200" {
        return Err(bad(&format!("HTTP status {status}")));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&body).map_err(|e| Error::Answer(e.to_string()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_plain_or_chunked_and_garbage_is_an_error() {
        let report = serde_json::to_string(&report(&Metrics::for_tests())).unwrap();
        let plain = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{report}",
            report.len()
        );
        assert!(parse_answer(plain.as_bytes()).is_ok());
        let (a, b) = report.split_at(10);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        assert!(parse_answer(chunked.as_bytes()).is_ok());
        for garbage in [
            &b""[..],
            b"HTTP/1.1 404 Not Found\r\n\r\nnot found",
            b"HTTP/1.1 200 OK\r\n\r\n{\"x\":1}",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(parse_answer(garbage).is_err(), "{garbage:?}");
        }
    }
}
