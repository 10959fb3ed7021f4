//! SPEC §3.2 through the real binary: a config with a distinctive secret
//! for every adapter, every one of them made to fail (closed ports, wrong
//! tokens answered by the platform), and then every API answer of every
//! status, the journal, `/metrics` and the whole log searched for each
//! secret. And `read_tokens`: reads need a token, by Bearer or Basic.

mod common;
mod emulators;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Herald, event};
use emulators::discord::DiscordEmulator;
use emulators::slack::SlackEmulator;
use serde_json::{Value, json};

const SOURCE: &str = "src-TOKEN-aaaa1111";
const READ: &str = "read-TOKEN-bbbb2222";
const DISCORD: &str = "disc-TOKEN-cccc3333";
const TELEGRAM: &str = "123456:tele-TOKEN-dddd4444";
const SLACK: &str = "xoxb-slack-TOKEN-eeee5555";
const HOOK_PASSWORD: &str = "hookpass-TOKEN-ffff";
const HOOK_PATH: &str = "path-TOKEN-gggg";
const HOOK_QUERY: &str = "query-TOKEN-hhhh";
const HOOK_HEADER: &str = "header-TOKEN-iiii";
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const SECRETS: &[&str] = &[
    SOURCE,
    READ,
    DISCORD,
    TELEGRAM,
    "tele-TOKEN",
    SLACK,
    HOOK_PASSWORD,
    HOOK_PATH,
    HOOK_QUERY,
    HOOK_HEADER,
    HOOK_SECRET,
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
];

fn config(discord: &DiscordEmulator, slack: &SlackEmulator) -> String {
    format!(
        r#"
read_tokens = ["{READ}"]

[[sources]]
name = "fleet"
token = "{SOURCE}"

[adapters.discord]
token = "{DISCORD}"
api_url = "{}"
timeout = "2s"

[adapters.slack]
token = "{SLACK}"
api_url = "{}"
timeout = "2s"

[adapters.telegram]
token = "{TELEGRAM}"
api_url = "http://127.0.0.1:9"
timeout = "2s"

[channels.main]
adapter = "web"

[channels.d]
adapter = "discord"
id = "4242"

[channels.s]
adapter = "slack"
id = "C1"

[channels.t]
adapter = "telegram"
id = "77"

[channels.hook]
adapter = "webhook"
url = "http://hookuser:{HOOK_PASSWORD}@127.0.0.1:9/{HOOK_PATH}?key={HOOK_QUERY}"
secret = "{HOOK_SECRET}"
headers = {{ "x-api-key" = "{HOOK_HEADER}" }}
timeout = "2s"

[defaults]
channels = ["main", "d", "s", "t", "hook"]

[delivery]
retry_schedule = ["200ms", "400ms"]
progress_min_interval = "100ms"
"#,
        discord.api_url(),
        slack.api_url()
    )
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{password}"))
    )
}

/// Start herald with `[server]` extended by the start of `text` (up to its
/// first table), the rest of `text` after the test store and listen keys.
fn start(text: &str) -> Herald {
    Herald::start_full(|dir| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{text}\n",
            text = text.replacen(
                "\n[[sources]]",
                &format!("\n[store]\nurl = \"{}\"\n\n[[sources]]", common::store::url(dir)),
                1
            )
        )
    })
}

/// GET with an Authorization header (or none): status, headers, body text.
async fn get(h: &Herald, path: &str, auth: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = h.client.get(h.url(path));
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = req.send().await.expect("get");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.expect("body"))
}

