use super::*;
use crate::event::{EventKind, Priority};
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

use ConfigErrorType::{Conflict, NotOptimal, TypeMismatch};

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn keys(rejected: &[Rejected]) -> Vec<(&str, ConfigErrorType)> {
    rejected
        .iter()
        .map(|r| (r.key.as_str(), r.error_type))
        .collect()
}

/// Every invariant components rely on.
fn assert_valid(c: &Config) {
    assert!(c.max_message_size_in_bytes >= 8192 && c.max_message_size_in_bytes <= 262_144);
    assert_eq!(c.max_message_size_in_bytes % 4096, 0);
    assert!(c.max_local_cache_size_in_bytes >= c.max_message_size_in_bytes);
    assert!(c.high_priority_message_frequency <= c.low_priority_message_frequency);
    assert!(c.high_priority_message_frequency > Duration::ZERO);
    assert!(c.snapshot_frequency > Duration::ZERO);
    assert_eq!(c.event_priorities.len(), EventKind::ALL.len());
    assert_eq!(c.aggregation.len(), EventKind::AGGREGATABLE.len());
}

#[test]
fn wrapped_and_bare_values_both_work() {
    let wrapped = json!({
        "highPriorityMessageFrequency": {"value": "PT1M"},
        "maxMessageSizeInBytes": {"value": 8192},
        "eventPriorityLogin": {"value": "Off"},
        "aggregationEnabledProcessCreate": {"value": false},
        "baselineCustomChecksFilePath": {"value": "/etc/checks.xml"},
        "hubResourceId": {"value": "/subscriptions/x"},
    });
    let bare = json!({
        "highPriorityMessageFrequency": "PT1M",
        "maxMessageSizeInBytes": 8192,
        "eventPriorityLogin": "Off",
        "aggregationEnabledProcessCreate": false,
        "baselineCustomChecksFilePath": "/etc/checks.xml",
        "hubResourceId": "/subscriptions/x",
    });
    let (a, rejected_a) = from_desired(&wrapped);
    let (b, rejected_b) = from_desired(&bare);
    assert_eq!(rejected_a, []);
    assert_eq!(rejected_b, []);
    assert_eq!(a, b);
    assert_eq!(a.high_priority_message_frequency, mins(1));
    assert_eq!(a.max_message_size_in_bytes, 8192);
    assert_eq!(a.priority(EventKind::Login), Priority::Off);
    assert_eq!(a.aggregation(EventKind::ProcessCreate), None);
    assert_eq!(
        a.baseline_custom_checks_file_path.as_deref(),
        Some("/etc/checks.xml")
    );
    assert_eq!(a.hub_resource_id, "/subscriptions/x");
}

#[test]
fn priorities_ignore_case() {
    let (config, rejected) = from_desired(&json!({
        "eventPriorityLogin": "low",
        "eventPriorityProcessCreate": {"value": "HIGH"},
        "eventPriorityDiagnostic": "oFf",
    }));
    assert_eq!(rejected, []);
    assert_eq!(config.priority(EventKind::Login), Priority::Low);
    assert_eq!(config.priority(EventKind::ProcessCreate), Priority::High);
    assert_eq!(config.priority(EventKind::Diagnostic), Priority::Off);
}

#[test]
fn bad_keys_are_rejected_alone() {
    let (config, rejected) = from_desired(&json!({
        "highPriorityMessageFrequency": {"value": "7 minutes"},
        "maxLocalCacheSizeInBytes": {"value": "lots"},
        "maxMessageSizeInBytes": {"value": 10000},
        "lowPriorityMessageFrequency": {"value": "PT6H"},
        "eventPriorityLogin": "Off",
    }));
    assert_eq!(
        keys(&rejected),
        [
            ("highPriorityMessageFrequency", TypeMismatch),
            ("maxLocalCacheSizeInBytes", TypeMismatch),
            ("maxMessageSizeInBytes", NotOptimal),
        ]
    );
    let defaults = Config::default();
    assert_eq!(config.high_priority_message_frequency, mins(7));
    assert_eq!(config.max_local_cache_size_in_bytes, 2_560_000);
    assert_eq!(config.max_message_size_in_bytes, 204_800);
    assert_eq!(config.low_priority_message_frequency, mins(360));
    assert_eq!(config.priority(EventKind::Login), Priority::Off);
    assert_eq!(config.snapshot_frequency, defaults.snapshot_frequency);

    assert_eq!(rejected[0].used, "PT7M");
    assert_eq!(
        rejected[0].message,
        r#"expected an ISO-8601 duration such as PT7M, got "7 minutes""#
    );
    assert_eq!(rejected[1].used, "2560000");
    assert_eq!(rejected[2].used, "204800");
    assert!(rejected[2].message.contains("multiple of 4096"));
}

