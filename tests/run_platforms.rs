//! `anchorbot run` as a new user starts it: the real binary, a fresh data dir, and only the
//! environment variables the issues name (tokens and base URL), against the fake Slack and the
//! fake Discord.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::discord::{FakeDiscord, FakeDiscordConfig, USER_ID};
use common::slack::{FakeSlack, FakeSlackConfig};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn run_with_only_the_documented_variables_serves_slack_and_discord_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh-data");
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.arg("run")
        .env("SLACK_BOT_TOKEN", &slack.config().bot_token)
        .env("SLACK_APP_TOKEN", &slack.config().app_token)
        .env("ANCHORBOT_SLACK_API_URL", slack.api_url())
        .env("DISCORD_TOKEN", &discord.config().token)
        .env("ANCHORBOT_DISCORD_API_URL", discord.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    assert!(
        slack.wait_connections(1, Duration::from_secs(60)).await,
        "Slack's Socket Mode was never opened"
    );
    assert!(
        discord.wait_ready(Duration::from_secs(60)).await,
        "no Discord READY"
    );
    let mention = slack.app_mention("C1", "U1", "hello from Slack", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    let answered = slack
        .wait_thread("C1", &ts, Duration::from_secs(60), |msgs| {
            msgs.iter().any(|m| {
                m.bot_id.is_some() && !m.streaming && m.visible_text().contains("hello from Slack")
            })
        })
        .await;
    assert!(answered, "the Slack mention was not answered");
    let dm = "1200000000000000999";
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(dm, USER_ID, "hello from Discord"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !discord
        .bot_messages(dm)
        .iter()
        .any(|m| m.content.contains("hello from Discord"))
    {
        assert!(Instant::now() < deadline, "the Discord DM was not answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    for secret in [
        slack.config().bot_token.as_str(),
        slack.config().app_token.as_str(),
        discord.config().token.as_str(),
    ] {
        assert!(!log.contains(secret), "a token reached the log");
    }
}
