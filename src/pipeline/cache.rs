//! The in-memory cache of encoded events waiting to be batched, bounded by
//! `maxLocalCacheSizeInBytes`, and the batcher that packs them into messages.
//!
//! Four lanes: operational events (statistics, configuration errors) ride with the next message
//! whatever the timer, then High, then Low; alerts have a lane of their own because they travel in
//! messages of their own (the module's `alerts` output, routed ahead of everything else). When
//! the cache is full the oldest Low event goes first, then the oldest High, then the oldest alert,
//! and operational events last: they are small and say what was lost.

use crate::event::{EncodedEvent, MessageHeader, Priority};
use std::collections::VecDeque;

/// A cache lane; the order of the variants is the eviction order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Low = 0,
    High = 1,
    Alert = 2,
    Operational = 3,
}

impl Lane {
    const ALL: [Lane; 4] = [Lane::Low, Lane::High, Lane::Alert, Lane::Operational];
}

/// Which module output a message leaves on: routes in the deployment select on it, so alerts can
/// travel ahead of (and be kept longer than) the bulk of security events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Output {
    /// Everything but alerts (`securityEvents` by default).
    #[default]
    Events,
    /// Messages made only of `Alert` events (`alerts` by default).
    Alerts,
}

/// An event waiting in the cache with the priority it was queued under and its sequence number
/// (its key in the spool's queue table, where a durable agent keeps a copy until the message
/// that carries it is stored).
#[derive(Debug)]
struct Queued {
    event: EncodedEvent,
    priority: Priority,
    seq: u64,
    /// Sent by another module (see [`Cache::admit_foreign`]).
    foreign: bool,
}

/// The share of the cache other modules' events may take (a quarter): they are admitted only
/// into room that is free, so they never push edgeguard's own events out.
const FOREIGN_SHARE_DIVISOR: usize = 4;

#[derive(Debug, Default)]
struct LaneQueue {
    events: VecDeque<Queued>,
    bytes: usize,
}

/// A security message ready for a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `MessagePriority` of the message: High when it carries any High event.
    pub priority: Priority,
    pub body: Vec<u8>,
    pub events: usize,
    /// The output it leaves on (set by the pipeline, which knows which lanes it asked for).
    pub output: Output,
    /// Sequence numbers of the queued events it carries: the spool removes them from its queue
    /// table in the commit that stores the message.
    pub seqs: Vec<u64>,
}

/// Events pushed out of a full cache, by the priority they were queued with.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub high: u64,
    pub low: u64,
}

#[derive(Debug)]
pub struct Cache {
    lanes: [LaneQueue; 4],
    limit: usize,
    /// (events, bytes) queued under High and under Low: kept up to date on every change, because
    /// the queue metrics read them after every push and a scan would make pushing O(n).
    by_priority: [(usize, usize); 2],
    /// Sequence numbers of events that left without a message (evicted, or too large to send),
    /// until [`Cache::take_gone`]: a durable agent deletes them from the spool's queue table.
    gone: Vec<u64>,
    /// Bytes of other modules' events in the cache.
    foreign_bytes: usize,
}

/// An event as the cache holds it, for restoring a durable queue after a restart.
#[derive(Debug)]
pub struct Restored {
    pub lane: Lane,
    pub priority: Priority,
    pub seq: u64,
    pub event: EncodedEvent,
}

fn priority_index(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        _ => 1,
    }
}

impl Cache {
    pub fn new(limit: usize) -> Cache {
        Cache {
            lanes: Default::default(),
            limit,
            by_priority: [(0, 0); 2],
            gone: Vec::new(),
            foreign_bytes: 0,
        }
    }