#[test]
fn null_restores_the_default() {
    let (changed, _) = from_desired(&json!({
        "highPriorityMessageFrequency": "PT1M",
        "eventPriorityLogin": "Off",
        "baselineCustomChecksFileHash": "abc",
        "hubResourceId": "hub",
    }));
    let (config, rejected) = apply_patch(
        &changed,
        &json!({
            "highPriorityMessageFrequency": null,
            "eventPriorityLogin": {"value": null},
            "baselineCustomChecksFileHash": null,
            "hubResourceId": {"value": null},
        }),
    );
    assert_eq!(rejected, []);
    assert_eq!(config, Config::default());
}

#[test]
fn a_patch_changes_only_the_keys_it_names() {
    let (base, _) = from_desired(&json!({
        "highPriorityMessageFrequency": "PT1M",
        "snapshotFrequency": "PT1H",
        "eventPriorityLogin": "Off",
    }));
    let (config, rejected) = apply_patch(&base, &json!({"snapshotFrequency": "PT2H"}));
    assert_eq!(rejected, []);
    let mut want = base.clone();
    want.snapshot_frequency = mins(120);
    assert_eq!(config, want);

    let (config, rejected) = apply_patch(&base, &json!({}));
    assert_eq!(rejected, []);
    assert_eq!(config, base);
}

#[test]
fn from_desired_resets_absent_keys() {
    let (base, _) =
        from_desired(&json!({"eventPriorityLogin": "Off", "snapshotFrequency": "PT1H"}));
    let (config, _) = from_desired(&json!({"snapshotFrequency": "PT2H"}));
    assert_eq!(config.priority(EventKind::Login), Priority::High);
    assert_ne!(config, base);
    assert_eq!(from_desired(&json!({})), (Config::default(), vec![]));
}

#[test]
fn cache_smaller_than_message_rejects_the_cache_first() {
    let (config, rejected) = from_desired(&json!({
        "maxLocalCacheSizeInBytes": 8192,
        "maxMessageSizeInBytes": 16384,
    }));
    assert_eq!(keys(&rejected), [("maxLocalCacheSizeInBytes", Conflict)]);
    assert_eq!(rejected[0].used, "2560000");
    assert_eq!(
        rejected[0].message,
        "maxLocalCacheSizeInBytes 8192 is smaller than maxMessageSizeInBytes 16384"
    );
    assert_eq!(config.max_local_cache_size_in_bytes, 2_560_000);
    assert_eq!(config.max_message_size_in_bytes, 16384);
}

#[test]
fn cache_conflict_rejects_the_message_size_when_the_cache_was_not_named() {
    let (small, _) = from_desired(&json!({
        "maxLocalCacheSizeInBytes": 8192,
        "maxMessageSizeInBytes": 8192,
    }));
    let (config, rejected) = apply_patch(&small, &json!({"maxMessageSizeInBytes": 12288}));
    assert_eq!(keys(&rejected), [("maxMessageSizeInBytes", Conflict)]);
    assert_eq!(rejected[0].used, "8192");
    assert_eq!(config, small);
}

#[test]
fn cache_conflict_repeats_until_consistent() {
    let (small, _) = from_desired(&json!({
        "maxLocalCacheSizeInBytes": 16384,
        "maxMessageSizeInBytes": 8192,
    }));
    let (config, rejected) = apply_patch(
        &small,
        &json!({
            "maxLocalCacheSizeInBytes": 12288,
            "maxMessageSizeInBytes": 20480,
        }),
    );
    assert_eq!(
        keys(&rejected),
        [
            ("maxLocalCacheSizeInBytes", Conflict),
            ("maxMessageSizeInBytes", Conflict),
        ]
    );
    assert_eq!(config, small);
}

