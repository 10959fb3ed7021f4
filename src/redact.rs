//! The second wall for secrets (SPEC §3.2): every configured secret —
//! tokens, signing secrets, the userinfo, path and query of webhook URLs,
//! webhook header values — is replaced by `[redacted]` in every log line
//! (the log writer passes each line through here) and in every error text
//! herald stores. The first wall is at the source: transport errors never
//! carry URLs (`herald_messaging::http`), and 5xx answers carry a sentence,
//! not the cause.

use std::io::{self, Write};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use crate::config::{ChannelTarget, Config};

/// What a secret is replaced with.
pub const MARK: &str = "[redacted]";

/// Shorter strings are not treated as secrets (a path of `/h` is no secret,
/// and replacing it would garble every line).
const MIN_SECRET: usize = 4;

/// The secrets of one config, longest first.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Every secret `config` holds.
    pub fn from_config(config: &Config) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        secrets.extend(config.sources.iter().map(|s| s.token.expose().to_owned()));
        secrets.extend(config.server.read_tokens.iter().map(|t| t.expose().to_owned()));
        for account in [
            &config.adapters.discord,
            &config.adapters.slack,
            &config.adapters.telegram,
        ]
        .into_iter()
        .flatten()
        {
            secrets.push(account.token.expose().to_owned());
            secrets.extend(account.inbound_secret.as_ref().map(|s| s.expose().to_owned()));
            secrets.extend(account.app_token.as_ref().map(|s| s.expose().to_owned()));
        }
        for channel in config.channels.values() {
            match &channel.target {
                ChannelTarget::PagerDuty(pd) => secrets.push(pd.routing_key.expose().to_owned()),
                ChannelTarget::SlackWebhook(hook) => {
                    // The whole URL is the webhook's credential.
                    secrets.push(hook.url.expose().to_owned());
                    secrets.extend(url_secrets(hook.url.expose()));
                }
                ChannelTarget::Webhook(_) | ChannelTarget::Chat { .. } => {}
            }
            if let ChannelTarget::Webhook(hook) = &channel.target {
                let secret = hook.secret.expose();
                secrets.push(secret.to_owned());
                if let Some(key) = secret.strip_prefix("whsec_") {
                    secrets.push(key.to_owned());
                }
                secrets.extend(hook.headers.values().cloned());
                secrets.extend(url_secrets(&hook.url));
            }
        }
        if let Some(password) = config.store.password() {
            if let Ok(decoded) = percent_encoding::percent_decode_str(&password).decode_utf8() {
                secrets.push(decoded.into_owned());
            }
            secrets.push(password);
        }
        secrets.retain(|s| s.chars().count() >= MIN_SECRET);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced.
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MARK);
            }
        }
        out
    }
}

/// The parts of a URL that may carry a secret: userinfo, the path (a
/// Slack webhook's path is its key), the query and its values.
fn url_secrets(text: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(url) = reqwest::Url::parse(text) {
        secrets.push(url.username().to_owned());
        secrets.extend(url.password().map(str::to_owned));
        secrets.push(url.path().to_owned());
        secrets.push(url.path().trim_start_matches('/').to_owned());
        secrets.extend(url.query().map(str::to_owned));
        secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    }
    secrets
}

static CURRENT: LazyLock<RwLock<Arc<Redactor>>> = LazyLock::new(RwLock::default);

/// Use the secrets of `config` from now on (at start and on every reload).
pub fn install(config: &Config) {
    *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Redactor::from_config(config));
}

/// `text` with every secret of the running config replaced.
pub fn clean(text: &str) -> String {
    let current = CURRENT.read().unwrap_or_else(PoisonError::into_inner).clone();
    current.clean(text)
}

/// Standard error, through [`clean`]: the log writer. tracing-subscriber
/// formats each event into one buffer and writes it at once, so a secret
/// never straddles two writes.
pub struct RedactingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(clean(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_secret_is_replaced() {
        let config = Config::parse_with_env(
            "t.toml",
            r#"
[server]
read_tokens = ["read-SECRET-1"]
[[sources]]
name = "fleet"
token = "source-SECRET-2"
[adapters.telegram]
token = "123456:TG-SECRET-3"
[channels.hook]
adapter = "webhook"
url = "https://user:PASS-SECRET-4@hooks.example.com/path-SECRET-5?key=QUERY-SECRET-6"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
headers = { "x-api-key" = "HEADER-SECRET-7" }
"#,
            |_| None,
        )
        .unwrap();
        let r = Redactor::from_config(&config);
        let text = "read-SECRET-1 source-SECRET-2 http://127.0.0.1:9/bot123456:TG-SECRET-3/sendMessage \
                    PASS-SECRET-4 /path-SECRET-5 key=QUERY-SECRET-6 MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw HEADER-SECRET-7 \
                    hooks.example.com";
        let cleaned = r.clean(text);
        assert!(!cleaned.contains("SECRET"), "{cleaned}");
        assert!(!cleaned.contains("MfKQ9r8G"), "{cleaned}");
        assert!(cleaned.contains("hooks.example.com"), "the host stays: {cleaned}");
        assert_eq!(r.clean("nothing secret here"), "nothing secret here");
    }
}
