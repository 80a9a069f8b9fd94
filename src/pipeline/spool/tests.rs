use super::*;

fn body(id: u8, len: usize) -> Vec<u8> {
    vec![id; len]
}

fn ids(s: &Spool) -> Vec<u64> {
    s.pending().map(|e| e.id).collect()
}

fn both(max_bytes: usize) -> Vec<(Spool, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let disk = Spool::open(dir.path().join(FILE_NAME), max_bytes).unwrap();
    vec![(Spool::memory(max_bytes), None), (disk, Some(dir))]
}

#[test]
fn records_survive_a_reopen_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Spool::open(&path, 1 << 20).unwrap();
    assert!(s.is_durable());
    let a = s.append(Priority::High, b"first", 3).unwrap();
    let b = s.append(Priority::Low, b"second", 1).unwrap();
    let c = s.append(Priority::Low, b"", 0).unwrap();
    assert_eq!((a.id, b.id, c.id), (1, 2, 3));
    assert!(a.evicted.is_empty());
    s.remove(b.id).unwrap();
    s.remove(c.id).unwrap();
    assert_eq!(s.remove(c.id).unwrap(), None);
    drop(s);

    let mut s = Spool::open(&path, 1 << 20).unwrap();
    assert_eq!(s.set_aside(), None);
    assert_eq!(
        s.pending().collect::<Vec<_>>(),
        vec![Entry {
            id: 1,
            priority: Priority::High,
            output: Output::Events,
            events: 3,
            len: 5
        }]
    );
    assert_eq!(&*s.read(1).unwrap(), b"first");
    assert!(matches!(s.read(2), Err(Error::Corrupt { id: 2 })));
    assert_eq!(s.bytes(), 5);
    // Removing everything does not reset the ids.
    s.remove(1).unwrap();
    drop(s);
    let mut s = Spool::open(&path, 1 << 20).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.append(Priority::Low, b"x", 1).unwrap().id, 4);
}

#[test]
fn eviction_takes_the_oldest_low_messages_first_then_the_oldest_high() {
    for (mut s, _dir) in both(40) {
        s.append(Priority::High, &body(1, 10), 1).unwrap();
        s.append(Priority::Low, &body(2, 10), 2).unwrap();
        s.append(Priority::High, &body(3, 10), 3).unwrap();
        s.append(Priority::Low, &body(4, 10), 4).unwrap();
        assert_eq!(s.bytes(), 40);
        // 15 bytes over: the two Low messages go, oldest first.
        let a = s.append(Priority::High, &body(5, 15), 5).unwrap();
        assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(a.evicted.iter().map(|e| e.events).sum::<usize>(), 6);
        assert_eq!(ids(&s), [1, 3, 5]);
        // No Low left: the oldest High goes.
        let a = s.append(Priority::Low, &body(6, 10), 6).unwrap();
        assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
        assert_eq!(ids(&s), [3, 5, 6]);
        assert_eq!(s.bytes(), 35);
        assert_eq!(&*s.read(5).unwrap(), &body(5, 15)[..]);
        assert!(s.read(1).is_err());
    }
}

#[test]
fn messages_in_flight_are_never_evicted_and_a_full_spool_refuses() {
    for (mut s, _dir) in both(30) {
        for n in 1..=3 {
            s.append(Priority::Low, &body(n, 10), 1).unwrap();
        }
        s.set_in_flight(1, true);
        s.set_in_flight(2, true);
        // Only message 3 may go.
        let a = s.append(Priority::Low, &body(4, 10), 1).unwrap();
        assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
        s.set_in_flight(4, true);
        // Everything is in flight: the new message is refused and nothing is evicted.
        assert!(matches!(
            s.append(Priority::High, &body(5, 10), 1),
            Err(Error::Full { len: 10 })
        ));
        assert_eq!(ids(&s), [1, 2, 4]);
        // A failed delivery makes them evictable again.
        s.retry_from(2);
        assert!(s.is_in_flight(1) && !s.is_in_flight(2) && !s.is_in_flight(4));
        let a = s.append(Priority::High, &body(6, 10), 1).unwrap();
        assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        assert_eq!(ids(&s), [1, 4, a.id]);
    }
}

