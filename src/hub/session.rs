//! The MQTT session with edgeHub (or IoT Hub) over rumqttc and rustls.
//!
//! Two tasks share one `AsyncClient`/`EventLoop` pair (style.md §3):
//!
//! - [`drive`] is the only caller of `EventLoop::poll`. Before every connection it fetches the
//!   trust bundle and signs a fresh SAS token (the edge CA can rotate; a token must be renewed);
//!   after every CONNACK it subscribes (pushed at the front of rumqttc's queue) and tells the hub
//!   task, which GETs the twin. It reconnects with jittered backoff, and at 80 % of the token's
//!   lifetime. It never waits on another task while a connection is up, except to hand a
//!   `Delivery` to the outbox, whose channel has room for every record in flight.
//! - [`publish_records`] turns outbox [`Record`]s into QoS 1 telemetry on the module topic.
//!
//! **Acknowledgements.** `publish()` returns nothing; the packet id shows up later as
//! `Outgoing::Publish(pkid)`, in request order. So the publisher sends a [`Tag`] (record id and
//! the message id it put into `$.mid`) to the poll task *before* each publish; `Outgoing::Publish`
//! with a new pkid takes the oldest unassigned tag, a pkid already in flight is a resend, and
//! `PubAck(pkid)` becomes `Delivery::Ack(id)`. Everything else we publish (twin requests, method
//! answers) is QoS 0, has pkid 0 and takes no tag.
//!
//! **Disconnects.** The outbox is the source of truth, not rumqttc's session replay: when a
//! connection ends, every telemetry publish rumqttc holds for replay (in flight, or queued and
//! drained into `pending`) is removed and its record gets `Delivery::Retry`; the outbox sends it
//! again, in order, after its backoff. Removed publishes are matched to their tags by `$.mid`,
//! so a tag whose publish has not reached rumqttc yet stays queued. Twin requests and method
//! answers queued for replay are dropped too: the twin is fetched again after every CONNACK,
//! and a method caller has stopped waiting. Since nothing is replayed, a CONNACK with
//! `session_present = false` has nothing left to retry.

use super::env::{EdgeEnvironment, Trust};
use super::properties::{self, PropertyBag};
use super::sas::{self, Signer};
use super::topics::Topics;
use super::workload::WorkloadClient;
use super::{Error, HubOptions, tls};
use crate::backoff;
use crate::event::Priority;
use crate::metrics::{DropReason, Metrics};
use crate::pipeline::Output;
use crate::pipeline::outbox::{Delivery, Record};
use crate::text::error_chain;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    Request, Subscribe, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

/// edgeHub refuses an inbound PUBLISH above this, and a routed message (body plus every
/// property key and value) must stay within it.
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// The MQTT username's api-version (required; edgeHub does not check its value).
const MQTT_API_VERSION: &str = "2021-04-12";
/// rumqttc's request channel: the publisher blocks when it is full.
const REQUEST_CAPACITY: usize = 32;
/// Tags sent but not yet matched can never exceed the requests rumqttc holds plus the one
/// being published; twice that leaves slack.
pub(super) const TAG_CAPACITY: usize = 2 * REQUEST_CAPACITY + 2;
/// How long a clean shutdown waits for the DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// A record on its way: which id to acknowledge, and the `$.mid` that identifies its publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub id: u64,
    pub mid: String,
}

/// Matches packet ids to records (pure; the poll task drives it).
#[derive(Debug, Default)]
pub struct Tracker {
    unassigned: VecDeque<Tag>,
    in_flight: HashMap<u16, Tag>,
}

impl Tracker {
    /// A tag from the publisher, in publish order.
    pub fn push(&mut self, tag: Tag) {
        self.unassigned.push_back(tag);
    }

    /// `Outgoing::Publish(pkid)`: a new pkid takes the oldest unassigned tag. Returns `false`
    /// for a QoS 1 publish with no tag waiting (a bug: logged by the caller).
    pub fn on_publish(&mut self, pkid: u16) -> bool {
        if pkid == 0 || self.in_flight.contains_key(&pkid) {
            return true;
        }
        match self.unassigned.pop_front() {
            Some(tag) => {
                self.in_flight.insert(pkid, tag);
                true
            }
            None => false,
        }
    }

