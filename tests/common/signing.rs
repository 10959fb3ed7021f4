//! Inbound requests signed as each platform signs them (SPEC §3.5): Slack's
//! v0 HMAC-SHA256 over `v0:<ts>:<body>`, Discord's Ed25519 over timestamp +
//! body. Telegram sends its secret token as a header.

use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Slack signing secret tests configure.
pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The Telegram webhook secret tests configure.
pub const TELEGRAM_SECRET: &str = "t3l3gram-secret_TOKEN";

/// The Discord application's signing key (its public half is configured).
pub fn discord_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Discord public key to configure, as hex.
pub fn discord_public_key() -> String {
    hex(&discord_key().verifying_key().to_bytes())
}

/// `X-Slack-Signature` for a body sent at `ts`.
pub fn slack_signature(ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).expect("a key");
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex(&mac.finalize().into_bytes()))
}

/// Slack's headers for a body sent now.
pub fn slack_headers(body: &str) -> Vec<(&'static str, String)> {
    let now = chrono::Utc::now().timestamp().to_string();
    vec![
        ("x-slack-signature", slack_signature(&now, body)),
        ("x-slack-request-timestamp", now),
    ]
}

/// Discord's headers for a body sent now.
pub fn discord_headers(body: &str) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = discord_key().sign(format!("{ts}{body}").as_bytes());
    vec![
        ("x-signature-timestamp", ts),
        ("x-signature-ed25519", hex(&signature.to_bytes())),
    ]
}

/// Telegram's header.
pub fn telegram_headers() -> Vec<(&'static str, String)> {
    vec![("x-telegram-bot-api-secret-token", TELEGRAM_SECRET.to_owned())]
}
