//! Checking that an inbound request comes from the platform (SPEC §3.5),
//! before anything in it is parsed: Slack's v0 HMAC-SHA256 signature with
//! a timestamp within five minutes, Discord's Ed25519 signature over
//! timestamp and body, Telegram's secret token header. Every comparison is
//! constant time. Pure: the clock is an argument.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How old (or how far ahead) a Slack request's timestamp may be.
pub const SLACK_MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was not believed; the `reason` label of
/// `herald_inbound_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The platform is not set up to take requests (no secret or key).
    #[error("not configured")]
    NotConfigured,
    /// A signature or timestamp header is missing.
    #[error("missing signature")]
    Missing,
    /// The timestamp is not a number, or too old or too new.
    #[error("stale timestamp")]
    Stale,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Verified, but not a request herald understands.
    #[error("malformed")]
    Malformed,
}

impl Rejected {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::NotConfigured => "not_configured",
            Rejected::Missing => "missing",
            Rejected::Stale => "stale",
            Rejected::BadSignature => "bad_signature",
            Rejected::Malformed => "malformed",
        }
    }
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`,
/// `X-Slack-Request-Timestamp` within five minutes of `now` (Unix s).
pub fn slack(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Rejected> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Rejected::Missing);
    };
    let ts: i64 = timestamp.trim().parse().map_err(|_| Rejected::Stale)?;
    if (now - ts).abs() > SLACK_MAX_SKEW_SECS {
        return Err(Rejected::Stale);
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or(Rejected::BadSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).map_err(|_| Rejected::NotConfigured)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).map_err(|_| Rejected::BadSignature)
}

/// Discord: `X-Signature-Ed25519` (hex) over `X-Signature-Timestamp` + body,
/// with the application's public key (hex).
pub fn discord(
    public_key_hex: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), Rejected> {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Rejected::Missing);
    };
    let key: [u8; 32] = decode_hex(public_key_hex)
        .and_then(|k| k.try_into().ok())
        .ok_or(Rejected::NotConfigured)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| Rejected::NotConfigured)?;
    let signature: [u8; 64] = decode_hex(signature)
        .and_then(|s| s.try_into().ok())
        .ok_or(Rejected::BadSignature)?;
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify(&message, &Signature::from_bytes(&signature))
        .map_err(|_| Rejected::BadSignature)
}

/// Telegram: `X-Telegram-Bot-Api-Secret-Token` equals the `secret_token`
/// given to `setWebhook`.
pub fn telegram(webhook_secret: &str, header: Option<&str>) -> Result<(), Rejected> {
    let given = header.ok_or(Rejected::Missing)?;
    if bool::from(given.as_bytes().ct_eq(webhook_secret.as_bytes())) {
        Ok(())
    } else {
        Err(Rejected::BadSignature)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack_sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("v0={hex}")
    }

    #[test]
    fn slack_requests_verify_only_signed_and_fresh() {
        let body = b"command=%2Fherald&text=status";
        let sig = slack_sign("s3cret", "1700000000", body);
        assert_eq!(
            slack("s3cret", Some("1700000000"), Some(&sig), body, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            slack(
                "s3cret",
                Some("1700000000"),
                Some(&sig),
                b"command=%2Fherald&text=STATUS",
                1_700_000_100
            ),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            slack("other", Some("1700000000"), Some(&sig), body, 1_700_000_100),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            slack("s3cret", Some("1700000000"), Some(&sig), body, 1_700_000_601),
            Err(Rejected::Stale)
        );
        assert_eq!(
            slack("s3cret", Some("soon"), Some(&sig), body, 1_700_000_000),
            Err(Rejected::Stale)
        );
        assert_eq!(
            slack("s3cret", None, Some(&sig), body, 1_700_000_000),
            Err(Rejected::Missing)
        );
        assert_eq!(
            slack("s3cret", Some("1700000000"), Some("v1=00"), body, 1_700_000_000),
            Err(Rejected::BadSignature)
        );
    }

    #[test]
    fn discord_requests_verify_with_the_application_key() {
        use ed25519_dalek::{Signer, SigningKey};
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public: String = key
            .verifying_key()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = br#"{"type":1}"#;
        let sig: String = key
            .sign(&[b"1700000000".as_slice(), body].concat())
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(discord(&public, Some("1700000000"), Some(&sig), body), Ok(()));
        assert_eq!(
            discord(&public, Some("1700000001"), Some(&sig), body),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            discord(&public, Some("1700000000"), Some(&sig), br#"{"type":2}"#),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            discord(&public, Some("1700000000"), Some("zz"), body),
            Err(Rejected::BadSignature)
        );
        assert_eq!(discord(&public, None, Some(&sig), body), Err(Rejected::Missing));
        assert_eq!(
            discord("nothex", Some("1700000000"), Some(&sig), body),
            Err(Rejected::NotConfigured)
        );
    }

    #[test]
    fn telegram_requests_carry_the_secret_token() {
        assert_eq!(telegram("tok3n", Some("tok3n")), Ok(()));
        assert_eq!(telegram("tok3n", Some("tok3")), Err(Rejected::BadSignature));
        assert_eq!(telegram("tok3n", None), Err(Rejected::Missing));
    }
}