#[test]
fn high_frequency_longer_than_low_is_a_conflict() {
    let (config, rejected) = from_desired(&json!({"highPriorityMessageFrequency": "PT6H"}));
    assert_eq!(
        keys(&rejected),
        [("highPriorityMessageFrequency", Conflict)]
    );
    assert_eq!(rejected[0].used, "PT7M");
    assert_eq!(
        rejected[0].message,
        "highPriorityMessageFrequency PT6H is longer than lowPriorityMessageFrequency PT5H"
    );
    assert_eq!(config, Config::default());

    let (config, rejected) = from_desired(&json!({"lowPriorityMessageFrequency": "PT1M"}));
    assert_eq!(keys(&rejected), [("lowPriorityMessageFrequency", Conflict)]);
    assert_eq!(rejected[0].used, "PT5H");
    assert_eq!(config, Config::default());

    // Both named: the high one goes first, and that is enough here.
    let (config, rejected) = from_desired(&json!({
        "highPriorityMessageFrequency": "PT3H",
        "lowPriorityMessageFrequency": "PT2H",
    }));
    assert_eq!(
        keys(&rejected),
        [("highPriorityMessageFrequency", Conflict)]
    );
    assert_eq!(config.high_priority_message_frequency, mins(7));
    assert_eq!(config.low_priority_message_frequency, mins(120));

    // Equal is fine.
    let (_, rejected) = from_desired(&json!({"highPriorityMessageFrequency": "PT5H"}));
    assert_eq!(rejected, []);
}

#[test]
fn unknown_keys_are_rejected_and_change_nothing() {
    let (config, rejected) = from_desired(&json!({
        "HighPriorityMessageFrequency": "PT1M",
        "aggregationEnabledLogin": true,
        "snapshotFrequency": "PT1H",
        "$version": 4,
        "$metadata": {"x": 1},
        "desiredVersion": 3,
        "rejected": [],
    }));
    assert_eq!(
        keys(&rejected),
        [
            ("HighPriorityMessageFrequency", TypeMismatch),
            ("aggregationEnabledLogin", TypeMismatch),
        ]
    );
    for r in &rejected {
        assert_eq!(r.message, "unknown configuration key");
        assert_eq!(r.used, "");
    }
    let want = Config {
        snapshot_frequency: mins(60),
        ..Config::default()
    };
    assert_eq!(config, want);

    let long = "k".repeat(100_000);
    let (_, rejected) = from_desired(&json!({ long: 1 }));
    assert!(rejected[0].key.len() < 200);
}

#[test]
fn a_non_object_changes_nothing() {
    let (base, _) = from_desired(&json!({"snapshotFrequency": "PT1H"}));
    for object in [json!(null), json!([1]), json!("x"), json!(3)] {
        let (config, rejected) = apply_patch(&base, &object);
        assert_eq!(config, base);
        assert_eq!(keys(&rejected), [(CONFIG_OBJECT, TypeMismatch)]);
    }
}

#[test]
fn reported_view_round_trips() {
    let (config, rejected) = from_desired(&json!({
        "highPriorityMessageFrequency": "PT1M30S",
        "snapshotFrequency": "P1DT0.5S",
        "maxLocalCacheSizeInBytes": 99_999,
        "maxMessageSizeInBytes": 8192,
        "eventPriorityConnectedHardware": "High",
        "aggregationEnabledConnectionCreate": false,
        "aggregationIntervalProcessTerminate": "PT30M",
        "baselineCustomChecksEnabled": true,
        "baselineCustomChecksFilePath": "/x",
        "hubResourceId": "hub",
    }));
    assert_eq!(rejected, []);
    for config in [config, Config::default()] {
        let view = reported(&config, Some(3), &[]);
        assert_eq!(from_desired(&view[CONFIG_OBJECT]), (config, vec![]));
    }
}

