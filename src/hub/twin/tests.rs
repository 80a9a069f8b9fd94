use super::*;
use crate::event::{ConfigErrorType, EventKind, Priority};
use serde_json::json;
use std::time::Duration;

fn twin() -> Twin {
    Twin::new(Config::default(), "2026-01-01T00:00:00.000Z".into())
}

fn full(desired: Value) -> Vec<u8> {
    json!({"desired": desired, "reported": {"$version": 1}})
        .to_string()
        .into_bytes()
}

fn bytes(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn a_full_twin_sets_config_and_reports() {
    let mut t = twin();
    let u = t
        .on_full(&full(json!({
            "$version": 4,
            CONFIG_OBJECT: {
                "highPriorityMessageFrequency": {"value": "PT1M"},
                "eventPriorityLogin": "Off",
                "maxMessageSizeInBytes": 10000,
                "bogusKey": 1,
            },
            "otherModuleSetting": true,
        })))
        .unwrap();
    let config = u.config.clone().unwrap();
    assert_eq!(
        config.high_priority_message_frequency,
        Duration::from_secs(60)
    );
    assert_eq!(config.priority(EventKind::Login), Priority::Off);
    assert_eq!(config.max_message_size_in_bytes, 204_800);
    assert_eq!(u.version, Some(4));
    let keys: Vec<&str> = u.new_rejections.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["bogusKey", "maxMessageSizeInBytes"]);
    assert_eq!(u.new_rejections[1].error_type, ConfigErrorType::NotOptimal);
    let reported = u.reported.unwrap();
    assert_eq!(reported[CONFIG_OBJECT]["desiredVersion"], 4);
    assert_eq!(
        reported[CONFIG_OBJECT]["highPriorityMessageFrequency"]["value"],
        "PT1M"
    );
    assert_eq!(
        reported[CONFIG_OBJECT]["rejected"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(reported[AGENT_OBJECT]["agentVersion"], AGENT_VERSION);
    assert_eq!(
        reported[AGENT_OBJECT]["startTime"],
        "2026-01-01T00:00:00.000Z"
    );
    assert_eq!(t.version(), Some(4));

    // The same twin again (a reconnect): nothing new to apply, emit, or report once the
    // twin says what we reported.
    t.reported_acknowledged(&reported);
    // The hub stores the merge patch: `null` values are not kept.
    let mut stored = json!({});
    merge(&mut stored, &reported);
    let u = t
        .on_full(
            &json!({
                "desired": {"$version": 4, CONFIG_OBJECT: {
                    "highPriorityMessageFrequency": {"value": "PT1M"},
                    "eventPriorityLogin": "Off",
                    "maxMessageSizeInBytes": 10000,
                    "bogusKey": 1,
                }},
                "reported": stored,
            })
            .to_string()
            .into_bytes(),
        )
        .unwrap();
    assert_eq!(u, Update::default());
}

#[test]
fn absent_object_means_defaults() {
    let mut t = Twin::new(
        Config {
            snapshot_frequency: Duration::from_secs(5),
            ..Config::default()
        },
        "t".into(),
    );
    let u = t.on_full(&full(json!({"$version": 1}))).unwrap();
    assert_eq!(u.config, Some(Config::default()));
    assert!(u.new_rejections.is_empty());
    assert!(u.reported.is_some());
    // A null object too.
    let mut t = twin();
    let u = t
        .on_full(&full(json!({"$version": 2, CONFIG_OBJECT: null})))
        .unwrap();
    assert_eq!(u.config, None);
    assert!(u.new_rejections.is_empty());
}

#[test]
fn patches_apply_in_order_and_gaps_refetch() {
    let mut t = twin();
    t.on_full(&full(
        json!({"$version": 3, CONFIG_OBJECT: {"snapshotFrequency": "PT1H"}}),
    ))
    .unwrap();
    // Next version: applies only the key it names.
    let u = t.on_patch(
        Some(4),
        &bytes(json!({"$version": 4, CONFIG_OBJECT: {"lowPriorityMessageFrequency": "PT2H"}})),
    );
    let c = u.config.unwrap();
    assert_eq!(c.low_priority_message_frequency, Duration::from_secs(7200));
    assert_eq!(c.snapshot_frequency, Duration::from_secs(3600));
    assert_eq!(u.version, Some(4));
    assert_eq!(u.reported.unwrap()[CONFIG_OBJECT]["desiredVersion"], 4);
    // An old or repeated patch is ignored.
    assert_eq!(
        t.on_patch(
            Some(4),
            &bytes(json!({"$version": 4, CONFIG_OBJECT: {"snapshotFrequency": "PT9H"}}))
        ),
        Update::default()
    );
    // A gap: fetch the whole twin, apply nothing.
    let u = t.on_patch(
        Some(7),
        &bytes(json!({"$version": 7, CONFIG_OBJECT: {"snapshotFrequency": "PT9H"}})),
    );
    assert!(u.get_again);
    assert_eq!(u.config, None);
    assert_eq!(t.config().snapshot_frequency, Duration::from_secs(3600));
    // A patch without our object moves the version only.
    let u = t.on_patch(Some(5), &bytes(json!({"$version": 5, "other": 1})));
    assert_eq!(u.config, None);
    assert_eq!(u.version, Some(5));
    // Deleting the object restores every default.
    let u = t.on_patch(None, &bytes(json!({"$version": 6, CONFIG_OBJECT: null})));
    assert_eq!(u.config, Some(Config::default()));
}

#[test]
fn rejections_follow_the_keys_they_name() {
    let mut t = twin();
    let u = t
        .on_full(&full(
            json!({"$version": 1, CONFIG_OBJECT: {"snapshotFrequency": "soon", "bogus": 1}}),
        ))
        .unwrap();
    assert_eq!(u.new_rejections.len(), 2);
    // Fixing one key clears its rejection; the other stays, and is not emitted again.
    let u = t.on_patch(
        Some(2),
        &bytes(json!({"$version": 2, CONFIG_OBJECT: {"snapshotFrequency": "PT2H"}})),
    );
    assert!(u.new_rejections.is_empty());
    let keys: Vec<&str> = t.rejected().iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["bogus"]);
    // A patch with a wrong type for the object: rejected, config kept.
    let u = t.on_patch(
        Some(3),
        &bytes(json!({"$version": 3, CONFIG_OBJECT: "yes"})),
    );
    assert_eq!(u.config, None);
    assert_eq!(u.new_rejections.len(), 1);
    assert_eq!(u.new_rejections[0].key, CONFIG_OBJECT);
    assert_eq!(t.config().snapshot_frequency, Duration::from_secs(7200));
}

#[test]
fn patches_before_the_full_twin_wait_for_it() {
    let mut t = twin();
    assert_eq!(
        t.on_patch(
            Some(9),
            &bytes(json!({"$version": 9, CONFIG_OBJECT: {"snapshotFrequency": "PT1H"}}))
        ),
        Update::default()
    );
    // The GET answer is older than the patch seen: fetch again.
    let u = t.on_full(&full(json!({"$version": 8}))).unwrap();
    assert!(u.get_again);
    let u = t
        .on_full(&full(
            json!({"$version": 9, CONFIG_OBJECT: {"snapshotFrequency": "PT1H"}}),
        ))
        .unwrap();
    assert!(!u.get_again);
    assert_eq!(t.config().snapshot_frequency, Duration::from_secs(3600));
    // After a disconnect, patches wait again.
    t.disconnected();
    assert_eq!(
        t.on_patch(
            Some(10),
            &bytes(json!({"$version": 10, CONFIG_OBJECT: {"snapshotFrequency": "PT2H"}}))
        ),
        Update::default()
    );
}

#[test]
fn garbage_is_an_error_or_a_refetch() {
    let mut t = twin();
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"reported\":{}}",
        b"{\"desired\":5}",
    ] {
        assert!(
            t.on_full(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        t.on_full(&full(json!({"$version": "7"}))).unwrap_err(),
        TwinError::Version
    );
    t.on_full(&full(json!({"$version": 1}))).unwrap();
    for body in [&b""[..], b"null", b"[1]", b"\xff\xfe", b"{\"a\":"] {
        assert!(t.on_patch(Some(2), body).get_again);
    }
    let deep = "[".repeat(100_000);
    assert!(t.on_full(deep.as_bytes()).is_err());
    assert!(t.on_patch(Some(2), deep.as_bytes()).get_again);
    assert_eq!(t.config(), &Config::default());
}

#[test]
fn thousands_of_bad_keys_stay_bounded() {
    let mut t = twin();
    let object: Map<String, Value> = (0..5000).map(|i| (format!("k{i}"), json!(1))).collect();
    let u = t
        .on_full(&full(json!({"$version": 1, CONFIG_OBJECT: object})))
        .unwrap();
    assert_eq!(t.rejected().len(), 5000);
    assert_eq!(u.new_rejections.len(), MAX_REPORTED_REJECTIONS);
    let reported = u.reported.unwrap();
    assert_eq!(
        reported[CONFIG_OBJECT]["rejected"]
            .as_array()
            .unwrap()
            .len(),
        MAX_REPORTED_REJECTIONS
    );
    assert!(reported.to_string().len() < 32 * 1024);
}

#[test]
fn merge_patch_semantics() {
    let mut target = json!({"a": {"b": 1, "c": 2}, "d": 3});
    let patch = json!({"a": {"b": null, "e": [1]}, "d": 3, "f": null});
    assert!(changes(&target, &patch));
    merge(&mut target, &patch);
    assert_eq!(target, json!({"a": {"c": 2, "e": [1]}, "d": 3}));
    assert!(!changes(&target, &patch));
    assert!(!changes(&json!({"x": {}}), &json!({"x": {"v": null}})));
    assert!(changes(&json!({"x": 1}), &json!({"x": {"v": 1}})));
}
