//! Applying a desired configuration object, the checks across keys, and the reported view.

use super::key::{Key, describe, unwrap_value};
use super::{CONFIG_OBJECT, Config, MESSAGE_BLOCK_BYTES, Rejected, shorten};
use crate::event::ConfigErrorType;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Keys that [`reported`] adds beside the settings. A patch ignores them, so the reported object
/// fed back as desired (copied from the portal, say) applies cleanly.
pub(super) const REPORTED_ONLY: [&str; 2] = ["desiredVersion", "rejected"];

/// Longest unknown key name kept in a rejection: the name comes from outside, and the rejection
/// has to fit in a message.
const MAX_SHOWN_KEY: usize = 128;

/// Longest message about one bad part of a key (it quotes what came from the twin).
const MAX_PART_MESSAGE: usize = 512;

/// Applies a desired patch (the [`CONFIG_OBJECT`]'s value) to `current`.
///
/// Only keys named change; a key whose value is `null` (or `{"value": null}`) goes back to its
/// default; a bad key is rejected alone and keeps its current value. Keys starting with `$` (twin
/// metadata) and the reported-only `desiredVersion` and `rejected` are ignored. A non-object
/// changes nothing and gives one rejection, keyed [`CONFIG_OBJECT`]. Rejections are sorted by key.
pub fn apply_patch(current: &Config, object: &Value) -> (Config, Vec<Rejected>) {
    let Some(map) = object.as_object() else {
        let rejected = Rejected {
            key: CONFIG_OBJECT.into(),
            error_type: ConfigErrorType::TypeMismatch,
            used: String::new(),
            message: format!(
                "expected the configuration object, got {}; nothing changed",
                describe(object)
            ),
        };
        return (current.clone(), vec![rejected]);
    };
    let defaults = Config::default();
    let mut patch = Patch {
        current,
        next: current.clone(),
        named: BTreeSet::new(),
        rejected: Vec::new(),
    };
    for (name, raw) in map {
        if name.starts_with('$') || REPORTED_ONLY.contains(&name.as_str()) {
            continue;
        }
        let Some(key) = Key::from_name(name) else {
            patch.rejected.push(Rejection {
                name: shorten(name, MAX_SHOWN_KEY),
                key: None,
                error_type: ConfigErrorType::TypeMismatch,
                message: "unknown configuration key".into(),
            });
            continue;
        };
        let outcome = unwrap_value(raw).and_then(|value| match value {
            None => {
                key.copy(&defaults, &mut patch.next);
                Ok(Vec::new())
            }
            Some(value) => key.set_parts(&mut patch.next, value),
        });
        match outcome {
            Ok(bad_parts) => {
                patch.named.insert(key);
                // The key applies; each bad part of it (a custom rule) is rejected alone.
                for message in bad_parts {
                    patch.rejected.push(Rejection {
                        name: key.name(),
                        key: Some(key),
                        error_type: ConfigErrorType::TypeMismatch,
                        message: shorten(&message, MAX_PART_MESSAGE),
                    });
                }
            }
            Err(message) => patch.reject(key, ConfigErrorType::TypeMismatch, message),
        }
    }
    patch.check();
    patch.finish()
}

/// The full desired object (e.g. from a twin GET): keys absent take their defaults.
pub fn from_desired(object: &Value) -> (Config, Vec<Rejected>) {
    apply_patch(&Config::default(), object)
}

/// The reported-properties view: `{CONFIG_OBJECT: {every key: {"value": X}, "desiredVersion": v,
/// "rejected": [...]}}`, values in twin form. Fed back through [`from_desired`] it gives the same
/// configuration.
pub fn reported(config: &Config, version: Option<i64>, rejected: &[Rejected]) -> Value {
    let mut object: Map<String, Value> = Key::all()
        .map(|key| {
            let mut wrapped = Map::new();
            wrapped.insert("value".into(), key.get(config));
            (key.name(), Value::Object(wrapped))
        })
        .collect();
    object.insert("desiredVersion".into(), version.into());
    let rejected = rejected
        .iter()
        .map(|r| serde_json::to_value(r).expect("a Rejected is strings and a unit enum"))
        .collect();
    object.insert("rejected".into(), Value::Array(rejected));
    let mut root = Map::new();
    root.insert(CONFIG_OBJECT.into(), Value::Object(object));
    Value::Object(root)
}

