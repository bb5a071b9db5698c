//! Durations ("250ms", "2s", "1m", "1h") and sizes ("512B", "16KiB", "16MiB", "1GiB") written as
//! strings in the config. Pure parsing; range checks belong to the caller, which knows the key.

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h` (spaces around the unit allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got {}",
            quote(text)
        )
    };
    let (number, unit) = split_number(text).ok_or_else(expected)?;
    let too_big = || format!("duration {} is too large", quote(text));
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(too_big)?),
        "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(too_big)?),
        _ => return Err(expected()),
    };
    Ok(duration)
}

/// Parses `<integer><unit>` with unit `B`, `KiB`, `MiB` or `GiB` into bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let expected = || {
        format!(
            "expected a size like \"512B\", \"16KiB\", \"16MiB\" or \"1GiB\" (or an integer number of bytes), got {}",
            quote(text)
        )
    };
    let (number, unit) = split_number(text).ok_or_else(expected)?;
    let scale: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(expected()),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("size {} is too large", quote(text)))
}

/// Renders a byte count the way a person would write it in the config ("16 KiB", "1000 bytes").
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    format!("{bytes} bytes")
}

/// Renders a duration the way a person would write it in the config.
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms > 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Quotes a config value for an error message, shortening long ones.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

/// Splits "  16 KiB " into (16, "KiB"). None when there are no leading digits or they overflow.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let number = text[..digits_end].parse::<u64>().ok()?;
    Some((number, text[digits_end..].trim_start()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        for bad in ["", "s", "10", "10x", "1.5s", "-1s", "10 sec", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("99999999999999999999s").is_err());
        assert_eq!(
            parse_duration(&format!("{}h", u64::MAX / 10)),
            Err(format!("duration \"{}h\" is too large", u64::MAX / 10))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        for bad in ["", "KiB", "16", "16KB", "16kib", "16M", "1.5MiB", "-1B"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size(&format!("{}GiB", u64::MAX)).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(16 * 1024), "16 KiB");
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(quote("ftp://x"), "\"ftp://x\"");
        assert_eq!(
            quote(&"a".repeat(100)),
            format!("\"{}\"...", "a".repeat(80))
        );
    }
}
