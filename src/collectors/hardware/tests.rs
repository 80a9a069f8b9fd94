//! Unit tests over fixture sysfs trees (a tempdir as the host root) and synthetic uevents, and
//! tests against the real kernel (a veth pair, a loop device, the machine's own devices).

use super::modules::{self, ModuleInfo};
use super::sysfs::{self, Bus, MAX_ATTR_BYTES, MAX_VALUE_CHARS, Sysfs};
use super::uevent::{self, Action, ParseError};
use super::*;
use crate::config::Config;
use crate::event::{ConnectedHardware, EventKind, KernelModule};
use std::os::unix::fs::symlink;
use std::path::Path;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio_util::sync::CancellationToken;

fn write(root: &Path, path: &str, content: impl AsRef<[u8]>) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

const XHCI: &str = "sys/devices/pci0000:00/0000:00:14.0";

/// A host with a USB controller, a root hub, a flash drive (and its disk and partition), a
/// keyboard without strings, a virtio NIC, loopback, loop devices and serial ports.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    // PCI: the USB controller and the NIC's function.
    write(r, &format!("{XHCI}/vendor"), "0x8086\n");
    write(r, &format!("{XHCI}/device"), "0xa36d\n");
    write(r, &format!("{XHCI}/class"), "0x0c0330\n");
    std::fs::create_dir_all(r.join("sys/bus/pci/drivers/xhci_hcd")).unwrap();
    link(
        r,
        &format!("{XHCI}/driver"),
        "../../../bus/pci/drivers/xhci_hcd",
    );
    link(
        r,
        "sys/bus/pci/devices/0000:00:14.0",
        "../../../devices/pci0000:00/0000:00:14.0",
    );
    let nic = "sys/devices/pci0000:00/0000:00:03.0";
    write(r, &format!("{nic}/vendor"), "0x1af4\n");
    write(r, &format!("{nic}/device"), "0x1041\n");
    write(r, &format!("{nic}/class"), "0x020000\n");
    link(
        r,
        "sys/bus/pci/devices/0000:00:03.0",
        "../../../devices/pci0000:00/0000:00:03.0",
    );
    // USB: root hub, a flash drive, a keyboard with no strings at all.
    let hub = format!("{XHCI}/usb1");
    for (f, v) in [
        ("idVendor", "1d6b"),
        ("idProduct", "0002"),
        ("bDeviceClass", "09"),
        ("manufacturer", "Linux 6.1.0 xhci-hcd"),
        ("product", "xHCI Host Controller"),
    ] {
        write(r, &format!("{hub}/{f}"), format!("{v}\n"));
    }
    let stick = format!("{hub}/1-1");
    for (f, v) in [
        ("idVendor", "0781"),
        ("idProduct", "5567"),
        ("bDeviceClass", "00"),
        ("manufacturer", "SanDisk"),
        ("product", "Cruzer Blade"),
        ("serial", "4C530001230707115093"),
        ("speed", "480"),
        ("busnum", "1"),
        ("devnum", "3"),
    ] {
        write(r, &format!("{stick}/{f}"), format!("{v}\n"));
    }
    write(r, &format!("{stick}/1-1:1.0/bInterfaceClass"), "08\n");
    let kbd = format!("{hub}/1-2");
    write(r, &format!("{kbd}/idVendor"), "046d\n");
    write(r, &format!("{kbd}/idProduct"), "c31c\n");
    write(r, &format!("{kbd}/bDeviceClass"), "00\n");
    write(r, &format!("{kbd}/1-2:1.0/bInterfaceClass"), "03\n");
    write(r, &format!("{kbd}/1-2:1.1/bInterfaceClass"), "03\n");
    let usb = "sys/bus/usb/devices";
    let to = "../../../devices/pci0000:00/0000:00:14.0/usb1";
    link(r, &format!("{usb}/usb1"), to);
    link(r, &format!("{usb}/1-1"), &format!("{to}/1-1"));
    link(r, &format!("{usb}/1-1:1.0"), &format!("{to}/1-1/1-1:1.0"));
    link(r, &format!("{usb}/1-2"), &format!("{to}/1-2"));
    // Network: a virtio NIC with its driver, loopback.
    let eth = format!("{nic}/virtio0/net/eth0");
    write(r, &format!("{eth}/type"), "1\n");
    write(r, &format!("{eth}/address"), "52:54:00:12:34:56\n");
    write(r, &format!("{eth}/operstate"), "up\n");
    std::fs::create_dir_all(r.join("sys/bus/virtio/drivers/virtio_net")).unwrap();
    link(
        r,
        &format!("{nic}/virtio0/driver"),
        "../../../../bus/virtio/drivers/virtio_net",
    );
    link(r, &format!("{eth}/device"), "../../../virtio0");
    link(
        r,
        "sys/class/net/eth0",
        "../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0",
    );
    write(r, "sys/devices/virtual/net/lo/type", "772\n");
    write(
        r,
        "sys/devices/virtual/net/lo/address",
        "00:00:00:00:00:00\n",
    );
    link(r, "sys/class/net/lo", "../../devices/virtual/net/lo");
    // Block: the stick's disk and partition, an unused and a used loop device.
    let scsi = format!("{stick}/1-1:1.0/host0/target0:0:0/0:0:0:0");
    write(r, &format!("{scsi}/model"), "Cruzer Blade    \n");
    write(r, &format!("{scsi}/vendor"), "SanDisk \n");
    let sda = format!("{scsi}/block/sda");
    write(r, &format!("{sda}/size"), "31260672\n");
    write(r, &format!("{sda}/removable"), "1\n");
    write(r, &format!("{sda}/ro"), "0\n");
    link(r, &format!("{sda}/device"), "../../../0:0:0:0");
    write(r, &format!("{sda}/sda1/size"), "31258624\n");
    write(r, &format!("{sda}/sda1/partition"), "1\n");
    let sda_from_class = "../../devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0/block/sda";
    link(r, "sys/class/block/sda", sda_from_class);
    link(r, "sys/class/block/sda1", &format!("{sda_from_class}/sda1"));
    write(r, "sys/devices/virtual/block/loop0/size", "0\n");
    link(
        r,
        "sys/class/block/loop0",
        "../../devices/virtual/block/loop0",
    );
    write(r, "sys/devices/virtual/block/loop1/size", "2048\n");
    write(
        r,
        "sys/devices/virtual/block/loop1/loop/backing_file",
        "/var/lib/img\n",
    );
    link(
        r,
        "sys/class/block/loop1",
        "../../devices/virtual/block/loop1",
    );
    // tty: a real UART, a port with no UART, a console, a USB serial adapter.
    let pnp = "sys/devices/pnp0/00:04";
    std::fs::create_dir_all(r.join(pnp)).unwrap();
    for (name, kind) in [("ttyS0", "4"), ("ttyS1", "0")] {
        let d = format!("{pnp}/tty/{name}");
        write(r, &format!("{d}/type"), format!("{kind}\n"));
        link(r, &format!("{d}/device"), "../../../00:04");
        link(
            r,
            &format!("sys/class/tty/{name}"),
            &format!("../../{}", &d[4..]),
        );
    }
    let usb_serial = format!("{stick}/1-1:1.0/ttyUSB0");
    std::fs::create_dir_all(r.join(&usb_serial)).unwrap();
    write(r, &format!("{usb_serial}/tty/ttyUSB0/dev"), "188:0\n");
    link(
        r,
        &format!("{usb_serial}/tty/ttyUSB0/device"),
        "../../../ttyUSB0",
    );
    link(
        r,
        "sys/class/tty/ttyUSB0",
        &format!("../../{}/tty/ttyUSB0", &usb_serial[4..]),
    );
    write(r, "sys/devices/virtual/tty/tty1/dev", "4:1\n");
    link(r, "sys/class/tty/tty1", "../../devices/virtual/tty/tty1");
    dir
}

