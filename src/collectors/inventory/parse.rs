//! Package database parsers: dpkg/opkg status stanzas and apk's installed database (rpm's
//! headers are in `rpm.rs`). Both are text a root process on the host writes; anything
//! malformed is skipped, never a panic.

use serde::{Deserialize, Serialize};

/// The package manager a package was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Manager {
    Dpkg,
    Opkg,
    Apk,
    Rpm,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Dpkg => "dpkg",
            Manager::Opkg => "opkg",
            Manager::Apk => "apk",
            Manager::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub manager: Manager,
    pub name: String,
    pub version: String,
    /// Empty when the database does not say.
    pub architecture: String,
    /// The source package (dpkg/opkg `Source:`) or origin (apk `o:`), when it differs.
    pub source: Option<String>,
}

impl Package {
    /// Its key in [`super::Packages`]: the version is part of it because rpm installs several
    /// versions of one name and architecture side by side (kernels, `gpg-pubkey`).
    pub fn key(&self) -> (Manager, String, String, String) {
        (
            self.manager,
            self.name.clone(),
            self.architecture.clone(),
            self.version.clone(),
        )
    }
}

/// The longest field value kept (a hostile database may hold megabytes in one field).
const MAX_FIELD: usize = 256;

pub(super) fn bounded(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Whether a dpkg/opkg `Status:` (`want flag status`) means the package's files are on disk.
/// `unpacked` and `half-configured` count (an upgrade passes through them with the new version
/// in place); `not-installed` and `config-files` (removed, configuration kept) do not.
fn present(status: &str) -> bool {
    match status.split_whitespace().nth(2) {
        Some("not-installed") | Some("config-files") | None => false,
        Some(_) => true,
    }
}

/// Parses a dpkg (or opkg) status file: stanzas separated by blank lines, `Field: value`
/// lines, continuation lines starting with a space. A stanza without a package name or version,
/// or whose status says it is not installed, is skipped.
pub fn parse_deb_status(text: &str, manager: Manager) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut source, mut status) =
            (None, None, None, None, None);
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            match field {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Architecture" => arch = Some(value),
                "Source" => source = Some(value),
                "Status" => status = Some(value),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        // opkg writes installed packages only, some versions without a Status line.
        if status.is_some_and(|s| !present(s)) {
            continue;
        }
        let name = bounded(name);
        if name.is_empty() {
            continue;
        }
        // `Source: openssl (3.0.11-1)`: the source package name, without its version.
        let source = source
            .map(|s| bounded(s.split_whitespace().next().unwrap_or("")))
            .filter(|s| !s.is_empty() && *s != name);
        out.push(Package {
            manager,
            name,
            version: bounded(version),
            architecture: arch.map(bounded).unwrap_or_default(),
            source,
        });
    }
    out
}

/// Parses apk's installed database: one block per package, `X:value` lines (`P` name,
/// `V` version, `A` architecture, `o` origin), blocks separated by blank lines.
pub fn parse_apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
        for line in block.lines() {
            match line.split_once(':') {
                Some(("P", v)) => name = Some(v),
                Some(("V", v)) => version = Some(v),
                Some(("A", v)) => arch = Some(v),
                Some(("o", v)) => origin = Some(v),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        let name = bounded(name);
        if name.is_empty() {
            continue;
        }
        let source = origin.map(bounded).filter(|o| !o.is_empty() && *o != name);
        out.push(Package {
            manager: Manager::Apk,
            name,
            version: bounded(version),
            architecture: arch.map(bounded).unwrap_or_default(),
            source,
        });
    }
    out
}
