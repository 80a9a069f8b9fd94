//! The Docker engine's event stream → `ContainerEvent`s, with reconnect and resume.
//!
//! The engine keeps only a short in-memory log of events, and loses it when it restarts; the
//! watcher asks for events `since` the last one it saw, so a dropped connection skips nothing the
//! engine still has, and drops the replayed ones it already sent (same time, actor and action).

use super::cache::{ContainerCache, ContainerMeta, EDGE_OWNER_LABEL};
use super::drift::{Drift, Facts};
use super::{COLLECTOR, connect};
use crate::collectors::Context;
use crate::event::{CollectorHealth, ContainerEvent, ContainerObject, Event, Payload};
use bollard::models::{ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First wait after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A stream that lived this long was healthy: the next failure starts the backoff afresh.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);

/// Container actions reported; others (`attach`, `resize`, `top`, `health_status`,
/// `exec_die`, …) are noise for security and left out.
const CONTAINER_ACTIONS: &[&str] = &[
    "create",
    "start",
    "restart",
    "die",
    "oom",
    "kill",
    "stop",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "exec_create",
    "exec_start",
];
const IMAGE_ACTIONS: &[&str] = &["pull", "delete", "untag", "tag", "load", "import"];
const NETWORK_ACTIONS: &[&str] = &["connect", "disconnect"];
const VOLUME_ACTIONS: &[&str] = &["mount"];

/// How far before the newest event a resumed stream starts. The engine stamps an event when it
/// happens but publishes it a little later, so concurrent operations (a `docker rm -f` of many
/// containers) reach the stream slightly out of time order: resuming exactly at the newest time
/// would skip an older one still in flight when the connection broke.
const RESUME_SLACK_NANOS: i64 = 2_000_000_000;
/// Events remembered for recognising replays at most; far more than the engine emits in the
/// slack. Events older than the slack before the newest are forgotten before that: a replay
/// starts at the slack, so they cannot come again.
const RESUME_MEMORY: usize = 4096;
/// How long one inspect (of a container just created or started) or the listing on connect may
/// take before the record leaves without what it would add.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which events were already sent, for resuming with `since` without duplicates or gaps.
#[derive(Debug, Default)]
pub struct Resume {
    /// Time of the newest event seen, in Unix nanoseconds.
    last_nano: i64,
    /// Times and keys (time + type + actor id + action) of the most recent events, in the order
    /// they arrived.
    order: std::collections::VecDeque<(i64, String)>,
    seen: HashSet<String>,
}

impl Resume {
    /// The `since` to ask for: a little before the newest event (replays are then filtered by
    /// [`Resume::is_new`]); `None` before any event, meaning "from now".
    pub fn since(&self) -> Option<String> {
        (self.last_nano > 0).then(|| {
            let t = (self.last_nano - RESUME_SLACK_NANOS).max(1);
            format!(
                "{}.{:09}",
                t.div_euclid(1_000_000_000),
                t.rem_euclid(1_000_000_000)
            )
        })
    }

