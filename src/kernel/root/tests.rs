use super::*;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

fn root_fd(path: &Path) -> OwnedFd {
    crate::kernel::fs::open_dir(&CString::new(path.as_os_str().as_bytes()).unwrap()).unwrap()
}

/// What opening `path` gave: the object (device, inode) or the errno.
fn outcome(root: &OwnedFd, path: &str, open: Open, resolver: Resolver) -> Result<(u64, u64), i32> {
    match open_in_root(
        root.as_fd(),
        path.as_bytes(),
        open,
        MagicLinks::Refuse,
        resolver,
    ) {
        Ok(fd) => {
            let (_, m) = metadata(fd);
            let m = m.unwrap();
            Ok((m.dev(), m.ino()))
        }
        Err(e) => Err(e.raw_os_error().unwrap()),
    }
}

fn id(path: &Path) -> Result<(u64, u64), i32> {
    let m = std::fs::metadata(path).unwrap();
    Ok((m.dev(), m.ino()))
}

/// A root with every shape the resolver has to get right, and a file outside it.
struct Fixture {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, r.join(at)).unwrap();
        std::fs::create_dir_all(r.join("a/c")).unwrap();
        std::fs::write(r.join("a/b"), "inside").unwrap();
        std::fs::write(outside.path().join("secret"), "outside").unwrap();
        link("/a", "abs");
        link("a", "rel");
        link("../../../../a", "a/up");
        link("/l2", "l1");
        link("/l1", "l2");
        link("self", "self");
        link(outside.path().join("secret").to_str().unwrap(), "escape");
        link(
            &format!("../../../../../../..{}", outside.path().display()),
            "dotdot",
        );
        link("/a/b", "to_file");
        link("/a/c/", "to_dir");
        link("/nowhere", "dangling");
        nix_mkfifo(&r.join("fifo"));
        // A chain of 40 links ends at a/b; 41 is one too many.
        for i in 0..41 {
            let next = if i == 0 {
                "/a/b".to_string()
            } else {
                format!("/n{}", i - 1)
            };
            link(&next, &format!("n{i}"));
        }
        Fixture { root, outside }
    }
}

fn nix_mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; test setup.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn this_kernel_has_openat2() {
    let fx = Fixture::new();
    assert_eq!(resolver(root_fd(fx.root.path()).as_fd()), Resolver::Openat2);
}

#[test]
fn symlinks_and_dotdot_stay_inside_the_root() {
    let fx = Fixture::new();
    let r = fx.root.path();
    let root = root_fd(r);
    let b = id(&r.join("a/b"));
    for resolver in BOTH {
        let got = |p: &str| outcome(&root, p, Open::Read, resolver);
        assert_eq!(got("/a/b"), b, "{resolver:?}");
        assert_eq!(got("a/b"), b, "{resolver:?}: relative is the same");
        assert_eq!(got("/abs/b"), b, "{resolver:?}: absolute target re-rooted");
        assert_eq!(got("/rel/b"), b, "{resolver:?}");
        assert_eq!(
            got("/../../a/b"),
            b,
            "{resolver:?}: `..` clamped at the root"
        );
        assert_eq!(got("/a/up/b"), b, "{resolver:?}: `..` in a target clamped");
        assert_eq!(got("/a/./c/../b"), b, "{resolver:?}");
        assert_eq!(got("/to_file"), b, "{resolver:?}: a link as the last name");
        assert_eq!(got("/n39"), b, "{resolver:?}: 40 links are allowed");
        assert_eq!(got("/n40"), Err(libc::ELOOP), "{resolver:?}: 41 are not");
        assert_eq!(got("/l1/x"), Err(libc::ELOOP), "{resolver:?}: loop");
        assert_eq!(got("/self"), Err(libc::ELOOP), "{resolver:?}: loop");
        // The file outside is never reached: its path is looked up under the root instead.
        assert_eq!(got("/escape"), Err(libc::ENOENT), "{resolver:?}");
        assert_eq!(got("/dotdot/secret"), Err(libc::ENOENT), "{resolver:?}");
        assert_eq!(got("/dangling"), Err(libc::ENOENT), "{resolver:?}");
        assert_eq!(got("/a/b/x"), Err(libc::ENOTDIR), "{resolver:?}");
        assert_eq!(got("/a/missing"), Err(libc::ENOENT), "{resolver:?}");
        // The root itself, and directories.
        assert_eq!(got("/"), id(r), "{resolver:?}");
        assert_eq!(got("/.."), id(r), "{resolver:?}");
        let dir = |p: &str| outcome(&root, p, Open::Dir, resolver);
        assert_eq!(dir("/to_dir"), id(&r.join("a/c")), "{resolver:?}");
        assert_eq!(dir("/a/c/.."), id(&r.join("a")), "{resolver:?}");
        assert_eq!(dir("/a/b"), Err(libc::ENOTDIR), "{resolver:?}");
        // O_PATH sees the FIFO without opening it; reading opens it without waiting for a writer.
        let fifo = id(&r.join("fifo"));
        assert_eq!(outcome(&root, "/fifo", Open::Path, resolver), fifo);
        assert_eq!(got("/fifo"), fifo, "{resolver:?}: O_NONBLOCK");
    }
    drop(fx.outside);
}