fn find<'a>(devices: &'a [Device], bus: Bus, name: &str) -> &'a Device {
    devices
        .iter()
        .find(|d| d.bus == bus && d.sysname == name)
        .unwrap_or_else(|| panic!("{bus:?} {name} not in {devices:#?}"))
}

fn detail<'a>(d: &'a Device, key: &str) -> Option<&'a str> {
    d.details.get(key).map(String::as_str)
}

#[test]
fn a_fixture_tree_gives_every_kind_of_device_with_its_details() {
    let dir = fixture();
    let host = HostRoot::new(dir.path());
    let (devices, problems, cut) = scan(&host);
    assert!(!cut);
    assert_eq!(problems, sysfs::Problems::default(), "{problems:?}");

    let stick = find(&devices, Bus::Usb, "1-1");
    assert_eq!(
        (
            stick.category.as_str(),
            stick.sub_category.as_str(),
            stick.name.as_str()
        ),
        ("USB", "Mass Storage", "Cruzer Blade")
    );
    assert_eq!(detail(stick, "VendorId"), Some("0781"));
    assert_eq!(detail(stick, "ProductId"), Some("5567"));
    assert_eq!(detail(stick, "Manufacturer"), Some("SanDisk"));
    assert_eq!(detail(stick, "SerialNumber"), Some("4C530001230707115093"));
    assert_eq!(
        stick.devpath, "/devices/pci0000:00/0000:00:14.0/usb1/1-1",
        "the device path as uevents name it"
    );
    let hub = find(&devices, Bus::Usb, "usb1");
    assert_eq!(hub.sub_category, "Hub");
    let kbd = find(&devices, Bus::Usb, "1-2");
    assert_eq!(kbd.sub_category, "Human Interface Device");
    assert_eq!(kbd.name, "USB device 046d:c31c", "no strings: the ids");
    assert_eq!(
        detail(kbd, "InterfaceClasses"),
        Some("Human Interface Device"),
        "each class once"
    );
    assert!(
        !devices
            .iter()
            .any(|d| d.sysname.contains(':') && d.bus == Bus::Usb),
        "interfaces are not devices"
    );

    let xhci = find(&devices, Bus::Pci, "0000:00:14.0");
    assert_eq!(
        (xhci.category.as_str(), xhci.sub_category.as_str()),
        ("USB", "USB Controller")
    );
    assert_eq!(xhci.name, "Intel 8086:a36d");
    assert_eq!(detail(xhci, "Driver"), Some("xhci_hcd"));
    assert_eq!(detail(xhci, "Class"), Some("0c0330"));
    let nic_fn = find(&devices, Bus::Pci, "0000:00:03.0");
    assert_eq!(nic_fn.category, "Network");

    let eth = find(&devices, Bus::Net, "eth0");
    assert_eq!(eth.sub_category, "Adapter");
    assert_eq!(detail(eth, "Virtual"), Some("false"));
    assert_eq!(detail(eth, "MacAddress"), Some("52:54:00:12:34:56"));
    assert_eq!(detail(eth, "Driver"), Some("virtio_net"));
    let lo = find(&devices, Bus::Net, "lo");
    assert_eq!(lo.sub_category, "Loopback");
    assert_eq!(detail(lo, "Virtual"), Some("true"));

    let sda = find(&devices, Bus::Block, "sda");
    assert_eq!(sda.sub_category, "Removable Disk");
    assert_eq!(
        sda.name, "SanDisk Cruzer Blade",
        "vendor and model, trimmed"
    );
    assert_eq!(detail(sda, "SizeBytes"), Some("16005464064"));
    assert_eq!(detail(sda, "Removable"), Some("true"));
    let loop1 = find(&devices, Bus::Block, "loop1");
    assert_eq!(loop1.sub_category, "Loop Device");
    assert_eq!(detail(loop1, "BackingFile"), Some("/var/lib/img"));
    for skipped in ["sda1", "loop0"] {
        assert!(
            !devices.iter().any(|d| d.sysname == skipped),
            "{skipped}: partitions and unused loop devices are not listed"
        );
    }

    let s0 = find(&devices, Bus::Serial, "ttyS0");
    assert_eq!(
        (s0.category.as_str(), s0.sub_category.as_str()),
        ("Serial", "Serial Port")
    );
    let usb_serial = find(&devices, Bus::Serial, "ttyUSB0");
    assert_eq!(usb_serial.sub_category, "USB Serial Adapter");
    for skipped in ["ttyS1", "tty1"] {
        assert!(
            !devices.iter().any(|d| d.sysname == skipped),
            "{skipped}: no hardware behind it"
        );
    }

    // The record: the device's details plus where it was found.
    let record = stick.record();
    assert_eq!(record.hardware_category, "USB");
    assert_eq!(record.extra_details["Bus"], "usb");
    assert_eq!(record.extra_details["KernelName"], "1-1");
    assert_eq!(
        record.extra_details["DevicePath"],
        "/devices/pci0000:00/0000:00:14.0/usb1/1-1"
    );
}

