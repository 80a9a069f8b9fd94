//! The periodic container inventory: every container with its posture findings
//! (`ContainerInventory`), and every image present (`ContainerImages`), on the snapshot timer.

use super::cache::{ContainerCache, ContainerMeta};
use super::{COLLECTOR_INVENTORY, ContainerError, connect, posture};
use crate::collectors::Periodic;
use crate::config::Config;
use crate::event::{ContainerImage, ContainerInventory, Event, Payload};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use bollard::models::{ContainerInspectResponse, ImageSummary};
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A whole inventory round may take this long; an engine slower than that is reported as an
/// error, and the next snapshot tries again.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// The inventory collector. Runs on a blocking thread like every periodic collector, and hands
/// its engine calls to the runtime.
pub struct InventoryCollector {
    runtime: tokio::runtime::Handle,
    cache: Arc<ContainerCache>,
    config: watch::Receiver<Arc<Config>>,
    metrics: Arc<Metrics>,
}

impl InventoryCollector {
    pub fn new(
        runtime: tokio::runtime::Handle,
        cache: Arc<ContainerCache>,
        config: watch::Receiver<Arc<Config>>,
        metrics: Arc<Metrics>,
    ) -> InventoryCollector {
        InventoryCollector {
            runtime,
            cache,
            config,
            metrics,
        }
    }
}

impl Periodic for InventoryCollector {
    fn name(&self) -> &'static str {
        COLLECTOR_INVENTORY
    }

    fn collect(&mut self, _host: &HostRoot) -> Vec<Event> {
        let (enabled, path) = {
            let c = self.config.borrow();
            (c.container_collection_enabled, c.docker_socket_path.clone())
        };
        if !enabled {
            return Vec::new();
        }
        let cache = self.cache.clone();
        let task = self.runtime.spawn(async move {
            tokio::time::timeout(ROUND_TIMEOUT, take(&path, &cache))
                .await
                .unwrap_or(Err(ContainerError::Timeout(ROUND_TIMEOUT)))
        });
        match self.runtime.block_on(task) {
            Ok(Ok((containers, images))) => vec![
                Event::new(Payload::ContainerInventory(containers)),
                Event::new(Payload::ContainerImages(images)),
            ],
            Ok(Err(e)) => {
                // The watcher reports the engine's health as a CollectorStatus; here, a log line
                // and a counted error, and no snapshot (an empty one would say "no containers").
                tracing::warn!(collector = COLLECTOR_INVENTORY, error = %e, "no container inventory this round");
                self.metrics.error(COLLECTOR_INVENTORY, e.kind());
                Vec::new()
            }
            Err(e) => {
                tracing::error!(collector = COLLECTOR_INVENTORY, error = %e, "the inventory task failed");
                self.metrics.error(COLLECTOR_INVENTORY, "task");
                Vec::new()
            }
        }
    }
}

/// One inventory round against the engine at `path`.
async fn take(
    path: &str,
    cache: &ContainerCache,
) -> Result<(Vec<ContainerInventory>, Vec<ContainerImage>), ContainerError> {
    let docker = connect(path).await?;
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| ContainerError::Api("listing containers", e))?;
    let mut containers = Vec::with_capacity(list.len());
    for summary in list {
        let Some(id) = summary.id.filter(|i| !i.is_empty()) else {
            continue;
        };
        // A container removed between the list and the inspect is simply gone.
        match docker.inspect_container(&id, None).await {
            Ok(inspect) => {
                let meta = ContainerMeta::from_inspect(&inspect);
                cache.insert(&id, meta.clone());
                containers.push(record(&id, &inspect, meta));
            }
            Err(e) => tracing::debug!(container = %id, error = %e, "inspect failed"),
        }
    }
    let images = docker
        .list_images(Some(ListImagesOptions::default()))
        .await
        .map_err(|e| ContainerError::Api("listing images", e))?
        .iter()
        .map(image_record)
        .collect();
    Ok((containers, images))
}

/// The inventory record of one inspected container.
pub fn record(id: &str, c: &ContainerInspectResponse, meta: ContainerMeta) -> ContainerInventory {
    let state = c
        .state
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty());
    ContainerInventory {
        container_id: id.to_string(),
        container_name: meta.name,
        image: meta.image,
        image_id: meta.image_id,
        module_name: meta.module,
        state,
        findings: posture::evaluate(c),
        extra_details: Default::default(),
    }
}

/// The `ContainerImages` record of one image.
pub fn image_record(i: &ImageSummary) -> ContainerImage {
    let created = chrono::DateTime::from_timestamp(i.created, 0)
        .filter(|_| i.created > 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let dangling = |t: &&String| t.as_str() != "<none>:<none>" && t.as_str() != "<none>@<none>";
    ContainerImage {
        image_id: i.id.clone(),
        tags: i.repo_tags.iter().filter(dangling).cloned().collect(),
        digests: i.repo_digests.iter().filter(dangling).cloned().collect(),
        size_bytes: i.size.max(0),
        created,
        extra_details: Default::default(),
    }
}
