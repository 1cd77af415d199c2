//! Signal names and numbers as Docker accepts them (`STOPSIGNAL`, `docker kill -s`, `stop -s`).

/// A signal spec that names no signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSignal(pub String);

impl std::fmt::Display for InvalidSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Invalid signal: {}", self.0)
    }
}

impl std::error::Error for InvalidSignal {}

/// Signal numbers by name (`SIGTERM`, `TERM`, `15`).
pub fn parse(s: &str) -> Result<i32, InvalidSignal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(InvalidSignal(s.to_string()));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" | "CLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        n if n.starts_with("RTMIN+") => 34 + n[6..].parse::<i32>().map_err(|_| InvalidSignal(s.to_string()))?,
        _ => return Err(InvalidSignal(s.to_string())),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse("SIGTERM"), Ok(15));
        assert_eq!(parse("kill"), Ok(9));
        assert_eq!(parse(" 10 "), Ok(10));
        assert_eq!(parse("RTMIN+2"), Ok(36));
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("RTMIN+x").is_err());
        assert_eq!(parse("BOGUS").unwrap_err().to_string(), "Invalid signal: BOGUS");
    }
}