#[test]
fn the_periodic_collector_sends_one_snapshot_and_none_without_sysfs() {
    let dir = fixture();
    let metrics = Arc::new(Metrics::for_tests());
    let mut c = HardwareCollector::new(metrics.clone());
    let events = c.collect(&HostRoot::new(dir.path()));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].category, Category::Periodic);
    let Payload::ConnectedHardware(records) = &events[0].payload else {
        panic!("{:?}", events[0].payload)
    };
    assert_eq!(records.len(), 11, "{records:#?}");

    // A host without those buses: an empty snapshot, and no errors.
    let bare = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bare.path().join("sys/class")).unwrap();
    let events = c.collect(&HostRoot::new(bare.path()));
    assert!(events[0].is_empty());
    assert_eq!(
        metrics.value("edgeguard_errors_total", &[("component", COLLECTOR)]),
        None
    );
    // A host root without /sys at all (not mounted): no snapshot, which would claim there is
    // no hardware; counted.
    let empty = tempfile::tempdir().unwrap();
    assert!(c.collect(&HostRoot::new(empty.path())).is_empty());
    assert_eq!(
        metrics.value(
            "edgeguard_errors_total",
            &[("component", COLLECTOR), ("error_type", "no_sysfs")]
        ),
        Some(1.0)
    );
}

#[test]
fn hostile_sysfs_files_are_cut_cleaned_refused_and_counted_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let usb = "sys/bus/usb/devices";
    // Binary garbage and terminal escapes in a product string.
    write(r, "sys/devices/evil/1-1/idVendor", "dead\n");
    write(r, "sys/devices/evil/1-1/idProduct", "beef\n");
    write(
        r,
        "sys/devices/evil/1-1/product",
        b"\x00\x1b[31mEvil\x07\xff\xfe\n\n".as_slice(),
    );
    link(r, &format!("{usb}/1-1"), "../../../devices/evil/1-1");
    // A product string far larger than any sysfs attribute (sparse: costs no disk).
    write(r, "sys/devices/evil/1-2/idVendor", "1234\n");
    write(r, "sys/devices/evil/1-2/idProduct", "5678\n");
    write(r, "sys/devices/evil/1-2/manufacturer", "Evil Corp\n");
    let huge = std::fs::File::create(r.join("sys/devices/evil/1-2/product")).unwrap();
    huge.set_len(64 * 1024 * 1024).unwrap();
    link(r, &format!("{usb}/1-2"), "../../../devices/evil/1-2");
    // A FIFO where an attribute should be: refused before it is opened, so nothing blocks.
    write(r, "sys/devices/evil/1-3/idVendor", "1111\n");
    let fifo = std::ffi::CString::new(
        r.join("sys/devices/evil/1-3/idProduct")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a valid C string; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    link(r, &format!("{usb}/1-3"), "../../../devices/evil/1-3");
    // A long single-line string is cut to MAX_VALUE_CHARS.
    write(r, "sys/devices/evil/1-4/idVendor", "2222\n");
    write(r, "sys/devices/evil/1-4/product", "x".repeat(4000));
    link(r, &format!("{usb}/1-4"), "../../../devices/evil/1-4");
    // A symlink loop, a link out of the root, an entry with no attributes at all.
    link(r, "sys/class/net/loop", "loop");
    link(r, "sys/class/net/escape", "/etc");
    std::fs::create_dir_all(r.join("sys/class/net/empty")).unwrap();
    // A block device whose size is not a number.
    write(r, "sys/class/block/vdz/size", "\u{1}lots\n");

    let host = HostRoot::new(r);
    let (devices, problems, _) = scan(&host);
    let garbage = find(&devices, Bus::Usb, "1-1");
    assert!(
        !garbage.name.chars().any(char::is_control),
        "{:?}",
        garbage.name
    );
    assert!(garbage.name.contains("Evil"), "{:?}", garbage.name);
    let big = find(&devices, Bus::Usb, "1-2");
    assert_eq!(
        big.name, "Evil Corp 1234:5678",
        "the huge product is left out"
    );
    let fifo_dev = find(&devices, Bus::Usb, "1-3");
    assert_eq!(detail(fifo_dev, "ProductId"), Some(""));
    let long = find(&devices, Bus::Usb, "1-4");
    assert_eq!(long.name.chars().count(), MAX_VALUE_CHARS);
    assert!(
        !devices.iter().any(|d| d.bus == Bus::Net),
        "no interface from entries without a type: {devices:#?}"
    );
    let vdz = find(&devices, Bus::Block, "vdz");
    assert_eq!(
        detail(vdz, "SizeBytes"),
        None,
        "an unparsable size is left out"
    );
    assert_eq!(problems.counts.get("attribute_too_large"), Some(&1));
    assert_eq!(problems.counts.get("not_regular"), Some(&1));
    assert_eq!(problems.counts.get("loop"), Some(&1), "{problems:?}");
    assert!(problems.first.is_some());
    let _ = MAX_ATTR_BYTES;
}

#[test]
fn a_snapshot_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        write(dir.path(), &format!("sys/class/net/veth{i}/type"), "1\n");
    }
    let host = HostRoot::new(dir.path());
    let mut sysfs = Sysfs::new(&host);
    let (devices, cut) = sysfs.scan(4);
    assert_eq!(devices.len(), 4);
    assert!(cut);
    let (devices, cut) = Sysfs::new(&host).scan(10);
    assert_eq!((devices.len(), cut), (10, false));
}

