//! Kernel modules: `/proc/modules` read and compared, and module uevents turned into
//! `KernelModule` records.
//!
//! A kernel built without `CONFIG_MODULES` has neither `/proc/modules` nor module uevents;
//! then there is nothing to watch and nothing is reported (not an error).

use super::sysfs::{Problems, clean};
use crate::event::{ExtraDetails, KernelModule, ModuleAction};
use crate::host::HostRoot;
use std::collections::BTreeMap;

pub const PROC_MODULES: &str = "/proc/modules";

/// Most modules kept from `/proc/modules` (a distribution kernel with everything loaded has a
/// few hundred; more is not a real list).
pub const MAX_MODULES: usize = 4096;

/// What `/proc/modules` says of one module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleInfo {
    pub size: Option<u64>,
    /// `Live`, `Loading`, `Unloading`.
    pub state: Option<String>,
    /// Taint flags (`O` out of tree, `E` unsigned, `P` proprietary, …), without parentheses.
    pub taint: Option<String>,
}

/// Modules by name.
pub type Modules = BTreeMap<String, ModuleInfo>;

/// Parses `/proc/modules`: `name size refcount deps state address [(taint)]` per line. Lines
/// that do not fit are skipped (counted in the second value); at most [`MAX_MODULES`].
pub fn parse_proc_modules(text: &str) -> (Modules, usize) {
    let mut modules = Modules::new();
    let mut skipped = 0;
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(name), Some(size)) = (f.next(), f.next()) else {
            skipped += usize::from(!line.trim().is_empty());
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            skipped += 1;
            continue;
        };
        if !is_module_name(name) {
            skipped += 1;
            continue;
        }
        if modules.len() >= MAX_MODULES {
            skipped += 1;
            continue;
        }
        let rest: Vec<&str> = f.collect();
        let state = rest.get(2).map(|s| clean(s));
        let taint = rest
            .get(4)
            .and_then(|t| t.strip_prefix('(')?.strip_suffix(')'))
            .map(clean);
        modules.insert(
            name.to_string(),
            ModuleInfo {
                size: Some(size),
                state,
                taint,
            },
        );
    }
    (modules, skipped)
}

/// Module names are C identifiers (the kernel turns `-` into `_`), at most 56 bytes.
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads `/proc/modules`; `None` when the kernel has no modules support (the file is absent).
pub fn read(host: &HostRoot, problems: &mut Problems) -> Option<Modules> {
    match host.read_to_string(PROC_MODULES) {
        Ok(text) => {
            let (modules, skipped) = parse_proc_modules(&text);
            if skipped > 0 {
                problems.add("module_line", || {
                    format!("{PROC_MODULES}: {skipped} lines not understood")
                });
            }
            Some(modules)
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            problems.add(e.error_type().unwrap_or("read"), || e.to_string());
            None
        }
    }
}

/// A module's taint flags from `/sys/module/<name>/taint` (where `/proc/modules` has none).
pub fn sys_taint(host: &HostRoot, name: &str, problems: &mut Problems) -> Option<String> {
    if !is_module_name(name) {
        return None;
    }
    let mut sysfs = super::sysfs::Sysfs::new(host);
    let taint = sysfs.attr(&format!("/sys/module/{name}/taint"));
    for (k, n) in sysfs.problems.counts {
        *problems.counts.entry(k).or_default() += n;
    }
    if problems.first.is_none() {
        problems.first = sysfs.problems.first;
    }
    taint
}

/// The record of one module loaded or removed. `source` is `uevent` or `proc_modules`.
pub fn record(
    name: &str,
    action: ModuleAction,
    info: Option<&ModuleInfo>,
    source: &str,
) -> KernelModule {
    let mut extra = ExtraDetails::new();
    extra.insert("Source".into(), source.into());
    if let Some(info) = info {
        if let Some(s) = &info.state {
            extra.insert("State".into(), s.clone());
        }
        if let Some(t) = info.taint.as_deref().filter(|t| !t.is_empty()) {
            extra.insert("Taint".into(), t.to_string());
            // The kernel's own words for the flags that matter most here.
            if t.contains('E') {
                extra.insert("Unsigned".into(), "true".into());
            }
            if t.contains('O') {
                extra.insert("OutOfTree".into(), "true".into());
            }
            if t.contains('P') {
                extra.insert("Proprietary".into(), "true".into());
            }
        }
    }
    KernelModule {
        name: name.to_string(),
        action,
        size: info.and_then(|i| i.size),
        extra_details: extra,
    }
}

/// What changed between two lists: loaded (in `new` only) and removed (in `old` only) modules,
/// in name order.
pub fn diff(old: &Modules, new: &Modules, source: &str) -> Vec<KernelModule> {
    let mut out = Vec::new();
    for (name, info) in new {
        if !old.contains_key(name) {
            out.push(record(name, ModuleAction::Loaded, Some(info), source));
        }
    }
    for (name, info) in old {
        if !new.contains_key(name) {
            out.push(record(name, ModuleAction::Removed, Some(info), source));
        }
    }
    out
}
