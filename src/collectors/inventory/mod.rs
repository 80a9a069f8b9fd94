//! Software inventory: which packages, in which versions, are installed on the host.
//!
//! What a fleet asks after every advisory ("which devices run the vulnerable openssl?") is
//! answered from the package managers' own databases under the host root:
//!
//! | manager | database | format |
//! |---|---|---|
//! | dpkg (Debian, Ubuntu, Raspberry Pi OS) | `/var/lib/dpkg/status` | RFC 822 stanzas |
//! | opkg (Yocto, OpenWrt) | `/var/lib/opkg/status`, `/usr/lib/opkg/status` | the same stanzas |
//! | apk (Alpine) | `/lib/apk/db/installed` | `P:`/`V:`/`A:`/`o:` lines |
//! | rpm ≥ 4.16 (Fedora 33+, RHEL 9, Yocto with rpm) | `/var/lib/rpm/rpmdb.sqlite`, `/usr/lib/sysimage/rpm/rpmdb.sqlite` (with its `-wal`) | SQLite: the `Packages` table's header blobs, read natively ([`sqlite`], [`rpm`]) |
//! | rpm < 4.16 with BerkeleyDB (RHEL/CentOS 7 and 8, older Yocto and SUSE) | `/var/lib/rpm/Packages`, `/usr/lib/sysimage/rpm/Packages` | a BerkeleyDB hash file of header blobs, read natively ([`bdb`], [`rpm`]); only when no `rpmdb.sqlite` exists (beside one it is a leftover of the conversion) |
//! | rpm with ndb (`Packages.db`, SUSE) | `/var/lib/rpm/`, `/usr/lib/sysimage/rpm/` | **not read**: a found database is named in the snapshot (`ExtraDetails.Unsupported`); the collector stays `Up` (it is not an error) |
//!
//! rpm's version is its EVR, `[epoch:]version-release` (the epoch whenever the header has one,
//! as `rpm -q --qf '%{EVR}'`), its source the source package named by SOURCERPM. rpm keeps
//! several versions of one name side by side (kernels): the version is part of a package's key,
//! and a version added beside others is `Installed`, one replaced by another `VersionChanged`.
//! rpm's WAL is read (committed transactions only), so a change still in `rpmdb.sqlite-wal`
//! is seen; the watcher stats the `-wal` too, and `Packages`. A `Packages` file is told from
//! anything else by its magic: one that is not a BerkeleyDB hash database is an error. Any
//! unreadable row (or record of `Packages`) fails the whole rpm database for that look (named
//! in `Unsupported`, collector `Degraded`): a partial list would be reported as packages
//! removed. `Packages`' record 0 (rpm's instance counter) is not a package.
//!
//! Two parts, like the account collector:
//! - [`SoftwareInventoryCollector`] (periodic, `snapshotFrequency`): one `SoftwareInventory`
//!   record per installed package (large inventories are split across messages by the pipeline);
//! - [`PackageWatcher`] (its own task): every [`WATCH_INTERVAL`] a stat of each database; when
//!   one changed and has stayed unchanged for a whole interval (a package manager rewrites its
//!   database many times during one transaction), the packages are compared with the last ones
//!   seen and one `SoftwareChange` event lists what was installed, removed or changed version.
//!   The last inventory is kept in the state directory, so what changed while the agent was
//!   stopped is reported at the next start; on the very first start nothing is reported.
//!
//! Bounds: a database larger than [`MAX_DATABASE_BYTES`] is read up to that size and at most
//! [`MAX_PACKAGES`] packages per manager are kept (both counted as `truncated` errors and
//! said in the snapshot), so a hostile database cannot exhaust memory. rpm's database (SQLite
//! or BerkeleyDB) is read page by page, never whole: files up to [`sqlite::MAX_FILE_BYTES`]
//! (main file and WAL each; [`bdb::MAX_FILE_BYTES`] is the same), one header up to
//! [`MAX_RPM_HEADER_BYTES`], every page visited at most once per walk.

pub mod bdb;
mod parse;
pub mod rpm;
pub mod sqlite;

pub use parse::{Manager, Package, parse_apk, parse_deb_status};

use super::{Context, Periodic};
use crate::event::{
    CollectorHealth, Event, ExtraDetails, Payload, SoftwareChange, SoftwareOperation,
    SoftwarePackage,
};
use crate::host::HostRoot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The collector's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "inventory";

/// How often the watcher stats the databases.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The most of one database read: Debian's status file is under 1 MiB on a server and a few
/// MiB on a desktop with thousands of packages.
pub const MAX_DATABASE_BYTES: u64 = 64 * 1024 * 1024;