#[test]
fn device_paths_come_from_class_links_and_never_leave_sys() {
    assert_eq!(
        sysfs::devpath_of("/sys/class/net", "../../devices/virtual/net/eg0").as_deref(),
        Some("/devices/virtual/net/eg0")
    );
    assert_eq!(
        sysfs::devpath_of("/sys/bus/usb/devices", "../../../devices/pci0/usb1/1-1").as_deref(),
        Some("/devices/pci0/usb1/1-1")
    );
    assert_eq!(sysfs::devpath_of("/sys/class/net", "../../../../etc"), None);
    assert_eq!(sysfs::devpath_of("/sys/class/net", "/etc/passwd"), None);
    assert_eq!(
        sysfs::devpath_of("/sys/class/net", "/sys/devices/x").as_deref(),
        Some("/devices/x")
    );
}

fn datagram(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

#[test]
fn kernel_uevents_are_parsed() {
    let buf = datagram(&[
        "add@/devices/virtual/net/eg0",
        "ACTION=add",
        "DEVPATH=/devices/virtual/net/eg0",
        "SUBSYSTEM=net",
        "INTERFACE=eg0",
        "IFINDEX=12",
        "SEQNUM=4711",
    ]);
    let ev = uevent::parse(&buf).unwrap();
    assert_eq!(ev.action, Action::Add);
    assert_eq!(ev.devpath, "/devices/virtual/net/eg0");
    assert_eq!(ev.subsystem, "net");
    assert_eq!(ev.sysname(), "eg0");
    assert_eq!(ev.var("SEQNUM"), Some("4711"));
    // Without the trailing NUL, and with a value holding `=` and garbage.
    let mut buf = datagram(&[
        "remove@/module/loop",
        "ACTION=remove",
        "SUBSYSTEM=module",
        "WEIRD=a=b\u{1b}[2J",
        "SYNTH_ARG_lower=1",
    ]);
    buf.pop();
    let ev = uevent::parse(&buf).unwrap();
    assert_eq!(
        (ev.action, ev.subsystem.as_str()),
        (Action::Remove, "module")
    );
    assert_eq!(ev.var("WEIRD"), Some("a=b?[2J"));
    assert_eq!(
        ev.var("SYNTH_ARG_lower"),
        Some("1"),
        "synthetic uevents keep their case"
    );
}

#[test]
fn udev_messages_and_malformed_datagrams_are_rejected() {
    // udev's re-broadcast (group 2): "libudev\0", magic 0xfeedcafe, header, properties.
    let mut udev = b"libudev\0".to_vec();
    udev.extend_from_slice(&0xfeedcafe_u32.to_be_bytes());
    udev.extend_from_slice(&[40, 0, 0, 0, 40, 0, 0, 0]);
    udev.extend(datagram(&["ACTION=add", "SUBSYSTEM=net"]));
    assert_eq!(uevent::parse(&udev), Err(ParseError::Libudev));
    assert_eq!(ParseError::Libudev.error_type(), "uevent_libudev");

    let cases: &[(&[u8], ParseError)] = &[
        (b"", ParseError::NoHeader),
        (b"\0\0\0", ParseError::NoHeader),
        (b"ACTION=add\0SUBSYSTEM=net\0", ParseError::NoHeader),
        (
            b"explode@/devices/x\0SUBSYSTEM=net\0",
            ParseError::UnknownAction,
        ),
        (b"add@devices/x\0SUBSYSTEM=net\0", ParseError::BadDevpath),
        (
            b"add@/devices/../etc\0SUBSYSTEM=net\0",
            ParseError::BadDevpath,
        ),
        (b"add@/devices//x\0SUBSYSTEM=net\0", ParseError::BadDevpath),
        (b"add@/devices/x\0SUBSYSTEM\0", ParseError::BadVariable),
        (b"add@/devices/x\0BAD KEY=1\0", ParseError::BadVariable),
        (b"add@/devices/x\0\x01K=1\0", ParseError::BadVariable),
        (b"add@/devices/x\0K\xc3\xa9=1\0", ParseError::BadVariable),
        (b"add@/devices/x\0=1\0", ParseError::BadVariable),
        (b"add@/devices/x\0ACTION=add\0", ParseError::NoSubsystem),
        // Found by the fuzz target: an empty SUBSYSTEM was taken as a subsystem.
        (b"add@/devices/x\0SUBSYSTEM=\0", ParseError::NoSubsystem),
        (
            b"add@/devices/x\0ACTION=remove\0SUBSYSTEM=net\0",
            ParseError::Contradiction,
        ),
        (
            b"add@/devices/x\0DEVPATH=/devices/y\0SUBSYSTEM=net\0",
            ParseError::Contradiction,
        ),
        (
            b"\xff\xfe@/devices/x\0SUBSYSTEM=net\0",
            ParseError::UnknownAction,
        ),
    ];
    for (buf, want) in cases {
        assert_eq!(
            uevent::parse(buf),
            Err(*want),
            "{}",
            String::from_utf8_lossy(buf)
        );
    }
    let mut many = vec!["add@/devices/x".to_string(), "SUBSYSTEM=net".to_string()];
    many.extend((0..uevent::MAX_VARS).map(|i| format!("V{i}=x")));
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        uevent::parse(&datagram(&refs)),
        Err(ParseError::TooManyVariables)
    );
    // Random bytes never panic.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let len = rng.usize(0..300);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if rng.bool() {
            buf.splice(0..0, b"add@/d\0SUBSYSTEM=x\0".iter().copied());
        }
        let _ = uevent::parse(&buf);
    }
}

fn uevent_of(action: &str, devpath: &str, subsystem: &str, extra: &[&str]) -> uevent::Uevent {
    let header = format!("{action}@{devpath}");
    let sub = format!("SUBSYSTEM={subsystem}");
    let mut parts = vec![header.as_str(), sub.as_str(), "SEQNUM=9"];
    parts.extend_from_slice(extra);
    uevent::parse(&datagram(&parts)).unwrap()
}

fn hardware_record(e: &Event) -> &ConnectedHardware {
    match &e.payload {
        Payload::ConnectedHardware(r) if r.len() == 1 => &r[0],
        other => panic!("{other:?}"),
    }
}

fn module_record(e: &Event) -> &KernelModule {
    match &e.payload {
        Payload::KernelModule(r) if r.len() == 1 => &r[0],
        other => panic!("{other:?}"),
    }
}

