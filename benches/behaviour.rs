//! The learned behaviour baseline (issue 17, item 5): heap memory at 10,000 learned items, the
//! size of its file, and the cost of judging an event against it.
//!
//! ```sh
//! cargo bench --bench behaviour
//! cargo bench --bench behaviour -- --items 20000 --runs 5
//! ```
//! Memory is glibc's count of bytes in use (`mallinfo2().uordblks`) before and after learning,
//! so it is the baseline's own heap, not RSS. Items are a realistic mix: 40 % programs (paths of
//! 20–40 bytes), 30 % parent → child pairs, 20 % destinations, 10 % listening ports, over the
//! host and five container images.

use edgeguard::detect::behaviour::{Behaviour, Deviation};
use edgeguard::event::{ConnectionCreate, Direction, Event, ExtraDetails, Payload, ProcessCreate};
use std::time::{Duration, Instant};

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

fn exec(pid: u32, ppid: u32, exe: String, image: Option<String>) -> Event {
    let mut extra = ExtraDetails::new();
    if let Some(i) = image {
        extra.insert("ContainerId".into(), "0123456789ab".into());
        extra.insert("ContainerImage".into(), i);
    }
    Event::new(Payload::ProcessCreate(vec![ProcessCreate {
        executable: exe.clone(),
        command_line: exe,
        process_id: pid,
        parent_process_id: ppid,
        user_id: "0".into(),
        user_name: None,
        extra_details: extra,
    }]))
}

fn connect(n: u32) -> Event {
    Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
        direction: Direction::Out,
        local_address: None,
        local_port: None,
        remote_address: format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255)
            .parse()
            .unwrap(),
        remote_port: 8883,
        protocol: "tcp".into(),
        process_id: 1,
        executable: "/usr/bin/agent".into(),
        command_line: None,
        user_id: None,
        extra_details: ExtraDetails::new(),
    }]))
}

/// Events that together teach about `items` items.
fn workload(items: u32) -> Vec<Event> {
    let mut events = Vec::new();
    let image = |i: u32| {
        (!i.is_multiple_of(6)).then(|| format!("registry.example/module{}:1.{}", i % 6, i % 3))
    };
    let mut n = 0;
    let mut pid = 100;
    while n < items {
        // An exec whose parent was seen: program + pair (2 items).
        let parent = format!("/usr/lib/vendor/service-{:05}/bin/daemon", n);
        events.push(exec(pid, 1, parent, image(n)));
        events.push(exec(
            pid + 1,
            pid,
            format!("/usr/bin/tool-{n:05}"),
            image(n),
        ));
        pid += 2;
        n += 3; // parent exec, child exec, the pair (the parent's parent, pid 1, is unknown)
        events.push(connect(n));
        n += 1;
    }
    events
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if !argv.iter().any(|a| a == "--bench") {
        println!("behaviour: run it with `cargo bench --bench behaviour`");
        return;
    }
    let mut items = 10_000u32;
    let mut runs = 5usize;
    let mut it = argv.iter().filter(|a| *a != "--bench");
    while let Some(a) = it.next() {
        match a.as_str() {
            "--items" => items = it.next().and_then(|v| v.parse().ok()).expect("--items N"),
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let events = workload(items);
    let day = Duration::from_secs(86_400);
    let mut learn_ns = Vec::new();
    let mut judge_ns = Vec::new();
    let mut heap = Vec::new();
    let mut file = 0;
    let mut learned = 0;
    for _ in 0..runs {
        let before = heap_in_use();
        let mut b = Behaviour::new(day, 0);
        let mut out: Vec<Deviation> = Vec::new();
        let t = Instant::now();
        for e in &events {
            b.observe(e, 1, &mut out);
        }
        learn_ns.push(t.elapsed().as_nanos() as f64 / events.len() as f64);
        heap.push(heap_in_use().saturating_sub(before));
        learned = b.len();
        // Watching, every item known: the common case after learning.
        let t = Instant::now();
        for e in &events {
            b.observe(e, 86_401, &mut out);
        }
        judge_ns.push(t.elapsed().as_nanos() as f64 / events.len() as f64);
        assert!(
            out.is_empty(),
            "known behaviour raised {} anomalies",
            out.len()
        );
        file = b.to_json().len();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut heap_f: Vec<f64> = heap.iter().map(|h| *h as f64).collect();
    println!(
        "items learned {learned} (events {}), heap {:.0} bytes median of {runs} ({:.1} bytes/item), file {file} bytes",
        events.len(),
        median(&mut heap_f),
        median(&mut heap_f) / learned as f64
    );
    println!(
        "per event: learning {:.0} ns, judging known behaviour {:.0} ns (medians of {runs})",
        median(&mut learn_ns),
        median(&mut judge_ns)
    );
}
