//! A minimal, read-only SQLite file reader: enough to walk one table's b-tree and read its
//! rows, which is what rpm's sqlite database (`rpmdb.sqlite`, rpm ≥ 4.16) needs. Linking the C
//! SQLite library would add about 1 MB to an agent that must stay small and cross-compile to
//! armv7; the part of the file format needed here is a few hundred lines
//! (<https://www.sqlite.org/fileformat2.html>).
//!
//! What is read: the 100-byte database header (page size, reserved bytes, text encoding,
//! database size), table b-tree pages (interior `0x05` and leaf `0x0d`), cells with their
//! varints, payloads spilled to overflow page chains, the record format, and the
//! `sqlite_schema` table on page 1 (to find a table's root page by name). Index b-trees,
//! free lists, pointer maps and the `-shm` file are never needed.
//!
//! **WAL.** rpm puts its database in WAL mode: while rpm runs (and after a crash) committed
//! transactions may be in `rpmdb.sqlite-wal` only. The WAL is read as SQLite's own recovery
//! reads it (the `-shm` index is not trusted): its header and each frame's salts and running
//! checksum are checked, frames are taken up to the last valid commit frame, and for each page
//! the latest committed copy replaces the main file's. A WAL whose header is invalid (or empty,
//! which is how rpm leaves it after a checkpoint) holds no committed frames, as for SQLite.
//! No lock is taken (the agent must never stall rpm): a read that races a checkpoint may see
//! pages of two states and fail as corrupt; the caller reports it and reads again later.
//!
//! The file is untrusted input (a root process on the host writes it; a power cut may leave it
//! torn). Every read is bounded and checked; nothing here panics or loops:
//! - the main file and the WAL are refused beyond [`MAX_FILE_BYTES`] each; pages are read one at
//!   a time with `pread` (memory: a few pages plus the row being read);
//! - every page (tree or overflow) is visited at most once per walk (a bit set over the page
//!   numbers): a cycle or a page shared between two places is a [`Error::Corrupt`], so a walk
//!   visits at most the database's page count;
//! - the tree is at most [`MAX_DEPTH`] deep (SQLite itself stops at 20);
//! - a row's payload is read only up to the caller's limit ([`Error::TooLarge`] beyond).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The largest main file (and WAL) read: rpm databases of desktop Fedora installs with a few
/// thousand packages are under 150 MiB.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The deepest table b-tree walked (SQLite refuses trees deeper than 20).
pub const MAX_DEPTH: usize = 32;

/// The file magic.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Random-access reads of a file or a buffer.
pub trait ReadAt {
    /// Fills `buf` from `offset`, or fails (a short read is an error).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| short())?;
        let end = start.checked_add(buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(short)?);
        Ok(())
    }
}

fn short() -> io::Error {
    io::Error::from(io::ErrorKind::UnexpectedEof)
}

