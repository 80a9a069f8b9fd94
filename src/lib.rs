//! edgeguard: a security agent for Azure IoT Edge devices.
//!
//! Collectors ([`registry`]) turn what the host shows into typed [`event::Event`]s; the enricher
//! ([`container::enrich`]) adds container names; the [`pipeline`] prioritises, aggregates and
//! batches them into security messages; the outbox hands each message to a sink ([`sink`]:
//! stdout, file, or edgeHub through [`hub`]) and forgets it only once the sink acknowledges it.
//! Configuration arrives as module-twin JSON, is validated key by key in [`config`], and reaches
//! every component as a typed value through a watch channel.
//!
//! ```text
//! collectors ─mpsc<Event>─▶ enrich ─mpsc<Event>─▶ pipeline ─mpsc<Message>─▶ outbox ─mpsc<Record>─▶ sink
//!                                                    ▲                        ▲                    │
//!                                 watch<Arc<Config>>─┘                        └──mpsc<Delivery>────┘
//! ```

pub mod backoff;
pub mod collectors;
pub mod config;
pub mod container;
pub mod detect;
pub mod event;
pub mod heartbeat;
pub mod host;
pub mod hub;
pub mod kernel;
pub mod local_http;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod pretty;
pub mod recommend;
pub mod registry;
pub mod sink;
pub mod state;
pub mod status;
#[cfg(test)]
mod test_support;
pub mod text;

use config::{Config, Rejected};
use event::{Event, MessageHeader, envelope::AGENT_VERSION};
use host::HostRoot;
use metrics::{Identity, Metrics};
use pipeline::outbox::{self, OutboxConfig};
use pipeline::{Control, Pipeline};
use sink::SinkKind;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Capacity of the collectors' event channel. Collectors that can wait do; kernel sources that
/// cannot, count what they drop.
const EVENT_CHANNEL: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("preparing the state directory")]
    State(#[from] state::Error),
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Collect until shut down.
    Run,
    /// Run every periodic collector once, deliver the messages, and return.
    Snapshot,
}

/// Everything the agent needs to start, already parsed and validated by the binary.
#[derive(Debug, Clone)]
pub struct Options {
    pub host_root: HostRoot,
    pub state_dir: PathBuf,
    pub sink: SinkKind,
    /// How the local sinks (stdout, file) write messages.
    pub format: sink::Format,
    /// The starting configuration, keys rejected while building it, and its desired `$version`.
    pub config: Config,
    pub rejected: Vec<Rejected>,
    pub config_version: Option<i64>,
    /// How long to keep delivering after a shutdown request.
    pub shutdown_grace: Duration,
    /// Where to serve Prometheus metrics in `run` mode (`None`: not at all).
    pub metrics_addr: Option<SocketAddr>,
    /// Settings of the hub connection, when the sink is edgeHub.
    pub hub: hub::HubOptions,
    /// Changes the log filter when the twin's `logLevel` changes (`None`: logs stay as started).
    pub log_control: Option<LogControl>,
}

/// Replaces the log filter at run time: `Some(directives)` in `RUST_LOG` syntax, `None` for the
/// filter the agent started with. The binary owns the subscriber; the library only asks.
#[derive(Clone)]
pub struct LogControl(pub Arc<SetLogFilter>);

/// What [`LogControl`] calls: `Err` carries a message for the log.
pub type SetLogFilter = dyn Fn(Option<&str>) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogControl")
    }
}

/// How often a kind of refused host file is logged at most.
const HOST_SKIP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What the host root tells of every host file refused or too large: counted in
/// `edgeguard_errors_total{component="host", error_type}` and logged at `warn`, at most once a
/// [`HOST_SKIP_LOG_INTERVAL`] per kind (with how many more there were since the last line), so a
/// FIFO read every second does not flood the log.
fn host_reporter(metrics: Arc<Metrics>) -> host::Reporter {
    type Last = std::collections::HashMap<&'static str, (Option<std::time::Instant>, u64)>;
    let last = std::sync::Mutex::new(Last::new());
    Arc::new(move |error_type: &'static str, path: &std::path::Path| {
        metrics.error(host::COMPONENT, error_type);
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, more) = last.entry(error_type).or_insert((None, 0));
        let now = std::time::Instant::now();
        if at.is_none_or(|t| now.duration_since(t) >= HOST_SKIP_LOG_INTERVAL) {
            // Debug formatting: a path may hold newlines or invalid UTF-8.
            tracing::warn!(
                component = host::COMPONENT,
                error_type,
                ?path,
                more_since_last_line = *more,
                "host file skipped"
            );
            *at = Some(now);
            *more = 0;
        } else {
            *more += 1;
        }
    })
}