    /// `PubAck(pkid)`: the record id to acknowledge.
    pub fn on_puback(&mut self, pkid: u16) -> Option<u64> {
        self.in_flight.remove(&pkid).map(|t| t.id)
    }

    /// The connection ended. Empties rumqttc's replay queue (`pending`, and a publish held back
    /// by a packet id collision) and returns the ids of every record whose publish was removed
    /// or was in flight, in publish order, for `Retry`. Tags whose publish is not in rumqttc's
    /// hands yet stay queued.
    pub fn on_disconnect(
        &mut self,
        pending: &mut VecDeque<Request>,
        collision: Option<Publish>,
    ) -> Vec<u64> {
        let removed_mids: Vec<String> = pending
            .drain(..)
            .filter_map(|r| match r {
                Request::Publish(p) => Some(p),
                _ => None,
            })
            .chain(collision)
            .filter_map(|p| message_id(&p.topic))
            .collect();
        let mut retry: Vec<Tag> = self.in_flight.drain().map(|(_, t)| t).collect();
        self.unassigned.retain(|t| {
            if removed_mids.contains(&t.mid) {
                retry.push(t.clone());
                false
            } else {
                true
            }
        });
        // Record ids grow in outbox order; retrying in that order keeps the outbox's order.
        retry.sort_by_key(|t| t.id);
        retry.dedup_by_key(|t| t.id);
        retry.into_iter().map(|t| t.id).collect()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn unassigned(&self) -> usize {
        self.unassigned.len()
    }
}

/// The `$.mid` of a telemetry topic, if it has one.
fn message_id(topic: &str) -> Option<String> {
    let (_, bag) = topic.split_once("/messages/events/")?;
    PropertyBag::decode(bag)
        .ok()?
        .get(properties::MESSAGE_ID)
        .map(str::to_string)
}

/// The telemetry property bag for one message.
pub fn telemetry_properties(
    opts: &HubOptions,
    priority: Priority,
    output: Output,
    mid: &str,
) -> PropertyBag {
    let output = match output {
        Output::Events => opts.output.as_str(),
        Output::Alerts => opts.alerts_output.as_str(),
    };
    let mut bag = PropertyBag::new();
    bag.push(properties::MESSAGE_ID, mid)
        .push(properties::CONTENT_TYPE, "application/json")
        .push(properties::CONTENT_ENCODING, "utf-8")
        .push(properties::OUTPUT_NAME, output);
    if opts.security_interface {
        bag.push(properties::INTERFACE_ID, properties::SECURITY_INTERFACE_ID);
    }
    bag.push(
        properties::MESSAGE_PRIORITY,
        match priority {
            Priority::High => "High",
            _ => "Low",
        },
    );
    bag
}

/// The larger of the two sizes edgeHub limits: the routed message (body and every property key
/// and value) and the MQTT PUBLISH packet.
pub fn message_size(topic: &str, bag: &PropertyBag, body_len: usize) -> usize {
    let routed = body_len + bag.routed_size();
    // Variable header (topic length, topic, packet id) and payload, plus the fixed header
    // (one type byte and up to four length bytes).
    let packet = 2 + topic.len() + 2 + body_len + 5;
    routed.max(packet)
}

/// The MQTT username (iot-edge-protocol.md §4).
pub fn username(env: &EdgeEnvironment) -> String {
    let client_type = sas::url_encode(&format!(
        "edgeguard/{}",
        crate::event::envelope::AGENT_VERSION
    ));
    format!(
        "{}/{}/?api-version={MQTT_API_VERSION}&DeviceClientType={client_type}",
        env.hub_host,
        env.client_id()
    )
}

/// Everything `drive` needs besides the event loop.
pub(super) struct Driver {
    pub env: EdgeEnvironment,
    pub opts: HubOptions,
    pub signer: Signer,
    pub workload: Option<Arc<WorkloadClient>>,
    pub topics: Topics,
    pub metrics: Arc<Metrics>,
    pub tags: mpsc::Receiver<Tag>,
    pub deliveries: mpsc::Sender<Delivery>,
    /// Every publish that is not a PUBACK-tracked telemetry message goes to the hub task.
    pub inbound: mpsc::Sender<Publish>,
    /// Bumped on every CONNACK (the hub task then GETs the twin); `None` while disconnected.
    pub connection: watch::Sender<Option<u64>>,
    /// The publisher is done (the outbox closed): disconnect and stop.
    pub done: CancellationToken,
}

/// Builds the client and event loop (nothing connects until `drive` polls).
pub(super) fn client(env: &EdgeEnvironment, opts: &HubOptions) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(env.client_id(), env.gateway_host.clone(), env.port);
    o.set_clean_session(false)
        .set_keep_alive(opts.keep_alive.max(Duration::from_secs(1)))
        .set_max_packet_size(2 * MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 64 * 1024)
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(o, REQUEST_CAPACITY);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(opts.connect_timeout.as_secs().max(1));
    eventloop.set_network_options(net);
    (client, eventloop)
}

