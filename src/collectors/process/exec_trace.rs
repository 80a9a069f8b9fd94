//! File names and arguments of execs from the kernel's `sched:sched_process_exec` tracepoint,
//! read through one perf ring buffer per CPU (`perf_event_open`; no eBPF, so it works on armv7
//! kernels too).
//!
//! Why: the process connector only says *that* a pid exec'd; the executable and command line
//! come from /proc afterwards. A process that exits and is reaped before the reader gets there
//! (about 0.1 % of a 2,000 execs/s storm here, and most one-command `rm`, `touch`, `chmod` of a
//! script) leaves nothing to read. The tracepoint fires inside the exec itself, before the
//! connector's message is sent, so by the time the reader handles an exec its record is already
//! in a ring. The reader asks for it only when /proc came too late ([`ExecTrace::name_of`],
//! [`ExecTrace::command_line_of`]).
//!
//! Arguments: the tracepoint's record has only the file name, but at that point the new
//! program's stack is built (argc, the argv pointers, then the strings near its top), and perf
//! can copy the first bytes of a sampled task's user stack with its stack pointer
//! (`PERF_SAMPLE_STACK_USER`, `PERF_SAMPLE_REGS_USER`). [`STACK_BYTES`] from the stack pointer
//! reach the argument strings unless the environment is very large; arguments past the copy
//! are cut there. This is the kernel's own copy of argv made at exec time, so it is exactly what
//! /proc/<pid>/cmdline would have shown. On architectures without a known stack-pointer
//! register number, or kernels refusing the sample, only file names are taken, as before.
//!
//! Matching and what it spares: where the kernel adds the time (`CLOCK_MONOTONIC`, the process
//! connector's clock; Linux 4.1) each sample is matched to its own exec event
//! ([`ExecTrace::take`]: the pid's latest sample before the event), and the reader drains the
//! rings before it reads /proc. The command line is then taken from the sample whenever the
//! stack copy holds all of it (~85 % of a script storm's execs here), which spares the
//! `cmdline` read; a shell that exec'd another program before the reader came is reported
//! from its own sample, where /proc would show the later program. Where the kernel also adds
//! the cgroup id (`PERF_SAMPLE_CGROUP`, Linux 5.7, perf_event in the cgroup v2 hierarchy), an
//! exec in the cgroup of its parent on the host needs no container look-up (see
//! `Tracker::read_lasting`).
//!
//! Cost: the kernel writes a record per exec (in the exec'ing task, with the stack copy about
//! 8 KiB); the reader copies recent records into a small table of reused buffers
//! ([`ExecTrace::drain`]) once per batch, without a system call. With the time it parses every
//! record's stack, keeping the arguments, not the stack; without it only an exec /proc missed,
//! and a record drained in an earlier batch than its process event (the tracepoint fires
//! first, so a record written between a batch's arrival and its drain is ahead of its event):
//! whether /proc will miss that exec is not known yet, and the record is the only copy. Needs
//! root (`CAP_PERFMON` or `CAP_SYS_ADMIN`) and tracefs, mounted on the host or mountable by the
//! agent; without them the collector works as before and says so once in the log.

use crate::host::HostRoot;
use crate::kernel::bytes::{bytes_at, u32_at, u64_at};
use crate::kernel::perf::{
    PERF_RECORD_LOST, PERF_RECORD_SAMPLE, Ring, Sampling, UserStack, configured_cpus,
};
#[cfg(test)]
use std::fs;
use std::io;

/// Where tracefs may be mounted (under the host root).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const EVENT_DIR: &str = "events/sched/sched_process_exec";

/// Data pages per CPU ring without the stack copy (64 KiB with 4 KiB pages): a few hundred
/// records, far more than arrive between two drains (the reader drains every batch, at least
/// every 20 ms or so).
const DATA_PAGES: usize = 16;

/// Data pages per CPU ring with the stack copy (512 KiB with 4 KiB pages): about 60 records of
/// 8 KiB, three times what a 2,000 execs/s storm on two CPUs writes between two drains.
const DATA_PAGES_WITH_STACK: usize = 128;

/// Bytes of the new program's stack copied per exec (from the stack pointer up): argc, the
/// argv and envp pointer arrays and the auxiliary vector take a few hundred bytes, then comes
/// a random gap (stack randomization: up to 8 KiB on x86_64, less on ARM) and the argument
/// strings. The kernel stops the copy at the first page nobody touched, so a gap that spans a
/// whole page hides the strings whatever the size: measured on x86_64 (`cargo test --lib
/// share_of_execs -- --ignored --nocapture`), 8 KiB gives the arguments of 74 % of execs, 16
/// KiB the same, 4 KiB 39 %.
pub const STACK_BYTES: u32 = 8192;

/// The stack pointer's number in the kernel's `perf_regs.h` for this architecture, or several
/// masks to try in order (a 32-bit ARM agent may run on a 64-bit kernel, whose stack pointer of
/// 64-bit programs is register 31 and of 32-bit programs register 13).
fn stack_pointer_masks() -> &'static [u64] {
    if cfg!(target_arch = "x86_64") {
        &[1 << 7]
    } else if cfg!(target_arch = "aarch64") {
        &[1 << 31]
    } else if cfg!(target_arch = "arm") {
        &[(1 << 13) | (1 << 31), 1 << 13]
    } else {
        &[]
    }
}

