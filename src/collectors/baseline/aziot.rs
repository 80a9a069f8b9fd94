//! IoT Edge (aziot) configuration checks.

use super::{
    AZIOT_CONFIG, AZIOT_SERVICE_CONFIG, Accounts, Outcome, host_meta, is_not_found, listing,
    record, walk,
};
use crate::event::BaselineCheck;
use crate::host::{FileKind, HostRoot};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Owners the IoT Edge packages use for their configuration.
fn aziot_owner_ok(acc: &Accounts, uid: u32) -> bool {
    uid == 0
        || acc
            .name_of(uid)
            .is_some_and(|n| n.starts_with("aziot") || n.starts_with("iotedge"))
}

pub(super) fn aziot_checks(host: &HostRoot, acc: &Accounts, out: &mut Vec<BaselineCheck>) {
    let installed = match host_meta(host, "/etc/aziot") {
        Ok(m) => m.is_dir(),
        Err(_) => false,
    };
    if !installed {
        for meta in [&AZIOT_CONFIG, &AZIOT_SERVICE_CONFIG] {
            out.push(record(meta, Outcome::Pass("IoT Edge not installed".into())));
        }
        return;
    }
    let describe =
        |path: &str, m: &Metadata| format!("{path} mode {:04o} uid {}", m.mode() & 0o7777, m.uid());
    out.push(record(
        &AZIOT_CONFIG,
        match host_meta(host, "/etc/aziot/config.toml") {
            Ok(m) => {
                let actual = describe("/etc/aziot/config.toml", &m);
                if m.mode() & 0o027 == 0 && aziot_owner_ok(acc, m.uid()) {
                    Outcome::Pass(actual)
                } else {
                    Outcome::Fail(actual)
                }
            }
            Err(e) if is_not_found(&e) => Outcome::Pass("no /etc/aziot/config.toml".into()),
            Err(e) => Outcome::Err(format!("/etc/aziot/config.toml: {}", e.reason())),
        },
    ));

    // Every service directory (/etc/aziot/keyd, identityd, …) and what is inside, two levels.
    let mut roots: Vec<String> = match host.read_dir("/etc/aziot") {
        Ok(rd) => rd
            .map_while(Result::ok)
            .filter(|e| e.kind == FileKind::Dir)
            .filter_map(|e| e.name.into_string().ok())
            .map(|name| format!("/etc/aziot/{name}"))
            .take(64)
            .collect(),
        Err(e) => {
            out.push(record(
                &AZIOT_SERVICE_CONFIG,
                Outcome::Err(format!("/etc/aziot: {}", e.reason())),
            ));
            return;
        }
    };
    roots.sort();
    let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
    let w = walk(host, &roots, &[], true, 3, 1000, 5000, &mut |_, m| {
        m.mode() & 0o006 != 0 || !aziot_owner_ok(acc, m.uid())
    });
    out.push(record(
        &AZIOT_SERVICE_CONFIG,
        if w.found.is_empty() {
            Outcome::Pass(format!(
                "{} service directories, {} entries examined",
                roots.len(),
                w.entries
            ))
        } else {
            Outcome::Fail(listing(&w.found))
        },
    ));
}
