//! RFC 3339 timestamps, which must carry their offset.

use chrono::DateTime;

/// Nanoseconds since the epoch (UTC) of an RFC 3339 timestamp with an offset (`Z` or `+02:00`);
/// `None` for anything else, a local time without an offset included, and for instants outside
/// what 64-bit nanoseconds hold (years 1677 to 2262).
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim()).ok()?.timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_required_and_applied() {
        let at = |text: &str| parse_rfc3339_nanos(text).map(|n| DateTime::from_timestamp_nanos(n).to_rfc3339());
        assert_eq!(
            at("2026-10-01T09:30:00+02:00").as_deref(),
            Some("2026-10-01T07:30:00+00:00")
        );
        assert_eq!(
            at("2026-10-01 07:30:00.25Z").as_deref(),
            Some("2026-10-01T07:30:00.250+00:00")
        );
        assert_eq!(
            at("2026-10-01T07:30:00-05:30").as_deref(),
            Some("2026-10-01T13:00:00+00:00")
        );
        for not_rfc3339 in ["2026-10-01T07:30:00", "2026-10-01", "2026-10-01 07:30", "yesterday", ""] {
            assert_eq!(at(not_rfc3339), None, "{not_rfc3339}");
        }
        assert_eq!(at("3000-01-01T00:00:00Z"), None, "beyond 64-bit nanoseconds");
    }
}
