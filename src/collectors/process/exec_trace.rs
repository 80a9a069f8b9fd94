//! File names of execs from the kernel's `sched:sched_process_exec` tracepoint, read through
//! one perf ring buffer per CPU (`perf_event_open`; no eBPF, so it works on armv7 kernels too).
//!
//! Why: the process connector only says *that* a pid exec'd; the executable and command line
//! come from /proc afterwards. A process that exits and is reaped before the reader gets there
//! (about 0.1 % of a 2,000 execs/s storm here) leaves nothing to read. The tracepoint records the
//! file name given to `execve` inside the exec itself, before the connector's message is sent,
//! so by the time the reader handles an exec its name is already in a ring. The reader asks
//! for it only when /proc came too late ([`ExecTrace::name_of`]).
//!
//! Cost: the kernel writes a record per exec (in the exec'ing task); the reader copies recent
//! records into a small table of reused buffers ([`ExecTrace::drain`]) once per batch, without
//! a system call. Needs root (`CAP_PERFMON` or `CAP_SYS_ADMIN`) and tracefs mounted on the
//! host; without them the collector works as before and says so once in the log.

use crate::host::HostRoot;
use crate::kernel::bytes::{bytes_at, u32_at, u64_at};
use crate::kernel::perf::{PERF_RECORD_LOST, PERF_RECORD_SAMPLE, Ring, configured_cpus};
#[cfg(test)]
use std::fs;
use std::io;

/// Where tracefs may be mounted (under the host root).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const EVENT_DIR: &str = "events/sched/sched_process_exec";

/// Data pages per CPU ring (64 KiB with 4 KiB pages): a few hundred records, far more than
/// arrive between two drains (the reader drains every batch, at least every 20 ms or so).
const DATA_PAGES: usize = 16;

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

/// The `sched_process_exec` tracepoint of the host, per CPU.
pub struct ExecTrace {
    format: Format,
    rings: Vec<Ring>,
    /// The latest execs seen, oldest overwritten first: (pid, file name) with reused buffers.
    recent: Vec<(u32, Vec<u8>)>,
    next: usize,
    raw: Vec<u8>,
}

impl ExecTrace {
    /// Opens the tracepoint on every CPU. Fails when tracefs is not mounted under the host root,
    /// the tracepoint is missing, or `perf_event_open` is refused (no privilege, seccomp).
    pub fn open(host: &HostRoot) -> io::Result<ExecTrace> {
        let dir = TRACEFS
            .iter()
            .map(|t| format!("{t}/{EVENT_DIR}"))
            .find(|d| host.metadata(format!("{d}/id")).is_ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no {EVENT_DIR} under {} (tracefs not mounted?)",
                        host.path(TRACEFS[0]).display()
                    ),
                )
            })?;
        let invalid = |what: &str, file: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} in {}", host.path(format!("{dir}/{file}")).display()),
            )
        };
        let id: u64 = host
            .read_to_string(format!("{dir}/id"))?
            .trim()
            .parse()
            .map_err(|_| invalid("no tracepoint id", "id"))?;
        let format = Format::parse(&host.read_to_string(format!("{dir}/format"))?)
            .ok_or_else(|| invalid("no filename and pid fields", "format"))?;
        let cpus = configured_cpus();
        let mut rings = Vec::new();
        let mut first_error = None;
        for cpu in 0..cpus {
            match Ring::open_tracepoint(id, cpu, DATA_PAGES) {
                Ok(r) => rings.push(r),
                // An offline CPU has nothing to report.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if rings.is_empty() {
            return Err(first_error.unwrap_or_else(|| io::Error::other("no CPU")));
        }
        Ok(ExecTrace {
            format,
            rings,
            recent: (0..REMEMBERED).map(|_| (0, Vec::new())).collect(),
            next: 0,
            raw: Vec::with_capacity(512),
        })
    }

    /// Copies every record written since the last drain into the table of recent execs.
    /// Returns how many records the kernel could not write since then because a ring was full.
    pub fn drain(&mut self) -> u64 {
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
                        ring.copy(tail + 8, size as usize - 8, &mut self.raw);
                        // PERF_SAMPLE_RAW: a u32 size, then the tracepoint's record.
                        let raw_len = u32_at(&self.raw, 0).map_or(0, |n| n as usize);
                        let raw = bytes_at(&self.raw, 4, raw_len).unwrap_or(&[]);
                        if let Some((pid, name)) = self.format.read(raw) {
                            let slot = &mut self.recent[self.next];
                            slot.0 = pid;
                            slot.1.clear();
                            slot.1.extend_from_slice(&name[..name.len().min(MAX_NAME)]);
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

    /// The file name the latest exec of `pid` gave (after [`ExecTrace::drain`]).
    pub fn name_of(&self, pid: u32) -> Option<String> {
        (0..REMEMBERED)
            .map(|k| &self.recent[(self.next + REMEMBERED - 1 - k) % REMEMBERED])
            .find(|(p, name)| *p == pid && !name.is_empty())
            .map(|(_, name)| String::from_utf8_lossy(name).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Real kernel: a process that is reaped at once still has its exec's file name in a ring.
    #[test]
    fn a_reaped_exec_is_in_the_ring() {
        let mut trace = match ExecTrace::open(&HostRoot::new("/")) {
            Ok(t) => t,
            Err(e) => panic!("the exec tracepoint should open as root with tracefs: {e}"),
        };
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("egtrace-true");
        fs::copy("/bin/true", &exe).unwrap();
        let pids: Vec<u32> = (0..20)
            .map(|_| {
                let mut c = std::process::Command::new(&exe).spawn().unwrap();
                let pid = c.id();
                c.wait().unwrap();
                pid
            })
            .collect();
        assert_eq!(trace.drain(), 0, "records lost");
        for pid in pids {
            assert_eq!(
                trace.name_of(pid).as_deref(),
                Some(exe.to_str().unwrap()),
                "pid {pid}"
            );
        }
    }

    #[test]
    fn the_table_keeps_the_latest_execs_only() {
        let mut trace = ExecTrace {
            format: Format::parse(FORMAT).unwrap(),
            rings: Vec::new(),
            recent: (0..REMEMBERED).map(|_| (0, Vec::new())).collect(),
            next: 0,
            raw: Vec::new(),
        };
        for pid in 1..=(REMEMBERED as u32 + 10) {
            let slot = &mut trace.recent[trace.next];
            *slot = (pid, format!("/bin/p{pid}").into_bytes());
            trace.next = (trace.next + 1) % REMEMBERED;
        }
        assert_eq!(trace.name_of(5), None);
        assert_eq!(trace.name_of(11).as_deref(), Some("/bin/p11"));
        assert_eq!(
            trace.name_of(REMEMBERED as u32 + 10).as_deref(),
            Some(&*format!("/bin/p{}", REMEMBERED + 10))
        );
    }
}
