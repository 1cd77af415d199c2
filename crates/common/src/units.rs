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
}
