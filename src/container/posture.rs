//! Security posture of one container, judged from the engine's inspect answer alone.
//!
//! A pure function over [`ContainerInspectResponse`], so every rule is unit-tested with fixtures
//! and no rule can block on, or be fooled by, a slow engine. Every field of the answer is
//! optional (old engines, Podman, hand-made answers): a missing field counts as the engine's
//! default, and a rule that cannot tell says nothing rather than guessing a finding.
//!
//! CIS ids are the Docker Benchmark's section 5 (container runtime) numbering of v1.2.0–v1.6.0;
//! "runs as root" maps to 4.1 (the image section), the closest recommendation there is.

use crate::event::{BaselineSeverity, PostureFinding};
use bollard::models::{ContainerInspectResponse, RestartPolicyNameEnum};

/// Host paths whose mount gives a container control of (or secrets from) the host.
const SENSITIVE_HOST_PATHS: &[&str] =
    &["/etc", "/proc", "/sys", "/var/run", "/run", "/boot", "/dev"];
/// Where the Docker socket lives on the host (`/var/run` is usually a link to `/run`).
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];
/// Capabilities that each amount to (nearly) full control of the host.
const DANGEROUS_CAPS: &[&str] = &["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "ALL"];

/// Every posture finding of one container, in a stable order (the order of the checks).
pub fn evaluate(c: &ContainerInspectResponse) -> Vec<PostureFinding> {
    let mut out = Vec::new();
    let host = c.host_config.as_ref();
    let config = c.config.as_ref();
    let mut add =
        |id: &str, severity, description: String, remediation: &str, cis: Option<&str>| {
            out.push(PostureFinding {
                id: id.to_string(),
                severity,
                description,
                remediation: remediation.to_string(),
                cis_id: cis.map(str::to_string),
            })
        };
    use BaselineSeverity::*;

    if host.and_then(|h| h.privileged) == Some(true) {
        add(
            "privileged",
            Critical,
            "runs privileged: every capability, every device, no seccomp or AppArmor".into(),
            "Remove --privileged (privileged: true); add only the capabilities and devices the workload needs",
            Some("5.4"),
        );
    }

    for (mode, id, cis, what) in [
        (
            host.and_then(|h| h.network_mode.as_deref()),
            "host-network",
            "5.9",
            "network",
        ),
        (
            host.and_then(|h| h.pid_mode.as_deref()),
            "host-pid",
            "5.15",
            "PID",
        ),
        (
            host.and_then(|h| h.ipc_mode.as_deref()),
            "host-ipc",
            "5.16",
            "IPC",
        ),
        (
            host.and_then(|h| h.uts_mode.as_deref()),
            "host-uts",
            "5.20",
            "UTS",
        ),
    ] {
        if mode.is_some_and(|m| m.trim().eq_ignore_ascii_case("host")) {
            let severity = if what == "UTS" { Warning } else { Important };
            add(
                id,
                severity,
                format!("shares the host's {what} namespace"),
                &format!(
                    "Do not use --{}=host; keep the container in its own {what} namespace",
                    what.to_ascii_lowercase()
                ),
                Some(cis),
            );
        }
    }

    for source in host_mount_sources(c) {
        if DOCKER_SOCKETS.contains(&source.as_str()) {
            add(
                "docker-socket-mounted",
                Critical,
                format!(
                    "the Docker socket {source} is mounted: the container controls the engine, and so the host"
                ),
                "Do not mount the Docker socket; if the workload must talk to the engine, put an authorising proxy in between",
                Some("5.31"),
            );
        } else if is_sensitive(&source) {
            add(
                "sensitive-host-path",
                Critical,
                format!("host path {source} is mounted"),
                "Do not mount the host's root or system directories; mount only the specific files or data directories needed, read-only",
                Some("5.5"),
            );
        }
    }

    let mut caps: Vec<String> = host
        .and_then(|h| h.cap_add.as_ref())
        .into_iter()
        .flatten()
        .map(|c| normalise_cap(c))
        .filter(|c| DANGEROUS_CAPS.contains(&c.as_str()))
        .collect();
    caps.sort();
    caps.dedup();
    for cap in caps {
        add(
            "dangerous-capability",
            if cap == "ALL" || cap == "SYS_ADMIN" || cap == "SYS_MODULE" {
                Critical
            } else {
                Important
            },
            format!("capability {cap} added"),
            "Drop the capability (--cap-add); add only narrow capabilities the workload needs",
            Some("5.3"),
        );
    }

    let security_opts: Vec<String> = host
        .and_then(|h| h.security_opt.as_ref())
        .into_iter()
        .flatten()
        .map(|o| o.trim().to_ascii_lowercase())
        .collect();
    let unconfined = |kind: &str| {
        security_opts
            .iter()
            .any(|o| o == &format!("{kind}=unconfined") || o == &format!("{kind}:unconfined"))
    };
    if unconfined("seccomp") {
        add(
            "seccomp-unconfined",
            Important,
            "seccomp is disabled (seccomp=unconfined)".into(),
            "Remove --security-opt seccomp=unconfined; keep the default seccomp profile or a custom one",
            Some("5.21"),
        );
    }
    let apparmor_profile = c.app_armor_profile.as_deref().map(str::trim);
    if unconfined("apparmor") || apparmor_profile == Some("unconfined") {
        add(
            "apparmor-unconfined",
            Important,
            "AppArmor is disabled (apparmor=unconfined)".into(),
            "Remove --security-opt apparmor=unconfined; keep docker-default or a custom profile",
            Some("5.1"),
        );
    }
    let no_new_privileges = security_opts.iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges=true" || o == "no-new-privileges:true"
    });
    if !no_new_privileges {
        add(
            "no-new-privileges-off",
            Informational,
            "processes may gain privileges through setuid binaries (no-new-privileges not set)"
                .into(),
            "Run with --security-opt no-new-privileges",
            Some("5.25"),
        );
    }

    let user = config.and_then(|c| c.user.as_deref()).unwrap_or("").trim();
    if runs_as_root(user) {
        add(
            "runs-as-root",
            Warning,
            if user.is_empty() {
                "runs as root (no user set)".into()
            } else {
                format!("runs as root (user {user})")
            },
            "Set a non-root USER in the image or run with --user UID:GID",
            Some("4.1"),
        );
    }

    let positive = |v: Option<i64>| v.is_some_and(|v| v > 0);
    if !positive(host.and_then(|h| h.memory)) {
        add(
            "no-memory-limit",
            Warning,
            "no memory limit".into(),
            "Set a memory limit (--memory)",
            Some("5.10"),
        );
    }
    let cpu_limited = host.is_some_and(|h| {
        positive(h.nano_cpus)
            || positive(h.cpu_quota)
            || h.cpu_shares.is_some_and(|s| s > 0 && s != 1024)
            || h.cpuset_cpus
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
    });
    if !cpu_limited {
        add(
            "no-cpu-limit",
            Warning,
            "no CPU limit or share".into(),
            "Set a CPU limit (--cpus) or relative share (--cpu-shares)",
            Some("5.11"),
        );
    }
    if !positive(host.and_then(|h| h.pids_limit)) {
        add(
            "no-pids-limit",
            Warning,
            "no process count limit: a fork bomb can exhaust the host".into(),
            "Set a process limit (--pids-limit)",
            Some("5.28"),
        );
    }
    if host.and_then(|h| h.readonly_rootfs) != Some(true) {
        add(
            "writable-rootfs",
            Warning,
            "the root filesystem is writable".into(),
            "Run with --read-only and mount writable volumes or tmpfs only where needed",
            Some("5.12"),
        );
    }

    for binding in all_interface_bindings(c) {
        add(
            "port-on-all-interfaces",
            Warning,
            format!("port {binding} is published on all host interfaces"),
            "Publish ports on a specific host address (-p 127.0.0.1:PORT:PORT) or not at all",
            Some("5.13"),
        );
    }

    if let Some(image) = config.and_then(|c| c.image.as_deref()) {
        let pinned = image.contains("@sha256:") || image.starts_with("sha256:");
        if !pinned && !image.trim().is_empty() {
            add(
                "mutable-image-tag",
                Informational,
                format!("image referenced by mutable tag {image}"),
                "Reference the image by digest (repo@sha256:…) so what runs is what was approved",
                None,
            );
        }
    }

    if let Some(policy) = host.and_then(|h| h.restart_policy.as_ref()) {
        let retries = policy.maximum_retry_count.unwrap_or(0);
        let unbounded = match policy.name {
            Some(RestartPolicyNameEnum::ALWAYS) => Some("always"),
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => Some("unless-stopped"),
            Some(RestartPolicyNameEnum::ON_FAILURE) if retries <= 0 || retries > 5 => {
                Some("on-failure without a small retry limit")
            }
            _ => None,
        };
        if let Some(what) = unbounded {
            add(
                "restart-policy",
                Informational,
                format!("restart policy {what}: a crash loop restarts forever and hides failures"),
                "Use --restart on-failure:5 (edgeAgent restarts IoT Edge modules itself)",
                Some("5.14"),
            );
        }
    }

    let health = config.and_then(|c| c.healthcheck.as_ref());
    let has_health = health
        .and_then(|h| h.test.as_ref())
        .and_then(|t| t.first())
        .is_some_and(|first| first != "NONE");
    if !has_health {
        add(
            "no-healthcheck",
            Informational,
            "no health check".into(),
            "Add a HEALTHCHECK to the image or --health-cmd to the container",
            Some("5.26"),
        );
    }
    out
}

