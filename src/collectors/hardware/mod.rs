//! `ConnectedHardware` snapshots and hotplug events, and `KernelModule` events: what is
//! plugged into the host and what code is loaded into its kernel.
//!
//! Two parts, both named [`COLLECTOR`] (like the users collector's two):
//!
//! - [`HardwareCollector`] (periodic, `snapshotFrequency`): one `ConnectedHardware` event
//!   listing the host's USB devices, PCI functions, network interfaces, whole block devices and
//!   serial ports with hardware behind them, read from the host root's `/sys`
//!   ([`sysfs`]), at most [`MAX_SNAPSHOT_DEVICES`] records.
//! - [`HardwareWatcher`] (its own thread, `edgeguard-hw`): follows the kernel's uevents
//!   ([`uevent`]) and emits, per device plugged in or removed, a `ConnectedHardware` event of
//!   category `Triggered` with `ExtraDetails.Action` `Added` or `Removed`; per module loaded or
//!   removed a `KernelModule` event. Where the uevent socket cannot be opened (no host network,
//!   a kernel without it) it rescans /sys every [`RESCAN_INTERVAL`] and reports what differs
//!   from the last scan (`Degraded`). `/proc/modules` is compared every [`MODULES_INTERVAL`]
//!   as well (it also catches what a lost uevent missed).
//!
//! Hotplug events are rate limited ([`Limiter`]): a flapping device (a loose cable, a USB
//! device resetting in a loop) makes at most [`PER_DEVICE_PER_MINUTE`] events a minute, and all
//! devices together at most [`ALL_PER_MINUTE`]; the rest are counted in
//! `edgeguard_events_dropped_total{stage="hardware",reason="rate_limited"}`. Read problems are
//! counted in `edgeguard_errors_total{component="hardware"}` by `error_type`.

pub mod modules;
pub mod sysfs;
pub mod uevent;

use crate::collectors::{Context, Periodic, Running, Triggered};
use crate::event::{Category, CollectorHealth, Event, ModuleAction, Payload};
use crate::host::HostRoot;
use crate::metrics::{DropReason, Metrics};
use crate::text::error_chain;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysfs::{Bus, Device, Problems, Sysfs};
use uevent::{Action, Received, Uevent, UeventSocket};

/// The collector's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "hardware";

/// Most records in one snapshot (and devices remembered by the watcher). A gateway with a few
/// hundred containers has a host-side veth each; past this the snapshot is cut (logged, and
/// counted as `too_many_devices`).
pub const MAX_SNAPSHOT_DEVICES: usize = 1024;

/// How often /sys is rescanned when the uevent socket cannot be used.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// How often `/proc/modules` is compared with the last look.
pub const MODULES_INTERVAL: Duration = Duration::from_secs(30);

/// Longest wait in one receive: how soon the reader notices it is cancelled.
const RECV_TIMEOUT: Duration = Duration::from_millis(500);

/// Hotplug events of one device per minute; the rest are dropped and counted.
pub const PER_DEVICE_PER_MINUTE: u32 = 6;
/// Hotplug and module events of all devices together per minute.
pub const ALL_PER_MINUTE: u32 = 120;
/// Devices whose rate the limiter remembers; when more are seen in one minute the oldest
/// windows are forgotten.
const LIMITER_KEYS: usize = 1024;
const LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// The periodic `ConnectedHardware` snapshot.
pub struct HardwareCollector {
    metrics: Arc<Metrics>,
}

impl HardwareCollector {
    pub fn new(metrics: Arc<Metrics>) -> HardwareCollector {
        HardwareCollector { metrics }
    }
}

impl Periodic for HardwareCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        // No sysfs under the root (not mounted into the container): an empty snapshot would
        // claim the host has no devices at all, so none is sent.
        if let Err(e) = host.metadata("/sys/class") {
            self.metrics.error(COLLECTOR, "no_sysfs");
            tracing::warn!(collector = COLLECTOR, error = %e, "no ConnectedHardware snapshot: the host's /sys is not visible");
            return Vec::new();
        }
        let (devices, problems, cut) = scan(host);
        count_problems(&self.metrics, &problems, cut);
        let records = devices.iter().map(Device::record).collect();
        vec![Event::new(Payload::ConnectedHardware(records))]
    }
}

/// Every device, at most [`MAX_SNAPSHOT_DEVICES`] (then `true`).
pub fn scan(host: &HostRoot) -> (Vec<Device>, Problems, bool) {
    let mut sysfs = Sysfs::new(host);
    let (devices, cut) = sysfs.scan(MAX_SNAPSHOT_DEVICES);
    (devices, sysfs.problems, cut)
}

