//! Bearer-token authentication against `[[sources]]`, in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::{Secret, SourceConfig};

/// The outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Auth {
    /// A source's token matched; its name.
    Source(String),
    /// No sources are configured (loopback-only default): ingest is open.
    Open,
    /// Missing or wrong token.
    Denied,
}

/// Check `Authorization: Bearer <token>` against every source. Every token
/// is compared, whether or not an earlier one matched, and each comparison
/// is constant-time, so timing reveals neither which source nor how much of
/// a token matched.
pub fn authenticate(headers: &HeaderMap, sources: &[SourceConfig]) -> Auth {
    if sources.is_empty() {
        return Auth::Open;
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return Auth::Denied;
    };
    let mut matched: Option<&str> = None;
    for source in sources {
        let equal: bool = presented
            .as_bytes()
            .ct_eq(source.token.expose().as_bytes())
            .into();
        if equal && matched.is_none() {
            matched = Some(&source.name);
        }
    }
    matched.map_or(Auth::Denied, |name| Auth::Source(name.to_owned()))
}

/// The credential a read presents: a Bearer token, or the password of
/// HTTP Basic (so a browser can log in to a web channel page).
fn read_credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_owned());
    }
    None
}

/// Whether a read may proceed: always when no `read_tokens` are set;
/// else a read token or a source token, by Bearer or Basic. Every token is
/// compared, each in constant time.
pub fn authorize_read(headers: &HeaderMap, read_tokens: &[Secret], sources: &[SourceConfig]) -> bool {
    if read_tokens.is_empty() {
        return true;
    }
    let Some(presented) = read_credential(headers) else {
        return false;
    };
    let mut matched = false;
    for token in read_tokens.iter().chain(sources.iter().map(|s| &s.token)) {
        let equal: bool = presented.as_bytes().ct_eq(token.expose().as_bytes()).into();
        matched |= equal;
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn sources() -> Vec<SourceConfig> {
        vec![
            SourceConfig {
                name: "fleet".into(),
                token: Secret::new("alpha".into()),
            },
            SourceConfig {
                name: "alerts".into(),
                token: Secret::new("beta".into()),
            },
        ]
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn tokens_are_matched_to_sources() {
        assert_eq!(
            authenticate(&headers("Bearer beta"), &sources()),
            Auth::Source("alerts".into())
        );
        assert_eq!(authenticate(&headers("Bearer alph"), &sources()), Auth::Denied);
        assert_eq!(authenticate(&headers("Basic alpha"), &sources()), Auth::Denied);
        assert_eq!(authenticate(&HeaderMap::new(), &sources()), Auth::Denied);
        assert_eq!(authenticate(&HeaderMap::new(), &[]), Auth::Open);
    }

    #[test]
    fn reads_take_read_or_source_tokens_by_bearer_or_basic() {
        let read = vec![Secret::new("gamma".into())];
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        assert!(authorize_read(&headers("Bearer gamma"), &read, &sources()));
        assert!(authorize_read(&headers("Bearer alpha"), &read, &sources()));
        assert!(authorize_read(
            &headers(&basic("anyone:gamma")),
            &read,
            &sources()
        ));
        assert!(!authorize_read(
            &headers(&basic("gamma:wrong")),
            &read,
            &sources()
        ));
        assert!(!authorize_read(&headers("Bearer gamm"), &read, &sources()));
        assert!(!authorize_read(&headers("Basic !!notbase64"), &read, &sources()));
        assert!(!authorize_read(&HeaderMap::new(), &read, &sources()));
        assert!(
            authorize_read(&HeaderMap::new(), &[], &sources()),
            "no read tokens: open"
        );
    }
}
