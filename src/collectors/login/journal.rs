//! systemd journal files, read natively: for hosts that log only to the journal (Debian 12
//! without rsyslog, many Yocto images), where there is no auth.log.
//!
//! The format is systemd's "Journal File Format" (docs/JOURNAL_FILE_FORMAT.md in systemd): a
//! header, then objects (DATA, FIELD, ENTRY, ENTRY_ARRAY, hash tables, TAG), each with a 16-byte
//! object header. Entries are found through the chain of ENTRY_ARRAY objects that starts at
//! the header's `entry_array_offset`; each entry lists the DATA objects (`FIELD=value`) it
//! holds. Both layouts are read: regular (64-bit item offsets) and compact
//! (`HEADER_INCOMPATIBLE_COMPACT`, systemd 252+, 32-bit offsets, 8 more bytes in DATA objects).
//!
//! Compression: journald compresses a DATA object's payload (`FIELD=value`, name included)
//! when it is longer than its threshold (512 bytes by default), with ZSTD (the default since
//! systemd 246), LZ4 (8-byte little-endian size, then an LZ4 block) or XZ (older). A long sshd or
//! sudo MESSAGE (a long user name or command) is such a field. All three are decoded in pure
//! Rust ([`decompress`]: `ruzstd`, `lz4_flex`, `xz4rust`), then the name is matched as for a
//! plain field. The payload comes from the host, so decoding is bounded: at most
//! [`MAX_PAYLOAD_BYTES`] are decoded (the longest field kept, plus its name), at most
//! [`MAX_COMPRESSED_BYTES`] of compressed input are read, and the decoders' windows are capped
//! (ZSTD 128 KiB, XZ 8 MiB of dictionary, allocated as declared but written only as far as the
//! output goes); a decompression bomb stops at the limit. A longer field is counted in
//! [`Entries::oversized`] when its name is one this reader wants or could not be decoded;
//! data that does not decode is counted in [`Entries::compressed_failed`]. Either way the rest
//! of the entry and of the file is read.
//!
//! Every offset and size read from the file is checked against the file's length and the
//! format's minimum sizes before it is used; a file that fails a check is reported as
//! [`JournalError`] (counted by the caller), never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
const HEADER_MIN: u64 = 208;
const INCOMPATIBLE_COMPRESSED_XZ: u32 = 1;
const INCOMPATIBLE_COMPRESSED_LZ4: u32 = 2;
const INCOMPATIBLE_KEYED_HASH: u32 = 4;
const INCOMPATIBLE_COMPRESSED_ZSTD: u32 = 8;
const INCOMPATIBLE_COMPACT: u32 = 16;
const INCOMPATIBLE_KNOWN: u32 = INCOMPATIBLE_COMPRESSED_XZ
    | INCOMPATIBLE_COMPRESSED_LZ4
    | INCOMPATIBLE_KEYED_HASH
    | INCOMPATIBLE_COMPRESSED_ZSTD
    | INCOMPATIBLE_COMPACT;
const OBJECT_DATA: u8 = 1;
const OBJECT_ENTRY: u8 = 3;
const OBJECT_ENTRY_ARRAY: u8 = 6;
/// DATA object flags: the payload's compression (at most one is set).
pub const OBJECT_COMPRESSED_XZ: u8 = 1;
pub const OBJECT_COMPRESSED_LZ4: u8 = 2;
pub const OBJECT_COMPRESSED_ZSTD: u8 = 4;
const OBJECT_COMPRESSION_MASK: u8 =
    OBJECT_COMPRESSED_XZ | OBJECT_COMPRESSED_LZ4 | OBJECT_COMPRESSED_ZSTD;
