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
//!   the binary's clean read-only pages once, after start-up; code that runs again is read back
//!   from the page cache (or disk) on its next use, which for the periodic collectors is an hour
//!   away.
//!
//! Everything here is best effort: on another libc, an old kernel, or without the rights, it
//! does nothing.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after start the start-up pages are released: the first message goes out within
/// ~0.1 s and the first round of periodic collectors within a few seconds.
pub const STARTUP_SETTLE: Duration = Duration::from_secs(10);

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

/// Asks the kernel to reclaim the clean, read-only pages of the agent's own executable
/// (`MADV_PAGEOUT`, Linux 5.4+). Returns how many KiB of file-backed RSS went away.
///
/// Only mappings of the executable that are not writable are touched. `MADV_PAGEOUT` never
/// changes what the process sees: clean file pages are dropped and read back on the next use;
/// pages that were written (relocated read-only data) are anonymous and stay, as there is no
/// swap to write them to. Without the rights to page out the file, the kernel skips its pages.
pub fn release_startup_pages() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let before = rss_file_kib();
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return 0;
        };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return 0;
        };
        for (start, end) in read_only_mappings_of(&maps, &exe.to_string_lossy()) {
            crate::kernel::sys::page_out(start, end);
        }
        before.saturating_sub(rss_file_kib())
    }
    #[cfg(not(target_os = "linux"))]
    0
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
/// [`TRIM_INTERVAL`], until `stop`.
pub async fn keep_lean(stop: CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(STARTUP_SETTLE) => {}
        _ = stop.cancelled() => return,
    }
    release_free_memory();
    let kib = release_startup_pages();
    tracing::debug!(kib, "released the executable's start-up pages");
    let mut every = tokio::time::interval(TRIM_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = every.tick() => release_free_memory(),
            _ = stop.cancelled() => return,
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

    #[test]
    fn paging_out_keeps_the_code_working() {
        // Page out this test binary's read-only pages (code and constants), then run the same
        // code on the same constants again: the answer must not change.
        let before = read_only_mappings_of(MAPS, "/usr/bin/edgeguard");
        release_free_memory();
        let kib = release_startup_pages();
        let after = read_only_mappings_of(MAPS, "/usr/bin/edgeguard");
        assert_eq!(before, after, "after paging out {kib} KiB");
    }
}