#[test]
fn uevents_become_added_and_removed_events_for_listed_devices_only() {
    let dir = fixture();
    let r = dir.path();
    let mut watch = Watch::new(HostRoot::new(r));
    assert!(watch.devices.contains_key(&(Bus::Net, "eth0".to_string())));

    // A new interface: read from /sys, reported Added (Triggered).
    write(r, "sys/devices/virtual/net/veth9/type", "1\n");
    link(r, "sys/class/net/veth9", "../../devices/virtual/net/veth9");
    let add = uevent_of(
        "add",
        "/devices/virtual/net/veth9",
        "net",
        &["INTERFACE=veth9"],
    );
    let events = watch.on_uevent(&add);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].category, Category::Triggered);
    let r9 = hardware_record(&events[0]);
    assert_eq!(
        (
            r9.hardware_category.as_str(),
            r9.hardware_sub_category.as_str()
        ),
        ("Network", "Virtual Adapter")
    );
    assert_eq!(r9.extra_details["Action"], "Added");
    assert_eq!(r9.extra_details["DevicePath"], "/devices/virtual/net/veth9");
    assert_eq!(r9.extra_details["Seqnum"], "9");
    // The same add again (a replay) is not news.
    assert!(watch.on_uevent(&add).is_empty());

    // Gone: Removed with what was known (sysfs no longer has it).
    std::fs::remove_file(r.join("sys/class/net/veth9")).unwrap();
    let events = watch.on_uevent(&uevent_of(
        "remove",
        "/devices/virtual/net/veth9",
        "net",
        &[],
    ));
    assert_eq!(events.len(), 1);
    let gone = hardware_record(&events[0]);
    assert_eq!(gone.extra_details["Action"], "Removed");
    assert_eq!(gone.hardware_name, "veth9");

    // A partition, a USB interface, an unknown subsystem, a removal of something never
    // listed: nothing.
    for ev in [
        uevent_of(
            "add",
            "/devices/x/block/sda/sda1",
            "block",
            &["DEVTYPE=partition"],
        ),
        uevent_of(
            "add",
            "/devices/x/usb1/1-1/1-1:1.0",
            "usb",
            &["DEVTYPE=usb_interface"],
        ),
        uevent_of("add", "/devices/x/input/input9", "input", &[]),
        uevent_of(
            "remove",
            "/devices/virtual/block/loop5",
            "block",
            &["DEVTYPE=disk"],
        ),
        uevent_of("bind", "/devices/virtual/net/lo", "net", &[]),
    ] {
        assert!(watch.on_uevent(&ev).is_empty(), "{ev:?}");
    }

    // A loop device attached ("change", size now > 0) is Added; detached again, Removed.
    write(r, "sys/devices/virtual/block/loop0/size", "4096\n");
    let change = uevent_of(
        "change",
        "/devices/virtual/block/loop0",
        "block",
        &["DEVTYPE=disk"],
    );
    let events = watch.on_uevent(&change);
    assert_eq!(hardware_record(&events[0]).extra_details["Action"], "Added");
    write(r, "sys/devices/virtual/block/loop0/size", "0\n");
    let events = watch.on_uevent(&change);
    assert_eq!(
        hardware_record(&events[0]).extra_details["Action"],
        "Removed"
    );

    // A rename: the old name Removed, the new one Added.
    std::fs::remove_file(r.join("sys/class/net/eth0")).unwrap();
    link(
        r,
        "sys/class/net/enp0s3",
        "../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0",
    );
    let events = watch.on_uevent(&uevent_of(
        "move",
        "/devices/pci0000:00/0000:00:03.0/virtio0/net/enp0s3",
        "net",
        &["DEVPATH_OLD=/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0"],
    ));
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let r = hardware_record(e);
            (r.hardware_name.clone(), r.extra_details["Action"].clone())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("eth0".to_string(), "Removed".to_string()),
            ("enp0s3".to_string(), "Added".to_string())
        ]
    );
}

#[test]
fn a_rescan_reports_what_differs_from_the_last_one() {
    let dir = fixture();
    let r = dir.path();
    let mut watch = Watch::new(HostRoot::new(r));
    assert!(watch.rescan().is_empty(), "nothing changed");
    write(r, "sys/devices/virtual/net/eg7/type", "1\n");
    link(r, "sys/class/net/eg7", "../../devices/virtual/net/eg7");
    std::fs::remove_file(r.join("sys/bus/usb/devices/1-1")).unwrap();
    let events = watch.rescan();
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.category, Category::Triggered);
            let r = hardware_record(e);
            (
                r.hardware_name.clone(),
                r.extra_details["Action"].clone(),
                r.extra_details["Source"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("eg7".into(), "Added".into(), "rescan".into()),
            ("Cruzer Blade".into(), "Removed".into(), "rescan".into())
        ]
    );
    assert!(watch.rescan().is_empty());
}

const PROC_MODULES: &str = "\
nf_tables 344064 0 - Live 0x0000000000000000
loop 40960 2 - Live 0xffffffffc0a00000
evil_rootkit 16384 1 nf_tables, Live 0x0000000000000000 (OE)
usb_storage 81920 1 uas, Loading 0x0000000000000000 (E)
this line is not a module
bad-size abc 0 - Live 0x0
";

#[test]
fn proc_modules_is_parsed_with_sizes_states_and_taints() {
    let (m, skipped) = modules::parse_proc_modules(PROC_MODULES);
    assert_eq!(skipped, 2);
    assert_eq!(m.len(), 4);
    assert_eq!(
        m["evil_rootkit"],
        ModuleInfo {
            size: Some(16384),
            state: Some("Live".into()),
            taint: Some("OE".into()),
        }
    );
    assert_eq!(m["usb_storage"].state.as_deref(), Some("Loading"));
    assert_eq!(m["loop"].taint, None);
    let rec = modules::record(
        "evil_rootkit",
        ModuleAction::Loaded,
        m.get("evil_rootkit"),
        "x",
    );
    assert_eq!(rec.size, Some(16384));
    assert_eq!(rec.extra_details["Taint"], "OE");
    assert_eq!(rec.extra_details["Unsigned"], "true");
    assert_eq!(rec.extra_details["OutOfTree"], "true");
    // Garbage does not panic and is bounded.
    let junk: String = (0..10_000)
        .map(|i| format!("m{i} {i} 0 - Live 0x0\n"))
        .collect();
    let (m, skipped) = modules::parse_proc_modules(&junk);
    assert_eq!(m.len(), modules::MAX_MODULES);
    assert_eq!(skipped, 10_000 - modules::MAX_MODULES);
}

