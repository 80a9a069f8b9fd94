//! rpm package headers, as rpm keeps them in its database (one header blob per installed
//! package, the `blob` column of the `Packages` table of `rpmdb.sqlite`).
//!
//! A header blob (rpm's `headerExport`, without the 8-byte magic of a header in a package
//! file): `il` and `dl` (big-endian 32-bit: index entry count, data store length), `il` index
//! entries of 16 bytes (`tag`, `type`, `offset` into the data store, `count`, all big-endian),
//! then the `dl`-byte data store. Only a handful of tags are read: NAME (1000), VERSION (1001),
//! RELEASE (1002), EPOCH (1003), ARCH (1022) and SOURCERPM (1044, for the source package).
//! Region tags and the other entries are skipped; when a tag appears twice the later entry wins,
//! as entries appended after the immutable region replace those in it when rpm loads a header.
//!
//! The blob is untrusted: counts and offsets are checked against the blob (rpm's own limits:
//! at most 65,535 entries, a data store under 256 MiB), strings must end inside the data store,
//! and every field kept is cut at 256 bytes. Nothing here panics.

use super::parse::{Manager, Package, bounded};
use std::fmt;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's `HEADER_TAGS_MAX` and `HEADER_DATA_MAX`.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;

/// Why a header blob was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError(pub String);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad rpm header: {}", self.0)
    }
}

impl std::error::Error for HeaderError {}

fn bad(why: impl Into<String>) -> HeaderError {
    HeaderError(why.into())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The package a header blob describes. Its version is rpm's EVR, `[epoch:]version-release`
/// (the epoch whenever the header has one, 0 too, as `rpm -q --qf '%{EVR}'` prints it).
pub fn parse_header(blob: &[u8]) -> Result<Package, HeaderError> {
    let il = be32(blob, 0).ok_or_else(|| bad("shorter than 8 bytes"))?;
    let dl = be32(blob, 4).ok_or_else(|| bad("shorter than 8 bytes"))?;
    if il == 0 || il > MAX_ENTRIES {
        return Err(bad(format!("{il} index entries")));
    }
    if dl > MAX_DATA {
        return Err(bad(format!("data store of {dl} bytes")));
    }
    let data_at = 8 + 16 * il as usize;
    let data = blob.get(data_at..data_at + dl as usize).ok_or_else(|| {
        bad(format!(
            "{} bytes for {il} entries and {dl} bytes of data",
            blob.len()
        ))
    })?;
    // (type, offset, count) of each tag read, the last entry of a tag winning.
    let mut found: [Option<(u32, u32, u32)>; 6] = [None; 6];
    let wanted = [
        TAG_NAME,
        TAG_VERSION,
        TAG_RELEASE,
        TAG_EPOCH,
        TAG_ARCH,
        TAG_SOURCERPM,
    ];
    for i in 0..il as usize {
        let e = 8 + 16 * i;
        let (Some(tag), Some(ty), Some(off), Some(count)) = (
            be32(blob, e),
            be32(blob, e + 4),
            be32(blob, e + 8),
            be32(blob, e + 12),
        ) else {
            return Err(bad("index cut"));
        };
        if let Some(slot) = wanted.iter().position(|&w| w == tag) {
            found[slot] = Some((ty, off, count));
        }
    }
    let string = |slot: usize| -> Result<Option<String>, HeaderError> {
        let Some((ty, off, count)) = found[slot] else {
            return Ok(None);
        };
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) || count == 0 {
            return Err(bad(format!("tag {} of type {ty}", wanted[slot])));
        }
        // The first string (an array's first element, an i18n string's C locale).
        let rest = data
            .get(off as usize..)
            .ok_or_else(|| bad(format!("tag {} at {off}, outside the data", wanted[slot])))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad(format!("tag {} not terminated", wanted[slot])))?;
        Ok(Some(bounded(&String::from_utf8_lossy(&rest[..end]))))
    };
    let name = string(0)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no name"))?;
    let version = string(1)?.ok_or_else(|| bad(format!("{name}: no version")))?;
    let release = string(2)?;
    let arch = string(4)?;
    let source_rpm = string(5)?;
    let epoch = match found[3] {
        None => None,
        Some((TYPE_INT32, off, count)) if count >= 1 => Some(
            be32(data, off as usize)
                .ok_or_else(|| bad(format!("{name}: epoch outside the data")))?,
        ),
        Some((ty, ..)) => return Err(bad(format!("{name}: epoch of type {ty}"))),
    };
    let mut evr = String::new();
    if let Some(e) = epoch {
        evr = format!("{e}:");
    }
    evr.push_str(&version);
    if let Some(r) = release {
        evr.push('-');
        evr.push_str(&r);
    }
    let source = source_rpm
        .as_deref()
        .and_then(source_name)
        .map(bounded)
        .filter(|s| !s.is_empty() && *s != name);
    Ok(Package {
        manager: Manager::Rpm,
        name,
        version: bounded(&evr),
        architecture: arch.unwrap_or_default(),
        source,
    })
}

/// The source package's name in a SOURCERPM (`openssl-3.0.7-2.fc38.src.rpm` → `openssl`):
/// the file name without its `.src.rpm` (or `.nosrc.rpm`) and its last two `-` parts.
pub fn source_name(source_rpm: &str) -> Option<&str> {
    let stem = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    let (nv, _release) = stem.rsplit_once('-')?;
    let (n, _version) = nv.rsplit_once('-')?;
    Some(n)
}
