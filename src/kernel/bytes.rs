//! Checked readers for bytes the kernel (or a file) hands over: offsets and lengths in kernel
//! messages are untrusted input, so every read is bounds-checked and yields `None` rather than
//! panicking.

/// `len` bytes of `b` from `off`, or `None` when they are not all there. Offsets and lengths come
/// from kernel messages and files read as untrusted input, so the sum is checked, not assumed.
pub fn bytes_at(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// A native-endian `u16` at `off` of `b` (see [`bytes_at`]).
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes_at(b, off, 2)?.try_into().ok()?))
}

/// A native-endian `u32` at `off` of `b` (see [`bytes_at`]).
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes_at(b, off, 4)?.try_into().ok()?))
}

/// A native-endian `u64` at `off` of `b` (see [`bytes_at`]).
pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes_at(b, off, 8)?.try_into().ok()?))
}
