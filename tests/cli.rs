//! The command line through the real binary: check-config, routes, send.

mod common;

use std::process::Command;

use common::{Herald, WEB_ONLY, herald_bin};
use serde_json::json;

fn run(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(herald_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("HERALD_URL")
        .env_remove("HERALD_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run herald");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const ROUTED: &str = r#"
[adapters.slack]
token = "${SLACK_TOKEN:-xoxb-test}"

[channels.main]
adapter = "web"

[channels.ops]
adapter = "slack"
id = "C0123456"

[channels.builds]
adapter = "web"
id = "builds"

[channels.audit]
adapter = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[routes]]
match = { state = ["failed", "cancelled"], "labels.team" = "infra" }
channels = ["ops"]
continue = true

[[routes]]
match = { run_id = "nightly-*" }
channels = ["builds", "audit"]

[defaults]
channels = ["main"]
"#;

#[test]
fn check_config_accepts_a_valid_file_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    std::fs::write(&path, ROUTED).unwrap();
    let (code, out, err) = run(
        &["check-config", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("4 channel(s)") && out.contains("2 route(s)"),
        "{out}"
    );
}

#[test]
fn check_config_without_a_file_uses_the_built_in_default() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["check-config"], dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("<built-in>: ok"), "{out}");
}

#[test]
fn check_config_reports_every_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:8600\"\ncolour = \"blue\"\n\n[[sources]]\nname = \"fleet\"\ntoken = \"${HERALD_TEST_UNSET_TOKEN}\"\n\n\
         [channels.main]\nadapter = \"web\"\n\n[[routes]]\nmatch = { run_id = \"~([\" }\nchannels = [\"mian\"]\n\n[delivery]\nmax_age = \"soon\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = run(&["check-config", "--config", p], dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        format!("{p}:3:1: unknown key `server.colour`"),
        format!("{p}:7:9: environment variable HERALD_TEST_UNSET_TOKEN is not set"),
        format!("{p}:13:20: bad matcher for run_id"),
        format!("{p}:14:13: unknown channel \"mian\""),
        format!("{p}:17:11: bad duration \"soon\""),
    ];
    for e in &expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e.as_str())),
            "missing {e:?} in:\n{err}"
        );
    }
    assert_eq!(lines.len(), expect.len(), "{err}");
}

#[test]
fn check_config_reports_syntax_errors_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("syntax.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8600\n").unwrap();
    let p = path.to_str().unwrap();
    let (code, _, err) = run(&["check-config", "--config", p], dir.path(), &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{p}:2:")), "{err}");
    let (code, _, err) = run(
        &["check-config", "--config", "/nonexistent/h.toml"],
        dir.path(),
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/h.toml"), "{err}");
}

#[test]
fn routes_prints_the_channels_of_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(&cfg, ROUTED).unwrap();
    let cases = [
        (
            json!({"state": "failed", "reason": "x", "run_id": "nightly-3", "extra": {"labels": {"team": "infra"}}}),
            "ops\nbuilds\naudit\n",
        ),
        (
            json!({"state": "running", "run_id": "nightly-3"}),
            "builds\naudit\n",
        ),
        (
            json!({"state": "failed", "reason": "x", "run_id": "adhoc"}),
            "main\n",
        ),
    ];
    for (i, (fields, expected)) in cases.into_iter().enumerate() {
        let mut ev = json!({"seq": 1, "worker_id": "w", "task_id": "t", "timestamp": "2026-06-12T17:02:00Z"});
        ev.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let path = dir.path().join(format!("ev{i}.json"));
        std::fs::write(&path, ev.to_string()).unwrap();
        let (code, out, err) = run(
            &[
                "routes",
                "--config",
                cfg.to_str().unwrap(),
                "--event",
                path.to_str().unwrap(),
            ],
            dir.path(),
            &[],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, expected, "case {i}");
    }
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"seq": 1}"#).unwrap();
    let (code, _, err) = run(
        &[
            "routes",
            "--config",
            cfg.to_str().unwrap(),
            "--event",
            bad.to_str().unwrap(),
        ],
        dir.path(),
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("run_id"), "{err}");
}

