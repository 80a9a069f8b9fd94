//! Collectors: one file per source. Each turns what the host shows into typed events.
//!
//! Periodic collectors take snapshots on the `snapshotFrequency` timer; triggered collectors
//! (processes, connections, logins: host collectors issue) stream events as they happen. A
//! collector that cannot read part of its source says so in its events and in the log, counts
//! the error, and the others carry on.

pub mod accounts;
pub mod baseline;
pub mod capacity;
pub mod connection;
pub mod exec_trace;
pub mod firewall;
pub mod listening;
pub mod login;
pub mod proc_info;
pub mod process;
pub mod system;
pub mod users;

use crate::config::Config;
use crate::event::{CollectorHealth, CollectorStatus, Event, Payload};
use crate::host::HostRoot;
use crate::metrics::{DropReason, Metrics};
use crate::pipeline::Control;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `len` bytes of `b` from `off`, or `None` when they are not all there. Offsets and lengths come
/// from kernel messages and files read as untrusted input, so the sum is checked, not assumed.
pub(crate) fn bytes_at(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// A native-endian `u16` at `off` of `b` (see [`bytes_at`]).
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes_at(b, off, 2)?.try_into().ok()?))
}

/// A native-endian `u32` at `off` of `b` (see [`bytes_at`]).
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes_at(b, off, 4)?.try_into().ok()?))
}

/// A native-endian `u64` at `off` of `b` (see [`bytes_at`]).
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes_at(b, off, 8)?.try_into().ok()?))
}

/// Longest wait of a kernel reader for room in the pipeline's channel
/// ([`Context::emit_from_reader`]).
pub const KERNEL_EMIT_WAIT: Duration = Duration::from_millis(250);

/// Longest time a kernel reader holds the events it made before handing them to the pipeline
/// ([`Held`]).
pub const READER_HOLD: Duration = Duration::from_millis(20);

/// Most events a kernel reader holds; a full hold is handed over at once.
pub const READER_HOLD_EVENTS: usize = 128;

/// Events a kernel reader thread has made but not yet handed to the pipeline.
///
/// Handing an event over wakes the pipeline's runtime thread when it sleeps (an eventfd write
/// on the reader's side, a context switch and an epoll round on the other). In an exec storm
/// that happened for nearly every event and cost more CPU than making the events. Held for at
/// most [`READER_HOLD`], they go over in groups instead, and the pipeline wakes at most about
/// fifty times a second per reader. The delay is nothing next to the message timers (events
/// wait in the cache for seconds to minutes anyway), and the /proc reads that must be quick
/// happen before an event is made, not when it is handed over.
#[derive(Default)]
pub struct Held {
    events: Vec<Event>,
    since: Option<Instant>,
}

