//! The Slack adapter under Slack's rate limits and streaming errors, end to end: the real
//! `App` and `SlackAdapter` against the fake Slack (`tests/fakes`), which enforces the
//! per-method tiers when asked and records every call sent into a running Retry-After as a
//! broken rule (the test fails when the fake is dropped with one).

mod common;

use std::time::{Duration, Instant};

use common::slack::{FakeSlack, FakeSlackConfig};
use common::slack_app::SlackApp;
use common::*;
use secrecy::SecretString;

/// An answer of `n` words, `delay` apart (summaries answer at once).
fn slow_words(n: usize, delay: Duration) -> impl Fn(&serde_json::Value) -> Reply {
    move |req| {
        if is_summary(req) {
            return Reply::text("");
        }
        Reply::chunks((0..n).map(|i| format!("word{i} ")).collect(), Some("stop")).slow(delay)
    }
}

/// The answer's last word, for [`FakeSlack::answer_in`].
fn last_word(n: usize) -> String {
    format!("word{}", n - 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_holds_the_method_for_every_conversation_until_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(slow_words(12, Duration::from_millis(250))).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    slack.rate_limit("chat.update", 1, 3);
    let mut threads = Vec::new();
    for channel in ["C1", "C2"] {
        let mention = slack.app_mention(channel, "U1", "go", None);
        threads.push((channel, mention["ts"].as_str().unwrap().to_string()));
        slack.push_event(mention);
    }
    for (channel, ts) in &threads {
        slack.answer_in(channel, ts, &last_word(12)).await;
    }
    let updates = slack.calls_to("chat.update");
    let limited = updates
        .iter()
        .find(|c| c.status == 429)
        .expect("the forced 429 was answered")
        .at;
    // Neither conversation updated into the Retry-After the other one received.
    for c in updates.iter().filter(|c| c.at > limited && c.ok()) {
        assert!(
            c.at.duration_since(limited) >= Duration::from_millis(2900),
            "a chat.update {:?} after the 429 asking for 3 s",
            c.at.duration_since(limited)
        );
    }
    assert!(
        updates.iter().filter(|c| c.status == 429).count() <= 2,
        "only calls already on their way met the hold"
    );
    assert_eq!(slack.violations().all(), []);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_start_stream_allowance_answers_post_at_once_and_all_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        tiers: true,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(slow_words(20, Duration::from_millis(20))).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    // 24 questions at once over 6 channels: more than chat.startStream's minute (Tier 2).
    let asked = Instant::now();
    let mut threads = Vec::new();
    for i in 0..24 {
        let channel = format!("C{}", i % 6);
        let mention = slack.app_mention(&channel, &format!("U{i}"), "go", None);
        threads.push((channel, mention["ts"].as_str().unwrap().to_string()));
        slack.push_event(mention);
    }
    for (channel, ts) in &threads {
        slack.answer_in(channel, ts, &last_word(20)).await;
    }
    let answered = asked.elapsed();
    let starts = slack.calls_to("chat.startStream");
    let posts = slack.calls_to("chat.postMessage");
    assert!(
        !starts.is_empty() && starts.len() < 24,
        "{} streams",
        starts.len()
    );
    assert!(
        posts.iter().filter(|c| c.ok()).count() >= 24 - starts.len(),
        "the rest were posted"
    );
    // The budget kept every call inside Slack's tiers: not one 429.
    let limited: Vec<String> = slack
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .map(|c| c.method.clone())
        .collect();
    assert_eq!(limited, Vec::<String>::new());
    assert!(
        answered < Duration::from_secs(30),
        "all 24 answers took {answered:?}"
    );
    assert_eq!(slack.violations().all(), []);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_call_stream_error_posts_that_answer_and_streaming_stays_on() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;

    slack.fail_next("chat.startStream", "invalid_arguments");
    let mention = slack.app_mention("C1", "U1", "first", None);
    let first = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C1", &first, "first").await;
    assert!(slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args["thread_ts"] == first.as_str() && c.ok()));

    // An append refused mid-answer: the answer is finished by an edit.
    slack.fail_next("chat.appendStream", "msg_too_long");
    let mention = slack.app_mention("C1", "U1", "second", None);
    let second = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C1", &second, "second").await;

    // And the workspace still streams.
    let mention = slack.app_mention("C1", "U1", "third", None);
    let third = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C1", &third, "third").await;
    let started: Vec<bool> = slack
        .calls_to("chat.startStream")
        .iter()
        .map(|c| c.ok())
        .collect();
    assert_eq!(started, [false, true, true]);
    let streamed = |ts: &str| {
        slack
            .thread_messages("C1", ts)
            .iter()
            .any(|m| m.streamed && m.bot_id.is_some())
    };
    assert!(!streamed(&first) && streamed(&second) && streamed(&third));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_answers_a_slack_connect_guest_in_their_own_team() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    slack.add_foreign_user("T0GUEST", "U0GUEST", "guest");
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mention = slack.app_mention("C1", "U0GUEST", "hello from elsewhere", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C1", &ts, "hello from elsewhere").await;
    let start = &slack.calls_to("chat.startStream")[0].args;
    assert_eq!(start["recipient_user_id"], "U0GUEST");
    assert_eq!(
        start["recipient_team_id"], "T0GUEST",
        "the asker's team, not the workspace's (T1)"
    );
    app.stop().await;
}

/// An answer with a table, a rule and a fenced block with a language.
const MARKDOWN: &str = "Here:\n\n| name | n |\n|---|---:|\n| **a** | 1 |\n| bb | 22 |\n\n---\n\n```rust\nfn main() {}\n```\nDone.";

/// What Slack's `markdown` block should get for [`MARKDOWN`].
const RENDERED: &str = "Here:\n\n```\n| name |  n |\n|------|----|\n| a    |  1 |\n| bb   | 22 |\n```\n\n\n\n```\nfn main() {}\n```\nDone.";

#[tokio::test(flavor = "multi_thread")]
async fn tables_rules_and_code_languages_reach_slack_as_the_markdown_block_renders_them() {
    for streaming in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let slack = FakeSlack::start(FakeSlackConfig {
            streaming,
            ..Default::default()
        })
        .await;
        let llm = FakeLlm::start(|req| {
            if is_summary(req) {
                Reply::text("")
            } else {
                Reply::text(MARKDOWN)
            }
        })
        .await;
        let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
        let mention = slack.app_mention("C1", "U1", "a table please", None);
        let ts = mention["ts"].as_str().unwrap().to_string();
        slack.push_event(mention);
        slack.answer_in("C1", &ts, "Done.").await;
        let answer = slack
            .thread_messages("C1", &ts)
            .into_iter()
            .find(|m| m.bot_id.is_some())
            .unwrap();
        let shown = if streaming {
            assert!(answer.streamed);
            answer.text.clone()
        } else {
            answer.blocks[0]["text"].as_str().unwrap().to_string()
        };
        assert_eq!(shown, RENDERED, "streaming: {streaming}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seconds_waited_on_rate_limits_are_in_metrics_per_platform_and_method() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(slow_words(10, Duration::from_millis(300))).await;
    let mut s = settings(&tmp.path().join("data"), &llm.url);
    s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
    s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
    s.slack.api_url = slack.api_url();
    s.metrics.listen = Some("127.0.0.1:0".into());
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    let mut app = anchorbot::App::build(s).await.unwrap();
    for a in adapters {
        app = app.with_adapter(a);
    }
    let ops = app
        .bind_ops()
        .await
        .unwrap()
        .expect("metrics.listen is set");
    let app = running::RunningApp::start(app);
    assert!(slack.wait_connections(1, Duration::from_secs(20)).await);
    slack.rate_limit("chat.update", 1, 2);
    let mention = slack.app_mention("C1", "U1", "go", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C1", &ts, &last_word(10)).await;
    assert!(slack
        .calls_to("chat.update")
        .iter()
        .any(|c| c.status == 429));
    let body = reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let waited = |suffix: &str| -> f64 {
        body.lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "anchorbot_platform_rate_limit_wait_seconds_{suffix}"
                )) && l.contains(r#"platform="slack""#)
                    && l.contains(r#"method="chat.update""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        waited("sum") >= 2.0,
        "the 2 s Retry-After on chat.update is counted: {body}"
    );
    assert!(waited("count") >= 1.0, "{body}");
    app.stop().await;
}