fn count_problems(metrics: &Metrics, problems: &Problems, cut: bool) {
    for (kind, n) in &problems.counts {
        for _ in 0..*n {
            metrics.error(COLLECTOR, kind);
        }
    }
    if let Some(first) = &problems.first {
        tracing::debug!(
            collector = COLLECTOR,
            problems = problems.total(),
            first = %first,
            "reading the host's devices"
        );
    }
    if cut {
        metrics.error(COLLECTOR, "too_many_devices");
        tracing::warn!(
            collector = COLLECTOR,
            "more than {MAX_SNAPSHOT_DEVICES} devices; the snapshot lists the first"
        );
    }
}

/// The hotplug and module watcher as the registry lists it: [`spawn`] on its own thread.
pub struct HardwareWatcher;

impl Triggered for HardwareWatcher {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<Running> {
        spawn(ctx, Source::Uevents).map(Running::Thread)
    }
}

/// Where the watcher learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The uevent socket, falling back to rescans when it cannot be opened.
    Uevents,
    /// Rescans only, at this interval (tests; and what the fallback does).
    Rescan(Duration),
}

/// Starts the watcher on a thread (`edgeguard-hw`); it ends within about half a second of
/// `ctx.cancel`, or when the pipeline's channel closes.
pub fn spawn(ctx: Context, source: Source) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("edgeguard-hw".into())
        .spawn(move || run(ctx, source))
}

/// The watcher's memory: devices and modules last seen, and the rate limiter.
pub struct Watch {
    host: HostRoot,
    pub devices: BTreeMap<(Bus, String), Device>,
    /// `None` while the kernel shows no `/proc/modules` (no module support).
    pub modules: Option<modules::Modules>,
    pub limiter: Limiter,
    pub problems: Problems,
    /// USB devices whose `add` came before their interfaces: the kernel sends a device's
    /// `add`, then configures it (its interfaces appear), then sends `bind`. Reported at `bind`
    /// with their interface classes (what tells a keyboard from a stick), or after
    /// [`USB_CONFIGURE_WAIT`] as they are (a device never configured: unauthorized, no driver,
    /// a kernel before 4.14 without `bind` uevents). With when the `add` came.
    pub pending_usb: BTreeMap<String, (Device, Instant)>,
}

/// How long a USB device may wait for its configuration before it is reported without its
/// interfaces ([`Watch::pending_usb`]); configuring takes milliseconds.
pub const USB_CONFIGURE_WAIT: Duration = Duration::from_secs(2);

impl Watch {
    /// Starts from what the host shows now: nothing already there is reported.
    pub fn new(host: HostRoot) -> Watch {
        let (devices, problems, _) = scan(&host);
        let mut problems = problems;
        let modules = modules::read(&host, &mut problems);
        Watch {
            devices: devices.into_iter().map(|d| (d.key(), d)).collect(),
            modules,
            host,
            limiter: Limiter::default(),
            problems,
            pending_usb: BTreeMap::new(),
        }
    }

    /// The events for one uevent (none for the many the collector does not follow).
    pub fn on_uevent(&mut self, ev: &Uevent) -> Vec<Event> {
        if ev.subsystem == "module" {
            return self.on_module(ev).into_iter().collect();
        }
        let Some(bus) = bus_of(ev) else {
            return Vec::new();
        };
        let name = ev.sysname().to_string();
        match ev.action {
            Action::Add | Action::Change => self.look_again(bus, &name, ev),
            Action::Bind if bus == Bus::Usb => self.look_again(bus, &name, ev),
            Action::Remove if bus == Bus::Usb && self.pending_usb.contains_key(&name) => {
                // Unplugged before it was configured: both halves, so it is not missed.
                let Some((d, _)) = self.pending_usb.remove(&name) else {
                    return Vec::new();
                };
                vec![
                    hotplug(&d, "Added", "uevent", Some(ev)),
                    hotplug(&d, "Removed", "uevent", Some(ev)),
                ]
            }
            Action::Remove => self.gone(bus, &name, Some(ev)).into_iter().collect(),
            Action::Move => {
                // A rename (`eth0` → `enp1s0`): the old name is gone, the new one is there.
                let mut out = Vec::new();
                if let Some(old) = ev.var("DEVPATH_OLD") {
                    let old = old.rsplit('/').next().unwrap_or("").to_string();
                    out.extend(self.gone(bus, &old, None));
                }
                out.extend(self.look_again(bus, &name, ev));
                out
            }
            _ => Vec::new(),
        }
    }