    /// Before the first connection's stream: ask for events from now, so containers created
    /// while the watcher inspects the existing ones are not missed (and nothing from before the
    /// watcher started is replayed: the slack is added back).
    pub fn start_now(&mut self) {
        if self.last_nano == 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            self.last_nano = now.saturating_add(RESUME_SLACK_NANOS);
        }
    }

    /// Whether an event was not sent before, remembering it if so. Events arrive out of time
    /// order now and then, so only an exact repeat counts as seen. Events without a time
    /// cannot be matched and are taken as new.
    pub fn is_new(&mut self, msg: &EventMessage) -> bool {
        let Some(nano) = event_nanos(msg) else {
            return true;
        };
        let key = format!(
            "{nano}\u{1f}{:?}\u{1f}{}\u{1f}{}",
            msg.typ,
            msg.actor
                .as_ref()
                .and_then(|a| a.id.as_deref())
                .unwrap_or(""),
            msg.action.as_deref().unwrap_or(""),
        );
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back((nano, key));
        self.last_nano = self.last_nano.max(nano);
        // What a replay cannot bring again (older than its start), and past the bound the
        // oldest: memory follows the events of the last seconds, not every event ever seen.
        let replay_from = self.last_nano.saturating_sub(RESUME_SLACK_NANOS);
        while let Some((t, _)) = self.order.front() {
            if *t >= replay_from && self.order.len() <= RESUME_MEMORY {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

fn event_nanos(msg: &EventMessage) -> Option<i64> {
    msg.time_nano
        .filter(|n| *n > 0)
        .or_else(|| msg.time.and_then(|s| s.checked_mul(1_000_000_000)))
        .filter(|n| *n > 0)
}

/// The record for one engine event, or `None` for an event that is not reported. Fills the
/// cache from `create`/`start`/`rename` (before the container's first process runs) and fills the
/// record's container fields from the cache where the event lacks them.
pub fn to_record(msg: &EventMessage, cache: &ContainerCache) -> Option<ContainerEvent> {
    let full_action = msg.action.as_deref()?.trim();
    // `exec_start: sh -c id`, `health_status: healthy`: the part before ':' is the action.
    let (action, detail) = match full_action.split_once(':') {
        Some((a, d)) => (a.trim(), Some(d.trim()).filter(|d| !d.is_empty())),
        None => (full_action, None),
    };
    let no_attributes = HashMap::new();
    let actor_id = msg
        .actor
        .as_ref()
        .and_then(|a| a.id.as_deref())
        .filter(|i| !i.is_empty());
    let attrs = msg
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .unwrap_or(&no_attributes);
    let attr = |k: &str| attrs.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut record = ContainerEvent {
        action: action.to_string(),
        object_type: ContainerObject::Container,
        container_id: None,
        container_name: None,
        image: None,
        image_digest: None,
        module_name: None,
        exit_code: None,
        command: None,
        signal: None,
        extra_details: Default::default(),
    };
    match msg.typ.as_ref()? {
        EventMessageTypeEnum::CONTAINER => {
            if !CONTAINER_ACTIONS.contains(&action) {
                return None;
            }
            let id = actor_id?;
            let from_event = ContainerMeta::from_parts(attr("name"), attr("image"), &|k| {
                attr(k).map(str::to_string)
            });
            if matches!(action, "create" | "start" | "rename" | "restart") {
                cache.insert(id, from_event.clone());
                // The image id is not in the event: fetch it now for the events that follow.
                if cache.get(id).is_some_and(|m| m.image_id.is_none()) {
                    cache.request(id);
                }
            }
            let known = cache.get(id).unwrap_or_default();
            record.container_id = Some(id.to_string());
            record.container_name = from_event.name.or(known.name);
            record.image = from_event.image.or(known.image);
            record.image_digest = known.image_id;
            record.module_name = from_event.module.or(known.module);
            record.exit_code = attr("exitCode").and_then(|c| c.parse().ok());
            record.signal = attr("signal").map(str::to_string);
            if action.starts_with("exec_") {
                // The engine runs health checks as execs every interval: noise, not a shell.
                if detail.is_some() && detail == known.health_cmd.as_deref() {
                    return None;
                }
                record.command = detail.map(str::to_string);
                if let Some(exec) = attr("execID") {
                    record.extra_details.insert("ExecId".into(), exec.into());
                }
            }
            if action == "destroy" {
                cache.remove(id);
            }
        }
        EventMessageTypeEnum::IMAGE => {
            if !IMAGE_ACTIONS.contains(&action) {
                return None;
            }
            record.object_type = ContainerObject::Image;
            record.image = attr("name").or(actor_id).map(str::to_string);
            record.image_digest = actor_id
                .filter(|i| i.starts_with("sha256:"))
                .map(str::to_string);
        }
        EventMessageTypeEnum::NETWORK | EventMessageTypeEnum::VOLUME => {
            let network = matches!(msg.typ, Some(EventMessageTypeEnum::NETWORK));
            let allowed = if network {
                NETWORK_ACTIONS
            } else {
                VOLUME_ACTIONS
            };
            if !allowed.contains(&action) {
                return None;
            }
            record.object_type = if network {
                ContainerObject::Network
            } else {
                ContainerObject::Volume
            };
            if let Some(id) = attr("container") {
                let known = cache.get_or_request(id).unwrap_or_default();
                record.container_id = Some(id.to_string());
                record.container_name = known.name;
                record.image = known.image;
                record.image_digest = known.image_id;
                record.module_name = known.module;
            }
            let details: &[(&str, &str)] = if network {
                &[("name", "NetworkName"), ("type", "NetworkType")]
            } else {
                &[
                    ("destination", "Destination"),
                    ("read/write", "ReadWrite"),
                    ("driver", "Driver"),
                ]
            };
            for (from, to) in details {
                if let Some(v) = attr(from) {
                    record.extra_details.insert((*to).into(), v.into());
                }
            }
            if let Some(id) = actor_id {
                let key = if network { "NetworkId" } else { "VolumeName" };
                record.extra_details.insert(key.into(), id.into());
            }
        }
        _ => return None,
    }
    Some(record)
}

/// Exponential backoff between reconnects, with a little jitter so many devices do not hammer
/// a restarted engine (or each other's logs) in step.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait + wait.mul_f64(fastrand::f64() * 0.2)
    }
    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

/// Why a connection ended.
enum Ended {
    Cancelled,
    /// The configuration changed what to connect to (or turned collection off).
    Reconfigured,
    Lost(String),
}

/// Watches the engine until `ctx.cancel`: connects, streams events, reconnects with backoff.
/// Reports `Down` once when the engine cannot be reached (not again on every retry) and `Up`
/// when it is back; other collectors never wait on it.
pub async fn watch(ctx: Context, cache: Arc<ContainerCache>) {
    let mut config = ctx.config.clone();
    let mut resume = Resume::default();
    let mut drift = Drift::load(&ctx.state_dir.join(super::drift::FILE_NAME));
    let mut backoff = Backoff(MIN_BACKOFF);
    let mut down_reported = false;
    loop {
        let (enabled, path) = {
            let c = config.borrow_and_update();
            (c.container_collection_enabled, c.docker_socket_path.clone())
        };
        if !enabled {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                changed = config.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let ended = match connect(&path).await {
            Ok(docker) => {
                if down_reported {
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Up,
                        format!("reconnected to the Docker engine at {path}"),
                        None,
                    );
                    down_reported = false;
                } else {
                    ctx.metrics.collector_status(
                        COLLECTOR,
                        CollectorHealth::Up,
                        &format!("following the Docker engine at {path}"),
                    );
                }
                let started = Instant::now();
                let ended = stream(
                    &ctx,
                    &mut config,
                    &docker,
                    &cache,
                    &mut resume,
                    &mut drift,
                    &path,
                )
                .await;
                save_drift(&mut drift);
                if started.elapsed() >= HEALTHY_STREAM {
                    backoff.reset();
                }
                ended
            }
            Err(e) => Ended::Lost(format!("cannot reach the Docker engine at {path}: {e}")),
        };
        match ended {
            Ended::Cancelled => return,
            Ended::Reconfigured => continue,
            Ended::Lost(message) => {
                ctx.metrics.error(COLLECTOR, "connection");
                if !down_reported {
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Down,
                        message,
                        Some(
                            "reconnecting with backoff; container events resume where they stopped",
                        ),
                    );
                    down_reported = true;
                } else {
                    tracing::debug!(collector = COLLECTOR, "{message}");
                }
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next()) => {}
                    changed = config.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// Streams events from one connection until it ends.
async fn stream(
    ctx: &Context,
    config: &mut tokio::sync::watch::Receiver<Arc<crate::config::Config>>,
    docker: &bollard::Docker,
    cache: &ContainerCache,
    resume: &mut Resume,
    drift: &mut Drift,
    path: &str,
) -> Ended {
    resume.start_now();
    let learned = learn_existing(ctx, docker, cache, drift).await;
    save_drift(drift);
    for record in learned {
        let event = Event::new(Payload::ContainerEvent(vec![record]));
        if !ctx.emit(COLLECTOR, event).await {
            return Ended::Cancelled;
        }
    }
    let filters = HashMap::from([(
        "type".to_string(),
        ["container", "image", "network", "volume"]
            .map(str::to_string)
            .to_vec(),
    )]);
    let options = EventsOptions {
        since: resume.since(),
        until: None,
        filters: Some(filters),
    };
    let mut events = std::pin::pin!(docker.events(Some(options)));
    loop {
        let item = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ended::Cancelled,
            changed = config.changed() => {
                if changed.is_err() {
                    return Ended::Cancelled;
                }
                let c = config.borrow_and_update();
                if !c.container_collection_enabled || c.docker_socket_path != path {
                    return Ended::Reconfigured;
                }
                continue;
            }
            item = events.next() => item,
        };
        match item {
            Some(Ok(msg)) => {
                if !resume.is_new(&msg) {
                    continue;
                }
                if let Some(mut record) = to_record(&msg, cache) {
                    judge(docker, cache, drift, &mut record).await;
                    save_drift(drift);
                    let event = Event::new(Payload::ContainerEvent(vec![record]));
                    if !ctx.emit(COLLECTOR, event).await {
                        return Ended::Cancelled;
                    }
                }
            }
            // One answer the client could not parse (a newer engine's new field value): skip it.
            Some(Err(
                e @ (bollard::errors::Error::JsonDataError { .. }
                | bollard::errors::Error::JsonSerdeError { .. }),
            )) => {
                tracing::warn!(collector = COLLECTOR, error = %e, "skipping an engine event that could not be read");
                ctx.metrics.error(COLLECTOR, "decode");
            }
            Some(Err(e)) => return Ended::Lost(format!("the Docker event stream failed: {e}")),
            None => return Ended::Lost("the Docker engine closed the event stream".into()),
        }
    }
}

/// Inspects a container the engine reports created or started (before its record leaves), for
/// its privileges and IoT Edge drift ([`Drift::judge`]); fills the cache and the image id on the
/// way. A container already gone, or an engine too slow to answer, leaves the record as it was.
async fn judge(
    docker: &bollard::Docker,
    cache: &ContainerCache,
    drift: &mut Drift,
    record: &mut ContainerEvent,
) {
    let create = match record.action.as_str() {
        "create" => true,
        "start" => false,
        _ => return,
    };
    let Some(id) = record.container_id.clone() else {
        return;
    };
    let Some(inspect) = inspect(docker, &id).await else {
        return;
    };
    let meta = ContainerMeta::from_inspect(&inspect);
    if record.image_digest.is_none() {
        record.image_digest = meta.image_id.clone();
    }
    let facts = Facts::new(&inspect, &meta);
    cache.insert(&id, meta);
    drift.judge(&id, &facts, create, &mut record.extra_details);
}

async fn inspect(
    docker: &bollard::Docker,
    id: &str,
) -> Option<bollard::models::ContainerInspectResponse> {
    match tokio::time::timeout(INSPECT_TIMEOUT, docker.inspect_container(id, None)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::debug!(collector = COLLECTOR, container = %id, error = %e, "inspect failed");
            None
        }
        Err(_) => {
            tracing::debug!(collector = COLLECTOR, container = %id, "inspect timed out");
            None
        }
    }
}

/// Saves drift's history when it changed (a module's new container: rare); a failure is logged
/// and the history stays in memory (the next change tries again).
fn save_drift(drift: &mut Drift) {
    if let Err(e) = drift.save() {
        let path = drift
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        tracing::warn!(collector = COLLECTOR, %path, error = %e, "cannot save the IoT Edge module history");
    }
}

/// On connecting: learns the device's IoT Edge modules from the containers that exist (every
/// container of edgeAgent's is inspected), and returns a `running` record for each container
/// running without edgeAgent's label on an edge device (each once per agent run), so a container
/// started while the agent was down is still reported, and for each module container that
/// replaced its module's last known one with another image or more privileges
/// ([`Drift::learn`]). A failed listing learns nothing; the event stream goes on regardless.
async fn learn_existing(
    ctx: &Context,
    docker: &bollard::Docker,
    cache: &ContainerCache,
    drift: &mut Drift,
) -> Vec<ContainerEvent> {
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let listed = tokio::time::timeout(INSPECT_TIMEOUT, docker.list_containers(Some(options))).await;
    let containers = match listed {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(collector = COLLECTOR, error = %e, "listing containers failed");
            ctx.metrics.error(COLLECTOR, "api");
            return Vec::new();
        }
        Err(_) => {
            ctx.metrics.error(COLLECTOR, "timeout");
            return Vec::new();
        }
    };
    let owned = |labels: &Option<HashMap<String, String>>| {
        labels
            .as_ref()
            .is_some_and(|l| l.contains_key(EDGE_OWNER_LABEL))
    };
    if containers.iter().any(|c| owned(&c.labels)) {
        drift.saw_edge_agent();
    }
    let edge_device = drift.edge_device();
    let mut records = Vec::new();
    for summary in &containers {
        let Some(id) = summary.id.as_deref() else {
            continue;
        };
        let running = matches!(summary.state, Some(ContainerSummaryStateEnum::RUNNING));
        // edgeAgent's containers teach drift the modules; others matter only running, here.
        let wanted = owned(&summary.labels) || (edge_device && running);
        if !wanted {
            continue;
        }
        let Some(inspect) = inspect(docker, id).await else {
            continue;
        };
        let meta = ContainerMeta::from_inspect(&inspect);
        let facts = Facts::new(&inspect, &meta);
        cache.insert(id, meta.clone());
        let drifted = drift.learn(id, &facts);
        if drifted.is_some() || drift.report_running(id, &facts) {
            let mut record = ContainerEvent {
                action: "running".into(),
                object_type: ContainerObject::Container,
                container_id: Some(id.to_string()),
                container_name: meta.name,
                image: meta.image,
                image_digest: meta.image_id,
                module_name: meta.module,
                exit_code: None,
                command: None,
                signal: None,
                extra_details: Default::default(),
            };
            match drifted {
                Some(extra) => record.extra_details = extra,
                None => drift.judge(id, &facts, false, &mut record.extra_details),
            }
            records.push(record);
        }
    }
    records
}

#[cfg(test)]
mod tests;
