use super::*;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

/// A host root in a temporary directory whose reporter records what it is told.
struct Fixture {
    dir: tempfile::TempDir,
    told: Arc<Mutex<Vec<(&'static str, PathBuf)>>>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            told: Arc::default(),
        }
    }

    fn host(&self, resolver: Resolver) -> HostRoot {
        let told = self.told.clone();
        HostRoot::new(self.dir.path())
            .with_resolver(resolver)
            .with_reporter(Arc::new(move |t, p| {
                told.lock().unwrap().push((t, p.to_path_buf()))
            }))
    }

    fn at(&self, p: &str) -> PathBuf {
        let p = self.dir.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    fn write(&self, p: &str, content: &str) -> &Fixture {
        std::fs::write(self.at(p), content).unwrap();
        self
    }

    fn link(&self, target: &str, p: &str) -> &Fixture {
        symlink(target, self.at(p)).unwrap();
        self
    }

    fn fifo(&self, p: &str) -> &Fixture {
        let c = CString::new(self.at(p).as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; test setup.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        self
    }

    fn told(&self) -> Vec<&'static str> {
        self.told.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

fn refusal(r: Result<impl std::fmt::Debug, Error>) -> Refusal {
    match r {
        Err(Error::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn paths_are_joined_under_the_root() {
    let h = HostRoot::new("/host");
    assert_eq!(h.path("/etc/passwd"), PathBuf::from("/host/etc/passwd"));
    assert_eq!(h.path("proc/1/stat"), PathBuf::from("/host/proc/1/stat"));
    assert_eq!(HostRoot::default().path("/etc"), PathBuf::from("/etc"));
}

#[test]
fn missing_and_oversized_files_are_errors() {
    let fx = Fixture::new();
    for resolver in BOTH {
        let h = fx.host(resolver);
        assert!(h.read("/nope").unwrap_err().is_not_found());
        std::fs::write(fx.at("big"), vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = h.read("/big").unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
        assert_eq!(e.error_type(), Some("too_large"));
        assert_eq!(h.read_prefix("/big", 10).unwrap(), b"xxxxxxxxxx");
    }
    assert_eq!(fx.told(), ["too_large", "too_large"]);
    assert!(fx.told.lock().unwrap()[0].1.ends_with("big"));
}

#[test]
fn a_huge_sparse_file_is_refused_from_its_size_without_reading_it() {
    let fx = Fixture::new();
    let f = std::fs::File::create(fx.at("/var/log/auth.log")).unwrap();
    f.set_len(10 << 30).unwrap();
    let h = fx.host(Resolver::Openat2);
    let started = Instant::now();
    assert!(matches!(
        h.read("/var/log/auth.log"),
        Err(Error::TooLarge { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        h.read_prefix("/var/log/auth.log", 1000).unwrap().len(),
        1000
    );
}

#[test]
fn only_regular_files_are_read_and_nothing_blocks() {
    let fx = Fixture::new();
    fx.fifo("/etc/passwd")
        .fifo("/root/.ssh/authorized_keys")
        .link("/etc/passwd", "/etc/group");
    std::os::unix::net::UnixListener::bind(fx.at("/run/sock")).unwrap();
    // A device node inside the root (as root; elsewhere the part is skipped).
    let zero = CString::new(fx.at("/dev/zero").as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; test setup.
    let have_dev =
        unsafe { libc::mknod(zero.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) } == 0;
    fx.link("/dev/zero", "/var/log/auth.log");
    for resolver in BOTH {
        let h = fx.host(resolver);
        let started = Instant::now();
        for (p, kind) in [
            ("/etc/passwd", FileKind::Fifo),
            ("/etc/group", FileKind::Fifo),
            ("/root/.ssh/authorized_keys", FileKind::Fifo),
            ("/run/sock", FileKind::Socket),
            ("/etc", FileKind::Dir),
        ] {
            assert_eq!(
                refusal(h.read(p)),
                Refusal::NotRegular(kind),
                "{resolver:?} {p}"
            );
        }
        if have_dev {
            let e = h.read_to_string("/var/log/auth.log").unwrap_err();
            assert_eq!(e.error_type(), Some("not_regular"));
            assert!(e.to_string().contains("character device"), "{e}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{resolver:?}");
        // Metadata of a FIFO is no read: it is given.
        assert!(h.metadata("/etc/group").unwrap().file_type().is_fifo());
        assert!(
            h.symlink_metadata("/etc/group")
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    assert!(fx.told().iter().all(|t| *t == "not_regular"));
    assert_eq!(fx.told().len(), 2 * (5 + usize::from(have_dev)));
}

#[test]
fn links_stay_inside_the_root() {
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "outside the root").unwrap();
    fx.write("/a/b", "inside")
        .link("/a", "/abs")
        .link("a", "/rel")
        .link("../../../../a", "/a/up")
        .link("/l2", "/l1")
        .link("/l1", "/l2")
        .link(outside.path().join("secret").to_str().unwrap(), "/escape")
        .link(
            &format!("../../../../..{}/secret", outside.path().display()),
            "/dotdot",
        )
        .link("/proc/self/root/etc/hostname", "/etc/hostname");
    for resolver in BOTH {
        let h = fx.host(resolver);
        for p in ["/abs/b", "/rel/b", "/../../a/b", "/a/up/b"] {
            assert_eq!(h.read_to_string(p).unwrap(), "inside", "{resolver:?} {p}");
        }
        assert!(h.metadata("/abs/b").unwrap().is_file());
        assert!(
            h.read("/escape").unwrap_err().is_not_found(),
            "{resolver:?}"
        );
        assert!(
            h.read("/dotdot").unwrap_err().is_not_found(),
            "{resolver:?}"
        );
        assert_eq!(refusal(h.read("/l1/x")), Refusal::Loop, "{resolver:?}");
        assert_eq!(refusal(h.metadata("/l1")), Refusal::Loop, "{resolver:?}");
        // Re-rooted, /proc/self/root is this root's /proc, which does not exist.
        assert!(
            h.read("/etc/hostname").unwrap_err().is_not_found(),
            "{resolver:?}"
        );
    }
    assert_eq!(fx.told(), ["loop", "loop", "loop", "loop"]);
}

#[test]
fn magic_links_are_refused_and_can_still_be_read_as_links() {
    // The real /proc, under the real root.
    for resolver in BOTH {
        let h = HostRoot::default().with_resolver(resolver);
        for p in [
            "/proc/self/root/etc/hostname",
            "/proc/self/exe",
            "/proc/self/fd/0",
        ] {
            assert_eq!(refusal(h.read(p)), Refusal::MagicLink, "{resolver:?} {p}");
        }
        assert!(
            h.read_to_string("/proc/self/status")
                .unwrap()
                .contains("Pid:")
        );
        let exe = h.read_link("/proc/self/exe").unwrap();
        assert_eq!(exe, std::fs::read_link("/proc/self/exe").unwrap());
        assert!(
            h.read_link("/proc/self/ns/net")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("net:[")
        );
        assert!(h.open_namespace("/proc/self/ns/net").is_ok());
        let fd0 = h.read_dir("/proc/self/fd").unwrap().flatten().count();
        assert!(fd0 >= 3, "{fd0}");
    }
}

#[test]
fn directories_list_any_name() {
    let fx = Fixture::new();
    let weird = [
        OsStr::from_bytes(b"new\nline"),
        OsStr::from_bytes(b"\xff\xfe not utf-8"),
        OsStr::new("plain"),
    ];
    std::fs::create_dir_all(fx.at("/home/u")).unwrap();
    for n in weird {
        std::fs::write(fx.at("/home/u").join(n), "x").unwrap();
    }
    fx.link("/etc", "/home/u/link").fifo("/home/u/fifo");
    for resolver in BOTH {
        let h = fx.host(resolver);
        let mut entries: Vec<DirEntry> =
            h.read_dir("/home/u").unwrap().map(Result::unwrap).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&OsStr> = entries.iter().map(|e| e.name.as_os_str()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        for n in weird {
            assert!(names.contains(&n));
            let mut path = b"/home/u/".to_vec();
            path.extend_from_slice(n.as_bytes());
            assert_eq!(h.read(OsStr::from_bytes(&path)).unwrap(), b"x");
        }
        let dir = h.read_dir("/home/u").unwrap();
        assert!(
            dir.symlink_metadata(OsStr::new("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            dir.symlink_metadata(OsStr::new("../u")).is_err(),
            "a name, not a path"
        );
        let kinds: Vec<FileKind> = entries.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&FileKind::Symlink) && kinds.contains(&FileKind::Fifo));
        assert!(h.read_dir("/home/u/plain").is_err());
    }
}

#[test]
fn kernel_files_are_read_only_under_proc_and_sys() {
    // Under the real root: a link in a temporary directory into /proc.
    let dir = tempfile::tempdir().unwrap();
    symlink("/proc/self/status", dir.path().join("status")).unwrap();
    symlink("/proc/self/environ", dir.path().join("environ")).unwrap();
    symlink("/sys/kernel/uevent_seqnum", dir.path().join("seqnum")).unwrap();
    for resolver in BOTH {
        let h = HostRoot::default().with_resolver(resolver);
        for name in ["status", "environ"] {
            let p = dir.path().join(name);
            assert_eq!(
                refusal(h.read(&p)),
                Refusal::KernelFile("proc"),
                "{resolver:?} {name}"
            );
        }
        let e = h.read(dir.path().join("seqnum")).unwrap_err();
        assert_eq!(e.error_type(), Some("kernel_file_elsewhere"), "{e}");
        assert!(h.read("/proc/self/status").is_ok());
        assert!(h.read("/sys/kernel/uevent_seqnum").is_ok());
        assert!(
            h.metadata(dir.path().join("status")).is_ok(),
            "a stat is no read"
        );
    }
}