    /// Reads a device again after `add` or `change`: listed now and not before is `Added`,
    /// the other way round (a loop device detached) `Removed`.
    fn look_again(&mut self, bus: Bus, name: &str, ev: &Uevent) -> Vec<Event> {
        let mut sysfs = Sysfs::new(&self.host);
        let now = sysfs.device(bus, name);
        merge(&mut self.problems, sysfs.problems);
        let key = (bus, name.to_string());
        match (now, self.devices.contains_key(&key)) {
            (Some(d), false)
                if bus == Bus::Usb
                    && ev.action == Action::Add
                    && !d.details.contains_key("InterfaceClasses") =>
            {
                self.pending_usb
                    .insert(name.to_string(), (d, Instant::now()));
                Vec::new()
            }
            (Some(d), false) => {
                self.pending_usb.remove(name);
                self.remember_added(key, &d);
                vec![hotplug(&d, "Added", "uevent", Some(ev))]
            }
            (Some(d), true) => {
                self.devices.insert(key, d);
                Vec::new()
            }
            (None, true) if ev.action == Action::Change => {
                self.gone(bus, name, Some(ev)).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Reports the USB devices that waited [`USB_CONFIGURE_WAIT`] for their configuration
    /// without it, as they are now (`now`: the caller's clock, for tests).
    pub fn flush_pending(&mut self, now: Instant) -> Vec<Event> {
        let due: Vec<String> = self
            .pending_usb
            .iter()
            .filter(|(_, (_, since))| now.saturating_duration_since(*since) >= USB_CONFIGURE_WAIT)
            .map(|(name, _)| name.clone())
            .collect();
        let mut out = Vec::new();
        for name in due {
            let Some((old, _)) = self.pending_usb.remove(&name) else {
                continue;
            };
            let mut sysfs = Sysfs::new(&self.host);
            let d = sysfs.device(Bus::Usb, &name).unwrap_or(old);
            merge(&mut self.problems, sysfs.problems);
            self.remember_added((Bus::Usb, name), &d);
            out.push(hotplug(&d, "Added", "uevent", None));
        }
        out
    }

    /// Lists a device reported `Added`, within [`MAX_SNAPSHOT_DEVICES`].
    fn remember_added(&mut self, key: (Bus, String), d: &Device) {
        if self.devices.len() >= MAX_SNAPSHOT_DEVICES {
            self.problems.add("too_many_devices", || {
                format!("more than {MAX_SNAPSHOT_DEVICES} devices remembered")
            });
        } else {
            self.devices.insert(key, d.clone());
        }
    }

    /// A device gone: `Removed` with what was known of it. One never listed (a partition, an
    /// unused loop device) makes no event.
    fn gone(&mut self, bus: Bus, name: &str, ev: Option<&Uevent>) -> Option<Event> {
        let known = self.devices.remove(&(bus, name.to_string()))?;
        Some(hotplug(&known, "Removed", "uevent", ev))
    }

    fn on_module(&mut self, ev: &Uevent) -> Option<Event> {
        let name = ev.sysname();
        if !modules::is_module_name(name) {
            return None;
        }
        let action = match ev.action {
            Action::Add => ModuleAction::Loaded,
            Action::Remove => ModuleAction::Removed,
            _ => return None,
        };
        let info = match action {
            ModuleAction::Loaded => {
                // Size and state from /proc/modules, taint from /sys/module when it has none.
                let mut info = modules::read(&self.host, &mut self.problems)
                    .and_then(|mut m| m.remove(name))
                    .unwrap_or_default();
                if info.taint.is_none() {
                    info.taint = modules::sys_taint(&self.host, name, &mut self.problems);
                }
                if let Some(m) = &mut self.modules {
                    m.insert(name.to_string(), info.clone());
                }
                Some(info)
            }
            ModuleAction::Removed => self.modules.as_mut().and_then(|m| m.remove(name)),
        };
        let mut record = modules::record(name, action, info.as_ref(), "uevent");
        if let Some(seq) = ev.var("SEQNUM") {
            record.extra_details.insert("Seqnum".into(), seq.into());
        }
        Some(Event::new(Payload::KernelModule(vec![record])))
    }

    /// Compares `/proc/modules` with the last look.
    pub fn modules_again(&mut self) -> Vec<Event> {
        let Some(now) = modules::read(&self.host, &mut self.problems) else {
            return Vec::new();
        };
        let events = match &self.modules {
            Some(old) => modules::diff(old, &now, "proc_modules")
                .into_iter()
                .map(|r| Event::new(Payload::KernelModule(vec![r])))
                .collect(),
            // The first look (the file appeared): nothing to compare with.
            None => Vec::new(),
        };
        self.modules = Some(now);
        events
    }

    /// Scans /sys again and reports what differs from the last scan (the fallback, and the
    /// catch-up after the socket overflowed).
    pub fn rescan(&mut self) -> Vec<Event> {
        let (devices, problems, _) = scan(&self.host);
        merge(&mut self.problems, problems);
        // A pending device still there is reported below with the rest.
        self.pending_usb.clear();
        let now: BTreeMap<(Bus, String), Device> =
            devices.into_iter().map(|d| (d.key(), d)).collect();
        let mut out = Vec::new();
        for (key, d) in &now {
            if !self.devices.contains_key(key) {
                out.push(hotplug(d, "Added", "rescan", None));
            }
        }
        for (key, d) in &self.devices {
            if !now.contains_key(key) {
                out.push(hotplug(d, "Removed", "rescan", None));
            }
        }
        self.devices = now;
        out
    }

    /// Counts and forgets the problems met since the last call.
    pub fn count_problems(&mut self, metrics: &Metrics) {
        let problems = std::mem::take(&mut self.problems);
        count_problems(metrics, &problems, false);
    }
}

fn merge(into: &mut Problems, from: Problems) {
    for (k, n) in from.counts {
        *into.counts.entry(k).or_default() += n;
    }
    if into.first.is_none() {
        into.first = from.first;
    }
}

/// The bus a device uevent is about, for the subsystems the collector lists.
fn bus_of(ev: &Uevent) -> Option<Bus> {
    Some(match ev.subsystem.as_str() {
        // Interfaces (`usb_interface`) are parts of a device, reported with it.
        "usb" if ev.var("DEVTYPE") == Some("usb_device") => Bus::Usb,
        "pci" => Bus::Pci,
        "net" => Bus::Net,
        // Partitions are parts of their disk.
        "block" if ev.var("DEVTYPE") != Some("partition") => Bus::Block,
        "tty" => Bus::Serial,
        _ => return None,
    })
}

/// A triggered `ConnectedHardware` event of one device, `Action` `Added` or `Removed`.
pub fn hotplug(device: &Device, action: &str, source: &str, ev: Option<&Uevent>) -> Event {
    let mut record = device.record();
    record.extra_details.insert("Action".into(), action.into());
    record.extra_details.insert("Source".into(), source.into());
    if let Some(ev) = ev {
        record
            .extra_details
            .insert("DevicePath".into(), ev.devpath.clone());
        if let Some(seq) = ev.var("SEQNUM") {
            record.extra_details.insert("Seqnum".into(), seq.into());
        }
    }
    let mut event = Event::new(Payload::ConnectedHardware(vec![record]));
    event.category = Category::Triggered;
    event
}

/// Fixed one-minute windows per device and for all together (see the module documentation).
#[derive(Debug)]
pub struct Limiter {
    per_device: HashMap<String, (Instant, u32)>,
    /// Windows are per device name, and every container's veth pair is a new name.
    sweep: crate::collectors::capacity::Sweep,
    all: (Instant, u32),
    per_device_limit: u32,
    all_limit: u32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(PER_DEVICE_PER_MINUTE, ALL_PER_MINUTE)
    }
}

impl Limiter {
    pub fn new(per_device_limit: u32, all_limit: u32) -> Limiter {
        Limiter {
            per_device: HashMap::new(),
            sweep: Default::default(),
            all: (Instant::now(), 0),
            per_device_limit,
            all_limit,
        }
    }

    /// Whether one more event about `key` may go out now.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if now.duration_since(self.all.0) >= LIMIT_WINDOW {
            self.all = (now, 0);
        }
        if self.all.1 >= self.all_limit {
            return false;
        }
        let len = self.per_device.len();
        if !self.per_device.contains_key(key) && (self.sweep.due(len) || len >= LIMITER_KEYS) {
            self.per_device
                .retain(|_, (start, _)| now.duration_since(*start) < LIMIT_WINDOW);
            self.sweep.done(self.per_device.len());
            crate::collectors::capacity::shrink_map(&mut self.per_device);
            if self.per_device.len() >= LIMITER_KEYS {
                // Still full of live windows: the one opened first goes.
                if let Some(oldest) = self
                    .per_device
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| k.clone())
                {
                    self.per_device.remove(&oldest);
                }
            }
        }
        let window = self.per_device.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(window.0) >= LIMIT_WINDOW {
            *window = (now, 0);
        }
        if window.1 >= self.per_device_limit {
            return false;
        }
        window.1 += 1;
        self.all.1 += 1;
        true
    }

    pub fn remembered(&self) -> usize {
        self.per_device.len()
    }
}