/// A patch being applied.
struct Patch<'a> {
    current: &'a Config,
    next: Config,
    /// Keys the patch set (or reset) successfully: the ones a cross-key check may reject.
    named: BTreeSet<Key>,
    rejected: Vec<Rejection>,
}

/// A rejection before its `used` value is known (that is the value after all checks).
struct Rejection {
    name: String,
    key: Option<Key>,
    error_type: ConfigErrorType,
    message: String,
}

impl Patch<'_> {
    /// Rejects `key`: it keeps its value from before the patch.
    fn reject(&mut self, key: Key, error_type: ConfigErrorType, message: String) {
        key.copy(self.current, &mut self.next);
        self.named.remove(&key);
        self.rejected.push(Rejection {
            name: key.name(),
            key: Some(key),
            error_type,
            message,
        });
    }

    /// The checks across keys (security-events.md §3), each rejecting a key the patch named.
    fn check(&mut self) {
        let size = self.next.max_message_size_in_bytes;
        if self.named.contains(&Key::MaxMessageSizeInBytes)
            && !size.is_multiple_of(MESSAGE_BLOCK_BYTES)
        {
            self.reject(
                Key::MaxMessageSizeInBytes,
                ConfigErrorType::NotOptimal,
                format!(
                    "{size} is not a multiple of {MESSAGE_BLOCK_BYTES}: IoT Hub bills messages in 4 KB blocks"
                ),
            );
        }
        self.settle(
            [Key::MaxLocalCacheSizeInBytes, Key::MaxMessageSizeInBytes],
            |c| c.max_local_cache_size_in_bytes < c.max_message_size_in_bytes,
            |c| {
                format!(
                    "maxLocalCacheSizeInBytes {} is smaller than maxMessageSizeInBytes {}",
                    c.max_local_cache_size_in_bytes, c.max_message_size_in_bytes
                )
            },
        );
        self.settle(
            [
                Key::HighPriorityMessageFrequency,
                Key::LowPriorityMessageFrequency,
            ],
            |c| c.high_priority_message_frequency > c.low_priority_message_frequency,
            |c| {
                format!(
                    "highPriorityMessageFrequency {} is longer than lowPriorityMessageFrequency {}",
                    Key::HighPriorityMessageFrequency.used(c),
                    Key::LowPriorityMessageFrequency.used(c)
                )
            },
        );
    }

    /// While `conflict` holds, rejects the patch's `keys` in order (each at most once). Going back
    /// to the previous values resolves it whenever the previous configuration was consistent.
    fn settle(
        &mut self,
        keys: [Key; 2],
        conflict: impl Fn(&Config) -> bool,
        message: impl Fn(&Config) -> String,
    ) {
        for key in keys {
            if !conflict(&self.next) {
                return;
            }
            if self.named.contains(&key) {
                let message = message(&self.next);
                self.reject(key, ConfigErrorType::Conflict, message);
            }
        }
    }

    fn finish(mut self) -> (Config, Vec<Rejected>) {
        self.rejected.sort_by(|a, b| a.name.cmp(&b.name));
        let next = self.next;
        let rejected = self
            .rejected
            .into_iter()
            .map(|r| Rejected {
                used: r.key.map(|key| key.used(&next)).unwrap_or_default(),
                key: r.name,
                error_type: r.error_type,
                message: r.message,
            })
            .collect();
        (next, rejected)
    }
}

#[cfg(test)]
mod tests;
