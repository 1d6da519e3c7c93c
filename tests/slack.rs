//! The Slack adapter end to end: the real `App` with the real `SlackAdapter`
//! (slack-morphism pointed at `slack.api_url`), against the local fake Slack
//! (`tests/fakes/src/slack.rs`: the Web API over HTTP and Socket Mode over WebSocket, written
//! from Slack's documented payloads) and the fake OpenAI server.

mod common;

use std::time::Duration;

use anchorbot::Settings;
use common::slack::{FakeSlack, FakeSlackConfig};
use common::slack_app::SlackApp;
use common::*;
use secrecy::SecretString;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_gets_a_streamed_threaded_reply_remembered_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&dir, &llm.url, &slack).await;
    let mention = slack.app_mention("C1", "U1", "the code word is BLUEBIRD", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    let env = slack.push_event(mention);
    assert!(slack.wait_ack(&env, Duration::from_secs(3)).await.is_some());
    let answer = slack.answer_in("C1", &ts, "BLUEBIRD").await;
    // The asker is named as Slack shows them (`users.info`: the fake's U1 is "u1").
    assert!(
        answer.contains("Answer to <u1: the code word is BLUEBIRD>"),
        "{answer}"
    );
    // Streamed natively, in the thread of the mention.
    assert!(!slack.calls_to("chat.startStream").is_empty());
    let start = &slack.calls_to("chat.startStream")[0].args;
    assert_eq!(start["thread_ts"], ts.as_str());
    assert_eq!(start["recipient_user_id"], "U1");
    assert_eq!(start["recipient_team_id"], "T1");
    // A follow-up in the thread, without a mention, is answered with the memory.
    slack.push_event(slack.message("C1", "U1", "what was the code word?", Some(&ts)));
    slack.answer_in("C1", &ts, "what was the code word?").await;
    let last = llm.turn_requests().pop().unwrap();
    assert!(all_text(&last).contains("BLUEBIRD"));
    app.stop().await;

    // After a restart the memory comes from the anchor in sled, not from re-reading Slack.
    let replies_before = slack.calls_to("conversations.replies").len();
    let app = SlackApp::start(&dir, &llm.url, &slack).await;
    slack.push_event(slack.app_mention("C1", "U1", "and now?", Some(&ts)));
    slack.answer_in("C1", &ts, "and now?").await;
    let last = llm.turn_requests().pop().unwrap();
    assert!(all_text(&last).contains("BLUEBIRD"));
    assert_eq!(
        slack.calls_to("conversations.replies").len(),
        replies_before
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dm_is_answered_and_the_bots_own_echo_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    slack.push_event(slack.message("D1", "U2", "hello in private", None));
    let ok = slack
        .wait_thread("D1", "", Duration::from_secs(30), |_| true)
        .await;
    let _ = ok;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let bot = slack.bot_messages("D1");
        if bot
            .iter()
            .any(|m| !m.streaming && m.visible_text().contains("hello in private"))
        {
            // Top level: not threaded under the question.
            assert!(bot.iter().all(|m| m.thread_ts.is_none()), "{bot:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no DM answer: {bot:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fake echoes the bot's own posts back as message events; none is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(llm.turn_requests().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_envelope_twice_and_a_mention_with_its_message_twin_get_one_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mention = slack.app_mention("C2", "U1", "once please", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    let twin = slack.message_twin(&mention);
    let env = slack.push_event(mention);
    slack.push_event(twin);
    slack.redeliver(&env);
    slack.answer_in("C2", &ts, "once please").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(llm.turn_requests().len(), 1);
    let answers = slack
        .thread_messages("C2", &ts)
        .into_iter()
        .filter(|m| m.bot_id.is_some())
        .count();
    assert_eq!(answers, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_arrive_within_3_s_while_the_model_is_slow() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(700))).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mut envs = Vec::new();
    for i in 0..3 {
        envs.push(slack.push_event(slack.app_mention("C3", "U1", &format!("slow {i}"), None)));
    }
    for env in envs {
        let waited = slack.wait_ack(&env, Duration::from_secs(3)).await;
        assert!(
            waited.is_some(),
            "envelope {env} not acknowledged within 3 s"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_native_streaming_the_answer_is_posted_and_updated() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(|req| {
        Reply::text(&format!(
            "A long answer to <{}> {}",
            last_user(req),
            "word ".repeat(40)
        ))
        .slow(Duration::from_millis(30))
    })
    .await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mention = slack.app_mention("C4", "U1", "fallback please", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    let answer = slack.answer_in("C4", &ts, "fallback please").await;
    assert!(answer.trim_end().ends_with("word"), "{answer}");
    assert!(!slack.calls_to("chat.postMessage").is_empty());
    assert!(!slack.calls_to("chat.update").is_empty());
    // A second answer in the workspace does not ask for a stream again.
    let starts = slack.calls_to("chat.startStream").len();
    let mention = slack.app_mention("C4", "U1", "again", None);
    let ts2 = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C4", &ts2, "again").await;
    assert_eq!(slack.calls_to("chat.startStream").len(), starts);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_disconnect_the_next_mention_is_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let before = slack.connections_opened();
    slack.disconnect_all("refresh_requested");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while slack.connections_opened() <= before || slack.open_connections() == 0 {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mention = slack.app_mention("C5", "U1", "still there?", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C5", &ts, "still there?").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mention_in_a_thread_with_earlier_messages_answers_with_them_in_context() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
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
    let root = ts[0].clone();
    slack.push_event(slack.app_mention("C6", "U3", "what did we decide?", Some(&root)));
    slack.answer_in("C6", &root, "what did we decide?").await;
    let req = llm.turn_requests().pop().unwrap();
    let system = system_of(&req);
    assert!(system.contains("KESTREL"), "{system}");
    assert!(system.contains("release notes are not ready"), "{system}");
    // The seed is memory now: a restart-proof anchor, not a re-read of the thread each turn.
    let replies = slack.calls_to("conversations.replies").len();
    slack.push_event(slack.app_mention("C6", "U3", "and the codename?", Some(&root)));
    slack.answer_in("C6", &root, "and the codename?").await;
    assert!(system_of(&llm.turn_requests().pop().unwrap()).contains("KESTREL"));
    assert_eq!(slack.calls_to("conversations.replies").len(), replies);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assistant_thread_gets_suggested_prompts_a_status_and_an_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(20))).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let thread = slack.next_ts();
    slack.push_event(slack.assistant_thread_started("U1", "D9", &thread, Some("C1")));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while slack.suggested_prompts("D9", &thread).is_none() {
        assert!(std::time::Instant::now() < deadline, "no suggested prompts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let prompts = slack.suggested_prompts("D9", &thread).unwrap().to_string();
    assert!(prompts.contains("What did we decide?"), "{prompts}");
    slack.push_event(slack.message("D9", "U1", "help me plan", Some(&thread)));
    slack.answer_in("D9", &thread, "help me plan").await;
    let statuses = slack.assistant_statuses("D9", &thread);
    assert!(
        statuses.iter().any(|s| s.contains("thinking")),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some(""),
        "cleared at the end: {statuses:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_file_is_downloaded_with_the_token_and_cited_and_a_foreign_host_never_sees_it() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let foreign = common::slack::ForeignHost::start().await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let file = slack.file_object(
        "policy.md",
        b"# Travel policy\n\nTrain travel is first class for trips over four hours.\n",
        "text/markdown",
        "U1",
    );
    let mention = FakeSlack::with_files(
        slack.app_mention("C7", "U1", "what does the policy say about trains?", None),
        vec![file],
    );
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack
        .answer_in("C7", &ts, "what does the policy say about trains?")
        .await;
    let downloads = slack.file_requests();
    assert!(!downloads.is_empty());
    let bearer = format!("Bearer {}", slack.config().bot_token);
    assert!(downloads
        .iter()
        .all(|r| r.authorization.as_deref() == Some(bearer.as_str())));
    let texts: Vec<String> = slack
        .thread_messages("C7", &ts)
        .iter()
        .map(|m| m.visible_text())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("Added policy.md")),
        "{texts:?}"
    );
    let question = last_user(&llm.turn_requests().pop().unwrap());
    assert!(
        question.contains("[policy.md"),
        "the passage is cited: {question}"
    );
    // A file whose URL points elsewhere is refused before any request carries the token.
    let mut evil = slack.file_object("evil.md", b"# x", "text/markdown", "U1");
    evil["url_private_download"] = Value::String(foreign.url("/evil.md"));
    evil["url_private"] = Value::String(foreign.url("/evil.md"));
    let mention = FakeSlack::with_files(
        slack.app_mention("C7", "U1", "and this one?", None),
        vec![evil],
    );
    let ts2 = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C7", &ts2, "evil.md").await;
    assert!(!foreign.saw_credentials(), "{:?}", foreign.requests());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slash_command_answers_ephemerally_and_feedback_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&dir, &llm.url, &slack).await;
    let mention = slack.app_mention("C8", "U1", "rate me", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C8", &ts, "rate me").await;
    let answer = slack
        .thread_messages("C8", &ts)
        .into_iter()
        .find(|m| m.bot_id.is_some())
        .unwrap();
    assert!(
        !answer.feedback_buttons().is_empty(),
        "the answer carries 👍/👎"
    );
    let click = slack.feedback_click("C8", &answer.ts, "U2", true).unwrap();
    slack.push_interactive(click);
    // `@anchorbot status` in the thread reports the vote.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        slack.push_event(slack.app_mention("C8", "U1", "status", Some(&ts)));
        let found = slack
            .ephemerals()
            .iter()
            .any(|e| e.text.contains("Feedback: 1 👍"));
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            slack.ephemerals()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The slash command answers through its response_url, privately.
    slack.push_slash_command(slack.anchor_status("C8", "U1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while slack.response_url_posts().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no response_url answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = slack.response_url_posts()[0].json().unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains("Conversation slack:T1/C8"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_on_start_stream_posts_that_answer_and_the_next_one_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = SlackApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    slack.rate_limit("chat.startStream", 1, 1);
    let mention = slack.app_mention("C9", "U1", "despite the limit", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C9", &ts, "despite the limit").await;
    // The answer did not wait out the Retry-After: it was posted and updated.
    let starts = slack.calls_to("chat.startStream");
    assert_eq!(starts.len(), 1, "no chat.startStream into the Retry-After");
    assert_eq!(starts[0].status, 429);
    assert!(slack
        .calls_to("chat.postMessage")
        .iter()
        .any(|c| c.args["thread_ts"] == ts.as_str()));
    // Once the Retry-After has passed and the allowance has a call again (Tier 2: one every
    // 3 s), the next answer streams again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mention = slack.app_mention("C9", "U1", "and now?", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    slack.push_event(mention);
    slack.answer_in("C9", &ts, "and now?").await;
    let starts = slack.calls_to("chat.startStream");
    assert_eq!(starts.len(), 2);
    assert!(starts[1].ok(), "{:?}", starts[1].response);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_socket_mode_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let mut s: Settings = settings(&dir, &llm.url);
    s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
    s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
    s.slack.api_url = slack.api_url();
    s.metrics.listen = Some("127.0.0.1:0".into());
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    assert!(
        !adapters[0].platform().connected(),
        "connected before Socket Mode"
    );
    let mut app = anchorbot::App::build(s).await.unwrap();
    for a in adapters {
        app = app.with_adapter(a);
    }
    let ops = app
        .bind_ops()
        .await
        .unwrap()
        .expect("metrics.listen was set");
    // Not `SlackApp::start`, which waits for the connection: readiness is watched from the
    // moment the app starts.
    let app = running::RunningApp::start(app);
    wait_ready(ops, |body| {
        assert!(
            body.contains("slack"),
            "not ready for another reason: {body}"
        )
    })
    .await;
    // Ready means the Socket Mode connection is open.
    assert!(slack.open_connections() > 0);
    app.stop().await;
}
