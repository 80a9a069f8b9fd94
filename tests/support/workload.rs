//! A double of the IoT Edge workload API (aziot-edged) on a unix socket in a temp dir.
//!
//! Behaviour follows aziot-edged's `http-common` server and the workload routes:
//! - every request needs `?api-version=` with a version aziot-edged knows (2018-06-28 …
//!   2022-08-03): missing → 400 `api-version not specified`, unknown → 400 `invalid api-version`;
//!   this check comes before routing, as in the real server;
//! - unknown path → 404 `not found`; a known path with another method → 400 `method not allowed`;
//! - `POST /modules/{id}/genid/{genId}/sign`: the body is read as JSON when Content-Type is
//!   absent or `application/json` (otherwise the body is ignored, as in the real server, which
//!   then answers 400 `missing request body`); bad JSON or a missing `data` → 422; `data` not
//!   base64 → 400; success → 200 `{"digest": base64(HMAC-SHA256(module key, data))}`;
//! - `GET /trust-bundle` → 200 `{"certificate": "<PEM>"}`.
//!
//! Differences from the real runtime, all stricter or unavoidable:
//! - the real server checks that the caller's PID (from the socket's peer credentials) belongs to
//!   the container of the module named in the path and answers 403 otherwise. The double answers
//!   403 when the path names another module than the configured one; and once a test has told it
//!   which container is the module ([`Workload::require_container`]), it checks the caller's PID
//!   the same way: the process must be in that container's cgroup (`/proc/<pid>/cgroup` names
//!   the container id), else 403;
//! - a wrong generation id → 404 (aziot-edged 1.2+ ignores the generation id);
//! - `keyId` other than `primary` or `algo` other than `HMACSHA256` → 400 (aziot-edged 1.2+
//!   ignores both fields; the 1.0/1.1 hsm-based runtime checked them).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use sha2::Sha256;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::UnixListener;
use tokio_util::sync::{CancellationToken, DropGuard};

/// api-versions aziot-edged's workload API accepts (edgelet-http `ApiVersion`).
pub const KNOWN_API_VERSIONS: &[&str] = &[
    "2018-06-28",
    "2019-01-30",
    "2019-10-22",
    "2019-11-05",
    "2020-07-07",
    "2021-12-07",
    "2022-08-03",
];

/// What the double serves.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// `IOTEDGE_MODULEID`.
    pub module_id: String,
    /// `IOTEDGE_MODULEGENERATIONID`.
    pub generation_id: String,
    /// The module's primary key, base64 (what `sign` uses).
    pub module_key: String,
    /// PEM text returned by `/trust-bundle`.
    pub trust_bundle: String,
}

/// One request as the double saw it.
#[derive(Clone, Debug)]
pub struct WorkloadRequest {
    pub method: String,
    /// Raw path (still percent-encoded).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Status the double answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    module_key: String,
    trust_bundle: String,
    sign_ok: usize,
    trust_bundle_ok: usize,
    forced_failure: Option<(u16, usize)>,
    requests: Vec<WorkloadRequest>,
    /// When set, signing requests must come from a process of this container.
    container: Option<String>,
}

struct Shared {
    module_id: String,
    generation_id: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running double. Dropping it stops the server and removes the temp dir.
pub struct Workload {
    shared: Arc<Shared>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    _guard: DropGuard,
}

impl Workload {
    /// Binds `workload.sock` in a fresh temp dir and serves it on tokio tasks.
    pub async fn start(cfg: WorkloadConfig) -> Workload {
        let dir = tempfile::tempdir().expect("temp dir for the workload socket");
        let socket = dir.path().join("workload.sock");
        let listener = UnixListener::bind(&socket).expect("bind the workload socket");
        let shared = Arc::new(Shared {
            module_id: cfg.module_id,
            generation_id: cfg.generation_id,
            state: Mutex::new(State {
                module_key: cfg.module_key,
                trust_bundle: cfg.trust_bundle,
                ..State::default()
            }),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        Workload {
            shared,
            socket,
            _dir: dir,
            _guard: cancel.drop_guard(),
        }
    }

    /// From now on, a signing request is answered only for a caller inside the container
    /// `container_id` (the module's container, as edgeAgent created it).
    pub fn require_container(&self, container_id: &str) {
        self.shared.lock().container = Some(container_id.to_string());
    }

    /// Path of the unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `IOTEDGE_WORKLOADURI` for this socket: `unix:///…/workload.sock`.
    pub fn uri(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Replaces the PEM served by `/trust-bundle` (edge CA rotation).
    pub fn set_trust_bundle(&self, pem: &str) {
        self.shared.lock().trust_bundle = pem.to_string();
    }

    /// Replaces the module key used by `sign` (key rotation).
    pub fn set_module_key(&self, base64_key: &str) {
        self.shared.lock().module_key = base64_key.to_string();
    }

    /// The next `count` requests (any route) get `status` with `{"message": "injected failure"}`
    /// before any other check, to test retries.
    pub fn fail_next(&self, status: u16, count: usize) {
        self.shared.lock().forced_failure = Some((status, count));
    }

    /// Successful (200) sign calls so far.
    pub fn sign_calls(&self) -> usize {
        self.shared.lock().sign_ok
    }

    /// Successful (200) trust-bundle calls so far.
    pub fn trust_bundle_calls(&self) -> usize {
        self.shared.lock().trust_bundle_ok
    }

    /// Every request so far, in order, with the status it got.
    pub fn requests(&self) -> Vec<WorkloadRequest> {
        self.shared.lock().requests.clone()
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, pid, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({ "message": message }))
}

async fn handle(
    shared: &Shared,
    pid: Option<i32>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, value) = route(
        shared,
        pid,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        content_type.as_deref(),
        &body,
    );
    shared.lock().requests.push(WorkloadRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        content_type,
        body,
        status: status.as_u16(),
    });
    reply(status, value)
}

/// Query pairs decoded like `application/x-www-form-urlencoded` (as `url::form_urlencoded`).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn route(
    shared: &Shared,
    pid: Option<i32>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    {
        let mut st = shared.lock();
        if let Some((status, left)) = st.forced_failure {
            st.forced_failure = (left > 1).then_some((status, left - 1));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "injected failure");
        }
    }

