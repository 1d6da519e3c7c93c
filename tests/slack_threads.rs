//! Reading Slack threads as Slack serves them, against the strict fake Slack (every request
//! checked against Slack's published spec): joining a discussion reads its newest messages with
//! GET `conversations.replies` and the cursor, the bot finds its own replies far down a thread
//! after a restart, its earlier answers come back whole, and people are named (`users.info`).

mod common;

use std::time::Duration;

use anchorbot_platform::{Platform, PlatformError};
use anchorbot_slack::client::Api;
use anchorbot_slack::platform::SlackPlatform;
use anchorbot_slack::rate;
use anchorbot_slack::target::SlackTarget;
use anchorbot_slack::thread::{MAX_PAGES, PAGE_SIZE};
use anchorbot_slack::SlackConfig;
use common::slack::{FakeSlack, FakeSlackConfig};
use common::slack_app::SlackApp;
use common::*;
use secrecy::SecretString;

/// Seeds `channel` with a thread of `n` messages "note-0000" … from U1 and U2 in turn.
fn long_thread(slack: &FakeSlack, channel: &str, n: usize) -> Vec<String> {
    let texts: Vec<String> = (0..n).map(|i| format!("note-{i:04}")).collect();
    let messages: Vec<(&str, &str)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (if i % 2 == 0 { "U1" } else { "U2" }, t.as_str()))
        .collect();
    slack.seed_thread(channel, &messages)
}