/// Recent execs remembered after a drain: enough for the execs of the batches in flight.
const REMEMBERED: usize = 256;

/// Longest file name kept (the kernel's own limit for a path is 4096).
const MAX_NAME: usize = 4096;

/// Where the fields of a `sched_process_exec` record are, from the tracepoint's `format` file
/// (offsets differ between kernel versions, so they are read rather than assumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Offset of the `__data_loc char[] filename` word (low 16 bits: offset, high: length).
    filename: usize,
    /// Offset of `pid_t pid` (the pid after the exec, as the process connector reports it).
    pid: usize,
}

impl Format {
    /// Parses a tracepoint `format` file; `None` when a field is missing or malformed.
    pub fn parse(text: &str) -> Option<Format> {
        let mut filename = None;
        let mut pid = None;
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d.trim());
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.trim().parse::<usize>().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.trim().parse::<usize>().ok();
                }
            }
            let (Some(decl), Some(offset), Some(4)) = (decl, offset, size) else {
                continue;
            };
            match decl {
                "__data_loc char[] filename" => filename = Some(offset),
                "pid_t pid" => pid = Some(offset),
                _ => {}
            }
        }
        Some(Format {
            filename: filename?,
            pid: pid?,
        })
    }

    /// Pid and file name of one raw record; `None` when the record is malformed.
    pub fn read<'a>(&self, raw: &'a [u8]) -> Option<(u32, &'a [u8])> {
        let pid = u32_at(raw, self.pid)?;
        let loc = u32_at(raw, self.filename)?;
        let name = bytes_at(raw, (loc & 0xffff) as usize, (loc >> 16) as usize)?;
        // The length counts the terminating NUL.
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some((pid, &name[..end]))
    }
}

/// One exec remembered from the ring (buffers reused from slot to slot).
#[derive(Debug, Default)]
struct Exec {
    pid: u32,
    /// When the tracepoint fired (`CLOCK_MONOTONIC` ns); 0 without the clock.
    time: u64,
    /// The task's cgroup id at the exec; 0 when not sampled (see [`ExecTrace::cgroups`]).
    cgroup: u64,
    name: Vec<u8>,
    /// The NUL-separated arguments parsed from the stack copy ([`argv_from_stack`]): for every
    /// exec when samples are matched by time ([`ExecTrace::take`]), else only for an exec
    /// /proc missed; `None` otherwise. Parsed at once rather than keeping the 8 KiB copy, so
    /// the table holds command lines, not stacks.
    args: Option<Vec<u8>>,
    /// Whether `args` holds every argument (none cut off by the end of the copy).
    complete: bool,
    /// Already matched to its process event by [`ExecTrace::take`].
    taken: bool,
}

/// What the exec tracepoint says about one exec, matched to its process event by time
/// ([`ExecTrace::take`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The file name the exec gave.
    pub name: String,
    /// The arguments joined with spaces, as /proc's command line is.
    pub command_line: Option<String>,
    /// Whether `command_line` holds every argument; if so /proc need not be read for it.
    pub complete: bool,
    /// The cgroup id the exec ran in, where cgroups are sampled.
    pub cgroup: Option<u64>,
    /// The same pid exec'd again since: /proc shows that later program, not this one.
    pub superseded: bool,
}

/// Longest delay accepted between an exec's sample and its process event (the two come from
/// the same task, microseconds apart unless it is preempted in between): an older sample of the
/// same pid belongs to an earlier process whose event never came.
const MATCH_WINDOW_NS: u64 = 1_000_000_000;

/// The `sched_process_exec` tracepoint of the host, per CPU.
pub struct ExecTrace {
    format: Format,
    rings: Vec<Ring>,
    /// What the kernel accepted to add to each sample (stack, clock, cgroup).
    sampling: Sampling,
    /// How the host's cgroups are laid out, as far as the sampled cgroup ids are concerned.
    cgroup_layout: CgroupLayout,
    /// The latest execs seen, oldest overwritten first.
    recent: Vec<Exec>,
    next: usize,
    raw: Vec<u8>,
}

/// The tracepoint's id and record format, from tracefs under the host root, or else from a
/// tracefs mounted for the moment ([`crate::kernel::fs::with_private_tracefs`]): without it a
/// host that has not mounted tracefs (no systemd, a minimal image) loses the file names and
/// arguments of the execs /proc misses (0.1 % of a 2,000 execs/s storm here).
fn tracepoint(host: &HostRoot) -> io::Result<(u64, Format)> {
    if let Some(dir) = TRACEFS
        .iter()
        .map(|t| format!("{t}/{EVENT_DIR}"))
        .find(|d| host.metadata(format!("{d}/id")).is_ok())
    {
        let id = host.read_to_string(format!("{dir}/id"))?;
        let format = host.read_to_string(format!("{dir}/format"))?;
        return parse_tracepoint(&id, &format, &host.path(&dir).display().to_string());
    }
    let mounted = crate::kernel::fs::with_private_tracefs(|root| {
        let dir = root.join(EVENT_DIR);
        let id = std::fs::read_to_string(dir.join("id"))?;
        let format = std::fs::read_to_string(dir.join("format"))?;
        parse_tracepoint(&id, &format, &format!("tracefs/{EVENT_DIR}"))
    });
    match mounted {
        Ok(found) => {
            if found.is_ok() {
                tracing::debug!(
                    "tracefs is not mounted on the host: read the exec tracepoint from a mount of its own"
                );
            }
            found
        }
        Err(e) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no {EVENT_DIR} under {} (tracefs not mounted), and mounting tracefs failed: {e}",
                host.path(TRACEFS[0]).display()
            ),
        )),
    }
}

