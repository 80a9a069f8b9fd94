use super::*;

const ID: &str = "3f1d9c2e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

#[test]
fn container_ids_from_every_runtime_layout() {
    for line in [
        format!("12:pids:/docker/{ID}"),
        format!("0::/system.slice/docker-{ID}.scope"),
        format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope"),
        format!("0::/machine.slice/libpod-{ID}.scope/container"),
        format!("4:memory:/kubepods/besteffort/pod1234/{ID}"),
        format!("0::/system.slice/crio-{ID}.scope"),
    ] {
        assert_eq!(
            container_id_from_cgroup(&format!("1:name=systemd:/\n{line}\n")).as_deref(),
            Some(ID),
            "{line}"
        );
    }
    for host in [
        "0::/",
        "0::/user.slice/user-1000.slice/session-2.scope",
        "4:memory:/process_api/206918bc0487cf4f4d2791ca9ea4321e",
        "garbage",
        "",
    ] {
        assert_eq!(container_id_from_cgroup(host), None, "{host}");
    }
}

#[test]
fn stat_names_with_spaces_and_parentheses() {
    assert_eq!(
        parse_stat(b"4242 (a (b) c) S 17 4242 4242 0 -1 4194560 120 0 0 0\n"),
        Status {
            name: Some("a (b) c".into()),
            ppid: Some(17),
            uid: None
        }
    );
    assert_eq!(
        parse_stat(b"1 (init) S 0 1 1"),
        Status {
            name: Some("init".into()),
            ppid: Some(0),
            uid: None
        }
    );
    for bad in [
        &b""[..],
        b"garbage",
        b"1 )x( S 2",
        b"1 (x) S",
        b"1 (x) S notapid",
    ] {
        assert_eq!(parse_stat(bad).ppid, None, "{bad:?}");
    }
    // The same as status says, for this process.
    let mut from_stat = ProcessInfo {
        pid: std::process::id(),
        ..Default::default()
    };
    let mut from_status = from_stat.clone();
    let mut r = Reader::new(&HostRoot::default());
    r.read_stat(&mut from_stat);
    r.read_status(&mut from_status);
    assert_eq!(from_stat.ppid, from_status.ppid);
    assert_eq!(from_stat.comm, from_status.comm);
    assert!(from_stat.ppid.is_some() && from_stat.uid.is_none());
}

#[test]
fn status_and_cmdline() {
    let s = parse_status("Name:\tbash\nUmask:\t0022\nPPid:\t12\nUid:\t1000\t0\t0\t0\n");
    assert_eq!(
        s,
        Status {
            name: Some("bash".into()),
            ppid: Some(12),
            uid: Some(1000)
        }
    );
    assert_eq!(parse_status("garbage\nPPid: x\n"), Status::default());
    assert_eq!(
        parse_cmdline(b"sh\0-c\0echo hi\0").as_deref(),
        Some("sh -c echo hi")
    );
    assert_eq!(parse_cmdline(b""), None);
    assert_eq!(parse_cmdline(b"\0\0"), None);
    assert_eq!(
        parse_cmdline(&[0xff, b'a', 0]).as_deref(),
        Some("\u{fffd}a")
    );
    let long = vec![b'a'; MAX_CMDLINE_BYTES * 2];
    assert_eq!(parse_cmdline(&long).unwrap().len(), MAX_CMDLINE_BYTES);
}

#[test]
fn reads_this_process() {
    let me = read(&HostRoot::default(), std::process::id());
    assert_eq!(me.ppid, Some(std::os::unix::process::parent_id()));
    assert_eq!(me.uid, Some(unsafe { libc::getuid() }));
    assert!(me.exe.is_some());
    assert!(me.cmdline.is_some());
    let gone = read(&HostRoot::default(), u32::MAX - 1);
    assert_eq!(gone.exe, None);
    assert_eq!(gone.executable(), "");
}

