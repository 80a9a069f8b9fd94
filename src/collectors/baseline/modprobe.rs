//! Kernel modules that should not load: uncommon network protocols, uncommon filesystems, USB
//! storage. A module is disabled by `install <m> /bin/false` (or `/bin/true`, or any `false`/`true`
//! binary) or `blacklist <m>` in a modprobe configuration file, or by not being in the kernel at
//! all (not in `modules.dep`/`modules.builtin`, or no `/lib/modules/<release>`: a monolithic
//! kernel loads nothing; a module built into it is not seen then); a module loaded right now
//! fails whatever the configuration says.

use super::{MODULE_RULES, Meta, Outcome, glob_match, read_capped, record};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use crate::text::error_chain;

pub(super) struct ModuleRule {
    pub(super) name: &'static str,
    /// Not applicable while the module is in use (squashfs carries snaps and read-only images).
    pub(super) na_in_use: bool,
    pub(super) meta: Meta,
}

/// Where modprobe reads its configuration (`*.conf` in each), in modprobe's order.
const MODPROBE_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];
/// Configuration files read in all, and bytes read of each.
const MAX_MODPROBE_FILES: usize = 512;
const MAX_MODPROBE_BYTES: u64 = 256 * 1024;
/// Bytes read of `modules.dep` / `modules.builtin` (a distribution kernel's is about 1 MiB).
const MAX_MODULES_LIST_BYTES: u64 = 8 * 1024 * 1024;

/// Module names treat `-` and `_` alike.
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// What the modprobe configuration says about modules.
#[derive(Debug, Default)]
pub(super) struct ModprobeConfig {
    /// Normalised name → the disabling directive (`install dccp /bin/false`, `blacklist dccp`).
    disabled: Vec<(String, String)>,
    pub(super) files: usize,
}

pub(super) fn parse_modprobe(cfg: &mut ModprobeConfig, text: &str) {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("blacklist"), Some(m), _) => {
                cfg.disabled.push((norm(m), format!("blacklist {m}")));
            }
            (Some("install"), Some(m), Some(cmd))
                if cmd
                    .rsplit('/')
                    .next()
                    .is_some_and(|b| b == "false" || b == "true") =>
            {
                cfg.disabled.push((norm(m), format!("install {m} {cmd}")));
            }
            _ => {}
        }
    }
}

fn load_modprobe(host: &HostRoot) -> ModprobeConfig {
    let mut cfg = ModprobeConfig::default();
    for dir in MODPROBE_DIRS {
        let Ok(rd) = host.read_dir(dir) else { continue };
        let mut names: Vec<String> = rd
            .map_while(Result::ok)
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| glob_match("*.conf", n))
            .take(MAX_MODPROBE_FILES)
            .collect();
        names.sort();
        for n in names {
            if cfg.files >= MAX_MODPROBE_FILES {
                return cfg;
            }
            if let Ok(bytes) = read_capped(host, &format!("{dir}/{n}"), MAX_MODPROBE_BYTES) {
                cfg.files += 1;
                parse_modprobe(&mut cfg, &String::from_utf8_lossy(&bytes));
            }
        }
    }
    cfg
}

/// What the host says about this kernel's modules.
enum KernelModules {
    /// The text of `modules.dep` and `modules.builtin`.
    Listed(String),
    /// No `/lib/modules/<release>` at all: nothing can be loaded (a monolithic kernel).
    NoneLoadable(String),
    /// The release or the lists could not be read.
    Unknown,
}

fn kernel_modules(host: &HostRoot) -> KernelModules {
    let Ok(release) = host.read_to_string("/proc/sys/kernel/osrelease") else {
        return KernelModules::Unknown;
    };
    let release = release.trim();
    if release.is_empty() || release.contains('/') {
        return KernelModules::Unknown;
    }
    let dirs: Vec<String> = ["/lib/modules", "/usr/lib/modules"]
        .iter()
        .map(|b| format!("{b}/{release}"))
        .collect();
    if !dirs.iter().any(|d| super::exists(host, d)) {
        return KernelModules::NoneLoadable(release.to_string());
    }
    let mut all = String::new();
    for list in ["modules.dep", "modules.builtin"] {
        for dir in &dirs {
            if let Ok(b) = read_capped(host, &format!("{dir}/{list}"), MAX_MODULES_LIST_BYTES) {
                all.push_str(&String::from_utf8_lossy(&b));
                break;
            }
        }
    }
    if all.is_empty() {
        KernelModules::Unknown
    } else {
        KernelModules::Listed(all)
    }
}

/// Whether the kernel's module lists name `module` (`…/dccp.ko`, `…/dccp.ko.zst`).
fn kernel_has(list: &str, module: &str) -> bool {
    let want = norm(module);
    list.lines().any(|l| {
        let path = l.split(':').next().unwrap_or("");
        let file = path.rsplit('/').next().unwrap_or("");
        file.split(".ko").next().is_some_and(|n| norm(n) == want) && file.contains(".ko")
    })
}

pub(super) fn module_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let cfg = load_modprobe(host);
    let loaded = host.read_to_string("/proc/modules");
    let loaded: Result<Vec<String>, String> = match loaded {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(norm)
            .collect()),
        // A kernel without module support loads nothing.
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(error_chain(&e)),
    };
    let available = kernel_modules(host);
    let mounts = host.read_to_string("/proc/1/mountinfo").unwrap_or_default();
    for rule in MODULE_RULES {
        let name = norm(rule.name);
        let directive = cfg.disabled.iter().find(|(m, _)| *m == name);
        let outcome = match &loaded {
            Err(e) => Outcome::Err(format!("/proc/modules: {e}")),
            Ok(loaded) => {
                let is_loaded = loaded.contains(&name);
                let in_use = is_loaded || mounts.contains(&format!(" - {} ", rule.name));
                if rule.na_in_use && in_use && directive.is_none() {
                    Outcome::NotApplicable(format!("{} is in use on this host", rule.name))
                } else if is_loaded {
                    Outcome::Fail(format!("{} is loaded", rule.name))
                } else if let Some((_, d)) = directive {
                    Outcome::Pass(d.clone())
                } else if let KernelModules::Listed(l) = &available
                    && !kernel_has(l, rule.name)
                {
                    Outcome::Pass(format!("{} is not in this kernel", rule.name))
                } else if let KernelModules::NoneLoadable(release) = &available {
                    Outcome::Pass(format!(
                        "kernel {release} has no loadable modules (no /lib/modules/{release})"
                    ))
                } else {
                    Outcome::Fail(format!(
                        "{} can be loaded ({} modprobe files read)",
                        rule.name, cfg.files
                    ))
                }
            }
        };
        out.push(record(&rule.meta, outcome));
    }
}