#[test]
fn reported_view_shape() {
    let rejected = Rejected {
        key: "maxMessageSizeInBytes".into(),
        error_type: NotOptimal,
        used: "204800".into(),
        message: "m".into(),
    };
    let view = reported(&Config::default(), Some(7), &[rejected]);
    let object = &view[CONFIG_OBJECT];
    assert_eq!(view.as_object().unwrap().len(), 1);
    assert_eq!(
        object["highPriorityMessageFrequency"],
        json!({"value": "PT7M"})
    );
    assert_eq!(object["maxMessageSizeInBytes"], json!({"value": 204800}));
    assert_eq!(object["eventPriorityLogin"], json!({"value": "High"}));
    assert_eq!(
        object["aggregationEnabledProcessCreate"],
        json!({"value": true})
    );
    assert_eq!(
        object["baselineCustomChecksFilePath"],
        json!({"value": null})
    );
    assert_eq!(object["hubResourceId"], json!({"value": ""}));
    assert_eq!(object["desiredVersion"], json!(7));
    assert_eq!(
        object["rejected"],
        json!([{
            "key": "maxMessageSizeInBytes",
            "errorType": "NotOptimal",
            "usedConfiguration": "204800",
            "message": "m",
        }])
    );
    assert_eq!(
        reported(&Config::default(), None, &[])[CONFIG_OBJECT]["desiredVersion"],
        json!(null)
    );
}

#[test]
fn weird_values_are_rejected_not_panicked_on() {
    let weird = [
        json!([[[[]]]]),
        json!(1e300),
        json!(-1e300),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(0.5),
        json!({"value": {"value": 1}}),
        json!({"value": [1]}),
        json!({}),
        json!(""),
        json!("PT"),
        json!(true),
    ];
    for key in Key::all() {
        for value in &weird {
            let (config, rejected) = from_desired(&json!({ key.name(): value }));
            assert_valid(&config);
            assert!(rejected.len() <= 1, "{key:?} {value}");
        }
    }
}

