//! `GET /openapi.json` (SPEC §3): an OpenAPI 3.1 document generated from
//! the code, describing every endpoint herald serves; and schemathesis
//! (PyPI, in the test venv that `scripts/test` makes) run against the real
//! binary finds no server error, no undocumented status or content type,
//! and no answer that breaks its schema.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{Herald, WEB_ONLY, event};
use serde_json::json;

/// Every route herald serves (`ingest::routes` and the web pages).
const SERVED: &[&str] = &[
    "/",
    "/-/reload",
    "/channels/{name}",
    "/channels/{name}/events",
    "/channels/{name}/messages",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/readyz",
    "/v1/alerts/alertmanager",
    "/v1/alerts/grafana",
    "/v1/deliveries",
    "/v1/deliveries/retry",
    "/v1/deliveries/{id}/retry",
    "/v1/events",
    "/v1/inbound/discord",
    "/v1/inbound/slack",
    "/v1/inbound/telegram",
    "/v1/overview",
    "/v1/overview/events",
    "/v1/replicas",
    "/v1/workers",
    "/v1/workers/{run_id}/{worker_id}/{task_id}/events",
];

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_endpoint() {
    let h = Herald::start(WEB_ONLY);
    let (status, doc) = h.get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = SERVED.iter().copied().collect();
    assert_eq!(documented, served);
    // Every operation says what its errors look like.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            if path.starts_with("/v1/") {
                assert!(
                    responses.keys().any(|s| s.starts_with('4')),
                    "{method} {path} documents no 4xx"
                );
            }
        }
    }
    // The event's states come from the parser's own list.
    let states = &doc["components"]["schemas"]["EventIn"]["properties"]["state"]["enum"];
    assert_eq!(states, &json!(herald::protocol::KNOWN_STATES));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let python = std::env::var("HERALD_TEST_PYTHON")
        .expect("HERALD_TEST_PYTHON is set by scripts/test (run the tests with ./scripts/test)");
    let bin = std::path::Path::new(&python).with_file_name("schemathesis");
    let h = Herald::start(WEB_ONLY);
    // Something to read and to replay.
    let (status, body) = h
        .post_events(&json!([
            event("r", "w", "t", 1, "running", json!({})),
            event("r", "w", "done", 1, "completed", json!({"summary": "ok"})),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    let url = h.url("/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args([
                "run",
                &url,
                "--header",
                "Authorization: Bearer test-token",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                // An event stream never ends: it is described, not fuzzed.
                "--exclude-path",
                "/channels/{name}/events",
                "--exclude-path",
                "/v1/overview/events",
                "--workers",
                "1",
                "--max-examples",
                "40",
                "--seed",
                "20261202",
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs (installed by scripts/test)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis failed:\n{stdout}\n{stderr}");
    // "Test cases:" then "1313 generated, 1313 passed" (failures would
    // be counted on that line).
    let cases = stdout
        .lines()
        .skip_while(|l| !l.trim().starts_with("Test cases:"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        cases.contains("passed") && !cases.contains("failed") && !cases.contains("error"),
        "{stdout}"
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_default()
    };
    // "Selected: 20/22": of the operations schemathesis loads (all but
    // the document itself), all but the two excluded event streams.
    let selected = line("Selected: ");
    let (chosen, loaded) = selected.split_once('/').unwrap_or(("", ""));
    assert_eq!(loaded.trim(), (SERVED.len() - 1).to_string(), "{stdout}");
    assert_eq!(chosen.trim(), (SERVED.len() - 3).to_string(), "{stdout}");
    assert_eq!(
        line("Tested: "),
        chosen.trim(),
        "every selected operation was tested:\n{stdout}"
    );
    eprintln!("{}", stdout.lines().rev().take(12).collect::<Vec<_>>().join("\n"));
}