impl Driver {
    /// Fresh trust roots and a fresh SAS token into the options the next connect reads.
    /// Returns when to renew the token.
    async fn prepare(&self, options: &mut MqttOptions) -> Result<Instant, Error> {
        let (config, roots) = tls::load(&self.env.trust, self.workload.as_deref()).await?;
        let source = match &self.env.trust {
            Trust::WorkloadBundle => "workload API trust bundle",
            Trust::File(_) => "CA file",
            Trust::PublicRoots => "system CA bundle",
        };
        tracing::info!(roots, source, "trust bundle refreshed");
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        let audience = sas::audience(
            &self.env.hub_host,
            &self.env.device_id,
            self.env.module_id.as_deref(),
        );
        let token = sas::generate(
            &self.signer,
            &audience,
            sas::unix_now(),
            self.opts.token_lifetime,
        )
        .await?;
        let renew_in = sas::renewal_after(self.opts.token_lifetime);
        tracing::info!(
            expiry = token.expiry,
            renew_in_secs = renew_in.as_secs(),
            "SAS token signed"
        );
        options.set_credentials(username(&self.env), token.token);
        Ok(Instant::now() + renew_in)
    }

    fn set_link(&self, state: &'static str, error: Option<String>, reconnect: bool) {
        self.metrics
            .set_hub_link(state, error.as_deref(), reconnect);
    }

    async fn retry_all(&mut self, tracker: &mut Tracker, eventloop: &mut EventLoop) {
        // A publish rumqttc holds was queued after its tag: every such tag is in the channel.
        while let Ok(tag) = self.tags.try_recv() {
            tracker.push(tag);
        }
        let collision = eventloop.state.collision.take();
        for id in tracker.on_disconnect(&mut eventloop.pending, collision) {
            // The outbox may be gone at shutdown; nothing to tell then.
            let _ = self.deliveries.send(Delivery::Retry(id)).await;
        }
    }

