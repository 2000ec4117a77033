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
    let s = raw.trim();
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
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

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
