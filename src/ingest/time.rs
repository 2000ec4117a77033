//! Timestamps as exports write them, to Unix milliseconds (UTC when no zone
//! is given). Used only to order a conversation's messages.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S",
];

const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d"];

/// Parses RFC 3339 / ISO 8601, common naive forms, dates, RFC 2822, and
/// Unix seconds or milliseconds.
pub fn parse_millis(raw: &str) -> Option<i64> {
    // The form most exports write, read before any trimming or sniffing.
    if let Some(ms) = utc_seconds(raw) {
        return Some(ms);
    }
    let s = super::trim_field(raw);
    if s.is_empty() {
        return None;
    }
    // Epoch numbers first; a date or time ("2026-03-02T08:03:17Z") has other
    // bytes and skips both number parsers.
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !numeric {
        return parse_date_time(s);
    }
    if let Ok(n) = s.parse::<i64>() {
        // Anything past 1e11 would be after the year 5138 in seconds: milliseconds.
        return Some(if n.abs() >= 100_000_000_000 {
            n
        } else {
            n * 1000
        });
    }
    if let Ok(f) = s.parse::<f64>() {
        return f.is_finite().then_some((f * 1000.0) as i64);
    }
    parse_date_time(s)
}

/// A date or date-time in one of the accepted formats.
fn parse_date_time(s: &str) -> Option<i64> {
    if let Some(ms) = utc_seconds(s) {
        return Some(ms);
    }
    chrono_date_time(s)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (or without the `Z`) exactly, the form most
/// exports write, read without chrono's format machinery (a tenth of the
/// parser's time); any other shape, or a leap second, is left to chrono.
fn utc_seconds(s: &str) -> Option<i64> {
    // `YYYY-MM-DDTHH:MM:SS`, then `Z` or nothing (a naive time, read as UTC
    // as chrono's naive forms are: WhatsApp's local times come so).
    let b = s.as_bytes();
    if !(b.len() == 19 || (b.len() == 20 && b[19] == b'Z')) {
        return None;
    }
    let shape = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if shape.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// [`parse_date_time`] through chrono alone.
fn chrono_date_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in NAIVE_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    for f in DATE_FORMATS {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis());
        }
    }
    DateTime::parse_from_rfc2822(s)
        .or_else(|_| DateTime::parse_from_str(s, TWITTER_FORMAT))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Twitter's `created_at`: `Tue Oct 31 22:10:47 +0000 2017`.
const TWITTER_FORMAT: &str = "%a %b %d %H:%M:%S %z %Y";

/// Unix milliseconds as the canonical `YYYY-MM-DDTHH:MM:SSZ` (the form the
/// store keeps compactly), for exports that write epoch numbers.
pub fn canonical_utc(millis: i64) -> Option<String> {
    let t = DateTime::from_timestamp_millis(millis)?;
    Some(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twitter_dates_and_canonical_forms() {
        assert_eq!(
            parse_millis("Tue Oct 31 22:10:47 +0000 2017"),
            parse_millis("2017-10-31T22:10:47Z")
        );
        assert_eq!(
            canonical_utc(1_647_615_372_000).as_deref(),
            Some("2022-03-18T14:56:12Z")
        );
    }

    proptest::proptest! {
        /// The fast path reads what chrono reads, and refuses what it refuses.
        #[test]
        fn utc_seconds_agree_with_chrono(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33,
            h in 0u32..25, mi in 0u32..61, se in 0u32..62,
        ) {
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z");
            let fast = utc_seconds(&s);
            // The naive form reads the same.
            proptest::prop_assert_eq!(utc_seconds(&s[..19]), fast);
            proptest::prop_assert!(fast.is_none() || fast == chrono_date_time(&s), "{}", s);
            if chrono_date_time(&s).is_some() && se < 60 {
                proptest::prop_assert_eq!(fast, chrono_date_time(&s), "{}", s);
            }
        }

        #[test]
        fn any_text_parses_as_chrono_would(s in "[0-9TZ:-]{18,21}|\\PC{0,24}") {
            proptest::prop_assert_eq!(parse_date_time(&s), chrono_date_time(&s));
        }
    }

    #[test]
    fn common_forms_agree() {
        let expected = Some(1_772_362_800_000); // 2026-03-01T11:00:00Z
        for s in [
            "2026-03-01T11:00:00Z",
            "2026-03-01T12:00:00+01:00",
            "2026-03-01 11:00:00",
            "2026-03-01T11:00:00.000",
            "2026-03-01 11:00",
            "01/03/2026 11:00",
            "1772362800",
            "1772362800000",
            "Sun, 01 Mar 2026 11:00:00 +0000",
        ] {
            assert_eq!(parse_millis(s), expected, "{s}");
        }
        assert_eq!(parse_millis("2026-03-01"), Some(1_772_323_200_000));
        assert_eq!(
            parse_millis("2026-03-01 11:00:00.250"),
            Some(1_772_362_800_250)
        );
        assert_eq!(parse_millis("2026-03-01T11:00:00"), expected);
        assert_eq!(parse_millis("01/03/2026 11:00:30"), Some(1_772_362_830_000));
    }

    #[test]
    fn garbage_is_none() {
        for s in ["", "  ", "yesterday", "2026-13-45", "NaN"] {
            assert_eq!(parse_millis(s), None, "{s}");
        }
    }
}
