//! Robustness: every parser of outside input — the event body parser (JSON
//! and NDJSON), the Alertmanager and Grafana payload parsers, the config
//! loader, and the bot's inbound endpoints (signed, through the real
//! binary) — is fed arbitrary bytes and mutations of valid inputs. It
//! never panics, and every rejection is a clear 4xx or a config error at
//! a place in the file.
//!
//! `HERALD_ROBUSTNESS_CASES` sets the cases per parser (default 300; the
//! long mode, `bench/robustness`, runs 100,000 each).

mod common;

use common::signing::{SLACK_SECRET, TELEGRAM_SECRET, discord_headers, discord_public_key, slack_headers};
use common::{Herald, event};
use herald::alerts::{AlertSource, parse};
use herald::config::Config;
use herald::ingest::body::{Framing, parse_events};
use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestCaseError, TestRunner};
use serde_json::{Value, json};

fn cases(default: u32) -> u32 {
    std::env::var("HERALD_ROBUSTNESS_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runner(default: u32) -> TestRunner {
    TestRunner::new(Cases {
        cases: cases(default),
        failure_persistence: None,
        ..Cases::default()
    })
}

/// One edit of a byte string: where (a fraction of its length), what
/// (replace, insert, delete, or repeat a stretch) and with which byte.
#[derive(Debug, Clone)]
struct Edit {
    at: f64,
    kind: u8,
    byte: u8,
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        (0.0..1.0f64, 0u8..4, any::<u8>()).prop_map(|(at, kind, byte)| Edit { at, kind, byte }),
        1..8,
    )
}

/// Bytes that matter to JSON, TOML and forms, so mutations hit syntax.
const SYNTAX: &[u8] = b"{}[]\",:=&%\\\n#.'0-9e+tfn ";

fn mutate(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for e in edits {
        let i = ((out.len() as f64) * e.at) as usize;
        let byte = if e.byte % 2 == 0 {
            SYNTAX[usize::from(e.byte / 2) % SYNTAX.len()]
        } else {
            e.byte
        };
        match e.kind {
            0 if i < out.len() => out[i] = byte,
            1 => out.insert(i.min(out.len()), byte),
            2 if i < out.len() => {
                out.remove(i);
            }
            _ => {
                let end = (i + 1 + usize::from(e.byte % 16)).min(out.len());
                let stretch = out[i.min(end)..end].to_vec();
                out.splice(i.min(out.len())..i.min(out.len()), stretch);
            }
        }
    }
    out
}

/// Arbitrary bytes, or a mutation of one of `valid`.
fn inputs(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        (0..n, edits()).prop_map(move |(k, e)| mutate(&valid[k], &e)),
    ]
}

fn valid_events() -> Vec<Vec<u8>> {
    let one = event("r", "w", "t", 3, "running_tool", json!({"tool": "cargo build"}));
    let failed = event(
        "r",
        "w",
        "t",
        4,
        "failed",
        json!({"reason": "exit 2", "extra": {"labels": {"team": "infra"}, "timeout_seconds": 60}}),
    );
    vec![
        one.to_string().into_bytes(),
        json!([one, failed]).to_string().into_bytes(),
        format!("{one}\n{failed}\n").into_bytes(),
    ]
}

