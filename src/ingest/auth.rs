//! Bearer-token authentication against `[[sources]]`, in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use crate::config::SourceConfig;

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
}
