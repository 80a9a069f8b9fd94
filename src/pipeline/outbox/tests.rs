use super::*;

fn message(n: u8) -> Message {
    Message {
        priority: Priority::Low,
        body: vec![n; 10],
        events: 1,
        output: Output::Events,
        seqs: Vec::new(),
    }
}

fn sized(n: u8, priority: Priority, events: usize) -> Message {
    Message {
        priority,
        body: vec![n; 10],
        events,
        output: Output::Events,
        seqs: Vec::new(),
    }
}

struct Harness {
    input: mpsc::Sender<Message>,
    records: mpsc::Receiver<Record>,
    deliveries: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(cfg: OutboxConfig) -> Harness {
    let metrics = Arc::new(Metrics::for_tests());
    let (input, in_rx) = mpsc::channel(1);
    let (rec_tx, records) = mpsc::channel(cfg.window);
    let (deliveries, del_rx) = mpsc::channel(cfg.window + 1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        in_rx,
        rec_tx,
        del_rx,
        metrics.clone(),
        cfg,
        shutdown.clone(),
    ));
    Harness {
        input,
        records,
        deliveries,
        metrics,
        shutdown,
        task,
    }
}

fn on_disk(dir: &tempfile::TempDir, cfg: OutboxConfig) -> OutboxConfig {
    OutboxConfig {
        spool: Some(dir.path().join(spool::FILE_NAME)),
        ..cfg
    }
}

