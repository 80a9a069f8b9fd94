//! A perf event ring (`perf_event_open` + `mmap`), opened on one CPU for a tracepoint and read
//! without system calls: the kernel writes records behind `data_head`, the reader consumes
//! them and moves `data_tail`.

use super::bytes::{u16_at, u32_at};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_SAMPLE_REGS_USER: u64 = 1 << 12;
const PERF_SAMPLE_STACK_USER: u64 = 1 << 13;
const PERF_SAMPLE_CGROUP: u64 = 1 << 21;
/// `perf_event_attr.use_clockid`, a bit of the flags word (Linux 4.1).
const USE_CLOCKID: u64 = 1 << 25;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// Offsets of `data_head` and `data_tail` in `struct perf_event_mmap_page`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

/// `PERF_RECORD_LOST`: records the kernel could not write because the ring was full.
pub const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SAMPLE`: a sample (here, a tracepoint's raw record).
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// Online and offline CPUs the system was configured with (at least 1).
pub fn configured_cpus() -> i32 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as i32
}

/// One CPU's perf event and its mapped ring.
pub struct Ring {
    _fd: OwnedFd,
    base: *mut u8,
    len: usize,
    page: usize,
    data_len: usize,
}

// SAFETY: the mapping is owned by this value and only used through `&self`/`&mut self`.
unsafe impl Send for Ring {}

/// `struct perf_event_attr` up to `clockid` (`PERF_ATTR_SIZE_VER3`, 96 bytes, Linux 3.7; the
/// `clockid` word was reserved until 4.1). The version-0 size (64 bytes), which every kernel
/// accepts, is stated when neither a user stack nor a clock is asked for, so older kernels keep
/// working.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
}

/// Besides the raw record, a sample may carry the sampled task's user registers (`regs`, a
/// mask in the kernel's `perf_regs.h` numbering) and the first `size` bytes of its user stack
/// from the stack pointer up (`PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER`). After the raw
/// part a sample then holds: `u64 abi` (0 none, 1 32-bit, 2 64-bit task), one `u64` per
/// register in the mask when `abi` is not 0, `u64 size`, `size` bytes, and `u64 dyn_size` (the
/// bytes actually copied) when `size` is not 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStack {
    pub regs: u64,
    pub size: u32,
}

/// What a tracepoint sample carries besides its raw record, in the kernel's order:
/// `u64 time` first ([`Sampling::clock`]), then `u32 size` and the raw record, then the user
/// stack ([`UserStack`]), then `u64 cgroup` last ([`Sampling::cgroup`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampling {
    pub stack: Option<UserStack>,
    /// The time of the hit on `CLOCK_MONOTONIC` (`PERF_SAMPLE_TIME` with `use_clockid`, Linux
    /// 4.1), the clock of the process connector's timestamps, so a sample can be matched to
    /// the connector's event of the same exec.
    pub clock: bool,
    /// The id of the task's cgroup in the perf_event controller's hierarchy (on cgroup v2, the
    /// one hierarchy) at the hit (`PERF_SAMPLE_CGROUP`, Linux 5.7 with `CONFIG_CGROUP_PERF`).
    pub cgroup: bool,
}

impl Ring {
    /// Samples every hit of tracepoint `id` (its raw record, and what `sampling` asks for) on
    /// `cpu`, in a ring of `data_pages` pages.
    pub fn open_tracepoint(
        id: u64,
        cpu: i32,
        data_pages: usize,
        sampling: Sampling,
    ) -> io::Result<Ring> {
        let mut attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: 64,
            config: id,
            sample_period: 1,
            sample_type: PERF_SAMPLE_RAW,
            ..Default::default()
        };
        if let Some(stack) = sampling.stack {
            attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
            attr.sample_type |= PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER;
            attr.sample_regs_user = stack.regs;
            attr.sample_stack_user = stack.size;
        }
        if sampling.clock {
            attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
            attr.sample_type |= PERF_SAMPLE_TIME;
            attr.flags |= USE_CLOCKID;
            attr.clockid = libc::CLOCK_MONOTONIC;
        }
        if sampling.cgroup {
            attr.sample_type |= PERF_SAMPLE_CGROUP;
        }
        // SAFETY: `attr` is a valid perf_event_attr of the size it states; pid -1 with a cpu
        // means every task on that CPU; the result is checked.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                -1 as libc::pid_t,
                cpu,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = page * (1 + data_pages);
        // SAFETY: maps `len` bytes of the event's ring; the result is checked. Writable so the
        // kernel sees `data_tail` and never overwrites unread records.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            _fd: fd,
            base: base.cast(),
            len,
            page,
            data_len: page * data_pages,
        })
    }

    /// Our tail and the kernel's head.
    pub fn bounds(&self) -> (u64, u64) {
        // SAFETY: both words lie in the mapped metadata page, 8-byte aligned.
        let head = unsafe { std::ptr::read_volatile(self.base.add(DATA_HEAD).cast::<u64>()) };
        // The records up to `head` are visible only after it is read (the kernel's smp_wmb).
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let tail = unsafe { std::ptr::read_volatile(self.base.add(DATA_TAIL).cast::<u64>()) };
        (tail, head)
    }

    /// Hands the records before `tail` back to the kernel.
    pub fn set_tail(&self, tail: u64) {
        // Every read of the records is done before the kernel may reuse their space.
        fence(Ordering::Release);
        // SAFETY: in the mapped metadata page, 8-byte aligned; only we write it.
        unsafe { std::ptr::write_volatile(self.base.add(DATA_TAIL).cast::<u64>(), tail) };
    }

    /// Type and size of the record at `at` (`struct perf_event_header`).
    pub fn header(&self, at: u64) -> (u32, u16) {
        let (a, b) = self.slices(at, 8);
        let mut h = [0u8; 8];
        h[..a.len()].copy_from_slice(a);
        h[a.len()..].copy_from_slice(b);
        // Eight bytes are always there.
        (u32_at(&h, 0).unwrap_or(0), u16_at(&h, 6).unwrap_or(0))
    }

    /// Copies `len` bytes of the data area from ring position `at` (wrapping) into `out`.
    pub fn copy(&self, at: u64, len: usize, out: &mut Vec<u8>) {
        out.clear();
        let (a, b) = self.slices(at, len);
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }

    /// The `len` bytes (at most the data area) from ring position `at`: up to the end of the
    /// area, and the rest from its start.
    fn slices(&self, at: u64, len: usize) -> (&[u8], &[u8]) {
        let len = len.min(self.data_len);
        let start = (at % self.data_len as u64) as usize;
        let first = len.min(self.data_len - start);
        // SAFETY: the data area is `data_len` bytes after the first page; both ranges stay in
        // it. The kernel does not write them until `data_tail` moves past them.
        unsafe {
            let data = self.base.add(self.page);
            (
                std::slice::from_raw_parts(data.add(start), first),
                std::slice::from_raw_parts(data, len - first),
            )
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open_tracepoint`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