/// Any JSON value, a few levels deep, biased towards what the keys expect.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (8192u64..300_000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["PT1M", "PT6H", "P1D", "high", "Off", "PT0S", "-PT1M"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("value|\\$x|[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_patch() -> impl Strategy<Value = Value> {
    let mut names: Vec<String> = Key::all().map(Key::name).collect();
    names.extend(["nope", "$version", "desiredVersion", "rejected"].map(String::from));
    prop::collection::btree_map(prop::sample::select(names), any_json(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #[test]
    fn any_patch_keeps_the_config_valid(first in any_patch(), second in any_patch()) {
        let (base, _) = from_desired(&first);
        assert_valid(&base);
        let (next, rejected) = apply_patch(&base, &second);
        assert_valid(&next);
        let object = second.as_object().unwrap();
        let mut seen = BTreeSet::new();
        for r in &rejected {
            prop_assert!(object.contains_key(&r.key));
            let key = Key::from_name(&r.key);
            // A key made of parts (custom rules) applies its good parts and rejects each bad
            // one alone; any other key is rejected once, whole, and keeps its value.
            if key.is_some_and(Key::has_parts) {
                continue;
            }
            prop_assert!(seen.insert(r.key.clone()), "{} rejected twice", r.key);
            if let Some(key) = key {
                prop_assert_eq!(key.get(&next), key.get(&base));
            }
        }
        for key in Key::all() {
            if !object.contains_key(&key.name()) {
                prop_assert_eq!(key.get(&next), key.get(&base));
            }
        }
    }
}

/// A custom rule as the twin carries it.
fn custom_rule(id: &str) -> Value {
    json!({
        "id": id, "title": "t", "severity": "Warning", "description": "d", "remediation": "r",
        "kind": "ProcessCreate", "match": {"field": "CommandLine", "contains": "vendor-tool"}
    })
}

#[test]
fn custom_rules_apply_bad_ones_are_rejected_alone_and_null_removes_them() {
    let mut bad = custom_rule("bad-kind");
    bad["kind"] = "Nope".into();
    let (config, rejected) = from_desired(&json!({
        "detectionCustomRules": {"value": [custom_rule("good"), bad, custom_rule("exec-from-memory")]},
        "snapshotFrequency": "PT2H",
    }));
    assert_eq!(
        keys(&rejected),
        [
            ("detectionCustomRules", TypeMismatch),
            ("detectionCustomRules", TypeMismatch)
        ]
    );
    assert!(
        rejected[0]
            .message
            .starts_with("rule \"bad-kind\": `kind` Nope is not one of")
    );
    assert_eq!(
        rejected[1].message,
        "rule \"exec-from-memory\": a built-in rule has this id"
    );
    // `used` is the ids of the rules in use.
    assert_eq!(rejected[0].used, "good");
    assert_eq!(
        config.detection_custom_rules.ids().collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(config.snapshot_frequency, mins(120));
    // The reported view carries the good rules and reads back the same.
    let view = reported(&config, Some(1), &[]);
    let shown = &view[CONFIG_OBJECT]["detectionCustomRules"]["value"];
    let shown: Value = serde_json::from_str(shown.as_str().expect("a string")).unwrap();
    assert_eq!(shown, json!([custom_rule("good")]));
    assert_eq!(from_desired(&view[CONFIG_OBJECT]), (config.clone(), vec![]));
    // Another key changing keeps the compiled rules (the detector keeps its state).
    let (next, _) = apply_patch(&config, &json!({"snapshotFrequency": "PT3H"}));
    assert!(std::sync::Arc::ptr_eq(
        next.detection_custom_rules.catalog().unwrap(),
        config.detection_custom_rules.catalog().unwrap()
    ));
    // Removing the key (a null in a patch) removes the rules.
    let (removed, rejected) = apply_patch(&config, &json!({"detectionCustomRules": null}));
    assert_eq!(rejected, []);
    assert_eq!(removed.detection_custom_rules.ids().count(), 0);
    assert!(removed.detection_custom_rules.catalog().is_none());
}

#[test]
fn custom_rules_in_a_string_for_older_tooling() {
    let text = serde_json::to_string(&json!([custom_rule("in-a-string")])).unwrap();
    let (config, rejected) = from_desired(&json!({"detectionCustomRules": text}));
    assert_eq!(rejected, []);
    let ids: Vec<_> = config.detection_custom_rules.ids().collect();
    assert_eq!(ids, ["in-a-string"]);
    let (config, rejected) = apply_patch(&config, &json!({"detectionCustomRules": ""}));
    assert_eq!(rejected, []);
    assert_eq!(config.detection_custom_rules.ids().count(), 0);
}

#[test]
fn a_custom_rules_value_of_the_wrong_shape_is_rejected_whole() {
    let (before, _) = from_desired(&json!({"detectionCustomRules": [custom_rule("kept")]}));
    for (value, why) in [
        (json!({"value": 42}), "got 42"),
        (json!("[not json"), "the string is not JSON"),
        (json!("{\"id\": \"x\"}"), "got a string holding an object"),
    ] {
        let (config, rejected) = apply_patch(&before, &json!({"detectionCustomRules": value}));
        assert_eq!(keys(&rejected), [("detectionCustomRules", TypeMismatch)]);
        assert!(rejected[0].message.contains(why), "{}", rejected[0].message);
        assert_eq!(rejected[0].used, "kept");
        assert_eq!(config, before);
    }
}

#[test]
fn custom_rules_are_reported_as_a_string_unless_too_long_for_one() {
    let (none, _) = from_desired(&json!({}));
    let view = reported(&none, None, &[]);
    assert_eq!(view[CONFIG_OBJECT]["detectionCustomRules"]["value"], "");
    // 40 rules with long descriptions: more than a twin string holds, reported as an array.
    let rules: Vec<Value> = (0..40)
        .map(|i| {
            let mut r = custom_rule(&format!("r{i}"));
            r["description"] = "d".repeat(200).into();
            r
        })
        .collect();
    let (config, rejected) = from_desired(&json!({"detectionCustomRules": rules}));
    assert_eq!(rejected, []);
    let view = reported(&config, None, &[]);
    assert_eq!(
        view[CONFIG_OBJECT]["detectionCustomRules"]["value"],
        json!(rules)
    );
    assert_eq!(from_desired(&view[CONFIG_OBJECT]), (config, vec![]));
}

fn overrides_of(config: &Config) -> Value {
    let view = Key::DetectionRuleOverrides.get(config);
    match view.as_str() {
        Some("") => json!({}),
        Some(text) => serde_json::from_str(text).unwrap(),
        None => view,
    }
}

#[test]
fn rule_overrides_apply_bad_entries_are_rejected_alone_and_patches_merge() {
    let (config, rejected) = from_desired(&json!({
        "detectionRuleOverrides": {"value": {
            "sudo-failures": {"threshold": 5, "window": "PT10M", "severity": "critical"},
            "exec-from-temp-dir": {"severity": "Informational"},
            "history-cleared": {"threshold": 3},
            "no-such-rule": {"severity": "Warning"},
            "login-brute-force": {"window": "PT2H"},
            "download-then-chmod": {"threshold": 2},
            "uid0-account-added": {"colour": "red"},
        }},
    }));
    let messages: Vec<&str> = rejected.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "rule \"download-then-chmod\": threshold: the rule has a window but no threshold",
            "rule \"history-cleared\": threshold: the rule has no threshold or window (only severity can be set)",
            "rule \"login-brute-force\": window: expected from PT1S to PT1H, got \"PT2H\"",
            "rule \"no-such-rule\": not a built-in rule (ids in docs/detection.md; a custom rule sets its own severity and threshold)",
            "rule \"uid0-account-added\": unknown setting \"colour\" (severity, threshold, window)",
        ]
    );
    assert!(rejected.iter().all(|r| r.key == "detectionRuleOverrides"));
    let want = json!({
        "exec-from-temp-dir": {"severity": "Informational"},
        "sudo-failures": {"severity": "Critical", "threshold": 5, "window": "PT10M"},
    });
    assert_eq!(overrides_of(&config), want);
    // The reported view (a string) reads back the same.
    let view = reported(&config, None, &[]);
    assert!(view[CONFIG_OBJECT]["detectionRuleOverrides"]["value"].is_string());
    assert_eq!(from_desired(&view[CONFIG_OBJECT]), (config.clone(), vec![]));

    // A patch object merges, as IoT Hub merges it into the twin: a rule not named keeps its
    // overrides, null removes a rule's or one field, a bad entry keeps the rule's previous.
    let (next, rejected) = apply_patch(
        &config,
        &json!({"detectionRuleOverrides": {"value": {
            "exec-from-temp-dir": null,
            "sudo-failures": {"window": null, "threshold": 1},
            "login-brute-force": {"threshold": 20},
        }}}),
    );
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .message
            .starts_with("rule \"sudo-failures\": threshold: expected an integer from 2 to 1000")
    );
    assert_eq!(
        overrides_of(&next),
        json!({
            "login-brute-force": {"threshold": 20},
            "sudo-failures": {"severity": "Critical", "threshold": 5, "window": "PT10M"},
        })
    );
    let (next, rejected) = apply_patch(
        &next,
        &json!({"detectionRuleOverrides": {"value": {"sudo-failures": {"window": null, "threshold": null}}}}),
    );
    assert_eq!(rejected, []);
    assert_eq!(
        overrides_of(&next),
        json!({"login-brute-force": {"threshold": 20}, "sudo-failures": {"severity": "Critical"}})
    );
    // A string replaces them all; removing the key removes them all.
    let (next, rejected) = apply_patch(
        &next,
        &json!({"detectionRuleOverrides": "{\"sudo-failures\": {\"threshold\": 4}}"}),
    );
    assert_eq!(rejected, []);
    assert_eq!(
        overrides_of(&next),
        json!({"sudo-failures": {"threshold": 4}})
    );
    let (next, rejected) = apply_patch(&next, &json!({"detectionRuleOverrides": null}));
    assert_eq!(rejected, []);
    assert!(next.detection_rule_overrides.is_empty());
    assert_eq!(next, Config::default());
}

