//! Times as the HTTP API shows them: RFC 3339 in UTC with milliseconds
//! (`2026-12-02T07:07:39.123Z`), what people read and tools parse. The
//! store keeps Unix milliseconds; these serde helpers convert at the edge,
//! and [`parse`] reads a time a caller gives (`since=`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(at) => at.to_rfc3339_opts(SecondsFormat::Millis, true),
        // Out of chrono's range (never stored by herald): the epoch
        // rather than a panic or a number in a string field.
        None => DateTime::<Utc>::UNIX_EPOCH.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// An RFC 3339 time a caller gave, as Unix milliseconds.
pub fn parse(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc).timestamp_millis())
}

/// `#[serde(serialize_with = "crate::api_time::at")]` on Unix ms.
pub fn at<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

/// The same for an optional time (`null` when absent).
pub fn maybe_at<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => at(ms, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds_and_read_back() {
        assert_eq!(rfc3339(1_796_115_105_035), "2026-12-01T08:51:45.035Z");
        assert_eq!(parse("2026-12-01T08:51:45.035Z"), Some(1_796_115_105_035));
        assert_eq!(parse("2026-12-01T09:51:45.035+01:00"), Some(1_796_115_105_035));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("1796115105035"), None);
    }
}
