//! RFC 3339 timestamps for scenarios: the format's grammar checked here,
//! the calendar (which dates exist, instants, formatting) is jiff's. No
//! time-zone database is needed: RFC 3339 carries offsets.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// Parses an RFC 3339 date-time such as `2025-03-10T09:00:00Z` or
/// `2025-03-10T09:00:00.5+02:00`. The error says what is wrong.
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    let b = s.as_bytes();
    let bad = || format!("{s:?} is not an RFC 3339 timestamp (like 2025-03-10T09:00:00Z)");
    if b.len() < 20 {
        return Err(bad());
    }
    // Bytes, not a slice of the text: a field may cut a multi-byte
    // character, which is simply not a digit.
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &b[range];
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        } else {
            Err(bad())
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return Err(bad());
    }
    if b[16] != b':' {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if second > 60 {
        return Err(format!("{s:?}: no such time of day"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().expect("digits") * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let v = h * 60 + m;
            if *sign == b'-' { -v } else { v }
        }
        _ => return Err(bad()),
    };
    // The calendar is jiff's: whether the date exists, and the instant.
    let date = jiff::civil::Date::new(year as i16, month as i8, day as i8)
        .map_err(|_| format!("{s:?}: no such date"))?;
    // A leap second (60) is the last second of its minute.
    let time = jiff::civil::Time::new(hour as i8, minute as i8, second.min(59) as i8, 0)
        .map_err(|_| format!("{s:?}: no such time of day"))?;
    let offset = jiff::tz::Offset::from_seconds(offset_minutes as i32 * 60).map_err(|_| bad())?;
    let at = offset
        .to_timestamp(jiff::civil::DateTime::from_parts(date, time))
        .map_err(|_| bad())?;
    Ok(at.as_millisecond() + millis)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar
/// (`None` for a date that does not exist).
pub fn day_number(y: i16, m: i8, d: i8) -> Option<i64> {
    let midnight = jiff::civil::Date::new(y, m, d).ok()?.at(0, 0, 0, 0);
    let at = jiff::tz::Offset::UTC.to_timestamp(midnight).ok()?;
    Some(at.as_second().div_euclid(86_400))
}

/// `2025-03-10T09:00:00Z` for a millisecond timestamp (whole seconds, UTC).
pub fn format_rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("{ms} ms past the epoch"))
}

/// `2025-03-10 (Monday) 09:00`: the date an answering call is told (UTC).
pub fn format_day(ms: Millis) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.strftime("%Y-%m-%d (%A) %H:%M").to_string())
        .unwrap_or_else(|_| format_rfc3339(ms))
}

/// `20250310-090000`: a sortable folder name for a run started at `ms`.
pub fn folder_stamp(ms: Millis) -> String {
    format_rfc3339(ms)
        .trim_end_matches('Z')
        .replace(['-', ':'], "")
        .replace('T', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        let z = parse_rfc3339("2025-03-10T09:00:00Z").unwrap();
        assert_eq!(z, 1_741_597_200_000);
        assert_eq!(parse_rfc3339("2025-03-10T11:00:00+02:00").unwrap(), z);
        assert_eq!(parse_rfc3339("2025-03-10T09:00:00.25Z").unwrap(), z + 250);
        assert_eq!(format_rfc3339(z), "2025-03-10T09:00:00Z");
        assert_eq!(folder_stamp(z), "20250310-090000");
    }

    #[test]
    fn rejects_impossible_and_malformed() {
        for s in [
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-03-10 09:00",
            "2025-03-10T25:00:00Z",
            "2025-03-10T09:00:00",
            "10 March 2025",
            // Multi-byte characters across a field's edge (found by the
            // fuzzer: slicing the text there panicked).
            "2025-05-20T18:05:0\u{1e5}",
            "2025-05-20T18:05:\u{e9}0Z",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn day_numbers() {
        assert_eq!(day_number(1970, 1, 1), Some(0));
        assert_eq!(day_number(2025, 1, 6), Some(20_094));
        assert_eq!(day_number(1969, 12, 31), Some(-1));
        assert_eq!(day_number(2025, 2, 29), None);
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