/// How often the one-line summary is logged.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);

/// Logs, every [`SUMMARY_INTERVAL`], what came in and went out since the last line (nothing
/// when nothing happened), so `iotedge logs` shows the agent at work without a line per event.
async fn summarize(metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = metrics.summary_counts();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = metrics.summary_counts();
        if now == last {
            continue;
        }
        let report = status::report(&metrics);
        let drops: Vec<String> = report
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        tracing::info!(
            events_in = now.0 - last.0,
            messages_sent = now.1 - last.1,
            messages_acked = now.2 - last.2,
            dropped_total = now.3,
            drops = %drops.join(","),
            spool_messages = report.spool.messages.unwrap_or(0),
            spool_bytes = report.spool.bytes.unwrap_or(0),
            "summary of the last {} minutes",
            SUMMARY_INTERVAL.as_secs() / 60
        );
        last = now;
    }
}

/// Applies the configuration's `logLevel` now and after every change, until `stop`.
async fn follow_log_level(
    control: LogControl,
    mut config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    let mut applied: Option<String> = None;
    loop {
        let wanted = config.borrow_and_update().log_level.clone();
        if wanted != applied {
            match (control.0)(wanted.as_deref()) {
                Ok(()) => tracing::info!(
                    log_level = wanted.as_deref().unwrap_or("(as started)"),
                    "log filter changed"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot change the log filter"),
            }
            applied = wanted;
        }
        tokio::select! {
            changed = config.changed() => if changed.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host_root: HostRoot::default(),
            state_dir: PathBuf::from("/var/lib/edgeguard"),
            sink: SinkKind::Stdout,
            format: sink::Format::Json,
            config: Config::default(),
            rejected: Vec::new(),
            config_version: None,
            shutdown_grace: Duration::from_secs(10),
            metrics_addr: None,
            hub: hub::HubOptions::default(),
            log_control: None,
        }
    }
}

/// Starts every task and runs until `shutdown` completes (or, in snapshot mode, until the
/// snapshot is delivered). Returns once everything queued was delivered or the grace period ran
/// out.
pub async fn run(
    opts: Options,
    mode: Mode,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut shutdown = std::pin::pin!(shutdown);
    let agent_id = state::agent_id(&opts.state_dir)?;
    let metrics = Arc::new(Metrics::new(&Identity::from_env()));
    metrics.set_config_version(opts.config_version);
    metrics
        .status()
        .set_identity(&agent_id.to_string(), &opts.sink.to_string());
    tracing::info!(
        version = AGENT_VERSION,
        %agent_id,
        host_root = %opts.host_root.root().display(),
        sink = %opts.sink,
        ?mode,
        "edgeguard starting"
    );

    let host_root = opts
        .host_root
        .clone()
        .with_reporter(host_reporter(metrics.clone()));

    let (config_tx, config_rx) = watch::channel(Arc::new(opts.config.clone()));
    let (pipeline_tx, event_rx) = mpsc::channel::<Event>(EVENT_CHANNEL);
    let (control_tx, control_rx) = mpsc::channel::<Control>(8);
    let (message_tx, message_rx) = mpsc::channel(1);
    let outbox_cfg = OutboxConfig {
        max_bytes: opts.config.max_local_cache_size_in_bytes as usize,
        grace: opts.shutdown_grace,
        // `run` keeps undelivered messages on disk across restarts and crashes; a one-off
        // snapshot keeps them in memory (a running agent may hold the spool file).
        spool: (mode == Mode::Run).then(|| opts.state_dir.join(pipeline::spool::FILE_NAME)),
        config: Some(config_rx.clone()),
        ..OutboxConfig::default()
    };
    let (record_tx, record_rx) = mpsc::channel(outbox_cfg.window);
    let (delivery_tx, delivery_rx) = mpsc::channel(outbox_cfg.window + 1);

    let tracker = TaskTracker::new();
    let stop_collectors = CancellationToken::new();
    let stop_delivery = CancellationToken::new();

    let header = MessageHeader::new(AGENT_VERSION, agent_id);
    let mut pipeline = Pipeline::new(header, config_tx.borrow().clone(), metrics.clone());
    if mode == Mode::Run {
        // The learned behaviour baseline lives in the state directory across restarts.
        pipeline = pipeline.with_behaviour_file(opts.state_dir.join(detect::behaviour::FILE_NAME));
    }
    if matches!(opts.sink, SinkKind::EdgeHub(_)) {
        // Room for the topic and property bag within edgeHub's packet limit.
        pipeline = pipeline.with_sink_limit(hub::MAX_MESSAGE_BYTES - 1024);
    }
    // The spool keeps messages until they are acknowledged and, when it is on disk, the
    // pipeline's queue and open windows too (pipeline::journal): both survive a crash.
    let store = outbox::Store::new(outbox::open_spool(&outbox_cfg, &metrics).await);
    let journal = store.is_durable().then(|| store.clone());
    if journal.is_some() {
        let rows = store.lock().take_journal();
        pipeline = pipeline.with_journal();
        pipeline.restore(rows);
    }
    let snapshot_now = Arc::new(tokio::sync::Notify::new());
    tracker.spawn(pipeline::run(
        pipeline,
        event_rx,
        control_rx,
        config_rx.clone(),
        message_tx,
        journal,
    ));
    tracker.spawn(outbox::run_with_store(
        message_rx,
        record_tx,
        delivery_rx,
        metrics.clone(),
        outbox_cfg,
        store,
        stop_delivery.clone(),
    ));
    match opts.sink.clone() {
        SinkKind::EdgeHub(env) => {
            let channels = hub::HubChannels {
                records: record_rx,
                deliveries: delivery_tx,
                events: pipeline_tx.clone(),
                config: config_tx.clone(),
                control: control_tx.clone(),
                snapshot: snapshot_now.clone(),
            };
            let (m, stop) = (metrics.clone(), stop_collectors.clone());
            let hub_opts = opts.hub.clone();
            tracker.spawn(async move {
                if let Err(e) = hub::run(*env, hub_opts, channels, m, stop.clone()).await {
                    tracing::error!(error = %e, "the edgeHub connection failed for good");
                    stop.cancel();
                }
            });
        }
        SinkKind::Stdout => {
            tracker.spawn(sink::run(
                sink::LocalSink::Stdout,
                opts.format,
                record_rx,
                delivery_tx,
                stop_collectors.clone(),
            ));
        }
        SinkKind::File(path) => {
            tracker.spawn(sink::run(
                sink::LocalSink::File(path),
                opts.format,
                record_rx,
                delivery_tx,
                stop_collectors.clone(),
            ));
        }
    }

    // A one-line summary every few minutes, for `iotedge logs`.
    if mode == Mode::Run {
        tracker.spawn(summarize(metrics.clone(), stop_delivery.clone()));
    }

    // Drops counted after a drop warning are logged when their minute is up, even if no drop
    // follows to trigger it.
    {
        let metrics = metrics.clone();
        let stop = stop_delivery.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => { metrics.log_pending_drops(false); }
                }
            }
            metrics.log_pending_drops(true);
        });
    }

    if let Some(control) = opts.log_control.clone() {
        tracker.spawn(follow_log_level(
            control,
            config_rx.clone(),
            stop_collectors.clone(),
        ));
    }

    // Keys the local configuration rejected are reported like a twin's would be.
    for r in &opts.rejected {
        tracing::warn!(key = %r.key, error_type = ?r.error_type, used = %r.used, "{}", r.message);
        metrics.config_rejected(&format!("{:?}", r.error_type));
        let _ = pipeline_tx.send(r.to_event()).await;
    }

    // The enrich stage: collectors send to it, and it owns the pipeline's sender from here (the
    // pipeline flushes once every collector, and so the enricher, has stopped).
    let containers =
        container::Containers::start(config_rx.clone(), stop_collectors.clone(), &tracker);
    let (collector_tx, collector_rx) = mpsc::channel::<Event>(EVENT_CHANNEL);
    tracker.spawn(container::enrich::run(
        collector_rx,
        pipeline_tx,
        containers.cache.clone(),
        config_rx.clone(),
        metrics.clone(),
    ));
    let all = collectors::ByShape::new(registry::collectors(&registry::Parts {
        metrics: &metrics,
        config: &config_rx,
        containers: &containers,
    }));
    if mode == Mode::Run {
        collectors::register(&all, &metrics, config_rx.borrow().snapshot_frequency);
    }
    let collectors::ByShape {
        periodic,
        triggered,
    } = all;

    match mode {
        Mode::Snapshot => {
            drop(triggered);
            let mut periodic = periodic;
            // SIGTERM ends a snapshot too: what was collected so far is delivered.
            tokio::select! {
                _ = collectors::collect_once(&mut periodic, &host_root, &collector_tx, &metrics) => {}
                _ = &mut shutdown => tracing::info!("shutdown requested during the snapshot; delivering what was collected"),
            }
            drop(collector_tx);
            // Nothing more will come (the hub, if any, stops producing too): deliver within the
            // grace period, then stop.
            stop_collectors.cancel();
            stop_delivery.cancel();
        }
        Mode::Run => {
            if let Some(addr) = opts.metrics_addr {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => {
                        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving metrics on /metrics");
                        tracker.spawn(metrics::serve(
                            metrics.clone(),
                            listener,
                            stop_collectors.clone(),
                        ));
                    }
                    // Metrics are for watching the agent; failing to serve them must not stop
                    // it from doing its job.
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "cannot serve metrics (set --metrics-addr, or off)");
                        metrics.error("metrics", "bind");
                    }
                }
            }
            let status_path = opts.state_dir.join(status::socket::FILE_NAME);
            match status::socket::bind(&status_path) {
                Ok(listener) => {
                    tracker.spawn(status::socket::serve(
                        metrics.clone(),
                        listener,
                        status_path,
                        stop_delivery.clone(),
                    ));
                }
                // `edgeguard status` will say nobody answers; the agent itself carries on.
                Err(e) => {
                    tracing::error!(error = %text::error_chain(&e), "cannot serve the status socket");
                    metrics.error("status", "bind");
                }
            }
            tracker.spawn(memory::keep_lean(stop_collectors.clone()));
            tracker.spawn(heartbeat::run(
                metrics.clone(),
                config_rx.clone(),
                collector_tx.clone(),
                stop_collectors.clone(),
            ));
            // The collectors own the last event senders: when they stop, the pipeline flushes.
            let ctx = collectors::Context {
                host: host_root.clone(),
                events: collector_tx,
                metrics: metrics.clone(),
                config: config_rx.clone(),
                cancel: stop_collectors.clone(),
                state_dir: opts.state_dir.clone(),
            };
            collectors::start_triggered(triggered, &ctx, &tracker);
            tracker.spawn(collectors::run_periodic(
                periodic,
                ctx,
                control_tx.clone(),
                snapshot_now.clone(),
            ));
            tokio::select! {
                _ = &mut shutdown => tracing::info!("shutdown requested; flushing"),
                _ = stop_collectors.cancelled() => tracing::error!("the sink failed for good; shutting down"),
            }
            stop_collectors.cancel();
            stop_delivery.cancel();
        }
    }
    drop(control_tx);
    tracker.close();
    if tokio::time::timeout(opts.shutdown_grace + Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::error!("tasks did not finish within the grace period");
    }
    drop(config_tx);
    tracing::info!("edgeguard stopped");
    Ok(())
}
