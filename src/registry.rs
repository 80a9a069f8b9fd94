//! Every collector this build has, in the order they start. Adding a collector is its folder
//! under `collectors/` (a [`Periodic`](crate::collectors::Periodic) or a
//! [`Triggered`](crate::collectors::Triggered)) and one line here; `lib.rs` starts whatever this
//! list holds, in both `run` and `snapshot` (which takes the periodic ones once).
//!
//! The order matters: periodic collectors run one after the other on each snapshot, so the
//! quick ones come first (the first message leaves within a second of start) and the baseline,
//! which walks directories, comes late.

use crate::collectors::{
    Collector, baseline, connection, files, firewall, hardware, inventory, listening, login,
    process, system, users,
};
use crate::config::Config;
use crate::container::Containers;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::watch;

/// What collectors are built with.
pub struct Parts<'a> {
    pub metrics: &'a Arc<Metrics>,
    pub config: &'a watch::Receiver<Arc<Config>>,
    pub containers: &'a Containers,
}

/// Every collector, in start order.
pub fn collectors(p: &Parts<'_>) -> Vec<Collector> {
    use Collector::{Periodic, Triggered};
    vec![
        Periodic(Box::new(system::SystemInformationCollector)),
        Periodic(Box::new(listening::ListeningPortsCollector)),
        Periodic(Box::new(users::LocalUsersCollector)),
        Periodic(Box::new(firewall::FirewallCollector::new(
            p.metrics.clone(),
        ))),
        Periodic(Box::new(hardware::HardwareCollector::new(
            p.metrics.clone(),
        ))),
        Periodic(Box::new(inventory::SoftwareInventoryCollector)),
        Periodic(Box::new(baseline::BaselineCollector::new(p.config.clone()))),
        Periodic(p.containers.inventory(p.config, p.metrics)),
        Triggered(Box::new(process::ProcessCollector)),
        Triggered(Box::new(connection::ConnectionCollector)),
        Triggered(Box::new(login::LoginCollector)),
        Triggered(Box::new(users::AccountWatcher)),
        Triggered(Box::new(inventory::PackageWatcher)),
        Triggered(Box::new(firewall::monitor::FirewallMonitor)),
        Triggered(Box::new(hardware::HardwareWatcher)),
        Triggered(p.containers.watcher()),
        Triggered(Box::new(files::FileIntegrityCollector)),
    ]
}
