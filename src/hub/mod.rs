//! The hub layer: edgeguard as an IoT Edge module, without an SDK (iot-edge-protocol.md).
//!
//! - [`env`]: who we are and where to connect (`IOTEDGE_*`, the simulator's connection string,
//!   or a plain connection string).
//! - [`workload`]: the workload API (signing, trust bundle).
//! - [`sas`]: SAS tokens.
//! - [`properties`], [`topics`]: property bags and topic names.
//! - [`tls`]: rustls configs that trust only what they should.
//! - `session`: the MQTT connection, telemetry and acknowledgements.
//! - [`twin`], [`methods`], [`inputs`] and `dispatch`: what arrives from the hub.
//!
//! ```text
//! outbox ─Record─▶ publisher ─Tag─▶ poll task ──Delivery{Ack|Retry}──▶ outbox
//!                      └─publish─▶ rumqttc ◀─poll─┘  │ inbound publishes
//!                                                    ▼
//!   config watch ◀─ twin ◀─ hub task ─▶ methods (snapshot / status / flush)
//!   events (ConfigurationError) ◀─┘  └─▶ inputs task ─▶ events (other modules' security events)
//! ```
//!
//! [`run`] is the entry point; it is a sink in the outbox's sense (Records in, Deliveries out),
//! plus the twin, methods and inputs.

mod dispatch;
pub mod env;
mod error;
pub mod inputs;
pub mod methods;
pub mod properties;
pub mod sas;
mod session;
pub mod tls;
pub mod topics;
pub mod twin;
pub mod workload;

pub use env::{Credentials, EdgeEnvironment, Trust};
pub use error::Error;
pub use session::{MAX_MESSAGE_BYTES, Tag, Tracker};

use crate::config::Config;
use crate::event::{Event, format_utc};
use crate::metrics::Metrics;
use crate::pipeline::Control;
use crate::pipeline::outbox::{Delivery, Record};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The output security events leave on (the retired agents' name).
pub const DEFAULT_OUTPUT: &str = "securityEvents";
/// The output alerts leave on.
pub const DEFAULT_ALERTS_OUTPUT: &str = "alerts";

/// Settings of the hub connection (defaults follow the C SDK and iot-edge-protocol.md).
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Output name (`$.on`) of security events; routes select on it.
    pub output: String,
    /// Output name of messages made of alerts, so a route can send them first and keep them
    /// longer than the bulk of events.
    pub alerts_output: String,
    /// Input on which other modules send security messages.
    pub input: String,
    /// Mark telemetry as Azure security messages (`$.ifid`); off by default.
    pub security_interface: bool,
    /// MQTT keep-alive (edgeHub allows up to 300 s; at least 1 s).
    pub keep_alive: Duration,
    /// TCP + TLS + CONNECT must finish within this.
    pub connect_timeout: Duration,
    /// SAS token lifetime; the session reconnects with a fresh token at 80 % of it.
    pub token_lifetime: Duration,
    /// Reconnect backoff (exponential with full jitter); also paces twin request retries.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a twin GET or PATCH may go unanswered before it is sent again.
    pub request_timeout: Duration,
    /// How long the `flush` method waits for the pipeline (callers wait 30 s by default).
    pub flush_timeout: Duration,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            output: DEFAULT_OUTPUT.into(),
            alerts_output: DEFAULT_ALERTS_OUTPUT.into(),
            input: inputs::DEFAULT_INPUT.into(),
            security_interface: false,
            keep_alive: Duration::from_secs(240),
            connect_timeout: Duration::from_secs(30),
            token_lifetime: sas::DEFAULT_LIFETIME,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            flush_timeout: methods::DEFAULT_FLUSH_TIMEOUT,
        }
    }
}

/// The channels the hub shares with the rest of the agent.
pub struct HubChannels {
    /// From the outbox (or spool): messages to publish. The hub stops when it closes.
    pub records: mpsc::Receiver<Record>,
    /// To the outbox: `Ack` after edgeHub's PUBACK, `Retry` when a connection drops with the
    /// record unacknowledged. Needs room for every record in flight (the outbox window + 1).
    pub deliveries: mpsc::Sender<Delivery>,
    /// Into the pipeline: `ConfigurationError` events for rejected twin keys, and security
    /// events from other modules. Dropped when `shutdown` fires.
    pub events: mpsc::Sender<Event>,
    /// The configuration every component watches; the twin updates it.
    pub config: watch::Sender<Arc<Config>>,
    /// To the pipeline, for the `flush` method.
    pub control: mpsc::Sender<Control>,
    /// Notified (`notify_one`) by the `snapshot` method; the periodic collectors' task should
    /// wait on it beside its timer.
    pub snapshot: Arc<Notify>,
}

