//! The hub task: everything that arrives from the hub except PUBACKs, and the requests that go
//! with it.
//!
//! - After every CONNACK (a new generation on the connection watch): GET the whole twin.
//! - Twin responses, matched by `$rid` to the GET or reported PATCH that asked; a failure, an
//!   unreadable twin or no answer within [`HubOptions::request_timeout`] is retried with backoff.
//! - Desired patches → [`Twin`] → the config watch, `ConfigurationError` events, reported PATCH.
//! - Direct methods, each answered from its own small task (a `flush` may take seconds).
//! - Module inputs → the inputs task (bounded; a full queue drops and counts the message).
//!
//! Requests go out QoS 0 and only while connected; pending ones are forgotten on disconnect (the
//! GET after the next CONNACK supersedes them).

use super::HubOptions;
use super::inputs::InputMessage;
use super::methods::{self, MethodContext, Response};
use super::topics::{self, Inbound, Topics};
use super::twin::{Twin, Update};
use crate::backoff;
use crate::config::Config;
use crate::event::Event;
use crate::metrics::{DropReason, Metrics};
use crate::text::error_chain;
use rumqttc::{AsyncClient, Publish, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// What a `$rid` we sent was for.
#[derive(Debug, Clone)]
enum Asked {
    Get,
    Report(Value),
}

#[derive(Debug)]
struct Pending {
    asked: Asked,
    deadline: Instant,
}

pub(super) struct HubTask {
    pub topics: Topics,
    pub client: AsyncClient,
    pub twin: Twin,
    pub config: watch::Sender<Arc<Config>>,
    /// Dropped at shutdown so the pipeline can finish.
    pub events: Option<mpsc::Sender<Event>>,
    pub inputs: Option<mpsc::Sender<InputMessage>>,
    pub methods: MethodContext,
    pub metrics: Arc<Metrics>,
    pub opts: HubOptions,
}

/// When a request is due, and how many times it failed in a row.
#[derive(Debug, Default)]
struct Due {
    at: Option<Instant>,
    failures: u32,
}

impl Due {
    fn now(&mut self) {
        self.at = Some(Instant::now());
    }

    fn failed(&mut self, opts: &HubOptions) {
        self.at = Some(
            Instant::now()
                + backoff::full_jitter(opts.backoff_min, opts.backoff_max, self.failures),
        );
        self.failures = self.failures.saturating_add(1);
    }

    fn ready(&self) -> bool {
        self.at.is_some_and(|t| t <= Instant::now())
    }
}

/// Runs until `inbound` closes (the poll task has stopped). `shutdown` stops producing events:
/// the event and input senders are dropped so the pipeline can drain and finish.
pub(super) async fn run(
    mut task: HubTask,
    mut inbound: mpsc::Receiver<Publish>,
    mut connection: watch::Receiver<Option<u64>>,
    shutdown: CancellationToken,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut next_rid = 1u64;
    let mut get = Due::default();
    let mut report = Due::default();
    let mut connected = false;
    let mut connection_open = true;

    let asked = |p: &HashMap<String, Pending>, get: bool| {
        p.values().any(|p| matches!(p.asked, Asked::Get) == get)
    };
    loop {
        if connected {
            if get.ready() && !asked(&pending, true) {
                get.at = None;
                let rid = next_rid.to_string();
                next_rid += 1;
                tracing::debug!(%rid, "GET twin");
                pending.insert(rid.clone(), task.pending(Asked::Get));
                task.send(topics::twin_get(&rid), Vec::new()).await;
            }
            if report.ready() && !asked(&pending, false) {
                report.at = None;
                if let Some(view) = task.twin.report_if_changed() {
                    let rid = next_rid.to_string();
                    next_rid += 1;
                    tracing::debug!(%rid, "PATCH reported properties");
                    let body = view.to_string().into_bytes();
                    pending.insert(rid.clone(), task.pending(Asked::Report(view)));
                    task.send(topics::twin_patch_reported(&rid), body).await;
                }
            }
        }
        // A request waits for the one of its kind in flight (whose deadline is in the list).
        let timer = [
            get.at.filter(|_| connected && !asked(&pending, true)),
            report.at.filter(|_| connected && !asked(&pending, false)),
            pending.values().map(|p| p.deadline).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        tokio::select! {
            biased;
            _ = shutdown.cancelled(), if task.events.is_some() || task.inputs.is_some() => {
                task.events = None;
                task.inputs = None;
            }
            changed = connection.changed(), if connection_open => {
                if changed.is_err() {
                    connection_open = false;
                    continue;
                }
                let now_connected = connection.borrow_and_update().is_some();
                pending.clear();
                task.twin.disconnected();
                connected = now_connected;
                if connected {
                    get = Due::default();
                    get.now();
                    report = Due::default();
                }
            }
            message = inbound.recv() => match message {
                Some(p) => task.handle(p, &mut pending, &mut get, &mut report).await,
                None => break,
            },
            _ = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                let now = Instant::now();
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(rid, _)| rid.clone())
                    .collect();
                for rid in expired {
                    if let Some(p) = pending.remove(&rid) {
                        tracing::warn!(%rid, "no twin response in time; asking again");
                        task.metrics.error("hub", "twin_timeout");
                        match p.asked {
                            Asked::Get => get.failed(&task.opts),
                            Asked::Report(_) => report.failed(&task.opts),
                        }
                    }
                }
            }
        }
    }
}

