//! Finding the configuration object in whatever document a user or the hub hands us: a whole
//! module twin, its desired properties, or the object itself. Users copy any of these from the
//! portal or `az iot hub module-twin show`, so all of them load.

use super::duration::quote;
use super::key::Key;
use super::patch::REPORTED_ONLY;
use super::{CONFIG_OBJECT, Config, Error, Rejected, from_desired};
use serde_json::{Map, Value};
use std::path::Path;

/// Where the config object sits in a document given by a user or the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The desired properties' `$version`, when the document has one.
    pub version: Option<i64>,
    /// The configuration object; `None` when the desired properties have none (nothing to apply).
    pub object: Option<Value>,
}

/// Finds the configuration object in `doc`, which may be:
///
/// - a module twin (`{"moduleId": …, "properties": {"desired": {…}}}`) or just its
///   `{"properties": {"desired": …}}`;
/// - desired properties: an object with [`CONFIG_OBJECT`] or `$version` (the hub always sends it);
/// - the configuration object itself: empty, or with at least one known configuration key (so
///   a misspelt key becomes a rejection the user sees, not an unreadable file).
///
/// Anything else is [`Error::Shape`].
pub fn locate(doc: &Value) -> Result<Desired, Error> {
    let Some(map) = doc.as_object() else {
        return Err(Error::Shape(format!(
            "expected a JSON object, got {}",
            kind(doc)
        )));
    };
    if let Some(properties) = map.get("properties") {
        let desired = properties
            .get("desired")
            .ok_or_else(|| Error::Shape("\"properties\" has no \"desired\"".into()))?;
        return desired_properties(desired);
    }
    if map.contains_key(CONFIG_OBJECT) || map.contains_key("$version") {
        return desired_properties(doc);
    }
    if map.is_empty() || map.keys().any(|k| Key::from_name(k).is_some()) {
        return Ok(Desired {
            version: None,
            object: Some(doc.clone()),
        });
    }
    let ignored = |k: &&String| k.starts_with('$') || REPORTED_ONLY.contains(&k.as_str());
    let shown = map
        .keys()
        .find(|k| !ignored(k))
        .or_else(|| map.keys().next())
        .map(|k| quote(k))
        .unwrap_or_default();
    Err(Error::Shape(format!(
        "expected a module twin, desired properties or the {CONFIG_OBJECT} object, got an object with key {shown}"
    )))
}

/// Reads a JSON config file, then [`locate`] and [`from_desired`]. Returns the configuration, the
/// rejected keys and the desired `$version` if the file had one. A file without the
/// configuration object gives the defaults.
pub fn load_file(path: &Path) -> Result<(Config, Vec<Rejected>, Option<i64>), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text)
}

/// [`load_file`] for JSON text (the `EDGEGUARD_CONFIG_JSON` environment variable).
pub fn load_str(text: &str) -> Result<(Config, Vec<Rejected>, Option<i64>), Error> {
    let doc: Value = serde_json::from_str(text).map_err(Error::Json)?;
    let desired = locate(&doc)?;
    let (config, rejected) = match &desired.object {
        Some(object) => from_desired(object),
        None => (Config::default(), Vec::new()),
    };
    Ok((config, rejected, desired.version))
}

