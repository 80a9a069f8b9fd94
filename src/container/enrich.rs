//! Puts container name, image and module on host events that carry a container id.
//!
//! Sits between the collectors and the pipeline. The process, connection and listening-port
//! collectors already write `ContainerId` (from the process's cgroup) into `ExtraDetails`; this
//! adds `ContainerName`, `ContainerImage` and, for IoT Edge modules, `ModuleName` when the
//! [`ContainerCache`] knows them. It never waits for the engine: a miss is counted, queues a
//! background inspect, and the event goes on as it is.

use super::cache::ContainerCache;
use crate::config::Config;
use crate::event::{Event, ExtraDetails, Payload};
use crate::metrics::Metrics;
use tokio::sync::{mpsc, watch};

/// Adds what the cache knows to every record of `event` that has a `ContainerId`. Returns
/// (records enriched, records from a container not known yet).
pub fn enrich(event: &mut Event, cache: &ContainerCache) -> (usize, usize) {
    let mut counts = (0, 0);
    let mut one = |extra: &mut ExtraDetails| {
        let Some(id) = extra.get("ContainerId") else {
            return;
        };
        match cache.get_or_request(id) {
            Some(meta) if meta.name.is_some() || meta.image.is_some() => {
                for (key, value) in [
                    ("ContainerName", meta.name),
                    ("ContainerImage", meta.image),
                    ("ModuleName", meta.module),
                ] {
                    if let Some(v) = value {
                        extra.insert(key.into(), v);
                    }
                }
                counts.0 += 1;
            }
            _ => counts.1 += 1,
        }
    };
    match &mut event.payload {
        Payload::ProcessCreate(v) => v.iter_mut().for_each(|r| one(&mut r.extra_details)),
        Payload::ProcessTerminate(v) => v.iter_mut().for_each(|r| one(&mut r.extra_details)),
        Payload::ConnectionCreate(v) => v.iter_mut().for_each(|r| one(&mut r.extra_details)),
        Payload::ListeningPorts(v) => v.iter_mut().for_each(|r| one(&mut r.extra_details)),
        _ => {}
    }
    counts
}

/// Forwards every event from the collectors to the pipeline, enriched while
/// `containerCollectionEnabled`, until the collectors' senders are gone. Waiting on a full
/// pipeline is the same back-pressure the collectors had.
pub async fn run(
    mut from_collectors: mpsc::Receiver<Event>,
    to_pipeline: mpsc::Sender<Event>,
    cache: std::sync::Arc<ContainerCache>,
    config: watch::Receiver<std::sync::Arc<Config>>,
    metrics: std::sync::Arc<Metrics>,
) {
    while let Some(mut event) = from_collectors.recv().await {
        let enabled = config.borrow().container_collection_enabled;
        let (enriched, missed) = if enabled {
            enrich(&mut event, &cache)
        } else {
            (0, 0)
        };
        for _ in 0..enriched {
            metrics.container_enrichment(true);
        }
        for _ in 0..missed {
            metrics.container_enrichment(false);
        }
        if to_pipeline.send(event).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cache::ContainerMeta;
    use crate::event::{ListeningPort, ProcessCreate};

    fn process(container: Option<&str>) -> ProcessCreate {
        ProcessCreate {
            executable: "/bin/sh".into(),
            command_line: "sh".into(),
            process_id: 7,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: None,
            extra_details: container
                .map(|c| [("ContainerId".to_string(), c.to_string())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn known_containers_are_enriched_unknown_ones_counted_and_host_events_untouched() {
        let (cache, _queue) = ContainerCache::new();
        cache.insert(
            "abc",
            ContainerMeta {
                name: Some("web".into()),
                image: Some("nginx:1".into()),
                image_id: None,
                module: Some("web".into()),
                health_cmd: None,
            },
        );
        let mut e = Event::new(Payload::ProcessCreate(vec![
            process(Some("abc")),
            process(Some("def")),
            process(None),
        ]));
        assert_eq!(enrich(&mut e, &cache), (1, 1));
        let Payload::ProcessCreate(r) = &e.payload else {
            panic!("kind changed")
        };
        assert_eq!(r[0].extra_details["ContainerName"], "web");
        assert_eq!(r[0].extra_details["ContainerImage"], "nginx:1");
        assert_eq!(r[0].extra_details["ModuleName"], "web");
        assert!(!r[1].extra_details.contains_key("ContainerName"));
        assert!(r[2].extra_details.is_empty());

        let mut ports = Event::new(Payload::ListeningPorts(vec![ListeningPort {
            protocol: "TCP".into(),
            local_address: None,
            local_port: 80,
            remote_address: None,
            remote_port: None,
            extra_details: [("ContainerId".to_string(), "abc".to_string())].into(),
        }]));
        assert_eq!(enrich(&mut ports, &cache), (1, 0));
    }

    #[tokio::test]
    async fn the_forwarder_enriches_only_while_container_collection_is_enabled() {
        let (cache, _queue) = ContainerCache::new();
        cache.insert(
            "abc",
            ContainerMeta {
                name: Some("web".into()),
                ..Default::default()
            },
        );
        let (config_tx, config) = watch::channel(std::sync::Arc::new(Config::default()));
        let metrics = std::sync::Arc::new(Metrics::for_tests());
        let (tx, rx) = mpsc::channel(4);
        let (out_tx, mut out) = mpsc::channel(4);
        tokio::spawn(run(rx, out_tx, cache, config, metrics.clone()));
        let name = |e: Event| match e.payload {
            Payload::ProcessCreate(r) => r[0].extra_details.get("ContainerName").cloned(),
            _ => None,
        };
        tx.send(Event::new(Payload::ProcessCreate(vec![process(Some(
            "abc",
        ))])))
        .await
        .unwrap();
        assert_eq!(name(out.recv().await.unwrap()).as_deref(), Some("web"));
        config_tx.send_modify(|c| {
            std::sync::Arc::make_mut(c).container_collection_enabled = false;
        });
        tx.send(Event::new(Payload::ProcessCreate(vec![process(Some(
            "abc",
        ))])))
        .await
        .unwrap();
        assert_eq!(name(out.recv().await.unwrap()), None);
        let count = |result| {
            metrics
                .value(
                    "edgeguard_container_enrichment_total",
                    &[("result", result)],
                )
                .unwrap_or(0.0)
        };
        assert_eq!((count("enriched"), count("not_enriched")), (1.0, 0.0));
    }
}
