//! What the kernel readers (the process and connection collectors' threads) share: events held
//! and handed to the pipeline in groups, and a receive timeout that follows the hold.

use crate::event::Event;
use crate::kernel::socket::set_recv_timeout;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Longest wait of a kernel reader for room in the pipeline's channel
/// ([`Context::emit_from_reader`](super::Context::emit_from_reader)).
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
    pub(super) events: Vec<Event>,
    pub(super) since: Option<Instant>,
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
        self.follow_busy(fd, held, false);
    }

    /// [`RecvTimeout::follow`], with the short wait also while `busy` (the process reader's
    /// second socket, read only when the first is, keeps receiving).
    pub fn follow_busy(&mut self, fd: &impl AsFd, held: &Held, busy: bool) {
        let holding = !held.is_empty() || busy;
        if holding != self.holding {
            let wait = if holding { READER_HOLD } else { self.idle };
            // On failure the old timeout stays and the next call tries again.
            if set_recv_timeout(fd, wait).is_ok() {
                self.holding = holding;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::Context;
    use crate::config::Config;
    use crate::event::{ExtraDetails, Payload, ProcessTerminate};
    use crate::host::HostRoot;
    use crate::metrics::{DropReason, Metrics};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

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
