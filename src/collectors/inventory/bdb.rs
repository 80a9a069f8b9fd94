//! A minimal, read-only reader of Berkeley DB **hash** databases: enough to list every key and
//! value of rpm's `Packages` (rpm < 4.16, RHEL/CentOS 7 and 8, older Yocto and SUSE), whose key
//! is a header instance number (4 bytes, in the byte order of the host that wrote it) and whose
//! value is a header blob ([`super::rpm::parse_header`]). Linking libdb would mean a C library
//! (and its licence) for one read-only walk; the part of the on-disk format needed is small.
//!
//! The format, as Berkeley DB 4.x/5.x writes it (`dbinc/db_page.h`, `dbinc/hash.h`):
//! - The file is a sequence of pages of one size (512 to 64 KiB, a power of two), all of their
//!   integers in the byte order of the host that created the file. Page 0 is the **meta page**:
//!   magic `0x061561` at byte 12 (which also tells the byte order), hash version at 16 (8 for
//!   Berkeley DB 4.3–4.5, 9 for 4.6–5.3, 10 for 6.x), page size at 20, encryption at 24, page
//!   type 8 at 25, flags at 26 (bit 0: page checksums) and 48 (`DB_HASH_SUBDB`), the last page
//!   number at 32, the highest bucket at 72 and the `spares` table (32 entries) at 96.
//! - Bucket `b` starts at page `b + spares[⌈log2(b + 1)⌉]`; its pages (type 13, or 2 before
//!   4.6) are chained by `next_pgno`. Every page starts with a 26-byte header (`pgno` at 8,
//!   `next_pgno` at 16, `entries` at 20, `hf_offset` at 22, type at 25; 32 bytes with
//!   checksums), then `entries` 16-bit item offsets, in key/value pairs. Items are packed from
//!   the end of the page down, so item `i` ends where item `i - 1` starts (item 0 at the page's
//!   end). An item's first byte is its type: `H_KEYDATA` (1) holds the bytes inline,
//!   `H_OFFPAGE` (3) names the first overflow page and the total length (12 bytes: type, 3
//!   unused, page, length).
//! - Overflow pages (type 7) hold `hf_offset` bytes of the item after their header and chain
//!   by `next_pgno`.
//! - A bucket page that was allocated but never written (zeros: Berkeley DB writes a bucket's
//!   page when it first splits or fills it, and a new database's first buckets may have
//!   neither) is an empty bucket, as libdb (and so rpm < 4.16, and `db_dump`) reads it; rpm
//!   ≥ 4.16's own `bdb_ro` reader refuses such a file. Only the first page of a bucket may be
//!   zeros: a page of zeros reached through a chain is corrupt.
//!
//! Duplicate items (`H_DUPLICATE`, `H_OFFDUP`), sub-databases, partitions and encryption are
//! never in rpm's database; they are refused as [`Error::Unsupported`]. Checksums are not
//! verified (Berkeley DB verifies them; a torn page is caught, if at all, by the structure).
//!
//! Walk order is Berkeley DB's cursor order (bucket by bucket, page by page, item by item), the
//! order in which `rpm -qa` and `db_dump` list a database.
//!
//! The file is untrusted input (a root process on the host writes it; a power cut may leave it
//! torn). Every read is bounded and checked; nothing here panics or loops:
//! - a file beyond [`MAX_FILE_BYTES`] (that of the SQLite reader) is refused; pages are read
//!   one at a time (memory: two pages plus the value being read);
//! - every offset and length is checked against its page, every page number against the
//!   database, and a page's own number must be the one it was reached as;
//! - every page (bucket or overflow) is visited at most once per walk (a bit set over the page
//!   numbers): a cycle, or a page shared by two chains, is [`Error::Corrupt`], so a walk reads
//!   at most the database's page count;
//! - a key or value is read only up to the caller's limit ([`Error::TooLarge`] beyond).

pub use super::sqlite::ReadAt;
use super::sqlite::Visited;
use std::borrow::Cow;
use std::fmt;
use std::io;

/// The largest file read (the SQLite reader's bound): RHEL 7's `Packages` with a few thousand
/// packages is 100 to 200 MiB.
pub const MAX_FILE_BYTES: u64 = super::sqlite::MAX_FILE_BYTES;

