//! The host's devices as its `/sys` shows them: USB devices, PCI functions, network
//! interfaces, whole block devices and serial ports with hardware behind them.
//!
//! Every read goes through [`HostRoot`] (paths resolved inside the host root, regular files
//! only). sysfs is the kernel's, but under a host root that is not `/` (or in a test) it is just
//! a directory tree, so everything here is untrusted: an attribute is read with a prefix cap
//! ([`MAX_ATTR_BYTES`]: a real sysfs attribute is at most one page), cut to
//! [`MAX_VALUE_CHARS`], control characters replaced; a directory yields at most
//! [`MAX_DIR_ENTRIES`] entries. A missing attribute is normal (drivers expose different ones)
//! and leaves the field out; any other failure is counted in [`Problems`] and the device is
//! still listed with what could be read.

use crate::event::{ConnectedHardware, ExtraDetails};
use crate::host::HostRoot;
use std::collections::BTreeMap;

/// Most bytes read of one sysfs attribute: the kernel's own limit is a page (`PAGE_SIZE`,
/// 4 KiB on the architectures edgeguard runs on); anything longer is not a kernel attribute.
pub const MAX_ATTR_BYTES: u64 = 4096;

/// Most characters of an attribute kept in a record (model names, product strings).
pub const MAX_VALUE_CHARS: usize = 256;

/// Most entries read from one sysfs directory (`/sys/class/net`, …). A host with thousands of
/// container veths would otherwise make one snapshot unbounded.
pub const MAX_DIR_ENTRIES: usize = 4096;

/// Most interfaces of one USB device looked at for its class (a composite device has a few).
const MAX_USB_INTERFACES: usize = 16;

/// Where a device was found (and the `Bus` in its `ExtraDetails`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bus {
    Usb,
    Pci,
    Net,
    Block,
    Serial,
}

impl Bus {
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::Usb => "usb",
            Bus::Pci => "pci",
            Bus::Net => "net",
            Bus::Block => "block",
            Bus::Serial => "tty",
        }
    }
}

/// One device, as listed in a snapshot and compared between scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub bus: Bus,
    /// The kernel's name for it (`eth0`, `1-1`, `0000:00:03.0`, `vda`, `ttyS0`): unique per bus.
    pub sysname: String,
    /// Its path under `/sys` as uevents name it (`/devices/virtual/net/eth0`); empty when the
    /// class link could not be read.
    pub devpath: String,
    pub category: String,
    pub sub_category: String,
    pub name: String,
    pub details: ExtraDetails,
}

impl Device {
    /// What identifies a device between scans and in uevents.
    pub fn key(&self) -> (Bus, String) {
        (self.bus, self.sysname.clone())
    }

    /// The `ConnectedHardware` record: `Bus`, `KernelName` and `DevicePath` added to the
    /// device's own details.
    pub fn record(&self) -> ConnectedHardware {
        let mut extra = self.details.clone();
        extra.insert("Bus".into(), self.bus.as_str().into());
        extra.insert("KernelName".into(), self.sysname.clone());
        if !self.devpath.is_empty() {
            extra.insert("DevicePath".into(), self.devpath.clone());
        }
        ConnectedHardware {
            hardware_category: self.category.clone(),
            hardware_sub_category: self.sub_category.clone(),
            hardware_name: self.name.clone(),
            extra_details: extra,
        }
    }
}

/// What went wrong while reading (not missing attributes, which are normal): counts by
/// `error_type` label, and the first message for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems {
    pub counts: BTreeMap<&'static str, u64>,
    pub first: Option<String>,
}

