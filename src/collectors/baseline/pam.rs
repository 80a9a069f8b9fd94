//! PAM password policy: quality (pam_pwquality / pam_cracklib and pwquality.conf), lockout
//! (pam_faillock / pam_tally2 and faillock.conf), reuse (pam_pwhistory / pam_unix remember) and
//! the hashing pam_unix uses. Read from the stacks every login includes: Debian's
//! `common-password` and `common-auth`, Red Hat's `system-auth` and `password-auth`.

use super::{
    Outcome, PAM_COMPLEXITY, PAM_HASH, PAM_LOCKOUT, PAM_MINLEN, PAM_QUALITY, PAM_REMEMBER,
    PAM_UNLOCK, read_capped, record,
};
use crate::event::BaselineCheck;
use crate::host::HostRoot;
use std::collections::HashMap;

const PAM_STACKS: &[&str] = &[
    "/etc/pam.d/common-password",
    "/etc/pam.d/common-auth",
    "/etc/pam.d/system-auth",
    "/etc/pam.d/password-auth",
];
/// Bytes read of each PAM or module configuration file.
const MAX_PAM_BYTES: u64 = 128 * 1024;

/// One PAM rule: its type (`password`, `auth`), module file name and `key=value` / flag args.
#[derive(Debug)]
pub(super) struct PamLine {
    pub(super) kind: String,
    pub(super) module: String,
    pub(super) args: HashMap<String, String>,
}

/// Parses a PAM stack; `[...]` controls may contain spaces, `-type` lines count as `type`.
pub(super) fn parse_pam(text: &str) -> Vec<PamLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut rest = line;
        let Some((kind, after)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        rest = after.trim_start();
        // The control: a word, or a bracketed list.
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = rest[end + 1..].trim_start();
        } else {
            rest = rest
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r.trim_start());
        }
        let mut words = rest.split_whitespace();
        let Some(module) = words.next() else { continue };
        let args = words
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (w.to_string(), String::new()),
            })
            .collect();
        out.push(PamLine {
            kind: kind.trim_start_matches('-').to_ascii_lowercase(),
            module: module.rsplit('/').next().unwrap_or(module).to_string(),
            args,
        });
    }
    out
}

