//! Sizes as Docker writes them: `10m`, `1.5k`, `2 GiB`, `512`.

/// Docker's `units.FromHumanSize`: a number with an optional unit (`k`, `m`, `g`, `t`, `p`,
/// optionally followed by `i` and/or `b`, any case) in powers of 1000: `1.5k` is 1500 bytes.
pub fn from_human_size(s: &str) -> Option<u64> {
    parse(s, 1000.0)
}

/// Docker's `units.RAMInBytes`: the same forms in powers of 1024: `64m` is 64 MiB.
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    parse(s, 1024.0)
}

fn parse(s: &str, base: f64) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    let v = n * base.powi(power);
    (v.is_finite() && v < u64::MAX as f64).then_some(v as u64)
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units and Go's `%.*g` (`precision`
/// significant digits, trailing zeros dropped): `docker images` uses 3, progress bars 4.
pub fn human_size(size: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let (mut v, mut i) = (size, 0);
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g(v, precision.max(1)), UNITS[i])
}

/// Go's `%.*g` for a finite, non-negative number.
fn format_g(v: f64, precision: usize) -> String {
    // The exponent after rounding to `precision` digits decides the form, as in Go.
    let e = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
    };
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// The 12-digit short form of an ID (`sha256:` dropped), as Docker shows IDs.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// Why a duration did not parse (Go's `time.ParseDuration` wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit { unit: String, text: String },
}

/// Parses a duration as Go's `time.ParseDuration` does (`1h30m`, `1.5s`, `-100ms`, `0`), into
/// nanoseconds: what Docker's flags and API fields (healthcheck intervals, `--since 10m`) use.
pub fn parse_go_duration(s: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(s.to_string());
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    let mut i = 0;
    let b = rest.as_bytes();
    while i < b.len() {
        // A number: digits, optionally a fraction.
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let num = &rest[start..i];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let ustart = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let unit = &rest[ustart..i];
        let scale: i128 = match unit {
            "" => return Err(DurationError::MissingUnit(s.to_string())),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::UnknownUnit { unit: unit.to_string(), text: s.to_string() }),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, digit by digit, to the nanosecond (as Go: truncated).
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            part += i128::from(d - b'0') * place;
        }
        total = total.checked_add(part).filter(|t| *t <= i128::from(i64::MAX)).ok_or_else(invalid)?;
    }
    let total = total as i64;
    Ok(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_writes_them() {
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(999.0, 3), "999B");
        assert_eq!(human_size(1500.0, 3), "1.5kB");
        assert_eq!(human_size(4_404_019.0, 3), "4.4MB");
        assert_eq!(human_size(212_345_678.0, 3), "212MB");
        assert_eq!(human_size(212_345_678.0, 4), "212.3MB");
        assert_eq!(human_size(1_234_567.0, 4), "1.235MB");
        assert_eq!(human_size(999_600.0, 3), "1e+03kB", "Go rounds first, then picks the form");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(from_human_size("10m"), Some(10_000_000));
        assert_eq!(from_human_size("10MB"), Some(10_000_000));
        assert_eq!(from_human_size("1.5k"), Some(1500));
        assert_eq!(from_human_size("2 g"), Some(2_000_000_000));
        assert_eq!(from_human_size("512"), Some(512));
        assert_eq!(from_human_size("1Mi"), Some(1_000_000));
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_in_bytes("2GiB"), Some(2 << 30));
        for bad in ["", "m", "-1m", "1x", "1.m", ".5m", "1e9", "99999999999999999999999p"] {
            assert_eq!(from_human_size(bad), None, "{bad}");
            assert_eq!(ram_in_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        let ns = |s: &str| parse_go_duration(s);
        assert_eq!(ns("0"), Ok(0));
        assert_eq!(ns("5s"), Ok(5_000_000_000));
        assert_eq!(ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(ns(".5ms"), Ok(500_000));
        assert_eq!(ns("-100ms"), Ok(-100_000_000));
        assert_eq!(ns("+2us"), Ok(2_000));
        assert_eq!(ns("3\u{b5}s"), Ok(3_000));
        assert_eq!(ns("1.0000000001s"), Ok(1_000_000_000), "below a nanosecond is truncated");
        assert_eq!(ns("10"), Err(DurationError::MissingUnit("10".into())));
        assert!(matches!(ns("5x"), Err(DurationError::UnknownUnit { .. })));
        for bad in ["", "-", "s", ".s", "1..2s", "1.2.3s", "99999999999999999999h", "3000000h"] {
            assert!(ns(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ns("2562047h"), Ok(2_562_047 * 3_600_000_000_000), "just below i64::MAX");
    }
}
