//! What a check is (`Meta`), its result (`Outcome`), and the record both become.

use super::MAX_LISTED;
use crate::event::{BaselineCheck, BaselineResult, BaselineSeverity, ExtraDetails};

/// What a check is, independent of its result.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub id: &'static str,
    pub description: &'static str,
    pub severity: BaselineSeverity,
    pub remediation: &'static str,
    /// Where the id comes from (`ComplianceAsCode <rule>`), empty for our own ids.
    pub reference: &'static str,
}

/// A check's result: what was found (Pass/Fail) or why it could not be checked (Err).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Err(String),
    /// The check cannot apply to this host (a separate partition on an embedded image, a
    /// container host's forwarding): reported as `Pass` with `ExtraDetails.NotApplicable = "true"`
    /// and the reason in `Actual`, because the schema's results are only Pass/Fail/Error.
    NotApplicable(String),
}

pub(super) fn record(meta: &Meta, outcome: Outcome) -> BaselineCheck {
    let mut extra = ExtraDetails::new();
    extra.insert("Remediation".into(), meta.remediation.into());
    if !meta.reference.is_empty() {
        extra.insert("Reference".into(), meta.reference.into());
    }
    let (result, error, actual) = match outcome {
        Outcome::Pass(actual) => (BaselineResult::Pass, String::new(), actual),
        Outcome::Fail(actual) => (BaselineResult::Fail, String::new(), actual),
        Outcome::Err(e) => (BaselineResult::Err, e, String::new()),
        Outcome::NotApplicable(why) => {
            extra.insert("NotApplicable".into(), "true".into());
            (BaselineResult::Pass, String::new(), why)
        }
    };
    if !actual.is_empty() {
        extra.insert("Actual".into(), actual);
    }
    BaselineCheck {
        description: meta.description.into(),
        cce_id: meta.id.into(),
        result,
        error,
        severity: meta.severity,
        extra_details: extra,
    }
}

/// "a, b, c (12 total)" for long lists.
pub(super) fn listing(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_LISTED {
        s.push_str(&format!(" … ({} total)", items.len()));
    }
    s
}