    fn subscribe_first(&self, eventloop: &mut EventLoop) {
        // Module inputs exist only behind edgeHub; IoT Hub itself closes the connection on a
        // subscription it does not know.
        let direct = self
            .env
            .gateway_host
            .eq_ignore_ascii_case(&self.env.hub_host);
        let inputs = self.topics.inputs_filter();
        let filters = self
            .topics
            .subscriptions()
            .into_iter()
            .filter(move |t| !(direct && inputs.as_deref() == Some(t.as_str())));
        let filters = filters.map(|t| {
            // Inputs at QoS 1 (acknowledged, redelivered after a drop); the $iothub topics at
            // QoS 0: the twin is re-read after every connect, and a method caller times out.
            let qos = if t.starts_with("$iothub/") {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            SubscribeFilter::new(t, qos)
        });
        eventloop
            .pending
            .push_front(Request::Subscribe(Subscribe::new_many(filters)));
    }
}

/// How often the wall clock is compared with the monotonic one.
const CLOCK_CHECK: Duration = Duration::from_secs(2);
/// A difference beyond this between wall-clock and monotonic time since the last check is a
/// step (NTP setting the clock of a device without RTC, or an operator), not drift.
const CLOCK_STEP: Duration = Duration::from_secs(30);

/// Notices when the wall clock is stepped. SAS tokens carry a wall-clock expiry: one signed
/// before a step is wrong by the step (a device that booted at 1970 signs tokens edgeHub finds
/// long expired), so after a step the session signs a fresh one at once rather than waiting
/// out its backoff or the renewal time.
struct ClockWatch {
    wall: std::time::SystemTime,
    mono: Instant,
}

impl ClockWatch {
    fn new() -> ClockWatch {
        ClockWatch {
            wall: std::time::SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// The step since the last call, in seconds (positive: forward), when there was one.
    fn stepped(&mut self) -> Option<i64> {
        let (wall, mono) = (std::time::SystemTime::now(), Instant::now());
        let mono_elapsed = mono.duration_since(self.mono).as_secs_f64();
        let wall_elapsed = match wall.duration_since(self.wall) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        self.wall = wall;
        self.mono = mono;
        let step = wall_elapsed - mono_elapsed;
        (step.abs() > CLOCK_STEP.as_secs_f64()).then_some(step.round() as i64)
    }
}

/// Checks the clock every [`CLOCK_CHECK`] and sends each step (in seconds) to the poll task,
/// until it stops. A task of its own because the poll task must not cancel
/// `EventLoop::poll` on a plain tick: rumqttc drops a packet whose write is cancelled while
/// the socket pushes back (and keeps it as in flight), so a message would wait for the next
/// reconnect. Only a step, which reconnects anyway, interrupts a poll.
async fn watch_clock(steps: mpsc::Sender<i64>) {
    let mut clock = ClockWatch::new();
    loop {
        tokio::select! {
            _ = sleep(CLOCK_CHECK) => {}
            _ = steps.closed() => return,
        }
        if let Some(step) = clock.stepped() {
            tracing::warn!(
                step_secs = step,
                "the wall clock was stepped; signing a new SAS token"
            );
            // Full: a step is already waiting, and one is enough to sign again.
            let _ = steps.try_send(step);
        }
    }
}

/// Waits `delay` (a reconnect backoff), or less when the session stops or the wall clock steps
/// (then a token signed with the corrected clock may work at once).
async fn back_off(delay: Duration, done: &CancellationToken, steps: &mut mpsc::Receiver<i64>) {
    tokio::select! {
        _ = sleep(delay) => {}
        _ = done.cancelled() => {}
        // `None` (the clock task gone) disables this branch rather than ending the wait.
        Some(_) = steps.recv() => {}
    }
}

/// The poll task. Returns when the publisher is done (after a DISCONNECT if connected), or
/// when every client handle is gone.
pub(super) async fn drive(mut d: Driver, mut eventloop: EventLoop) {
    let host = format!("{}:{}", d.env.gateway_host, d.env.port);
    let mut tracker = Tracker::default();
    let mut attempt = 0u32;
    let mut renew_at: Option<Instant> = None;
    let mut connected = false;
    let mut generation = 0u64;
    let mut stopping: Option<Instant> = None;
    let (step_tx, mut steps) = mpsc::channel(1);
    tokio::spawn(watch_clock(step_tx));

    loop {
        if stopping.is_none() && d.done.is_cancelled() {
            if !connected {
                tracing::info!("hub session stopped");
                break;
            }
            stopping = Some(Instant::now() + DISCONNECT_GRACE);
        }
        if renew_at.is_none() {
            d.set_link("connecting", None, false);
            tracing::info!(%host, "connecting to the hub");
            let prepared = tokio::select! {
                r = d.prepare(&mut eventloop.mqtt_options) => r,
                _ = d.done.cancelled() => continue,
            };
            match prepared {
                Ok(at) => renew_at = Some(at),
                Err(e) => {
                    report(&d, &e, attempt);
                    d.set_link("disconnected", Some(error_chain(&e)), false);
                    let delay = delay_after(&d.opts, &e, attempt);
                    attempt = attempt.saturating_add(1);
                    back_off(delay, &d.done, &mut steps).await;
                    continue;
                }
            }
        }
        let renew = renew_at.unwrap_or_else(Instant::now);
        let event = tokio::select! {
            biased;
            _ = sleep_until(stopping.unwrap_or(renew)), if stopping.is_some() => {
                tracing::warn!("DISCONNECT did not go out in time; dropping the connection");
                break;
            }
            // While connected, the publisher's DISCONNECT ends the session: cancelling poll
            // mid-write could garble the stream it is about to close cleanly.
            _ = d.done.cancelled(), if !connected && stopping.is_none() => continue,
            // Cancelling poll here is safe: the renewal below drops the connection.
            Some(_) = steps.recv(), if connected && stopping.is_none() => {
                renew_at = Some(Instant::now());
                continue;
            }
            _ = sleep_until(renew), if connected && stopping.is_none() => {
                // Cancelling poll here is safe: the connection is dropped right away, and what
                // it held goes back to the outbox.
                tracing::info!("renewing the SAS token: reconnecting");
                eventloop.clean();
                d.retry_all(&mut tracker, &mut eventloop).await;
                connected = false;
                renew_at = None;
                let _ = d.connection.send(None);
                d.set_link("disconnected", None, false);
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                attempt = 0;
                generation += 1;
                tracing::info!(%host, session_present = ack.session_present, "connected to the hub");
                d.set_link("connected", None, false);
                d.subscribe_first(&mut eventloop);
                let _ = d.connection.send(Some(generation));
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::error!(codes = ?ack.return_codes, "the hub refused a subscription (twin, methods or inputs will not work)");
                    d.metrics.error("hub", "subscribe");
                } else {
                    tracing::debug!("subscribed");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Err(e) = d.inbound.try_send(p) {
                    let topic = match &e {
                        mpsc::error::TrySendError::Full(p)
                        | mpsc::error::TrySendError::Closed(p) => {
                            p.topic.chars().take(80).collect::<String>()
                        }
                    };
                    tracing::warn!(%topic, "hub task busy; dropped an incoming message");
                    d.metrics.error("hub", "inbound_overflow");
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(id) = tracker.on_puback(ack.pkid) {
                    let _ = d.deliveries.send(Delivery::Ack(id)).await;
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                while let Ok(tag) = d.tags.try_recv() {
                    tracker.push(tag);
                }
                if !tracker.on_publish(pkid) {
                    tracing::error!(
                        pkid,
                        "a QoS 1 publish without a record tag; its PUBACK will be ignored"
                    );
                    d.metrics.error("hub", "untracked_publish");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::info!("disconnected from the hub (shutdown)");
                d.retry_all(&mut tracker, &mut eventloop).await;
                break;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => {
                tracing::info!("hub session stopped (no client left)");
                d.retry_all(&mut tracker, &mut eventloop).await;
                break;
            }
            Err(source) => {
                let was_connected = std::mem::take(&mut connected);
                d.retry_all(&mut tracker, &mut eventloop).await;
                let e = Error::Connect {
                    host: d.env.gateway_host.clone(),
                    port: d.env.port,
                    source: Box::new(source),
                };
                if was_connected {
                    tracing::warn!(error = %error_chain(&e), "disconnected from the hub");
                    let _ = d.connection.send(None);
                } else {
                    report(&d, &e, attempt);
                }
                d.metrics.error("hub", "reconnect");
                d.set_link("disconnected", Some(error_chain(&e)), true);
                if stopping.is_some() || d.done.is_cancelled() {
                    break;
                }
                // Every reconnect fetches the trust bundle and signs a token again.
                renew_at = None;
                let delay = if was_connected {
                    backoff::full_jitter(d.opts.backoff_min, d.opts.backoff_max, 0)
                } else {
                    delay_after(&d.opts, &e, attempt)
                };
                attempt = attempt.saturating_add(1);
                back_off(delay, &d.done, &mut steps).await;
            }
        }
    }
    let _ = d.connection.send(None);
    d.set_link("disconnected", None, false);
}

fn delay_after(opts: &HubOptions, e: &Error, attempt: u32) -> Duration {
    if e.is_transient() {
        backoff::full_jitter(opts.backoff_min, opts.backoff_max, attempt)
    } else {
        // Something must be fixed first (credentials, certificates): try again rarely.
        opts.backoff_max
    }
}

fn report(d: &Driver, e: &Error, attempt: u32) {
    d.metrics.error("hub", e.metric_label());
    if e.is_transient() {
        tracing::warn!(attempt, error = %error_chain(e), "cannot connect to the hub; retrying");
    } else {
        tracing::error!(attempt, error = %error_chain(e), "cannot connect to the hub; retrying slowly until fixed");
    }
}

/// The publisher side: what it needs besides the records.
pub(super) struct Publisher {
    pub deliveries: mpsc::Sender<Delivery>,
    pub tags: mpsc::Sender<Tag>,
    pub client: AsyncClient,
    pub topics: Topics,
    pub opts: HubOptions,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the records close: the poll task disconnects and stops.
    pub done: CancellationToken,
}

/// The publisher task: one QoS 1 telemetry message per record. Returns when `records` closes
/// (the outbox is done), after asking the poll task to disconnect.
pub(super) async fn publish_records(mut records: mpsc::Receiver<Record>, p: Publisher) {
    let Publisher {
        deliveries,
        tags,
        client,
        topics,
        opts,
        metrics,
        done,
    } = p;
    while let Some(r) = records.recv().await {
        let mid = uuid::Uuid::new_v4().to_string();
        let bag = telemetry_properties(&opts, r.priority, r.output, &mid);
        let topic = topics.telemetry(&bag);
        let size = message_size(&topic, &bag, r.body.len());
        if size > MAX_MESSAGE_BYTES {
            // It can never be delivered: acknowledging it (counted as dropped) keeps the
            // outbox from retrying it forever in front of everything else.
            let e = Error::TooLarge {
                size,
                limit: MAX_MESSAGE_BYTES,
            };
            tracing::error!(id = r.id, events = r.events, "dropping a message: {e}");
            metrics.error("hub", e.metric_label());
            metrics.dropped("hub", DropReason::TooLarge, r.events as u64);
            if deliveries.send(Delivery::Ack(r.id)).await.is_err() {
                break;
            }
            continue;
        }
        if tags.send(Tag { id: r.id, mid }).await.is_err() {
            let _ = deliveries.send(Delivery::Retry(r.id)).await;
            break;
        }
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, false, r.body.to_vec())
            .await
        {
            tracing::error!(error = %error_chain(&Error::ClientClosed(e)), "cannot publish");
            let _ = deliveries.send(Delivery::Retry(r.id)).await;
            break;
        }
    }
    done.cancel();
    // Goes out after everything queued before it; the poll task waits a moment for it.
    let _ = client.try_disconnect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: u64) -> Tag {
        Tag {
            id,
            mid: format!("m{id}"),
        }
    }

    fn telemetry(mid: &str, pkid: u16) -> Request {
        let mut bag = PropertyBag::new();
        bag.push(properties::MESSAGE_ID, mid);
        let mut p = Publish::new(
            Topics::new("d", Some("m")).telemetry(&bag),
            QoS::AtLeastOnce,
            vec![1u8],
        );
        p.pkid = pkid;
        Request::Publish(p)
    }

    #[test]
    fn pubacks_map_to_records_in_publish_order() {
        let mut t = Tracker::default();
        t.push(tag(1));
        t.push(tag(2));
        assert!(t.on_publish(0), "QoS 0 publishes take no tag");
        assert!(t.on_publish(1));
        assert!(t.on_publish(2));
        // A resend of pkid 1 keeps its tag.
        assert!(t.on_publish(1));
        assert_eq!(t.on_puback(2), Some(2));
        assert_eq!(t.on_puback(2), None);
        assert_eq!(t.on_puback(1), Some(1));
        assert!(!t.on_publish(3), "no tag waiting");
        // pkids are reused once acknowledged.
        t.push(tag(3));
        assert!(t.on_publish(1));
        assert_eq!(t.on_puback(1), Some(3));
    }

    #[test]
    fn a_disconnect_retries_what_rumqttc_held_and_keeps_what_it_did_not() {
        let mut t = Tracker::default();
        for id in 1..=5 {
            t.push(tag(id));
        }
        assert!(t.on_publish(1));
        assert!(t.on_publish(2));
        assert_eq!(t.on_puback(1), Some(1));
        // rumqttc's clean(): record 2 (in flight) and 3 (still queued) are pending; a twin
        // request too. Record 4's publish is held back by a collision; 5 has not reached
        // rumqttc yet.
        let mut pending: VecDeque<Request> = VecDeque::from([
            telemetry("m2", 2),
            Request::Publish(Publish::new(
                "$iothub/twin/GET/?$rid=1",
                QoS::AtMostOnce,
                vec![],
            )),
            telemetry("m3", 0),
            Request::Subscribe(Subscribe::new("x", QoS::AtMostOnce)),
        ]);
        let collision = match telemetry("m4", 1) {
            Request::Publish(p) => Some(p),
            _ => None,
        };
        assert_eq!(t.on_disconnect(&mut pending, collision), vec![2, 3, 4]);
        assert!(pending.is_empty());
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.unassigned(), 1);
        // Record 5's publish goes out on the next connection and takes its tag.
        assert!(t.on_publish(1));
        assert_eq!(t.on_puback(1), Some(5));
    }

    #[test]
    fn properties_and_sizes() {
        let opts = HubOptions::default();
        let bag = telemetry_properties(&opts, Priority::High, Output::Events, "abc");
        assert_eq!(
            bag.encode(),
            "%24.mid=abc&%24.ct=application%2Fjson&%24.ce=utf-8&%24.on=securityEvents&MessagePriority=High"
        );
        let bag = telemetry_properties(&opts, Priority::High, Output::Alerts, "abc");
        assert_eq!(bag.get("$.on"), Some("alerts"));
        let bag = telemetry_properties(
            &HubOptions {
                security_interface: true,
                ..HubOptions::default()
            },
            Priority::Low,
            Output::Events,
            "abc",
        );
        assert_eq!(bag.get("$.ifid"), Some(properties::SECURITY_INTERFACE_ID));
        assert_eq!(bag.get("MessagePriority"), Some("Low"));
        let topic = Topics::new("d", Some("m")).telemetry(&bag);
        assert_eq!(message_id(&topic).as_deref(), Some("abc"));
        assert_eq!(message_id("$iothub/twin/GET/?$rid=1"), None);
        let size = message_size(&topic, &bag, 1000);
        assert!(size > 1000 + bag.routed_size());
        assert!(message_size(&topic, &bag, MAX_MESSAGE_BYTES) > MAX_MESSAGE_BYTES);
        assert!(message_size(&topic, &bag, 204_800) < MAX_MESSAGE_BYTES);
    }

    #[test]
    fn username_follows_the_protocol() {
        let env = EdgeEnvironment {
            hub_host: "myhub.azure-devices.net".into(),
            gateway_host: "gw".into(),
            port: 8883,
            device_id: "dev1".into(),
            module_id: Some("edgeguard".into()),
            credentials: super::super::env::Credentials::Key(vec![1]),
            trust: Trust::PublicRoots,
        };
        assert_eq!(
            username(&env),
            format!(
                "myhub.azure-devices.net/dev1/edgeguard/?api-version=2021-04-12&DeviceClientType=edgeguard%2F{}",
                crate::event::envelope::AGENT_VERSION
            )
        );
    }
}
