//! The collector: the reader thread, following the connector, and the /proc scanning fallback.

use super::{
    ACK_TIMEOUT, BATCH_SLOTS, Batch, COLLECTOR, Connector, Error, MAX_SCAN_PIDS, PROC_EVENT_EXEC,
    PROC_EVENT_EXIT, PROC_EVENT_FORK, PROC_EVENT_UID, ProcEvent, RECV_BUFFER_BYTES, RECV_TIMEOUT,
    Received, SCAN_INTERVAL, SUBSCRIBE_ATTEMPTS, Tracker, is_kernel_thread, kernel_filters_events,
    parse_datagram_timed,
};
use crate::collectors::{Context, Held, RecvTimeout};
use crate::event::{CollectorHealth, Event, Payload};
use crate::host::procfs::{self, Liveness, ProcessInfo};
use crate::metrics::DropReason;
use crate::text::error_chain;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The process collector as the registry lists it: [`spawn`] on its own thread.
pub struct ProcessCollector;

impl crate::collectors::Triggered for ProcessCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> io::Result<crate::collectors::Running> {
        spawn(ctx).map(crate::collectors::Running::Thread)
    }
}

/// Starts the process collector on a dedicated thread (`edgeguard-proc`).
///
/// Emits `ProcessCreate` and `ProcessTerminate` (one record each) with [`Context::emit_from_reader`],
/// and `CollectorStatus`: `Up` once the kernel acknowledged the subscription, `Degraded` when it
/// falls back to scanning /proc. The thread ends within [`RECV_TIMEOUT`] of `ctx.cancel`, or
/// when the pipeline's channel closes. Fails only if the thread cannot be created.
pub fn spawn(ctx: Context) -> io::Result<JoinHandle<()>> {
    spawn_with(ctx, Follow::Auto)
}

/// How the reader learns of processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follow {
    /// The connector, with execs on a socket of their own where the kernel filters events.
    Auto,
    /// The connector, every event on one socket (as on kernels before 6.6), for tests on a
    /// kernel that filters.
    #[cfg(test)]
    OneSocket,
    /// Scanning /proc.
    Scan,
}

pub(super) fn spawn_with(ctx: Context, how: Follow) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("edgeguard-proc".into())
        .spawn(move || run(ctx, how))
}

/// Nice value asked for the reader thread. The kernel reports an exec after the fact and the
/// process runs on; a process that exits before the reader gets to /proc loses its command line
/// (and, once reaped, its name). On a busy host the reader competes with everything else for the
/// CPU, so it asks to be scheduled first. It blocks on the socket when idle, so this costs nothing
/// then; without `CAP_SYS_NICE` the request fails and the thread keeps the normal priority.
pub const READER_NICE: i32 = -10;

/// Raises the calling thread's scheduling priority to [`READER_NICE`] (best effort).
fn raise_priority() {
    if let Err(e) = crate::kernel::sys::set_thread_nice(READER_NICE) {
        tracing::debug!(error = %e, "keeping the normal priority for the process events reader");
    }
}

fn run(ctx: Context, how: Follow) {
    raise_priority();
    let mut tracker = Tracker::new(ctx.host.clone());
    let failure = if how != Follow::Scan {
        let release = crate::kernel::sys::uname_release().unwrap_or_default();
        let split = how == Follow::Auto && kernel_filters_events(&release);
        match Connectors::open(RECV_BUFFER_BYTES, split) {
            Ok(connectors) => {
                tracker.open_exec_trace();
                // Seed only after subscribing, so that no process slips between the two.
                if let Err(e) = tracker.seed() {
                    tracing::warn!(error = %e, "cannot list /proc: exits of running processes will lack executables");
                    ctx.metrics.error(COLLECTOR, "proc_list");
                }
                match follow(&ctx, &connectors, &mut tracker) {
                    Ok(()) => return,
                    Err(e) => error_chain(&e),
                }
            }
            Err(e) => error_chain(&e),
        }
    } else {
        "netlink process connector not used".to_string()
    };
    ctx.report_status(
        COLLECTOR,
        CollectorHealth::Degraded,
        failure,
        Some("scanning /proc every second"),
    );
    scan(&ctx, &mut tracker);
}

