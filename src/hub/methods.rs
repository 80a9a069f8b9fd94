//! Direct methods: `snapshot`, `status`, `flush`.
//!
//! Requests arrive on `$iothub/methods/POST/{name}/?$rid={rid}`; the answer goes to
//! `$iothub/methods/res/{status}/?$rid={rid}` with a JSON body. The caller waits 30 s by
//! default, so every method answers well within that: `flush` gives up after
//! [`DEFAULT_FLUSH_TIMEOUT`] and says so (504). Unknown names get 404, payloads that are not
//! JSON (or not an object/null) 400; the error body is `{"message": "…"}`, like IoT Hub's own.

use crate::metrics::Metrics;
use crate::pipeline::Control;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// How long `flush` waits for the pipeline: under the callers' 30 s default with room to answer.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(25);

/// A request we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Run the periodic collectors now.
    Snapshot,
    /// Connection state, configuration version, queue sizes, collector health.
    Status,
    /// Close aggregation windows and hand everything queued to the outbox now.
    Flush,
    /// Forget the learned behaviour baseline and learn again.
    BaselineReset,
}

/// A method's answer: the status goes into the response topic, the body is its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    pub fn ok(body: Value) -> Response {
        Response { status: 200, body }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response {
            status,
            body: json!({"message": message.into()}),
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

/// Names a request and checks its payload: empty, `null` or an object (our methods take no
/// arguments, but the portal sends `{}` or `null`).
pub fn parse(name: &str, payload: &[u8]) -> Result<Method, Response> {
    let method = match name {
        "snapshot" => Method::Snapshot,
        "status" => Method::Status,
        "flush" => Method::Flush,
        "baseline-reset" => Method::BaselineReset,
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(Response::error(
                404,
                format!(
                    "unknown method {shown:?} (known: snapshot, status, flush, baseline-reset)"
                ),
            ));
        }
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(method);
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Null | Value::Object(_)) => Ok(method),
        Ok(_) => Err(Response::error(
            400,
            "payload must be a JSON object or null",
        )),
        Err(_) => Err(Response::error(400, "payload is not valid JSON")),
    }
}

/// What the methods act on.
#[derive(Clone)]
pub struct MethodContext {
    pub snapshot: Arc<Notify>,
    pub control: mpsc::Sender<Control>,
    pub metrics: Arc<Metrics>,
    pub start_time: String,
    pub flush_timeout: Duration,
}

/// Runs a parsed method.
pub async fn execute(method: Method, ctx: &MethodContext) -> Response {
    match method {
        Method::Snapshot => {
            // A stored permit: the collectors' task takes it on its next wait, even if it is
            // busy right now.
            ctx.snapshot.notify_one();
            Response::ok(json!({"result": "snapshot requested"}))
        }
        Method::Status => Response::ok(status(ctx)),
        Method::Flush => flush(ctx).await,
        Method::BaselineReset => baseline_reset(ctx).await,
    }
}

/// Forgets the learned behaviour baseline; learning starts again.
async fn baseline_reset(ctx: &MethodContext) -> Response {
    let (tx, rx) = oneshot::channel();
    let waited = tokio::time::timeout(ctx.flush_timeout, async {
        ctx.control
            .send(Control::ResetBehaviour(tx))
            .await
            .map_err(|_| ())?;
        rx.await.map_err(|_| ())
    })
    .await;
    match waited {
        Ok(Ok(Some(ends))) => Response::ok(json!({
            "result": "baseline reset",
            "learningEndsUnixSeconds": ends,
        })),
        Ok(Ok(None)) => Response::error(409, "this agent keeps no behaviour baseline"),
        Ok(Err(())) => Response::error(503, "the pipeline has stopped"),
        Err(_) => Response::error(504, "the pipeline did not answer in time"),
    }
}

async fn flush(ctx: &MethodContext) -> Response {
    let (tx, rx) = oneshot::channel();
    let waited = tokio::time::timeout(ctx.flush_timeout, async {
        ctx.control
            .send(Control::Flush(Some(tx)))
            .await
            .map_err(|_| ())?;
        rx.await.map_err(|_| ())
    })
    .await;
    match waited {
        Ok(Ok(())) => Response::ok(json!({"result": "flushed"})),
        Ok(Err(())) => Response::error(503, "the pipeline has stopped"),
        Err(_) => Response::error(
            504,
            format!(
                "flush did not complete within {} s",
                ctx.flush_timeout.as_secs()
            ),
        ),
    }
}