#[test]
fn reader_matches_std_reads_and_reuses_itself() {
    let mut r = Reader::new(&HostRoot::default());
    // A command line longer than the first read, to exercise the growing buffer.
    let long = "x".repeat(FIRST_READ_BYTES * 2 + 17);
    // A shell waiting on its stdin, with the long text as its `$0`.
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "read x", &long])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // spawn returns once the child's new memory is in place, which can be before the
    // kernel has filled in its argument area: wait until /proc shows the arguments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .len()
        < long.len()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "child never showed its arguments"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for _ in 0..2 {
        let info = r.read(pid, Liveness::Unknown);
        assert_eq!(info.cmdline, Some(format!("/bin/sh -c read x {long}")));
        assert_eq!(
            info.exe.as_deref().map(std::path::Path::new),
            Some(std::fs::canonicalize("/bin/sh").unwrap().as_path())
        );
        assert_eq!(info.ppid, Some(std::process::id()));
        assert_eq!(info.comm.as_deref(), Some("sh"));
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert_eq!(info.container_id, container_id_from_cgroup(&cg));
        // The same reader on this process gives what the std reads give.
        let me = r.read(std::process::id(), Liveness::Unknown);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let s = parse_status(&status);
        assert_eq!((me.ppid, me.uid, me.comm), (s.ppid, s.uid, s.name));
        let raw = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(me.cmdline, parse_cmdline(&raw));
    }
    // An exited process is only asked for what outlives its memory.
    let exited = r.read(pid, Liveness::Exited);
    assert_eq!((exited.cmdline, exited.exe), (None, None));
    assert_eq!(exited.ppid, Some(std::process::id()));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        r.read(pid, Liveness::Unknown),
        ProcessInfo {
            pid,
            ..Default::default()
        }
    );
}

#[test]
fn a_zombie_still_has_its_name_and_parent() {
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    // Not reaped: wait until it has exited (state Z), then read it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "child never became a zombie"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let info = Reader::new(&HostRoot::default()).read(pid, Liveness::Unknown);
    assert_eq!((info.cmdline.as_deref(), info.exe.as_deref()), (None, None));
    assert_eq!(info.comm.as_deref(), Some("true"));
    assert_eq!(info.ppid, Some(std::process::id()));
    assert_eq!(info.uid, Some(unsafe { libc::getuid() }));
    child.wait().unwrap();
}

#[test]
fn cgroup_is_read_only_outside_the_hosts_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    let make = |pid: u32, mnt: Option<&str>| {
        let p = proc.join(pid.to_string());
        std::fs::create_dir_all(p.join("ns")).unwrap();
        if let Some(mnt) = mnt {
            std::os::unix::fs::symlink(mnt, p.join("ns/mnt")).unwrap();
        }
        std::fs::write(
            p.join("cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
    };
    make(1, Some("mnt:[4026531841]"));
    // Same namespace as the host: the cgroup (made up here) is not even read.
    make(10, Some("mnt:[4026531841]"));
    // A namespace of its own, or one that cannot be read (a zombie): read as before.
    make(11, Some("mnt:[4026532500]"));
    make(12, None);
    let mut r = Reader::new(&HostRoot::new(dir.path()));
    let container = |r: &mut Reader, pid| {
        let mut info = ProcessInfo {
            pid,
            ..Default::default()
        };
        r.read_container(&mut info);
        info.container_id
    };
    assert_eq!(container(&mut r, 10), None);
    assert_eq!(container(&mut r, 11).as_deref(), Some(ID));
    assert_eq!(container(&mut r, 12).as_deref(), Some(ID));

    // Init's namespace cannot be read, kthreadd's can: it stands for the host's.
    std::fs::remove_file(proc.join("1/ns/mnt")).unwrap();
    make(2, Some("mnt:[4026531841]"));
    std::fs::write(proc.join("2/comm"), "kthreadd\n").unwrap();
    let mut r = Reader::new(&HostRoot::new(dir.path()));
    assert_eq!(container(&mut r, 10), None);
    assert_eq!(container(&mut r, 11).as_deref(), Some(ID));

    // Pid 2 is not kthreadd (a private pid namespace): not trusted, cgroup is read.
    std::fs::write(proc.join("2/comm"), "sh\n").unwrap();
    let mut r = Reader::new(&HostRoot::new(dir.path()));
    assert_eq!(container(&mut r, 10).as_deref(), Some(ID));

    // No host namespace at all: every process's cgroup is read.
    std::fs::remove_file(proc.join("2/ns/mnt")).unwrap();
    std::fs::write(proc.join("2/comm"), "kthreadd\n").unwrap();
    let mut r = Reader::new(&HostRoot::new(dir.path()));
    assert_eq!(container(&mut r, 10).as_deref(), Some(ID));
}

#[test]
fn reader_under_an_empty_root_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Reader::new(&HostRoot::new(dir.path()));
    let me = std::process::id();
    assert_eq!(
        r.read(me, Liveness::Unknown),
        ProcessInfo {
            pid: me,
            ..Default::default()
        }
    );
}
