//! The module twin's desired properties → the agent's [`Config`], and the reported view back.
//!
//! Pure and synchronous: the hub task feeds it twin documents and patches and carries out what
//! it returns ([`Update`]): publish the new config, send `ConfigurationError` events, PATCH the
//! reported properties, GET the whole twin again.
//!
//! - A full twin (GET after every connect) is the truth: [`config::from_desired`] on its
//!   configuration object, absent keys at their defaults.
//! - A desired patch changes only what it names ([`config::apply_patch`]). Patches carry
//!   consecutive `$version`s: an older or repeated one is ignored, a gap means we missed one
//!   (patches only arrive while connected), so the whole twin is fetched again. A patch that
//!   sets the configuration object to `null` deleted it: every key goes back to its default.
//! - Reported properties (a JSON merge patch):
//!
//!   ```json
//!   {"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
//!        "highPriorityMessageFrequency": {"value": "PT7M"}, …every key…,
//!        "desiredVersion": 12, "rejected": [{"key": …, "errorType": …, "usedConfiguration": …, "message": …}]},
//!    "edgeguard": {"agentVersion": "0.1.0", "startTime": "2026-01-02T03:04:05.000Z"}}
//!   ```
//!
//!   sent only when it would change what the twin already reports.

use crate::config::{self, CONFIG_OBJECT, Config, Rejected};
use crate::event::envelope::AGENT_VERSION;
use serde_json::{Map, Value};

/// Top-level reported property with the agent's own facts.
pub const AGENT_OBJECT: &str = "edgeguard";
/// Most rejections reported (and turned into events) at once. A twin with thousands of
/// unknown keys must not produce a reported patch above edgeHub's 32 KiB limit (which would be
/// refused, and retried, forever) or flood the pipeline.
pub const MAX_REPORTED_REJECTIONS: usize = 50;

/// What to do after a twin message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// The new effective configuration, when it differs from the current one.
    pub config: Option<Config>,
    /// Rejected keys not reported before: each becomes a `ConfigurationError` event.
    pub new_rejections: Vec<Rejected>,
    /// The reported-properties patch to send, when the twin does not already say it.
    pub reported: Option<Value>,
    /// Fetch the whole twin: a `$version` gap, a patch we could not read, or patches newer than
    /// the twin we just read.
    pub get_again: bool,
    /// The desired `$version` now in effect, when it changed.
    pub version: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("twin document is not valid JSON")]
    Json,
    #[error("twin document has no \"desired\" object")]
    NoDesired,
    #[error("desired \"$version\" is not an integer")]
    Version,
    #[error("desired patch is not a JSON object")]
    Patch,
}

/// The twin state the hub keeps between messages.
#[derive(Debug, Clone)]
pub struct Twin {
    config: Config,
    version: Option<i64>,
    rejected: Vec<Rejected>,
    /// A full twin was read on this connection: patches may be applied.
    synced: bool,
    /// Highest patch `$version` seen before the full twin arrived.
    newest_unapplied: Option<i64>,
    /// What the twin reports, as far as we know (updated when a PATCH is acknowledged and
    /// from every full twin).
    known_reported: Value,
    start_time: String,
}

impl Twin {
    /// `config` is what runs now (local file or defaults); `start_time` an RFC 3339 UTC time.
    pub fn new(config: Config, start_time: String) -> Twin {
        Twin {
            config,
            version: None,
            rejected: Vec::new(),
            synced: false,
            newest_unapplied: None,
            known_reported: Value::Object(Map::new()),
            start_time,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn version(&self) -> Option<i64> {
        self.version
    }

    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// The connection dropped: patches are missed until the next full twin.
    pub fn disconnected(&mut self) {
        self.synced = false;
        self.newest_unapplied = None;
    }

    /// The reported view of the current state.
    pub fn reported_view(&self) -> Value {
        let shown = &self.rejected[..self.rejected.len().min(MAX_REPORTED_REJECTIONS)];
        let mut view = config::reported(&self.config, self.version, shown);
        if let Some(map) = view.as_object_mut() {
            map.insert(
                AGENT_OBJECT.into(),
                serde_json::json!({"agentVersion": AGENT_VERSION, "startTime": self.start_time}),
            );
        }
        view
    }

    /// The reported view, if sending it would change what the twin reports.
    pub fn report_if_changed(&self) -> Option<Value> {
        let view = self.reported_view();
        changes(&self.known_reported, &view).then_some(view)
    }

    /// A reported PATCH was acknowledged (204): the twin now says `patch`.
    pub fn reported_acknowledged(&mut self, patch: &Value) {
        merge(&mut self.known_reported, patch);
    }

    /// A full twin: `{"desired": {…, "$version": n}, "reported": {…}}`.
    pub fn on_full(&mut self, body: &[u8]) -> Result<Update, TwinError> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| TwinError::Json)?;
        let desired = doc
            .get("desired")
            .filter(|d| d.is_object())
            .ok_or(TwinError::NoDesired)?;
        let version = match desired.get("$version") {
            None => None,
            Some(v) => Some(v.as_i64().ok_or(TwinError::Version)?),
        };
        if let Some(reported) = doc.get("reported").filter(|r| r.is_object()) {
            self.known_reported = reported.clone();
        }
        let (config, rejected) = match desired.get(CONFIG_OBJECT) {
            None | Some(Value::Null) => config::from_desired(&Value::Object(Map::new())),
            Some(object) => config::from_desired(object),
        };
        let mut update = self.apply(config, rejected, version);
        self.synced = true;
        if let (Some(seen), Some(v)) = (self.newest_unapplied.take(), version) {
            update.get_again |= seen > v;
        }
        Ok(update)
    }

