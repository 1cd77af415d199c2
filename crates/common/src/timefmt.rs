//! RFC 3339 timestamps as Docker writes them (`2024-01-02T03:04:05.123456789Z`), without a
//! date-time dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds+nanos since the epoch (UTC) with nanosecond precision, trailing zeros
/// trimmed as Go's RFC3339Nano does.
pub fn format_unix(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats nanoseconds since the epoch as [`format_unix`] does (the cluster's timestamps).
pub fn format_unix_nanos(nanos: i64) -> String {
    format_unix(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000) as u32)
}

/// Formats with all nine fractional digits (fixed width, as Docker's json-file log uses).
pub fn format_unix_fixed(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nanos:09}Z")
}

pub fn format(t: SystemTime) -> String {
    let (s, n) = split(t);
    format_unix(s, n)
}

pub fn now() -> String {
    format(SystemTime::now())
}

pub fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            (
                -(d.as_secs() as i64) - if d.subsec_nanos() > 0 { 1 } else { 0 },
                (1_000_000_000 - d.subsec_nanos()) % 1_000_000_000,
            )
        }
    }
}

/// Docker's zero time, printed for containers that never started.
pub const ZERO: &str = "0001-01-01T00:00:00Z";

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset, optional fraction).
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return None;
        }
        let mut f = frac.chars().take(9).collect::<String>();
        while f.len() < 9 {
            f.push('0');
        }
        nanos = f.parse().ok()?;
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs((-secs) as u64))?.checked_add(Duration::from_nanos(nanos as u64))
    }
}

/// "2 hours ago"-style ages as the docker CLI prints them.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if s / 60 == 1 {
        "About a minute".into()
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else {
        let h = (s as f64 / 3600.0).round() as u64;
        if h == 1 {
            "About an hour".into()
        } else if h < 48 {
            format!("{h} hours")
        } else if h < 24 * 7 * 2 {
            format!("{} days", h / 24)
        } else if h < 24 * 30 * 2 {
            format!("{} weeks", h / 24 / 7)
        } else if h < 24 * 365 * 2 {
            format!("{} months", h / 24 / 30)
        } else {
            format!("{} years", h / 24 / 365)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_700_000_000, 120_000_000), "2023-11-14T22:13:20.12Z");
        assert_eq!(format_unix_fixed(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        let t = parse("2023-11-14T22:13:20.12Z").unwrap();
        assert_eq!(split(t), (1_700_000_000, 120_000_000));
        let t = parse("2023-11-15T00:13:20+02:00").unwrap();
        assert_eq!(split(t).0, 1_700_000_000);
        assert_eq!(parse("2024-02-29T00:00:00Z").map(format), Some("2024-02-29T00:00:00Z".into()));
        for bad in
            ["", "2023", "2023-13-01T00:00:00Z", "2023-01-01T00:00:00", "2023-01-01T00:00:00.Z", "x023-01-01T00:00:00Z"]
        {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
    }
}