/// Every `conversations.replies` call went as Slack's spec says: GET, query parameters.
fn assert_replies_are_gets(slack: &FakeSlack) {
    let calls = slack.calls_to("conversations.replies");
    assert!(!calls.is_empty(), "the thread was not read");
    for c in &calls {
        assert_eq!(c.http_method, "GET", "{c:?}");
        assert_eq!(c.content_type, None, "{c:?}");
        assert!(c.ok(), "{c:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_a_thread_reads_it_with_get_and_query_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start_default().await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let ts = slack.seed_thread(
        "C6",
        &[
            ("U1", "Shall we ship on Friday or Monday?"),
            ("U2", "Monday, the release notes are not ready"),
            ("U1", "OK, we decided: Monday, codename KESTREL"),
        ],
    );
    slack.push_event(slack.app_mention("C6", "U3", "what did we decide?", Some(&ts[0])));
    slack.answer_in("C6", &ts[0], "what did we decide?").await;
    let system = system_of(&llm.turn_requests().pop().unwrap());
    assert!(system.contains("codename KESTREL"), "{system}");
    assert!(system.contains("release notes are not ready"), "{system}");
    assert_replies_are_gets(&slack);
    let args = &slack.calls_to("conversations.replies")[0].args;
    assert_eq!(args["channel"], "C6");
    assert_eq!(args["ts"], ts[0].as_str());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn joining_a_long_thread_reads_its_newest_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start_default().await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    // 450 messages and the mention: three pages of 200, oldest first.
    let ts = long_thread(&slack, "C7", 450);
    slack.push_event(slack.app_mention("C7", "U3", "summarize please", Some(&ts[0])));
    slack.answer_in("C7", &ts[0], "summarize please").await;
    let system = system_of(&llm.turn_requests().pop().unwrap());
    assert!(system.contains("note-0449"), "the newest message is seeded");
    assert!(system.contains("note-0400"), "{system}");
    assert!(
        !system.contains("note-0100"),
        "an old message took the place of a new one"
    );
    assert_replies_are_gets(&slack);
    let calls = slack.calls_to("conversations.replies");
    assert_eq!(
        calls.len(),
        3,
        "pages of {PAGE_SIZE}, forward with the cursor"
    );
    assert!(calls[0].args.get("cursor").is_none());
    for pair in calls.windows(2) {
        let next = pair[0].response["response_metadata"]["next_cursor"].clone();
        assert_eq!(pair[1].args["cursor"], next, "the cursor was followed");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thread_longer_than_the_cap_is_read_up_to_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start_default().await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let n = MAX_PAGES * PAGE_SIZE as usize + 150;
    let ts = long_thread(&slack, "C8", n);
    slack.push_event(slack.app_mention("C8", "U3", "and now?", Some(&ts[0])));
    slack.answer_in("C8", &ts[0], "and now?").await;
    assert_eq!(slack.calls_to("conversations.replies").len(), MAX_PAGES);
    let last_read = format!("note-{:04}", MAX_PAGES * PAGE_SIZE as usize - 1);
    let system = system_of(&llm.turn_requests().pop().unwrap());
    assert!(system.contains(&last_read), "the newest of what was read");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_the_bot_finds_its_reply_far_down_a_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start_default().await;
    let llm = FakeLlm::start(echo).await;
    // The bot answered at message 230, past the first page of 200.
    let mut messages: Vec<(String, String)> = (0..260)
        .map(|i| ("U1".to_string(), format!("chatter {i}")))
        .collect();
    messages[230] = ("UBOT".into(), "an earlier answer".into());
    let refs: Vec<(&str, &str)> = messages
        .iter()
        .map(|(u, t)| (u.as_str(), t.as_str()))
        .collect();
    let ts = slack.seed_thread("C9", &refs);
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    // No mention: answered only because the bot is in the thread.
    slack.push_event(slack.message("C9", "U2", "any news?", Some(&ts[0])));
    slack.answer_in("C9", &ts[0], "any news?").await;
    assert_replies_are_gets(&slack);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bots_earlier_answer_is_read_back_whole() {
    let tmp = tempfile::tempdir().unwrap();
    // Post and update: the answer is in a markdown block, its `text` a 280-character preview.
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        ..Default::default()
    })
    .await;
    let long = format!("{} THE-END-MARKER", "A long story. ".repeat(60));
    let answer = long.clone();
    let llm = FakeLlm::start(move |req| {
        if last_user(req).contains("tell me a story") {
            Reply::text(&answer)
        } else {
            echo(req)
        }
    })
    .await;
    let app = SlackApp::start(&tmp.path().join("a"), &llm.url, &slack).await;
    let mention = slack.app_mention("C10", "U1", "tell me a story", None);
    let root = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C10", &root, "THE-END-MARKER").await;
    let posted = slack.bot_messages("C10");
    assert!(
        !posted.iter().any(|m| m.text.contains("THE-END-MARKER")),
        "the fallback text is only a preview"
    );
    app.stop().await;

    // Another installation (a fresh store) joins the thread: the answer comes back whole.
    let app = SlackApp::start(&tmp.path().join("b"), &llm.url, &slack).await;
    slack.push_event(slack.app_mention("C10", "U2", "what did it say?", Some(&root)));
    slack.answer_in("C10", &root, "what did it say?").await;
    let system = system_of(&llm.turn_requests().pop().unwrap());
    assert!(system.contains("THE-END-MARKER"), "{system}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn people_are_named_in_live_messages_and_in_joined_history() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start_default().await;
    slack.add_person("U7", "", "Grace Hopper");
    slack.add_person("U8", "ada", "Ada Lovelace");
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let ts = slack.seed_thread(
        "C11",
        &[("U7", "Ship on Monday?"), ("U8", "Agreed, Monday")],
    );
    slack.push_event(slack.app_mention("C11", "U8", "what did we decide?", Some(&ts[0])));
    let answer = slack.answer_in("C11", &ts[0], "what did we decide?").await;
    assert!(
        answer.contains("Answer to <ada: what did we decide?>"),
        "{answer}"
    );
    let system = system_of(&llm.turn_requests().pop().unwrap());
    assert!(
        system.contains("Grace Hopper: Ship on Monday?"),
        "no display name: the real name; {system}"
    );
    assert!(system.contains("ada: Agreed, Monday"), "{system}");
    // People were looked up as Slack's spec says (GET), and only the thread's people.
    let lookups = slack.calls_to("users.info");
    let mut users: Vec<&str> = lookups
        .iter()
        .map(|c| c.args["user"].as_str().unwrap())
        .collect();
    users.sort();
    users.dedup();
    assert_eq!(users, ["U7", "U8"]);
    assert!(
        lookups.iter().all(|c| c.http_method == "GET"),
        "{lookups:?}"
    );
    // A follow-up by the same person costs no look-up: the names are cached.
    let before = slack.calls_to("users.info").len();
    slack.push_event(slack.message("C11", "U8", "and the codename?", Some(&ts[0])));
    let answer = slack.answer_in("C11", &ts[0], "and the codename?").await;
    assert!(
        answer.contains("Answer to <ada: and the codename?>"),
        "{answer}"
    );
    assert_eq!(slack.calls_to("users.info").len(), before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_users_read_the_author_is_their_id_and_the_message_is_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = FakeSlackConfig::default();
    cfg.scopes.retain(|s| s != "users:read");
    let slack = FakeSlack::start(cfg).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mention = slack.app_mention("C12", "U1", "still there?", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    let answer = slack.answer_in("C12", &ts, "still there?").await;
    assert!(
        answer.contains("Answer to <<@U1>: still there?>"),
        "{answer}"
    );
    let lookups = slack.calls_to("users.info");
    assert!(!lookups.is_empty());
    assert!(
        lookups
            .iter()
            .all(|c| c.response["error"] == "missing_scope"),
        "{lookups:?}"
    );
    // The failure is remembered: the next message costs no look-up.
    let before = lookups.len();
    slack.push_event(slack.message("C12", "U1", "hello again", Some(&ts)));
    slack.answer_in("C12", &ts, "hello again").await;
    assert_eq!(slack.calls_to("users.info").len(), before);
    app.stop().await;
}

/// The adapter's platform on its own, against the fake.
fn platform(slack: &FakeSlack) -> (SlackPlatform, Api) {
    let mut cfg = SlackConfig::new(SecretString::from(slack.config().bot_token.clone()));
    cfg.api_url = slack.api_url();
    let api = Api::new(&cfg).unwrap();
    // As `auth.test` tells the running adapter: the workspace its calls are counted in.
    api.set_workspace("T1");
    (SlackPlatform::new(cfg, api.clone()), api)
}

fn reply_target(channel: &str, thread: &str, message: &str) -> anchorbot_platform::ReplyTarget {
    SlackTarget {
        team: "T1".into(),
        user: "U3".into(),
        ..Default::default()
    }
    .into_target(channel, Some(thread), Some(message))
}

#[tokio::test]
async fn each_page_spends_the_workspaces_replies_budget() {
    let slack = FakeSlack::start_default().await;
    let ts = long_thread(&slack, "C13", 450);
    let (p, api) = platform(&slack);
    let before = rate::available(&api, "conversations.replies", None);
    let prior = p
        .history(&reply_target("C13", &ts[0], "9.9"), 200)
        .await
        .unwrap();
    assert_eq!(prior.len(), 200);
    assert_eq!(prior.last().unwrap().text, "note-0449");
    assert_eq!(prior[0].text, "note-0250");
    let spent = before - rate::available(&api, "conversations.replies", None);
    // Three pages; the allowance refills by under 0.1 while the test runs.
    assert!((2.8..=3.0).contains(&spent), "spent {spent}");
}

#[tokio::test]
async fn no_page_is_asked_for_while_the_method_is_held() {
    let slack = FakeSlack::start_default().await;
    let ts = long_thread(&slack, "C14", 3);
    let (p, api) = platform(&slack);
    // Another conversation got a 429 with a minute to wait.
    let key = rate::key(&api.workspace(), "conversations.replies", None);
    assert_eq!(key.scope, "T1");
    api.budget.hold(&key, Duration::from_secs(60));
    let started = std::time::Instant::now();
    let read = p.history(&reply_target("C14", &ts[0], "9.9"), 200).await;
    assert!(
        matches!(read, Err(PlatformError::RateLimited { retry_after }) if retry_after > Duration::from_secs(30)),
        "{read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it did not wait out the hold"
    );
    assert!(slack.calls_to("conversations.replies").is_empty());
}

#[tokio::test]
async fn a_name_is_looked_up_once_and_cached() {
    let slack = FakeSlack::start_default().await;
    slack.add_person("U7", "", "Grace Hopper");
    let (_, api) = platform(&slack);
    for _ in 0..3 {
        assert_eq!(api.names.name(&api, "U7").await, "Grace Hopper");
    }
    // The same look-up gives the person's team (a stream's recipient_team_id).
    assert_eq!(api.names.team_of(&api, "U7").await.as_deref(), Some("T1"));
    assert_eq!(slack.calls_to("users.info").len(), 1);
    // Unknown to Slack: the id, as Slack writes a mention, and the failure is remembered.
    for _ in 0..2 {
        assert_eq!(api.names.name(&api, "B0").await, "<@B0>");
    }
    let calls = slack.calls_to("users.info");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].response["error"], "user_not_found");
}

#[tokio::test]
async fn a_crowded_thread_names_its_newest_writers_and_spends_at_most_50_look_ups() {
    let slack = FakeSlack::start_default().await;
    let people: Vec<(String, String)> = (100..160)
        .map(|i| (format!("U{i}"), format!("hello from {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = people
        .iter()
        .map(|(u, t)| (u.as_str(), t.as_str()))
        .collect();
    let ts = slack.seed_thread("C15", &refs);
    let (p, _) = platform(&slack);
    let prior = p
        .history(&reply_target("C15", &ts[0], "9.9"), 200)
        .await
        .unwrap();
    assert_eq!(prior.len(), 60);
    assert_eq!(slack.calls_to("users.info").len(), 50);
    assert_eq!(
        prior[59].author.display_name, "u159",
        "the newest are named"
    );
    assert_eq!(prior[10].author.display_name, "u110");
    assert_eq!(prior[0].author.display_name, "<@U100>");
    assert_eq!(prior[0].author.id, "U100");
}