    /// A desired patch. `topic_version` is the `$version` from the topic; the body's wins.
    pub fn on_patch(&mut self, topic_version: Option<i64>, body: &[u8]) -> Update {
        let Some(patch) = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
        else {
            tracing::warn!("{}; fetching the whole twin", TwinError::Patch);
            return Update {
                get_again: true,
                ..Update::default()
            };
        };
        let version = patch
            .get("$version")
            .and_then(Value::as_i64)
            .or(topic_version);
        if !self.synced {
            // The GET in flight (or the next one) decides; remember we saw something newer.
            if let Some(v) = version {
                self.newest_unapplied = Some(self.newest_unapplied.map_or(v, |s| s.max(v)));
            }
            return Update::default();
        }
        match (self.version, version) {
            (Some(current), Some(v)) if v <= current => {
                tracing::debug!(current, patch = v, "ignoring an old desired patch");
                return Update::default();
            }
            (Some(current), Some(v)) if v > current + 1 => {
                tracing::info!(
                    current,
                    patch = v,
                    "desired $version gap; fetching the whole twin"
                );
                return Update {
                    get_again: true,
                    ..Update::default()
                };
            }
            _ => {}
        }
        let (config, rejected) = match patch.get(CONFIG_OBJECT) {
            None => (self.config.clone(), self.rejected.clone()),
            Some(Value::Null) => config::from_desired(&Value::Object(Map::new())),
            Some(object) => {
                let (config, mut fresh) = config::apply_patch(&self.config, object);
                // Keys this patch names are judged again; earlier rejections of others stand.
                let named = |key: &str| object.as_object().is_some_and(|o| o.contains_key(key));
                let mut rejected: Vec<Rejected> = self
                    .rejected
                    .iter()
                    .filter(|r| !named(&r.key) && !fresh.iter().any(|f| f.key == r.key))
                    .cloned()
                    .collect();
                rejected.append(&mut fresh);
                rejected.sort_by(|a, b| a.key.cmp(&b.key));
                (config, rejected)
            }
        };
        self.apply(config, rejected, version.or(self.version))
    }

    fn apply(&mut self, config: Config, rejected: Vec<Rejected>, version: Option<i64>) -> Update {
        let new_rejections = rejected
            .iter()
            .filter(|r| !self.rejected.contains(r))
            .take(MAX_REPORTED_REJECTIONS)
            .cloned()
            .collect();
        let changed = config != self.config;
        let version_changed = version != self.version;
        self.config = config;
        self.rejected = rejected;
        self.version = version;
        let view = self.reported_view();
        Update {
            config: changed.then(|| self.config.clone()),
            new_rejections,
            reported: changes(&self.known_reported, &view).then_some(view),
            get_again: false,
            version: if version_changed { version } else { None },
        }
    }
}

/// Whether applying merge patch `patch` to `target` would change it (RFC 7386 semantics).
pub fn changes(target: &Value, patch: &Value) -> bool {
    match patch {
        Value::Object(p) => {
            let Some(t) = target.as_object() else {
                return true;
            };
            p.iter().any(|(k, v)| match (t.get(k), v) {
                (None, Value::Null) => false,
                (None, _) => true,
                (Some(_), Value::Null) => true,
                (Some(tv), pv @ Value::Object(_)) => changes(tv, pv),
                (Some(tv), pv) => tv != pv,
            })
        }
        _ => target != patch,
    }
}

/// Applies merge patch `patch` to `target` (RFC 7386).
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object just above");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests;