#[test]
fn rule_overrides_of_the_wrong_shape_are_rejected_whole() {
    let (before, rejected) = from_desired(
        &json!({"detectionRuleOverrides": {"value": {"sudo-failures": {"threshold": 4}}}}),
    );
    assert_eq!(rejected, []);
    assert!(!before.detection_rule_overrides.is_empty());
    // An object needs the {"value": …} wrapper (a bare one is read as a wrapper).
    let (_, rejected) = from_desired(&json!({"detectionRuleOverrides": {"sudo-failures": {}}}));
    assert_eq!(keys(&rejected), [("detectionRuleOverrides", TypeMismatch)]);
    for value in [json!(42), json!("[1]"), json!("{nope")] {
        let (config, rejected) = apply_patch(&before, &json!({"detectionRuleOverrides": value}));
        assert_eq!(keys(&rejected), [("detectionRuleOverrides", TypeMismatch)]);
        assert_eq!(config, before);
    }
    // An entry that is not an object: that entry only.
    let (config, rejected) = apply_patch(
        &before,
        &json!({"detectionRuleOverrides": {"value": {"sudo-failures": 4}}}),
    );
    assert_eq!(keys(&rejected), [("detectionRuleOverrides", TypeMismatch)]);
    assert_eq!(config, before);
}