#[test]
fn module_differences_and_module_uevents_become_kernel_module_events() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "proc/modules",
        "loop 40960 2 - Live 0x0\nnf_tables 344064 0 - Live 0x0\n",
    );
    let mut watch = Watch::new(HostRoot::new(r));
    assert_eq!(watch.modules.as_ref().map(|m| m.len()), Some(2));
    assert!(watch.modules_again().is_empty());

    // Loaded (told by the uevent; size from /proc/modules, taint from /sys/module).
    write(
        r,
        "proc/modules",
        "loop 40960 2 - Live 0x0\nnf_tables 344064 0 - Live 0x0\nevil 16384 0 - Live 0x0\n",
    );
    write(r, "sys/module/evil/taint", "OE\n");
    let events = watch.on_uevent(&uevent_of("add", "/module/evil", "module", &[]));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind(), EventKind::KernelModule);
    assert_eq!(events[0].category, Category::Triggered);
    let m = module_record(&events[0]);
    assert_eq!(
        (m.name.as_str(), m.action, m.size),
        ("evil", ModuleAction::Loaded, Some(16384))
    );
    assert_eq!(m.extra_details["Taint"], "OE");
    assert_eq!(m.extra_details["Source"], "uevent");
    // Already reported: the next comparison does not report it again.
    assert!(watch.modules_again().is_empty());

    // Removed without a uevent (one lost): the comparison finds it.
    write(
        r,
        "proc/modules",
        "loop 40960 2 - Live 0x0\nevil 16384 0 - Live 0x0\n",
    );
    let events = watch.modules_again();
    assert_eq!(events.len(), 1);
    let m = module_record(&events[0]);
    assert_eq!(
        (m.name.as_str(), m.action, m.size),
        ("nf_tables", ModuleAction::Removed, Some(344064))
    );
    assert_eq!(m.extra_details["Source"], "proc_modules");

    // Removed by uevent, with what was known.
    let events = watch.on_uevent(&uevent_of("remove", "/module/evil", "module", &[]));
    let m = module_record(&events[0]);
    assert_eq!((m.action, m.size), (ModuleAction::Removed, Some(16384)));
    // Other module actions and hostile names: nothing.
    assert!(
        watch
            .on_uevent(&uevent_of("change", "/module/loop", "module", &[]))
            .is_empty()
    );
    assert!(
        watch
            .on_uevent(&uevent_of("add", "/module/a.b", "module", &[]))
            .is_empty()
    );
}

#[test]
fn without_proc_modules_the_module_part_is_quiet() {
    // A fixture root without /proc, and this machine's kernel (CONFIG_MODULES off): no list,
    // no events, no errors. A module uevent is still reported (kernels with modules send them).
    let dir = fixture();
    let mut watch = Watch::new(HostRoot::new(dir.path()));
    assert_eq!(watch.modules, None);
    assert!(watch.modules_again().is_empty());
    assert!(watch.problems.is_empty(), "{:?}", watch.problems);
    let events = watch.on_uevent(&uevent_of("add", "/module/loop", "module", &[]));
    let m = module_record(&events[0]);
    assert_eq!((m.name.as_str(), m.size), ("loop", None));

    let real = HostRoot::default();
    if real.metadata("/proc/modules").is_err() {
        let mut watch = Watch::new(real);
        assert_eq!(watch.modules, None);
        assert!(watch.modules_again().is_empty());
        assert!(
            !watch
                .problems
                .counts
                .keys()
                .any(|k| k.starts_with("module")),
            "{:?}",
            watch.problems
        );
    }
}

#[test]
fn a_flapping_device_is_rate_limited_and_the_limiter_stays_bounded() {
    let t0 = Instant::now();
    let mut l = Limiter::new(PER_DEVICE_PER_MINUTE, ALL_PER_MINUTE);
    let allowed = (0..100).filter(|_| l.allow("usb:1-1", t0)).count();
    assert_eq!(allowed, PER_DEVICE_PER_MINUTE as usize);
    assert!(l.allow("net:eth1", t0), "another device is not held back");
    // The next minute the device may speak again.
    let t1 = t0 + Duration::from_secs(61);
    assert!(l.allow("usb:1-1", t1));

    let mut l = Limiter::new(100, 5);
    let allowed = (0..50).filter(|i| l.allow(&format!("d{i}"), t0)).count();
    assert_eq!(allowed, 5, "all devices together");

    let mut l = Limiter::new(1, u32::MAX);
    for i in 0..5000 {
        l.allow(&format!("d{i}"), t0);
    }
    assert!(l.remembered() <= 1024, "{}", l.remembered());

    // A new device name a minute (a container's veth pair, for hours): the windows that ended
    // are forgotten as the table grows, not when it is full.
    let mut l = Limiter::default();
    let mut most = 0;
    for i in 0..600u64 {
        l.allow(&format!("veth{i}"), t0 + Duration::from_secs(60 * i));
        most = most.max(l.remembered());
    }
    assert!(most <= 64, "{most} windows remembered");
}

// --- The real kernel -----------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_ok(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn the_snapshot_lists_the_machines_interfaces_and_block_devices() {
    let (devices, _, cut) = scan(&HostRoot::default());
    assert!(!cut);
    let net: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(net.iter().any(|n| n == "lo"));
    for name in &net {
        // Interfaces of concurrent tests may come and go; the stable ones must be there.
        if name.starts_with("eg") || name.starts_with("veth") {
            continue;
        }
        let d = find(&devices, Bus::Net, name);
        assert!(!d.devpath.is_empty(), "{d:?}");
        assert!(d.details.contains_key("MacAddress"), "{d:?}");
    }
    assert_eq!(find(&devices, Bus::Net, "lo").sub_category, "Loopback");
    // Every whole disk with a size (not a partition, not virtual and empty) is listed.
    for e in std::fs::read_dir("/sys/class/block").unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let dir = format!("/sys/class/block/{name}");
        let size: u64 = std::fs::read_to_string(format!("{dir}/size"))
            .map(|s| s.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        let partition = Path::new(&format!("{dir}/partition")).exists();
        let is_virtual = std::fs::read_link(&dir)
            .map(|t| t.to_string_lossy().contains("/devices/virtual/"))
            .unwrap_or(true);
        if !partition && size > 0 && !is_virtual {
            let d = find(&devices, Bus::Block, &name);
            assert_eq!(
                detail(d, "SizeBytes"),
                Some((size * 512).to_string().as_str())
            );
        }
    }
    // PCI functions, where the machine has a PCI bus.
    if let Ok(pci) = std::fs::read_dir("/sys/bus/pci/devices") {
        assert_eq!(
            devices.iter().filter(|d| d.bus == Bus::Pci).count(),
            pci.count()
        );
    }
}