/// The privilege-bearing parts of a container's configuration, each as one comparable word
/// (`privileged`, `network=host`, `cap=NET_ADMIN`, `mount=/var/run/docker.sock`,
/// `device=/dev/ttyUSB0`, `seccomp=unconfined`, …). IoT Edge drift compares these sets between
/// two containers of one module: a word the new one has and the old one had not is privilege
/// gained. Unlike [`evaluate`], every added capability counts (a new narrow capability is still a
/// change of what the module may do), and only host mounts that give control of the host do.
pub fn privileges(c: &ContainerInspectResponse) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let host = c.host_config.as_ref();
    if host.and_then(|h| h.privileged) == Some(true) {
        out.insert("privileged".to_string());
    }
    for (what, mode) in [
        ("network", host.and_then(|h| h.network_mode.as_deref())),
        ("pid", host.and_then(|h| h.pid_mode.as_deref())),
        ("ipc", host.and_then(|h| h.ipc_mode.as_deref())),
        ("uts", host.and_then(|h| h.uts_mode.as_deref())),
        ("userns", host.and_then(|h| h.userns_mode.as_deref())),
    ] {
        if mode.is_some_and(|m| m.trim().eq_ignore_ascii_case("host")) {
            out.insert(format!("{what}=host"));
        }
    }
    for cap in host.and_then(|h| h.cap_add.as_ref()).into_iter().flatten() {
        let cap = normalise_cap(cap);
        if !cap.is_empty() {
            out.insert(format!("cap={cap}"));
        }
    }
    for source in host_mount_sources(c) {
        if DOCKER_SOCKETS.contains(&source.as_str()) || is_sensitive(&source) {
            out.insert(format!("mount={source}"));
        }
    }
    for device in host.and_then(|h| h.devices.as_ref()).into_iter().flatten() {
        if let Some(path) = device.path_on_host.as_deref().filter(|p| !p.is_empty()) {
            out.insert(format!("device={}", normalise_path(path)));
        }
    }
    for opt in host
        .and_then(|h| h.security_opt.as_ref())
        .into_iter()
        .flatten()
    {
        let opt = opt.trim().to_ascii_lowercase().replacen(':', "=", 1);
        if opt == "seccomp=unconfined" || opt == "apparmor=unconfined" {
            out.insert(opt);
        }
    }
    out
}