/// Journal file state (header byte 16): closed cleanly, being written, archived.
pub const STATE_ARCHIVED: u8 = 2;
/// Items of one entry read at most (journald entries hold a few dozen fields).
const MAX_ENTRY_ITEMS: u64 = 1024;
/// ENTRY_ARRAY items read in one system call.
const ARRAY_CHUNK: u64 = 4096;
/// Longest field value kept (the auth-log line limit).
const MAX_FIELD_BYTES: u64 = super::MAX_LINE_BYTES as u64;
/// Longest field name journald accepts.
const MAX_NAME_BYTES: usize = 64;
/// Bytes of a field's payload read to find its name (the longest name wanted, with its `=`).
const NAME_PEEK: usize = 20;
/// A compressed payload (`FIELD=value`) is decoded up to this many bytes: the longest value
/// kept, after the longest name.
pub const MAX_PAYLOAD_BYTES: usize = MAX_NAME_BYTES + 1 + MAX_FIELD_BYTES as usize;
/// Compressed bytes read of one DATA object: what any of the three formats needs for
/// [`MAX_PAYLOAD_BYTES`] of incompressible data (LZ4's worst case, n + n/255 + 16, plus its
/// 8-byte size; XZ's and ZSTD's headers and framing fit in the slack). A longer compressed
/// payload holds more than the limit; its first bytes are decoded for its name only.
pub const MAX_COMPRESSED_BYTES: usize = MAX_PAYLOAD_BYTES + MAX_PAYLOAD_BYTES / 255 + 2048;
/// ZSTD window accepted: journald writes single-segment frames, whose window is the field's
/// length, so every field within the limit fits; a larger window is an over-limit field.
const ZSTD_MAX_WINDOW: u64 = 128 * 1024;
/// XZ dictionary accepted: journald uses 1 MiB, the xz tool's default 8 MiB. The decoder
/// allocates the declared size, zeroed (fresh pages, mapped by the kernel on first write), and
/// fills it only as far as the output buffer allows: [`MAX_PAYLOAD_BYTES`] + 1 bytes.
const XZ_MAX_DICT: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("not a journal file (bad signature)")]
    Signature,
    #[error("journal file uses incompatible features {0:#x} this reader does not know")]
    Incompatible(u32),
    #[error("journal file is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("reading the journal file: {0}")]
    Io(String),
}

fn io(e: std::io::Error) -> JournalError {
    JournalError::Io(e.to_string())
}

/// The header fields this reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub incompatible: u32,
    pub state: u8,
    pub file_id: [u8; 16],
    pub seqnum_id: [u8; 16],
    pub header_size: u64,
    pub arena_size: u64,
    pub n_entries: u64,
    pub tail_entry_seqnum: u64,
    pub head_entry_seqnum: u64,
    pub entry_array_offset: u64,
    pub head_entry_realtime: u64,
}

impl Header {
    pub fn compact(&self) -> bool {
        self.incompatible & INCOMPATIBLE_COMPACT != 0
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Parses the header from the file's first bytes (at least [`HEADER_MIN`]).
pub fn parse_header(b: &[u8]) -> Result<Header, JournalError> {
    if b.len() < 8 || &b[..8] != SIGNATURE {
        return Err(JournalError::Signature);
    }
    if b.len() < HEADER_MIN as usize {
        return Err(JournalError::Corrupt("header shorter than 208 bytes"));
    }
    let incompatible = le32(b, 12);
    if incompatible & !INCOMPATIBLE_KNOWN != 0 {
        return Err(JournalError::Incompatible(incompatible));
    }
    let mut file_id = [0u8; 16];
    file_id.copy_from_slice(&b[24..40]);
    let mut seqnum_id = [0u8; 16];
    seqnum_id.copy_from_slice(&b[72..88]);
    let h = Header {
        incompatible,
        state: b[16],
        file_id,
        seqnum_id,
        header_size: le64(b, 88),
        arena_size: le64(b, 96),
        n_entries: le64(b, 152),
        tail_entry_seqnum: le64(b, 160),
        head_entry_seqnum: le64(b, 168),
        entry_array_offset: le64(b, 176),
        head_entry_realtime: le64(b, 184),
    };
    if h.header_size < HEADER_MIN || !h.header_size.is_multiple_of(8) {
        return Err(JournalError::Corrupt("header size"));
    }
    Ok(h)
}

/// The fields of one entry this collector uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalEntry {
    pub seqnum: u64,
    /// Microseconds since the epoch.
    pub realtime: u64,
    pub identifier: Option<String>,
    pub comm: Option<String>,
    pub pid: Option<u32>,
    pub hostname: Option<String>,
    pub message: Option<String>,
}

/// Where reading stopped in the entry array chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// The ENTRY_ARRAY object being read (0: not started).
    array: u64,
    /// Items of it already taken.
    index: u64,
    /// Entries taken in all (never more than the header's `n_entries`).
    pub taken: u64,
}