#[tokio::test]
async fn no_configured_secret_reaches_logs_answers_metrics_or_stored_errors() {
    // Both platforms answer, but know other tokens: auth errors.
    let discord = DiscordEmulator::start("another-token", &["4242"]).await;
    let slack = SlackEmulator::start("xoxb-another", &["C1"]).await;
    let h = start(&config(&discord, &slack));
    let bearer = format!("Bearer {READ}");
    let res = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth(SOURCE)
        .json(&json!([
            event("r", "w", "t1", 1, "running", json!({})),
            event("r", "w", "t1", 2, "failed", json!({"reason": "boom"})),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    // Every channel but the web one fails, each its own way; wait until
    // each receipt has an error recorded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answers: Vec<String> = Vec::new();
    loop {
        let mut all = Vec::new();
        for status in ["pending", "sending", "failed", "surfaced"] {
            let (code, _, body) = get(
                &h,
                &format!("/v1/deliveries?status={status}&limit=1000"),
                Some(&bearer),
            )
            .await;
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            all.extend(v["deliveries"].as_array().cloned().expect("a deliveries list"));
            answers.push(body);
        }
        let failing: Vec<&Value> = all.iter().filter(|r| r["channel"] != "main").collect();
        if failing.len() == 4 && failing.iter().all(|r| r["last_error"].is_string()) {
            // The errors say what went wrong, and where, without the secret.
            let errors: Vec<&str> = failing
                .iter()
                .map(|r| r["last_error"].as_str().unwrap())
                .collect();
            assert!(
                errors.iter().filter(|e| e.contains("127.0.0.1")).count() >= 2,
                "the closed ports are named by host: {errors:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "receipts never failed: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every other answer, of every status.
    for (path, auth) in [
        ("/v1/workers", Some(bearer.as_str())),
        ("/v1/workers/r/w/t1/events", Some(bearer.as_str())),
        ("/v1/deliveries?limit=5000", Some(bearer.as_str())),
        ("/v1/nowhere", Some(bearer.as_str())),
        ("/v1/workers", None),
        ("/metrics", None),
        ("/healthz", None),
        ("/readyz", None),
        ("/", Some(bearer.as_str())),
        ("/channels/main", Some(bearer.as_str())),
        ("/channels/main/messages", Some(bearer.as_str())),
    ] {
        answers.push(get(&h, path, auth).await.2);
    }
    let rejected = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth("wrong")
        .json(&json!({"seq": 1}))
        .send()
        .await
        .unwrap();
    answers.push(rejected.text().await.unwrap());
    let bad = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth(SOURCE)
        .body("{not json")
        .send()
        .await
        .unwrap();
    answers.push(bad.text().await.unwrap());
    // Let the retries run a little longer, then read the whole log.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = h.log.lock().unwrap().join("\n");
    assert!(log.contains("127.0.0.1"), "the log names the hosts that failed");
    assert!(
        log.contains("will be retried") || log.contains("failed"),
        "the failures were logged"
    );
    for secret in SECRETS {
        assert!(!log.contains(secret), "the log carries {secret}");
        for answer in &answers {
            assert!(!answer.contains(secret), "an answer carries {secret}: {answer}");
        }
    }
}

#[tokio::test]
async fn reads_need_a_token_by_bearer_or_basic_and_probes_stay_open() {
    let h = start(&format!(
        "read_tokens = [\"{READ}\"]\n\n[[sources]]\nname = \"fleet\"\ntoken = \"{SOURCE}\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n[defaults]\nchannels = [\"main\"]\n"
    ));
    for path in [
        "/v1/workers",
        "/v1/deliveries",
        "/",
        "/channels/main",
        "/channels/main/messages",
    ] {
        let (status, headers, body) = get(&h, path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(headers["www-authenticate"], "Basic realm=\"herald\"", "{path}");
        let v: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["error"].is_string(), "{body}");
        assert_eq!(get(&h, path, Some("Bearer wrong")).await.0, 401, "{path}");
        assert_eq!(get(&h, path, Some(&basic("wrong"))).await.0, 401, "{path}");
        assert_eq!(
            get(&h, path, Some(&format!("Bearer {READ}"))).await.0,
            200,
            "{path}"
        );
        assert_eq!(
            get(&h, path, Some(&basic(READ))).await.0,
            200,
            "{path} with Basic"
        );
        assert_eq!(
            get(&h, path, Some(&format!("Bearer {SOURCE}"))).await.0,
            200,
            "{path} with a source token"
        );
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&h, path, None).await.0, 200, "{path} stays open");
    }
    // The web channel's live stream, as the page's EventSource asks for it
    // after a Basic login.
    let denied = h.client.get(h.url("/channels/main/events")).send().await.unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let stream = h
        .client
        .get(h.url("/channels/main/events"))
        .header("authorization", basic(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // Posting still takes a source token, not a read token.
    let res = h
        .client
        .post(h.url("/v1/events"))
        .bearer_auth(READ)
        .json(&event("r", "w", "t", 1, "running", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
}