/// The most packages kept per manager.
pub const MAX_PACKAGES: usize = 50_000;

/// The last inventory, in the state directory.
const STATE_FILE: &str = "packages.json";

/// Where each manager keeps its database (host paths; the first that exists is read).
const DATABASES: &[(Manager, &[&str])] = &[
    (Manager::Dpkg, &["/var/lib/dpkg/status"]),
    (
        Manager::Opkg,
        &[
            "/var/lib/opkg/status",
            "/usr/lib/opkg/status",
            "/var/opkg-lib/status",
        ],
    ),
    (Manager::Apk, &["/lib/apk/db/installed"]),
];

/// rpm's sqlite databases (rpm ≥ 4.16; Fedora links `/var/lib/rpm` to the second place), read
/// with their `-wal` (see [`sqlite`]); the first that exists is read.
const RPM_SQLITE: &[&str] = &[
    "/var/lib/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
];

/// The files whose change means rpm's database changed: in WAL mode a transaction may change
/// only the `-wal` until the next checkpoint. BerkeleyDB's `Packages` is changed in place.
const RPM_WATCHED: &[&str] = &[
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/rpmdb.sqlite-wal",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite-wal",
    "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/Packages",
];

/// rpm's BerkeleyDB databases (rpm < 4.16: RHEL/CentOS 7 and 8, older Yocto and SUSE), read
/// (see [`bdb`]) when no sqlite database exists; the first that exists is read.
const RPM_BDB: &[&str] = &["/var/lib/rpm/Packages", "/usr/lib/sysimage/rpm/Packages"];

/// rpm's ndb databases (`Packages.db`, SUSE): found and named ([`UNSUPPORTED`]), not read.
const RPM_UNSUPPORTED: &[&str] = &[
    "/var/lib/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/Packages.db",
];

/// What an unsupported rpm database is said to be (not an error: the collector stays `Up`).
const UNSUPPORTED: &str = "rpm ndb database found, not read";

/// The largest rpm header read (one row or record of `Packages`): the biggest real ones (long
/// file lists) are a few MiB.
pub const MAX_RPM_HEADER_BYTES: u64 = 32 * 1024 * 1024;

/// Packages keyed by (manager, name, architecture, version): dpkg's multi-arch installs one
/// name for several architectures, rpm several versions of one name (kernels).
pub type Packages = BTreeMap<(Manager, String, String, String), Package>;

/// What one look at the host's package databases found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The managers whose database was read (a manager absent here is not compared).
    pub managers: Vec<Manager>,
    #[serde(with = "packages_as_list")]
    pub packages: Packages,
    /// Databases found that cannot be read (rpm's ndb), or could not be (errors), by host
    /// path.
    #[serde(skip)]
    pub unreadable: Vec<String>,
    /// Databases cut at [`MAX_DATABASE_BYTES`] or [`MAX_PACKAGES`].
    #[serde(skip)]
    pub truncated: Vec<String>,
}

/// The package map as a list in the state file (JSON keys must be strings).
mod packages_as_list {
    use super::{Package, Packages};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(p: &Packages, s: S) -> Result<S::Ok, S::Error> {
        p.values().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Packages, D::Error> {
        Ok(Vec::<Package>::deserialize(d)?
            .into_iter()
            .map(|p| (p.key(), p))
            .collect())
    }
}

/// Reads every database under the host root.
pub fn read_inventory(host: &HostRoot) -> Inventory {
    let mut inv = Inventory::default();
    for (manager, paths) in DATABASES {
        let Some((path, file)) = paths.iter().find_map(|p| match host.open(p) {
            Ok((file, _)) => Some((*p, file)),
            Err(e) => {
                if !e.is_not_found() {
                    inv.unreadable.push(format!("{p}: {}", e.reason()));
                }
                None
            }
        }) else {
            continue;
        };
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_DATABASE_BYTES + 1).read_to_end(&mut bytes) {
            inv.unreadable.push(format!("{path}: {e}"));
            continue;
        }
        if bytes.len() as u64 > MAX_DATABASE_BYTES {
            bytes.truncate(MAX_DATABASE_BYTES as usize);
            inv.truncated.push(path.to_string());
        }
        let text = String::from_utf8_lossy(&bytes);
        let parsed = match manager {
            Manager::Apk => parse_apk(&text),
            _ => parse_deb_status(&text, *manager),
        };
        if parsed.len() > MAX_PACKAGES && !inv.truncated.iter().any(|t| t == path) {
            inv.truncated.push(path.to_string());
        }
        inv.managers.push(*manager);
        for p in parsed.into_iter().take(MAX_PACKAGES) {
            inv.packages.insert(p.key(), p);
        }
    }
    // rpm's sqlite database; else (rpm < 4.16) its BerkeleyDB one. rpm ≥ 4.16 reads only the
    // sqlite one when it exists, and a `Packages` beside it is what the conversion left.
    let mut sqlite_found = false;
    for p in RPM_SQLITE {
        let (file, meta) = match host.open(p) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                sqlite_found = true;
                inv.unreadable.push(format!("{p}: {}", e.reason()));
                break;
            }
        };
        sqlite_found = true;
        let wal_path = format!("{p}-wal");
        let wal = match host.open(&wal_path) {
            Ok((wal, m)) => Some((wal, m.len())),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                inv.unreadable.push(format!("{wal_path}: {}", e.reason()));
                break;
            }
        };
        let read = sqlite::Db::open(file, meta.len(), wal)
            .map_err(|e| e.to_string())
            .and_then(read_rpm);
        add_rpm(&mut inv, p, read);
        break;
    }
    let bdb_paths: &[&str] = if sqlite_found { &[] } else { RPM_BDB };
    for p in bdb_paths {
        let (file, meta) = match host.open(p) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                inv.unreadable.push(format!("{p}: {}", e.reason()));
                break;
            }
        };
        let read = bdb::Db::open(file, meta.len())
            .map_err(|e| e.to_string())
            .and_then(read_rpm_bdb_db);
        add_rpm(&mut inv, p, read);
        break;
    }
    for p in RPM_UNSUPPORTED {
        if host.symlink_metadata(p).is_ok() {
            inv.unreadable.push(format!("{p}: {UNSUPPORTED}"));
        }
    }
    inv
}

