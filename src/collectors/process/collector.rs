//! The collector: the reader thread, following the connector, and the /proc scanning fallback.

use super::{
    ACK_TIMEOUT, BATCH_SLOTS, Batch, COLLECTOR, Connector, Error, MAX_SCAN_PIDS, ProcEvent,
    RECV_BUFFER_BYTES, RECV_TIMEOUT, Received, SCAN_INTERVAL, SUBSCRIBE_ATTEMPTS, Tracker,
    is_kernel_thread, parse_datagram,
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
    spawn_with(ctx, true)
}

pub(super) fn spawn_with(ctx: Context, use_connector: bool) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("edgeguard-proc".into())
        .spawn(move || run(ctx, use_connector))
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

fn run(ctx: Context, use_connector: bool) {
    raise_priority();
    let mut tracker = Tracker::new(ctx.host.clone());
    let failure = if use_connector {
        match Connector::open(RECV_BUFFER_BYTES) {
            Ok(connector) => {
                tracker.open_exec_trace();
                // Seed only after subscribing, so that no process slips between the two.
                if let Err(e) = tracker.seed() {
                    tracing::warn!(error = %e, "cannot list /proc: exits of running processes will lack executables");
                    ctx.metrics.error(COLLECTOR, "proc_list");
                }
                match follow(&ctx, &connector, &mut tracker) {
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

/// Reads the connector until cancelled (`Ok`) or until it fails (`Err`: the caller falls back).
pub(super) fn follow(
    ctx: &Context,
    connector: &Connector,
    tracker: &mut Tracker,
) -> Result<(), Error> {
    let mut held = Held::default();
    let result = follow_holding(ctx, connector, tracker, &mut held);
    // Whatever ended the loop, events already made are handed over.
    ctx.release(&mut held, COLLECTOR);
    result
}

fn follow_holding(
    ctx: &Context,
    connector: &Connector,
    tracker: &mut Tracker,
    held: &mut Held,
) -> Result<(), Error> {
    let mut batch = Batch::default();
    let mut events: Vec<ProcEvent> = Vec::with_capacity(BATCH_SLOTS);
    let mut early: VecDeque<ProcessInfo> = VecDeque::with_capacity(BATCH_SLOTS);
    let started = Instant::now();
    let mut confirmed = false;
    let mut failures = 0u32;
    let mut timeout = RecvTimeout::new(RECV_TIMEOUT);
    while !ctx.cancel.is_cancelled() {
        if held.due_in().is_some_and(|d| d.is_zero()) && !ctx.release(held, COLLECTOR) {
            return Ok(());
        }
        timeout.follow(&connector.fd, held);
        match connector.recv_batch(&mut batch) {
            Ok(Received::Datagrams) => {}
            // The traffic paused: what is held goes over.
            Ok(Received::TimedOut) if !held.is_empty() => {
                if !ctx.release(held, COLLECTOR) {
                    return Ok(());
                }
                continue;
            }
            Ok(Received::TimedOut) => {
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
            Ok(Received::Overflow) => {
                // The kernel does not say how many events it dropped: count the occurrence.
                ctx.metrics
                    .dropped(COLLECTOR, DropReason::SourceOverflow, 1);
                tracker.forget_followed();
                confirm(ctx, connector, &mut confirmed);
                continue;
            }
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
        events.clear();
        for datagram in batch.datagrams() {
            for parsed in parse_datagram(datagram) {
                match parsed {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping a netlink message");
                        ctx.metrics.error(COLLECTOR, "malformed_message");
                    }
                }
            }
        }
        if read_execs_first(tracker, &events, &mut early) > 0 {
            ctx.metrics.error(COLLECTOR, "exec_trace_lost");
        }
        for event in &events {
            let payload = match *event {
                ProcEvent::Ack { ack, err, .. } if connector.is_our_ack(ack) => {
                    if err != 0 {
                        return Err(Error::Refused(io::Error::from_raw_os_error(err as i32)));
                    }
                    confirm(ctx, connector, &mut confirmed);
                    continue;
                }
                // Applied by `read_execs_first`, in order, before the execs were read.
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
            confirm(ctx, connector, &mut confirmed);
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
pub(super) fn read_execs_first(
    tracker: &mut Tracker,
    events: &[ProcEvent],
    early: &mut VecDeque<ProcessInfo>,
) -> u64 {
    early.clear();
    let timed = tracker.exec_trace_timed();
    let mut lost = if timed { tracker.drain_exec_trace() } else { 0 };
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
        early.push_back(info);
    }
    if !timed {
        lost = tracker.name_from_exec_trace(early);
    }
    let mut next = 0;
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
                if let Some(info) = early.get_mut(next) {
                    // The tracker applies this batch's exits only later.
                    let exited_before =
                        |parent: u32| events[..i].iter().any(|e| e.is_exit_of(parent));
                    tracker.read_lasting(info, exited_before);
                }
                next += 1;
            }
            _ => {}
        }
    }
    lost
}

/// Reports `Up` the first time the subscription shows it works (our ack, an event, an overflow).
fn confirm(ctx: &Context, connector: &Connector, confirmed: &mut bool) {
    if !*confirmed {
        *confirmed = true;
        let buffer = connector
            .recv_buffer
            .map(|b| format!(" (receive buffer {} KiB)", b / 1024))
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