#[test]
fn magic_links_are_refused_by_both_resolvers() {
    // The real /proc: the agent's own root is `/` here.
    let root = root_fd(Path::new("/"));
    for resolver in BOTH {
        let got = |p: &str, open| outcome(&root, p, open, resolver).map(|_| ());
        for magic in [
            "/proc/self/exe",
            "/proc/self/cwd/x",
            "/proc/self/root/etc/passwd",
            "/proc/self/fd/0",
            "/proc/self/ns/net",
            "/proc/thread-self/root",
        ] {
            for open in [Open::Read, Open::Path] {
                assert_eq!(got(magic, open), Err(libc::ELOOP), "{resolver:?} {magic}");
            }
        }
        // Ordinary links of procfs (`self`, `mounts`) are followed.
        assert_eq!(got("/proc/self/status", Open::Read), Ok(()), "{resolver:?}");
        assert_eq!(got("/proc/mounts", Open::Read), Ok(()), "{resolver:?}");
        assert_eq!(got("/proc/self/ns", Open::Dir), Ok(()), "{resolver:?}");
    }
    // Read as text, inside the root, a magic link leads somewhere (how a refusal is told apart
    // from a loop).
    let exe = open_in_root(
        root.as_fd(),
        b"/proc/self/exe",
        Open::Path,
        MagicLinks::AsText,
        Resolver::Walk,
    );
    assert!(exe.is_ok());
}

#[test]
fn a_hostile_name_is_an_error_not_a_panic() {
    let fx = Fixture::new();
    let root = root_fd(fx.root.path());
    for resolver in BOTH {
        let e = open_in_root(
            root.as_fd(),
            b"/a\0b",
            Open::Read,
            MagicLinks::Refuse,
            resolver,
        );
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }
}

#[test]
fn directory_entries_with_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&[u8]> = vec![
        b"plain",
        b"new\nline",
        b"\xff\xfe-not-utf8",
        b"x".as_slice(),
    ];
    for n in &names {
        std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(n)), "").unwrap();
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    // Enough long names for several chunks.
    for i in 0..600 {
        std::fs::write(dir.path().join(format!("{i:0>200}")), "").unwrap();
    }
    let root = root_fd(dir.path());
    let fd = open_in_root(
        root.as_fd(),
        b"/",
        Open::Dir,
        MagicLinks::Refuse,
        Resolver::Openat2,
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut seen: Vec<(Vec<u8>, Option<EntryType>)> = Vec::new();
    let mut chunks = 0;
    loop {
        read_dir_chunk(fd.as_fd(), &mut buf).unwrap();
        if buf.is_empty() {
            break;
        }
        chunks += 1;
        seen.extend(entries(&buf).map(|e| (e.name.to_vec(), e.kind)));
    }
    assert!(chunks > 1, "{chunks} chunks");
    assert_eq!(
        seen.len(),
        2 + names.len() + 1 + 600,
        "`.`, `..`, the files, sub"
    );
    for n in &names {
        assert!(seen.contains(&(n.to_vec(), Some(EntryType::File))), "{n:?}");
    }
    assert!(seen.contains(&(b"sub".to_vec(), Some(EntryType::Dir))));
    assert!(entries(&[]).next().is_none());
    // A record claiming more than the chunk holds ends the walk.
    let mut bad = vec![0u64; 4];
    bad[2] = 0xffff;
    assert!(entries(&bad).next().is_none());
}
