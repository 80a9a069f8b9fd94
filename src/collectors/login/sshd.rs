//! sshd's messages: successes, failed attempts, and the many ways a connection fails before
//! or around authentication.
//!
//! The forms are those OpenSSH (and the PAM modules it runs) write at the default log level
//! and at VERBOSE, from OpenSSH 3.x to 10.x, as collected by the common ban tools (fail2ban's
//! `filter.d/sshd.conf` in all its modes, sshguard's sshd attack grammar, CrowdSec's sshd
//! parsers). The parsing here is our own; their test corpora are only used to measure it
//! (`tests/sshd_corpus.rs`).
//!
//! Every sshd line is given a [`Role`] so that one attempt is counted once although sshd logs
//! several lines for it (see [`super::Attempts`]).
//!
//! Remote clients choose the user name, and sshd logs it as sent: a name such as
//! `x from 1.1.1.1 port 22` must not make `1.1.1.1` the source. Where the name is the client's,
//! the address is taken from the last place that fits sshd's own format.

use super::authlog::{Parsed, Role, SshdHint};
use crate::event::LoginResult;

/// What one sshd message is.
pub(super) enum Sshd<'a> {
    Login(Parsed<'a>),
    Hint(SshdHint),
    Other,
}

/// `sshd:<method>` with the method reduced to a known, bounded word.
fn sshd_operation(method: &str) -> String {
    let method = method.split('/').next().unwrap_or("");
    let known = [
        "password",
        "publickey",
        "keyboard-interactive",
        "hostbased",
        "gssapi-with-mic",
        "gssapi-keyex",
        "none",
    ];
    if known.contains(&method) {
        format!("sshd:{method}")
    } else {
        "sshd:other".to_string()
    }
}

/// A remote host field: one token, not empty.
fn host_token(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains(' ') && !s.contains('\'')).then_some(s)
}

/// `USER from HOST[ port N][ sshN][ on IFACE]` followed by the end, `: extra`, ` via X` or
/// ` [preauth]`: (USER, HOST, port, rest after the address part).
///
/// `checked`: sshd checked the name (an existing account), so the first fit is sshd's own.
/// Otherwise the name is the client's: a fit whose name has no space is still preferred when
/// the text after it is sshd's `: extra` (the extra may itself contain ` from …`), else the
/// last fit wins.
fn split_from(s: &str, checked: bool) -> Option<(&str, &str, Option<u16>, &str)> {
    let fit = |i: usize| -> Option<(&str, &str, Option<u16>, &str)> {
        let tail = &s[i + " from ".len()..];
        let end = tail.find(' ').unwrap_or(tail.len());
        let host = host_token(&tail[..end])?;
        let mut rest = &tail[end..];
        let mut port = None;
        if let Some(r) = rest.strip_prefix(" port ") {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            port = Some(r[..digits].parse().ok()?);
            rest = &r[digits..];
        }
        for proto in [" ssh2", " ssh1"] {
            if let Some(r) = rest.strip_prefix(proto) {
                rest = r;
                break;
            }
        }
        let ok = rest.is_empty()
            || rest.starts_with(": ")
            || rest.starts_with(':')
            || rest.starts_with(" via ")
            || rest.trim() == "[preauth]";
        ok.then_some((&s[..i], host, port, rest))
    };
    let mut fits = s.match_indices(" from ").filter_map(|(i, _)| fit(i));
    if checked {
        return fits.next();
    }
    let all: Vec<_> = fits.collect();
    all.iter()
        .find(|(user, _, _, rest)| !user.contains(' ') && rest.starts_with(": "))
        .or(all.last())
        .copied()
}

/// `USER HOST port N[: reason][ [preauth]]`, read from the right (the user name is the
/// client's): (USER, HOST, N).
fn split_user_host_port(s: &str) -> Option<(&str, &str, u16)> {
    let s = s.trim_end();
    let s = s.strip_suffix("[preauth]").unwrap_or(s).trim_end();
    let (s, port) = s.rsplit_once(' ')?;
    let port = port.parse().ok()?;
    let s = s.strip_suffix(" port")?;
    let (user, host) = s.rsplit_once(' ').unwrap_or(("", s));
    Some((user, host_token(host)?, port))
}

/// `HOST[ port N]…`: the host and port at the start of `s`.
fn host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let end = s.find([' ', ':', ',']).unwrap_or(s.len());
    // An IPv6 address holds ':'; take the whole token when it parses as one.
    let token = &s[..s.find(' ').unwrap_or(s.len())];
    let token = token.trim_end_matches([':', ',']);
    let host = if token.parse::<std::net::IpAddr>().is_ok() {
        token
    } else {
        &s[..end]
    };
    let host = host_token(host)?;
    let rest = &s[host.len()..];
    let port = rest.strip_prefix(" port ").and_then(|r| {
        r[..r.bytes().take_while(u8::is_ascii_digit).count()]
            .parse()
            .ok()
    });
    Some((host, port))
}

