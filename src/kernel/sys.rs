//! The remaining system calls: thread priority, joining a network namespace, `uname`, clock
//! ticks, `chroot` before `exec`, and glibc's allocator.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Sets the nice value of the calling thread (not the whole process).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes it.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, nice)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a short-lived helper thread that has joined the network namespace `ns` (an open
/// `/proc/<pid>/ns/net` or `/run/netns/<name>`): sockets `f` opens stay bound to that namespace
/// after the thread ends, while the calling thread never leaves its own.
pub fn in_network_namespace<T: Send>(
    ns: &File,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("edgeguard-netns".into())
            .spawn_scoped(s, || {
                // SAFETY: setns on this short-lived thread only; the fd is a valid ns file.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })?;
        helper
            .join()
            .map_err(|_| io::Error::other("namespace helper thread failed"))?
    })
}

/// The machine name of the running kernel (`uname -m`).
pub fn uname_machine() -> Option<String> {
    uname_field(|uts| &uts.machine)
}

/// The release of the running kernel (`uname -r`), e.g. `6.1.0-27-armmp`.
pub fn uname_release() -> Option<String> {
    uname_field(|uts| &uts.release)
}

fn uname_field(field: impl Fn(&libc::utsname) -> &[libc::c_char]) -> Option<String> {
    let mut uts = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: uname fills the struct it is given and returns 0 on success; the buffer is
    // zeroed, so every field is a NUL-terminated C string even if the kernel wrote less.
    let rc = unsafe { libc::uname(uts.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: uname returned 0, so the struct is initialised.
    let uts = unsafe { uts.assume_init() };
    let bytes: Vec<u8> = field(&uts)
        .iter()
        .take_while(|c| **c != 0)
        // `c_char` is signed on x86_64 and unsigned on ARM; the cast is a no-op on ARM.
        .map(|c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, the unit of CPU times in /proc); not
/// positive when unknown.
pub fn clock_ticks() -> i64 {
    // SAFETY: sysconf has no preconditions.
    // `c_long` is 32 bits on armv7, 64 on x86_64 and aarch64.
    #[allow(clippy::useless_conversion)]
    i64::from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
}

/// Makes `cmd` run chrooted into `dir` (with `/` as its working directory there).
pub fn chroot_before_exec(cmd: &mut Command, dir: std::ffi::CString) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child just before exec. It only calls chroot(2)
    // and chdir(2), which are async-signal-safe, on a C string allocated before the fork, and
    // it allocates nothing itself (`last_os_error` reads errno).
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets glibc's malloc tunables: most arenas, the size from which blocks get their own mapping,
/// and the free memory at a heap's top that goes back to the kernel at once. Call it before any
/// other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn set_malloc_tunables(arena_max: i32, mmap_threshold: i32, trim_threshold: i32) {
    // SAFETY: mallopt only changes malloc tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arena_max);
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold);
    }
}

/// Returns glibc's freed heap memory to the kernel (every arena, inside the heaps too).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_trim() {
    // SAFETY: malloc_trim takes the arenas' locks itself; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `madvise(MADV_PAGEOUT)` on `[start, end)`, which must be a whole mapping of this process's
/// own executable (a range read from `/proc/self/maps`): advisory, it never changes what the
/// process sees.
#[cfg(target_os = "linux")]
pub fn page_out(start: usize, end: usize) {
    // SAFETY: the caller passes a whole mapping of our executable, taken from /proc/self/maps;
    // MADV_PAGEOUT is advisory and does not change the mapping's contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
    }
}

/// Makes a later page fault in `[start, end)` (a whole read-only mapping of this process's
/// executable) read and map at most the `granule` around it: `MADV_RANDOM` on the whole
/// range, and `MADV_NOHUGEPAGE` on every other `granule`, which splits the mapping into
/// mappings of one `granule` each.
///
/// Why the split: on Linux 6.16 and later a fault in executable code reads ahead to the end
/// of its mapping (up to the device's read-ahead, 8 MiB on the disk measured here) whatever
/// `MADV_RANDOM` says, and fault-around maps up to 64 KiB of what is cached. Both stop at
/// the mapping's end. `MADV_NOHUGEPAGE` changes nothing else for a binary's code (the agent
/// never asks for huge pages). Where it fails (a kernel without transparent huge pages), the
/// mapping stays whole and only `MADV_RANDOM` applies, which is enough before 6.16.
/// Advisory: the contents never change.
#[cfg(target_os = "linux")]
pub fn fault_singly(start: usize, end: usize, granule: usize) {
    // SAFETY: the caller passes a whole mapping of our executable, taken from /proc/self/maps;
    // MADV_RANDOM and MADV_NOHUGEPAGE are advisory and do not change its contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
        for at in (start..end)
            .step_by(2 * granule.max(4096))
            .map(|a| a + granule)
        {
            if at >= end {
                break;
            }
            let len = granule.min(end - at);
            if libc::madvise(at as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) != 0 {
                break;
            }
        }
    }
}

/// `posix_fadvise(POSIX_FADV_DONTNEED)` on the whole of `file`: the kernel drops its clean
/// cached pages that no process maps. Advisory; errors are ignored.
#[cfg(target_os = "linux")]
pub fn drop_cached(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fadvise on a descriptor we own; it only changes what the page cache keeps.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