impl Held {
    /// How long until the held events are due: `None` when nothing is held, zero when overdue.
    pub fn due_in(&self) -> Option<Duration> {
        self.since.map(|t| READER_HOLD.saturating_sub(t.elapsed()))
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The receive timeout (`SO_RCVTIMEO`) of a kernel reader's socket, switched with its [`Held`]
/// events: [`READER_HOLD`] while some are held, so they go over soon after the traffic pauses,
/// and the reader's `idle` timeout once none are, so an idle reader wakes only to look at its
/// cancel token. The switch costs a `setsockopt` when the state changes (about a hundred times a
/// second in a storm); waiting in `poll` before every read instead cost a second system call on
/// every wakeup, a quarter of the reader's CPU in an exec storm.
pub struct RecvTimeout {
    idle: Duration,
    holding: bool,
}

impl RecvTimeout {
    /// For a socket whose timeout is `idle` now.
    pub fn new(idle: Duration) -> RecvTimeout {
        RecvTimeout {
            idle,
            holding: false,
        }
    }

    /// Sets the timeout for what `held` holds, if that changed since the last call.
    pub fn follow(&mut self, fd: &impl AsFd, held: &Held) {
        let holding = !held.is_empty();
        if holding != self.holding {
            let wait = if holding { READER_HOLD } else { self.idle };
            // On failure the old timeout stays and the next call tries again.
            if set_recv_timeout(fd, wait).is_ok() {
                self.holding = holding;
            }
        }
    }
}

/// Sets `SO_RCVTIMEO` of a socket.
pub fn set_recv_timeout(fd: &impl AsFd, wait: Duration) -> std::io::Result<()> {
    // `as _`: the field types differ between libcs (musl's are changing to 64 bits).
    let tv = libc::timeval {
        tv_sec: wait.as_secs() as _,
        tv_usec: wait.subsec_micros() as _,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

/// `setsockopt(2)` with a plain-data value (the kernel readers' sockets).
pub fn setsockopt<T>(fd: &impl AsFd, level: i32, name: i32, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size given; the fd is borrowed, so open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What every collector task is given: where the host is, where events go, and how to stop.
#[derive(Clone)]
pub struct Context {
    pub host: HostRoot,
    pub events: mpsc::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub config: watch::Receiver<Arc<Config>>,
    pub cancel: CancellationToken,
    /// For state that must survive a restart (file positions, last-seen account lists).
    pub state_dir: PathBuf,
}

impl Context {
    /// Sends an event from a source that can wait (files, snapshots). Returns `false` once the
    /// pipeline has stopped.
    pub async fn emit(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        self.events.send(event).await.is_ok()
    }

    /// Sends an event from a source that cannot pause (a kernel socket that would overflow): when
    /// the pipeline is behind, the event is dropped and counted instead of blocking the reader.
    /// Returns `false` once the pipeline has stopped.
    pub fn emit_now(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped(collector, DropReason::ChannelFull, 1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Like [`Context::emit_now`], for the kernel readers' own threads (never call it from an
    /// async task: it sleeps): when the channel is full it waits up to [`KERNEL_EMIT_WAIT`] for
    /// room before dropping and counting the event. A pipeline that is only briefly behind (a
    /// busy CPU, a snapshot being serialized) then costs no events; meanwhile the kernel keeps
    /// queueing in the reader's socket buffer (several MiB), and overflows there are counted too.
    pub fn emit_from_reader(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        let mut event = event;
        let mut deadline = None;
        loop {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    let until = *deadline.get_or_insert_with(|| Instant::now() + KERNEL_EMIT_WAIT);
                    if Instant::now() >= until || self.cancel.is_cancelled() {
                        self.metrics.dropped(collector, DropReason::ChannelFull, 1);
                        return true;
                    }
                    event = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
    }

    /// Holds an event of a kernel reader ([`Held`]); hands the hold over when it is full.
    /// Returns `false` once the pipeline has stopped.
    pub fn hold(&self, held: &mut Held, collector: &'static str, event: Event) -> bool {
        held.since.get_or_insert_with(Instant::now);
        held.events.push(event);
        if held.events.len() >= READER_HOLD_EVENTS {
            return self.release(held, collector);
        }
        true
    }

    /// Hands every held event to the pipeline, in order ([`Context::emit_from_reader`] for
    /// each). Returns `false` once the pipeline has stopped.
    pub fn release(&self, held: &mut Held, collector: &'static str) -> bool {
        held.since = None;
        let mut open = true;
        for event in held.events.drain(..) {
            open = open && self.emit_from_reader(collector, event);
        }
        open
    }

    /// Like [`Context::emit`], from a blocking thread (a netlink reader).
    pub fn blocking_emit(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        self.events.blocking_send(event).is_ok()
    }

    /// Records a collector's health: the metric always, and a `CollectorStatus` event plus a log
    /// line (warning unless Up). Call it on changes, not on every read: it is meant to be rare.
    pub fn report_status(
        &self,
        collector: &'static str,
        status: CollectorHealth,
        message: impl Into<String>,
        fallback: Option<&str>,
    ) {
        let message = message.into();
        self.metrics.collector_status(collector, status, &message);
        match status {
            CollectorHealth::Up => tracing::info!(collector, "{message}"),
            _ => tracing::warn!(collector, status = status.as_str(), fallback, "{message}"),
        }
        let event = Event::new(Payload::CollectorStatus(vec![CollectorStatus {
            collector: collector.to_string(),
            status,
            message,
            fallback: fallback.map(str::to_string),
            extra_details: Default::default(),
        }]));
        // May be called from a blocking thread: never wait; a full channel is counted as a drop.
        self.emit_now(collector, event);
    }
}

/// A source that is read as a whole on a timer.
pub trait Periodic: Send + 'static {
    /// The collector's name (the `collector` metric label).
    fn name(&self) -> &'static str;

    /// Takes one snapshot. Runs on a blocking thread: it may read files.
    fn collect(&mut self, host: &HostRoot) -> Vec<Event>;
}

/// Every periodic collector this build has.
pub fn periodic_collectors(
    metrics: &Arc<Metrics>,
    config: &watch::Receiver<Arc<Config>>,
) -> Vec<Box<dyn Periodic>> {
    vec![
        Box::new(system::SystemInformationCollector),
        Box::new(listening::ListeningPortsCollector),
        Box::new(users::LocalUsersCollector),
        Box::new(firewall::FirewallCollector::new(metrics.clone())),
        Box::new(baseline::BaselineCollector::new(config.clone())),
    ]
}

/// Starts every triggered collector: the kernel readers on their own threads, the file
/// followers as tasks. All of them stop when `ctx.cancel` is cancelled; `tracker` waits for them.
pub fn start_triggered(ctx: &Context, tracker: &TaskTracker) {
    match process::spawn(ctx.clone()) {
        Ok(thread) => {
            tracker.spawn(thread_finished(thread));
        }
        Err(e) => ctx.report_status(
            "process",
            CollectorHealth::Down,
            format!("cannot start the process collector: {e}"),
            None,
        ),
    }
    tracker.spawn(thread_finished(connection::spawn(ctx.clone())));
    tracker.spawn(login::run(ctx.clone()));
    tracker.spawn(users::watch(ctx.clone()));
}

/// Runs every periodic collector once and sends their events. Returns `false` when the pipeline
/// has stopped taking events.
pub async fn collect_once(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
) -> bool {
    collect_round(collectors, host, tx, metrics, None).await
}

/// One round of every periodic collector; with `flush_each`, the pipeline is asked to send after
/// each collector, so a slow one (the baseline walks directories) does not hold back the others.
async fn collect_round(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
    flush_each: Option<&mpsc::Sender<Control>>,
) -> bool {
    for slot in collectors.iter_mut() {
        let mut c = std::mem::replace(slot, Box::new(Placeholder));
        let h = host.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let events = c.collect(&h);
            (c, events)
        })
        .await;
        let events = match joined {
            Ok((c, events)) => {
                *slot = c;
                events
            }
            Err(e) => {
                // The collector panicked: keep the others going, and this one out of rotation.
                tracing::error!(error = %e, "a periodic collector failed");
                metrics.error("collector", "panic");
                continue;
            }
        };
        let name = slot.name();
        for event in events {
            metrics.collected(name, event.kind());
            if tx.send(event).await.is_err() {
                return false;
            }
        }
        if let Some(control) = flush_each {
            let _ = control.send(Control::Flush(None)).await;
        }
    }
    true
}

/// Completes when a collector thread has ended, so the task tracker waits for it, without
/// holding one of the runtime's few blocking threads for the thread's whole life.
async fn thread_finished(thread: std::thread::JoinHandle<()>) {
    while !thread.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if thread.join().is_err() {
        tracing::error!("a collector thread panicked");
    }
}

/// Stands in while a collector runs on a blocking thread, and for one that panicked.
struct Placeholder;

impl Periodic for Placeholder {
    fn name(&self) -> &'static str {
        "failed"
    }
    fn collect(&mut self, _: &HostRoot) -> Vec<Event> {
        Vec::new()
    }
}

/// The periodic collectors' task: a snapshot at start (each collector's events flushed as soon as
/// it is done, so the first message leaves within a second of start), then one every
/// `snapshotFrequency`, until `cancel`.
pub async fn run_periodic(
    mut collectors: Vec<Box<dyn Periodic>>,
    ctx: Context,
    control: mpsc::Sender<Control>,
    snapshot_now: Arc<Notify>,
) {
    let Context {
        host,
        events: tx,
        metrics,
        mut config,
        cancel,
        ..
    } = ctx;
    let mut first = true;
    loop {
        let flush_each = first.then_some(&control);
        first = false;
        if !collect_round(&mut collectors, &host, &tx, &metrics, flush_each).await {
            return;
        }
        let period = config.borrow().snapshot_frequency;
        let next = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => break,
                // The `snapshot` direct method.
                _ = snapshot_now.notified() => break,
                changed = config.changed() => {
                    if changed.is_err() {
                        // The config owner is gone: keep the current period.
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(next) => break,
                        }
                    }
                    // A shorter period applies to the current wait too.
                    let period = config.borrow().snapshot_frequency;
                    if tokio::time::Instant::now() + period < next {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExtraDetails, ProcessTerminate};

    fn context(capacity: usize) -> (Context, mpsc::Receiver<Event>, Arc<Metrics>) {
        let (events, rx) = mpsc::channel(capacity);
        let metrics = Arc::new(Metrics::for_tests());
        let ctx = Context {
            host: HostRoot::default(),
            events,
            metrics: metrics.clone(),
            config: watch::channel(Arc::new(Config::default())).1,
            cancel: CancellationToken::new(),
            state_dir: std::env::temp_dir(),
        };
        (ctx, rx, metrics)
    }

    fn event(pid: u32) -> Event {
        Event::new(Payload::ProcessTerminate(vec![ProcessTerminate {
            executable: "/bin/true".into(),
            process_id: pid,
            exit_status: 0,
            extra_details: ExtraDetails::new(),
        }]))
    }

    fn pid_of(e: &Event) -> u32 {
        match &e.payload {
            Payload::ProcessTerminate(r) => r[0].process_id,
            _ => 0,
        }
    }

    #[test]
    fn held_events_go_over_in_order_when_released_or_when_the_hold_is_full() {
        let (ctx, mut rx, metrics) = context(4 * READER_HOLD_EVENTS);
        let mut held = Held::default();
        assert_eq!(held.due_in(), None);
        for pid in 1..=3 {
            assert!(ctx.hold(&mut held, "process", event(pid)));
        }
        assert!(
            rx.try_recv().is_err(),
            "nothing handed over before the hold is due"
        );
        let due = held.due_in().expect("events are held");
        assert!(due <= READER_HOLD, "{due:?}");
        assert!(ctx.release(&mut held, "process"));
        assert_eq!(held.due_in(), None);
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| pid_of(&e))
            .collect();
        assert_eq!(got, [1, 2, 3]);
        // A full hold is handed over without waiting.
        for pid in 0..READER_HOLD_EVENTS as u32 {
            assert!(ctx.hold(&mut held, "process", event(pid)));
        }
        assert!(held.is_empty());
        assert_eq!(
            std::iter::from_fn(|| rx.try_recv().ok()).count(),
            READER_HOLD_EVENTS
        );
        assert_eq!(metrics.dropped_total("process", DropReason::ChannelFull), 0);
        // Once the pipeline is gone, releasing says so.
        assert!(ctx.hold(&mut held, "process", event(9)));
        drop(rx);
        assert!(!ctx.release(&mut held, "process"));
        assert!(held.is_empty());
    }

    #[test]
    fn the_receive_timeout_is_short_only_while_events_are_held() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let current = || {
            let mut tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            };
            let mut len = size_of::<libc::timeval>() as libc::socklen_t;
            // SAFETY: `tv` is valid for `len` bytes.
            let rc = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&mut tv as *mut libc::timeval).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
        };
        let idle = Duration::from_millis(200);
        set_recv_timeout(&socket, idle).unwrap();
        let (ctx, _rx, _) = context(8);
        let mut held = Held::default();
        let mut timeout = RecvTimeout::new(idle);
        timeout.follow(&socket, &held);
        assert_eq!(current(), idle);
        assert!(ctx.hold(&mut held, "process", event(1)));
        timeout.follow(&socket, &held);
        assert_eq!(current(), READER_HOLD);
        assert!(ctx.release(&mut held, "process"));
        timeout.follow(&socket, &held);
        assert_eq!(current(), idle);
    }

    #[test]
    fn a_reader_waits_for_a_briefly_busy_pipeline() {
        let (ctx, mut rx, metrics) = context(1);
        assert!(ctx.emit_from_reader("process", event(1)));
        // The channel is full; the pipeline takes 50 ms to come back.
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut got = Vec::new();
            while got.len() < 2 {
                match rx.try_recv() {
                    Ok(e) => got.push(pid_of(&e)),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            got
        });
        assert!(ctx.emit_from_reader("process", event(2)));
        assert_eq!(consumer.join().unwrap(), [1, 2]);
        assert_eq!(metrics.dropped_total("process", DropReason::ChannelFull), 0);
    }

    #[test]
    fn a_reader_drops_and_counts_when_the_pipeline_stays_stuck() {
        let (ctx, rx, metrics) = context(1);
        assert!(ctx.emit_from_reader("process", event(1)));
        let started = Instant::now();
        assert!(ctx.emit_from_reader("process", event(2)));
        let waited = started.elapsed();
        assert!(waited >= KERNEL_EMIT_WAIT, "{waited:?}");
        assert!(waited < KERNEL_EMIT_WAIT * 4, "{waited:?}");
        assert_eq!(metrics.dropped_total("process", DropReason::ChannelFull), 1);
        drop(rx);
        assert!(
            !ctx.emit_from_reader("process", event(3)),
            "closed pipeline"
        );
    }
}