/// `key = value` settings of a module's own file and its `.d` directory (later wins).
fn module_conf(host: &HostRoot, file: &str) -> HashMap<String, String> {
    let mut values = HashMap::new();
    let mut texts = Vec::new();
    if let Ok(b) = read_capped(host, file, MAX_PAM_BYTES) {
        texts.push(String::from_utf8_lossy(&b).into_owned());
    }
    if let Ok(rd) = host.read_dir(format!("{file}.d")) {
        let mut names: Vec<String> = rd
            .map_while(Result::ok)
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| n.ends_with(".conf"))
            .take(64)
            .collect();
        names.sort();
        for n in names {
            if let Ok(b) = read_capped(host, &format!("{file}.d/{n}"), MAX_PAM_BYTES) {
                texts.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
    }
    for t in texts {
        for line in t.lines() {
            let l = line.trim();
            if l.starts_with('#') {
                continue;
            }
            match l.split_once('=') {
                Some((k, v)) => values.insert(k.trim().to_string(), v.trim().to_string()),
                None if !l.is_empty() => values.insert(l.to_string(), String::new()),
                None => None,
            };
        }
    }
    values
}

fn num(v: Option<&String>) -> Option<i64> {
    v.and_then(|v| v.parse().ok())
}

pub(super) fn pam_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let mut lines = Vec::new();
    let mut read = Vec::new();
    for stack in PAM_STACKS {
        if let Ok(b) = read_capped(host, stack, MAX_PAM_BYTES) {
            lines.extend(parse_pam(&String::from_utf8_lossy(&b)));
            read.push(*stack);
        }
    }
    let metas = [
        &PAM_QUALITY,
        &PAM_MINLEN,
        &PAM_COMPLEXITY,
        &PAM_LOCKOUT,
        &PAM_UNLOCK,
        &PAM_REMEMBER,
        &PAM_HASH,
    ];
    if read.is_empty() {
        for meta in metas {
            out.push(record(
                meta,
                Outcome::Pass("no PAM password stack (common-password, system-auth)".into()),
            ));
        }
        return;
    }
    let find = |kind: &str, modules: &[&str]| {
        lines
            .iter()
            .find(|l| l.kind == kind && modules.contains(&l.module.as_str()))
    };
    let verdict = |ok: bool, actual: String| {
        if ok {
            Outcome::Pass(actual)
        } else {
            Outcome::Fail(actual)
        }
    };

    // Quality: the module's arguments override pwquality.conf.
    let quality = find("password", &["pam_pwquality.so", "pam_cracklib.so"]);
    out.push(record(
        &PAM_QUALITY,
        match quality {
            Some(l) => Outcome::Pass(format!("{} in {}", l.module, read.join(", "))),
            None => Outcome::Fail(format!(
                "no pam_pwquality or pam_cracklib in {}",
                read.join(", ")
            )),
        },
    ));
    let mut settings = if quality.is_some_and(|l| l.module == "pam_pwquality.so") {
        module_conf(host, "/etc/security/pwquality.conf")
    } else {
        HashMap::new()
    };
    if let Some(l) = quality {
        settings.extend(l.args.clone());
    }
    let default_minlen = if quality.is_some_and(|l| l.module == "pam_cracklib.so") {
        9
    } else {
        8
    };
    let minlen = num(settings.get("minlen")).unwrap_or(default_minlen);
    out.push(record(
        &PAM_MINLEN,
        match quality {
            None => Outcome::Fail("no password quality module".into()),
            Some(_) => verdict(minlen >= 14, format!("minlen {minlen}")),
        },
    ));
    let minclass = num(settings.get("minclass")).unwrap_or(0);
    let credits: Vec<i64> = ["dcredit", "ucredit", "lcredit", "ocredit"]
        .iter()
        .map(|k| num(settings.get(*k)).unwrap_or(0))
        .collect();
    out.push(record(
        &PAM_COMPLEXITY,
        match quality {
            None => Outcome::Fail("no password quality module".into()),
            Some(_) => verdict(
                minclass >= 4 || credits.iter().all(|c| *c <= -1),
                format!(
                    "minclass {minclass}, dcredit {}, ucredit {}, lcredit {}, ocredit {}",
                    credits[0], credits[1], credits[2], credits[3]
                ),
            ),
        },
    ));

    // Lockout: pam_faillock (faillock.conf defaults deny 3, unlock_time 600) or pam_tally2.
    let lockout = find("auth", &["pam_faillock.so", "pam_tally2.so"]);
    let mut lock = match lockout {
        Some(l) if l.module == "pam_faillock.so" => {
            module_conf(host, "/etc/security/faillock.conf")
        }
        _ => HashMap::new(),
    };
    for l in lines
        .iter()
        .filter(|l| lockout.is_some_and(|k| k.module == l.module))
    {
        lock.extend(l.args.clone());
    }
    let faillock = lockout.is_some_and(|l| l.module == "pam_faillock.so");
    let deny = num(lock.get("deny")).or(faillock.then_some(3));
    let unlock = num(lock.get("unlock_time")).or(faillock.then_some(600));
    out.push(record(
        &PAM_LOCKOUT,
        match (lockout, deny) {
            (None, _) => Outcome::Fail("no pam_faillock or pam_tally2 in the auth stack".into()),
            (Some(l), None) => Outcome::Fail(format!("{} without deny=", l.module)),
            (Some(l), Some(d)) => verdict((1..=5).contains(&d), format!("{} deny={d}", l.module)),
        },
    ));
    out.push(record(
        &PAM_UNLOCK,
        match (lockout, unlock) {
            (None, _) => Outcome::Fail("no pam_faillock or pam_tally2 in the auth stack".into()),
            (Some(l), None) => Outcome::Fail(format!(
                "{} without unlock_time= (never unlocks by itself)",
                l.module
            )),
            (Some(l), Some(u)) => {
                verdict(u == 0 || u >= 900, format!("{} unlock_time={u}", l.module))
            }
        },
    ));

    // Reuse: pam_pwhistory (pwhistory.conf, default remember 10) or pam_unix remember=.
    let history = find("password", &["pam_pwhistory.so"]);
    let unix = find("password", &["pam_unix.so"]);
    let remember = match history {
        Some(l) => {
            let mut conf = module_conf(host, "/etc/security/pwhistory.conf");
            conf.extend(l.args.clone());
            Some(("pam_pwhistory", num(conf.get("remember")).unwrap_or(10)))
        }
        None => unix
            .and_then(|l| num(l.args.get("remember")))
            .map(|r| ("pam_unix", r)),
    };
    out.push(record(
        &PAM_REMEMBER,
        match remember {
            None => Outcome::Fail("no pam_pwhistory and no pam_unix remember=".into()),
            Some((m, r)) => verdict(r >= 5, format!("{m} remember={r}")),
        },
    ));
    out.push(record(
        &PAM_HASH,
        match unix {
            None => Outcome::Pass("no pam_unix in the password stack".into()),
            Some(l) => {
                let strong = ["sha512", "yescrypt"]
                    .iter()
                    .find(|h| l.args.contains_key(**h));
                let weak = ["md5", "bigcrypt", "blowfish", "sha256"]
                    .iter()
                    .find(|h| l.args.contains_key(**h));
                match (strong, weak) {
                    (Some(h), None) => Outcome::Pass(format!("pam_unix {h}")),
                    (_, Some(h)) => Outcome::Fail(format!("pam_unix {h}")),
                    (None, None) => Outcome::Fail("pam_unix without sha512 or yescrypt".into()),
                }
            }
        },
    ));
}
