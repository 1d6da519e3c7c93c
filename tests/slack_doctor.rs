//! `anchorbot doctor` against the local fake Slack (`tests/fakes/src/slack.rs`): the real binary
//! calls `auth.test` at `ANCHORBOT_SLACK_API_URL`, names the workspace and the bot, reads the
//! granted scopes from `x-oauth-scopes`, says which connection `anchorbot run` will use, and
//! never prints a token.

mod common;

use common::slack::{FakeSlack, FakeSlackConfig};
use common::*;

/// Runs `anchorbot doctor` with `env` added; returns (stdout, stderr).
async fn doctor(env: &[(&str, &str)]) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    // No model server: those checks fail, and these tests only read the Slack lines.
    let mut cmd = anchorbot(&tmp.path().join("data"), &closed_port_url());
    cmd.arg("doctor");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (_, out, err) = run(cmd).await;
    (out, err)
}

/// The output line of the check whose name starts with `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(7..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{out}"))
}

/// Asserts that no secret appears in the output.
fn no_secrets(out: &str, err: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{s:?} was printed:\n{out}{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_workspace_and_reports_socket_mode() {
    let fake = FakeSlack::start_default().await;
    let cfg = fake.config().clone();
    let api = fake.api_url();
    let (out, err) = doctor(&[
        ("SLACK_BOT_TOKEN", &cfg.bot_token),
        ("SLACK_APP_TOKEN", &cfg.app_token),
        ("ANCHORBOT_SLACK_API_URL", &api),
    ])
    .await;

    let auth = line(&out, "Slack bot token");
    assert!(auth.starts_with("[ ok ]"), "{auth}");
    assert!(
        auth.contains("workspace \"Anchor Test\" (T1, https://anchor-test.slack.com/)")
            && auth.contains("bot user @anchorbot (UBOT)"),
        "{auth}"
    );
    let scopes = line(&out, "Slack scopes");
    assert!(
        scopes.starts_with("[ ok ]") && scopes.contains("all 11"),
        "{scopes}"
    );
    let connection = line(&out, "Slack connection");
    assert!(
        connection.starts_with("[ ok ]") && connection.contains("Socket Mode"),
        "{connection}"
    );
    no_secrets(&out, &err, &[&cfg.bot_token, &cfg.app_token]);

    // Slack saw one auth.test, with the bot token as a bearer token.
    let calls = fake.calls_to("auth.test");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].token.as_deref(), Some(cfg.bot_token.as_str()));
    assert_eq!(calls[0].http_method, "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_a_missing_scope() {
    let mut cfg = FakeSlackConfig::default();
    cfg.scopes.retain(|s| s != "files:read");
    let fake = FakeSlack::start(cfg.clone()).await;
    let api = fake.api_url();
    let (out, err) = doctor(&[
        ("SLACK_BOT_TOKEN", &cfg.bot_token),
        ("SLACK_APP_TOKEN", &cfg.app_token),
        ("ANCHORBOT_SLACK_API_URL", &api),
    ])
    .await;

    assert!(line(&out, "Slack bot token").starts_with("[ ok ]"), "{out}");
    let scopes = line(&out, "Slack scopes");
    assert!(
        scopes.starts_with("[FAIL]") && scopes.contains("missing files:read"),
        "{scopes}"
    );
    assert!(
        !scopes.contains("chat:write"),
        "only the missing scope is named: {scopes}"
    );
    no_secrets(&out, &err, &[&cfg.bot_token, &cfg.app_token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_invalid_auth_for_a_wrong_token() {
    let fake = FakeSlack::start_default().await;
    let cfg = fake.config().clone();
    let api = fake.api_url();
    let wrong = "xoxb-9999-8888-notthebottoken";
    let (out, err) = doctor(&[
        ("SLACK_BOT_TOKEN", wrong),
        ("SLACK_APP_TOKEN", &cfg.app_token),
        ("ANCHORBOT_SLACK_API_URL", &api),
    ])
    .await;

    let auth = line(&out, "Slack bot token");
    assert!(
        auth.starts_with("[FAIL]") && auth.contains("invalid_auth"),
        "{auth}"
    );
    assert!(
        !out.contains("Slack scopes"),
        "no scope verdict without a valid token:\n{out}"
    );
    no_secrets(&out, &err, &[wrong, &cfg.app_token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_says_what_http_mode_lacks_and_what_to_set_without_slack() {
    let fake = FakeSlack::start_default().await;
    let cfg = fake.config().clone();
    let api = fake.api_url();
    let secret = "8f14e45fceea167a5a36dedd4bea2543";
    let (out, err) = doctor(&[
        ("SLACK_BOT_TOKEN", &cfg.bot_token),
        ("SLACK_SIGNING_SECRET", secret),
        ("ANCHORBOT_SLACK_API_URL", &api),
    ])
    .await;
    let connection = line(&out, "Slack connection");
    assert!(
        connection.starts_with("[FAIL]") && connection.contains("ANCHORBOT_SLACK_LISTEN"),
        "{connection}"
    );
    no_secrets(&out, &err, &[&cfg.bot_token, secret]);

    let (out, _) = doctor(&[
        ("SLACK_BOT_TOKEN", &cfg.bot_token),
        ("SLACK_SIGNING_SECRET", secret),
        ("ANCHORBOT_SLACK_LISTEN", "127.0.0.1:0"),
        ("ANCHORBOT_SLACK_API_URL", &api),
    ])
    .await;
    let connection = line(&out, "Slack connection");
    assert!(
        connection.starts_with("[ ok ]")
            && connection.contains("Events API over HTTP")
            && connection.contains("/slack/events"),
        "{connection}"
    );

    let (out, _) = doctor(&[]).await;
    let slack = line(&out, "Slack");
    assert!(
        slack.starts_with("[ ok ]")
            && slack.contains("not configured")
            && slack.contains("SLACK_BOT_TOKEN")
            && slack.contains("SLACK_APP_TOKEN"),
        "{slack}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("Slack")).count(),
        1,
        "one line when Slack is not configured:\n{out}"
    );
}
