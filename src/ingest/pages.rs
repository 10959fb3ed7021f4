//! Pages of the list endpoints (SPEC §3.3): `limit` 1..=1000 (default
//! 100) and an opaque `cursor` naming where the last page ended — a
//! position in the list's order, not an offset, so items that arrive
//! meanwhile never shift a page.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Items per page unless asked.
pub const DEFAULT_LIMIT: i64 = 100;
/// Most items per page.
pub const MAX_LIMIT: i64 = 1000;

/// The page size asked for, checked.
pub fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_LIMIT}"))
                .with("field", "limit"),
        ),
    }
}

/// A position as a cursor: its JSON, base64url. Opaque to callers, who
/// only hand it back.
pub fn encode<T: Serialize>(position: &T) -> String {
    // A position is numbers and strings: encoding cannot fail; an empty
    // cursor would only restart the list.
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The position a cursor names; a 400 naming `cursor` when it is not one
/// of this list's.
pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "cursor is not one this list gave (pass next_cursor back unchanged)",
        )
        .with("field", "cursor")
    };
    let json = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    serde_json::from_slice(&json).map_err(|_| bad())
}

/// The position `?cursor=` names, if any (an empty one starts the list,
/// as no cursor does).
pub fn position<T: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<T>, ApiError> {
    cursor.filter(|c| !c.trim().is_empty()).map(decode).transpose()
}

/// Of `limit + 1` rows read, the page to answer and the cursor of the
/// next one (`None` on the last page).
pub fn split<T, P: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> P,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|last| encode(&position(last)));
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let c = encode(&(1_796_115_105_035i64, "hr1".to_owned()));
        assert_eq!(
            decode::<(i64, String)>(&c).unwrap(),
            (1_796_115_105_035, "hr1".to_owned())
        );
        assert!(decode::<(i64, String)>("not a cursor!").is_err());
        assert!(decode::<(i64, String)>(&encode(&42i64)).is_err());
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_follow() {
        let (page, next) = split(vec![5, 4, 3], 3, |n| *n);
        assert_eq!((page.len(), next), (3, None));
        let (page, next) = split(vec![5, 4, 3, 2], 3, |n| *n);
        assert_eq!(page, [5, 4, 3]);
        assert_eq!(decode::<i64>(&next.unwrap()).unwrap(), 3);
    }
}