/// One open journal file.
#[derive(Debug)]
pub struct JournalFile {
    file: File,
    pub header: Header,
    len: u64,
}

/// What one read of new entries found.
#[derive(Debug, Default)]
pub struct Entries {
    pub entries: Vec<JournalEntry>,
    /// Compressed DATA objects that could not be decoded (corrupt data, or more than one
    /// compression flag), skipped.
    pub compressed_failed: u64,
    /// Fields longer than [`MAX_FIELD_BYTES`] (compressed ones: longer than
    /// [`MAX_PAYLOAD_BYTES`] decoded, or than the decoder's window, when their name is wanted or
    /// could not be read), skipped; or entries with more than [`MAX_ENTRY_ITEMS`] items, cut.
    pub oversized: u64,
    /// More entries are ready than were read.
    pub more: bool,
}

impl JournalFile {
    pub fn open(file: File) -> Result<JournalFile, JournalError> {
        let mut jf = JournalFile {
            file,
            header: empty_header(),
            len: 0,
        };
        jf.refresh()?;
        Ok(jf)
    }

    /// The file's length at the last [`JournalFile::refresh`].
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Re-reads the header and length: journald appends entries and then updates the header.
    pub fn refresh(&mut self) -> Result<(), JournalError> {
        let len = self.file.metadata().map_err(io)?.len();
        let mut b = vec![0u8; HEADER_MIN as usize];
        let n = read_at_most(&self.file, &mut b, 0).map_err(io)?;
        b.truncate(n);
        self.header = parse_header(&b)?;
        self.len = len;
        Ok(())
    }

    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>, JournalError> {
        let end = at
            .checked_add(len)
            .ok_or(JournalError::Corrupt("offset overflow"))?;
        if at < self.header.header_size || end > self.len {
            return Err(JournalError::Corrupt("offset outside the file"));
        }
        let mut b = vec![0u8; usize::try_from(len).map_err(|_| JournalError::Corrupt("size"))?];
        let n = read_at_most(&self.file, &mut b, at).map_err(io)?;
        if n < b.len() {
            return Err(JournalError::Corrupt("object cut short"));
        }
        Ok(b)
    }

    /// The object header at `at`: (type, flags, size), checked to fit in the file.
    fn object(&self, at: u64, want: u8, min: u64) -> Result<(u8, u64), JournalError> {
        if !at.is_multiple_of(8) {
            return Err(JournalError::Corrupt("unaligned object"));
        }
        let b = self.read(at, 16)?;
        let size = le64(&b, 8);
        if b[0] != want {
            return Err(JournalError::Corrupt("unexpected object type"));
        }
        if size < min || at.checked_add(size).is_none_or(|e| e > self.len) {
            return Err(JournalError::Corrupt("object size"));
        }
        Ok((b[1], size))
    }

    fn item_size(&self) -> u64 {
        if self.header.compact() { 4 } else { 8 }
    }

