//! Keeping resident memory close to what the agent actually uses (issue 6: idle RSS ≤ 6 MiB,
//! flat under load).
//!
//! Two things make a Rust process on glibc hold more than it uses, and a heap profile of the
//! 200-execs/s soak showed both (docs/benchmarks.md, "Memory footprint and RSS soak"):
//! - glibc's malloc gives memory back to the kernel only from the top of a heap; a burst that
//!   leaves one live allocation above freed ones keeps every freed page below it resident.
//!   [`release_free_memory`] (`malloc_trim(0)`, which also releases whole free pages inside the
//!   heap) after start-up and then every [`TRIM_INTERVAL`] keeps RSS at the live heap.
//! - Pages of the binary itself that only start-up touched (argument parsing, the first round of
//!   every periodic collector, TLS and database set-up) stay mapped: 4 MiB of the 6.3 MiB idle
//!   RSS measured before were file-backed. [`release_startup_pages`] asks the kernel to reclaim
//!   the binary's clean read-only pages after start-up, and again when code that ran once came
//!   back ([`ReleasePlan`]); code that runs again is read back from disk on its next use, which
//!   for the periodic collectors is hours away.
//! - Reading back must not bring the rest along: the kernel reads ahead around a fault (on
//!   Linux 6.16 and later, in code, to the end of the mapping whatever `MADV_RANDOM` says) and
//!   maps up to 64 KiB of cached neighbours. Left alone, the idle agent's first few dozen
//!   faults brought 3-4 MiB of code back within a second (7.2 MiB idle RSS at 60 s on 6.18).
//!   The release therefore splits the code into [`CODE_GRANULE`] mappings, so a fault reads and
//!   maps at most one granule, and drops the file's cached pages.
//!
//! Everything here is best effort: on another libc, an old kernel, or without the rights, it
//! does nothing.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after start the start-up pages are released: the first message goes out within
/// ~0.1 s and the first round of periodic collectors within a few seconds.
pub const STARTUP_SETTLE: Duration = Duration::from_secs(10);

/// The most of the executable one page fault brings back after the start-up release
/// ([`crate::kernel::sys::fault_singly`]). Idle RSS at 60 s, static amd64 build on Linux 6.18,
/// one run each with `benches/code_residency.py` (docs/benchmarks.md, "Idle RSS and the
/// executable's read-ahead"): no limit 7.2 MiB, 64 KiB 5.5 MiB, 16 KiB 4.4 MiB, 4 KiB 3.9 MiB.
/// 16 KiB is within the budget with room and splits the 7.4 MiB of code and constants into
/// ~475 mappings rather than ~1,900.
pub const CODE_GRANULE: usize = 16 * 1024;

/// How often freed heap memory is returned to the kernel. Under the 200-execs/s soak, trimming
/// once a minute left a saw-tooth of ~2 MiB (fragments piling up between trims); every 10 s
/// keeps it small. `malloc_trim` walks the free lists of a heap of a few MiB: well under a
/// millisecond.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Below this size glibc serves allocations from its heaps; above it, from their own mappings,
/// which go back to the kernel when freed. Setting it also stops glibc from raising it (up to
/// 32 MiB) each time such a block is freed, which would move the stdout sink's and the
/// message encoder's transient buffers (hundreds of KiB) into the heaps, where they fragment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Free memory at the top of a heap beyond this goes back to the kernel at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 128 * 1024;

/// glibc's malloc tunables for a small long-running agent. Call first thing in `main`, before
/// any thread starts.
///
/// Arenas: glibc gives every thread that allocates its own arena (up to 8 per core), and each
/// keeps its freed memory; two arenas (the runtime's, and one the collector threads share) keep
/// RSS lower at no measurable cost for an agent this size.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::kernel::sys::set_malloc_tunables(2, MMAP_THRESHOLD, TRIM_THRESHOLD);
}

/// Returns freed heap memory to the kernel (every arena, inside the heaps too).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::kernel::sys::malloc_trim();
}

