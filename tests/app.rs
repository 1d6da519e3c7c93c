//! In-process runs of the real `App` (built with `App::build`, run with `run_until_stopped`)
//! with a recording adapter, against a local OpenAI-compatible SSE server: ordering within a
//! conversation, isolation and concurrency across conversations, bounded queues, duplicates.

mod common;

use std::time::Duration;

use anchorbot_platform::{FinalState, SubmitError};
use common::*;
use serde_json::Value;

fn echo_slowly(req: &Value) -> Reply {
    let q = last_user(req);
    // Earlier messages take longer, so a racy implementation would finish them out of order.
    let n: u64 = q
        .rsplit('#')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Reply::text(&format!("reply to {q}")).slow(Duration::from_millis(40u64.saturating_sub(n * 5)))
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_to_one_conversation_are_answered_in_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(echo_slowly).await;
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;

    let mut receipts = Vec::new();
    for i in 0..6 {
        receipts.push(
            app.sink
                .submit(message("C1", &format!("e{i}"), "ann", &format!("msg #{i}")))
                .unwrap(),
        );
    }
    for r in receipts {
        r.done().await;
    }
    let finals = app.platform.finals("C1");
    let expected: Vec<String> = (0..6).map(|i| format!("reply to ann: msg #{i}")).collect();
    assert_eq!(finals, expected);

    // Each request carried every earlier turn: they ran one after another.
    let reqs = llm.turn_requests();
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(
            r["messages"].as_array().unwrap().len(),
            2 + 2 * i,
            "request {i}"
        );
        assert_eq!(last_user(r), format!("ann: msg #{i}"));
    }
    assert_eq!(
        llm.max_in_flight(),
        1,
        "one conversation never streams two turns at once"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_conversations_run_in_parallel_without_mixing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        Reply::text(&format!("echo [{}]", last_user(req))).slow(Duration::from_millis(20))
    })
    .await;
    let app = start_app(settings(&data, &llm.url)).await;

    let mut receipts = Vec::new();
    for round in 0..2 {
        for c in 0..20 {
            let text = format!("secret-{c}-round-{round}");
            receipts.push(
                app.sink
                    .submit(message(
                        &format!("C{c}"),
                        &format!("e{c}-{round}"),
                        &format!("user{c}"),
                        &text,
                    ))
                    .unwrap(),
            );
        }
    }
    for r in receipts {
        r.done().await;
    }
    assert!(
        llm.max_in_flight() > 1,
        "conversations must run concurrently"
    );
    for c in 0..20 {
        let finals = app.platform.finals(&format!("C{c}"));
        assert_eq!(
            finals,
            vec![
                format!("echo [user{c}: secret-{c}-round-0]"),
                format!("echo [user{c}: secret-{c}-round-1]"),
            ]
        );
    }
    // Every prompt mentions only its own conversation's secrets.
    for r in llm.turn_requests() {
        let text = all_text(&r);
        let q = last_user(&r);
        let c: usize = q.split('-').nth(1).unwrap().parse().unwrap();
        for other in (0..20).filter(|&o| o != c) {
            assert!(
                !text.contains(&format!("secret-{other}-")),
                "conversation {c} saw {other}"
            );
        }
    }
    app.shutdown().await;

    // The anchors on disk are just as separate.
    let store = reopen_store(&data).await;
    for c in 0..20 {
        let key =
            anchorbot_platform::ConversationKey::new("test", Some("W1"), &format!("C{c}"), None)
                .unwrap();
        let a = store.anchor(&key).await.unwrap();
        assert_eq!(a.turns.len(), 2);
        assert!(a
            .turns
            .iter()
            .all(|t| t.query.starts_with(&format!("secret-{c}-"))));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_refuses_with_a_message_and_loses_nothing_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(|req| {
        Reply::text(&format!("ok {}", last_user(req))).slow(Duration::from_millis(30))
    })
    .await;
    let mut s = settings(&tmp.path().join("data"), &llm.url);
    s.queue_capacity = 2;
    let app = start_app(s).await;

    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..8 {
        match app
            .sink
            .submit(message("Q", &format!("q{i}"), "bo", &format!("m{i}")))
        {
            Ok(r) => accepted.push((i, r)),
            Err(SubmitError::QueueFull { capacity }) => {
                assert_eq!(capacity, 2);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "a bounded queue must refuse a burst");
    let ids: Vec<usize> = accepted.iter().map(|(i, _)| *i).collect();
    for (_, r) in accepted {
        r.done().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let finals = app.platform.finals("Q");
    let expected: Vec<String> = ids.iter().map(|i| format!("ok bo: m{i}")).collect();
    assert_eq!(
        finals, expected,
        "every accepted message is answered, in order"
    );
    let refusals = app
        .platform
        .all()
        .into_iter()
        .filter(|r| matches!(r, Record::Ephemeral(_, t) if t.contains("send it again")))
        .count();
    assert_eq!(refusals, refused, "each refused message gets a reply");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_events_and_empty_messages_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(|req| Reply::text(&format!("hi {}", last_user(req)))).await;
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;
    app.sink
        .submit(message("D", "same-id", "cy", "hello"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("D", "same-id", "cy", "hello"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("D", "blank", "cy", "   \n "))
        .unwrap()
        .done()
        .await;
    assert_eq!(llm.turn_requests().len(), 1);
    assert_eq!(app.platform.finals("D"), vec!["hi cy: hello".to_string()]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_end_with_a_final_message_never_a_hung_status() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start_app(settings(&tmp.path().join("data"), &closed_port_url())).await;
    app.sink
        .submit(message("F", "f1", "di", "are you there?"))
        .unwrap()
        .done()
        .await;
    let all = app.platform.all();
    match &all[..] {
        [Record::Final(c, text, FinalState::Failed)] => {
            assert_eq!(c, "F");
            assert!(
                text.contains("the reasoning model cannot be reached"),
                "{text}"
            );
            assert!(
                !text.contains("127.0.0.1"),
                "the URL stays in the log: {text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.platform.thinking.lock().unwrap().get("F"), Some(&false));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_answers_are_split_at_the_platform_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let long = (0..700)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let expected = long.clone();
    let llm = FakeLlm::start(move |_| Reply::text(&long)).await;
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;
    app.sink
        .submit(message("L", "l1", "ed", "talk a lot"))
        .unwrap()
        .done()
        .await;
    // The recording platform takes 2000-character messages; the answer is ~3900 characters.
    let posted = app.platform.messages_in("L");
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(posted.iter().all(|p| p.chars().count() <= 2000));
    assert_eq!(posted.join(" "), expected);
    let store_answer = {
        app.shutdown().await;
        let store = reopen_store(&tmp.path().join("data")).await;
        let key = anchorbot_platform::ConversationKey::new("test", Some("W1"), "L", None).unwrap();
        store.anchor(&key).await.unwrap().turns[0].answer.clone()
    };
    assert_eq!(store_answer, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_answers_at_once_while_a_turn_is_running() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(|req| {
        Reply::text(&format!("slow answer to {}", last_user(req))).slow(Duration::from_millis(300))
    })
    .await;
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;
    let turn = app
        .sink
        .submit(message("S", "q1", "ann", "take your time"))
        .unwrap();
    while llm.turn_requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.sink
        .submit(message("S", "st", "ann", "/status"))
        .unwrap()
        .done()
        .await;
    // The status came back while the answer was still streaming.
    match &app.platform.all()[..] {
        [Record::Ephemeral(c, text)] => {
            assert_eq!(c, "S");
            assert!(text.contains("Turns: 0"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    turn.done().await;
    assert_eq!(app.platform.finals("S").len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_a_streaming_answer_keeps_what_was_written_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|_req| {
        Reply::chunks((0..200).map(|i| format!("w{i} ")).collect(), Some("stop"))
            .slow(Duration::from_millis(50))
    })
    .await;
    let app = start_app(settings(&data, &llm.url)).await;
    let turn = app
        .sink
        .submit(message("X", "q", "ann", "write a lot"))
        .unwrap();
    // Wait until some of the answer is showing, then press Stop.
    while !app
        .platform
        .messages_in("X")
        .iter()
        .any(|m| m.contains("w3"))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = anchorbot_platform::ConversationKey::new("test", Some("W1"), "X", None).unwrap();
    app.sink
        .submit(anchorbot_platform::InboundEvent::Stop(
            anchorbot_platform::StopRequest {
                key: key.clone(),
                event_id: "stop-1".into(),
                author: anchorbot_platform::Author {
                    id: "U-ann".into(),
                    display_name: "ann".into(),
                },
                reply_to: anchorbot_platform::ReplyTarget {
                    channel: "X".into(),
                    ..Default::default()
                },
            },
        ))
        .unwrap()
        .done()
        .await;
    tokio::time::timeout(Duration::from_secs(5), turn.done())
        .await
        .expect("the answer stopped at once");
    let finals = app.platform.all();
    let stopped = finals
        .iter()
        .find_map(|r| match r {
            Record::Final(c, text, FinalState::Stopped) if c == "X" => Some(text.clone()),
            _ => None,
        })
        .expect("a stopped final reply");
    assert!(
        stopped.contains("w3") && stopped.ends_with("_(Stopped.)_"),
        "{stopped}"
    );
    assert!(!stopped.contains("w199"));
    app.shutdown().await;
    let store = reopen_store(&data).await;
    assert!(
        store.anchor(&key).await.unwrap().turns.is_empty(),
        "a stopped answer is not stored"
    );
}