/// The hash access method's magic, and the B-tree's (rpm's indexes, never `Packages`).
const HASH_MAGIC: u32 = 0x0006_1561;
const BTREE_MAGIC: u32 = 0x0005_3162;

/// Page types.
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;

/// Hash item types.
const H_KEYDATA: u8 = 1;
const H_DUPLICATE: u8 = 2;
const H_OFFPAGE: u8 = 3;
const H_OFFDUP: u8 = 4;

/// The page header, without and with checksums (`SIZEOF_PAGE`, `+ sizeof(PG_CHKSUM)`).
const PAGE_HEADER: usize = 26;
const PAGE_HEADER_CHKSUM: usize = 32;

/// The meta page is read as its first 512 bytes (`DBMETASIZE`, the smallest page).
const META: usize = 512;

/// Why a database could not be read.
#[derive(Debug)]
pub enum Error {
    /// Not a Berkeley DB file (no hash or B-tree magic; shorter than 16 bytes).
    NotBdb,
    /// A Berkeley DB file of another access method (what).
    NotHash(&'static str),
    /// Larger than a bound (the file, a key or a value): what and how large.
    TooLarge(&'static str, u64),
    /// A valid feature rpm's database never uses (what).
    Unsupported(String),
    /// The file contradicts itself (what was wrong).
    Corrupt(String),
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotBdb => write!(f, "not a BerkeleyDB database"),
            Error::NotHash(what) => write!(f, "a BerkeleyDB {what} database, not hash"),
            Error::TooLarge(what, n) => write!(f, "{what} too large ({n} bytes)"),
            Error::Unsupported(what) => write!(f, "BerkeleyDB {what}: not supported"),
            Error::Corrupt(why) => write!(f, "corrupt BerkeleyDB database: {why}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

fn corrupt(why: impl Into<String>) -> Error {
    Error::Corrupt(why.into())
}

/// A hash database opened for reading.
pub struct Db<R> {
    file: R,
    len: u64,
    big_endian: bool,
    version: u32,
    page_size: u32,
    /// Where a page's item offsets (or an overflow page's data) start.
    header: usize,
    last_pgno: u32,
    max_bucket: u32,
    spares: [u32; 32],
}

/// An item of a hash page: its bytes, or where they are.
enum Item<'a> {
    Inline(&'a [u8]),
    OffPage { pgno: u32, len: u32 },
}

impl<R: ReadAt> Db<R> {
    /// Opens a database from its file (`len` bytes): reads and checks the meta page.
    pub fn open(file: R, len: u64) -> Result<Db<R>, Error> {
        if len > MAX_FILE_BYTES {
            return Err(Error::TooLarge("database", len));
        }
        if len < 16 {
            return Err(Error::NotBdb);
        }
        let mut meta = [0u8; META];
        let head = &mut meta[..len.min(META as u64) as usize];
        file.read_exact_at(head, 0).map_err(Error::Io)?;
        let magic: [u8; 4] = meta[12..16].try_into().unwrap_or_default();
        let big_endian = if u32::from_le_bytes(magic) == HASH_MAGIC {
            false
        } else if u32::from_be_bytes(magic) == HASH_MAGIC {
            true
        } else if u32::from_le_bytes(magic) == BTREE_MAGIC
            || u32::from_be_bytes(magic) == BTREE_MAGIC
        {
            return Err(Error::NotHash("btree"));
        } else {
            return Err(Error::NotBdb);
        };
        if len < META as u64 {
            return Err(corrupt(format!("{len} bytes, shorter than its meta page")));
        }
        let u32_at = |at: usize| read_u32(big_endian, &meta, at).unwrap_or(0);
        let version = u32_at(16);
        if !(8..=10).contains(&version) {
            return Err(Error::Unsupported(format!("hash version {version}")));
        }
        let page_size = u32_at(20);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(format!("page size {page_size}")));
        }
        if meta[25] != P_HASHMETA {
            return Err(corrupt(format!("meta page of type {}", meta[25])));
        }
        if meta[24] != 0 {
            return Err(Error::Unsupported("encryption".into()));
        }
        // DBMETA_PART_RANGE, DBMETA_PART_CALLBACK: the data is in other files.
        if meta[26] & 0x06 != 0 {
            return Err(Error::Unsupported("partitions".into()));
        }
        if u32_at(48) & 0x02 != 0 {
            return Err(Error::Unsupported("sub-databases".into()));
        }
        let header = if meta[26] & 0x01 != 0 {
            PAGE_HEADER_CHKSUM
        } else {
            PAGE_HEADER
        };
        let last_pgno = u32_at(32);
        let size = (u64::from(last_pgno) + 1) * u64::from(page_size);
        if size > MAX_FILE_BYTES {
            return Err(Error::TooLarge("database", size));
        }
        // Berkeley DB extends the file by writing the last page it allocates: a shorter file
        // was cut.
        if size > len {
            return Err(corrupt(format!(
                "{len} bytes, shorter than its {} pages",
                u64::from(last_pgno) + 1
            )));
        }
        let max_bucket = u32_at(72);
        if max_bucket >= last_pgno {
            return Err(corrupt(format!(
                "{} buckets in {last_pgno} pages",
                u64::from(max_bucket) + 1
            )));
        }
        let mut spares = [0u32; 32];
        for (i, s) in spares.iter_mut().enumerate() {
            *s = u32_at(96 + 4 * i);
        }
        Ok(Db {
            file,
            len,
            big_endian,
            version,
            page_size,
            header,
            last_pgno,
            max_bucket,
            spares,
        })
    }

    /// Whether the file's integers (and so, for rpm, its keys) are big-endian.
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// The hash version (8, 9 or 10).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The number of the last page (the database has one more page, the meta page 0).
    pub fn last_pgno(&self) -> u32 {
        self.last_pgno
    }

    /// The number of hash buckets.
    pub fn buckets(&self) -> u64 {
        u64::from(self.max_bucket) + 1
    }

    /// A 32-bit integer of the file's byte order (a key, for rpm).
    pub fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        read_u32(self.big_endian, b, at)
    }

    fn u16(&self, b: &[u8], at: usize) -> usize {
        let two: [u8; 2] = b
            .get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        usize::from(if self.big_endian {
            u16::from_be_bytes(two)
        } else {
            u16::from_le_bytes(two)
        })
    }

    /// Reads page `n` into `buf` (one page long) and marks it visited.
    fn page(&self, n: u32, buf: &mut [u8], visited: &mut Visited) -> Result<(), Error> {
        if n == 0 || n > self.last_pgno {
            return Err(corrupt(format!(
                "page {n} outside the database (last page {})",
                self.last_pgno
            )));
        }
        let at = u64::from(n) * u64::from(self.page_size);
        if at + u64::from(self.page_size) > self.len {
            return Err(corrupt(format!("page {n} beyond the end of the file")));
        }
        if !visited.mark(n) {
            return Err(corrupt(format!("page {n} reached twice")));
        }
        self.file.read_exact_at(buf, at).map_err(Error::Io)
    }

    /// The first page of bucket `b` (`BUCKET_TO_PAGE`).
    fn bucket_page(&self, b: u32) -> Result<u32, Error> {
        let log2 = (u64::from(b) + 1).next_power_of_two().trailing_zeros() as usize;
        self.spares
            .get(log2)
            .and_then(|s| b.checked_add(*s))
            .ok_or_else(|| corrupt(format!("bucket {b}: spare pages out of range")))
    }

    /// Calls `f` with each key and value, in Berkeley DB's cursor order, until `f` returns
    /// false. A key or value longer than `max_item` is [`Error::TooLarge`]; any inconsistency
    /// ends the walk with an error.
    pub fn for_each(
        &self,
        max_item: u64,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), Error> {
        let mut visited = Visited::new(self.last_pgno);
        let mut page = vec![0u8; self.page_size as usize];
        let mut overflow = vec![0u8; self.page_size as usize];
        for bucket in 0..=self.max_bucket {
            let mut n = self.bucket_page(bucket)?;
            let mut first = true;
            loop {
                self.page(n, &mut page, &mut visited)?;
                if first && page.iter().all(|&b| b == 0) {
                    // Allocated, never written: Berkeley DB reads it as an empty page.
                    break;
                }
                let items = self.hash_page(n, &page)?;
                for pair in items.chunks_exact(2) {
                    let key = self.resolve(n, &pair[0], max_item, &mut overflow, &mut visited)?;
                    let value = self.resolve(n, &pair[1], max_item, &mut overflow, &mut visited)?;
                    if !f(&key, &value) {
                        return Ok(());
                    }
                }
                n = self.u32(&page, 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                first = false;
            }
        }
        Ok(())
    }

    /// The items of hash page `n`, in order (key, value, key, value, …).
    fn hash_page<'p>(&self, n: u32, page: &'p [u8]) -> Result<Vec<Item<'p>>, Error> {
        let kind = page[25];
        if kind != P_HASH && kind != P_HASH_UNSORTED {
            return Err(corrupt(format!("page {n}: type {kind} is not a hash page")));
        }
        if self.u32(page, 8) != Some(n) {
            return Err(corrupt(format!(
                "page {n} says it is page {:?}",
                self.u32(page, 8)
            )));
        }
        let entries = self.u16(page, 20);
        let index_end = self.header + 2 * entries;
        if !entries.is_multiple_of(2) || index_end > page.len() {
            return Err(corrupt(format!("page {n}: {entries} items")));
        }
        let mut items = Vec::with_capacity(entries);
        let mut end = page.len();
        for i in 0..entries {
            let at = self.u16(page, self.header + 2 * i);
            if at < index_end || at >= end {
                return Err(corrupt(format!("page {n}: item {i} at {at}")));
            }
            let item = &page[at..end];
            end = at;
            items.push(match item[0] {
                H_KEYDATA => Item::Inline(&item[1..]),
                H_OFFPAGE if item.len() == 12 => Item::OffPage {
                    pgno: self.u32(item, 4).unwrap_or(0),
                    len: self.u32(item, 8).unwrap_or(0),
                },
                H_DUPLICATE | H_OFFDUP => {
                    return Err(Error::Unsupported(format!(
                        "duplicate data items (page {n})"
                    )));
                }
                t => {
                    return Err(corrupt(format!(
                        "page {n}: item {i} of type {t}, {} bytes",
                        item.len()
                    )));
                }
            });
        }
        Ok(items)
    }