    /// Entry offsets after `walk`, at most `max`; advances `walk`.
    pub fn next_offsets(&self, walk: &mut Walk, max: usize) -> Result<Vec<u64>, JournalError> {
        let mut out = Vec::new();
        let isz = self.item_size();
        if walk.array == 0 {
            walk.array = self.header.entry_array_offset;
        }
        // A chain cannot have more arrays than entries; a loop in a hostile file ends here.
        let mut hops = 0u64;
        while walk.array != 0 && walk.taken < self.header.n_entries && out.len() < max {
            let (_, size) = self.object(walk.array, OBJECT_ENTRY_ARRAY, 24)?;
            let capacity = (size - 24) / isz;
            if walk.index < capacity {
                let want = (capacity - walk.index)
                    .min(ARRAY_CHUNK)
                    .min((max - out.len()) as u64)
                    .min(self.header.n_entries - walk.taken);
                let b = self.read(walk.array + 24 + walk.index * isz, want * isz)?;
                for i in 0..want as usize {
                    let off = if isz == 4 {
                        u64::from(le32(&b, i * 4))
                    } else {
                        le64(&b, i * 8)
                    };
                    if off == 0 {
                        // Not written yet.
                        return Ok(out);
                    }
                    out.push(off);
                    walk.index += 1;
                    walk.taken += 1;
                }
                continue;
            }
            let next = le64(&self.read(walk.array + 16, 8)?, 0);
            if next == 0 {
                break;
            }
            hops += 1;
            if next <= walk.array || hops > self.header.n_entries {
                return Err(JournalError::Corrupt("entry array chain goes backwards"));
            }
            walk.array = next;
            walk.index = 0;
        }
        Ok(out)
    }

    /// The entry at `at`: its seqnum and realtime only.
    pub fn entry_seqnum(&self, at: u64) -> Result<(u64, u64), JournalError> {
        self.object(at, OBJECT_ENTRY, 64)?;
        let b = self.read(at + 16, 16)?;
        Ok((le64(&b, 0), le64(&b, 8)))
    }

    /// The entry at `at` with the fields this collector uses (compressed ones decoded);
    /// oversized fields and compressed ones that do not decode are counted in `stats`.
    pub fn entry(&self, at: u64, stats: &mut Entries) -> Result<JournalEntry, JournalError> {
        let (_, size) = self.object(at, OBJECT_ENTRY, 64)?;
        let b = self.read(at + 16, 16)?;
        let mut e = JournalEntry {
            seqnum: le64(&b, 0),
            realtime: le64(&b, 8),
            ..JournalEntry::default()
        };
        let isz = if self.header.compact() { 4 } else { 16 };
        let mut n = (size - 64) / isz;
        if n > MAX_ENTRY_ITEMS {
            stats.oversized += 1;
            n = MAX_ENTRY_ITEMS;
        }
        let items = self.read(at + 64, n * isz)?;
        for i in 0..n as usize {
            let off = if isz == 4 {
                u64::from(le32(&items, i * 4))
            } else {
                le64(&items, i * 16)
            };
            self.field(off, &mut e, stats)?;
        }
        Ok(e)
    }

    fn field(
        &self,
        at: u64,
        e: &mut JournalEntry,
        stats: &mut Entries,
    ) -> Result<(), JournalError> {
        let payload_at = if self.header.compact() { 72 } else { 64 };
        let (flags, size) = self.object(at, OBJECT_DATA, payload_at)?;
        let len = size - payload_at;
        let compression = match Compression::from_flags(flags) {
            Ok(c) => c,
            Err(()) => {
                stats.compressed_failed += 1;
                return Ok(());
            }
        };
        let Some(compression) = compression else {
            // The field name decides whether the rest is wanted.
            let head = self.read(at + payload_at, len.min(NAME_PEEK as u64))?;
            let Some((slot, name_len)) = wanted(&head) else {
                return Ok(());
            };
            let value_len = len - name_len as u64;
            if value_len > MAX_FIELD_BYTES {
                stats.oversized += 1;
                return Ok(());
            }
            let v = self.read(at + payload_at + name_len as u64, value_len)?;
            set_field(e, slot, &v);
            return Ok(());
        };
        // The name is compressed with the value: decode first, then match it.
        let cut = len > MAX_COMPRESSED_BYTES as u64;
        let input = self.read(at + payload_at, len.min(MAX_COMPRESSED_BYTES as u64))?;
        let (head, whole) = match decompress(compression, &input, MAX_PAYLOAD_BYTES) {
            Decompressed::Whole(p) => (p, !cut),
            Decompressed::TooLong(head) => (head, false),
            // Cut input ends mid-stream: only its first bytes were wanted.
            Decompressed::Corrupt(head) if cut => (head, false),
            Decompressed::Corrupt(_) => {
                stats.compressed_failed += 1;
                return Ok(());
            }
        };
        match wanted(&head) {
            Some((slot, name_len)) if whole => {
                if (head.len() - name_len) as u64 > MAX_FIELD_BYTES {
                    stats.oversized += 1;
                } else {
                    set_field(e, slot, &head[name_len..]);
                }
            }
            // Over the limit: counted when it may have been a field this reader wants.
            Some(_) => stats.oversized += 1,
            None if !whole && field_name(&head).is_none() => stats.oversized += 1,
            None => {}
        }
        Ok(())
    }