/// Adds what reading the rpm database at `path` gave.
fn add_rpm(inv: &mut Inventory, path: &str, read: Result<(Vec<Package>, bool), String>) {
    match read {
        Ok((packages, truncated)) => {
            if truncated {
                inv.truncated.push(path.to_string());
            }
            inv.managers.push(Manager::Rpm);
            for p in packages {
                inv.packages.insert(p.key(), p);
            }
        }
        Err(e) => inv.unreadable.push(format!("{path}: {e}")),
    }
}

/// Packages taken from an rpm database's records, one header at a time: at most
/// [`MAX_PACKAGES`] (more is `truncated`), and the first unreadable record fails the whole
/// database, since a partial list would be reported as packages removed.
#[derive(Default)]
struct RpmRecords {
    packages: Vec<Package>,
    truncated: bool,
    bad: Option<String>,
}

impl RpmRecords {
    /// Takes record `hnum`'s header (or why it could not be read); false stops the walk.
    fn take(&mut self, hnum: impl fmt::Display, header: Result<Package, String>) -> bool {
        if self.packages.len() >= MAX_PACKAGES {
            self.truncated = true;
            return false;
        }
        match header {
            Ok(p) => self.packages.push(p),
            Err(e) => self.bad = Some(format!("package {hnum}: {e}")),
        }
        self.bad.is_none()
    }

    fn finish(self) -> Result<(Vec<Package>, bool), String> {
        match self.bad {
            Some(e) => Err(e),
            None => Ok((self.packages, self.truncated)),
        }
    }
}

/// The packages of an rpm sqlite database (at most [`MAX_PACKAGES`]; true when there were
/// more), as [`RpmRecords`] takes them.
fn read_rpm<R: sqlite::ReadAt>(db: sqlite::Db<R>) -> Result<(Vec<Package>, bool), String> {
    let root = db.table_root("Packages").map_err(|e| e.to_string())?;
    let mut records = RpmRecords::default();
    db.for_each_row(root, MAX_RPM_HEADER_BYTES, |hnum, record| {
        let header = match sqlite::column(record, 1) {
            Ok(sqlite::Value::Blob(blob)) => rpm::parse_header(blob).map_err(|e| e.to_string()),
            Ok(_) => Err("not a blob".to_string()),
            Err(e) => Err(e.to_string()),
        };
        records.take(hnum, header)
    })
    .map_err(|e| e.to_string())?;
    records.finish()
}

/// The packages of an rpm sqlite database given as bytes (its main file and `-wal`), as
/// [`read_inventory`] reads them from the host (fuzzing, tests).
pub fn read_rpm_sqlite(main: &[u8], wal: Option<&[u8]>) -> Result<Vec<Package>, String> {
    let db = sqlite::Db::open(main, main.len() as u64, wal.map(|w| (w, w.len() as u64)))
        .map_err(|e| e.to_string())?;
    read_rpm(db).map(|(p, _)| p)
}