/// Capacity of the channel from the poll task to the hub task. The poll task never waits on it:
/// a message that finds it full is dropped and counted (`errors_total{hub,inbound_overflow}`).
const INBOUND_CAPACITY: usize = 64;
/// Capacity of the input queue (other modules' messages waiting for validation).
const INPUT_CAPACITY: usize = 16;

/// Runs the module's hub connection until `ch.records` closes (the outbox has delivered
/// everything, or given up after its grace period), then disconnects and returns.
///
/// `shutdown` means "stop producing events": the hub drops its event sender and ignores new
/// inputs so the pipeline can finish, but keeps publishing what the outbox still sends.
///
/// Connection trouble is never fatal: it is logged, counted and retried with backoff (and
/// shown by the `status` method). An error is returned only when the environment cannot
/// describe a client at all (a workload URI that does not parse).
pub async fn run(
    env: EdgeEnvironment,
    opts: HubOptions,
    ch: HubChannels,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (signer, workload) = match &env.credentials {
        Credentials::Workload {
            uri,
            api_version,
            generation_id,
        } => {
            let module = env.module_id.as_deref().unwrap_or(&env.device_id);
            let client = Arc::new(workload::WorkloadClient::new(
                uri,
                api_version,
                module,
                generation_id,
            )?);
            (sas::Signer::Workload(client.clone()), Some(client))
        }
        Credentials::Key(key) => (sas::Signer::Key(key.clone().into()), None),
    };
    tracing::info!(
        hub = %env.hub_host,
        gateway = %env.gateway_host,
        port = env.port,
        client_id = %env.client_id(),
        output = %opts.output,
        alerts_output = %opts.alerts_output,
        "starting the hub connection"
    );
    let start_time = format_utc(&chrono::Local::now().fixed_offset());
    let topics = topics::Topics::new(&env.device_id, env.module_id.as_deref());
    let (client, eventloop) = session::client(&env, &opts);
    let (tag_tx, tag_rx) = mpsc::channel(session::TAG_CAPACITY);
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
    let (input_tx, input_rx) = mpsc::channel(INPUT_CAPACITY);
    let (connection_tx, connection_rx) = watch::channel(None);
    let done = CancellationToken::new();

    let driver = session::Driver {
        env: env.clone(),
        opts: opts.clone(),
        signer,
        workload,
        topics: topics.clone(),
        metrics: metrics.clone(),
        tags: tag_rx,
        deliveries: ch.deliveries.clone(),
        inbound: inbound_tx,
        connection: connection_tx,
        done: done.clone(),
    };
    let initial = Config::clone(&ch.config.borrow());
    let hub_task = dispatch::HubTask {
        topics: topics.clone(),
        client: client.clone(),
        twin: twin::Twin::new(initial, start_time.clone()),
        config: ch.config,
        events: Some(ch.events.clone()),
        inputs: Some(input_tx),
        methods: methods::MethodContext {
            snapshot: ch.snapshot,
            control: ch.control,
            metrics: metrics.clone(),
            start_time,
            flush_timeout: opts.flush_timeout,
        },
        metrics: metrics.clone(),
        opts: opts.clone(),
    };

    let poll = tokio::spawn(session::drive(driver, eventloop));
    let publisher = tokio::spawn(session::publish_records(
        ch.records,
        session::Publisher {
            deliveries: ch.deliveries,
            tags: tag_tx,
            client,
            topics,
            opts: opts.clone(),
            metrics: metrics.clone(),
            done,
        },
    ));
    let hub = tokio::spawn(dispatch::run(hub_task, inbound_rx, connection_rx, shutdown));
    let inputs = tokio::spawn(inputs::run(
        input_rx,
        ch.events,
        opts.input.clone(),
        metrics,
    ));
    let (poll, publisher, hub, inputs) = tokio::join!(poll, publisher, hub, inputs);
    for (name, result) in [
        ("poll", poll),
        ("publisher", publisher),
        ("hub", hub),
        ("inputs", inputs),
    ] {
        if let Err(e) = result {
            tracing::error!(task = name, error = %e, "hub task failed");
        }
    }
    tracing::info!("hub connection stopped");
    Ok(())
}