/// Event bits of the socket the reader waits on where the kernel filters events (Linux 6.6+):
/// execs only, which must be read at once (a short-lived process takes its /proc entries with
/// it).
pub(super) const WAKE_EVENTS: u32 = PROC_EVENT_EXEC;
/// Event bits of the socket read without waiting: forks, uid changes and exits, which need
/// nothing from /proc and can wait for the next exec (or [`crate::collectors::READER_HOLD`]).
pub(super) const REST_EVENTS: u32 = PROC_EVENT_FORK | PROC_EVENT_UID | PROC_EVENT_EXIT;
/// Events in one gathering from the rest socket that make it count as busy: the wait on the
/// wake socket then ends after `READER_HOLD` instead of [`RECV_TIMEOUT`], so that a storm of
/// forks without execs is read every 20 ms and does not fill the socket.
const REST_BUSY: usize = 16;
/// Rounds of one [`gather`] (rest socket, then wake socket again) and reads of the rest socket
/// per round: bounds on the work and memory of one gathering (at most 4 × 9 × 64 events).
const GATHER_ROUNDS: usize = 4;
const REST_READS: usize = 8;

/// The connector sockets the reader follows.
///
/// Every fork, exec and exit used to wake the reader: about 2,600 wake-ups a second for 1,000
/// scripts run, the larger part of its cost. Only an exec needs prompt attention (its /proc
/// entries go when the process exits), so where the kernel filters events per socket the execs
/// come on one socket, which the reader waits on, and everything else on another, which it reads
/// without waiting each time it wakes. Older kernels give every event on one socket.
pub(super) struct Connectors {
    /// Every event, or only execs: the socket the reader waits on.
    pub(super) wake: Connector,
    /// Forks, uid changes and exits, when the kernel filters events.
    pub(super) rest: Option<Connector>,
}

impl Connectors {
    /// Two filtered sockets when `split` (the kernel filters events) and both can be opened,
    /// else one for every event.
    pub(super) fn open(recv_buffer: usize, split: bool) -> Result<Connectors, Error> {
        if split {
            // The wake socket takes every event until the kernel's answer to its subscription
            // is seen ([`Connectors::narrow`]).
            let wake = Connector::open(recv_buffer);
            let rest = Connector::open_filtered(recv_buffer, Some(REST_EVENTS));
            match (wake, rest) {
                (Ok(wake), Ok(rest)) => {
                    tracing::debug!(
                        "process events: execs on one socket, forks and exits on another"
                    );
                    return Ok(Connectors {
                        wake,
                        rest: Some(rest),
                    });
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %error_chain(&e), "one socket for every process event");
                }
            }
        }
        Connector::open(recv_buffer).map(Connectors::single)
    }

    /// With two sockets, narrows the wake socket to execs, once the subscription is known to
    /// work (a filtered socket gets no acknowledgement). Until then it got every event, and
    /// [`gather`] kept only its execs.
    pub(super) fn narrow(&self) -> io::Result<()> {
        match self.rest {
            Some(_) => self.wake.narrow(WAKE_EVENTS),
            None => Ok(()),
        }
    }

    /// One socket for every event.
    pub(super) fn single(connector: Connector) -> Connectors {
        Connectors {
            wake: connector,
            rest: None,
        }
    }
}

/// An event with the kernel's time of it (`timestamp_ns`).
type Timed = (u64, ProcEvent);

/// What one [`gather`] got.
#[derive(Debug, Default)]
struct Gathered {
    /// Whether any event was received.
    events: bool,
    /// Sockets that overflowed (the kernel dropped events on them).
    overflows: u64,
    /// Events from the rest socket.
    rest_events: usize,
}