/// How many times the start-up release is tried, [`RELEASE_RETRY`] apart, while it frees less
/// than half of the file-backed RSS. The kernel cannot drop a page that was written and not
/// yet written back: a binary written seconds before the agent started (an image pulled just
/// before its container started, a fresh copy) keeps all its pages until the kernel's
/// writeback, ~30 s later (measured: a fresh copy released nothing; after `sync`, 4.5 MiB).
pub const RELEASE_TRIES: u32 = 4;

/// Time between two tries of the start-up release.
pub const RELEASE_RETRY: Duration = Duration::from_secs(30);

/// File-backed RSS (KiB) before and after a start-up release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub before_kib: u64,
    pub after_kib: u64,
}

impl Released {
    /// At least half of the file-backed memory went away: the pages could be dropped, and
    /// whatever is resident now is what the agent uses.
    pub fn worked(&self) -> bool {
        self.after_kib * 2 <= self.before_kib
    }
}

/// Asks the kernel to reclaim the clean, read-only pages of the agent's own executable
/// (`MADV_PAGEOUT`, Linux 5.4+), so that a later fault brings back at most [`CODE_GRANULE`].
///
/// Only mappings of the executable that are not writable are touched. `MADV_PAGEOUT` never
/// changes what the process sees: clean file pages are dropped and read back on the next use;
/// pages that were written (relocated read-only data) are anonymous and stay, as there is no
/// swap to write them to. Without the rights to page out the file, the kernel skips its pages.
/// Calling it again is harmless: the mappings are already split.
pub fn release_startup_pages() -> Released {
    let before_kib = rss_file_kib();
    #[cfg(target_os = "linux")]
    if let (Ok(exe), Ok(maps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
    ) {
        for (start, end) in read_only_mappings_of(&maps, &exe.to_string_lossy()) {
            crate::kernel::sys::fault_singly(start, end, CODE_GRANULE);
            crate::kernel::sys::page_out(start, end);
        }
        // MADV_PAGEOUT drops only the pages this process maps; start-up's read-ahead cached
        // the rest of the file too, and fault-around would map it again.
        if let Ok(file) = std::fs::File::open("/proc/self/exe") {
            crate::kernel::sys::drop_cached(&file);
        }
    }
    Released {
        before_kib,
        after_kib: rss_file_kib(),
    }
}

/// The `start-end` ranges of non-writable mappings of `path` in a /proc/<pid>/maps text.
/// Malformed lines are skipped.
pub fn read_only_mappings_of(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            // offset, device and inode, then the path (which may contain spaces).
            let name: Vec<&str> = fields.skip(3).collect();
            if name.join(" ") != path || !perms.starts_with("r-") {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// `RssFile` of this process in KiB (0 when unreadable).
fn rss_file_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Releases the start-up pages after [`STARTUP_SETTLE`], then freed heap memory every
/// [`TRIM_INTERVAL`], and the executable's pages again when they came back (see
/// [`ReleasePlan`]), until `stop`.
pub async fn keep_lean(stop: CancellationToken) {
    keep_lean_with(stop, release_startup_pages, rss_file_kib).await
}

/// [`keep_lean`] with the release and the file-backed RSS given, so that tests can drive it.
async fn keep_lean_with(
    stop: CancellationToken,
    mut release: impl FnMut() -> Released,
    mut file_kib: impl FnMut() -> u64,
) {
    tokio::select! {
        _ = tokio::time::sleep(STARTUP_SETTLE) => {}
        _ = stop.cancelled() => return,
    }
    release_free_memory();
    let mut plan = ReleasePlan::new(tokio::time::Instant::now(), release());
    plan.log();
    let mut every = tokio::time::interval(TRIM_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = every.tick() => {
                release_free_memory();
                let now = tokio::time::Instant::now();
                if plan.due(now, file_kib()) {
                    plan.record(now, release());
                    plan.log();
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// File-backed growth since the last release after which the executable's pages are released
/// again. Code that runs once in a long while (a snapshot round, every 13 h by default; the
/// first message of a kind) stays resident after it ran: measured with 30 s snapshot timers,
/// 1.3 MiB of code after the start-up release became 3.8 MiB after the first round and stayed
/// there (6.8 MiB RSS, over the 6 MiB budget).
pub const REGROWTH_KIB: u64 = 1024;

/// Growth between two [`TRIM_INTERVAL`] ticks under which the agent counts as settled: a
/// release in the middle of a round would only page out code that is about to run again.
pub const SETTLED_KIB: u64 = 64;

/// The shortest time between two releases after regrowth. It doubles with each such release,
/// up to [`RELEASE_MAX_GAP`]: code that keeps coming back (snapshots every 30 s, say) is in
/// use, and paging it out and in again would cost CPU for nothing (measured with 30 s
/// snapshot timers: 1.3 MiB after each release, 3.8 MiB again after the next round).
pub const RELEASE_MIN_GAP: Duration = Duration::from_secs(60);

/// The longest time between two releases after regrowth: code that came back is released
/// at least this soon after it stopped being used, even after many regrowths.
pub const RELEASE_MAX_GAP: Duration = Duration::from_secs(3_600);

/// When to release the executable's pages again, as a plain state machine (no clock, no
/// /proc) so that its rules can be tested:
/// - until a release has worked ([`Released::worked`]: the pages could be dropped at all), it
///   is tried again [`RELEASE_RETRY`] later, up to [`RELEASE_TRIES`] times in a row, then given
///   up for good (tmpfs: it never will);
/// - after one that worked (later releases free what came back, however little), the pages are released again once the file-backed RSS grew by
///   [`REGROWTH_KIB`] and stopped growing, after a gap that starts at [`RELEASE_MIN_GAP`] and
///   doubles with each such release up to [`RELEASE_MAX_GAP`].
#[derive(Debug)]
struct ReleasePlan {
    last: Released,
    last_at: tokio::time::Instant,
    /// Releases in a row that did not work, until one has (then 0 for good).
    failed: u32,
    /// Whether a release has worked: the file's pages can be dropped.
    droppable: bool,
    /// File-backed RSS at the previous tick.
    previous_kib: u64,
    /// Releases made because code came back.
    regrowths: u32,
}

impl ReleasePlan {
    fn new(at: tokio::time::Instant, first: Released) -> Self {
        let mut plan = Self {
            last: first,
            last_at: at,
            failed: 0,
            droppable: false,
            previous_kib: first.after_kib,
            regrowths: 0,
        };
        plan.record(at, first);
        plan
    }

    fn record(&mut self, at: tokio::time::Instant, released: Released) {
        self.droppable |= released.worked();
        self.failed = if self.droppable { 0 } else { self.failed + 1 };
        self.last = released;
        self.last_at = at;
        self.previous_kib = released.after_kib;
    }

    /// Whether to release now, with the file-backed RSS `file_kib` measured at this tick.
    fn due(&mut self, now: tokio::time::Instant, file_kib: u64) -> bool {
        let since = now.saturating_duration_since(self.last_at);
        let settled = file_kib <= self.previous_kib + SETTLED_KIB;
        self.previous_kib = file_kib;
        if self.failed > 0 {
            return self.failed < RELEASE_TRIES && since >= RELEASE_RETRY;
        }
        let due = settled && file_kib >= self.last.after_kib + REGROWTH_KIB && since >= self.gap();
        if due {
            self.regrowths += 1;
        }
        due
    }

    /// The time that must pass after a release before code that came back is released again.
    fn gap(&self) -> Duration {
        RELEASE_MIN_GAP
            .saturating_mul(1 << self.regrowths.min(16))
            .min(RELEASE_MAX_GAP)
    }

    fn log(&self) {
        let Released {
            before_kib,
            after_kib,
        } = self.last;
        if self.failed == 0 {
            tracing::debug!(before_kib, after_kib, "released the executable's pages");
        } else if self.failed < RELEASE_TRIES {
            tracing::debug!(
                before_kib,
                after_kib,
                failed = self.failed,
                "the executable's pages could not be released yet (not written back?); trying again"
            );
        } else {
            tracing::info!(
                before_kib,
                after_kib,
                "the executable's pages could not be released (on tmpfs, or never written back); \
                 its code stays resident"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5d000000-5d100000 r--p 00000000 08:01 1234 /usr/bin/edgeguard
5d100000-5d500000 r-xp 00100000 08:01 1234 /usr/bin/edgeguard
5d500000-5d600000 r--p 00500000 08:01 1234 /usr/bin/edgeguard
5d600000-5d610000 rw-p 00600000 08:01 1234 /usr/bin/edgeguard
5d700000-5d800000 r-xp 00000000 08:01 99 /usr/bin/edgeguard-other
7f000000-7f100000 r-xp 00000000 08:01 77 /lib/x86_64-linux-gnu/libc.so.6
7f200000-7f300000 rw-p 00000000 00:00 0
garbage line
zz-55 r-xp 0 0 0 /usr/bin/edgeguard
";

    #[test]
    fn only_read_only_mappings_of_the_executable() {
        let got = read_only_mappings_of(MAPS, "/usr/bin/edgeguard");
        assert_eq!(
            got,
            vec![
                (0x5d000000, 0x5d100000),
                (0x5d100000, 0x5d500000),
                (0x5d500000, 0x5d600000),
            ]
        );
        assert!(read_only_mappings_of(MAPS, "/nowhere").is_empty());
    }

    /// Set for the child process [`releasing_its_own_pages_keeps_the_code_working`] starts.
    const SELF_RELEASE_CHILD: &str = "EDGEGUARD_TEST_SELF_RELEASE_CHILD";

    #[test]
    fn releasing_its_own_pages_keeps_the_code_working() {
        // In a process of its own: the release pages out the whole test binary, and every
        // test running beside it in this process would then read its code back 16 KiB at a
        // time (a timing-sensitive kernel test failed that way in a rehearsal).
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory::tests::self_release_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SELF_RELEASE_CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
        assert!(text.contains("self-release:"), "{text}");
    }

    /// Run only by [`releasing_its_own_pages_keeps_the_code_working`], in a process of its own.
    #[test]
    #[ignore = "run in a child process by releasing_its_own_pages_keeps_the_code_working"]
    fn self_release_child() {
        if std::env::var_os(SELF_RELEASE_CHILD).is_none() {
            return;
        }
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
        let before = read_only_mappings_of(&maps(), &exe);
        let expected = read_only_mappings_of(MAPS, "/usr/bin/edgeguard");
        release_free_memory();
        let released = release_startup_pages();
        // The same code on the same constants gives the same answer after the release ...
        assert_eq!(read_only_mappings_of(MAPS, "/usr/bin/edgeguard"), expected);
        // ... and the executable's mappings cover the same range, split into granules where
        // the kernel has transparent huge pages (the split's second advice).
        let after = read_only_mappings_of(&maps(), &exe);
        let span = |m: &[(usize, usize)]| m.iter().map(|(a, b)| b - a).sum::<usize>();
        assert_eq!(span(&before), span(&after));
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            assert!(
                after.len() >= span(&after) / CODE_GRANULE / 2,
                "{} mappings for {} KiB",
                after.len(),
                span(&after) / 1024
            );
        }
        // Freshly built binaries may still have dirty pages, which cannot be dropped yet.
        println!(
            "self-release: {released:?}, {} mappings before, {} after",
            before.len(),
            after.len()
        );
    }

    /// Sum of `Rss:` (KiB) of this process's mappings inside `[start, end)`, and their count.
    fn rss_within(start: usize, end: usize) -> (u64, usize) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let (mut kib, mut maps, mut inside) = (0, 0, false);
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = a >= start && b <= end;
                    maps += usize::from(inside);
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("Rss:") {
                    kib += v
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap();
                }
            }
        }
        (kib, maps)
    }

    #[test]
    fn after_the_release_a_fault_maps_one_granule_at_most() {
        // An executable mapping of a file on disk (beside the test binary: not tmpfs, whose
        // pages cannot be dropped), read whole, then released as the agent releases its code.
        const LEN: usize = 1 << 20;
        let dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let file = tempfile::NamedTempFile::new_in(dir).unwrap();
        let content: Vec<u8> = (0..LEN).map(|i| (i / 4096) as u8).collect();
        std::fs::write(file.path(), &content).unwrap();
        file.as_file().sync_all().unwrap();
        let fd = std::fs::File::open(file.path()).unwrap();
        // SAFETY: a fresh private read-only mapping of a file we own, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        assert_ne!(
            base,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        let (start, end) = (base as usize, base as usize + LEN);
        // SAFETY: every read is inside the mapping.
        let read = |at: usize| unsafe { std::ptr::read_volatile((start + at) as *const u8) };
        for at in (0..LEN).step_by(4096) {
            assert_eq!(read(at), content[at]);
        }
        assert!(rss_within(start, end).0 >= 1024, "read whole");

        crate::kernel::sys::fault_singly(start, end, CODE_GRANULE);
        crate::kernel::sys::page_out(start, end);
        crate::kernel::sys::drop_cached(&fd);
        let (released, maps) = rss_within(start, end);
        let split = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        if split {
            assert_eq!(maps, LEN / CODE_GRANULE, "one mapping per granule");
        }

        let at = LEN / 2 + 5_000;
        assert_eq!(read(at), content[at], "same contents after the release");
        let (faulted, _) = rss_within(start, end);
        let mut cached = vec![0u8; LEN / 4096];
        // SAFETY: `cached` has one byte per page of the mapping.
        let rc = unsafe { libc::mincore(base, LEN, cached.as_mut_ptr()) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let cached = cached.iter().filter(|&&b| b & 1 == 1).count() * 4;
        if split {
            assert!(
                faulted.saturating_sub(released) <= (CODE_GRANULE / 1024) as u64,
                "one fault mapped {faulted} KiB (from {released} KiB)"
            );
            assert!(
                cached <= CODE_GRANULE / 1024,
                "one fault read {cached} KiB into the page cache"
            );
        }
        for at in (0..LEN).step_by(4096) {
            assert_eq!(read(at), content[at]);
        }
        // SAFETY: unmapping what this test mapped; nothing refers to it any more.
        unsafe { libc::munmap(base, LEN) };
    }

    #[test]
    fn a_release_works_when_half_the_file_backed_memory_goes() {
        let r = |before_kib, after_kib| Released {
            before_kib,
            after_kib,
        };
        assert!(r(6_000, 1_300).worked());
        assert!(r(6_000, 3_000).worked());
        assert!(!r(6_000, 6_000).worked(), "dirty pages: nothing dropped");
        assert!(!r(6_000, 3_100).worked());
        assert!(r(0, 0).worked(), "no /proc: nothing to retry");
    }

    #[tokio::test(start_paused = true)]
    async fn the_release_is_tried_again_until_it_works() {
        use std::sync::{Arc, Mutex};
        let tries: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let start = tokio::time::Instant::now();
        let stop = CancellationToken::new();
        let lean = {
            let tries = tries.clone();
            tokio::spawn(keep_lean_with(
                stop.clone(),
                move || {
                    let mut tries = tries.lock().unwrap();
                    tries.push(start.elapsed());
                    // Dirty pages twice, then the writeback has happened.
                    let after_kib = if tries.len() < 3 { 5_900 } else { 1_200 };
                    Released {
                        before_kib: 6_000,
                        after_kib,
                    }
                },
                || 1_200,
            ))
        };
        tokio::time::sleep(Duration::from_secs(600)).await;
        stop.cancel();
        lean.await.unwrap();
        let tries = tries.lock().unwrap().clone();
        let secs: Vec<u64> = tries.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![10, 40, 70], "tried at {tries:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_release_is_given_up_after_its_tries() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let tries = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let counted = tries.clone();
        let lean = tokio::spawn(keep_lean_with(
            stop.clone(),
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
                Released {
                    before_kib: 6_000,
                    after_kib: 6_000,
                }
            },
            || 6_000,
        ));
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        stop.cancel();
        lean.await.unwrap();
        assert_eq!(tries.load(Ordering::Relaxed), RELEASE_TRIES);
    }

    #[test]
    fn code_that_came_back_is_released_once_the_agent_settled() {
        let t0 = tokio::time::Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let worked = Released {
            before_kib: 6_000,
            after_kib: 1_300,
        };
        let mut plan = ReleasePlan::new(t0, worked);
        assert!(!plan.due(at(10), 1_400), "a little code came back");
        assert!(!plan.due(at(20), 1_400));
        // A snapshot round brings 2.5 MiB of code back over two ticks.
        assert!(!plan.due(at(30), 2_800), "still growing");
        assert!(!plan.due(at(40), 3_800), "still growing");
        assert!(
            !plan.due(at(50), 3_800),
            "settled, but within RELEASE_MIN_GAP"
        );
        assert!(plan.due(at(60), 3_800), "grown and settled");
        plan.record(
            at(60),
            Released {
                before_kib: 3_800,
                after_kib: 1_300,
            },
        );
        // Back again at once: not before twice RELEASE_MIN_GAP, then four times.
        assert!(!plan.due(at(70), 3_800));
        assert!(!plan.due(at(170), 3_800));
        assert!(plan.due(at(180), 3_800));
        plan.record(at(180), worked);
        assert!(!plan.due(at(410), 3_800));
        assert!(plan.due(at(420), 3_800));
        // Never more than RELEASE_MAX_GAP apart.
        plan.regrowths = 30;
        plan.record(at(1_000), worked);
        assert!(!plan.due(at(4_590), 3_800));
        assert!(plan.due(at(4_600), 3_800));
        // Growth under REGROWTH_KIB never releases.
        plan.record(at(5_000), worked);
        assert!(!plan.due(at(99_000), 1_300 + REGROWTH_KIB - 1));
    }

    #[test]
    fn a_release_that_never_works_is_given_up() {
        let t0 = tokio::time::Instant::now();
        let dirty = Released {
            before_kib: 6_000,
            after_kib: 6_000,
        };
        let mut plan = ReleasePlan::new(t0, dirty);
        let mut tries = 1;
        for secs in (10..3_600).step_by(10) {
            let now = t0 + Duration::from_secs(secs);
            if plan.due(now, 6_000) {
                tries += 1;
                plan.record(now, dirty);
            }
        }
        assert_eq!(tries, RELEASE_TRIES);
    }

    #[test]
    fn a_release_of_hot_code_after_regrowth_is_not_a_failure() {
        let t0 = tokio::time::Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut plan = ReleasePlan::new(
            t0,
            Released {
                before_kib: 6_000,
                after_kib: 1_300,
            },
        );
        assert!(!plan.due(at(50), 2_700), "growing");
        assert!(plan.due(at(60), 2_700));
        // Most of what came back is in use: little goes. Not retried, not given up.
        plan.record(
            at(60),
            Released {
                before_kib: 2_700,
                after_kib: 2_100,
            },
        );
        assert_eq!(plan.failed, 0);
        assert!(!plan.due(at(90), 2_100), "no retry 30 s later");
        assert!(!plan.due(at(970), 2_100 + REGROWTH_KIB - 1), "growing");
        assert!(
            !plan.due(at(980), 2_100 + REGROWTH_KIB - 1),
            "settled, too little"
        );
        assert!(plan.due(at(990), 2_100 + REGROWTH_KIB));
    }
}