impl Problems {
    pub fn add(&mut self, error_type: &'static str, message: impl FnOnce() -> String) {
        *self.counts.entry(error_type).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(message());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Reads sysfs under a host root, counting problems.
pub struct Sysfs<'a> {
    pub host: &'a HostRoot,
    pub problems: Problems,
}

impl<'a> Sysfs<'a> {
    pub fn new(host: &'a HostRoot) -> Sysfs<'a> {
        Sysfs {
            host,
            problems: Problems::default(),
        }
    }

    /// Every device of every bus, in bus order, at most `max` (then `true`: some were left out).
    pub fn scan(&mut self, max: usize) -> (Vec<Device>, bool) {
        let mut all = Vec::new();
        for bus in [Bus::Usb, Bus::Pci, Bus::Net, Bus::Block, Bus::Serial] {
            for name in self.names(class_dir(bus)) {
                if let Some(d) = self.device(bus, &name) {
                    if all.len() >= max {
                        return (all, true);
                    }
                    all.push(d);
                }
            }
        }
        (all, false)
    }

    /// One device by bus and kernel name; `None` when it is not there or is not listed (an
    /// interface rather than a USB device, a partition, an unused loop device, a tty with no
    /// hardware).
    pub fn device(&mut self, bus: Bus, sysname: &str) -> Option<Device> {
        if !is_plain_name(sysname) {
            return None;
        }
        match bus {
            Bus::Usb => self.usb(sysname),
            Bus::Pci => self.pci(sysname),
            Bus::Net => self.net(sysname),
            Bus::Block => self.block(sysname),
            Bus::Serial => self.serial(sysname),
        }
    }

    /// The entry names of a sysfs directory, sorted, at most [`MAX_DIR_ENTRIES`]. A directory
    /// that is not there (no USB support, no PCI bus) is empty, not a problem.
    fn names(&mut self, dir: &str) -> Vec<String> {
        let listing = match self.host.read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.is_not_found() => return Vec::new(),
            Err(e) => {
                self.problems
                    .add(e.error_type().unwrap_or("read"), || e.to_string());
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for entry in listing {
            match entry {
                Ok(e) => {
                    if names.len() >= MAX_DIR_ENTRIES {
                        self.problems.add("too_many_entries", || {
                            format!("{dir}: more than {MAX_DIR_ENTRIES} entries; the rest left out")
                        });
                        break;
                    }
                    // Names that are not UTF-8 are not the kernel's: not listed.
                    if let Some(n) = e.name.to_str() {
                        names.push(n.to_string());
                    }
                }
                Err(e) => {
                    self.problems.add("read", || format!("listing {dir}: {e}"));
                    break;
                }
            }
        }
        names.sort();
        names
    }

    /// An attribute's text, trimmed and cleaned; `None` when it is missing or unreadable.
    pub fn attr(&mut self, path: &str) -> Option<String> {
        let bytes = match self.host.read_prefix(path, MAX_ATTR_BYTES + 1) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return None,
            Err(e) => {
                // Some attributes fail to read by design (EIO, EINVAL, EOPNOTSUPP on devices
                // that do not implement them): count them under their own label.
                let kind = e.error_type().unwrap_or("attribute_unreadable");
                self.problems.add(kind, || e.to_string());
                return None;
            }
        };
        if bytes.len() as u64 > MAX_ATTR_BYTES {
            self.problems.add("attribute_too_large", || {
                format!(
                    "{}: larger than {MAX_ATTR_BYTES} bytes",
                    self.host.path(path).display()
                )
            });
            return None;
        }
        let text = clean(&String::from_utf8_lossy(&bytes));
        (!text.is_empty()).then_some(text)
    }

    /// The last name of a symlink's target (`…/drivers/virtio_net` → `virtio_net`).
    fn link_name(&mut self, path: &str) -> Option<String> {
        let target = self.link(path)?;
        let last = target.rsplit('/').find(|c| !c.is_empty())?;
        Some(clean(last))
    }

    fn link(&mut self, path: &str) -> Option<String> {
        match self.host.read_link(path) {
            Ok(t) => Some(t.to_string_lossy().into_owned()),
            Err(e) if e.is_not_found() => None,
            // EINVAL: not a symlink (a fixture, or a host root that is not sysfs): no target.
            Err(crate::host::Error::Read { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                None
            }
            Err(e) => {
                self.problems
                    .add(e.error_type().unwrap_or("read"), || e.to_string());
                None
            }
        }
    }

    /// Whether a path exists (any type), without reading it.
    fn exists(&self, path: &str) -> bool {
        self.host.symlink_metadata(path).is_ok()
    }

    /// The device path of a class or bus entry, from its symlink.
    fn devpath(&mut self, dir: &str, name: &str) -> String {
        self.link(&format!("{dir}/{name}"))
            .and_then(|t| devpath_of(dir, &t))
            .unwrap_or_default()
    }

    fn usb(&mut self, name: &str) -> Option<Device> {
        let dir = format!("{}/{name}", class_dir(Bus::Usb));
        // Interfaces (`1-1:1.0`) have no idVendor: only devices are listed.
        let vendor = self.attr(&format!("{dir}/idVendor"))?;
        let product_id = self.attr(&format!("{dir}/idProduct")).unwrap_or_default();
        let class = self
            .attr(&format!("{dir}/bDeviceClass"))
            .and_then(|c| u8::from_str_radix(&c, 16).ok());
        let mut interface_classes: Vec<u8> = Vec::new();
        if matches!(class, None | Some(0x00) | Some(0xef)) {
            // The class is per interface (0x00) or "miscellaneous" (0xef, composite devices):
            // the interfaces say what the device is.
            let prefix = format!("{name}:");
            for iface in self
                .names(&dir)
                .into_iter()
                .filter(|n| n.starts_with(&prefix))
                .take(MAX_USB_INTERFACES)
            {
                if let Some(c) = self
                    .attr(&format!("{dir}/{iface}/bInterfaceClass"))
                    .and_then(|c| u8::from_str_radix(&c, 16).ok())
                    && !interface_classes.contains(&c)
                {
                    interface_classes.push(c);
                }
            }
        }
        let sub_category = match (class, interface_classes.first()) {
            (Some(c), _) if c != 0x00 && c != 0xef => usb_class_name(c),
            (_, Some(c)) => usb_class_name(*c),
            _ => "USB Device",
        };
        let manufacturer = self.attr(&format!("{dir}/manufacturer"));
        let product = self.attr(&format!("{dir}/product"));
        let mut details = ExtraDetails::new();
        details.insert("VendorId".into(), vendor.clone());
        details.insert("ProductId".into(), product_id.clone());
        if let Some(c) = class {
            details.insert("Class".into(), format!("{c:02x}"));
        }
        if !interface_classes.is_empty() {
            let list: Vec<String> = interface_classes
                .iter()
                .map(|c| usb_class_name(*c).to_string())
                .collect();
            details.insert("InterfaceClasses".into(), list.join(";"));
        }
        if let Some(m) = &manufacturer {
            details.insert("Manufacturer".into(), m.clone());
        }
        for (attr, key) in [
            ("serial", "SerialNumber"),
            ("speed", "SpeedMbps"),
            ("busnum", "BusNumber"),
            ("devnum", "DeviceNumber"),
            ("version", "UsbVersion"),
        ] {
            if let Some(v) = self.attr(&format!("{dir}/{attr}")) {
                details.insert(key.into(), v);
            }
        }
        if let Some(driver) = self.link_name(&format!("{dir}/driver")) {
            details.insert("Driver".into(), driver);
        }
        let name_text = match (&manufacturer, &product) {
            (_, Some(p)) => p.clone(),
            (Some(m), None) => format!("{m} {vendor}:{product_id}"),
            (None, None) => format!("USB device {vendor}:{product_id}"),
        };
        Some(Device {
            bus: Bus::Usb,
            sysname: name.to_string(),
            devpath: self.devpath(class_dir(Bus::Usb), name),
            category: "USB".into(),
            sub_category: sub_category.into(),
            name: name_text,
            details,
        })
    }

    fn pci(&mut self, name: &str) -> Option<Device> {
        let dir = format!("{}/{name}", class_dir(Bus::Pci));
        let vendor = self.attr(&format!("{dir}/vendor"))?;
        let vendor = vendor.trim_start_matches("0x").to_string();
        let device = self
            .attr(&format!("{dir}/device"))
            .map(|d| d.trim_start_matches("0x").to_string())
            .unwrap_or_default();
        let class = self
            .attr(&format!("{dir}/class"))
            .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok());
        let (category, sub_category) = match class {
            Some(c) => pci_class((c >> 16) as u8, (c >> 8) as u8),
            None => ("Other", "PCI Device"),
        };
        let mut details = ExtraDetails::new();
        details.insert("VendorId".into(), vendor.clone());
        details.insert("DeviceId".into(), device.clone());
        if let Some(c) = class {
            details.insert("Class".into(), format!("{c:06x}"));
        }
        for (attr, key) in [
            ("subsystem_vendor", "SubsystemVendorId"),
            ("subsystem_device", "SubsystemDeviceId"),
        ] {
            if let Some(v) = self.attr(&format!("{dir}/{attr}")) {
                details.insert(key.into(), v.trim_start_matches("0x").to_string());
            }
        }
        if let Some(driver) = self.link_name(&format!("{dir}/driver")) {
            details.insert("Driver".into(), driver);
        }
        let name_text = match pci_vendor_name(&vendor) {
            Some(v) => format!("{v} {vendor}:{device}"),
            None => format!("PCI device {vendor}:{device}"),
        };
        Some(Device {
            bus: Bus::Pci,
            sysname: name.to_string(),
            devpath: self.devpath(class_dir(Bus::Pci), name),
            category: category.into(),
            sub_category: sub_category.into(),
            name: name_text,
            details,
        })
    }

    fn net(&mut self, name: &str) -> Option<Device> {
        let base = class_dir(Bus::Net);
        let dir = format!("{base}/{name}");
        // Every interface has a type (ARPHRD_*); an entry without one is not an interface (or
        // is already gone).
        let kind = self.attr(&format!("{dir}/type"))?;
        let devpath = self.devpath(base, name);
        let is_virtual = if devpath.is_empty() {
            !self.exists(&format!("{dir}/device"))
        } else {
            devpath.starts_with("/devices/virtual/")
        };
        let sub_category = if kind == "772" {
            "Loopback"
        } else if is_virtual {
            "Virtual Adapter"
        } else {
            "Adapter"
        };
        let mut details = ExtraDetails::new();
        details.insert("Virtual".into(), is_virtual.to_string());
        if let Some(mac) = self.attr(&format!("{dir}/address")) {
            details.insert("MacAddress".into(), mac);
        }
        details.insert("LinkType".into(), kind);
        if let Some(s) = self.attr(&format!("{dir}/operstate")) {
            details.insert("OperState".into(), s);
        }
        if let Some(driver) = self.link_name(&format!("{dir}/device/driver")) {
            details.insert("Driver".into(), driver);
        }
        Some(Device {
            bus: Bus::Net,
            sysname: name.to_string(),
            devpath,
            category: "Network".into(),
            sub_category: sub_category.into(),
            name: name.to_string(),
            details,
        })
    }

    fn block(&mut self, name: &str) -> Option<Device> {
        let base = class_dir(Bus::Block);
        let dir = format!("{base}/{name}");
        // Partitions are part of their disk.
        if self.exists(&format!("{dir}/partition")) {
            return None;
        }
        let sectors = self.attr(&format!("{dir}/size"))?.parse::<u64>().ok();
        let devpath = self.devpath(base, name);
        let is_virtual = devpath.starts_with("/devices/virtual/");
        // Unused loop, ram and zram devices exist from boot with nothing behind them.
        if sectors == Some(0) && is_virtual {
            return None;
        }
        let removable = self.attr(&format!("{dir}/removable")).as_deref() == Some("1");
        let model = self.attr(&format!("{dir}/device/model"));
        let vendor = self.attr(&format!("{dir}/device/vendor"));
        let (category, sub_category) = if name.starts_with("sr") {
            ("CD-ROM", "Optical Drive")
        } else if name.starts_with("loop") {
            ("Storage", "Loop Device")
        } else if removable {
            ("Storage", "Removable Disk")
        } else if is_virtual {
            ("Storage", "Virtual Disk")
        } else {
            ("Storage", "Disk")
        };
        let mut details = ExtraDetails::new();
        if let Some(s) = sectors {
            // `size` counts 512-byte sectors whatever the device's own sector size.
            details.insert("SizeBytes".into(), s.saturating_mul(512).to_string());
        }
        details.insert("Removable".into(), removable.to_string());
        if let Some(ro) = self.attr(&format!("{dir}/ro")) {
            details.insert("ReadOnly".into(), (ro == "1").to_string());
        }
        if let Some(m) = &model {
            details.insert("Model".into(), m.clone());
        }
        if let Some(v) = &vendor {
            details.insert("Vendor".into(), v.clone());
        }
        if let Some(f) = self.attr(&format!("{dir}/loop/backing_file")) {
            details.insert("BackingFile".into(), f);
        }
        if let Some(driver) = self.link_name(&format!("{dir}/device/driver")) {
            details.insert("Driver".into(), driver);
        }
        let name_text = match (vendor, model) {
            (Some(v), Some(m)) => format!("{v} {m}"),
            (None, Some(m)) => m,
            _ => name.to_string(),
        };
        Some(Device {
            bus: Bus::Block,
            sysname: name.to_string(),
            devpath,
            category: category.into(),
            sub_category: sub_category.into(),
            name: name_text,
            details,
        })
    }

    fn serial(&mut self, name: &str) -> Option<Device> {
        let (category, sub_category) = serial_kind(name)?;
        let base = class_dir(Bus::Serial);
        let dir = format!("{base}/{name}");
        // Consoles, ptys and virtual terminals have no device behind them.
        if !self.exists(&format!("{dir}/device")) {
            return None;
        }
        // 8250 ports are registered whether or not a UART answers; type 0 (PORT_UNKNOWN) is
        // one that did not.
        let port_type = self.attr(&format!("{dir}/type"));
        if name.starts_with("ttyS") && port_type.as_deref().is_none_or(|t| t == "0") {
            return None;
        }
        let mut details = ExtraDetails::new();
        if let Some(t) = port_type {
            details.insert("PortType".into(), t);
        }
        if let Some(driver) = self.link_name(&format!("{dir}/device/driver")) {
            details.insert("Driver".into(), driver);
        }
        Some(Device {
            bus: Bus::Serial,
            sysname: name.to_string(),
            devpath: self.devpath(base, name),
            category: category.into(),
            sub_category: sub_category.into(),
            name: name.to_string(),
            details,
        })
    }
}

/// Where a bus's devices are listed (each entry a symlink into `/sys/devices`).
pub fn class_dir(bus: Bus) -> &'static str {
    match bus {
        Bus::Usb => "/sys/bus/usb/devices",
        Bus::Pci => "/sys/bus/pci/devices",
        Bus::Net => "/sys/class/net",
        Bus::Block => "/sys/class/block",
        Bus::Serial => "/sys/class/tty",
    }
}

/// The serial ports listed, by name prefix: category and sub-category. Only names with a digit
/// after the prefix (`ttyS0`, not `ttySomething`).
fn serial_kind(name: &str) -> Option<(&'static str, &'static str)> {
    const KINDS: [(&str, &str, &str); 4] = [
        ("ttyUSB", "Serial", "USB Serial Adapter"),
        ("ttyACM", "Modem", "USB ACM Modem"),
        ("ttyAMA", "Serial", "Serial Port"),
        ("ttyS", "Serial", "Serial Port"),
    ];
    KINDS.iter().find_map(|(prefix, c, s)| {
        let rest = name.strip_prefix(prefix)?;
        (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then_some((*c, *s))
    })
}

/// Whether a name can be one directory entry (not empty, no `/`, not `.` or `..`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The uevent-style device path of a class entry from its link target: `../../devices/x/y`
/// seen from `/sys/class/net` is `/devices/x/y`. `None` when the target leaves `/sys`.
pub fn devpath_of(dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|c| !c.is_empty()).collect()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    match parts.split_first() {
        Some((&"sys", rest)) if !rest.is_empty() => Some(format!("/{}", rest.join("/"))),
        _ => None,
    }
}

/// Attribute text for a record: trimmed, control characters replaced by `?` (a product string
/// is whatever the device says), at most [`MAX_VALUE_CHARS`].
pub fn clean(s: &str) -> String {
    let trimmed = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    trimmed
        .chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// USB base class names (usb.org "Defined Class Codes").
pub fn usb_class_name(class: u8) -> &'static str {
    match class {
        0x01 => "Audio",
        0x02 => "Communications",
        0x03 => "Human Interface Device",
        0x05 => "Physical",
        0x06 => "Image",
        0x07 => "Printer",
        0x08 => "Mass Storage",
        0x09 => "Hub",
        0x0a => "CDC Data",
        0x0b => "Smart Card",
        0x0d => "Content Security",
        0x0e => "Video",
        0x0f => "Personal Healthcare",
        0x10 => "Audio/Video",
        0x11 => "Billboard",
        0x12 => "USB Type-C Bridge",
        0xdc => "Diagnostic",
        0xe0 => "Wireless Controller",
        0xef => "Miscellaneous",
        0xfe => "Application Specific",
        0xff => "Vendor Specific",
        _ => "USB Device",
    }
}

/// Category and sub-category of a PCI function from its class and subclass (PCI Code and ID
/// Assignment Specification), in the schema's words where it has them.
pub fn pci_class(class: u8, subclass: u8) -> (&'static str, &'static str) {
    match (class, subclass) {
        (0x01, 0x00) => ("Storage", "SCSI Controller"),
        (0x01, 0x01) => ("Storage", "IDE Controller"),
        (0x01, 0x04) => ("Storage", "RAID Controller"),
        (0x01, 0x06) => ("Storage", "SATA Controller"),
        (0x01, 0x07) => ("Storage", "SAS Controller"),
        (0x01, 0x08) => ("Storage", "NVMe Controller"),
        (0x01, _) => ("Storage", "Storage Controller"),
        (0x02, 0x00) => ("Network", "Ethernet Controller"),
        (0x02, _) => ("Network", "Network Controller"),
        (0x03, 0x00) => ("Display", "VGA Controller"),
        (0x03, _) => ("Display", "Display Controller"),
        (0x04, 0x00) => ("Multimedia", "Video Device"),
        (0x04, 0x01) | (0x04, 0x03) => ("Sound Device", "Audio Device"),
        (0x04, _) => ("Multimedia", "Multimedia Controller"),
        (0x05, _) => ("Memory", "Memory Controller"),
        (0x06, 0x00) => ("Bridge", "Host Bridge"),
        (0x06, 0x01) => ("Bridge", "ISA Bridge"),
        (0x06, 0x04) => ("Bridge", "PCI Bridge"),
        (0x06, _) => ("Bridge", "Bridge"),
        (0x07, 0x03) => ("Modem", "Modem"),
        (0x07, _) => ("Communication", "Communication Controller"),
        (0x08, _) => ("System", "System Peripheral"),
        (0x09, _) => ("Input", "Input Controller"),
        (0x0c, 0x03) => ("USB", "USB Controller"),
        (0x0c, 0x05) => ("System", "SMBus Controller"),
        (0x0c, _) => ("Serial Bus", "Serial Bus Controller"),
        (0x0d, 0x00) => ("Infrared", "IrDA Controller"),
        (0x0d, _) => ("Network", "Wireless Controller"),
        (0x10, _) => ("Encryption", "Encryption Controller"),
        (0x12, _) => ("Processing Accelerator", "Accelerator"),
        _ => ("Other", "PCI Device"),
    }
}

/// A few PCI vendor names (there is no `pci.ids` on a device): the common ones on edge boards
/// and virtual machines.
fn pci_vendor_name(id: &str) -> Option<&'static str> {
    Some(match id {
        "8086" => "Intel",
        "1022" => "AMD",
        "1002" => "AMD/ATI",
        "10de" => "NVIDIA",
        "10ec" => "Realtek",
        "14e4" => "Broadcom",
        "15b3" => "Mellanox",
        "168c" => "Qualcomm Atheros",
        "17cb" => "Qualcomm",
        "1b4b" => "Marvell",
        "1af4" => "Virtio",
        "1d0f" => "Amazon",
        "1414" => "Microsoft",
        "15ad" => "VMware",
        "1b36" => "QEMU",
        _ => return None,
    })
}