/// Why a database could not be read.
#[derive(Debug)]
pub enum Error {
    /// Not an SQLite 3 file (wrong magic, shorter than its header).
    NotSqlite,
    /// Larger than a bound (the file, the WAL, or a row's payload): what and how large.
    TooLarge(&'static str, u64),
    /// The file contradicts itself (what was wrong).
    Corrupt(String),
    /// No table of that name in `sqlite_schema`.
    NoTable(String),
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotSqlite => write!(f, "not an SQLite 3 database"),
            Error::TooLarge(what, n) => write!(f, "{what} too large ({n} bytes)"),
            Error::Corrupt(why) => write!(f, "corrupt SQLite database: {why}"),
            Error::NoTable(t) => write!(f, "no table {t}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

fn corrupt(why: impl Into<String>) -> Error {
    Error::Corrupt(why.into())
}

/// One column value of a record. Text is in the database's encoding (see [`Db::is_text`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// A database opened for reading: the main file and, when one exists, its WAL.
pub struct Db<R> {
    main: R,
    main_len: u64,
    wal: Option<R>,
    page_size: u32,
    /// Page size less the reserved bytes at the end of each page.
    usable: u32,
    /// The database size in pages (from the last WAL commit when there is one).
    pages: u32,
    /// 1 UTF-8, 2 UTF-16le, 3 UTF-16be.
    encoding: u32,
    /// Page number → offset of its latest committed copy in the WAL.
    wal_pages: HashMap<u32, u64>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An SQLite varint (1 to 9 bytes, big-endian, 7 bits a byte, the 9th byte all 8 bits) and its
/// length; `None` when `b` ends first.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let c = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(c), 9));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn wal_checksum(big_endian: bool, data: &[u8], mut s: (u32, u32)) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().unwrap_or_default();
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s.0 = s.0.wrapping_add(word(&pair[..4])).wrapping_add(s.1);
        s.1 = s.1.wrapping_add(word(&pair[4..])).wrapping_add(s.0);
    }
    s
}

/// Pages seen in one walk (the Berkeley DB reader's too).
pub(super) struct Visited(Vec<u64>);

impl Visited {
    pub(super) fn new(pages: u32) -> Visited {
        Visited(vec![0; pages as usize / 64 + 1])
    }

    /// Marks `page`; false when it was already marked.
    pub(super) fn mark(&mut self, page: u32) -> bool {
        let (w, b) = (page as usize / 64, page % 64);
        match self.0.get_mut(w) {
            Some(word) if *word & (1 << b) == 0 => {
                *word |= 1 << b;
                true
            }
            _ => false,
        }
    }
}

impl<R: ReadAt> Db<R> {
    /// Opens a database from its main file (`main_len` bytes) and its WAL when there is one.
    pub fn open(main: R, main_len: u64, wal: Option<(R, u64)>) -> Result<Db<R>, Error> {
        if main_len > MAX_FILE_BYTES {
            return Err(Error::TooLarge("database", main_len));
        }
        if main_len < 100 {
            return Err(Error::NotSqlite);
        }
        let mut h = [0u8; 100];
        main.read_exact_at(&mut h, 0).map_err(Error::Io)?;
        if &h[..16] != MAGIC {
            return Err(Error::NotSqlite);
        }
        let page_size = match be16(&h, 16).unwrap_or(0) {
            1 => 65536,
            n => u32::from(n),
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(format!("page size {page_size}")));
        }
        let usable = page_size - u32::from(h[20]);
        if usable < 480 {
            return Err(corrupt(format!("usable page size {usable}")));
        }
        let encoding = match be32(&h, 56).unwrap_or(0) {
            0 => 1,
            e @ 1..=3 => e,
            e => return Err(corrupt(format!("text encoding {e}"))),
        };
        // The size in the header holds when the change counter matches "version valid for"
        // (files written by SQLite ≥ 3.7.0); else the file's length says it.
        let in_header = be32(&h, 28).unwrap_or(0);
        let mut pages = if in_header != 0 && h[24..28] == h[92..96] {
            in_header
        } else {
            (main_len / u64::from(page_size)) as u32
        };
        let mut wal_pages = HashMap::new();
        let mut wal_file = None;
        if let Some((wal, wal_len)) = wal {
            if wal_len > MAX_FILE_BYTES {
                return Err(Error::TooLarge("WAL", wal_len));
            }
            if let Some(size) = read_wal(&wal, wal_len, page_size, &mut wal_pages)? {
                pages = size;
            }
            wal_file = Some(wal);
        }
        if u64::from(pages) * u64::from(page_size) > MAX_FILE_BYTES {
            return Err(Error::TooLarge(
                "database",
                u64::from(pages) * u64::from(page_size),
            ));
        }
        Ok(Db {
            main,
            main_len,
            wal: wal_file,
            page_size,
            usable,
            pages,
            encoding,
            wal_pages,
        })
    }

    /// The database size in pages.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Pages whose current copy is in the WAL.
    pub fn pages_in_wal(&self) -> usize {
        self.wal_pages.len()
    }

    /// Whether `text` (a [`Value::Text`]) is `s`, in the database's text encoding.
    pub fn is_text(&self, text: &[u8], s: &str) -> bool {
        match self.encoding {
            2 => s
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .eq(text.iter().copied()),
            3 => s
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .eq(text.iter().copied()),
            _ => text == s.as_bytes(),
        }
    }

    /// Page `n` (1-based), from the WAL when it holds a committed copy.
    fn page(&self, n: u32) -> Result<Vec<u8>, Error> {
        if n == 0 || n > self.pages {
            return Err(corrupt(format!(
                "page {n} outside the database ({} pages)",
                self.pages
            )));
        }
        let mut buf = vec![0u8; self.page_size as usize];
        if let (Some(&at), Some(wal)) = (self.wal_pages.get(&n), &self.wal) {
            wal.read_exact_at(&mut buf, at).map_err(Error::Io)?;
            return Ok(buf);
        }
        let at = u64::from(n - 1) * u64::from(self.page_size);
        if at + u64::from(self.page_size) > self.main_len {
            return Err(corrupt(format!("page {n} beyond the end of the file")));
        }
        self.main.read_exact_at(&mut buf, at).map_err(Error::Io)?;
        Ok(buf)
    }

    /// The root page of table `name`, from `sqlite_schema` (page 1).
    pub fn table_root(&self, name: &str) -> Result<u32, Error> {
        let mut root = None;
        self.for_each_row(1, 1024 * 1024, |_, record| {
            let is =
                |col, s| matches!(column(record, col), Ok(Value::Text(t)) if self.is_text(t, s));
            if is(0, "table") && is(1, name) {
                root = Some(match column(record, 3) {
                    Ok(Value::Int(n)) if n > 0 && n <= i64::from(u32::MAX) => Ok(n as u32),
                    other => Err(corrupt(format!("root page of {name}: {other:?}"))),
                });
                return false;
            }
            true
        })?;
        root.unwrap_or_else(|| Err(Error::NoTable(name.to_string())))
    }

    /// Calls `f` with the rowid and record of each row of the table whose b-tree starts at
    /// `root`, in rowid order, until `f` returns false. A payload larger than `max_payload` is
    /// [`Error::TooLarge`]; any inconsistency ends the walk with an error.
    pub fn for_each_row(
        &self,
        root: u32,
        max_payload: u64,
        mut f: impl FnMut(i64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        let mut visited = Visited::new(self.pages);
        // Interior pages being walked: their children in order, and the next one to enter.
        let mut stack: Vec<(Vec<u32>, usize)> = Vec::new();
        let mut next = Some(root);
        loop {
            if let Some(page_no) = next.take() {
                if stack.len() >= MAX_DEPTH {
                    return Err(corrupt(format!("b-tree deeper than {MAX_DEPTH}")));
                }
                if !visited.mark(page_no) {
                    return Err(corrupt(format!("page {page_no} reached twice")));
                }
                let page = self.page(page_no)?;
                match self.table_page(page_no, &page)? {
                    TablePage::Interior(children) => stack.push((children, 0)),
                    TablePage::Leaf(cells) => {
                        for at in cells {
                            let (rowid, payload) =
                                self.leaf_cell(&page, at, max_payload, &mut visited)?;
                            if !f(rowid, &payload) {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            let Some((children, i)) = stack.last_mut() else {
                return Ok(());
            };
            match children.get(*i) {
                Some(&child) => {
                    *i += 1;
                    next = Some(child);
                }
                None => {
                    stack.pop();
                }
            }
        }
    }

    /// A table b-tree page: its children (interior) or its cells' offsets (leaf).
    fn table_page(&self, page_no: u32, page: &[u8]) -> Result<TablePage, Error> {
        let usable = self.usable as usize;
        let h = if page_no == 1 { 100 } else { 0 };
        let kind = page[h];
        let header = match kind {
            0x05 => 12,
            0x0d => 8,
            k => {
                return Err(corrupt(format!(
                    "page {page_no}: type {k:#04x} is not a table b-tree page"
                )));
            }
        };
        let cells = be16(page, h + 3).unwrap_or(0) as usize;
        let array = h + header;
        if array + 2 * cells > usable {
            return Err(corrupt(format!("page {page_no}: {cells} cells do not fit")));
        }
        let offsets = (0..cells).map(|i| be16(page, array + 2 * i).unwrap_or(0) as usize);
        if kind == 0x0d {
            return Ok(TablePage::Leaf(offsets.collect()));
        }
        let mut children = Vec::with_capacity(cells + 1);
        for at in offsets {
            match be32(page, at) {
                Some(child) if at + 4 <= usable => children.push(child),
                _ => return Err(corrupt(format!("page {page_no}: cell at {at} outside"))),
            }
        }
        children.push(be32(page, h + 8).unwrap_or(0));
        Ok(TablePage::Interior(children))
    }

    /// A table leaf cell at `at`: its rowid and whole payload (overflow pages followed).
    fn leaf_cell(
        &self,
        page: &[u8],
        at: usize,
        max_payload: u64,
        visited: &mut Visited,
    ) -> Result<(i64, Vec<u8>), Error> {
        let usable = self.usable as usize;
        let cell = page
            .get(at..usable)
            .ok_or_else(|| corrupt(format!("cell at {at} outside its page")))?;
        let (size, n1) = varint(cell).ok_or_else(|| corrupt("cell header cut"))?;
        let (rowid, n2) = varint(&cell[n1..]).ok_or_else(|| corrupt("cell header cut"))?;
        let rowid = rowid as i64;
        if size > max_payload {
            return Err(Error::TooLarge("row", size));
        }
        let body = &cell[n1 + n2..];
        // How much of the payload is on the leaf page (the file format's formula).
        let u = self.usable as u64;
        let x = u - 35;
        let local = if size <= x {
            size
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + (size - m) % (u - 4);
            if k <= x { k } else { m }
        } as usize;
        let on_page = body
            .get(..local)
            .ok_or_else(|| corrupt(format!("row {rowid}: payload outside its page")))?;
        let mut payload = Vec::with_capacity(size as usize);
        payload.extend_from_slice(on_page);
        if local as u64 == size {
            return Ok((rowid, payload));
        }
        let mut next = be32(body, local)
            .ok_or_else(|| corrupt(format!("row {rowid}: overflow pointer outside its page")))?;
        while (payload.len() as u64) < size {
            if next == 0 {
                return Err(corrupt(format!("row {rowid}: overflow chain ends early")));
            }
            if !visited.mark(next) {
                return Err(corrupt(format!(
                    "row {rowid}: overflow page {next} reached twice"
                )));
            }
            let page = self.page(next)?;
            next = be32(&page, 0).unwrap_or(0);
            let take = (size - payload.len() as u64).min(u - 4) as usize;
            payload.extend_from_slice(&page[4..4 + take]);
        }
        Ok((rowid, payload))
    }
}

enum TablePage {
    Interior(Vec<u32>),
    Leaf(Vec<usize>),
}

/// Reads a WAL's committed frames into `pages` (page → offset of its data in the WAL) and
/// returns the database size of the last commit, or `None` when it has no committed frame.
fn read_wal<R: ReadAt>(
    wal: &R,
    len: u64,
    page_size: u32,
    pages: &mut HashMap<u32, u64>,
) -> Result<Option<u32>, Error> {
    let mut h = [0u8; 32];
    if len < 32 {
        return Ok(None);
    }
    wal.read_exact_at(&mut h, 0).map_err(Error::Io)?;
    let magic = be32(&h, 0).unwrap_or(0);
    if magic & !1 != 0x377f_0682 || be32(&h, 4) != Some(3_007_000) {
        // SQLite ignores a WAL without a valid header, as if empty.
        return Ok(None);
    }
    let big_endian = magic & 1 == 1;
    let sum = wal_checksum(big_endian, &h[..24], (0, 0));
    if (Some(sum.0), Some(sum.1)) != (be32(&h, 24), be32(&h, 28)) {
        return Ok(None);
    }
    if be32(&h, 8) != Some(page_size) {
        return Err(corrupt(format!(
            "the WAL's page size {:?} is not the database's {page_size}",
            be32(&h, 8)
        )));
    }
    let salts = &h[16..24];
    let frame = 24 + u64::from(page_size);
    let mut sum = sum;
    let mut pending: HashMap<u32, u64> = HashMap::new();
    let mut size = None;
    let mut data = vec![0u8; page_size as usize];
    let mut at = 32u64;
    while at + frame <= len {
        let mut fh = [0u8; 24];
        wal.read_exact_at(&mut fh, at).map_err(Error::Io)?;
        wal.read_exact_at(&mut data, at + 24).map_err(Error::Io)?;
        if &fh[8..16] != salts {
            break;
        }
        sum = wal_checksum(big_endian, &fh[..8], sum);
        sum = wal_checksum(big_endian, &data, sum);
        if (Some(sum.0), Some(sum.1)) != (be32(&fh, 16), be32(&fh, 20)) {
            break;
        }
        let page = be32(&fh, 0).unwrap_or(0);
        if page == 0 {
            break;
        }
        pending.insert(page, at + 24);
        let commit = be32(&fh, 4).unwrap_or(0);
        if commit != 0 {
            pages.extend(pending.drain());
            size = Some(commit);
        }
        at += frame;
    }
    Ok(size)
}

/// Column `index` of a record (the format of a table row's payload).
pub fn column(record: &[u8], index: usize) -> Result<Value<'_>, Error> {
    let (header_len, mut at) = varint(record).ok_or_else(|| corrupt("record header cut"))?;
    let header_len = usize::try_from(header_len)
        .ok()
        .filter(|&n| n <= record.len() && n >= at)
        .ok_or_else(|| corrupt("record header longer than the record"))?;
    let mut body = header_len;
    let mut i = 0;
    while at < header_len {
        let (serial, n) =
            varint(&record[at..header_len]).ok_or_else(|| corrupt("record header cut"))?;
        at += n;
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(corrupt("reserved serial type")),
            n => usize::try_from((n - 12) / 2).unwrap_or(usize::MAX),
        };
        let value = body
            .checked_add(size)
            .and_then(|end| record.get(body..end))
            .ok_or_else(|| corrupt("record value outside the record"))?;
        if i == index {
            return Ok(match serial {
                0 => Value::Null,
                8 => Value::Int(0),
                9 => Value::Int(1),
                1..=6 => {
                    // Big-endian two's complement, sign-extended.
                    let mut v: i64 = if value[0] & 0x80 != 0 { -1 } else { 0 };
                    for &b in value {
                        v = (v << 8) | i64::from(b);
                    }
                    Value::Int(v)
                }
                7 => Value::Float(f64::from_bits(u64::from_be_bytes(
                    value.try_into().unwrap_or_default(),
                ))),
                n if n % 2 == 0 => Value::Blob(value),
                _ => Value::Text(value),
            });
        }
        body += size;
        i += 1;
    }
    // Columns added by ALTER TABLE after the row was written read as NULL.
    Ok(Value::Null)
}
