//! Container id → (name, image, module) cache shared by the watcher, the inventory and the
//! enricher.
//!
//! Collectors learn a container id from /proc (cgroups) in microseconds; asking the engine for its
//! name takes a socket round trip and can stall when dockerd is busy or restarting. So the
//! enricher only ever reads this map; the watcher fills it from `create`/`start` events (before
//! the container's first process runs), the inventory from every snapshot, and a miss queues a
//! background inspect ([`run_inspector`]) that helps later events of the same container.

use super::connect;
use bollard::models::ContainerInspectResponse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// More containers than any edge device runs; past it the map is cleared rather than grown (a
/// leak of destroyed ids must not grow without bound).
const MAX_ENTRIES: usize = 4096;
/// Inspect requests waiting; more are dropped (the next miss asks again).
const INSPECT_QUEUE: usize = 256;
/// How long one background inspect may take.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Labels edgeAgent puts on the containers of IoT Edge modules.
pub const EDGE_OWNER_LABEL: &str = "net.azure-devices.edge.owner";
/// A module-name label, where a deployment sets one; otherwise an IoT Edge module's name is its
/// container name (edgeAgent names containers after modules).
pub const EDGE_MODULE_LABEL: &str = "net.azure-devices.edge.module";

/// What is known about one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Without Docker's leading `/`.
    pub name: Option<String>,
    /// The image as referenced (`repo:tag`).
    pub image: Option<String>,
    /// The image id (`sha256:…`), known once inspected.
    pub image_id: Option<String>,
    /// The IoT Edge module name, for edgeAgent's containers.
    pub module: Option<String>,
    /// The health check's command as the engine shows it in exec events (`/bin/sh -c true`):
    /// the engine runs it as an exec every interval, which is not a security signal.
    pub health_cmd: Option<String>,
}

impl ContainerMeta {
    /// From a container's name, image and labels (an event's attributes or an inspect answer).
    pub fn from_parts(
        name: Option<&str>,
        image: Option<&str>,
        labels: &dyn Fn(&str) -> Option<String>,
    ) -> ContainerMeta {
        let name = name
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty());
        let module = labels(EDGE_MODULE_LABEL)
            .filter(|m| !m.is_empty())
            .or_else(|| labels(EDGE_OWNER_LABEL).and(name.clone()));
        ContainerMeta {
            name,
            image: image.filter(|i| !i.is_empty()).map(str::to_string),
            image_id: None,
            module,
            health_cmd: None,
        }
    }

    /// From an inspect answer; every field may be missing.
    pub fn from_inspect(c: &ContainerInspectResponse) -> ContainerMeta {
        let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
        let mut meta = ContainerMeta::from_parts(
            c.name.as_deref(),
            c.config.as_ref().and_then(|c| c.image.as_deref()),
            &|k| labels.and_then(|l| l.get(k)).cloned(),
        );
        meta.image_id = c.image.clone().filter(|i| !i.is_empty());
        meta.health_cmd = c
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.test.as_deref())
            .and_then(health_exec_command);
        meta
    }
}

/// How the engine runs a health check's `Test`, joined as in its exec events: `CMD-SHELL x` runs
/// `/bin/sh -c x`, `CMD a b` runs `a b`; `NONE` or an empty test runs nothing.
pub fn health_exec_command(test: &[String]) -> Option<String> {
    match test.split_first()? {
        (kind, [shell]) if kind == "CMD-SHELL" => Some(format!("/bin/sh -c {shell}")),
        (kind, args) if kind == "CMD" && !args.is_empty() => Some(args.join(" ")),
        _ => None,
    }
}

/// The shared map, plus the queue of ids to inspect in the background.
pub struct ContainerCache {
    entries: Mutex<HashMap<String, ContainerMeta>>,
    /// Ids queued or being inspected, so a burst of events from one new container asks once.
    pending: Mutex<HashSet<String>>,
    inspect_tx: mpsc::Sender<String>,
}

/// The receiving end of the inspect queue, for [`run_inspector`].
pub struct InspectQueue(mpsc::Receiver<String>);

/// Locks a map even if a thread panicked while holding it: the map stays usable (worst case a
/// stale entry), and enrichment must never take the pipeline down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ContainerCache {
    pub fn new() -> (Arc<ContainerCache>, InspectQueue) {
        let (inspect_tx, rx) = mpsc::channel(INSPECT_QUEUE);
        let cache = ContainerCache {
            entries: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            inspect_tx,
        };
        (Arc::new(cache), InspectQueue(rx))
    }

    /// What is known about `id`, without waiting for anything.
    pub fn get(&self, id: &str) -> Option<ContainerMeta> {
        lock(&self.entries).get(id).cloned()
    }

    /// Like [`ContainerCache::get`]; on a miss, queues a background inspect of `id`.
    pub fn get_or_request(&self, id: &str) -> Option<ContainerMeta> {
        let found = self.get(id);
        if found.is_none() {
            self.request(id);
        }
        found
    }

    /// Queues a background inspect of `id` unless one is already queued. Never waits.
    pub fn request(&self, id: &str) {
        let mut pending = lock(&self.pending);
        if pending.len() >= INSPECT_QUEUE || !pending.insert(id.to_string()) {
            return;
        }
        if self.inspect_tx.try_send(id.to_string()).is_err() {
            pending.remove(id);
        }
    }

    /// Records what an event or an inspect said, keeping fields the new answer lacks (an event
    /// knows no image id; an inspect knows everything).
    pub fn insert(&self, id: &str, meta: ContainerMeta) {
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            entries.clear();
        }
        let entry = entries.entry(id.to_string()).or_default();
        entry.name = meta.name.or(entry.name.take());
        entry.image = meta.image.or(entry.image.take());
        entry.image_id = meta.image_id.or(entry.image_id.take());
        entry.module = meta.module.or(entry.module.take());
        entry.health_cmd = meta.health_cmd.or(entry.health_cmd.take());
    }

    /// Forgets a destroyed container.
    pub fn remove(&self, id: &str) {
        lock(&self.entries).remove(id);
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn done(&self, id: &str) {
        lock(&self.pending).remove(id);
    }
}