    let api_version = query_pairs(query.unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v);
    let Some(api_version) = api_version else {
        return error(StatusCode::BAD_REQUEST, "api-version not specified");
    };
    if !KNOWN_API_VERSIONS.contains(&api_version.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("invalid api-version {api_version:?}"),
        );
    }

    if path == "/trust-bundle" {
        if method != Method::GET {
            return error(StatusCode::BAD_REQUEST, "method not allowed");
        }
        let mut st = shared.lock();
        st.trust_bundle_ok += 1;
        return (StatusCode::OK, json!({ "certificate": st.trust_bundle }));
    }

    let Some((module_id, gen_id)) = parse_sign_path(path) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if method != Method::POST {
        return error(StatusCode::BAD_REQUEST, "method not allowed");
    }
    if module_id != shared.module_id {
        return error(
            StatusCode::FORBIDDEN,
            &format!("caller is not module {module_id}"),
        );
    }
    let container = shared.lock().container.clone();
    if let Some(container) = container
        && !pid.is_some_and(|pid| in_container(pid, &container))
    {
        return error(
            StatusCode::FORBIDDEN,
            &format!("caller is not module {module_id}"),
        );
    }
    if gen_id != shared.generation_id {
        return error(StatusCode::NOT_FOUND, "module generation id not found");
    }
    sign(shared, content_type, body)
}

/// Whether process `pid` runs in the container `id` (its cgroup path names the id, with Docker's
/// cgroupfs and systemd drivers alike).
fn in_container(pid: i32, id: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|cgroups| cgroups.lines().any(|line| line.contains(id)))
}

/// `/modules/{id}/genid/{gen}/sign` → (percent-decoded module id, generation id).
fn parse_sign_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/modules/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [module, "genid", gen_id, "sign"] if !module.is_empty() && !gen_id.is_empty() => {
            let module = percent_encoding::percent_decode_str(module)
                .decode_utf8()
                .ok()?
                .into_owned();
            Some((module, gen_id.to_string()))
        }
        _ => None,
    }
}

fn sign(shared: &Shared, content_type: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
    let is_json = content_type.is_none_or(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim() == "application/json")
    });
    if body.is_empty() || !is_json {
        return error(StatusCode::BAD_REQUEST, "missing request body");
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    };
    let Some(data) = request.get("data").and_then(Value::as_str) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `data`");
    };
    if request.get("keyId").and_then(Value::as_str) != Some("primary") {
        return error(StatusCode::BAD_REQUEST, "keyId must be \"primary\"");
    }
    if request.get("algo").and_then(Value::as_str) != Some("HMACSHA256") {
        return error(StatusCode::BAD_REQUEST, "algo must be \"HMACSHA256\"");
    }
    let Ok(data) = B64.decode(data) else {
        return error(StatusCode::BAD_REQUEST, "data is not valid base64");
    };
    let mut st = shared.lock();
    let Ok(key) = B64.decode(&st.module_key) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "module key is not base64",
        );
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(&data);
    let digest = B64.encode(mac.finalize().into_bytes());
    st.sign_ok += 1;
    (StatusCode::OK, json!({ "digest": digest }))
}
