//! The kernel-reader kit: every system call edgeguard makes through `libc`, and the framing of
//! what the kernel sends back.
//!
//! The collectors and host readers read the kernel through netlink sockets (the process
//! connector, sock_diag), a packet socket, perf rings (the exec tracepoint) and `/proc` file
//! descriptors. The `unsafe` code all of that needs lives here, in small functions with a
//! `// SAFETY:` line each, so that one reviewer can audit it in one place; the callers see safe
//! functions that take and return owned descriptors, slices and `io::Result`s. (Test code that
//! plays the kernel's other side, writing utmp records or reading socket options back, keeps
//! its own few `unsafe` calls beside the tests.)
//!
//! - [`bytes`]: checked native-endian readers for untrusted kernel bytes;
//! - [`socket`]: opening sockets, options (receive timeout and buffer), the packet socket's
//!   bind, receive and drop counter;
//! - [`netlink`]: the `nlmsghdr` framing walked by every netlink parser, and sending to and
//!   receiving from the kernel (one datagram, or a batch with `recvmmsg`);
//! - [`fs`]: `/proc` reads relative to a directory descriptor (`openat`, `readlinkat`), and a
//!   private tracefs mount for the exec tracepoint where the host has none;
//! - [`root`]: opening host files inside the host root (`openat2` with `RESOLVE_IN_ROOT`, or a
//!   component-by-component walk where the kernel has no openat2), and listing directories;
//! - [`inotify`]: file change notifications (the file integrity collector);
//! - [`fanotify`]: which process made those changes (the same collector);
//! - [`poll`]: waiting on several descriptors at once;
//! - [`perf`]: a tracepoint's perf ring, mapped and read;
//! - [`sys`]: the rest (thread priority, network namespaces, `uname`, clock ticks, `chroot`
//!   before `exec`, glibc's allocator).

pub mod bytes;
pub mod fanotify;
pub mod fs;
pub mod inotify;
pub mod netlink;
pub mod perf;
pub mod poll;
pub mod root;
pub mod socket;
pub mod sys;
