//! A readable rendering of security messages for a terminal (`--format pretty`): one line per
//! event with its local time, its kind and the few fields an operator looks for first. JSON
//! stays the format for pipes, files and edgeHub; this is for people.
//!
//! It renders the message's JSON, not edgeguard's types, so messages from other modules (and
//! kinds this version does not know) are shown too. Nothing in a message can make it fail:
//! missing or odd fields are left out, and control characters are shown escaped, so a command
//! line cannot move the terminal's cursor or change its colours.

use serde_json::Value;
use std::fmt::Write;

/// Whether to colour alerts (and dim the time stamps): only on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

const RED_BOLD: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// At most this many records of a snapshot are named on its line.
const SHOWN: usize = 3;

/// The lines for one message body (one per event, each ending in a newline). A body that is not
/// a security message becomes one line saying so.
pub fn render_message(body: &[u8], style: Style) -> String {
    let mut out = String::new();
    let events = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("Events").and_then(Value::as_array).cloned());
    match events {
        Some(events) => {
            for e in &events {
                out.push_str(&render_event(e, style));
                out.push('\n');
            }
        }
        None => out.push_str("(not a security message)\n"),
    }
    out
}

/// One event's line, without the newline.
pub fn render_event(event: &Value, style: Style) -> String {
    let name = text(event, "Name");
    let records: &[Value] = event
        .get("Payload")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let time = local_time(&text(event, "TimestampLocal"));
    let mut line = String::new();
    match style {
        Style::Color => {
            let _ = write!(line, "{DIM}{time}{RESET} ");
        }
        Style::Plain => {
            let _ = write!(line, "{time} ");
        }
    }
    let first = records.first().unwrap_or(&Value::Null);
    let body = match name.as_str() {
        "ProcessCreate" => process(first),
        "ProcessTerminate" => join([
            field("pid", first, "ProcessId"),
            opt(first, "Executable"),
            field("exit", first, "ExitStatus"),
            container(first),
        ]),
        "ConnectionCreate" => connection(first),
        "Login" => login(first),
        "Alert" => alert(first),
        "UserChange" => join([
            opt(first, "Operation"),
            opt(first, "Name"),
            field("id", first, "Id"),
            opt(first, "Details"),
        ]),
        "FileChange" => join([
            opt(first, "Operation"),
            opt(first, "Path"),
            field("mode", first, "Mode"),
            first
                .get("ExtraDetails")
                .and_then(|d| d.get("RenamedFrom"))
                .and_then(Value::as_str)
                .map(|f| format!("from {f}")),
            first
                .get("ExtraDetails")
                .and_then(|d| d.get("Count"))
                .and_then(Value::as_str)
                .filter(|c| *c != "1")
                .map(|c| format!("x{c}")),
            first
                .get("ExtraDetails")
                .and_then(|d| d.get("ProcessName"))
                .and_then(Value::as_str)
                .map(|p| format!("by {p}")),
        ]),
        "ContainerEvent" => join([
            opt(first, "Action"),
            opt(first, "ObjectType"),
            first
                .get("ContainerName")
                .and_then(Value::as_str)
                .or_else(|| first.get("ContainerId").and_then(Value::as_str))
                .map(str::to_string),
            opt(first, "Image"),
            opt(first, "Command"),
        ]),
        "CollectorStatus" => join([
            opt(first, "Collector"),
            opt(first, "Status"),
            opt(first, "Message"),
        ]),
        "ConfigurationError" => join([
            opt(first, "ConfigurationName"),
            opt(first, "ErrorType"),
            opt(first, "Message"),
        ]),
        "SystemInformation" => join([
            opt(first, "HostName"),
            opt(first, "OSName"),
            opt(first, "OSVersion"),
            opt(first, "OsArchitecture"),
        ]),
        "ListeningPorts" => listing(records, |r| {
            let address = join([
                opt(r, "Protocol"),
                Some(endpoint(r, "LocalAddress", "LocalPort")),
            ]);
            match r.get("ExtraDetails").and_then(|d| d.get("Executable")) {
                Some(Value::String(exe)) => format!("{address} {}", basename(exe)),
                _ => address,
            }
        }),
        "LocalUsers" => listing(records, |r| text(r, "UserName")),
        "FirewallConfiguration" => {
            listing(records, |r| join([opt(r, "ChainName"), opt(r, "Action")]))
        }
        // A hotplug event (Triggered): one device and what happened to it.
        "ConnectedHardware"
            if first
                .get("ExtraDetails")
                .and_then(|d| d.get("Action"))
                .is_some() =>
        {
            let details = first.get("ExtraDetails").unwrap_or(&Value::Null);
            join([
                opt(details, "Action"),
                opt(first, "HardwareCategory"),
                opt(first, "HardwareName"),
                opt(details, "KernelName")
                    .filter(|n| Some(n) != opt(first, "HardwareName").as_ref())
                    .map(|n| format!("({n})")),
            ])
        }
        "KernelModule" => {
            let details = first.get("ExtraDetails").unwrap_or(&Value::Null);
            join([
                opt(first, "Action"),
                opt(first, "Name"),
                opt(first, "Size").map(|s| format!("{s} bytes")),
                field("taint", details, "Taint"),
            ])
        }
        "Recommendation" => listing(records, |r| {
            join([
                opt(r, "Severity"),
                opt(r, "RecommendationId"),
                opt(r, "Subject"),
            ])
        }),
        "ConnectedHardware" => listing(records, |r| {
            join([opt(r, "HardwareCategory"), opt(r, "HardwareName")])
        }),
        "Diagnostic" => join([opt(first, "Severity"), opt(first, "Message")]),
        "OSBaseline" => {
            let failed = records.iter().filter(|r| r["Result"] == "Fail").count();
            format!("{} checks, {failed} failed", records.len())
        }
        "ContainerInventory" => listing(records, |r| {
            let findings = r
                .get("Findings")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            format!(
                "{} ({findings} findings)",
                r.get("ContainerName")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| r.get("ContainerId").and_then(Value::as_str).unwrap_or("?"))
            )
        }),
        "ContainerImages" => listing(records, |r| {
            r.get("Tags")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                .unwrap_or_else(|| r.get("ImageId").and_then(Value::as_str).unwrap_or("?"))
                .to_string()
        }),
        "DroppedEventsStatistics" => records
            .iter()
            .map(|r| {
                format!(
                    "{}: {} collected, {} dropped",
                    text(r, "Queue"),
                    number(r, "CollectedEvents"),
                    number(r, "DroppedEvents")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        "Heartbeat" => format!(
            "#{} up {} s, collectors {} up {} degraded {} down, spool {} messages, {} queued, {} dropped",
            number(first, "Sequence"),
            number(first, "UptimeSeconds"),
            number(first, "CollectorsUp"),
            number(first, "CollectorsDegraded"),
            number(first, "CollectorsDown"),
            number(first, "SpoolMessages"),
            number(first, "QueuedEvents"),
            number(first, "DroppedEvents")
        ),
        "SoftwareInventory" => listing(records, |r| {
            format!("{} {}", text(r, "Name"), text(r, "Version"))
        }),
        "SoftwareChange" => listing(records, |r| {
            let previous = opt(r, "PreviousVersion")
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default();
            format!(
                "{} {} {}{previous}",
                text(r, "Operation"),
                text(r, "Name"),
                text(r, "Version")
            )
        }),
        "FirewallChange" => listing(records, |r| {
            let chain = opt(r, "Chain").map(|c| format!("/{c}")).unwrap_or_default();
            let by = r
                .get("ExtraDetails")
                .and_then(|d| d.get("ProcessName"))
                .and_then(Value::as_str)
                .map(|p| format!(" by {p}"))
                .unwrap_or_default();
            format!(
                "{} {} {}{chain} ×{}{by}",
                text(r, "Operation"),
                text(r, "Family"),
                text(r, "Table"),
                number(r, "Count")
            )
        }),
        "MessageStatistics" => format!(
            "{} sent, {} under 4 KB, {} failed",
            number(first, "MessagesSent"),
            number(first, "MessagesUnder4KB"),
            number(first, "TotalFailed")
        ),
        _ => format!("{} records", records.len()),
    };
    let hits = first
        .get("ExtraDetails")
        .and_then(|d| d.get("HitCount"))
        .and_then(Value::as_str)
        .map(|n| format!(" ×{n}"))
        .unwrap_or_default();
    let label = if name.is_empty() { "?" } else { name.as_str() };
    let label = format!("{label:<17} ");
    let hits = clean(&hits);
    match (style, name.as_str()) {
        (Style::Color, "Alert") => {
            let _ = write!(line, "{RED_BOLD}{label}{}{hits}{RESET}", clean(&body));
        }
        (Style::Color, "ConfigurationError") | (Style::Color, "CollectorStatus")
            if first.get("Status").and_then(Value::as_str) != Some("Up") =>
        {
            let _ = write!(line, "{YELLOW}{label}{}{hits}{RESET}", clean(&body));
        }
        _ => {
            let _ = write!(line, "{label}{}{hits}", clean(&body));
        }
    }
    line
}

/// `2026-12-02T16:06:21.949+01:00` → `2026-12-02 16:06:21` (the sender's local time).
fn local_time(stamp: &str) -> String {
    match (stamp.get(..10), stamp.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => format!("{stamp:<19}"),
    }
}

fn process(r: &Value) -> String {
    // A process gone before it was read has no command line, perhaps no executable either: the
    // kernel's short name then, marked as such.
    let what = opt(r, "CommandLine")
        .or_else(|| opt(r, "Executable"))
        .or_else(|| {
            r.get("ExtraDetails")
                .and_then(|d| opt(d, "Comm"))
                .map(|comm| format!("({comm}, gone before it was read)"))
        });
    join([
        opt(r, "UserName").or_else(|| field("uid", r, "UserId")),
        field("pid", r, "ProcessId"),
        what,
        container(r),
    ])
}

fn connection(r: &Value) -> String {
    let (local, remote) = (
        endpoint(r, "LocalAddress", "LocalPort"),
        endpoint(r, "RemoteAddress", "RemotePort"),
    );
    let flow = match r.get("Direction").and_then(Value::as_str) {
        Some("In") => format!("In {remote} -> {local}"),
        Some(d) => format!("{d} {local} -> {remote}"),
        None => format!("{local} -> {remote}"),
    };
    join([
        Some(flow),
        opt(r, "Protocol"),
        field("pid", r, "ProcessId"),
        opt(r, "Executable"),
        container(r),
    ])
}

fn login(r: &Value) -> String {
    let from = r
        .get("RemoteAddress")
        .and_then(Value::as_str)
        .map(|_| format!("from {}", endpoint(r, "RemoteAddress", "RemotePort")));
    join([
        opt(r, "Result"),
        opt(r, "Operation"),
        opt(r, "UserName").or_else(|| field("uid", r, "UserId")),
        from,
        opt(r, "Executable").map(|e| basename(&e)),
    ])
}

fn alert(r: &Value) -> String {
    let subject = opt(r, "CommandLine")
        .or_else(|| opt(r, "Executable"))
        .or_else(|| opt(r, "RemoteAddress"))
        .or_else(|| opt(r, "UserName"));
    join([
        opt(r, "Severity"),
        opt(r, "RuleId"),
        subject,
        field("pid", r, "ProcessId"),
        container(r),
        r.get("EventCount")
            .and_then(Value::as_u64)
            .filter(|n| *n > 1)
            .map(|n| format!("({n} events)")),
    ])
}

/// `[container NAME]` (or its short id) for records from inside a container.
fn container(r: &Value) -> Option<String> {
    let details = r.get("ExtraDetails");
    let name = r
        .get("ContainerName")
        .or_else(|| details.and_then(|d| d.get("ContainerName")))
        .and_then(Value::as_str);
    let id = r
        .get("ContainerId")
        .or_else(|| details.and_then(|d| d.get("ContainerId")))
        .and_then(Value::as_str);
    match (name, id) {
        (Some(name), _) => Some(format!("[container {name}]")),
        (None, Some(id)) => Some(format!("[container {}]", id.get(..12).unwrap_or(id))),
        (None, None) => None,
    }
}

/// `address:port`, `[v6]:port`, or whichever is known.
fn endpoint(r: &Value, address: &str, port: &str) -> String {
    let a = r.get(address).and_then(Value::as_str).unwrap_or("*");
    let p = r.get(port).map(|p| match p {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    match p {
        Some(p) if a.contains(':') => format!("[{a}]:{p}"),
        Some(p) => format!("{a}:{p}"),
        None => a.to_string(),
    }
}

/// `N records: a, b, c, …` for snapshots.
fn listing(records: &[Value], name: impl Fn(&Value) -> String) -> String {
    if records.is_empty() {
        return "none".into();
    }
    let mut shown: Vec<String> = records.iter().take(SHOWN).map(name).collect();
    if records.len() > SHOWN {
        shown.push("…".into());
    }
    format!("{}: {}", records.len(), shown.join(", "))
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn number(v: &Value, key: &str) -> String {
    v.get(key).map_or_else(|| "?".into(), Value::to_string)
}

fn opt(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::String(_) | Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `label value` when the field is there.
fn field(label: &str, v: &Value, key: &str) -> Option<String> {
    opt(v, key).map(|value| format!("{label} {value}"))
}

fn join<const N: usize>(parts: [Option<String>; N]) -> String {
    parts.into_iter().flatten().collect::<Vec<_>>().join(" ")
}

/// Control characters (a newline in a command line, an escape sequence in a file name) shown
/// escaped: a line stays one line and cannot drive the terminal.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