fn failure<'a>(role: Role, operation: &str, user: &'a str, reason: &str) -> Parsed<'a> {
    let mut p = Parsed::new(operation, user, LoginResult::Fail);
    p.role = role;
    if !reason.is_empty() {
        p.details.push(("Reason", reason.to_string()));
    }
    p
}

fn with_host<'a>(mut p: Parsed<'a>, host: Option<&'a str>, port: Option<u16>) -> Sshd<'a> {
    p.remote_host = host;
    p.remote_port = port;
    Sshd::Login(p)
}

fn hint(host: Option<&str>, port: Option<u16>, ends: bool) -> Sshd<'static> {
    Sshd::Hint(SshdHint {
        hostname: String::new(),
        pid: None,
        remote_host: host.map(str::to_string),
        remote_port: port,
        ends,
    })
}

/// Cuts a trailing ` [preauth]` (and spaces).
fn unpreauth(s: &str) -> &str {
    let s = s.trim_end();
    s.strip_suffix("[preauth]").unwrap_or(s).trim_end()
}

pub(super) fn parse_sshd(msg: &str) -> Sshd<'_> {
    parse(msg).unwrap_or(Sshd::Other)
}

fn parse(msg: &str) -> Option<Sshd<'_>> {
    // sshd's own prefixes: `error: `, `fatal: `, and `error: PAM: ` for PAM's messages.
    let mut msg = msg;
    for prefix in ["error: ", "fatal: "] {
        if let Some(r) = msg.strip_prefix(prefix) {
            msg = r;
            break;
        }
    }
    let pam = msg.strip_prefix("PAM: ");
    let msg = pam.unwrap_or(msg);
    if pam.is_some() {
        return parse_pam_sshd(msg, true);
    }

    if let Some(rest) = msg.strip_prefix("Accepted ") {
        let (method, rest) = rest.split_once(" for ")?;
        // The user exists and sshd checked the name: the first match is sshd's own.
        let (user, host, port, tail) = split_from(rest, true)?;
        if user.is_empty() {
            return None;
        }
        let mut p = Parsed::new(sshd_operation(method), user, LoginResult::Success);
        if let Some(key) = tail.strip_prefix(": ").map(str::trim)
            && !key.is_empty()
        {
            p.details.push(("Key", key.to_string()));
        }
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        let (method, rest) = rest.split_once(" for ")?;
        let (rest, invalid) = match rest.strip_prefix("invalid user ") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (user, host, port, _) = split_from(rest, false)?;
        let invalid = invalid || user == "<invalid username>";
        let operation = sshd_operation(method);
        // Offered keys and the `none` probe every client makes first are no attempt at a
        // password: a user with several keys in an agent logs one failure per key before
        // the right one is accepted. For a user that does not exist they still say someone
        // tried that name (counted once per connection).
        let role = match (operation.as_str(), invalid) {
            ("sshd:publickey" | "sshd:none", false) => return Some(Sshd::Other),
            ("sshd:publickey" | "sshd:none", true) => Role::Connection,
            _ => Role::Attempt,
        };
        let mut p = failure(role, &operation, user, "");
        p.invalid_user = invalid;
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        let (host, port) = host_port(rest)?;
        let p = failure(
            Role::Attempt,
            "sshd:root-refused",
            "root",
            "root login refused",
        );
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg
        .strip_prefix("Invalid user ")
        .or_else(|| msg.strip_prefix("Illegal user "))
        .or_else(|| msg.strip_prefix("invalid user "))
    {
        let (user, host, port, _) = split_from(rest, false)?;
        let mut p = failure(Role::Connection, "sshd:invalid-user", user, "invalid user");
        p.invalid_user = true;
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("User ") {
        let (head, reason) = rest.rsplit_once(" not allowed because ")?;
        let (user, host) = match split_from(head, false) {
            Some((u, h, _, "")) => (u, Some(h)),
            _ => (head, None),
        };
        let reason = format!("not allowed because {}", unpreauth(reason));
        let p = failure(Role::Connection, "sshd:not-allowed", user, &reason);
        return Some(with_host(p, host, None));
    }
    if let Some(rest) = msg.strip_prefix("input_userauth_request: invalid user ") {
        let mut p = failure(
            Role::Connection,
            "sshd:invalid-user",
            unpreauth(rest),
            "invalid user",
        );
        p.invalid_user = true;
        return Some(Sshd::Login(p));
    }
    if let Some(rest) = msg.strip_prefix("Disconnecting: Too many authentication failures") {
        let rest = unpreauth(rest);
        let user = rest.strip_prefix(" for ").unwrap_or("");
        let user = user.strip_prefix("invalid user ").unwrap_or(user);
        let p = failure(
            Role::Connection,
            "sshd:too-many-failures",
            user,
            "too many authentication failures",
        );
        return Some(Sshd::Login(p));
    }
    for (prefix, invalid) in [
        ("Disconnecting invalid user ", true),
        ("Disconnecting authenticating user ", false),
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // `USER HOST port N: reason`: the first `port N: ` that fits.
            let (head, reason) = rest.match_indices(": ").find_map(|(i, _)| {
                let head = &rest[..i];
                split_user_host_port(head).map(|_| (head, &rest[i + 2..]))
            })?;
            let (user, host, port) = split_user_host_port(head)?;
            let mut p = failure(
                Role::Connection,
                "sshd:too-many-failures",
                user,
                unpreauth(reason),
            );
            if !reason.starts_with("Too many authentication failures") {
                p.operation = "sshd:disconnected".to_string();
            }
            p.invalid_user = invalid;
            return Some(with_host(p, Some(host), Some(port)));
        }
    }
    if let Some(rest) = msg.strip_prefix("maximum authentication attempts exceeded for ") {
        let (rest, invalid) = match rest.strip_prefix("invalid user ") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (user, host, port, _) = split_from(rest, false)?;
        let mut p = failure(
            Role::Connection,
            "sshd:too-many-failures",
            user,
            "maximum authentication attempts exceeded",
        );
        p.invalid_user = invalid;
        return Some(with_host(p, Some(host), port));
    }
    for closed in [
        "Connection closed by ",
        "Connection reset by ",
        "Disconnected from ",
    ] {
        let Some(rest) = msg.strip_prefix(closed) else {
            continue;
        };
        // The only trace, at sshd's default log level, of a client whose keys were all
        // refused for an existing user: it gives up and disconnects before authenticating.
        for (who, invalid) in [("authenticating user ", false), ("invalid user ", true)] {
            if let Some(r) = rest.strip_prefix(who) {
                let (user, host, port) = split_user_host_port(r)?;
                let mut p = failure(
                    Role::Connection,
                    "sshd:preauth-closed",
                    user,
                    "connection closed before authentication",
                );
                p.invalid_user = invalid;
                return Some(with_host(p, Some(host), Some(port)));
            }
        }
        // The end of a session: `Disconnected from user alice 192.0.2.1 port 5`.
        if let Some(r) = rest.strip_prefix("user ") {
            let (_, host, port) = split_user_host_port(r)?;
            return Some(hint(Some(host), Some(port), true));
        }
        let (host, port) = host_port(rest)?;
        return Some(hint(Some(host), port, true));
    }
    if let Some(rest) = msg.strip_prefix("Received disconnect from ") {
        let (host, port) = host_port(rest)?;
        // `HOST[ port N]:[ ]CODE: text`
        let after = &rest[host.len()..];
        let after = after.split_once(':').map_or("", |(_, r)| r).trim_start();
        let (code, text) = after.split_once(':').unwrap_or((after, ""));
        let text = unpreauth(text.trim());
        let reason = match code.trim() {
            "3" if text.ends_with("Auth fail") => "client gave up: Auth fail",
            "14" if text.starts_with("No supported authentication methods")
                || text.starts_with("No authentication methods") =>
            {
                "no authentication method available"
            }
            _ => return Some(hint(Some(host), port, true)),
        };
        let p = failure(Role::Connection, "sshd:preauth-closed", "", reason);
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("refused connect from ") {
        // tcp_wrappers: `refused connect from NAME (ADDRESS)`.
        let host = rest.rsplit_once('(')?.1.strip_suffix(')')?;
        let p = failure(
            Role::Connection,
            "sshd:refused-connect",
            "",
            "refused by tcp_wrappers",
        );
        return Some(with_host(p, Some(host_token(host)?), None));
    }
    if let Some(rest) = msg.strip_prefix("Did not receive identification string from ") {
        let (host, port) = host_port(rest)?;
        let p = failure(
            Role::Connection,
            "sshd:no-identification",
            "",
            "no SSH identification string",
        );
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("Bad protocol version identification ") {
        // The identification is the client's text: the address is after its last ` from `.
        let (_, tail) = rest.rsplit_once(" from ")?;
        let (host, port) = host_port(tail)?;
        let p = failure(
            Role::Connection,
            "sshd:bad-protocol",
            "",
            "bad protocol version identification",
        );
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("Unable to negotiate with ") {
        let (host, port) = host_port(rest)?;
        let p = failure(
            Role::Connection,
            "sshd:negotiation-failed",
            "",
            "no matching algorithm",
        );
        return Some(with_host(p, Some(host), port));
    }
    if msg.starts_with("Unable to negotiate a ")
        || (msg.starts_with("no matching ") && msg.contains(" found"))
    {
        let p = failure(
            Role::Connection,
            "sshd:negotiation-failed",
            "",
            "no matching algorithm",
        );
        return Some(Sshd::Login(p));
    }
    if let Some(rest) = msg.strip_prefix("Timeout before authentication for ") {
        let rest = rest.strip_prefix("connection from ").unwrap_or(rest);
        let (host, port) = host_port(rest)?;
        let p = failure(
            Role::Connection,
            "sshd:preauth-timeout",
            "",
            "timeout before authentication",
        );
        return Some(with_host(p, Some(host), port));
    }
    if let Some(rest) = msg.strip_prefix("kex_exchange_identification: ") {
        let rest = rest
            .strip_prefix("read: ")
            .unwrap_or(rest)
            .to_ascii_lowercase();
        let probe = rest.starts_with("client sent invalid protocol identifier")
            || rest.starts_with("connection closed by remote host")
            || rest.starts_with("connection reset by peer");
        if !probe {
            return Some(Sshd::Other);
        }
        let p = failure(
            Role::Connection,
            "sshd:preauth-error",
            "",
            "no SSH key exchange",
        );
        return Some(Sshd::Login(p));
    }
    for prefix in [
        "banner exchange: Connection from ",
        "ssh_dispatch_run_fatal: Connection from ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (host, port) = host_port(rest)?;
            let (_, what) = rest.split_once(": ")?;
            let what = unpreauth(what);
            let probe = what == "invalid format"
                || what == "message authentication code incorrect"
                || what.eq_ignore_ascii_case("connection corrupted");
            if !probe {
                return Some(hint(Some(host), port, false));
            }
            let p = failure(Role::Connection, "sshd:preauth-error", "", what);
            return Some(with_host(p, Some(host), port));
        }
    }
    if msg.starts_with("Read from socket failed: Connection reset by peer") {
        let p = failure(
            Role::Connection,
            "sshd:preauth-error",
            "",
            "connection reset by peer",
        );
        return Some(Sshd::Login(p));
    }
    if let Some(rest) = msg.strip_prefix("Connection from ") {
        let (host, port) = host_port(rest)?;
        return Some(hint(Some(host), port, false));
    }
    if let Some(rest) = msg.strip_prefix("SSH: Server;Ltype: ") {
        // A patched sshd's connection log: `…;Remote: HOST-PORT;…`.
        let (_, r) = rest.split_once(";Remote: ")?;
        let (hp, _) = r.split_once(';').unwrap_or((r, ""));
        let (host, port) = hp.rsplit_once('-')?;
        return Some(hint(host_token(host), port.parse().ok(), false));
    }
    if let Some(rest) = msg.strip_prefix("Address ") {
        // A reverse lookup that does not match: no failure (nothing was tried yet), but it
        // names the connection's address.
        let (host, _) = rest.split_once(" maps to ")?;
        return Some(hint(host_token(host), None, false));
    }
    parse_pam_sshd(msg, false)
}

/// PAM's failures inside sshd: `pam_unix(sshd:auth): authentication failure; … rhost=H
/// user=U`, and sshd's own report of them, `error: PAM: Authentication failure for U from H`
/// (also `authentication error`, `User not known to the underlying authentication module`).
fn parse_pam_sshd(msg: &str, pam_prefixed: bool) -> Option<Sshd<'_>> {
    if msg.starts_with("pam_") {
        let (module, rest) = msg.split_once("): ")?;
        let (_, service) = module.split_once('(')?;
        if service != "sshd:auth" {
            return None;
        }
        let fields = rest.strip_prefix("authentication failure")?;
        let fields = unpreauth(fields.trim_start_matches(';'));
        let get = |key: &str| {
            fields
                .split_ascii_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .filter(|v| !v.is_empty())
        };
        let user = get("user").or_else(|| get("ruser")).unwrap_or("");
        let p = failure(
            Role::PamFailure,
            "sshd:password",
            user,
            "authentication failure",
        );
        return Some(with_host(p, get("rhost"), None));
    }
    let lower_start = msg.get(..15).map(str::to_ascii_lowercase);
    let rest = if lower_start.as_deref() == Some("authentication ") {
        let r = &msg[15..];
        ["failure for ", "error for ", "failed for "]
            .iter()
            .find_map(|p| r.strip_prefix(p))?
    } else if pam_prefixed {
        msg.strip_prefix("User not known to the underlying authentication module for ")?
    } else {
        return None;
    };
    let (rest, invalid) = match rest
        .strip_prefix("illegal user ")
        .or_else(|| rest.strip_prefix("invalid user "))
    {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (user, host, port, _) = split_from(rest, false)?;
    let mut p = failure(
        Role::PamFailure,
        "sshd:keyboard-interactive",
        user,
        "authentication failure",
    );
    p.invalid_user = invalid;
    Some(with_host(p, Some(host), port))
}
