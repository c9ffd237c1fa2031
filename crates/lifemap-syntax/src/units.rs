//! Durations (`30s`, `500ms`, `5m`, `1h`, `2d`) and sizes (`4GiB`, `512MiB`, `2GB`, `1048576`).

use std::time::Duration;

/// `30s`, `500ms`, `5m`, `1h`, `2d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like `30s`"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return Err(format!("`{text}` is not a duration: use ms, s, m, h or d")),
    };
    // Found by the pipeline_file fuzz target: `Duration::from_secs_f64` panics past ~584 billion
    // years, and `request_timeout: 44444444444444444444s` took the whole run down with it.
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is too long a duration"))
}

/// `4GiB`, `512MiB`, `2GB`, `1048576` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like `4GiB`"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" | "k" => 1024.0,
        "mb" => 1e6,
        "mib" | "m" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}` is not a size: use B, KiB, MiB, GiB (or KB, MB, GB)")),
    };
    let bytes = number * factor;
    // A float cast saturates; say so instead of quietly meaning 16 EiB.
    if bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large a size"));
    }
    Ok(bytes as u64)
}

/// The leading digits and dots of `text`, and the rest.
fn split_number(text: &str) -> (&str, &str) {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    text.split_at(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 weeks").unwrap_err().contains("use ms, s, m, h or d"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration like"));
    }

    #[test]
    fn a_duration_too_long_for_std_is_an_error_not_a_panic() {
        let message = parse_duration("44444444444444444444s").unwrap_err();
        assert_eq!(message, "`44444444444444444444s` is too long a duration");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("4 lots").unwrap_err().contains("use B, KiB"));
        assert_eq!(
            parse_bytes("99999999999GiB").unwrap_err(),
            "`99999999999GiB` is too large a size"
        );
    }
}