    /// The bytes of an item of hash page `n` (an overflow chain read into a new buffer).
    fn resolve<'p>(
        &self,
        n: u32,
        item: &Item<'p>,
        max_item: u64,
        page: &mut [u8],
        visited: &mut Visited,
    ) -> Result<Cow<'p, [u8]>, Error> {
        let (mut next, len) = match *item {
            Item::Inline(b) if b.len() as u64 > max_item => {
                return Err(Error::TooLarge("item", b.len() as u64));
            }
            Item::Inline(b) => return Ok(Cow::Borrowed(b)),
            Item::OffPage { pgno, len } => (pgno, u64::from(len)),
        };
        if len > max_item {
            return Err(Error::TooLarge("item", len));
        }
        let room = (self.page_size as usize - self.header) as u64;
        if len == 0 || len > u64::from(self.last_pgno) * room {
            return Err(corrupt(format!(
                "page {n}: an overflow item of {len} bytes"
            )));
        }
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            if next == 0 {
                return Err(corrupt(format!(
                    "page {n}: overflow chain ends after {} of {len} bytes",
                    out.len()
                )));
            }
            self.page(next, page, visited)?;
            if page[25] != P_OVERFLOW || self.u32(page, 8) != Some(next) {
                return Err(corrupt(format!(
                    "page {next}: type {}, page {:?}, in an overflow chain",
                    page[25],
                    self.u32(page, 8)
                )));
            }
            let on_page = self.u16(page, 22);
            let rest = len - out.len() as u64;
            if on_page == 0 || self.header + on_page > page.len() || on_page as u64 > rest {
                return Err(corrupt(format!(
                    "overflow page {next}: {on_page} bytes ({rest} left)"
                )));
            }
            out.extend_from_slice(&page[self.header..self.header + on_page]);
            next = self.u32(page, 16).unwrap_or(0);
        }
        Ok(Cow::Owned(out))
    }
}

fn read_u32(big_endian: bool, b: &[u8], at: usize) -> Option<u32> {
    let four: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(four)
    } else {
        u32::from_le_bytes(four)
    })
}