/// Host-side sources of bind mounts, from `Mounts` and `HostConfig.Binds` (an old engine may
/// fill only one), normalised and deduplicated.
fn host_mount_sources(c: &ContainerInspectResponse) -> Vec<String> {
    let mut sources: Vec<String> = Vec::new();
    for m in c.mounts.iter().flatten() {
        // Named volumes live under /var/lib/docker/volumes: not a host path the user chose.
        let is_bind = m
            .typ
            .as_ref()
            .is_none_or(|t| t.trim().eq_ignore_ascii_case("bind"));
        if let Some(src) = m.source.as_deref().filter(|_| is_bind) {
            sources.push(normalise_path(src));
        }
    }
    let binds = c.host_config.as_ref().and_then(|h| h.binds.as_ref());
    for bind in binds.into_iter().flatten() {
        // `SRC:DST[:OPTS]`; a SRC without a leading slash is a named volume.
        if let Some(src) = bind.split(':').next().filter(|s| s.starts_with('/')) {
            sources.push(normalise_path(src));
        }
    }
    sources.sort();
    sources.dedup();
    sources
}

/// `//etc/` → `/etc`, `/var/run/../run` is left as is (the engine resolves nothing either).
fn normalise_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn is_sensitive(path: &str) -> bool {
    path == "/"
        || SENSITIVE_HOST_PATHS.iter().any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

fn normalise_cap(cap: &str) -> String {
    let upper = cap.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// `""`, `root`, `0`, `0:0`, `root:wheel` are root; a uid or name other than root is not.
fn runs_as_root(user: &str) -> bool {
    let who = user.split(':').next().unwrap_or("").trim();
    who.is_empty() || who == "root" || who.trim_start_matches('0').is_empty()
}

/// `PORT/PROTO` of every binding published on 0.0.0.0 / :: (or with no address, which means all).
fn all_interface_bindings(c: &ContainerInspectResponse) -> Vec<String> {
    let Some(host) = c.host_config.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (port, bindings) in host.port_bindings.iter().flatten() {
        for b in bindings.iter().flatten() {
            let ip = b.host_ip.as_deref().unwrap_or("").trim();
            if ip.is_empty() || ip == "0.0.0.0" || ip == "::" || ip == "[::]" {
                let host_port = b.host_port.as_deref().unwrap_or("");
                out.push(if host_port.is_empty() {
                    port.clone()
                } else {
                    format!("{host_port}->{port}")
                });
            }
        }
    }
    if host.publish_all_ports == Some(true) {
        out.push("all exposed ports (-P)".into());
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