#[tokio::test]
async fn send_posts_an_event_and_reports_rejections() {
    let h = Herald::start(WEB_ONLY);
    let dir = h.dir.path().to_owned();
    let env = [("HERALD_URL", h.base.as_str()), ("HERALD_TOKEN", "test-token")];
    let (code, out, err) = run(
        &[
            "send",
            "--worker",
            "w1",
            "--state",
            "completed",
            "--run",
            "r-send",
            "--task",
            "t1",
            "--summary",
            "all good",
        ],
        &dir,
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accepted 1"), "{out}");
    let (_, body) = h.get("/v1/workers?run_id=r-send").await;
    assert_eq!(body["workers"][0]["state"], "completed");
    assert_eq!(body["workers"][0]["event"]["summary"], "all good");

    let (code, _, err) = run(&["send", "--worker", "w1", "--state", "exploded"], &dir, &env);
    assert_ne!(code, 0);
    assert!(err.contains("400") && err.contains("unknown state"), "{err}");

    let (code, _, err) = run(
        &["send", "--worker", "w1", "--state", "running"],
        &dir,
        &[("HERALD_URL", h.base.as_str()), ("HERALD_TOKEN", "wrong")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in [
        root.join("config/herald.toml"),
        root.join("config/examples/full.toml"),
    ] {
        let (code, out, err) = run(&["check-config", "--config", path.to_str().unwrap()], root, &[]);
        assert_eq!(code, 0, "{}: {err}", path.display());
        assert!(out.contains(": ok"), "{out}");
    }
}

#[test]
fn check_config_takes_a_postgres_store_without_reaching_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg.toml");
    // Port 9 (discard) on loopback: nothing answers there; check-config
    // must not try.
    let text = format!("[store]\nurl = \"postgres://herald:s3cret-pg-pass@127.0.0.1:9/herald\"\n{ROUTED}");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = run(
        &["check-config", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("store postgres://herald:***@127.0.0.1:9/herald"),
        "{out}"
    );
    assert!(
        !out.contains("s3cret-pg-pass") && !err.contains("s3cret-pg-pass"),
        "{out}{err}"
    );
}

#[test]
fn check_config_rejects_a_malformed_or_unknown_store() {
    let dir = tempfile::tempdir().unwrap();
    for (url, expect) in [
        (
            "postgres://herald:s3cret-pg-pass@127.0.0.1:notaport/herald",
            "store.url is not a valid PostgreSQL URL",
        ),
        (
            "mysql://herald@127.0.0.1/herald",
            "store.url must start with sqlite: (embedded) or postgres:",
        ),
    ] {
        let path = dir.path().join("bad-store.toml");
        std::fs::write(&path, format!("[store]\nurl = \"{url}\"\n")).unwrap();
        let p = path.to_str().unwrap();
        let (code, _, err) = run(&["check-config", "--config", p], dir.path(), &[]);
        assert_eq!(code, 1, "{url}: {err}");
        assert!(err.starts_with(&format!("{p}:2:7: {expect}")), "{url}: {err}");
        assert!(!err.contains("s3cret-pg-pass"), "{err}");
    }
    let path = dir.path().join("unknown-key.toml");
    std::fs::write(&path, "[store]\nurl = \"sqlite://h.db\"\npool_size = 4\n").unwrap();
    let p = path.to_str().unwrap();
    let (code, _, err) = run(&["check-config", "--config", p], dir.path(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!("{p}:3:1: unknown key `store.pool_size`")),
        "{err}"
    );
}

#[test]
fn check_config_says_when_a_running_herald_holds_the_sqlite_store() {
    if common::store::on_postgres() {
        // Several heralds may share a PostgreSQL store; nothing to say.
        return;
    }
    let mut h = common::Herald::start(common::WEB_ONLY);
    let config = h.config.to_str().unwrap().to_owned();
    let (code, out, err) = run(&["check-config", "--config", &config], h.dir.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: a running herald serve holds this SQLite store") && out.contains("PostgreSQL"),
        "{out}"
    );
    h.kill9();
    let (code, out, _) = run(&["check-config", "--config", &config], h.dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(!out.contains("note:"), "{out}");
}