fn desired_properties(desired: &Value) -> Result<Desired, Error> {
    let map: &Map<String, Value> = desired.as_object().ok_or_else(|| {
        Error::Shape(format!(
            "expected desired properties to be an object, got {}",
            kind(desired)
        ))
    })?;
    let version = match map.get("$version") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            Error::Shape(format!(
                "expected \"$version\" to be an integer, got {}",
                kind(v)
            ))
        })?),
    };
    Ok(Desired {
        version,
        object: map.get(CONFIG_OBJECT).cloned(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reported;
    use crate::event::ConfigErrorType;
    use serde_json::json;
    use std::time::Duration;

    const DEFAULTS_FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/asc-security-schemas/security_module_twin/azureiotsecurity_default.json"
    );

    fn config_object() -> Value {
        json!({"snapshotFrequency": {"value": "PT1H"}})
    }

    #[test]
    fn the_twin_defaults_file_is_the_default_config() {
        let (config, rejected, version) = load_file(Path::new(DEFAULTS_FILE)).unwrap();
        assert_eq!(rejected, []);
        assert_eq!(version, None);
        assert_eq!(config, Config::default());
    }

    #[test]
    fn locates_a_whole_module_twin() {
        let doc = json!({
            "deviceId": "d", "moduleId": "edgeguard", "etag": "AAAA", "version": 12,
            "properties": {
                "desired": {CONFIG_OBJECT: config_object(), "$version": 5, "$metadata": {}},
                "reported": {"$version": 9},
            },
        });
        assert_eq!(
            locate(&doc).unwrap(),
            Desired {
                version: Some(5),
                object: Some(config_object())
            }
        );
    }

    #[test]
    fn locates_properties_desired() {
        let doc = json!({"properties": {"desired": {CONFIG_OBJECT: config_object()}}});
        assert_eq!(
            locate(&doc).unwrap(),
            Desired {
                version: None,
                object: Some(config_object())
            }
        );
    }

    #[test]
    fn locates_desired_properties() {
        let doc = json!({CONFIG_OBJECT: config_object(), "$version": 2, "otherSetting": 1});
        assert_eq!(
            locate(&doc).unwrap(),
            Desired {
                version: Some(2),
                object: Some(config_object())
            }
        );
        // Desired properties without the object: nothing to apply.
        assert_eq!(
            locate(&json!({"$version": 3, "otherSetting": 1})).unwrap(),
            Desired {
                version: Some(3),
                object: None
            }
        );
        assert_eq!(
            locate(&json!({"properties": {"desired": {"$version": 1}}})).unwrap(),
            Desired {
                version: Some(1),
                object: None
            }
        );
    }

    #[test]
    fn locates_the_configuration_object_itself() {
        for doc in [
            config_object(),
            json!({}),
            json!({"snapshotFrequency": "PT1H", "typo": 1}),
        ] {
            assert_eq!(
                locate(&doc).unwrap(),
                Desired {
                    version: None,
                    object: Some(doc.clone())
                }
            );
        }
        let view = reported(&Config::default(), Some(4), &[]);
        assert_eq!(
            locate(&view[CONFIG_OBJECT]).unwrap().object.as_ref(),
            Some(&view[CONFIG_OBJECT])
        );
        // The whole reported view has the object under CONFIG_OBJECT, like desired properties.
        assert!(locate(&view).unwrap().object.is_some());
    }

    #[test]
    fn garbage_shapes_are_errors() {
        for doc in [
            json!([1, 2]),
            json!(3),
            json!("PT7M"),
            json!(null),
            json!({"foo": 1}),
            json!({"$metadata": {}}),
            json!({"properties": 1}),
            json!({"properties": {"reported": {}}}),
            json!({"properties": {"desired": [1]}}),
            json!({"$version": "7", CONFIG_OBJECT: {}}),
        ] {
            let error = locate(&doc).unwrap_err();
            assert!(matches!(error, Error::Shape(_)), "{doc}: {error:?}");
        }
        assert_eq!(
            locate(&json!({"foo": 1})).unwrap_err().to_string(),
            format!(
                "unrecognised config document: expected a module twin, desired properties or the {CONFIG_OBJECT} object, got an object with key \"foo\""
            )
        );
    }

    #[test]
    fn loads_strings() {
        let text = json!({
            "properties": {"desired": {"$version": 8, CONFIG_OBJECT: {
                "highPriorityMessageFrequency": "PT2M",
                "maxMessageSizeInBytes": 10000,
            }}},
        })
        .to_string();
        let (config, rejected, version) = load_str(&text).unwrap();
        assert_eq!(version, Some(8));
        assert_eq!(
            config.high_priority_message_frequency,
            Duration::from_secs(120)
        );
        assert_eq!(config.max_message_size_in_bytes, 204_800);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].error_type, ConfigErrorType::NotOptimal);

        let (config, rejected, version) = load_str(r#"{"$version": 2}"#).unwrap();
        assert_eq!(
            (config, rejected, version),
            (Config::default(), vec![], Some(2))
        );

        // A null object (a patch deleting it) is not an object: reported, defaults kept.
        let (config, rejected, _) = load_str(&json!({CONFIG_OBJECT: null}).to_string()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(rejected.len(), 1);
    }

    #[test]
    fn load_errors_say_where() {
        let error = load_str("{\n  \"snapshotFrequency\": PT1H\n}").unwrap_err();
        assert!(matches!(error, Error::Json(_)));
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(matches!(load_str("[]").unwrap_err(), Error::Shape(_)));
        assert!(matches!(load_str("").unwrap_err(), Error::Json(_)));

        let path = Path::new("/nonexistent/edgeguard/config.json");
        let error = load_file(path).unwrap_err();
        assert!(matches!(&error, Error::Read { path: p, .. } if p == path));
        assert!(
            error
                .to_string()
                .contains("/nonexistent/edgeguard/config.json")
        );
    }

    #[test]
    fn loads_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"eventPriorityLogin": "off"}"#).unwrap();
        let (config, rejected, version) = load_file(&path).unwrap();
        assert_eq!(rejected, []);
        assert_eq!(version, None);
        assert_eq!(
            config.priority(crate::event::EventKind::Login),
            crate::event::Priority::Off
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(load_str(&deep).unwrap_err(), Error::Json(_)));
        let huge = r#"{"maxLocalCacheSizeInBytes": 1e400}"#;
        assert!(load_str(huge).is_err());
    }
}
