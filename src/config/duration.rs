//! ISO-8601 durations, the twin's format for every interval setting (`PT7M`, `P1DT2H`).
//!
//! The retired agents' twin schema allows the whole `P[nY][nM][nW][nD][T[nH][nM][nS]]` grammar,
//! so we accept it all, or twins written for them would start failing. An interval needs a fixed length while calendar
//! units have none, so a year counts as 365 days and a month as 30 days. Only the last component
//! may have a fraction (`PT1.5H`, `PT0.5S`), as ISO-8601 says; `.` and `,` are both decimal signs.

use std::time::Duration;

const SECOND: u128 = 1_000_000_000;
const MINUTE: u128 = 60 * SECOND;
const HOUR: u128 = 60 * MINUTE;
const DAY: u128 = 24 * HOUR;

/// Units of the date part, in the order the grammar allows them.
const DATE_UNITS: [(char, u128); 4] = [
    ('Y', 365 * DAY),
    ('M', 30 * DAY),
    ('W', 7 * DAY),
    ('D', DAY),
];
/// Units after the `T`.
const TIME_UNITS: [(char, u128); 3] = [('H', HOUR), ('M', MINUTE), ('S', SECOND)];

/// The longest accepted duration, 100 years. Anything longer is a typo, and the bound keeps
/// `Instant::now() + interval` in the components far from overflowing (which would panic).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Fraction digits beyond this many cannot change the result by a nanosecond (a year is
/// 3.2e16 ns), and dropping them keeps the arithmetic inside `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses an ISO-8601 duration (letters in any case). Zero, negative, malformed and longer than
/// 100 years are errors; the message says which, quoting the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let shown = quote(s);
    let syntax = || format!("expected an ISO-8601 duration such as PT7M, got {shown}");
    let too_long = || {
        format!(
            "duration {shown} is longer than the maximum {}",
            format_duration(MAX_DURATION)
        )
    };
    if s.starts_with('-') {
        return Err(format!("duration {shown} is negative"));
    }
    let upper = s.to_ascii_uppercase();
    let rest = upper.strip_prefix('P').ok_or_else(syntax)?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let fail = |e: ParseError| match e {
        ParseError::Syntax => syntax(),
        ParseError::TooLong => too_long(),
    };
    let mut total = Nanos::default();
    total.add_part(date, &DATE_UNITS).map_err(fail)?;
    let date_components = total.components;
    if let Some(time) = time {
        total.add_part(time, &TIME_UNITS).map_err(fail)?;
        // A `T` must be followed by something (`P1DT` is malformed).
        if total.components == date_components {
            return Err(syntax());
        }
    }
    if total.components == 0 {
        return Err(syntax());
    }
    if total.nanos == 0 {
        return Err(format!("duration {shown} is zero"));
    }
    u64::try_from(total.nanos)
        .ok()
        .map(Duration::from_nanos)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(too_long)
}

/// Canonical text for a duration: days, hours, minutes and seconds with a trimmed fraction, so
/// 90 s is `PT1M30S` and 26 h is `P1DT2H`. Never uses years or months, whose length is a
/// convention. Zero is `PT0S`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    let has_seconds = seconds > 0 || nanos > 0;
    if hours == 0 && minutes == 0 && !has_seconds {
        if days == 0 {
            out.push_str("T0S");
        }
        return out;
    }
    out.push('T');
    if hours > 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}M"));
    }
    if has_seconds {
        out.push_str(&seconds.to_string());
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        out.push('S');
    }
    out
}

/// Text from outside as shown in a message: quoted, escaped and cut short.
pub(super) fn quote(s: &str) -> String {
    format!("{:?}", super::shorten(s, 40))
}

enum ParseError {
    Syntax,
    TooLong,
}

/// The running total of a parse.
#[derive(Default)]
struct Nanos {
    nanos: u128,
    components: usize,
    /// A fractional component was seen, so nothing may follow it.
    fraction_seen: bool,
}

impl Nanos {
    /// Adds the components of one part (date or time), whose units must appear in `units` order.
    fn add_part(&mut self, mut part: &str, units: &[(char, u128)]) -> Result<(), ParseError> {
        let mut allowed = units;
        while !part.is_empty() {
            if self.fraction_seen {
                return Err(ParseError::Syntax);
            }
            let number_len = part
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .unwrap_or(part.len());
            let (number, tail) = part.split_at(number_len);
            let unit = tail.chars().next().ok_or(ParseError::Syntax)?;
            let at = allowed
                .iter()
                .position(|(c, _)| *c == unit)
                .ok_or(ParseError::Syntax)?;
            let unit_nanos = allowed[at].1;
            allowed = &allowed[at + 1..];
            part = &tail[unit.len_utf8()..];

            let (int, fraction) = match number.split_once(['.', ',']) {
                Some((int, fraction)) => (int, Some(fraction)),
                None => (number, None),
            };
            let mut value = digits(int)?
                .checked_mul(unit_nanos)
                .ok_or(ParseError::TooLong)?;
            if let Some(fraction) = fraction {
                if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::Syntax);
                }
                let kept = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
                // kept < 10^18 and unit_nanos < 3.2e16, so the product fits in u128.
                let part_nanos = digits(kept)? * unit_nanos / 10u128.pow(kept.len() as u32);
                value = value.checked_add(part_nanos).ok_or(ParseError::TooLong)?;
                self.fraction_seen = true;
            }
            self.nanos = self.nanos.checked_add(value).ok_or(ParseError::TooLong)?;
            self.components += 1;
        }
        Ok(())
    }
}