impl HubTask {
    fn pending(&self, asked: Asked) -> Pending {
        Pending {
            asked,
            deadline: Instant::now() + self.opts.request_timeout,
        }
    }

    /// A QoS 0 request or answer. Fails only when the poll task is gone.
    async fn send(&self, topic: String, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
        {
            tracing::debug!(error = %e, "cannot send to the hub: the session has stopped");
        }
    }

    async fn handle(
        &mut self,
        p: Publish,
        pending: &mut HashMap<String, Pending>,
        get: &mut Due,
        report: &mut Due,
    ) {
        let inbound = match self.topics.parse(&p.topic) {
            Ok(i) => i,
            Err(e) => {
                let topic: String = p.topic.chars().take(120).collect();
                tracing::warn!(%topic, "ignoring a message: {e}");
                self.metrics.error("hub", "bad_topic");
                return;
            }
        };
        match inbound {
            Inbound::TwinResponse { status, rid, .. } => match pending.remove(&rid) {
                None => {
                    tracing::debug!(%rid, status, "twin response to nothing we are waiting for")
                }
                Some(Pending {
                    asked: Asked::Get, ..
                }) if status == 200 => match self.twin.on_full(&p.payload) {
                    Ok(update) => {
                        get.failures = 0;
                        tracing::info!(version = ?self.twin.version(), "module twin read");
                        self.apply(update, get, report);
                    }
                    Err(e) => {
                        tracing::warn!(bytes = p.payload.len(), "unusable twin: {e}; asking again");
                        self.metrics.error("hub", "bad_twin");
                        get.failed(&self.opts);
                    }
                },
                Some(Pending {
                    asked: Asked::Get, ..
                }) => {
                    tracing::warn!(status, "twin GET failed; asking again");
                    self.metrics.error("hub", "twin_get");
                    get.failed(&self.opts);
                }
                Some(Pending {
                    asked: Asked::Report(view),
                    ..
                }) if (200..300).contains(&status) => {
                    report.failures = 0;
                    self.twin.reported_acknowledged(&view);
                    tracing::debug!("reported properties updated");
                    // Something may have changed while the PATCH was on its way.
                    report.now();
                }
                Some(Pending {
                    asked: Asked::Report(_),
                    ..
                }) => {
                    tracing::warn!(status, "reported properties PATCH failed; trying again");
                    self.metrics.error("hub", "twin_report");
                    report.failed(&self.opts);
                }
            },
            Inbound::DesiredPatch { version } => {
                let update = self.twin.on_patch(version, &p.payload);
                self.apply(update, get, report);
            }
            Inbound::MethodRequest { name, rid } => {
                tracing::info!(method = %name, "direct method called");
                let client = self.client.clone();
                let ctx = self.methods.clone();
                let payload = p.payload;
                tokio::spawn(async move {
                    let response = match methods::parse(&name, &payload) {
                        Ok(m) => methods::execute(m, &ctx).await,
                        Err(r) => r,
                    };
                    answer(&client, &rid, &response).await;
                });
            }
            Inbound::Input { name, properties } => {
                let Some(inputs) = &self.inputs else {
                    tracing::debug!(input = %name, "shutting down; ignoring an input message");
                    return;
                };
                let message = InputMessage {
                    input: name,
                    properties,
                    payload: p.payload.to_vec(),
                };
                if inputs.try_send(message).is_err() {
                    tracing::warn!("input queue full; dropped a message from another module");
                    self.metrics.error("inputs", "overflow");
                }
            }
            Inbound::Unknown => {
                let topic: String = p.topic.chars().take(120).collect();
                tracing::debug!(%topic, "ignoring a message on a topic we do not use");
            }
        }
    }

    fn apply(&mut self, update: Update, get: &mut Due, report: &mut Due) {
        if update.get_again {
            get.now();
        }
        if let Some(new) = update.config {
            let changed = self.config.send_if_modified(|current| {
                if **current == new {
                    false
                } else {
                    *current = Arc::new(new);
                    true
                }
            });
            if changed {
                tracing::info!(version = ?self.twin.version(), "configuration updated from the module twin");
            }
        }
        self.metrics.set_config_version(self.twin.version());
        for r in update.new_rejections {
            tracing::warn!(key = %r.key, error_type = ?r.error_type, used = %r.used, "twin configuration key rejected: {}", r.message);
            self.metrics.config_rejected(&format!("{:?}", r.error_type));
            if let Some(events) = &self.events {
                if events.try_send(r.to_event()).is_err() {
                    self.metrics.dropped("hub", DropReason::ChannelFull, 1);
                }
            }
        }
        if update.reported.is_some() {
            report.now();
        }
    }
}

async fn answer(client: &AsyncClient, rid: &str, response: &Response) {
    tracing::debug!(%rid, status = response.status, "answering a direct method");
    if let Err(e) = client
        .publish(
            topics::method_response(response.status, rid),
            QoS::AtMostOnce,
            false,
            response.payload(),
        )
        .await
    {
        tracing::debug!(error = %error_chain(&e), "cannot answer a method: the session has stopped");
    }
}