/// The packages of an rpm BerkeleyDB database (at most [`MAX_PACKAGES`]; true when there were
/// more), skipping record 0 (rpm's instance counter), as [`RpmRecords`] takes them.
fn read_rpm_bdb_db<R: bdb::ReadAt>(db: bdb::Db<R>) -> Result<(Vec<Package>, bool), String> {
    let mut records = RpmRecords::default();
    db.for_each(MAX_RPM_HEADER_BYTES, |key, value| {
        // The header instance, in the byte order of the host that wrote the file.
        let hnum = match db.u32(key, 0) {
            Some(n) if key.len() == 4 => n,
            _ => {
                records.bad = Some(format!("a key of {} bytes", key.len()));
                return false;
            }
        };
        if hnum == 0 {
            return true;
        }
        records.take(hnum, rpm::parse_header(value).map_err(|e| e.to_string()))
    })
    .map_err(|e| e.to_string())?;
    records.finish()
}

/// The packages of an rpm BerkeleyDB database (`Packages`) given as bytes, as
/// [`read_inventory`] reads it from the host (fuzzing, tests).
pub fn read_rpm_bdb(file: &[u8]) -> Result<Vec<Package>, String> {
    let db = bdb::Db::open(file, file.len() as u64).map_err(|e| e.to_string())?;
    read_rpm_bdb_db(db).map(|(p, _)| p)
}

fn record(p: &Package) -> SoftwarePackage {
    SoftwarePackage {
        name: p.name.clone(),
        version: p.version.clone(),
        architecture: p.architecture.clone(),
        package_manager: p.manager.as_str().to_string(),
        source: p.source.clone(),
        extra_details: ExtraDetails::new(),
    }
}

/// The periodic `SoftwareInventory` snapshot.
pub struct SoftwareInventoryCollector;

impl Periodic for SoftwareInventoryCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let inv = read_inventory(host);
        let mut records: Vec<SoftwarePackage> = inv.packages.values().map(record).collect();
        if !inv.unreadable.is_empty() || !inv.truncated.is_empty() {
            tracing::warn!(collector = COLLECTOR, unreadable = ?inv.unreadable, truncated = ?inv.truncated, "package databases not (fully) read");
        }
        if inv.managers.is_empty() && inv.unreadable.is_empty() {
            // No package manager at all (a scratch or busybox image): say so once per snapshot
            // with an empty snapshot rather than nothing.
            return vec![Event::empty_snapshot(
                crate::event::EventKind::SoftwareInventory,
            )];
        }
        // Which databases were read and which not go with the first record, so a query can
        // tell "no openssl" from "could not look".
        if let Some(first) = records.first_mut() {
            let managers: Vec<&str> = inv.managers.iter().map(|m| m.as_str()).collect();
            first
                .extra_details
                .insert("Managers".into(), managers.join(","));
            if !inv.unreadable.is_empty() {
                first
                    .extra_details
                    .insert("Unsupported".into(), inv.unreadable.join("; "));
            }
            if !inv.truncated.is_empty() {
                first
                    .extra_details
                    .insert("Truncated".into(), inv.truncated.join(","));
            }
        }
        vec![Event::new(Payload::SoftwareInventory(records))]
    }
}

/// The changes from `old` to `new`, for the managers read both times. Packages are compared
/// by manager, name and architecture: one version replaced by another is `VersionChanged`;
/// anything else (rpm's side-by-side kernels: one more, one fewer) is `Installed` and
/// `Removed` per version.
pub fn diff(old: &Inventory, new: &Inventory) -> Vec<SoftwareChange> {
    let compared = |m: &Manager| old.managers.contains(m) && new.managers.contains(m);
    type Versions<'a> = (Vec<&'a Package>, Vec<&'a Package>);
    let mut groups: BTreeMap<(Manager, &str, &str), Versions> = BTreeMap::new();
    for (inv, after) in [(old, false), (new, true)] {
        for p in inv.packages.values().filter(|p| compared(&p.manager)) {
            let g = groups
                .entry((p.manager, &p.name, &p.architecture))
                .or_default();
            if after { g.1.push(p) } else { g.0.push(p) }
        }
    }
    let mut out = Vec::new();
    for (before, after) in groups.into_values() {
        let gone: Vec<&Package> = before
            .iter()
            .filter(|o| !after.iter().any(|n| n.version == o.version))
            .copied()
            .collect();
        let came: Vec<&Package> = after
            .iter()
            .filter(|n| !before.iter().any(|o| o.version == n.version))
            .copied()
            .collect();
        if let ([o], [n]) = (gone.as_slice(), came.as_slice()) {
            out.push(change(
                SoftwareOperation::VersionChanged,
                n,
                Some(o.version.clone()),
            ));
            continue;
        }
        out.extend(
            came.iter()
                .map(|n| change(SoftwareOperation::Installed, n, None)),
        );
        out.extend(
            gone.iter()
                .map(|o| change(SoftwareOperation::Removed, o, None)),
        );
    }
    out
}

