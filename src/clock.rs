//! RFC 3339 timestamps for scenarios, and the civil-calendar arithmetic
//! behind them (no time-zone database is needed: RFC 3339 carries offsets).

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
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            Ok(part.parse().expect("digits"))
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
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{s:?}: no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
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
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `2025-03-10T09:00:00Z` for a millisecond timestamp (whole seconds).
pub fn format_rfc3339(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
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
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
