//! Custom checks: the operator's file, verified by its SHA-256, parsed and run.

use super::{
    COLLECTOR, CUSTOM_FILE, MAX_CUSTOM_CHECKS, Meta, Outcome, host_meta, is_not_found, read_capped,
    read_sysctl, record,
};
use crate::event::{BaselineCheck, BaselineSeverity};
use crate::host::HostRoot;
use crate::text::{error_chain, within_bytes_marked};
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;

/// One check of a custom checks file (see the module doc for the format).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCheck {
    pub id: String,
    pub description: String,
    pub severity: BaselineSeverity,
    #[serde(default)]
    pub remediation: Option<String>,
    #[serde(default)]
    pub file_exists: Option<String>,
    #[serde(default)]
    pub file_absent: Option<String>,
    #[serde(default)]
    pub file_mode_max: Option<FileModeMax>,
    #[serde(default)]
    pub file_contains: Option<FileContains>,
    #[serde(default)]
    pub sysctl_equals: Option<SysctlEquals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModeMax {
    pub path: String,
    /// Octal, as text (`"0640"`): JSON has no octal numbers.
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileContains {
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlEquals {
    pub name: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CustomChecksError {
    #[error("custom checks file is malformed")]
    Malformed(#[source] serde_json::Error),
    #[error("custom checks file has {count} checks, more than {limit}")]
    TooMany { count: usize, limit: usize },
}

/// Parses a custom checks file. Each check's kind is validated when it runs, so one bad entry
/// does not hide the others.
pub fn parse_custom_checks(bytes: &[u8]) -> Result<Vec<CustomCheck>, CustomChecksError> {
    let checks: Vec<CustomCheck> =
        serde_json::from_slice(bytes).map_err(CustomChecksError::Malformed)?;
    if checks.len() > MAX_CUSTOM_CHECKS {
        return Err(CustomChecksError::TooMany {
            count: checks.len(),
            limit: MAX_CUSTOM_CHECKS,
        });
    }
    Ok(checks)
}

/// Largest file `file_contains` reads.
const MAX_CONTAINS_BYTES: u64 = 4 * 1024 * 1024;

/// Runs one custom check against the host.
pub fn run_custom_check(host: &HostRoot, check: &CustomCheck) -> BaselineCheck {
    let kinds = [
        check.file_exists.is_some(),
        check.file_absent.is_some(),
        check.file_mode_max.is_some(),
        check.file_contains.is_some(),
        check.sysctl_equals.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    let outcome = if kinds != 1 {
        Outcome::Err(
            "needs exactly one of file_exists, file_absent, file_mode_max, file_contains, sysctl_equals"
                .into(),
        )
    } else if let Some(path) = &check.file_exists {
        match host_meta(host, path) {
            Ok(_) => Outcome::Pass(format!("{path} exists")),
            Err(e) if is_not_found(&e) => Outcome::Fail(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {}", e.reason())),
        }
    } else if let Some(path) = &check.file_absent {
        match host_meta(host, path) {
            Ok(_) => Outcome::Fail(format!("{path} exists")),
            Err(e) if is_not_found(&e) => Outcome::Pass(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {}", e.reason())),
        }
    } else if let Some(FileModeMax { path, mode }) = &check.file_mode_max {
        match u32::from_str_radix(mode.trim(), 8) {
            Ok(max) if max <= 0o7777 => match host_meta(host, path) {
                Ok(m) => {
                    let actual = m.mode() & 0o7777;
                    let text = format!("{path} mode {actual:04o}");
                    if actual & !max == 0 {
                        Outcome::Pass(text)
                    } else {
                        Outcome::Fail(text)
                    }
                }
                Err(e) if is_not_found(&e) => Outcome::Pass(format!("{path} not found")),
                Err(e) => Outcome::Err(format!("{path}: {}", e.reason())),
            },
            _ => Outcome::Err(format!("invalid octal mode {mode:?}")),
        }
    } else if let Some(FileContains { path, text }) = &check.file_contains {
        match read_capped(host, path, MAX_CONTAINS_BYTES) {
            Ok(bytes) => {
                let content = String::from_utf8_lossy(&bytes);
                if content.contains(text.as_str()) {
                    Outcome::Pass(format!("{path} contains the text"))
                } else {
                    Outcome::Fail(format!("{path} does not contain the text"))
                }
            }
            Err(e) if is_not_found(&e) => Outcome::Fail(format!("{path} not found")),
            Err(e) => Outcome::Err(format!("{path}: {}", e.reason())),
        }
    } else if let Some(SysctlEquals { name, value }) = &check.sysctl_equals {
        let want = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match read_sysctl(host, name) {
            Ok(Some(v)) if v == want => Outcome::Pass(format!("{name} = {v}")),
            Ok(Some(v)) => Outcome::Fail(format!("{name} = {v}")),
            Ok(None) => Outcome::Err(format!("{name} not available on this kernel")),
            Err(e) => Outcome::Err(e),
        }
    } else {
        Outcome::Err("no check kind".into())
    };
    let mut r = record(
        &Meta {
            id: "",
            description: "",
            severity: check.severity,
            remediation: "",
            reference: "",
        },
        outcome,
    );
    r.cce_id = within_bytes_marked(&check.id, 64);
    r.description = within_bytes_marked(&check.description, 512);
    match &check.remediation {
        Some(fix) => r
            .extra_details
            .insert("Remediation".into(), within_bytes_marked(fix, 512)),
        None => r.extra_details.remove("Remediation"),
    };
    r.extra_details.insert("Custom".into(), "true".into());
    r
}

/// Runs the custom checks the configuration names, or explains in one `Err` record why not.
pub fn run_custom(
    host: &HostRoot,
    enabled: bool,
    path: Option<&str>,
    hash: Option<&str>,
) -> Vec<BaselineCheck> {
    if !enabled {
        return Vec::new();
    }
    let fail = |e: String| vec![record(&CUSTOM_FILE, Outcome::Err(e))];
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        return fail("custom checks file path not set".into());
    };
    let Some(expected) = hash.map(str::trim).filter(|h| !h.is_empty()) else {
        return fail("custom checks file hash not set".into());
    };
    let bytes = match host.read(path) {
        Ok(b) => b,
        Err(e @ crate::host::Error::TooLarge { .. }) => {
            return fail(format!("custom checks file {}", e.reason()));
        }
        Err(e) => {
            return fail(format!(
                "custom checks file unreadable: {path}: {}",
                e.reason()
            ));
        }
    };
    if !sha256_hex(&bytes).eq_ignore_ascii_case(expected) {
        tracing::warn!(
            collector = COLLECTOR,
            path,
            "custom baseline checks file hash mismatch: custom checks not run"
        );
        return fail("custom checks file hash mismatch".into());
    }
    match parse_custom_checks(&bytes) {
        Ok(checks) => checks.iter().map(|c| run_custom_check(host, c)).collect(),
        Err(e) => fail(error_chain(&e)),
    }
}

/// SHA-256 of `data` as lowercase hex (the form `baselineCustomChecksFileHash` is compared in).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