fn parse_tracepoint(id: &str, format: &str, dir: &str) -> io::Result<(u64, Format)> {
    let invalid = |what: &str, file: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} in {dir}/{file}"),
        )
    };
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| invalid("no tracepoint id", "id"))?;
    let format =
        Format::parse(format).ok_or_else(|| invalid("no filename and pid fields", "format"))?;
    Ok((id, format))
}

impl ExecTrace {
    /// Opens the tracepoint on every CPU. Fails when tracefs is neither mounted under the host
    /// root nor can be mounted for a moment ([`tracepoint`]), the tracepoint is missing, or
    /// `perf_event_open` is refused (no privilege, seccomp).
    pub fn open(host: &HostRoot) -> io::Result<ExecTrace> {
        let (id, format) = tracepoint(host)?;
        let cgroup_layout = cgroup_layout(host);
        let cgroups = cgroup_layout != CgroupLayout::PerfEventOnV1;
        // With the stack copy first (each candidate register mask), else file names only; each
        // with the clock and cgroup, else the clock, else neither (older kernels).
        let stacks = stack_pointer_masks()
            .iter()
            .map(|&regs| {
                let stack = UserStack {
                    regs,
                    size: STACK_BYTES,
                };
                (Some(stack), DATA_PAGES_WITH_STACK)
            })
            .chain([(None, DATA_PAGES)]);
        let mut first_error = None;
        for (stack, pages) in stacks {
            for (clock, cgroup) in [(true, cgroups), (true, false), (false, false)] {
                let sampling = Sampling {
                    stack,
                    clock,
                    cgroup,
                };
                match open_rings(id, pages, sampling) {
                    Ok(rings) => {
                        return Ok(ExecTrace {
                            format,
                            rings,
                            sampling,
                            cgroup_layout,
                            recent: (0..REMEMBERED).map(|_| Exec::default()).collect(),
                            next: 0,
                            raw: Vec::with_capacity(512),
                        });
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        Err(first_error.unwrap_or_else(|| io::Error::other("no CPU")))
    }

    /// Whether execs carry their arguments (the kernel accepted the stack copy).
    pub fn has_arguments(&self) -> bool {
        self.sampling.stack.is_some()
    }

    /// Whether samples carry the time, so each can be matched to its process event
    /// ([`ExecTrace::take`]) and the reader drains the rings before it reads /proc.
    pub fn timed(&self) -> bool {
        self.sampling.clock
    }

    /// Whether samples carry the exec's cgroup id (Linux 5.7+, the perf_event controller in the
    /// cgroup v2 hierarchy), and whether that alone makes them tell containers apart
    /// (`Some(true)`: cgroup v2 only), or a hybrid host must show it first (`Some(false)`: see
    /// [`crate::host::procfs::Reader::v2_named_containers`]).
    pub fn cgroups(&self) -> Option<bool> {
        self.sampling
            .cgroup
            .then_some(self.cgroup_layout == CgroupLayout::Unified)
    }

    /// Copies every record written since the last drain into the table of recent execs, with
    /// the stack copy only for the pids `needs_arguments` names (the execs /proc missed, and
    /// those whose process event has not come yet), so the common exec costs the reader a few
    /// hundred bytes, not 8 KiB. Timed samples ([`ExecTrace::timed`]) have their arguments
    /// parsed always: the reader takes the command line from them instead of /proc. Returns
    /// how many records the kernel could not write since then because a ring was full.
    pub fn drain(&mut self, needs_arguments: impl Fn(u32) -> bool) -> u64 {
        let time_bytes = if self.sampling.clock { 8 } else { 0 };
        let mut lost = 0;
        for i in 0..self.rings.len() {
            let ring = &self.rings[i];
            let (mut tail, head) = ring.bounds();
            while tail < head {
                let (kind, size) = ring.header(tail);
                if size < 8 || tail + size as u64 > head {
                    // Cannot happen with a well-formed ring; skip what is there.
                    tail = head;
                    break;
                }
                match kind {
                    PERF_RECORD_SAMPLE => {
                        let body = size as usize - 8;
                        // The time first (when asked), then the cgroup id last (when asked).
                        let mut time = 0;
                        if time_bytes > 0 {
                            ring.copy(tail + 8, 8.min(body), &mut self.raw);
                            time = u64_at(&self.raw, 0).unwrap_or(0);
                        }
                        let mut cgroup = 0;
                        if self.sampling.cgroup && body >= 8 {
                            ring.copy(tail + size as u64 - 8, 8, &mut self.raw);
                            cgroup = u64_at(&self.raw, 0).unwrap_or(0);
                        }
                        // The raw part next (its size, then the tracepoint's record).
                        let at = tail + 8 + time_bytes;
                        let body = body.saturating_sub(time_bytes as usize);
                        ring.copy(at, 4.min(body), &mut self.raw);
                        let raw_len = u32_at(&self.raw, 0).map_or(0, |n| n as usize);
                        ring.copy(at, (4 + raw_len).min(body), &mut self.raw);
                        let mut sample = read_sample(&self.format, &self.raw, None);
                        let wanted = self.sampling.stack.is_some()
                            && sample
                                .as_ref()
                                .is_some_and(|s| time > 0 || needs_arguments(s.pid));
                        if wanted {
                            // Only then the stack copy is read, and the record parsed again
                            // with it; a record whose arguments /proc gave is parsed once.
                            ring.copy(at, body, &mut self.raw);
                            sample = read_sample(&self.format, &self.raw, self.sampling.stack);
                        }
                        if let Some(sample) = sample {
                            let slot = &mut self.recent[self.next];
                            slot.pid = sample.pid;
                            slot.time = time;
                            slot.cgroup = cgroup;
                            slot.taken = false;
                            slot.name.clear();
                            let name = sample.name;
                            slot.name
                                .extend_from_slice(&name[..name.len().min(MAX_NAME)]);
                            let argv = (!sample.stack.is_empty())
                                .then(|| argv_from_stack(sample.stack, sample.sp, sample.word))
                                .flatten();
                            slot.complete = argv.as_ref().is_some_and(|a| a.1);
                            slot.args = argv.map(|a| a.0);
                            self.next = (self.next + 1) % REMEMBERED;
                        }
                    }
                    PERF_RECORD_LOST => {
                        ring.copy(tail + 8, 16, &mut self.raw);
                        // struct { u64 id; u64 lost; }
                        lost += u64_at(&self.raw, 8).unwrap_or(0);
                    }
                    _ => {}
                }
                tail += size as u64;
            }
            ring.set_tail(tail);
        }
        lost
    }

    /// The `back`-th latest exec of `pid` (0: the latest) after [`ExecTrace::drain`]: a pid
    /// that exec'd twice in one batch (`sh -c 'rm …'` execs `rm` in the shell's process) has
    /// two records, the earlier exec the older one.
    fn exec_of(&self, pid: u32, back: usize) -> Option<&Exec> {
        (0..REMEMBERED)
            .map(|k| &self.recent[(self.next + REMEMBERED - 1 - k) % REMEMBERED])
            .filter(|e| e.pid == pid && !e.name.is_empty())
            .nth(back)
    }

    /// The sample of the exec whose process event the kernel sent at `event_ns`: the latest of
    /// `pid`'s samples taken before it (the tracepoint fires in the exec'ing task just before
    /// it sends the event), unless that one was matched already (this exec's own sample was
    /// lost) or is older than [`MATCH_WINDOW_NS`]. `None` without the clock. Unlike
    /// [`ExecTrace::name_of`], a sample of a later exec of the same pid, drained before its
    /// event came, is never taken for this one; it marks this one `superseded`.
    pub fn take(&mut self, pid: u32, event_ns: u64) -> Option<Matched> {
        if !self.sampling.clock || event_ns == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        let mut superseded = false;
        for (i, e) in self.recent.iter().enumerate() {
            if e.pid != pid || e.name.is_empty() || e.time == 0 {
                continue;
            }
            if e.time > event_ns {
                superseded = true;
            } else if best.is_none_or(|b| self.recent[b].time < e.time) {
                best = Some(i);
            }
        }
        let e = &mut self.recent[best?];
        if e.taken || event_ns - e.time > MATCH_WINDOW_NS {
            return None;
        }
        e.taken = true;
        Some(Matched {
            name: String::from_utf8_lossy(&e.name).into_owned(),
            command_line: e
                .args
                .as_deref()
                .and_then(crate::host::procfs::parse_cmdline),
            complete: e.complete,
            cgroup: (e.cgroup != 0).then_some(e.cgroup),
            superseded,
        })
    }

    /// The times of `pid`'s samples in the table, oldest first.
    #[cfg(test)]
    pub fn sample_times(&self, pid: u32) -> Vec<u64> {
        let mut times: Vec<u64> = self
            .recent
            .iter()
            .filter(|e| e.pid == pid && !e.name.is_empty())
            .map(|e| e.time)
            .collect();
        times.sort_unstable();
        times
    }

    /// The file name the `back`-th latest exec of `pid` gave.
    pub fn name_of(&self, pid: u32, back: usize) -> Option<String> {
        self.exec_of(pid, back)
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
    }

    /// The arguments of the `back`-th latest exec of `pid`, joined with spaces as /proc's
    /// command line is; `None` without a stack copy or when it holds no argument.
    pub fn command_line_of(&self, pid: u32, back: usize) -> Option<String> {
        let argv = self.exec_of(pid, back)?.args.as_deref()?;
        crate::host::procfs::parse_cmdline(argv)
    }
}

/// One sample of the exec tracepoint, borrowed from the copied record.
struct Sample<'a> {
    pid: u32,
    name: &'a [u8],
    stack: &'a [u8],
    sp: u64,
    word: usize,
}

/// Reads a `PERF_RECORD_SAMPLE` body: the raw tracepoint record and, when `stack` was asked
/// for, the user registers and the stack copy (layout at [`UserStack`]). `None` when the raw
/// record is malformed; a malformed stack part only loses the arguments.
fn read_sample<'a>(
    format: &Format,
    body: &'a [u8],
    stack: Option<UserStack>,
) -> Option<Sample<'a>> {
    // PERF_SAMPLE_RAW: a u32 size, then the tracepoint's record (padded to 8 bytes in all).
    let raw_len = u32_at(body, 0)? as usize;
    let raw = bytes_at(body, 4, raw_len)?;
    let (pid, name) = format.read(raw)?;
    let mut sample = Sample {
        pid,
        name,
        stack: &[],
        sp: 0,
        word: 8,
    };
    let Some(asked) = stack else {
        return Some(sample);
    };
    let mut at = 4usize.checked_add(raw_len)?;
    let Some(abi) = u64_at(body, at) else {
        return Some(sample);
    };
    at += 8;
    let regs = asked.regs.count_ones() as usize;
    let mut values = [0u64; 2];
    if abi != 0 {
        for (i, v) in values.iter_mut().enumerate().take(regs.min(2)) {
            *v = u64_at(body, at + 8 * i).unwrap_or(0);
        }
        at += 8 * regs;
    }
    let Some(size) = u64_at(body, at) else {
        return Some(sample);
    };
    at += 8;
    let size = size as usize;
    if abi == 0 || size == 0 {
        return Some(sample);
    }
    let Some(copied) = bytes_at(body, at, size) else {
        return Some(sample);
    };
    // The bytes the kernel could read (the copy stops at the end of the stack mapping).
    let dynamic = at
        .checked_add(size)
        .and_then(|end| u64_at(body, end))
        .map_or(0, |d| d as usize);
    // abi 1: a 32-bit program (4-byte pointers); with two registers asked (ARM: 13 and 31),
    // the first is a 32-bit program's stack pointer, the second a 64-bit program's.
    let (word, sp) = match (abi, regs) {
        (1, _) => (4, values[0] & 0xffff_ffff),
        (_, 2) => (8, values[1]),
        _ => (8, values[0]),
    };
    sample.stack = &copied[..dynamic.min(copied.len())];
    sample.sp = sp;
    sample.word = word;
    Some(sample)
}

/// Most arguments taken from one stack copy (a bound for a hostile argc).
const MAX_ARGS: u64 = 4096;

/// The NUL-separated arguments from a new program's stack copied at `sp`: argc, then argc
/// pointers (`word` bytes each) into the strings above, and whether all argc were read whole.
/// Stops at the first argument outside the copy (the copy is cut there) or without its NUL
/// (kept up to the end of the copy). `None` when argc or the first pointer is unusable.
pub fn argv_from_stack(stack: &[u8], sp: u64, word: usize) -> Option<(Vec<u8>, bool)> {
    let read_word = |at: usize| -> Option<u64> {
        match word {
            4 => u32_at(stack, at).map(u64::from),
            _ => u64_at(stack, at),
        }
    };
    let argc = read_word(0)?;
    if argc == 0 || argc > MAX_ARGS {
        return None;
    }
    let mut out = Vec::new();
    let mut whole = 0;
    for i in 0..argc as usize {
        let Some(ptr) = read_word((i + 1) * word) else {
            break;
        };
        let Some(off) = ptr.checked_sub(sp).and_then(|o| usize::try_from(o).ok()) else {
            break;
        };
        let Some(rest) = stack.get(off..).filter(|r| !r.is_empty()) else {
            break;
        };
        let end = rest.iter().position(|&b| b == 0);
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.push(0);
        if end.is_none() {
            break;
        }
        whole += 1;
    }
    (!out.is_empty()).then_some((out, whole == argc))
}

/// Where the perf_event controller is, whose cgroup a sample's cgroup id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v2 only (init's `/proc/1/cgroup` has just the `0::` line): every runtime puts a
    /// container in a cgroup of its own there.
    Unified,
    /// v1 hierarchies beside v2, perf_event not among them, so it is in v2; whether runtimes
    /// give containers v2 cgroups of their own is for the host to show.
    Hybrid,
    /// perf_event has a v1 hierarchy (or init's cgroups cannot be read): ids are not sampled.
    PerfEventOnV1,
}