/// The key an event is limited under: bus and kernel name, or the module name.
fn limit_key(event: &Event) -> String {
    match &event.payload {
        Payload::ConnectedHardware(r) => r
            .first()
            .map(|r| {
                format!(
                    "{}:{}",
                    r.extra_details.get("Bus").map_or("", String::as_str),
                    r.extra_details.get("KernelName").map_or("", String::as_str)
                )
            })
            .unwrap_or_default(),
        Payload::KernelModule(r) => r
            .first()
            .map(|r| format!("module:{}", r.name))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Sends events through the limiter; `false` once the pipeline has stopped.
fn send(ctx: &Context, watch: &mut Watch, events: Vec<Event>) -> bool {
    let now = Instant::now();
    for event in events {
        if !watch.limiter.allow(&limit_key(&event), now) {
            ctx.metrics.dropped(COLLECTOR, DropReason::RateLimited, 1);
            continue;
        }
        if !ctx.emit_from_reader(COLLECTOR, event) {
            return false;
        }
    }
    true
}

fn run(ctx: Context, source: Source) {
    let mut watch = Watch::new(ctx.host.clone());
    watch.count_problems(&ctx.metrics);
    let fallback = "rescanning /sys every 5 seconds";
    let every = match source {
        Source::Rescan(every) => {
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Degraded,
                "the kernel's device events are not used",
                Some("rescanning /sys"),
            );
            every
        }
        Source::Uevents => {
            match UeventSocket::open(RECV_TIMEOUT) {
                Ok(socket) => {
                    let buffer = socket
                        .recv_buffer
                        .map(|b| format!(" (receive buffer {} KiB)", b / 1024))
                        .unwrap_or_default();
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Up,
                        format!("following the kernel's device events{buffer}"),
                        None,
                    );
                    match follow(&ctx, &socket, &mut watch) {
                        Ok(()) => return,
                        Err(e) => ctx.report_status(
                            COLLECTOR,
                            CollectorHealth::Degraded,
                            format!("reading the kernel's device events: {e}"),
                            Some(fallback),
                        ),
                    }
                }
                Err(e) => ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Degraded,
                    error_chain(&e),
                    Some(fallback),
                ),
            }
            RESCAN_INTERVAL
        }
    };
    poll(&ctx, &mut watch, every);
}