/// The same report `edgeguard status` prints ([`crate::status::report`]).
fn status(ctx: &MethodContext) -> Value {
    serde_json::to_value(crate::status::report(&ctx.metrics))
        .unwrap_or_else(|e| json!({ "message": format!("cannot render the status: {e}") }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CollectorHealth, Priority};

    fn context() -> (MethodContext, mpsc::Receiver<Control>) {
        let (control, rx) = mpsc::channel(1);
        (
            MethodContext {
                snapshot: Arc::new(Notify::new()),
                control,
                metrics: Arc::new(Metrics::for_tests()),
                start_time: "2026-01-01T00:00:00.000Z".into(),
                flush_timeout: Duration::from_secs(5),
            },
            rx,
        )
    }

    #[test]
    fn dispatch() {
        assert_eq!(parse("snapshot", b""), Ok(Method::Snapshot));
        assert_eq!(parse("status", b"null"), Ok(Method::Status));
        assert_eq!(parse("flush", b" {} "), Ok(Method::Flush));
        assert_eq!(parse("flush", br#"{"x":1}"#), Ok(Method::Flush));
        let e = parse("reboot", b"{}").unwrap_err();
        assert_eq!(e.status, 404);
        assert!(
            e.body["message"]
                .as_str()
                .unwrap()
                .starts_with("unknown method \"reboot\"")
        );
        assert_eq!(parse("status", b"{oops").unwrap_err().status, 400);
        assert_eq!(parse("status", b"[1]").unwrap_err().status, 400);
        assert_eq!(parse("status", b"\xff").unwrap_err().status, 400);
        assert_eq!(parse("Status", b"").unwrap_err().status, 404);
        let e = parse(&"x".repeat(10_000), b"").unwrap_err();
        assert!(e.payload().len() < 200);
    }

    #[tokio::test]
    async fn snapshot_notifies_the_collectors() {
        let (ctx, _rx) = context();
        let r = execute(Method::Snapshot, &ctx).await;
        assert_eq!(r.status, 200);
        // The permit was stored for a waiter that comes later.
        tokio::time::timeout(Duration::from_secs(1), ctx.snapshot.notified())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn flush_answers_after_the_pipeline_replies() {
        let (ctx, mut rx) = context();
        let pipeline = tokio::spawn(async move {
            let Some(Control::Flush(Some(reply))) = rx.recv().await else {
                panic!("no flush");
            };
            reply.send(()).unwrap();
            rx
        });
        let r = execute(Method::Flush, &ctx).await;
        assert_eq!(r, Response::ok(json!({"result": "flushed"})));
        let rx = pipeline.await.unwrap();
        drop(rx);
        assert_eq!(execute(Method::Flush, &ctx).await.status, 503);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_flush_times_out_within_the_callers_wait() {
        let (ctx, _rx) = context();
        // The pipeline never answers (the reply sender is kept in the channel).
        let r = execute(Method::Flush, &ctx).await;
        assert_eq!(r.status, 504);
        assert!(r.body["message"].as_str().unwrap().contains("5 s"));
    }

    #[tokio::test]
    async fn status_reports_link_metrics_and_collectors() {
        let (ctx, _rx) = context();
        for _ in 0..2 {
            ctx.metrics
                .set_hub_link("disconnected", Some("reset"), true);
            ctx.metrics.set_hub_link("connected", None, false);
        }
        ctx.metrics.set_config_version(Some(7));
        ctx.metrics.set_spool(3, 300);
        ctx.metrics.set_queue(Priority::High, 5, 500);
        ctx.metrics
            .collector_status("process", CollectorHealth::Degraded, "no connector");
        ctx.metrics
            .collector_status("system", CollectorHealth::Up, "fine");
        let r = execute(Method::Status, &ctx).await;
        assert_eq!(r.status, 200);
        let b = r.body;
        assert_eq!(b["connection"]["state"], "connected");
        assert_eq!(b["connection"]["reconnects"], 2);
        assert_eq!(b["config"]["desiredVersion"], 7);
        assert_eq!(b["spool"]["messages"], 3);
        assert_eq!(b["spool"]["bytes"], 300);
        assert_eq!(b["queue"]["High"]["events"], 5);
        assert_eq!(b["collectors"]["process"], "Degraded");
        assert_eq!(b["collectors"]["system"], "Up");
        assert_eq!(b["collectorDetails"]["process"]["message"], "no connector");
        assert_eq!(b["connection"]["lastError"], "reset");
        assert_eq!(b["agentVersion"], crate::event::envelope::AGENT_VERSION);
    }
}