struct Watcher {
    rx: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    handle: Option<std::thread::JoinHandle<()>>,
    metrics: Arc<Metrics>,
    seen: Vec<Event>,
}

impl Watcher {
    fn start(source: Source) -> Watcher {
        let (events, rx) = mpsc::channel(4096);
        let metrics = Arc::new(Metrics::for_tests());
        let cancel = CancellationToken::new();
        let ctx = Context {
            host: HostRoot::default(),
            events,
            metrics: metrics.clone(),
            config: tokio_watch::channel(Arc::new(Config::default())).1,
            cancel: cancel.clone(),
            state_dir: std::env::temp_dir(),
        };
        let handle = spawn(ctx, source).unwrap();
        Watcher {
            rx,
            cancel,
            handle: Some(handle),
            metrics,
            seen: Vec::new(),
        }
    }

    /// The first event `pick` accepts, within `within`. Events passed over are kept for later
    /// waits (a veth's peer may be announced before it).
    fn wait_for(&mut self, within: Duration, pick: impl Fn(&Event) -> bool) -> Option<Event> {
        if let Some(i) = self.seen.iter().position(&pick) {
            return Some(self.seen.remove(i));
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.rx.try_recv() {
                Ok(e) if pick(&e) => return Some(e),
                Ok(e) => self.seen.push(e),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn is_status(e: &Event, status: CollectorHealth) -> bool {
    matches!(&e.payload, Payload::CollectorStatus(r) if r[0].status == status)
}

fn is_hotplug(e: &Event, name: &str, action: &str) -> bool {
    matches!(&e.payload, Payload::ConnectedHardware(r)
        if e.category == Category::Triggered
            && r.len() == 1
            && r[0].extra_details.get("KernelName").map(String::as_str) == Some(name)
            && r[0].extra_details.get("Action").map(String::as_str) == Some(action))
}

/// A veth pair that is deleted on drop.
struct Veth(String);

impl Veth {
    fn create(tag: &str) -> Option<(Veth, String, String)> {
        let n = std::process::id() % 100_000;
        let (a, b) = (format!("eg{tag}a{n}"), format!("eg{tag}b{n}"));
        let _ = run_ok("ip", &["link", "del", &a]);
        run_ok(
            "ip",
            &["link", "add", &a, "type", "veth", "peer", "name", &b],
        )?;
        Some((Veth(a.clone()), a, b))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run_ok("ip", &["link", "del", &self.0]);
    }
}

fn veth_round_trip(source: Source, tag: &str, expect_source: &str) {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let mut w = Watcher::start(source);
    let want = match source {
        Source::Uevents => CollectorHealth::Up,
        Source::Rescan(_) => CollectorHealth::Degraded,
    };
    assert!(
        w.wait_for(Duration::from_secs(10), |e| is_status(e, want))
            .is_some(),
        "the watcher said {want:?}"
    );
    let Some((veth, a, b)) = Veth::create(tag) else {
        eprintln!("skipping: cannot create a veth pair with ip(8)");
        return;
    };
    for name in [&a, &b] {
        let e = w
            .wait_for(Duration::from_secs(10), |e| is_hotplug(e, name, "Added"))
            .unwrap_or_else(|| panic!("no Added event for {name}"));
        let r = hardware_record(&e);
        assert_eq!(r.hardware_category, "Network");
        assert_eq!(r.hardware_sub_category, "Virtual Adapter");
        assert_eq!(r.extra_details["Source"], expect_source);
        assert_eq!(
            r.extra_details["DevicePath"],
            format!("/devices/virtual/net/{name}")
        );
        assert!(r.extra_details.contains_key("MacAddress"), "{r:?}");
    }
    drop(veth);
    for name in [&a, &b] {
        assert!(
            w.wait_for(Duration::from_secs(10), |e| is_hotplug(e, name, "Removed"))
                .is_some(),
            "no Removed event for {name}"
        );
    }
    assert_eq!(
        w.metrics
            .value(
                "edgeguard_events_collected_total",
                &[("collector", COLLECTOR), ("kind", "ConnectedHardware")]
            )
            .map(|v| v >= 4.0),
        Some(true),
        "events counted under the collector's label"
    );
}

#[test]
fn a_veth_pair_is_added_then_removed_by_uevents() {
    veth_round_trip(Source::Uevents, "u", "uevent");
}

#[test]
fn a_veth_pair_is_added_then_removed_by_rescans_without_the_socket() {
    veth_round_trip(Source::Rescan(Duration::from_millis(200)), "r", "rescan");
}

#[test]
fn a_loop_device_is_listed_and_its_attach_and_detach_are_reported() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let mut w = Watcher::start(Source::Uevents);
    assert!(
        w.wait_for(Duration::from_secs(10), |e| is_status(
            e,
            CollectorHealth::Up
        ))
        .is_some()
    );
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();
    let image = image.to_string_lossy().into_owned();
    let Some(dev) = run_ok("losetup", &["-f", "--show", &image]) else {
        eprintln!("skipping: losetup cannot attach a loop device");
        return;
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = run_ok("losetup", &["-d", &self.0]);
        }
    }
    let detach = Detach(dev.clone());
    let name = dev.trim_start_matches("/dev/").to_string();

    let (devices, _, _) = scan(&HostRoot::default());
    let d = find(&devices, Bus::Block, &name);
    assert_eq!(
        (d.category.as_str(), d.sub_category.as_str()),
        ("Storage", "Loop Device")
    );
    assert_eq!(detail(d, "SizeBytes"), Some("1048576"));
    assert_eq!(detail(d, "BackingFile"), Some(image.as_str()));

    assert!(
        w.wait_for(Duration::from_secs(10), |e| is_hotplug(e, &name, "Added"))
            .is_some(),
        "no Added event for {name}"
    );
    drop(detach);
    assert!(
        w.wait_for(Duration::from_secs(10), |e| is_hotplug(e, &name, "Removed"))
            .is_some(),
        "no Removed event for {name}"
    );
}

#[test]
fn a_flapping_interface_makes_at_most_the_limit_of_events_and_the_rest_are_counted() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let mut w = Watcher::start(Source::Uevents);
    assert!(
        w.wait_for(Duration::from_secs(10), |e| is_status(
            e,
            CollectorHealth::Up
        ))
        .is_some()
    );
    let n = std::process::id() % 100_000;
    let (a, b) = (format!("egfa{n}"), format!("egfb{n}"));
    let _ = run_ok("ip", &["link", "del", &a]);
    // Deletes the pair should the test stop halfway.
    let _cleanup = Veth(a.clone());
    let cycles = 10;
    // Every uevent of the pair ends as an event or a drop; counted together, they pace the
    // flapping so that each add is read while the interface still exists.
    let outcome = |w: &mut Watcher| {
        while let Ok(e) = w.rx.try_recv() {
            w.seen.push(e);
        }
        let events = w
            .seen
            .iter()
            .filter(|e| {
                [&a, &b]
                    .iter()
                    .any(|name| is_hotplug(e, name, "Added") || is_hotplug(e, name, "Removed"))
            })
            .count();
        let drops = w.metrics.dropped_total(COLLECTOR, DropReason::RateLimited) as usize;
        (events, drops)
    };
    let wait_total = |w: &mut Watcher, want: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (events, drops) = outcome(w);
            if events + drops >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{events} events and {drops} drops, wanted {want} in all"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for i in 0..cycles {
        assert!(
            run_ok(
                "ip",
                &["link", "add", &a, "type", "veth", "peer", "name", &b]
            )
            .is_some()
        );
        wait_total(&mut w, 4 * i + 2);
        assert!(run_ok("ip", &["link", "del", &a]).is_some());
        wait_total(&mut w, 4 * i + 4);
    }
    let (events, drops) = outcome(&mut w);
    let per_name = PER_DEVICE_PER_MINUTE as usize;
    assert_eq!(events, 2 * per_name, "{per_name} events per interface");
    assert_eq!(drops, 4 * cycles - 2 * per_name);
    for name in [&a, &b] {
        let first: Vec<&str> = w
            .seen
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::ConnectedHardware(r) if r[0].hardware_name == *name => {
                    r[0].extra_details.get("Action").map(String::as_str)
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            first,
            ["Added", "Removed", "Added", "Removed", "Added", "Removed"],
            "{name}: the first events go out, in order"
        );
    }
}