/// Receives what the kernel has for the reader, in `timed` sorted by the kernel's time (their
/// order on a single socket). Waits (up to the socket's timeout) on the wake socket; then, with
/// a rest socket, takes what that holds and what reached the wake socket meanwhile, until a read
/// of the wake socket finds nothing. The kernel queues a task's event before the task goes on,
/// so the fork of every exec in hand, and the exec of every exit in hand, are then in hand too.
///
/// `arrived` is given the events of each receive of the wake socket as soon as they are in, so
/// that the execs' /proc entries are read before anything else is done.
fn gather(
    ctx: &Context,
    connectors: &Connectors,
    batch: &mut Batch,
    timed: &mut Vec<Timed>,
    arrived: &mut dyn FnMut(&[Timed]),
) -> io::Result<Gathered> {
    timed.clear();
    let mut got = Gathered::default();
    let split = connectors.rest.is_some();
    // On a split socket pair each keeps its own kinds: a kernel that ignored a filter would
    // otherwise give every event twice. Acknowledgements reach every socket; the wake
    // socket's are kept.
    let wake_keeps =
        |e: &ProcEvent| !split || matches!(e, ProcEvent::Ack { .. }) || e.kind() & WAKE_EVENTS != 0;
    let rest_keeps = |e: &ProcEvent| e.kind() & REST_EVENTS != 0;
    match connectors.wake.recv_batch(batch)? {
        Received::Datagrams => {
            take(ctx, batch, timed, wake_keeps);
            arrived(timed);
        }
        Received::TimedOut => {}
        Received::Overflow => got.overflows += 1,
    }
    if let Some(rest) = &connectors.rest {
        for _ in 0..GATHER_ROUNDS {
            for _ in 0..REST_READS {
                match rest.try_recv_batch(batch)? {
                    Received::Datagrams => got.rest_events += take(ctx, batch, timed, rest_keeps),
                    Received::TimedOut => break,
                    Received::Overflow => got.overflows += 1,
                }
            }
            match connectors.wake.try_recv_batch(batch)? {
                Received::Datagrams => {
                    let before = timed.len();
                    take(ctx, batch, timed, wake_keeps);
                    arrived(&timed[before..]);
                }
                Received::TimedOut => break,
                Received::Overflow => got.overflows += 1,
            }
        }
        // Stable: events of one socket with equal times keep their order.
        timed.sort_by_key(|(time, _)| *time);
    }
    got.events = !timed.is_empty();
    Ok(got)
}

/// Parses the datagrams of the last receive into `timed`, keeping the events `keep` accepts;
/// returns how many were kept.
fn take(
    ctx: &Context,
    batch: &Batch,
    timed: &mut Vec<Timed>,
    keep: impl Fn(&ProcEvent) -> bool,
) -> usize {
    let before = timed.len();
    for datagram in batch.datagrams() {
        for parsed in parse_datagram_timed(datagram) {
            match parsed {
                Ok(event) if keep(&event.1) => timed.push(event),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "skipping a netlink message");
                    ctx.metrics.error(COLLECTOR, "malformed_message");
                }
            }
        }
    }
    timed.len() - before
}

/// Reads the connector until cancelled (`Ok`) or until it fails (`Err`: the caller falls back).
pub(super) fn follow(
    ctx: &Context,
    connectors: &Connectors,
    tracker: &mut Tracker,
) -> Result<(), Error> {
    let mut held = Held::default();
    let result = follow_holding(ctx, connectors, tracker, &mut held);
    // Whatever ended the loop, events already made are handed over.
    ctx.release(&mut held, COLLECTOR);
    result
}