#[test]
fn a_message_larger_than_the_bound_is_stored_alone() {
    for (mut s, _dir) in both(10) {
        s.append(Priority::High, &body(1, 5), 1).unwrap();
        let a = s.append(Priority::Low, &body(2, 25), 1).unwrap();
        assert_eq!(a.evicted.len(), 1);
        assert_eq!(ids(&s), [a.id]);
        s.set_in_flight(a.id, true);
        assert!(matches!(
            s.append(Priority::Low, &body(3, 1), 1),
            Err(Error::Full { .. })
        ));
    }
}

#[test]
fn a_file_that_is_not_a_database_is_set_aside_and_the_spool_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, b"this is not a redb file, just some text").unwrap();
    let mut s = Spool::open(&path, 1000).unwrap();
    assert!(s.is_empty());
    let aside = s.set_aside().unwrap().to_path_buf();
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("spool.redb.corrupt-")
    );
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        b"this is not a redb file, just some text"
    );
    assert_eq!(s.append(Priority::Low, b"x", 1).unwrap().id, 1);
}

#[test]
fn only_the_newest_set_aside_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    for _ in 0..5 {
        std::fs::write(&path, b"garbage").unwrap();
        let s = Spool::open(&path, 1000).unwrap();
        assert!(s.set_aside().is_some());
    }
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .count();
    assert_eq!(aside, KEEP_CORRUPT + 1);
}

#[test]
fn records_in_an_unknown_format_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Spool::open(&path, 1000).unwrap();
    s.append(Priority::Low, b"good", 2).unwrap();
    drop(s);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(RECORDS).unwrap();
            t.insert(7, &b"\x09junk"[..]).unwrap();
            t.insert(8, &b"\x01"[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let mut s = Spool::open(&path, 1000).unwrap();
    assert_eq!(s.repaired(), 2);
    assert_eq!(ids(&s), [1]);
    // Ids never go back below what was seen on disk.
    assert_eq!(s.append(Priority::Low, b"y", 1).unwrap().id, 9);
}

#[test]
fn a_spool_held_by_another_handle_is_an_error_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let _first = Spool::open(&path, 1000).unwrap();
    let err = Spool::open(&path, 1000).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(path.exists());
}

/// (output, priority, events, body) of a decoded record.
fn fields(raw: &[u8]) -> Option<(Output, Priority, usize, &[u8])> {
    decode(raw).map(|d| (d.output, d.priority, d.events, d.body))
}

#[test]
fn decode_rejects_short_and_unknown_records() {
    assert_eq!(fields(b""), None);
    assert_eq!(fields(&[FORMAT, 0, 1, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(fields(&[FORMAT, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(fields(&[FORMAT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]), None);
    assert_eq!(fields(&[FORMAT_1, 0, 1, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(fields(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    let rec = encode(Output::Alerts, Priority::High, 7, b"abc");
    assert_eq!(
        fields(&rec),
        Some((Output::Alerts, Priority::High, 7, &b"abc"[..]))
    );
}

#[test]
fn records_of_the_first_format_are_read_as_events() {
    let mut v1 = vec![FORMAT_1, 1];
    v1.extend_from_slice(&4u64.to_le_bytes());
    v1.extend_from_slice(b"{}");
    assert_eq!(
        fields(&v1),
        Some((Output::Events, Priority::Low, 4, &b"{}"[..]))
    );
}

#[test]
fn the_output_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut s = Spool::open(&path, 1 << 20).unwrap();
    s.append_to(Output::Alerts, Priority::High, b"alert", 1, &[])
        .unwrap();
    s.append(Priority::Low, b"events", 2).unwrap();
    drop(s);
    let s = Spool::open(&path, 1 << 20).unwrap();
    let outputs: Vec<Output> = s.pending().map(|e| e.output).collect();
    assert_eq!(outputs, vec![Output::Alerts, Output::Events]);
}