/// The host's [`CgroupLayout`], from init's `/proc/1/cgroup` (`hierarchy:controllers:path`).
fn cgroup_layout(host: &HostRoot) -> CgroupLayout {
    let Ok(text) = host.read_to_string("/proc/1/cgroup") else {
        return CgroupLayout::PerfEventOnV1;
    };
    cgroup_layout_of(&text)
}

pub fn cgroup_layout_of(text: &str) -> CgroupLayout {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let v2 = lines.iter().any(|l| l.starts_with("0::"));
    let perf_event_v1 = lines.iter().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "perf_event"))
    });
    match (v2, perf_event_v1, lines.len()) {
        (true, false, 1) => CgroupLayout::Unified,
        (true, false, _) => CgroupLayout::Hybrid,
        _ => CgroupLayout::PerfEventOnV1,
    }
}

/// One ring per CPU for tracepoint `id`; an offline CPU (`ENODEV`) has nothing to report.
fn open_rings(id: u64, pages: usize, sampling: Sampling) -> io::Result<Vec<Ring>> {
    let mut rings = Vec::new();
    let mut first_error = None;
    for cpu in 0..configured_cpus() {
        match Ring::open_tracepoint(id, cpu, pages, sampling) {
            Ok(r) => rings.push(r),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                first_error.get_or_insert(e);
            }
            // Refused for this CPU (locked-memory limit, ...): a ring on some CPUs only would
            // miss the execs of the others.
            Err(e) => return Err(e),
        }
    }
    if rings.is_empty() {
        return Err(first_error.unwrap_or_else(|| io::Error::other("no CPU")));
    }
    Ok(rings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::monotonic_ns;

    /// The format file of kernel 6.x.
    const FORMAT: &str = "name: sched_process_exec
ID: 312
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid
";

    fn record(pid: u32, name: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 20];
        let loc = 20u32 | ((name.len() as u32 + 1) << 16);
        r[8..12].copy_from_slice(&loc.to_ne_bytes());
        r[12..16].copy_from_slice(&pid.to_ne_bytes());
        r.extend_from_slice(name);
        r.push(0);
        r
    }

    #[test]
    fn format_and_records_parse() {
        let f = Format::parse(FORMAT).unwrap();
        assert_eq!(
            f,
            Format {
                filename: 8,
                pid: 12
            }
        );
        let r = record(4321, b"/usr/bin/true");
        assert_eq!(f.read(&r), Some((4321, &b"/usr/bin/true"[..])));
    }

    #[test]
    fn malformed_formats_and_records_are_refused() {
        assert_eq!(Format::parse(""), None);
        assert_eq!(
            Format::parse(&FORMAT.replace("pid_t pid;", "pid_t pidx;")),
            None
        );
        assert_eq!(
            Format::parse(&FORMAT.replace("offset:8;\tsize:4", "offset:x;\tsize:4")),
            None
        );
        let f = Format::parse(FORMAT).unwrap();
        let r = record(1, b"/bin/sh");
        // Truncated anywhere: no panic, no answer.
        for cut in 0..r.len() - 1 {
            let got = f.read(&r[..cut]);
            assert!(got.is_none() || cut >= 20, "cut {cut}: {got:?}");
        }
        // Offsets at the end of the address space (a hostile format file): no overflow.
        let huge = FORMAT.replace("offset:12;", &format!("offset:{};", usize::MAX - 1));
        assert_eq!(Format::parse(&huge).unwrap().read(&r), None);
        // A location pointing outside the record.
        let mut bad = r.clone();
        bad[8..12].copy_from_slice(&(0xffffu32 | (9 << 16)).to_ne_bytes());
        assert_eq!(f.read(&bad), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_records_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = Format::parse(FORMAT).unwrap().read(&raw);
        }
    }

    /// Real kernel: a host root without tracefs (a minimal image, or a host that never mounted
    /// it) still gets the tracepoint, through a mount of the agent's own that is gone after.
    #[test]
    fn a_host_without_tracefs_gets_the_tracepoint_from_a_mount_of_its_own() {
        let host = tempfile::tempdir().unwrap();
        fs::create_dir_all(host.path().join("sys/kernel/tracing")).unwrap();
        let trace = ExecTrace::open(&HostRoot::new(host.path()))
            .unwrap_or_else(|e| panic!("root on a kernel with tracefs: {e}"));
        assert!(!trace.rings.is_empty());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains("edgeguard-tracefs-"),
            "the private mount was left behind:\n{mounts}"
        );
        let left: Vec<_> = fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("edgeguard-tracefs-{}-", std::process::id()))
            })
            .collect();
        assert!(left.is_empty(), "directories left behind: {left:?}");
    }

    /// Real kernel: a process that is reaped at once still has its exec's file name in a ring.
    #[test]
    fn a_reaped_exec_is_in_the_ring() {
        let mut trace = match ExecTrace::open(&HostRoot::new("/")) {
            Ok(t) => t,
            Err(e) => panic!("the exec tracepoint should open as root with tracefs: {e}"),
        };
        assert!(
            trace.has_arguments() || stack_pointer_masks().is_empty(),
            "the kernel refused the stack copy"
        );
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("egtrace-true");
        fs::copy("/bin/true", &exe).unwrap();
        let before = monotonic_ns();
        let pids: Vec<u32> = (0..20)
            .map(|i| {
                let mut c = std::process::Command::new(&exe)
                    .args(["-x", &format!("arg {i}"), "--last"])
                    .env("EGTRACE_BIG", "e".repeat(1000))
                    .spawn()
                    .unwrap();
                let pid = c.id();
                c.wait().unwrap();
                pid
            })
            .collect();
        let after = monotonic_ns();
        assert_eq!(trace.drain(|_| true), 0, "records lost");
        let mut with_arguments = 0;
        for (i, pid) in pids.into_iter().enumerate() {
            if trace.timed() {
                // On the process connector's clock, so samples match their events.
                let times = trace.sample_times(pid);
                assert!(
                    times.len() == 1 && (before..=after).contains(&times[0]),
                    "sample of pid {pid} at {times:?}, not within {before}..={after}"
                );
            }
            assert_eq!(
                trace.name_of(pid, 0).as_deref(),
                Some(exe.to_str().unwrap()),
                "pid {pid}"
            );
            // Stack randomization hides the strings of about one exec in four (see
            // STACK_BYTES); what is read must be exactly the arguments.
            if let Some(line) = trace.command_line_of(pid, 0) {
                assert_eq!(line, format!("{} -x arg {i} --last", exe.display()));
                with_arguments += 1;
            }
        }
        if trace.has_arguments() {
            // 20 misses in a row at a 26 % miss rate: about 1e-12.
            assert!(with_arguments > 0, "no exec had its arguments");
        }
    }

    #[test]
    #[ignore]
    fn share_of_execs_with_arguments() {
        let mut trace = ExecTrace::open(&HostRoot::new("/")).unwrap();
        let mut got = 0;
        let n = 300;
        for i in 0..n {
            let mut c = std::process::Command::new("/bin/true")
                .arg(format!("a{i}"))
                .spawn()
                .unwrap();
            let pid = c.id();
            c.wait().unwrap();
            trace.drain(|p| p == pid);
            if trace.command_line_of(pid, 0).is_some() {
                got += 1;
            }
        }
        eprintln!("SHARE {got}/{n}");
    }

    /// A new program's stack as the kernel builds it: argc, argv pointers, NULL, envp, NULL,
    /// an auxiliary vector, then the strings.
    fn stack(word: usize, sp: u64, args: &[&[u8]], gap: usize) -> Vec<u8> {
        let header = word * (args.len() + 4) + gap;
        let mut strings = Vec::new();
        let mut ptrs = Vec::new();
        for a in args {
            ptrs.push(sp + (header + strings.len()) as u64);
            strings.extend_from_slice(a);
            strings.push(0);
        }
        let mut out = Vec::new();
        let put = |v: u64, out: &mut Vec<u8>| match word {
            4 => out.extend_from_slice(&(v as u32).to_ne_bytes()),
            _ => out.extend_from_slice(&v.to_ne_bytes()),
        };
        put(args.len() as u64, &mut out);
        for p in ptrs {
            put(p, &mut out);
        }
        put(0, &mut out);
        out.resize(header, 0xaa);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn arguments_are_read_from_a_stack_copy() {
        let args: [&[u8]; 3] = [b"rm", b"-f", b"/root/.bash_history"];
        for word in [4, 8] {
            let sp = 0x7ffc_0000_1000 & if word == 4 { 0xffff_ffff } else { u64::MAX };
            let s = stack(word, sp, &args, 200);
            let argv = argv_from_stack(&s, sp, word).unwrap();
            assert_eq!(
                argv,
                (b"rm\0-f\0/root/.bash_history\0".to_vec(), true),
                "word {word}"
            );
            // Cut inside the last argument: kept up to the cut, and said to be cut.
            let cut = &s[..s.len() - 8];
            assert_eq!(
                argv_from_stack(cut, sp, word).unwrap(),
                (b"rm\0-f\0/root/.bash_\0".to_vec(), false)
            );
            // Cut before the strings: nothing.
            assert_eq!(argv_from_stack(&s[..word * 3], sp, word), None);
        }
    }

    #[test]
    fn hostile_stacks_give_nothing_or_what_is_there() {
        let sp = 0x1000u64;
        // argc 0, argc absurd, pointers below the stack pointer, empty copy.
        assert_eq!(argv_from_stack(&0u64.to_ne_bytes(), sp, 8), None);
        assert_eq!(argv_from_stack(&u64::MAX.to_ne_bytes(), sp, 8), None);
        let mut s = 2u64.to_ne_bytes().to_vec();
        s.extend_from_slice(&0x10u64.to_ne_bytes());
        s.extend_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(argv_from_stack(&s, sp, 8), None);
        assert_eq!(argv_from_stack(&[], sp, 8), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_stacks_never_panic(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            sp in proptest::prelude::any::<u64>(),
            word in proptest::sample::select(vec![4usize, 8]),
        ) {
            let _ = argv_from_stack(&raw, sp, word);
        }

        #[test]
        fn arbitrary_samples_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let f = Format::parse(FORMAT).unwrap();
            for regs in [1u64 << 7, (1 << 13) | (1 << 31)] {
                let _ = read_sample(&f, &raw, Some(UserStack { regs, size: STACK_BYTES }));
            }
            let _ = read_sample(&f, &raw, None);
        }
    }

    #[test]
    fn the_table_keeps_the_latest_execs_only() {
        let mut trace = ExecTrace {
            format: Format::parse(FORMAT).unwrap(),
            rings: Vec::new(),
            sampling: Sampling::default(),
            cgroup_layout: CgroupLayout::PerfEventOnV1,
            recent: (0..REMEMBERED).map(|_| Exec::default()).collect(),
            next: 0,
            raw: Vec::new(),
        };
        for pid in 1..=(REMEMBERED as u32 + 10) {
            let slot = &mut trace.recent[trace.next];
            slot.pid = pid;
            slot.name = format!("/bin/p{pid}").into_bytes();
            trace.next = (trace.next + 1) % REMEMBERED;
        }
        assert_eq!(trace.name_of(5, 0), None);
        assert_eq!(trace.name_of(11, 0).as_deref(), Some("/bin/p11"));
        assert_eq!(
            trace.name_of(REMEMBERED as u32 + 10, 0).as_deref(),
            Some(&*format!("/bin/p{}", REMEMBERED + 10))
        );
        // A pid that exec'd twice: the latest first, then the one before.
        let slot = &mut trace.recent[trace.next];
        slot.pid = 12;
        slot.name = b"/usr/bin/rm".to_vec();
        trace.next = (trace.next + 1) % REMEMBERED;
        assert_eq!(trace.name_of(12, 0).as_deref(), Some("/usr/bin/rm"));
        assert_eq!(trace.name_of(12, 1).as_deref(), Some("/bin/p12"));
        assert_eq!(trace.name_of(12, 2), None);
    }

    #[test]
    fn cgroup_layouts() {
        assert_eq!(cgroup_layout_of("0::/init.scope\n"), CgroupLayout::Unified);
        // This development VM: v1 controllers, perf_event left in v2.
        let hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/\n1:cpu:/\n0::/\n";
        assert_eq!(cgroup_layout_of(hybrid), CgroupLayout::Hybrid);
        let v1 = "3:perf_event:/\n2:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n";
        assert_eq!(cgroup_layout_of(v1), CgroupLayout::PerfEventOnV1);
        assert_eq!(
            cgroup_layout_of("2:cpu:/\n1:net_cls,perf_event:/\n"),
            CgroupLayout::PerfEventOnV1
        );
        assert_eq!(cgroup_layout_of(""), CgroupLayout::PerfEventOnV1);
    }

    #[test]
    fn a_sample_is_matched_to_its_own_event_by_time() {
        let mut trace = ExecTrace {
            format: Format::parse(FORMAT).unwrap(),
            rings: Vec::new(),
            sampling: Sampling {
                clock: true,
                ..Sampling::default()
            },
            cgroup_layout: CgroupLayout::PerfEventOnV1,
            recent: (0..REMEMBERED).map(|_| Exec::default()).collect(),
            next: 0,
            raw: Vec::new(),
        };
        let put = |trace: &mut ExecTrace, pid, time, name: &str, args: &[u8], complete, cgroup| {
            let slot = &mut trace.recent[trace.next];
            *slot = Exec {
                pid,
                time,
                cgroup,
                name: name.as_bytes().to_vec(),
                args: (!args.is_empty()).then(|| args.to_vec()),
                complete,
                taken: false,
            };
            trace.next = (trace.next + 1) % REMEMBERED;
        };
        // A shell that exec'd `rm` in the same process; both samples drained before either
        // event came.
        put(
            &mut trace,
            7,
            100,
            "/bin/sh",
            b"sh\0-c\0exec rm x\0",
            true,
            42,
        );
        put(&mut trace, 7, 200, "/usr/bin/rm", b"rm\0x\0", true, 42);
        let shell = trace.take(7, 150).unwrap();
        assert_eq!(shell.name, "/bin/sh");
        assert_eq!(shell.command_line.as_deref(), Some("sh -c exec rm x"));
        assert!(shell.complete && shell.superseded);
        assert_eq!(shell.cgroup, Some(42));
        let rm = trace.take(7, 250).unwrap();
        assert_eq!(rm.name, "/usr/bin/rm");
        assert!(!rm.superseded);
        // Each sample is taken once: an event whose own sample was lost gets none.
        assert_eq!(trace.take(7, 300), None);
        // Only samples taken before the event: one after it is a later exec's.
        put(&mut trace, 8, 5_000, "/bin/ls", b"ls\0", true, 0);
        assert_eq!(trace.take(8, 4_000), None);
        // Arguments cut by the end of the copy are given, and said to be incomplete; no cgroup
        // sampled is no cgroup.
        let ls = trace.take(8, 5_001).unwrap();
        assert!(ls.complete);
        assert_eq!(ls.cgroup, None);
        put(
            &mut trace,
            9,
            10_000,
            "/bin/cat",
            b"cat\0/etc/pa\0",
            false,
            0,
        );
        let cat = trace.take(9, 10_010).unwrap();
        assert_eq!(
            (cat.command_line.as_deref(), cat.complete),
            (Some("cat /etc/pa"), false)
        );
        // A sample older than the window belongs to an earlier process of a recycled pid.
        put(&mut trace, 10, 1_000, "/bin/old", b"old\0", true, 0);
        assert_eq!(trace.take(10, 1_000 + MATCH_WINDOW_NS + 1), None);
        // Without the clock (or the event's time), nothing is matched by time.
        put(&mut trace, 11, 1_000, "/bin/new", b"new\0", true, 0);
        assert_eq!(trace.take(11, 0), None);
        trace.sampling.clock = false;
        assert_eq!(trace.take(11, 2_000), None);
    }
}
