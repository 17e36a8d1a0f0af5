//! Durations, one function per grammar: Gateway API's (GEP-2257) for HTTPRoute fields,
//! Istio's (protobuf JSON, `"0.25s"`, with GEP-2257 accepted too) for Istio API fields such as
//! fault delays and JWKS fetch timeouts, and ztunnel's environment variables' (`SECRET_TTL`).
//!
//! ```
//! use std::time::Duration;
//! use ambit_config::duration;
//!
//! assert_eq!(duration::gateway("1h30m"), Ok(Duration::from_secs(5400)));
//! assert!(duration::gateway("1.5s").is_err());
//! assert_eq!(duration::istio("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(duration::istio("500ms"), Ok(Duration::from_millis(500)));
//! assert_eq!(duration::env("86400"), Ok(Duration::from_secs(86400)));
//! assert_eq!(duration::env("1d12h"), Ok(Duration::from_secs(129_600)));
//! assert!(duration::env("soon").is_err());
//! ```

use std::time::Duration;

/// Parses a GEP-2257 duration: 1 to 4 components matching `[0-9]{1,5}(h|m|s|ms)`, interpreted
/// as Go's `time.ParseDuration` does (units in any order, repeats add up). `"0s"` is zero.
pub fn gateway(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a Gateway API duration (1 to 4 parts of up to 5 digits, each followed \
             by h, m, s or ms; e.g. \"10s\", \"1h30m\", \"500ms\")"
        )
    };
    let b = s.as_bytes();
    let (mut i, mut parts, mut millis) = (0, 0, 0u64);
    if b.is_empty() {
        return Err(bad());
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 5 {
            return Err(bad());
        }
        let value: u64 = s[start..i].parse().map_err(|_| bad())?;
        let unit = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match b.get(i) {
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1_000,
                _ => return Err(bad()),
            };
            i += 1;
            unit
        };
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
        // At most 4 × 99999h: far from overflowing.
        millis += value * unit;
    }
    Ok(Duration::from_millis(millis))
}

/// A duration as ztunnel's environment variables take it (`SECRET_TTL=24h`): a bare number
/// of seconds, or parts of a number and a unit (`w`, `d`, `h`, `m`, `s`, `ms`) that add up
/// (`1h30m`, `2d`).
pub fn env(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration (a number of seconds, or parts such as \"24h\", \"1h30m\", \"2d\", \"500ms\")"
        )
    };
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let b = t.as_bytes();
    let (mut i, mut millis) = (0, 0u128);
    if b.is_empty() {
        return Err(bad());
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 12 {
            return Err(bad());
        }
        let value: u128 = t[start..i].parse().map_err(|_| bad())?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: u128 = match &t[unit_start..i] {
            "w" => 7 * 86_400_000,
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return Err(bad()),
        };
        millis += value * unit;
    }
    u64::try_from(millis)
        .map(Duration::from_millis)
        .map_err(|_| bad())
}

/// A protobuf JSON duration (`"5s"`, `"0.25s"`, as in Istio's `fixedDelay`), or failing that a
/// GEP-2257 one (`"500ms"`).
pub fn istio(s: &str) -> Result<Duration, String> {
    if let Some(secs) = s.strip_suffix('s') {
        let (whole, frac) = match secs.split_once('.') {
            Some((w, f)) if !f.is_empty() => (w, f),
            Some(_) => return Err(format!("{s:?} is not a duration (e.g. \"5s\", \"0.5s\")")),
            None => (secs, ""),
        };
        let digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
        if !whole.is_empty()
            && whole.len() <= 12
            && digits(whole)
            && frac.len() <= 9
            && digits(frac)
        {
            let (Ok(w), Ok(f)) = (whole.parse::<u64>(), format!("{frac:0<9}").parse::<u32>())
            else {
                return gateway(s);
            };
            return Ok(Duration::new(w, f));
        }
    }
    gateway(s).map_err(|_| {
        format!("{s:?} is not a duration (e.g. \"5s\", \"0.5s\", \"1500ms\", \"1m30s\")")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_durations() {
        let ok = [
            ("0s", 0),
            ("10s", 10_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("1h30m30s500ms", 5_430_500),
            ("01h", 3_600_000),
            ("00060m", 3_600_000),
            ("99999h", 99_999 * 3_600_000),
            ("1s1h", 3_601_000),
            ("1ms1m", 60_001),
        ];
        for (s, ms) in ok {
            assert_eq!(gateway(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        let bad = [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "1d",
            "1us",
            "100000s",
            "1h1m1s1ms1h",
            " 1s",
            "1s ",
            "1S",
            "1 s",
            "ms",
            "1mss",
        ];
        for s in bad {
            let err = gateway(s).expect_err(s);
            assert!(err.contains("Gateway API duration"), "{err}");
        }
    }

    #[test]
    fn protobuf_durations() {
        assert_eq!(istio("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(istio("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(istio("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(istio("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(istio("1m30s"), Ok(Duration::from_secs(90)));
        for s in ["", ".5s", "1.s5", "1.s", "1.0000000001s", "-1s", "5"] {
            assert!(istio(s).is_err(), "{s}");
        }
    }
}