/// Reads uevents until cancelled (`Ok`) or until receiving keeps failing.
fn follow(ctx: &Context, socket: &UeventSocket, watch: &mut Watch) -> std::io::Result<()> {
    let mut batch = uevent::Batch::default();
    let mut next_modules = Instant::now() + MODULES_INTERVAL;
    let mut failures = 0u32;
    while !ctx.cancel.is_cancelled() {
        let mut events = Vec::new();
        match socket.recv(&mut batch) {
            Ok(Received::Datagrams) => {
                failures = 0;
                for datagram in batch.datagrams() {
                    match uevent::parse(datagram) {
                        Ok(ev) => events.extend(watch.on_uevent(&ev)),
                        Err(e) => {
                            tracing::debug!(error = %e, "skipping a uevent datagram");
                            ctx.metrics.error(COLLECTOR, e.error_type());
                        }
                    }
                }
            }
            Ok(Received::TimedOut) => {}
            Ok(Received::Overflow) => {
                // Some uevents were lost: what they said is found by comparing with /sys.
                ctx.metrics
                    .dropped(COLLECTOR, DropReason::SourceOverflow, 1);
                events.extend(watch.rescan());
                events.extend(watch.modules_again());
            }
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "netlink_recv");
                failures += 1;
                if failures >= 10 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if Instant::now() >= next_modules {
            next_modules = Instant::now() + MODULES_INTERVAL;
            events.extend(watch.modules_again());
        }
        events.extend(watch.flush_pending(Instant::now()));
        watch.count_problems(&ctx.metrics);
        if !send(ctx, watch, events) {
            return Ok(());
        }
    }
    Ok(())
}

/// The fallback: rescans /sys every `every` (and `/proc/modules` every [`MODULES_INTERVAL`])
/// until cancelled.
fn poll(ctx: &Context, watch: &mut Watch, every: Duration) {
    let mut next_modules = Instant::now() + MODULES_INTERVAL;
    loop {
        let until = Instant::now() + every;
        while Instant::now() < until {
            if ctx.cancel.is_cancelled() {
                return;
            }
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(RECV_TIMEOUT),
            );
        }
        let mut events = watch.rescan();
        if Instant::now() >= next_modules {
            next_modules = Instant::now() + MODULES_INTERVAL;
            events.extend(watch.modules_again());
        }
        watch.count_problems(&ctx.metrics);
        if !send(ctx, watch, events) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