fn change(operation: SoftwareOperation, p: &Package, previous: Option<String>) -> SoftwareChange {
    SoftwareChange {
        operation,
        name: p.name.clone(),
        version: p.version.clone(),
        previous_version: previous,
        architecture: p.architecture.clone(),
        package_manager: p.manager.as_str().to_string(),
        extra_details: ExtraDetails::new(),
    }
}

/// Identity of every database file (inode, size, modification time), to notice changes with
/// a stat.
type Stamp = Vec<Option<(u64, u64, i64, i64)>>;

fn stamp(host: &HostRoot) -> Stamp {
    DATABASES
        .iter()
        .flat_map(|(_, paths)| paths.iter())
        .chain(RPM_WATCHED)
        .map(|p| {
            host.metadata(p)
                .ok()
                .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

fn load_state(path: &Path) -> Option<Inventory> {
    crate::state::read_json_or_warn(
        path,
        COLLECTOR,
        "cannot read the saved package list; changes made while stopped are not reported",
        "saved package list is corrupt; changes made while stopped are not reported",
    )
}

fn save_state(path: &Path, inv: &Inventory) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(inv).map_err(std::io::Error::other)?;
    crate::state::write_atomic(path, &bytes)
}

/// The package watcher as the registry lists it: [`watch`] as a task.
pub struct PackageWatcher;

impl super::Triggered for PackageWatcher {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<super::Running> {
        Ok(super::Running::task(watch_every(ctx, WATCH_INTERVAL)))
    }
}

/// Until `ctx.cancel`: one `SoftwareChange` event per settled change of the package databases.
pub async fn watch_every(ctx: Context, interval: Duration) {
    let state_path = ctx.state_dir.join(STATE_FILE);
    let path = state_path.clone();
    let mut last = tokio::task::spawn_blocking(move || load_state(&path))
        .await
        .unwrap_or_default();
    // The stamp the last inventory was read at, and one seen since that has not settled yet.
    let mut read_at: Option<Stamp> = None;
    let mut pending: Option<Stamp> = None;
    let mut degraded = false;
    loop {
        let host = ctx.host.clone();
        let now = tokio::task::spawn_blocking(move || stamp(&host)).await;
        let Ok(now) = now else {
            ctx.metrics.error(COLLECTOR, "panic");
            return;
        };
        // Read at start, and when a change has held still for one interval.
        let settled =
            read_at.is_none() || (Some(&now) != read_at.as_ref() && pending.as_ref() == Some(&now));
        if Some(&now) != read_at.as_ref() {
            pending = Some(now.clone());
        }
        if settled {
            let host = ctx.host.clone();
            let Ok(inv) = tokio::task::spawn_blocking(move || read_inventory(&host)).await else {
                ctx.metrics.error(COLLECTOR, "panic");
                return;
            };
            let unreadable = inv.unreadable.iter().any(|u| !u.ends_with(UNSUPPORTED));
            if unreadable != degraded {
                degraded = unreadable;
                if degraded {
                    ctx.metrics.error(COLLECTOR, "read");
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Degraded,
                        format!("cannot read {}", inv.unreadable.join("; ")),
                        Some("retrying when the database changes"),
                    );
                } else {
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Up,
                        "reading the package databases again",
                        None,
                    );
                }
            }
            if !inv.truncated.is_empty() {
                ctx.metrics.error(COLLECTOR, "truncated");
            }
            let changes = last.as_ref().map(|old| diff(old, &inv)).unwrap_or_default();
            if !changes.is_empty() {
                tracing::info!(
                    collector = COLLECTOR,
                    changes = changes.len(),
                    "installed packages changed"
                );
                let event = Event::new(Payload::SoftwareChange(changes));
                tokio::select! {
                    sent = ctx.emit(COLLECTOR, event) => if !sent { return },
                    // Not saved: the change is reported again at the next start.
                    _ = ctx.cancel.cancelled() => return,
                }
            }
            if last.as_ref() != Some(&inv) {
                let path = state_path.clone();
                let save = inv.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || save_state(&path, &save)).await
                {
                    ctx.metrics.error(COLLECTOR, "state_write");
                    tracing::warn!(collector = COLLECTOR, error = %e, "cannot save the package list; a restart may miss or repeat changes");
                }
            }
            last = Some(inv);
            read_at = Some(now);
            pending = None;
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests;
