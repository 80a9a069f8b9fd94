use super::*;
use crate::container::cache::EDGE_OWNER_LABEL;
use serde_json::{Value, json};

/// An event as the engine sends it on /events.
fn msg(v: Value) -> EventMessage {
    serde_json::from_value(v).expect("an engine event")
}

const ID: &str = "3f1d9c2e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

fn container(action: &str, attrs: Value, nano: i64) -> EventMessage {
    msg(json!({
        "Type": "container", "Action": action, "scope": "local",
        "Actor": {"ID": ID, "Attributes": attrs},
        "time": nano / 1_000_000_000, "timeNano": nano,
    }))
}

#[test]
fn lifecycle_events_carry_container_fields_and_fill_the_cache() {
    let (cache, _q) = ContainerCache::new();
    let attrs = json!({"name": "edgeHub", "image": "mcr/edgehub:1.4",
                       EDGE_OWNER_LABEL: "Microsoft.Azure.Devices.Edge.Agent"});
    let create = to_record(&container("create", attrs.clone(), 1), &cache).unwrap();
    assert_eq!(create.action, "create");
    assert_eq!(create.object_type, ContainerObject::Container);
    assert_eq!(create.container_id.as_deref(), Some(ID));
    assert_eq!(create.container_name.as_deref(), Some("edgeHub"));
    assert_eq!(create.image.as_deref(), Some("mcr/edgehub:1.4"));
    assert_eq!(create.module_name.as_deref(), Some("edgeHub"));
    // The cache knows the container before its first process runs.
    assert_eq!(cache.get(ID).unwrap().name.as_deref(), Some("edgeHub"));

    let die = to_record(
        &container("die", json!({"name": "edgeHub", "exitCode": "137"}), 2),
        &cache,
    )
    .unwrap();
    assert_eq!(die.exit_code, Some(137));
    assert_eq!(
        die.image.as_deref(),
        Some("mcr/edgehub:1.4"),
        "from the cache"
    );

    let kill = to_record(&container("kill", json!({"signal": "9"}), 3), &cache).unwrap();
    assert_eq!(kill.signal.as_deref(), Some("9"));
    assert_eq!(kill.container_name.as_deref(), Some("edgeHub"));

    let exec = to_record(
        &container(
            "exec_start: /bin/sh -c cat /etc/shadow",
            json!({"execID": "e1"}),
            4,
        ),
        &cache,
    )
    .unwrap();
    assert_eq!(exec.action, "exec_start");
    assert_eq!(exec.command.as_deref(), Some("/bin/sh -c cat /etc/shadow"));
    assert_eq!(exec.extra_details["ExecId"], "e1");

    // Once inspected, the container's health-check execs are recognised and left out.
    cache.insert(
        ID,
        ContainerMeta {
            health_cmd: Some("/bin/sh -c true".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        to_record(
            &container("exec_start: /bin/sh -c true", json!({}), 4),
            &cache
        ),
        None
    );
    assert!(
        to_record(
            &container("exec_start: /bin/sh -c id", json!({}), 4),
            &cache
        )
        .is_some()
    );

    assert!(to_record(&container("destroy", json!({}), 5), &cache).is_some());
    assert_eq!(cache.get(ID), None, "destroyed containers are forgotten");
}

#[test]
fn noise_and_garbage_are_skipped_without_panicking() {
    let (cache, _q) = ContainerCache::new();
    for m in [
        container("health_status: healthy", json!({}), 1),
        container("exec_die", json!({}), 1),
        container("attach", json!({}), 1),
        msg(json!({"Type": "container", "Action": "start"})),
        msg(json!({"Type": "container", "Actor": {"ID": ID}})),
        msg(json!({"Type": "daemon", "Action": "reload", "Actor": {"ID": "x"}})),
        msg(json!({"Type": "network", "Action": "create", "Actor": {"ID": "n"}})),
        msg(json!({})),
    ] {
        assert_eq!(to_record(&m, &cache), None, "{m:?}");
    }
    // Odd values are kept as far as they make sense.
    let odd = to_record(
        &container("die", json!({"exitCode": "not a number", "name": ""}), 1),
        &cache,
    )
    .unwrap();
    assert_eq!(odd.exit_code, None);
    assert_eq!(odd.container_name, None);
}

#[test]
fn image_network_and_volume_events() {
    let (cache, _q) = ContainerCache::new();
    cache.insert(
        ID,
        ContainerMeta {
            name: Some("web".into()),
            image: Some("nginx:1".into()),
            image_id: Some("sha256:aa".into()),
            module: None,
            health_cmd: None,
        },
    );
    let pull = to_record(
        &msg(json!({"Type": "image", "Action": "pull",
                    "Actor": {"ID": "busybox:latest", "Attributes": {"name": "busybox"}}})),
        &cache,
    )
    .unwrap();
    assert_eq!(pull.object_type, ContainerObject::Image);
    assert_eq!(pull.image.as_deref(), Some("busybox"));
    let delete = to_record(
        &msg(json!({"Type": "image", "Action": "delete", "Actor": {"ID": "sha256:bb"}})),
        &cache,
    )
    .unwrap();
    assert_eq!(delete.image_digest.as_deref(), Some("sha256:bb"));

    let connect = to_record(
        &msg(json!({"Type": "network", "Action": "connect",
                    "Actor": {"ID": "n1", "Attributes": {"container": ID, "name": "bridge", "type": "bridge"}}})),
        &cache,
    )
    .unwrap();
    assert_eq!(connect.object_type, ContainerObject::Network);
    assert_eq!(connect.container_name.as_deref(), Some("web"));
    assert_eq!(connect.image_digest.as_deref(), Some("sha256:aa"));
    assert_eq!(connect.extra_details["NetworkName"], "bridge");

    let mount = to_record(
        &msg(json!({"Type": "volume", "Action": "mount",
                    "Actor": {"ID": "data", "Attributes": {"container": ID, "destination": "/data", "read/write": "true"}}})),
        &cache,
    )
    .unwrap();
    assert_eq!(mount.object_type, ContainerObject::Volume);
    assert_eq!(mount.extra_details["Destination"], "/data");
    assert_eq!(mount.extra_details["VolumeName"], "data");
    assert_eq!(mount.container_id.as_deref(), Some(ID));
}

/// An engine event a second for a day: what is remembered stays within the replay window.
#[test]
fn resume_remembers_the_replay_window_not_every_event() {
    let mut r = Resume::default();
    let t0 = 1_700_000_000_000_000_000i64;
    let mut most = 0;
    for i in 0..86_400i64 {
        assert!(r.is_new(&container("start", json!({}), t0 + i * 1_000_000_000)));
        most = most.max(r.seen.len());
    }
    assert!(most <= 3, "{most} events remembered");
    assert_eq!(r.seen.len(), r.order.len());
    // A replay of the window is still recognised.
    let last = t0 + 86_399 * 1_000_000_000;
    assert!(!r.is_new(&container("start", json!({}), last)));
    assert!(!r.is_new(&container("start", json!({}), last - 1_000_000_000)));
}

#[test]
fn resume_skips_what_was_sent_and_keeps_what_was_not() {
    let mut r = Resume::default();
    assert_eq!(r.since(), None);
    let t = 1_700_000_000_123_456_789;
    let a = container("create", json!({}), t);
    let b = container("start", json!({}), t);
    let c = container("die", json!({}), t + 5);
    assert!(r.is_new(&a));
    assert!(r.is_new(&b), "same time, other action");
    // Resumes a little before the newest event, for events published out of time order.
    assert_eq!(r.since().as_deref(), Some("1699999998.123456789"));
    // A live event stamped earlier than the newest one is still new.
    let late = container("kill", json!({}), t - 1_000);
    assert!(r.is_new(&late));
    assert_eq!(r.since().as_deref(), Some("1699999998.123456789"));
    // Replay after a reconnect: what was sent is dropped, what was not is kept.
    assert!(!r.is_new(&a));
    assert!(!r.is_new(&b));
    assert!(!r.is_new(&late));
    assert!(r.is_new(&c));
    assert!(!r.is_new(&c));
    // The same action on the same container at another time is another event.
    assert!(r.is_new(&container("create", json!({}), t + 7)));
    // Only `time` (an old engine): seconds are enough.
    let old = msg(
        json!({"Type": "container", "Action": "start", "Actor": {"ID": "x"}, "time": 1_800_000_000}),
    );
    assert!(r.is_new(&old));
    assert!(!r.is_new(&old));
    // No time at all: cannot be matched, so it is never dropped.
    let timeless = msg(json!({"Type": "container", "Action": "start", "Actor": {"ID": "x"}}));
    assert!(r.is_new(&timeless));
    assert!(r.is_new(&timeless));
    // Long before the newest event (the old engine's, above): forgotten, a replay cannot
    // bring it back.
    assert!(r.is_new(&a));
    // Within the replay window memory is bounded too: the oldest keys are forgotten first.
    let base = 1_800_000_000_000_000_000i64;
    for i in 0..RESUME_MEMORY as i64 {
        assert!(r.is_new(&container("start", json!({}), base + 1 + i)));
    }
    assert_eq!(r.seen.len(), RESUME_MEMORY);
    let first = container("start", json!({}), base + 1);
    assert!(!r.is_new(&first));
    assert!(r.is_new(&container(
        "start",
        json!({}),
        base + 1 + RESUME_MEMORY as i64
    )));
    assert!(
        r.is_new(&first),
        "forgotten after {RESUME_MEMORY} newer events"
    );
}

#[test]
fn backoff_doubles_to_a_cap_and_resets() {
    let mut b = Backoff(MIN_BACKOFF);
    let first = b.next();
    assert!(first >= MIN_BACKOFF && first <= MIN_BACKOFF.mul_f64(1.2));
    for _ in 0..20 {
        assert!(b.next() <= MAX_BACKOFF.mul_f64(1.2));
    }
    assert_eq!(b.0, MAX_BACKOFF);
    b.reset();
    assert_eq!(b.0, MIN_BACKOFF);
}
