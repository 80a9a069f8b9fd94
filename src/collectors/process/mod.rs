//! ProcessCreate / ProcessTerminate, in real time, from the kernel's process-events connector.
//!
//! The retired agents polled every two minutes and missed every short-lived process. Here a
//! netlink `NETLINK_CONNECTOR` socket subscribed to `CN_IDX_PROC` hears every fork, exec and exit
//! as it happens; each exec is enriched from /proc at once (while the process most likely still
//! runs) and becomes a `ProcessCreate`, each exit of a process becomes a `ProcessTerminate`.
//!
//! The reader is a blocking loop on its own std thread ([`spawn`]): the kernel cannot be paused,
//! so the thread waits on the pipeline at most briefly ([`Context::emit_from_reader`] counts a full channel as a
//! drop) and a receive timeout lets it notice cancellation within [`RECV_TIMEOUT`]. Records go
//! over in groups, held up to [`super::READER_HOLD`] ([`Held`]), so that the pipeline's thread is
//! not woken for each one.
//!
//! Linux 6.6 and later filter process events per socket. There the reader subscribes twice
//! ([`Connectors`]): one socket for execs, which it waits on, and one for forks, uid changes and
//! exits, which it reads without waiting each time it wakes (and every
//! [`super::READER_HOLD`] while they keep coming), merging both by the kernel's time stamp. An
//! exec is still read at once; the rest no longer wakes the thread, which had been most of its
//! cost in a storm (one wake-up per event: three for a script's fork, exec and exit). Older
//! kernels give every event on one socket, as before.
//!
//! When the connector is unavailable (no `CAP_NET_ADMIN`, a kernel without `CONFIG_PROC_EVENTS`,
//! or an agent outside the host's PID or user namespace, where the kernel ignores the
//! subscription), the collector reports itself `Degraded` and falls back to diffing the set of
//! pids in /proc every second: processes that live less than a second are then missed, and exit
//! statuses are unknown.
//!
//! Scope decisions:
//! - Only thread-group leaders are processes: thread creation and exit are ignored.
//! - Kernel threads (children of `kthreadd` that never exec) are not reported; usermode helpers
//!   the kernel starts (`modprobe`, core dump handlers) exec a program and are.
//! - edgeguard's own process is not filtered out: it never execs anything, so it cannot cause a
//!   feedback loop, and hiding an agent from its own report would be a blind spot to exploit.
//! - A process that forks without exec gets no `ProcessCreate` (as with the old agents, which
//!   reported execve), but its exit is a `ProcessTerminate` carrying its parent's executable.
//!
//! Known limits: when the group leader of a multithreaded process exits first (or a non-leader
//! thread execs, which kills the leader), the kernel reports the leader's exit while the process
//! lives on, so a `ProcessTerminate` can come early; events lost to a socket overflow are gone
//! (counted, never recovered).

mod cache;
mod collector;
pub mod exec_trace;
mod socket;
#[cfg(test)]
mod tests;
mod tracker;
mod wire;

use cache::*;
pub use collector::*;
pub use socket::*;
pub use tracker::*;
pub use wire::*;

use std::time::Duration;

/// The `collector` label of this collector's metrics and status events.
pub const COLLECTOR: &str = "process";

/// How long a blocking receive waits before the reader checks for cancellation.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// Socket receive buffer asked for: room for a few thousand events while the reader reads /proc,
/// so an exec storm does not overflow the socket.
pub const RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How long the kernel has to acknowledge the subscription. No answer means the subscription was
/// silently ignored (agent outside the host PID/user namespace, or no `CONFIG_PROC_EVENTS`).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times the subscription is sent (each waiting [`ACK_TIMEOUT`] for an answer or an
/// event) before the collector falls back to scanning /proc.
pub const SUBSCRIBE_ATTEMPTS: u32 = 3;

/// Interval of the /proc scan used when the connector is unavailable.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Bound of the pid → executable and pid → parent caches. Exits remove entries; the bound only
/// matters when exits were lost (overflow), which must not leak memory.
pub const CACHE_ENTRIES: usize = 16 * 1024;

/// Most pids one /proc scan looks at (a sanity bound, far above any real edge device).
const MAX_SCAN_PIDS: usize = 256 * 1024;

/// Pid of `kthreadd`, the parent of every kernel thread.
const KTHREADD: u32 = 2;