/// Inspects queued ids one at a time and fills the cache, until `cancel`. Connects on demand to
/// the configured socket, and again after an error: the watcher reports the engine's health, so
/// this task only logs at debug level.
pub async fn run_inspector(
    cache: Arc<ContainerCache>,
    queue: InspectQueue,
    config: watch::Receiver<Arc<Config>>,
    cancel: CancellationToken,
) {
    let InspectQueue(mut rx) = queue;
    let mut client: Option<(String, bollard::Docker)> = None;
    loop {
        let id = tokio::select! {
            _ = cancel.cancelled() => return,
            id = rx.recv() => match id { Some(id) => id, None => return },
        };
        let (enabled, path) = {
            let c = config.borrow();
            (c.container_collection_enabled, c.docker_socket_path.clone())
        };
        if !enabled {
            client = None;
            cache.done(&id);
            continue;
        }
        if client.as_ref().is_none_or(|(p, _)| *p != path) {
            client = connect(&path).await.ok().map(|d| (path.clone(), d));
        }
        if let Some((_, docker)) = &client {
            let answer =
                tokio::time::timeout(INSPECT_TIMEOUT, docker.inspect_container(&id, None)).await;
            match answer {
                Ok(Ok(inspect)) => cache.insert(&id, ContainerMeta::from_inspect(&inspect)),
                Ok(Err(e)) => {
                    tracing::debug!(container = %id, error = %e, "inspect failed");
                    if !matches!(e, bollard::errors::Error::DockerResponseServerError { .. }) {
                        client = None;
                    }
                }
                Err(_) => {
                    tracing::debug!(container = %id, "inspect timed out");
                    client = None;
                }
            }
        }
        cache.done(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, image: &str) -> ContainerMeta {
        ContainerMeta {
            name: Some(name.into()),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    #[test]
    fn insert_merges_and_keeps_what_the_new_answer_lacks() {
        let (cache, _q) = ContainerCache::new();
        cache.insert("a", meta("web", "nginx:1"));
        cache.insert(
            "a",
            ContainerMeta {
                image_id: Some("sha256:1".into()),
                ..Default::default()
            },
        );
        let got = cache.get("a").unwrap();
        assert_eq!(got.name.as_deref(), Some("web"));
        assert_eq!(got.image_id.as_deref(), Some("sha256:1"));
        cache.remove("a");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn a_miss_queues_one_inspect_per_id_without_waiting() {
        let (cache, InspectQueue(mut rx)) = ContainerCache::new();
        assert_eq!(cache.get_or_request("x"), None);
        assert_eq!(cache.get_or_request("x"), None);
        assert_eq!(cache.get_or_request("y"), None);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("x"));
        assert_eq!(rx.try_recv().ok().as_deref(), Some("y"));
        assert!(rx.try_recv().is_err(), "x was asked for once");
        // A full queue drops requests instead of blocking.
        for i in 0..INSPECT_QUEUE * 2 {
            cache.request(&format!("id{i}"));
        }
        cache.insert("z", meta("z", "i"));
        assert!(cache.get_or_request("z").is_some());
    }

    #[test]
    fn health_check_commands_as_the_engine_runs_them() {
        let t =
            |v: &[&str]| health_exec_command(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&["CMD-SHELL", "curl -f localhost"]).as_deref(),
            Some("/bin/sh -c curl -f localhost")
        );
        assert_eq!(
            t(&["CMD", "/bin/check", "-q"]).as_deref(),
            Some("/bin/check -q")
        );
        assert_eq!(t(&["NONE"]), None);
        assert_eq!(t(&["CMD"]), None);
        assert_eq!(t(&[]), None);
        assert_eq!(t(&["CMD-SHELL", "a", "b"]), None);
    }

    #[test]
    fn module_names_come_from_edge_labels_only() {
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let plain = ContainerMeta::from_parts(Some("/web"), Some("nginx"), &labels(&[]));
        assert_eq!(plain.name.as_deref(), Some("web"));
        assert_eq!(plain.module, None);
        let edge = ContainerMeta::from_parts(
            Some("/edgeHub"),
            Some("mcr/edgehub:1.4"),
            &labels(&[(EDGE_OWNER_LABEL, "Microsoft.Azure.Devices.Edge.Agent")]),
        );
        assert_eq!(edge.module.as_deref(), Some("edgeHub"));
        let named = ContainerMeta::from_parts(
            Some("/x"),
            None,
            &labels(&[(EDGE_OWNER_LABEL, "a"), (EDGE_MODULE_LABEL, "sensor")]),
        );
        assert_eq!(named.module.as_deref(), Some("sensor"));
        let empty = ContainerMeta::from_parts(Some("/"), Some(""), &labels(&[]));
        assert_eq!(empty, ContainerMeta::default());
        assert_eq!(
            ContainerMeta::from_inspect(&ContainerInspectResponse::default()),
            ContainerMeta::default()
        );
    }
}