    /// Reads up to `max` new entries after `walk`; entries whose seqnum is at most `skip_to`
    /// are passed over without reading their fields (already read before a restart).
    pub fn read_entries(
        &self,
        walk: &mut Walk,
        max: usize,
        skip_to: u64,
    ) -> Result<Entries, JournalError> {
        let mut out = Entries::default();
        let offsets = self.next_offsets(walk, max)?;
        out.more = offsets.len() == max;
        for off in offsets {
            let (seqnum, _) = self.entry_seqnum(off)?;
            if seqnum <= skip_to {
                continue;
            }
            let e = self.entry(off, &mut out)?;
            out.entries.push(e);
        }
        Ok(out)
    }
}

/// The name of the field a payload (`FIELD=value`) starts with, if its `=` is within the first
/// [`NAME_PEEK`] bytes.
fn field_name(payload: &[u8]) -> Option<&[u8]> {
    let end = payload.iter().take(NAME_PEEK).position(|b| *b == b'=')?;
    Some(&payload[..end])
}

/// The slot of a field this reader keeps, and the length of its name with the `=`.
fn wanted(payload: &[u8]) -> Option<(u8, usize)> {
    let name = field_name(payload)?;
    let slot = match name {
        b"MESSAGE" => 0,
        b"SYSLOG_IDENTIFIER" => 1,
        b"_COMM" => 2,
        b"_PID" => 3,
        b"_HOSTNAME" => 4,
        _ => return None,
    };
    Some((slot, name.len() + 1))
}

fn set_field(e: &mut JournalEntry, slot: u8, value: &[u8]) {
    let v = String::from_utf8_lossy(value).into_owned();
    match slot {
        0 => e.message = Some(v),
        1 => e.identifier = Some(v),
        2 => e.comm = Some(v),
        3 => e.pid = v.trim().parse().ok(),
        _ => e.hostname = Some(v),
    }
}

/// How a DATA object's payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Lz4,
    Zstd,
}

impl Compression {
    /// From a DATA object's flags: `None` when the payload is stored plain, an error when more
    /// than one compression is set (systemd rejects that too).
    pub(crate) fn from_flags(flags: u8) -> Result<Option<Compression>, ()> {
        match flags & OBJECT_COMPRESSION_MASK {
            0 => Ok(None),
            OBJECT_COMPRESSED_XZ => Ok(Some(Compression::Xz)),
            OBJECT_COMPRESSED_LZ4 => Ok(Some(Compression::Lz4)),
            OBJECT_COMPRESSED_ZSTD => Ok(Some(Compression::Zstd)),
            _ => Err(()),
        }
    }
}

/// A compressed payload, decoded by [`decompress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decompressed {
    /// All of it, at most the limit.
    Whole(Vec<u8>),
    /// Longer than the limit (or than the decoder's window or dictionary allows): its first
    /// bytes, at most the limit, enough for the field's name when the decoder got that far (none
    /// when the window or dictionary was refused; for LZ4, zero after the last sequence that
    /// fit).
    TooLong(Vec<u8>),
    /// Not valid data for its compression: what was decoded before the error (LZ4 as above).
    Corrupt(Vec<u8>),
}

/// Decodes a DATA object's compressed payload as journald writes it, to at most `limit` bytes:
/// more output than that is never produced, whatever the input claims. Never panics: the
/// decoders read host data, so a panic inside one is caught and reported as
/// [`Decompressed::Corrupt`].
pub fn decompress(compression: Compression, payload: &[u8], limit: usize) -> Decompressed {
    std::panic::catch_unwind(|| decode_payload(compression, payload, limit))
        .unwrap_or(Decompressed::Corrupt(Vec::new()))
}