#[test]
fn allow_lists_apply_and_a_bad_entry_rejects_its_whole_list() {
    let (config, rejected) = from_desired(&json!({
        "detectionAllowedProcesses": {"value": "/usr/sbin/, /opt/app/agent,/usr/sbin/"},
        "detectionAllowedConnections": {"value": "10.0.0.0/8, 203.0.113.9:8883, [fd00::/8]:443"},
        "detectionAllowedUsers": {"value": "alice,bob"},
        "detectionAllowedLoginSources": {"value": "10.0.0.0/8,192.0.2.7"},
    }));
    assert_eq!(rejected, []);
    let lists = &config.detection_allow_lists;
    // Duplicates dropped, order kept.
    assert_eq!(lists.processes, ["/usr/sbin/", "/opt/app/agent"]);
    assert_eq!(lists.destinations.len(), 3);
    assert_eq!(lists.users, ["alice", "bob"]);
    assert_eq!(lists.login_sources[1], ("192.0.2.7".parse().unwrap(), 32));
    // The reported view reads back the same.
    let view = reported(&config, None, &[]);
    assert_eq!(
        view[CONFIG_OBJECT]["detectionAllowedConnections"]["value"],
        "10.0.0.0/8,203.0.113.9/32:8883,[fd00::/8]:443"
    );
    assert_eq!(from_desired(&view[CONFIG_OBJECT]), (config.clone(), vec![]));

    // One bad entry rejects its key alone; the list before stays.
    let (next, rejected) = apply_patch(
        &config,
        &json!({
            "detectionAllowedProcesses": {"value": "/usr/bin/, curl"},
            "detectionAllowedConnections": {"value": "10.0.0.0/8:70000"},
            "detectionAllowedUsers": {"value": "carol"},
            "detectionAllowedLoginSources": {"value": 10},
        }),
    );
    let messages: Vec<(&str, &str)> = rejected
        .iter()
        .map(|r| (r.key.as_str(), r.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                "detectionAllowedConnections",
                "not a destination: \"10.0.0.0/8:70000\""
            ),
            (
                "detectionAllowedLoginSources",
                "expected networks separated by commas, got 10"
            ),
            ("detectionAllowedProcesses", "not a program: \"curl\""),
        ]
    );
    assert!(rejected.iter().all(|r| r.error_type == TypeMismatch));
    assert_eq!(next.detection_allow_lists.processes, lists.processes);
    assert_eq!(next.detection_allow_lists.users, ["carol"]);
    // An empty string or null turns a list off.
    let (next, rejected) = apply_patch(
        &next,
        &json!({"detectionAllowedProcesses": "", "detectionAllowedUsers": null}),
    );
    assert_eq!(rejected, []);
    assert!(next.detection_allow_lists.processes.is_empty());
    assert!(next.detection_allow_lists.users.is_empty());
    assert_eq!(next.detection_allow_lists.destinations.len(), 3);
}