#[test]
fn the_event_parser_never_panics_and_rejects_with_a_400_naming_the_problem() {
    runner(300)
        .run(&inputs(valid_events()), |bytes| {
            for framing in [Framing::Json, Framing::Ndjson] {
                if let Err(e) = parse_events(&bytes, framing) {
                    prop_assert_eq!(e.status().as_u16(), 400);
                    prop_assert!(!e.message().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
}

fn valid_alerts() -> Vec<Vec<u8>> {
    let am = json!({"version": "4", "status": "firing", "receiver": "herald", "groupKey": "{}:{}",
        "alerts": [{"status": "firing", "labels": {"alertname": "NodeDown", "instance": "n1"},
            "annotations": {"summary": "node n1 is down"}, "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "cafe"}]});
    let grafana = json!({"receiver": "herald", "status": "firing", "orgId": 1, "version": "1",
        "alerts": [{"status": "resolved", "labels": {"alertname": "DiskFull"},
            "annotations": {"summary": "disk 95% full"}, "startsAt": "2026-12-01T10:00:00Z",
            "endsAt": "2026-12-01T10:05:00Z", "fingerprint": "1a2b", "values": {"A": 95}}]});
    vec![am.to_string().into_bytes(), grafana.to_string().into_bytes()]
}

#[test]
fn the_alert_parsers_never_panic_and_name_the_bad_field() {
    runner(300)
        .run(&inputs(valid_alerts()), |bytes| {
            let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                // Not JSON: the endpoint answers 400 before the parser.
                return Ok(());
            };
            for source in [AlertSource::Alertmanager, AlertSource::Grafana] {
                if let Err(e) = parse(source, &value) {
                    prop_assert!(!e.message.is_empty(), "{e:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_config_loader_never_panics_and_places_every_error() {
    let full = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/full.toml")).unwrap();
    let built_in = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/config/herald.toml")).unwrap();
    runner(300)
        .run(&inputs(vec![full, built_in]), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(errors) = Config::parse_with_env("c.toml", &text, |_| Some("from-env".to_owned())) {
                let shown = errors.to_string();
                prop_assert!(!shown.trim().is_empty());
                for line in shown.lines().filter(|l| !l.starts_with(' ')) {
                    prop_assert!(
                        line.starts_with("c.toml:"),
                        "an error without its place: {line:?}"
                    );
                    prop_assert!(!line.contains("serde"), "serde internals shown: {line:?}");
                }
            }
            Ok(())
        })
        .unwrap();
}

fn bot_config() -> String {
    format!(
        "[[sources]]\nname = \"fleet\"\ntoken = \"test-token\"\n\n\
         [adapters.slack]\ntoken = \"xoxb-t\"\nsigning_secret = \"{SLACK_SECRET}\"\napi_url = \"http://127.0.0.1:9/api\"\n\n\
         [adapters.discord]\ntoken = \"dtoken\"\npublic_key = \"{}\"\napi_url = \"http://127.0.0.1:9/api\"\n\n\
         [adapters.telegram]\ntoken = \"1:tg\"\nwebhook_secret = \"{TELEGRAM_SECRET}\"\napi_url = \"http://127.0.0.1:9\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n[defaults]\nchannels = [\"main\"]\n",
        discord_public_key()
    )
}

/// What each inbound endpoint takes, validly signed.
fn valid_inbound() -> Vec<Vec<u8>> {
    let slack_command =
        "token=x&team_id=T1&channel_id=C1&user_id=U1&user_name=ana&command=%2Fherald&text=status+r";
    let slack_press = format!(
        "payload={}",
        urlencode(
            &json!({"type": "block_actions", "user": {"id": "U1", "name": "ana"}, "channel": {"id": "C1"},
                "message": {"ts": "1.2"}, "response_url": "http://127.0.0.1:9/x",
                "actions": [{"action_id": "herald_ack", "value": "ack:hr1"}]})
            .to_string()
        )
    );
    let discord = json!({"type": 2, "id": "1", "application_id": "2", "token": "t", "channel_id": "9001",
        "member": {"user": {"id": "5", "username": "ana"}}, "data": {"name": "herald",
        "options": [{"name": "status", "type": 1, "options": [{"name": "run", "type": 3, "value": "r"}]}]}});
    let telegram = json!({"update_id": 7, "message": {"message_id": 1, "date": 1, "chat": {"id": 4400, "type": "group"},
        "from": {"id": 5, "is_bot": false, "first_name": "Ana"}, "text": "/status r"}});
    let telegram_press = json!({"update_id": 8, "callback_query": {"id": "q", "from": {"id": 5, "first_name": "Ana"},
        "message": {"message_id": 2, "chat": {"id": 4400, "type": "group"}, "date": 1}, "data": "ack:hr1"}});
    [
        format!("slack {slack_command}"),
        format!("slack {slack_press}"),
        format!("discord {discord}"),
        format!("telegram {telegram}"),
        format!("telegram {telegram_press}"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_inbound_endpoints_answer_signed_garbage_without_a_server_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = Herald::start(&bot_config());
    // The platform prefix survives mutation most of the time; what does
    // not goes to Telegram's endpoint as a body.
    let strategy = (0..5usize, edits()).prop_map(|(k, e)| {
        let valid = valid_inbound();
        let text = String::from_utf8_lossy(&valid[k]).into_owned();
        let (platform, body) = text.split_once(' ').unwrap_or(("telegram", ""));
        (platform.to_owned(), mutate(body.as_bytes(), &e))
    });
    let served = std::sync::atomic::AtomicU32::new(0);
    runner(60)
        .run(&strategy, |(platform, body)| {
            let body = String::from_utf8_lossy(&body).into_owned();
            let (path, headers, form) = match platform.as_str() {
                "slack" => ("/v1/inbound/slack", slack_headers(&body), true),
                "discord" => ("/v1/inbound/discord", discord_headers(&body), false),
                _ => ("/v1/inbound/telegram", common::signing::telegram_headers(), false),
            };
            let (status, answer) = rt.block_on(h.post_inbound(path, &headers, body.clone(), form));
            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if status >= 500 {
                return Err(TestCaseError::fail(format!(
                    "{path} answered {status} to {body:?}: {answer}"
                )));
            }
            Ok(())
        })
        .unwrap();
    // And herald is still serving.
    let (status, _) = rt.block_on(h.get("/healthz"));
    assert_eq!(status, 200, "after {served:?} requests");
}