/// Waits (in paused time) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(start_paused = true)]
async fn a_failed_message_is_resent_in_order_until_acknowledged() {
    let mut h = start(OutboxConfig::default());
    h.input.send(message(1)).await.unwrap();
    h.input.send(message(2)).await.unwrap();
    let r1 = h.records.recv().await.unwrap();
    assert_eq!(r1.body[0], 1);
    h.deliveries.send(Delivery::Retry(r1.id)).await.unwrap();
    // The same record comes again after the backoff, before record 2.
    let again = h.records.recv().await.unwrap();
    assert_eq!(again.id, r1.id);
    h.deliveries.send(Delivery::Ack(again.id)).await.unwrap();
    let r2 = h.records.recv().await.unwrap();
    assert_eq!(r2.body[0], 2);
    h.deliveries.send(Delivery::Ack(r2.id)).await.unwrap();
    drop(h.input);
    h.task.await.unwrap();
    assert_eq!(h.metrics.message_totals(), (2, 2, 1));
    assert_eq!(h.metrics.dropped_total("outbox", DropReason::Shutdown), 0);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_messages_are_counted_as_lost_after_the_grace_period() {
    let mut h = start(OutboxConfig {
        grace: Duration::from_secs(3),
        ..OutboxConfig::default()
    });
    h.input.send(message(1)).await.unwrap();
    let r = h.records.recv().await.unwrap();
    h.shutdown.cancel();
    // The sink keeps failing.
    h.deliveries.send(Delivery::Retry(r.id)).await.unwrap();
    let started = Instant::now();
    while let Some(r) = h.records.recv().await {
        let _ = h.deliveries.send(Delivery::Retry(r.id)).await;
    }
    h.task.await.unwrap();
    assert!(started.elapsed() <= Duration::from_secs(4));
    assert_eq!(h.metrics.dropped_total("outbox", DropReason::Shutdown), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_resends_everything_in_flight_once_in_order() {
    let mut h = start(OutboxConfig {
        window: 3,
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        ..OutboxConfig::default()
    });
    for n in 1..=3 {
        h.input.send(message(n)).await.unwrap();
    }
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(h.records.recv().await.unwrap().id);
    }
    let started = Instant::now();
    for id in &sent {
        h.deliveries.send(Delivery::Retry(*id)).await.unwrap();
    }
    let mut again = Vec::new();
    for _ in 0..3 {
        let r = h.records.recv().await.unwrap();
        again.push(r.id);
        h.deliveries.send(Delivery::Ack(r.id)).await.unwrap();
    }
    assert_eq!(again, sent);
    // One backoff for the whole connection, not one per record.
    assert!(started.elapsed() < Duration::from_millis(1500));
    drop(h.input);
    h.task.await.unwrap();
    assert_eq!(h.metrics.message_totals(), (3, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn messages_left_in_the_spool_are_sent_first_in_order_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = on_disk(
        &dir,
        OutboxConfig {
            grace: Duration::from_secs(1),
            ..OutboxConfig::default()
        },
    );
    // First run: three messages, the sink never acknowledges.
    let mut h = start(cfg.clone());
    for n in 1..=3 {
        h.input.send(message(n)).await.unwrap();
    }
    let r1 = h.records.recv().await.unwrap();
    until(|| h.metrics.value("edgeguard_spool_messages", &[]) == Some(3.0)).await;
    h.shutdown.cancel();
    h.task.await.unwrap();
    // Kept, not lost.
    assert_eq!(h.metrics.dropped_total("outbox", DropReason::Shutdown), 0);

    // Second run: the old messages go first, in order, before a new one.
    let mut h = start(cfg.clone());
    h.input.send(message(4)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = h.records.recv().await.unwrap();
        got.push((r.id, r.body[0]));
        h.deliveries.send(Delivery::Ack(r.id)).await.unwrap();
    }
    assert_eq!(
        got,
        [(r1.id, 1), (r1.id + 1, 2), (r1.id + 2, 3), (r1.id + 3, 4)]
    );
    drop(h.input);
    h.task.await.unwrap();
    assert_eq!(h.metrics.message_totals().0, 4);
    let s = Spool::open(dir.path().join(spool::FILE_NAME), 1000).unwrap();
    assert!(s.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_twin_change_of_the_cache_size_rebounds_the_spool() {
    let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
    let mut h = start(OutboxConfig {
        max_bytes: 1000,
        config: Some(config_rx),
        ..OutboxConfig::default()
    });
    // 1 is in flight (never evicted); 2..=5 wait: 50 bytes, well under 1000.
    h.input.send(message(1)).await.unwrap();
    let r1 = h.records.recv().await.unwrap();
    for n in 2..=5 {
        h.input.send(message(n)).await.unwrap();
    }
    until(|| h.metrics.value("edgeguard_spool_messages", &[]) == Some(5.0)).await;
    assert_eq!(h.metrics.dropped_total("spool", DropReason::SpoolFull), 0);
    // The twin lowers the bound to 30 bytes: the next append evicts the oldest down to it.
    let smaller = Config {
        max_local_cache_size_in_bytes: 30,
        ..Config::default()
    };
    config_tx.send(Arc::new(smaller)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    h.input.send(message(6)).await.unwrap();
    until(|| h.metrics.dropped_total("spool", DropReason::SpoolFull) == 3).await;
    assert_eq!(h.metrics.spool_dropped_totals(), [0, 3]);
    let mut got = vec![r1.body[0]];
    h.deliveries.send(Delivery::Ack(r1.id)).await.unwrap();
    drop(h.input);
    while let Some(r) = h.records.recv().await {
        got.push(r.body[0]);
        h.deliveries.send(Delivery::Ack(r.id)).await.unwrap();
    }
    h.task.await.unwrap();
    assert_eq!(got, [1, 5, 6]);
}

#[tokio::test(start_paused = true)]
async fn a_full_spool_evicts_the_oldest_low_messages_first_and_counts_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(on_disk(
        &dir,
        OutboxConfig {
            max_bytes: 30,
            ..OutboxConfig::default()
        },
    ));
    // 1 goes to the sink at once (in flight, protected); the rest wait in the spool.
    h.input.send(sized(1, Priority::High, 1)).await.unwrap();
    let r1 = h.records.recv().await.unwrap();
    h.input.send(sized(2, Priority::Low, 2)).await.unwrap();
    h.input.send(sized(3, Priority::High, 3)).await.unwrap();
    // 40 bytes: the oldest Low (2) goes.
    h.input.send(sized(4, Priority::Low, 4)).await.unwrap();
    // Again: now 4 is the oldest Low.
    h.input.send(sized(5, Priority::Low, 5)).await.unwrap();
    until(|| h.metrics.dropped_total("spool", DropReason::SpoolFull) == 6).await;
    // 6 (High) pushes out the last Low (5); then 7 finds only High messages: the oldest
    // not in flight (3) goes, never 1.
    h.input.send(sized(6, Priority::High, 6)).await.unwrap();
    h.input.send(sized(7, Priority::High, 7)).await.unwrap();
    until(|| h.metrics.dropped_total("spool", DropReason::SpoolFull) == 14).await;

    let mut got = vec![r1.body[0]];
    h.deliveries.send(Delivery::Ack(r1.id)).await.unwrap();
    drop(h.input);
    while let Some(r) = h.records.recv().await {
        got.push(r.body[0]);
        h.deliveries.send(Delivery::Ack(r.id)).await.unwrap();
    }
    h.task.await.unwrap();
    assert_eq!(got, [1, 6, 7]);
    assert_eq!(h.metrics.message_totals().0, 3);
}

#[tokio::test(start_paused = true)]
async fn a_spool_full_of_messages_in_flight_drops_the_new_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = start(on_disk(
        &dir,
        OutboxConfig {
            max_bytes: 20,
            window: 2,
            ..OutboxConfig::default()
        },
    ));
    h.input.send(message(1)).await.unwrap();
    h.input.send(message(2)).await.unwrap();
    let r1 = h.records.recv().await.unwrap();
    let r2 = h.records.recv().await.unwrap();
    // Both are in flight: nothing may be evicted for 3.
    h.input.send(sized(3, Priority::High, 7)).await.unwrap();
    until(|| h.metrics.dropped_total("spool", DropReason::SpoolFull) == 7).await;
    // An acknowledgement makes room again.
    h.deliveries.send(Delivery::Ack(r1.id)).await.unwrap();
    until(|| h.metrics.value("edgeguard_spool_messages", &[]) == Some(1.0)).await;
    h.input.send(message(4)).await.unwrap();
    let r4 = h.records.recv().await.unwrap();
    assert_eq!((r2.body[0], r4.body[0]), (2, 4));
    // The refused message took no id.
    assert_eq!(r4.id, r2.id + 1);
    h.deliveries.send(Delivery::Ack(r2.id)).await.unwrap();
    h.deliveries.send(Delivery::Ack(r4.id)).await.unwrap();
    drop(h.input);
    h.task.await.unwrap();
    assert_eq!(h.metrics.dropped_total("spool", DropReason::SpoolFull), 7);
}

#[tokio::test]
async fn a_corrupt_spool_is_counted_and_an_unusable_one_falls_back_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::for_tests();
    let path = dir.path().join(spool::FILE_NAME);
    std::fs::write(&path, b"garbage").unwrap();
    let cfg = OutboxConfig {
        spool: Some(path),
        ..OutboxConfig::default()
    };
    let s = open_spool(&cfg, &metrics).await;
    assert!(s.is_durable() && s.set_aside().is_some());
    let corrupt = [("component", "spool"), ("error_type", "corrupt")];
    assert_eq!(metrics.value("edgeguard_errors_total", &corrupt), Some(1.0));
    // The state directory is a file: no spool there, but the outbox still runs.
    let cfg = OutboxConfig {
        spool: Some(dir.path().join(spool::FILE_NAME).join("x")),
        ..OutboxConfig::default()
    };
    let s = open_spool(&cfg, &metrics).await;
    assert!(!s.is_durable());
    let open = [("component", "spool"), ("error_type", "open")];
    assert_eq!(metrics.value("edgeguard_errors_total", &open), Some(1.0));
}