/// [`decompress`] without catching panics (the tests' mutation loop wants to see them).
pub(crate) fn decode_payload(
    compression: Compression,
    payload: &[u8],
    limit: usize,
) -> Decompressed {
    match compression {
        Compression::Zstd => zstd(payload, limit),
        Compression::Lz4 => lz4(payload, limit),
        Compression::Xz => xz(payload, limit),
    }
}

/// ZSTD: one frame (journald's `ZSTD_compress`).
fn zstd(payload: &[u8], limit: usize) -> Decompressed {
    use ruzstd::decoding::StreamingDecoder;
    use ruzstd::decoding::errors::FrameDecoderError;
    use std::io::Read;
    let mut d = match StreamingDecoder::new_with_max_window_size(payload, ZSTD_MAX_WINDOW) {
        Ok(d) => d,
        Err(FrameDecoderError::WindowSizeTooBig { .. }) => {
            return Decompressed::TooLong(Vec::new());
        }
        Err(_) => return Decompressed::Corrupt(Vec::new()),
    };
    let mut out = vec![0u8; limit + 1];
    let mut n = 0;
    loop {
        match d.read(&mut out[n..]) {
            Ok(0) => {
                out.truncate(n);
                return Decompressed::Whole(out);
            }
            Ok(k) => {
                n += k;
                if n > limit {
                    out.truncate(limit);
                    return Decompressed::TooLong(out);
                }
            }
            Err(_) => {
                out.truncate(n);
                return Decompressed::Corrupt(out);
            }
        }
    }
}

/// LZ4: journald's format, the uncompressed size (64-bit little-endian), then one LZ4 block.
fn lz4(payload: &[u8], limit: usize) -> Decompressed {
    let Some((size, block)) = payload.split_first_chunk::<8>() else {
        return Decompressed::Corrupt(Vec::new());
    };
    let size = u64::from_le_bytes(*size);
    let over = size > limit as u64;
    // Never more than the limit, whatever the size says.
    let mut out = vec![0u8; if over { limit } else { size as usize }];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if !over && n == out.len() => Decompressed::Whole(out),
        // Fewer bytes than its size says.
        Ok(n) => {
            out.truncate(n);
            Decompressed::Corrupt(out)
        }
        Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if over => {
            Decompressed::TooLong(out)
        }
        Err(_) => Decompressed::Corrupt(out),
    }
}

/// XZ: one stream (journald's `lzma_stream_buffer_encode`, no check; the xz tool's CRC64 too).
fn xz(payload: &[u8], limit: usize) -> Decompressed {
    use xz4rust::{XzDecoder, XzError};
    let mut d = XzDecoder::in_heap_with_alloc_dict_size(0, XZ_MAX_DICT);
    let mut out = vec![0u8; limit + 1];
    let (mut read, mut n) = (0, 0);
    loop {
        match d.decode(&payload[read..], &mut out[n..]) {
            Ok(r) => {
                read += r.input_consumed();
                n += r.output_produced();
                if n > limit {
                    out.truncate(limit);
                    return Decompressed::TooLong(out);
                }
                if r.is_end_of_stream() {
                    out.truncate(n);
                    return Decompressed::Whole(out);
                }
                if !r.made_progress() {
                    // Cut short.
                    out.truncate(n);
                    return Decompressed::Corrupt(out);
                }
            }
            Err(XzError::DictionaryTooLarge(_)) => {
                out.truncate(n);
                return Decompressed::TooLong(out);
            }
            Err(_) => {
                out.truncate(n);
                return Decompressed::Corrupt(out);
            }
        }
    }
}

/// A placeholder until [`JournalFile::refresh`] reads the real header.
fn empty_header() -> Header {
    Header {
        incompatible: 0,
        state: 0,
        file_id: [0; 16],
        seqnum_id: [0; 16],
        header_size: HEADER_MIN,
        arena_size: 0,
        n_entries: 0,
        tail_entry_seqnum: 0,
        head_entry_seqnum: 0,
        entry_array_offset: 0,
        head_entry_realtime: 0,
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hex of a 128-bit id, as journalctl prints it.
pub fn id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
