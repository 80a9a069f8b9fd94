//! RFC 3339 timestamps with milliseconds, written into a stack buffer.
//!
//! Every event carries two timestamps (`TimestampLocal`, `TimestampUTC`). chrono's general
//! `to_rfc3339_opts` goes through the `fmt` machinery and allocates a `String` per call, which was
//! a visible share of the per-event encoding cost. The common case (years 0–9999, no leap second,
//! an offset of whole minutes) is written here digit by digit; anything else falls back to chrono,
//! so the text is always exactly what `to_rfc3339_opts(SecondsFormat::Millis, _)` produces.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::{Serialize, Serializer};

/// `2018-08-10T11:01:21.000+01:00`: the longest text of the fast path.
const FAST_LEN: usize = 29;

/// A formatted timestamp; derefs to its text.
pub enum Stamp {
    /// Written by [`fast`], `len` bytes of ASCII in `buf`.
    Fast { buf: [u8; FAST_LEN], len: u8 },
    /// Written by chrono (out-of-range years, leap seconds, offsets with seconds).
    Chrono(String),
}

impl Stamp {
    pub fn as_str(&self) -> &str {
        match self {
            // The fast path writes only ASCII digits and separators.
            Stamp::Fast { buf, len } => {
                std::str::from_utf8(&buf[..*len as usize]).unwrap_or_default()
            }
            Stamp::Chrono(s) => s,
        }
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The local time with its offset: `2018-08-10T11:01:21.000+01:00`.
pub fn local(t: &DateTime<FixedOffset>) -> Stamp {
    fast(&t.naive_local(), t.offset().local_minus_utc(), false)
        .unwrap_or_else(|| Stamp::Chrono(t.to_rfc3339_opts(SecondsFormat::Millis, false)))
}

/// The same instant in UTC: `2018-08-10T10:01:21.000Z`.
pub fn utc(t: &DateTime<FixedOffset>) -> Stamp {
    fast(&t.naive_utc(), 0, true).unwrap_or_else(|| {
        Stamp::Chrono(
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    })
}

/// Writes `dt` and an offset of `offset_secs` the way chrono's RFC 3339 writer does, or `None`
/// for the cases this does not handle.
fn fast(dt: &NaiveDateTime, offset_secs: i32, zulu: bool) -> Option<Stamp> {
    let year = dt.year();
    let nano = dt.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 || offset_secs % 60 != 0 {
        return None;
    }
    let mut buf = [0u8; FAST_LEN];
    let year = year as u32;
    put2(&mut buf, 0, year / 100);
    put2(&mut buf, 2, year % 100);
    buf[4] = b'-';
    put2(&mut buf, 5, dt.month());
    buf[7] = b'-';
    put2(&mut buf, 8, dt.day());
    buf[10] = b'T';
    put2(&mut buf, 11, dt.hour());
    buf[13] = b':';
    put2(&mut buf, 14, dt.minute());
    buf[16] = b':';
    put2(&mut buf, 17, dt.second());
    buf[19] = b'.';
    let millis = nano / 1_000_000;
    buf[20] = b'0' + (millis / 100) as u8;
    put2(&mut buf, 21, millis % 100);
    if zulu && offset_secs == 0 {
        buf[23] = b'Z';
        return Some(Stamp::Fast { buf, len: 24 });
    }
    buf[23] = if offset_secs < 0 { b'-' } else { b'+' };
    let minutes = offset_secs.unsigned_abs() / 60;
    put2(&mut buf, 24, minutes / 60);
    buf[26] = b':';
    put2(&mut buf, 27, minutes % 60);
    Some(Stamp::Fast {
        buf,
        len: FAST_LEN as u8,
    })
}

/// Two decimal digits of `n` (< 100) at `at`.
fn put2(buf: &mut [u8; FAST_LEN], at: usize, n: u32) {
    buf[at] = b'0' + (n / 10 % 10) as u8;
    buf[at + 1] = b'0' + (n % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn reference_local(t: &DateTime<FixedOffset>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    fn reference_utc(t: &DateTime<FixedOffset>) -> String {
        t.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn check(t: &DateTime<FixedOffset>) {
        assert_eq!(local(t).as_str(), reference_local(t), "local of {t:?}");
        assert_eq!(utc(t).as_str(), reference_utc(t), "utc of {t:?}");
    }

    #[test]
    fn matches_chrono_on_random_times_and_offsets() {
        let mut rng = fastrand::Rng::with_seed(0x7157_a3d1);
        for _ in 0..20_000 {
            // Years -50..10050 around the fast path's range; offsets of whole minutes mostly,
            // with seconds sometimes (chrono rounds those; the fallback must be taken).
            let secs = rng.i64(-63_900_000_000..255_000_000_000);
            let nanos = rng.u32(0..1_000_000_000);
            let offset = if rng.bool() {
                rng.i32(-1439..=1439) * 60
            } else {
                rng.i32(-86_399..=86_399)
            };
            let Some(tz) = FixedOffset::east_opt(offset) else {
                continue;
            };
            let Some(utc_time) = DateTime::from_timestamp(secs, nanos) else {
                continue;
            };
            check(&utc_time.with_timezone(&tz));
        }
    }

    #[test]
    fn matches_chrono_on_edges() {
        let offsets = [
            0,
            60,
            -60,
            3600,
            -3600,
            5 * 3600 + 30 * 60,
            -(9 * 3600 + 30 * 60),
            86_340,
        ];
        for offset in offsets {
            let tz = FixedOffset::east_opt(offset).unwrap();
            for (y, mo, d, h, mi, s, ns) in [
                (0, 1, 1, 0, 0, 0, 0),
                (1970, 1, 1, 0, 0, 0, 999_999),
                (1999, 12, 31, 23, 59, 59, 999_999_999),
                (2024, 2, 29, 12, 0, 0, 1_000_000),
                (9999, 12, 31, 23, 59, 59, 999_000_000),
                // A leap second: chrono prints second 60.
                (2016, 12, 31, 23, 59, 59, 1_500_000_000),
            ] {
                let naive = NaiveDate::from_ymd_opt(y, mo, d)
                    .unwrap()
                    .and_hms_nano_opt(h, mi, s, ns)
                    .unwrap();
                if let Some(t) = tz.from_local_datetime(&naive).single() {
                    check(&t);
                }
            }
        }
    }
}