    /// Sequence numbers of the events that left without a message since the last call.
    pub fn take_gone(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.gone)
    }

    pub fn bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.bytes).sum()
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(|l| l.events.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events and bytes queued under `priority` (for metrics).
    pub fn queued(&self, priority: Priority) -> (usize, usize) {
        match priority {
            Priority::Off => (0, 0),
            p => self.by_priority[priority_index(p)],
        }
    }

    fn count_in(&mut self, q: &Queued) {
        let c = &mut self.by_priority[priority_index(q.priority)];
        c.0 += 1;
        c.1 += q.event.len();
        if q.foreign {
            self.foreign_bytes += q.event.len();
        }
    }

    fn count_out(&mut self, q: &Queued) {
        let c = &mut self.by_priority[priority_index(q.priority)];
        c.0 -= 1;
        c.1 -= q.event.len();
        if q.foreign {
            self.foreign_bytes -= q.event.len();
        }
    }

    /// Bytes of other modules' events queued.
    pub fn foreign_bytes(&self) -> usize {
        self.foreign_bytes
    }

    /// Queues another module's event only where it fits without evicting anything, and within
    /// the foreign share of the limit; `false` (not queued) otherwise.
    pub fn admit_foreign(
        &mut self,
        lane: Lane,
        priority: Priority,
        seq: u64,
        event: EncodedEvent,
    ) -> bool {
        let len = event.len();
        if self.bytes() + len > self.limit
            || self.foreign_bytes + len > self.limit / FOREIGN_SHARE_DIVISOR
        {
            return false;
        }
        let item = Queued {
            event,
            priority,
            seq,
            foreign: true,
        };
        self.count_in(&item);
        let q = &mut self.lanes[lane as usize];
        q.bytes += len;
        q.events.push_back(item);
        true
    }

    /// Changes the size bound, evicting at once if the cache is now over it.
    pub fn set_limit(&mut self, limit: usize) -> Evicted {
        self.limit = limit;
        self.evict()
    }

    /// Queues an event; returns what had to be evicted to stay within the limit (possibly the
    /// new event itself when it is the oldest of the lowest lane).
    pub fn push(
        &mut self,
        lane: Lane,
        priority: Priority,
        seq: u64,
        event: EncodedEvent,
    ) -> Evicted {
        let item = Queued {
            event,
            priority,
            seq,
            foreign: false,
        };
        self.count_in(&item);
        let q = &mut self.lanes[lane as usize];
        q.bytes += item.event.len();
        q.events.push_back(item);
        self.evict()
    }

    fn evict(&mut self) -> Evicted {
        let mut evicted = Evicted::default();
        while self.bytes() > self.limit {
            let Some(idx) = Lane::ALL
                .iter()
                .map(|l| *l as usize)
                .find(|i| !self.lanes[*i].events.is_empty())
            else {
                break;
            };
            let lane = &mut self.lanes[idx];
            let q = lane.events.pop_front().expect("lane checked non-empty");
            lane.bytes -= q.event.len();
            self.count_out(&q);
            self.gone.push(q.seq);
            match q.priority {
                Priority::High => evicted.high += 1,
                _ => evicted.low += 1,
            }
        }
        evicted
    }

    /// Whether any of `lanes` holds an event.
    pub fn has_any(&self, lanes: &[Lane]) -> bool {
        lanes
            .iter()
            .any(|l| !self.lanes[*l as usize].events.is_empty())
    }

    /// Packs one message of at most `max_bytes`: events from `primary` lanes first, in order,
    /// then topped up from `topup` lanes. `None` when the primary lanes are empty.
    ///
    /// The second value counts events dropped because they no longer fit into any message (only
    /// possible after `maxMessageSizeInBytes` was lowered while they waited).
    pub fn take_message(
        &mut self,
        header: &MessageHeader,
        max_bytes: usize,
        primary: &[Lane],
        topup: &[Lane],
    ) -> (Option<Message>, u64) {
        let mut oversize = 0;
        if !self.has_any(primary) {
            return (None, 0);
        }
        let mut parts: Vec<Queued> = Vec::new();
        let mut removed: Vec<Queued> = Vec::new();
        let mut bytes = 0;
        for lane in primary.iter().chain(topup) {
            let q = &mut self.lanes[*lane as usize];
            while let Some(front) = q.events.front() {
                let len = front.event.len();
                if header.message_size(parts.len() + 1, bytes + len) > max_bytes {
                    if parts.is_empty() && header.message_size(1, len) > max_bytes {
                        // Cannot fit even alone: drop it rather than send an oversized message.
                        let dropped = q.events.pop_front().expect("front exists");
                        q.bytes -= dropped.event.len();
                        removed.push(dropped);
                        oversize += 1;
                        continue;
                    }
                    break;
                }
                let item = q.events.pop_front().expect("front exists");
                q.bytes -= len;
                bytes += len;
                parts.push(item);
            }
        }
        for q in removed.iter().chain(&parts) {
            self.count_out(q);
        }
        self.gone.extend(removed.iter().map(|q| q.seq));
        if parts.is_empty() {
            return (None, oversize);
        }
        let priority = if parts.iter().any(|p| p.priority == Priority::High) {
            Priority::High
        } else {
            Priority::Low
        };
        let size = header.message_size(parts.len(), bytes);
        let body = header.build_sized(size, parts.iter().map(|p| &*p.event.bytes));
        debug_assert!(body.len() == size && body.len() <= max_bytes);
        (
            Some(Message {
                priority,
                body,
                events: parts.len(),
                output: Output::Events,
                seqs: parts.iter().map(|p| p.seq).collect(),
            }),
            oversize,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ev(n: usize) -> EncodedEvent {
        EncodedEvent {
            kind: EventKind::ProcessCreate,
            bytes: format!("{{\"x\":\"{}\"}}", "a".repeat(n.saturating_sub(8)))
                .into_bytes()
                .into(),
            truncated: false,
        }
    }

    mod model {
        //! Random pushes, takes, limit changes: every event comes out once, whole and in its
        //! lane's order, or is counted as evicted or oversize; the counters match the contents.
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Push {
                lane: usize,
                high: bool,
                size: usize,
            },
            Take {
                max: usize,
                lanes: usize,
            },
            Limit(usize),
        }

        fn encoded(bytes: Vec<u8>) -> EncodedEvent {
            EncodedEvent {
                kind: crate::event::EventKind::ProcessCreate,
                bytes: bytes.into(),
                truncated: false,
            }
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0usize..4, any::<bool>(), 20usize..400)
                    .prop_map(|(lane, high, size)| Op::Push { lane, high, size }),
                2 => (150usize..3000, 0usize..4).prop_map(|(max, lanes)| Op::Take { max, lanes }),
                1 => (200usize..5000).prop_map(Op::Limit),
            ]
        }

        /// `{"i":N,"l":L,"p":"aaa"}` of `size` bytes or a little more.
        fn event(i: usize, lane: usize, size: usize) -> Vec<u8> {
            let head = format!("{{\"i\":{i},\"l\":{lane},\"p\":\"");
            let pad = size.saturating_sub(head.len() + 2);
            format!("{head}{}\"}}", "a".repeat(pad)).into_bytes()
        }

        proptest! {
            #[test]
            fn nothing_is_lost_duplicated_or_reordered(ops in proptest::collection::vec(op(), 1..200)) {
                let h = MessageHeader::new("1", uuid::Uuid::nil());
                let mut c = Cache::new(5_000);
                let mut pushed = 0usize;
                let mut gone = 0u64;
                let mut seen: Vec<(usize, usize)> = Vec::new();
                let take = |c: &mut Cache, max: usize, primary: &[Lane], topup: &[Lane], seen: &mut Vec<(usize, usize)>| {
                    let (m, oversize) = c.take_message(&h, max, primary, topup);
                    if let Some(m) = &m {
                        prop_assert_eq!(m.seqs.len(), m.events);
                        prop_assert!(m.body.len() <= max);
                        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
                        let events = v["Events"].as_array().unwrap();
                        prop_assert_eq!(events.len(), m.events);
                        for e in events {
                            seen.push((e["l"].as_u64().unwrap() as usize, e["i"].as_u64().unwrap() as usize));
                        }
                        let ids: Vec<u64> = events.iter().map(|e| e["i"].as_u64().unwrap()).collect();
                        prop_assert_eq!(&m.seqs, &ids, "a message names the events it carries");
                    }
                    Ok((m.is_some(), oversize))
                };
                for op in ops {
                    match op {
                        Op::Push { lane, high, size } => {
                            let lane = Lane::ALL[lane];
                            let p = if high { Priority::High } else { Priority::Low };
                            let e = c.push(lane, p, pushed as u64, encoded(event(pushed, lane as usize, size)));
                            gone += e.high + e.low;
                            pushed += 1;
                        }
                        Op::Take { max, lanes } => {
                            let primary = &Lane::ALL[lanes..=lanes];
                            gone += take(&mut c, max, primary, &Lane::ALL, &mut seen)?.1;
                        }
                        Op::Limit(limit) => {
                            let e = c.set_limit(limit);
                            gone += e.high + e.low;
                        }
                    }
                    let (hi, lo) = (c.queued(Priority::High), c.queued(Priority::Low));
                    prop_assert_eq!(hi.0 + lo.0, c.len());
                    prop_assert_eq!(hi.1 + lo.1, c.bytes());
                    prop_assert!(c.bytes() <= c.limit);
                }
                loop {
                    let (more, oversize) = take(&mut c, 1_000_000, &Lane::ALL, &[], &mut seen)?;
                    gone += oversize;
                    if !more {
                        break;
                    }
                }
                prop_assert!(c.is_empty());
                prop_assert_eq!(c.queued(Priority::High), (0, 0));
                prop_assert_eq!(c.queued(Priority::Low), (0, 0));
                prop_assert_eq!(seen.len() as u64 + gone, pushed as u64);
                // Every event that left without a message is reported once, for the spool.
                let mut all: Vec<u64> = c.take_gone();
                prop_assert_eq!(all.len() as u64, gone);
                all.extend(seen.iter().map(|s| s.1 as u64));
                all.sort();
                prop_assert_eq!(all, (0..pushed as u64).collect::<Vec<_>>());
                let mut ids: Vec<usize> = seen.iter().map(|s| s.1).collect();
                ids.sort();
                ids.dedup();
                prop_assert_eq!(ids.len(), seen.len(), "an event came out twice");
                for lane in 0..4 {
                    let order: Vec<usize> = seen.iter().filter(|s| s.0 == lane).map(|s| s.1).collect();
                    prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "lane {lane}: {order:?}");
                }
            }
        }
    }

    #[test]
    fn other_modules_get_a_quarter_of_free_room_and_never_evict() {
        let mut c = Cache::new(1000);
        assert!(c.admit_foreign(Lane::Low, Priority::Low, 1, ev(200)));
        assert!(
            !c.admit_foreign(Lane::Low, Priority::Low, 2, ev(100)),
            "over the quarter"
        );
        assert_eq!(c.foreign_bytes(), 200);
        for i in 0..8 {
            c.push(Lane::Low, Priority::Low, 10 + i, ev(100));
        }
        assert_eq!(c.bytes(), 1000);
        assert!(
            !c.admit_foreign(Lane::High, Priority::High, 3, ev(10)),
            "no free room: refused, nothing evicted"
        );
        assert_eq!(c.len(), 9);
        // Own events evict as ever (the foreign one is the oldest Low).
        let e = c.push(Lane::Low, Priority::Low, 20, ev(100));
        assert_eq!(e, Evicted { high: 0, low: 1 });
        assert_eq!(c.foreign_bytes(), 0);
        assert_eq!(c.take_gone(), vec![1]);
    }

    #[test]
    fn evicts_oldest_low_before_high() {
        let mut c = Cache::new(300);
        c.push(Lane::High, Priority::High, 0, ev(100));
        c.push(Lane::Low, Priority::Low, 0, ev(100));
        c.push(Lane::Low, Priority::Low, 0, ev(100));
        assert_eq!(c.bytes(), 300);
        let e = c.push(Lane::High, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 0, low: 1 });
        let e = c.push(Lane::High, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 0, low: 1 });
        let e = c.push(Lane::High, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 1, low: 0 });
        assert_eq!(c.queued(Priority::High), (3, 300));
        assert_eq!(c.queued(Priority::Low), (0, 0));
    }

    #[test]
    fn alerts_are_evicted_after_high_and_before_operational() {
        let mut c = Cache::new(300);
        c.push(Lane::Operational, Priority::Low, 0, ev(100));
        c.push(Lane::Alert, Priority::High, 0, ev(100));
        c.push(Lane::High, Priority::High, 0, ev(100));
        let e = c.push(Lane::Alert, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 1, low: 0 });
        assert!(!c.has_any(&[Lane::High]), "the High event went first");
        let e = c.push(Lane::Alert, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 1, low: 0 });
        assert!(c.has_any(&[Lane::Operational]));
        assert_eq!(c.queued(Priority::High), (2, 200));
    }

    #[test]
    fn operational_events_go_last() {
        let mut c = Cache::new(200);
        c.push(Lane::Operational, Priority::Low, 0, ev(100));
        c.push(Lane::High, Priority::High, 0, ev(100));
        let e = c.push(Lane::High, Priority::High, 0, ev(100));
        assert_eq!(e, Evicted { high: 1, low: 0 });
        assert!(c.has_any(&[Lane::Operational]));
    }

    #[test]
    fn messages_fill_primary_then_top_up() {
        let h = MessageHeader::new("1", uuid::Uuid::nil());
        let mut c = Cache::new(100_000);
        for _ in 0..3 {
            c.push(Lane::High, Priority::High, 0, ev(1000));
            c.push(Lane::Low, Priority::Low, 0, ev(1000));
        }
        let max = h.message_size(4, 4000);
        let (m, dropped) = c.take_message(&h, max, &[Lane::High], &[Lane::Low]);
        let m = m.unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(m.events, 4);
        assert_eq!(m.priority, Priority::High);
        assert_eq!(m.body.len(), max);
        assert_eq!(c.queued(Priority::Low), (2, 2000));
        let (m, _) = c.take_message(&h, max, &[Lane::High], &[Lane::Low]);
        assert!(
            m.is_none(),
            "no High left: nothing to send on the High timer"
        );
        let (m, _) = c.take_message(&h, max, &[Lane::Low], &[Lane::High]);
        assert_eq!(m.unwrap().priority, Priority::Low);
    }
}