/// A non-empty run of ASCII digits as a number.
fn digits(s: &str) -> Result<u128, ParseError> {
    if s.is_empty() {
        return Err(ParseError::Syntax);
    }
    s.bytes().try_fold(0u128, |acc, b| {
        if !b.is_ascii_digit() {
            return Err(ParseError::Syntax);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u128::from(b - b'0')))
            .ok_or(ParseError::TooLong)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_the_whole_grammar() {
        let cases = [
            ("PT7M", secs(420)),
            ("PT5H", secs(5 * 3600)),
            ("PT13H", secs(13 * 3600)),
            ("pt7m", secs(420)),
            ("PT90S", secs(90)),
            ("PT1M30S", secs(90)),
            ("P1D", secs(86_400)),
            ("P1DT2H", secs(26 * 3600)),
            ("P1W", secs(7 * 86_400)),
            ("P1M", secs(30 * 86_400)),
            ("P1Y", secs(365 * 86_400)),
            (
                "P1Y2M3W4DT5H6M7S",
                secs(((365 + 60 + 21 + 4) * 24 + 5) * 3600 + 6 * 60 + 7),
            ),
            ("PT0.5S", Duration::from_millis(500)),
            ("PT0,5S", Duration::from_millis(500)),
            ("PT1.5H", secs(5400)),
            ("P0.5D", secs(43_200)),
            ("PT0.000000001S", Duration::from_nanos(1)),
            ("PT1.0000000000000000000000009S", secs(1)),
            ("PT0H0M1S", secs(1)),
            ("P100Y", MAX_DURATION),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations_without_panicking() {
        let bad = [
            "",
            "P",
            "PT",
            "P1DT",
            "7 minutes",
            "T7M",
            "PT7",
            "7M",
            "PT-7M",
            "-PT7M",
            "PT0S",
            "P0D",
            "PT0.0000000001S",
            "PT1.5H30M",
            "P1.5DT1H",
            "PT1M2H",
            "P1Y1Y",
            "P1D1Y",
            "PT1..5S",
            "PT.5S",
            "PT5.S",
            "PT1.2.3S",
            "P1H",
            "PT1D",
            "PT7M ",
            " PT7M",
            "PT7MX",
            "PT٣M",
            "PT7M\u{0}",
            "P1TT1H",
            "P101Y",
            "P36501D",
            "P99999999999999999999999999999999999999999999999999Y",
            "PT340282366920938463463374607431768211455S",
            "P18446744073709551615D",
        ];
        for text in bad {
            assert!(parse_duration(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            parse_duration("7 minutes").unwrap_err(),
            r#"expected an ISO-8601 duration such as PT7M, got "7 minutes""#
        );
        assert_eq!(
            parse_duration("PT0S").unwrap_err(),
            r#"duration "PT0S" is zero"#
        );
        assert_eq!(
            parse_duration("-PT1M").unwrap_err(),
            r#"duration "-PT1M" is negative"#
        );
        assert_eq!(
            parse_duration("P101Y").unwrap_err(),
            r#"duration "P101Y" is longer than the maximum P36500D"#
        );
        let long = "x".repeat(10_000);
        assert!(parse_duration(&long).unwrap_err().len() < 100);
    }

    #[test]
    fn formats_canonically() {
        let cases = [
            (secs(420), "PT7M"),
            (secs(5 * 3600), "PT5H"),
            (secs(13 * 3600), "PT13H"),
            (secs(90), "PT1M30S"),
            (secs(26 * 3600), "P1DT2H"),
            (secs(86_400), "P1D"),
            (secs(365 * 86_400), "P365D"),
            (Duration::from_millis(500), "PT0.5S"),
            (Duration::from_nanos(1), "PT0.000000001S"),
            (Duration::new(3661, 250_000_000), "PT1H1M1.25S"),
            (secs(86_401), "P1DT1S"),
            (Duration::ZERO, "PT0S"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn round_trips() {
        for text in [
            "PT7M",
            "PT5H",
            "PT13H",
            "PT1H",
            "PT1M30S",
            "P1DT2H",
            "PT0.5S",
            "P3DT4H5M6.789S",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        let mut n: u64 = 1;
        while n <= MAX_DURATION.as_nanos() as u64 {
            let d = Duration::from_nanos(n);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
            n = n * 3 + 7;
        }
    }

    proptest! {
        #[test]
        fn any_duration_round_trips(n in 1..=MAX_DURATION.as_nanos() as u64) {
            let d = Duration::from_nanos(n);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn any_text_parses_or_errs(s in "[pPtT0-9.,YMWDHS -]{0,20}") {
            if let Ok(d) = parse_duration(&s) {
                prop_assert!(d > Duration::ZERO && d <= MAX_DURATION);
            }
        }
    }
}