/// The kernel sends a USB device's `add` before it configures the device (its interfaces
/// appear, then `bind`): the device is reported at `bind` with its interface classes, so a
/// keyboard is not taken for a plain "USB Device"; one never configured is reported after the
/// wait, and one unplugged before it is reported added and removed.
#[test]
fn a_usb_device_is_reported_once_configured() {
    let dir = fixture();
    let r = dir.path();
    let mut watch = Watch::new(HostRoot::new(r));
    let to = "../../../devices/pci0000:00/0000:00:14.0/usb1";
    let plug = |name: &str| {
        let d = format!("{XHCI}/usb1/{name}");
        write(r, &format!("{d}/idVendor"), "046d\n");
        write(r, &format!("{d}/idProduct"), "c31c\n");
        write(r, &format!("{d}/bDeviceClass"), "00\n");
        write(r, &format!("{d}/product"), "USB Keyboard\n");
        link(
            r,
            &format!("sys/bus/usb/devices/{name}"),
            &format!("{to}/{name}"),
        );
        d
    };
    let ev = |action: &str, name: &str| {
        uevent_of(
            action,
            &format!("/devices/pci0000:00/0000:00:14.0/usb1/{name}"),
            "usb",
            &["DEVTYPE=usb_device"],
        )
    };
    // add before its interfaces: nothing yet; they appear, then bind: Added with them.
    let kbd = plug("1-3");
    assert!(watch.on_uevent(&ev("add", "1-3")).is_empty());
    write(r, &format!("{kbd}/1-3:1.0/bInterfaceClass"), "03\n");
    let events = watch.on_uevent(&ev("bind", "1-3"));
    assert_eq!(events.len(), 1);
    let rec = hardware_record(&events[0]);
    assert_eq!(rec.extra_details["Action"], "Added");
    assert_eq!(rec.hardware_sub_category, "Human Interface Device");
    assert_eq!(
        rec.extra_details
            .get("InterfaceClasses")
            .map(String::as_str),
        Some("Human Interface Device")
    );
    // Once: a later bind or add of a listed device is not news.
    assert!(watch.on_uevent(&ev("bind", "1-3")).is_empty());
    assert!(
        watch
            .flush_pending(Instant::now() + USB_CONFIGURE_WAIT)
            .is_empty()
    );

    // Never configured: reported after the wait, as it is, and only then.
    plug("1-4");
    assert!(watch.on_uevent(&ev("add", "1-4")).is_empty());
    assert!(watch.flush_pending(Instant::now()).is_empty());
    let events = watch.flush_pending(Instant::now() + USB_CONFIGURE_WAIT);
    assert_eq!(events.len(), 1);
    assert_eq!(hardware_record(&events[0]).extra_details["Action"], "Added");
    assert!(watch.devices.contains_key(&(Bus::Usb, "1-4".to_string())));

    // Unplugged before it was configured: Added and Removed.
    plug("1-5");
    assert!(watch.on_uevent(&ev("add", "1-5")).is_empty());
    let events = watch.on_uevent(&ev("remove", "1-5"));
    let actions: Vec<&str> = events
        .iter()
        .map(|e| hardware_record(e).extra_details["Action"].as_str())
        .collect();
    assert_eq!(actions, ["Added", "Removed"]);
    assert!(watch.pending_usb.is_empty());
}
