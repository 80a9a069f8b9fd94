//! Container security through the Docker (Moby) engine API, over the unix socket mounted into
//! the module (`dockerSocketPath`, default `/var/run/docker.sock`).
//!
//! - [`events`]: the engine's event stream → `ContainerEvent` (triggered), with reconnect,
//!   backoff and resume.
//! - [`inventory`]: every container with its [`posture`] findings (`ContainerInventory`) and every
//!   image (`ContainerImages`), on the snapshot timer.
//! - [`cache`] and [`enrich`]: container name, image and module on process, connection and
//!   listening-port events from containers, without ever waiting on the engine.
//!
//! All of it is off when `containerCollectionEnabled` is false.

pub mod cache;
pub mod drift;
pub mod enrich;
pub mod events;
pub mod inventory;
pub mod posture;

use crate::collectors::{Context, Periodic, Running, Triggered};
use crate::config::Config;
use crate::metrics::Metrics;
use bollard::Docker;
use cache::ContainerCache;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// The watcher's collector name (metrics label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "container";
/// The inventory's collector name.
pub const COLLECTOR_INVENTORY: &str = "container_inventory";

/// Seconds an engine request may take until its answer starts (bollard's client timeout; it
/// does not cut the long-lived event stream, whose headers come at once).
const CLIENT_TIMEOUT_SECS: u64 = 30;
/// How long connecting and agreeing on an API version may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("connecting to the Docker socket {path}")]
    Connect {
        path: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine at {0} did not answer within {1:?}")]
    ConnectTimeout(String, Duration),
    #[error("{0}")]
    Api(&'static str, #[source] bollard::errors::Error),
    #[error("the inventory took longer than {0:?}")]
    Timeout(Duration),
}

impl ContainerError {
    /// The `error_type` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ContainerError::Connect { .. } | ContainerError::ConnectTimeout(..) => "connection",
            ContainerError::Api(..) => "api",
            ContainerError::Timeout(_) => "timeout",
        }
    }
}

/// Connects to the engine at `path` and agrees on an API version (bollard speaks a newer one
/// than Debian's or an IoT Edge device's Moby may). Fails fast when the socket is missing.
pub async fn connect(path: &str) -> Result<Docker, ContainerError> {
    let err = |source| ContainerError::Connect {
        path: path.to_string(),
        source,
    };
    let docker = Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(err)?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(err(e)),
        Err(_) => Err(ContainerError::ConnectTimeout(
            path.to_string(),
            CONNECT_TIMEOUT,
        )),
    }
}

/// The container parts that live as long as the agent: the id → name/image cache and its
/// inspector. The event watcher and the inventory are collectors
/// ([`Containers::watcher`], [`Containers::inventory`]); the enricher ([`enrich::run`]) is a
/// stage of its own between the collectors and the pipeline, wired in `lib.rs`.
pub struct Containers {
    pub cache: Arc<ContainerCache>,
}

impl Containers {
    /// Starts the inspector, which fills the cache in the background until `cancel`.
    pub fn start(
        config: watch::Receiver<Arc<Config>>,
        cancel: tokio_util::sync::CancellationToken,
        tracker: &TaskTracker,
    ) -> Containers {
        let (cache, queue) = ContainerCache::new();
        tracker.spawn(cache::run_inspector(cache.clone(), queue, config, cancel));
        Containers { cache }
    }

    /// The engine's event watcher (a triggered collector).
    pub fn watcher(&self) -> Box<dyn Triggered> {
        Box::new(Watcher {
            cache: self.cache.clone(),
        })
    }

    /// The inventory (a periodic collector).
    pub fn inventory(
        &self,
        config: &watch::Receiver<Arc<Config>>,
        metrics: &Arc<Metrics>,
    ) -> Box<dyn Periodic> {
        Box::new(inventory::InventoryCollector::new(
            tokio::runtime::Handle::current(),
            self.cache.clone(),
            config.clone(),
            metrics.clone(),
        ))
    }
}

/// [`events::watch`] as a triggered collector.
struct Watcher {
    cache: Arc<ContainerCache>,
}

impl Triggered for Watcher {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<Running> {
        Ok(Running::task(events::watch(ctx, self.cache)))
    }
}
