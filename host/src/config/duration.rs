//! Go-compatible durations: the `time.ParseDuration` syntax (`"1h30m"`, `"300ms"`, `"1.5s"`),
//! plus bare integers meaning nanoseconds (what yaml.v3 does for a `time.Duration` field).
//!
//! Use as `#[serde(with = "crate::config::duration")]` on a `std::time::Duration` field.
//! Serialization prints Go's `Duration.String()` form (`"2.75s"`, `"1h30m0s"`), which parses back.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// The largest duration Go can represent (`math.MaxInt64` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { unit: String, input: String },
    #[error("duration {0:?} is negative")]
    Negative(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // "µs" with U+00B5 (micro sign) or U+03BC (Greek mu), as Go accepts both.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parse a Go duration string. Negative durations are rejected (no config key wants one).
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut rest = input.trim();
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if let Some(r) = rest.strip_prefix('-') {
        // "-0" is zero in Go; anything else negative is meaningless here.
        if r.chars().all(|c| c == '0') && !r.is_empty() {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative(input.to_string()));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        // Optional fraction.
        let (frac_digits, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let frac_len = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = after_num
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;

        let overflow = || DurationError::Overflow(input.to_string());
        let mut int_value: u128 = 0;
        for b in int_digits.bytes() {
            int_value = int_value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(b - b'0')))
                .filter(|&v| v <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        let mut component = int_value.checked_mul(scale).ok_or_else(overflow)?;
        if !frac_digits.is_empty() {
            // Digits beyond nanosecond precision of the largest unit cannot matter; Go truncates.
            let mut num: u128 = 0;
            let mut den: u128 = 1;
            for b in frac_digits.bytes().take(24) {
                num = num * 10 + u128::from(b - b'0');
                den *= 10;
            }
            component = component
                .checked_add(num * scale / den)
                .ok_or_else(overflow)?;
        }
        total = total
            .checked_add(component)
            .filter(|&t| t <= MAX_NANOS)
            .ok_or_else(overflow)?;
        rest = after_unit;
    }

    let secs = u64::try_from(total / NANOS_PER_SEC)
        .map_err(|_| DurationError::Overflow(input.to_string()))?;
    // The remainder is below 1e9, so it fits.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Format like Go's `time.Duration.String()`: `"0s"`, `"300ms"`, `"1.5µs"`, `"2.75s"`, `"1h30m0s"`.
pub fn format(d: Duration) -> String {
    let total = d.as_nanos();
    if total == 0 {
        return "0s".to_string();
    }
    if total < NANOS_PER_SEC {
        let (scale, unit) = if total < 1_000 {
            (1, "ns")
        } else if total < 1_000_000 {
            (1_000, "\u{b5}s")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", fixed(total, scale));
    }
    let hours = total / (3600 * NANOS_PER_SEC);
    let minutes = (total / (60 * NANOS_PER_SEC)) % 60;
    let secs_nanos = total % (60 * NANOS_PER_SEC);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&fixed(secs_nanos, NANOS_PER_SEC));
    out.push('s');
    out
}

/// `value / scale` as a decimal without trailing zeros.
fn fixed(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// serde: serialize as the Go string form.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// serde: accept a Go duration string, integer nanoseconds, or null (zero).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"90s\", \"1h30m\" or \"300ms\" (or integer nanoseconds)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if u128::from(v) > MAX_NANOS {
            return Err(E::custom(format!("duration {v}ns is too large")));
        }
        Ok(Duration::from_nanos(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_nanos)
            .map_err(|_| E::custom(format!("duration {v}ns is negative")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Duration, E> {
        Ok(Duration::ZERO)
    }

    fn visit_none<E: de::Error>(self) -> Result<Duration, E> {
        Ok(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_go_syntax() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("1h", Duration::from_secs(3600)),
            ("90m", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("300ms", ms(300)),
            ("1.5s", ms(1500)),
            ("2.75s", ms(2750)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            (
                "2h45m0.5s",
                Duration::from_millis(2 * 3_600_000 + 45 * 60_000 + 500),
            ),
            ("10ns", Duration::from_nanos(10)),
            ("10us", Duration::from_micros(10)),
            ("10\u{b5}s", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("1.000000001s", Duration::new(1, 1)),
            ("1.0000000019s", Duration::new(1, 1)),
            ("100ms200us", Duration::from_micros(100_200)),
            (
                "2562047h47m16.854775807s",
                Duration::new(9_223_372_036, 854_775_807),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "", "s", ".s", "1", "10", "1x", "1.5", "1h-5m", "h1", "1 h", "1e3s", ".",
        ] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(
            parse("5").unwrap_err(),
            DurationError::MissingUnit("5".into())
        );
        assert!(matches!(
            parse("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse("-5s").unwrap_err(),
            DurationError::Negative("-5s".into())
        );
        assert!(matches!(
            parse("2562047h47m16.854775808s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("99999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5\u{b5}s"),
            (ms(5), "5ms"),
            (ms(300), "300ms"),
            (Duration::from_micros(100_200), "100.2ms"),
            (ms(1500), "1.5s"),
            (ms(2200), "2.2s"),
            (ms(2750), "2.75s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_secs(3 * 3600), "3h0m0s"),
            (
                Duration::from_millis(2 * 3_600_000 + 45 * 60_000 + 500),
                "2h45m0.5s",
            ),
            (Duration::new(1, 1), "1.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(&format(*d), want);
            assert_eq!(parse(want).as_ref(), Ok(d), "round trip {want}");
        }
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug)]
    struct Holder {
        #[serde(with = "super", default)]
        d: Duration,
    }

    #[test]
    fn serde_accepts_strings_integers_and_null() {
        let h: Holder = serde_yaml::from_str("d: 1h30m").unwrap();
        assert_eq!(h.d, Duration::from_secs(5400));
        let h: Holder = serde_yaml::from_str("d: 1500000000").unwrap();
        assert_eq!(h.d, ms(1500));
        let h: Holder = serde_yaml::from_str("d:").unwrap();
        assert_eq!(h.d, Duration::ZERO);
        assert!(serde_yaml::from_str::<Holder>("d: -1").is_err());
        assert!(serde_yaml::from_str::<Holder>("d: 1.5").is_err());
        assert!(
            serde_yaml::from_str::<Holder>("d: 5").is_ok(),
            "bare integer is nanoseconds"
        );
        assert!(
            serde_yaml::from_str::<Holder>("d: '5'").is_err(),
            "quoted 5 has no unit"
        );
        let out = serde_yaml::to_string(&Holder { d: ms(2750) }).unwrap();
        assert_eq!(out, "d: 2.75s\n");
    }

    proptest::proptest! {
        #[test]
        fn format_parses_back(nanos in 0u64..=(i64::MAX as u64)) {
            let d = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,24}") {
            let _ = parse(&input);
        }

        #[test]
        fn parse_never_panics_on_duration_like_input(input in "[-+]?[0-9.]{0,30}(ns|us|ms|s|m|h|x)?([0-9.]{0,20}[a-z\u{b5}]{0,2}){0,3}") {
            let _ = parse(&input);
        }
    }
}
