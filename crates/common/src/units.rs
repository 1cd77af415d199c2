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

#[cfg(test)]
mod tests {
    use super::*;

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