fn follow_holding(
    ctx: &Context,
    connectors: &Connectors,
    tracker: &mut Tracker,
    held: &mut Held,
) -> Result<(), Error> {
    let connector = &connectors.wake;
    let mut batch = Batch::default();
    let mut timed: Vec<Timed> = Vec::with_capacity(BATCH_SLOTS);
    let mut events: Vec<ProcEvent> = Vec::with_capacity(BATCH_SLOTS);
    let mut execs: Vec<ProcEvent> = Vec::with_capacity(BATCH_SLOTS);
    let mut early: VecDeque<ProcessInfo> = VecDeque::with_capacity(BATCH_SLOTS);
    let started = Instant::now();
    let mut confirmed = false;
    let mut failures = 0u32;
    let mut timeout = RecvTimeout::new(RECV_TIMEOUT);
    let mut rest_busy = false;
    while !ctx.cancel.is_cancelled() {
        if held.due_in().is_some_and(|d| d.is_zero()) && !ctx.release(held, COLLECTOR) {
            return Ok(());
        }
        timeout.follow_busy(&connector.fd, held, rest_busy);
        early.clear();
        let mut lost = 0;
        let mut arrived = |fresh: &[Timed]| {
            execs.clear();
            execs.extend(fresh.iter().map(|(_, event)| *event));
            lost += read_fleeting(tracker, &execs, &mut early);
        };
        let got = match gather(ctx, connectors, &mut batch, &mut timed, &mut arrived) {
            Ok(got) => got,
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "netlink_recv");
                failures += 1;
                if failures >= 10 {
                    return Err(Error::Receive(e));
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        failures = 0;
        rest_busy = got.rest_events >= REST_BUSY;
        if got.overflows > 0 {
            // The kernel does not say how many events it dropped: count the occurrence.
            ctx.metrics
                .dropped(COLLECTOR, DropReason::SourceOverflow, got.overflows);
            tracker.forget_followed();
            confirm(ctx, connectors, &mut confirmed);
        }
        if !got.events {
            if got.overflows > 0 {
                continue;
            }
            // The traffic paused: what is held goes over.
            if !held.is_empty() {
                if !ctx.release(held, COLLECTOR) {
                    return Ok(());
                }
                continue;
            }
            if !confirmed && started.elapsed() > ACK_TIMEOUT * connector.listens.get() {
                // A busy host can lose the first answer; ask again before falling back.
                if connector.listens.get() >= SUBSCRIBE_ATTEMPTS {
                    return Err(Error::NoAck);
                }
                tracing::debug!(
                    attempt = connector.listens.get() + 1,
                    "no answer to the process events subscription yet; subscribing again"
                );
                connector.listen().map_err(Error::Subscribe)?;
            }
            continue;
        }
        events.clear();
        events.extend(timed.iter().map(|(_, event)| *event));
        apply_in_order(tracker, &events, &mut early);
        if lost > 0 {
            ctx.metrics.error(COLLECTOR, "exec_trace_lost");
        }
        for event in &events {
            let payload = match *event {
                ProcEvent::Ack { ack, err, .. } if connector.is_our_ack(ack) => {
                    if err != 0 {
                        return Err(Error::Refused(io::Error::from_raw_os_error(err as i32)));
                    }
                    confirm(ctx, connectors, &mut confirmed);
                    continue;
                }
                // Applied by `apply_in_order`, in order, before the execs were read.
                ProcEvent::Fork { .. } | ProcEvent::Uid { .. } => continue,
                ProcEvent::Exec { pid, tgid, .. } if pid == tgid => {
                    let info = match early.pop_front() {
                        Some(info) if info.pid == pid => info,
                        _ => tracker.read(pid, Liveness::Unknown),
                    };
                    Payload::ProcessCreate(vec![tracker.created(info)])
                }
                ProcEvent::Exit {
                    pid,
                    tgid,
                    exit_code,
                    parent_tgid,
                    ..
                } if pid == tgid => match tracker.terminated(pid, Some(exit_code), parent_tgid) {
                    Some(r) => Payload::ProcessTerminate(vec![r]),
                    None => continue,
                },
                _ => continue,
            };
            // Events flow, so the subscription works even if the ack went missing.
            confirm(ctx, connectors, &mut confirmed);
            if !ctx.hold(held, COLLECTOR, Event::new(payload)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads /proc for every exec of a batch before anything else is done with the batch (building
/// and sending records): a short-lived process loses its command line and executable link when
/// it exits, so each microsecond before the read counts.
///
/// First those two are read for every exec, in order; an exec whose exit is already in the same
/// batch is skipped (its memory is gone). Then the batch's forks and uid changes are applied to
/// the tracker in order, and at each exec what stays until the process is reaped (parent, name,
/// user, cgroup; see [`Tracker::read_lasting`]) is read, so that a fork earlier in the same batch
/// already gives the uid. The caller handles everything else in a second walk, in order, and
/// skips forks and uid changes.
///
/// The exec tracepoint, when open, gives each exec its file name, and where its samples carry
/// the time ([`Tracker::exec_trace_timed`]) much more: it is drained first (each exec's sample
/// is in a ring before its event is sent), each exec is matched to its own sample, and /proc is
/// read only for what the sample lacks: the executable link (the resolved path), and the
/// command line when the stack copy did not hold all of it. An exec whose pid exec'd again
/// since (a shell's `exec`) is not read from /proc at all, which would show the later program.
/// Without the time, an exec whose executable link could not be read (gone already) gets the
/// file name its exec gave afterwards. Returns how many tracepoint records the kernel lost
/// since the last batch.
///
/// The reader calls the two halves itself ([`read_fleeting`] as execs arrive, [`apply_in_order`]
/// once the other socket was read too); tests call this.
#[cfg(test)]
pub(super) fn read_execs_first(
    tracker: &mut Tracker,
    events: &[ProcEvent],
    early: &mut VecDeque<ProcessInfo>,
) -> u64 {
    early.clear();
    let lost = read_fleeting(tracker, events, early);
    apply_in_order(tracker, events, early);
    lost
}

/// The first half of [`read_execs_first`]: appends to `early` what each exec of `events`
/// (in order) loses when its process exits: the tracepoint sample's part, then /proc's. With
/// two sockets it runs on the execs as soon as they are received, before the other socket is
/// read. Returns how many tracepoint records the kernel lost.
fn read_fleeting(
    tracker: &mut Tracker,
    events: &[ProcEvent],
    early: &mut VecDeque<ProcessInfo>,
) -> u64 {
    let timed = tracker.exec_trace_timed();
    let mut lost = if timed { tracker.drain_exec_trace() } else { 0 };
    let mut fresh = VecDeque::new();
    for (i, event) in events.iter().enumerate() {
        let ProcEvent::Exec {
            pid,
            tgid,
            timestamp_ns,
        } = *event
        else {
            continue;
        };
        if pid != tgid {
            continue;
        }
        let exited = events[i + 1..].iter().any(|later| later.is_exit_of(pid));
        let mut info = ProcessInfo {
            pid,
            ..Default::default()
        };
        let matched = if timed {
            tracker.match_exec(&mut info, timestamp_ns)
        } else {
            None
        };
        match &matched {
            _ if exited => {}
            None => tracker.reader.read_fleeting(&mut info),
            Some(m) if m.superseded => {}
            Some(_) => {
                if info.cmdline.is_none() {
                    tracker.reader.read_cmdline(&mut info);
                }
                tracker.reader.read_exe(&mut info);
            }
        }
        if let Some(m) = matched.filter(|_| info.cmdline.is_none()) {
            // Cut by the end of the stack copy, or nothing: better than no command line.
            info.cmdline = m.command_line;
        }
        fresh.push_back(info);
    }
    if !timed {
        lost = tracker.name_from_exec_trace(&mut fresh);
    }
    early.append(&mut fresh);
    lost
}

/// The second half of [`read_execs_first`]: applies the forks and uid changes of `events` to
/// the tracker in order and, at each exec, reads what stays until the process is reaped into
/// its entry of `early`, which it leaves in the order of the execs in `events` (with two
/// sockets, `early` was filled in the order the execs were received, and `events` is sorted
/// by time: an exec is matched to the first entry left with its pid).
fn apply_in_order(tracker: &mut Tracker, events: &[ProcEvent], early: &mut VecDeque<ProcessInfo>) {
    let mut ordered = VecDeque::with_capacity(early.len());
    for (i, event) in events.iter().enumerate() {
        match *event {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => tracker.fork(parent_tgid, child_pid, child_tgid),
            ProcEvent::Uid {
                pid, tgid, ruid, ..
            } => tracker.uid_changed(pid, tgid, ruid),
            ProcEvent::Exec { pid, tgid, .. } if pid == tgid => {
                let Some(at) = early.iter().position(|info| info.pid == pid) else {
                    continue;
                };
                if let Some(mut info) = early.remove(at) {
                    // The tracker applies this batch's exits only later.
                    let exited_before =
                        |parent: u32| events[..i].iter().any(|e| e.is_exit_of(parent));
                    tracker.read_lasting(&mut info, exited_before);
                    ordered.push_back(info);
                }
            }
            _ => {}
        }
    }
    // Entries no exec claimed (none, unless an event was malformed) keep their place after.
    ordered.append(early);
    *early = ordered;
}

/// Reports `Up` the first time the subscription shows it works (our ack, an event, an overflow).
fn confirm(ctx: &Context, connectors: &Connectors, confirmed: &mut bool) {
    if !*confirmed {
        *confirmed = true;
        if let Err(e) = connectors.narrow() {
            // The wake socket keeps every event; only its execs are used.
            tracing::debug!(error = %e, "cannot narrow the process events socket to execs");
            ctx.metrics.error(COLLECTOR, "narrow");
        }
        let sockets = if connectors.rest.is_some() {
            ", execs on a socket of their own"
        } else {
            ""
        };
        let buffer = connectors
            .wake
            .recv_buffer
            .map(|b| format!(" (receive buffer {} KiB{sockets})", b / 1024))
            .unwrap_or_default();
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Up,
            format!("following the kernel's process events{buffer}"),
            None,
        );
    }
}

/// The fallback: diffs the pids in /proc every [`SCAN_INTERVAL`] until cancelled. The first
/// scan is a baseline (processes already running are not "created").
fn scan(ctx: &Context, tracker: &mut Tracker) {
    // pid → reported (false for kernel threads, remembered so they are not re-read every scan).
    let mut known: HashMap<u32, bool> = HashMap::new();
    let mut first = true;
    while !ctx.cancel.is_cancelled() {
        match procfs::list_pids(&ctx.host, MAX_SCAN_PIDS) {
            Ok(pids) => {
                let current: HashSet<u32> = pids.into_iter().collect();
                let mut events = Vec::new();
                for &pid in &current {
                    if known.contains_key(&pid) {
                        continue;
                    }
                    let info = tracker.read(pid, Liveness::Unknown);
                    if info.uid.is_none() && info.ppid.is_none() && info.exe.is_none() {
                        continue; // gone already
                    }
                    // Kernel threads are remembered (not re-read every scan) but not reported.
                    let report = !is_kernel_thread(&info);
                    known.insert(pid, report);
                    if first || !report {
                        tracker.remember(&info);
                    } else {
                        events.push(Payload::ProcessCreate(vec![tracker.created(info)]));
                    }
                }
                let gone: Vec<u32> = known
                    .keys()
                    .copied()
                    .filter(|p| !current.contains(p))
                    .collect();
                for pid in gone {
                    let reported = known.remove(&pid).unwrap_or(false);
                    let record = tracker.terminated(pid, None, None);
                    if let (true, Some(r)) = (reported, record) {
                        events.push(Payload::ProcessTerminate(vec![r]));
                    }
                }
                for payload in events {
                    if !ctx.emit_from_reader(COLLECTOR, Event::new(payload)) {
                        return;
                    }
                }
                first = false;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot list /proc");
                ctx.metrics.error(COLLECTOR, "proc_list");
            }
        }
        // Sleep in short steps so cancellation is noticed promptly.
        let wake = Instant::now() + SCAN_INTERVAL;
        while !ctx.cancel.is_cancelled() {
            let left = wake.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(RECV_TIMEOUT));
        }
    }
}
