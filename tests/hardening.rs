//! The core's hardening, end to end with real parts (the `anchorbot` binary, sled on disk, the
//! fake OpenAI server on loopback): memory that a bad summary cannot destroy, documents with
//! their own budget, commands that never act on free text, and de-duplication that survives a
//! crash between receiving an event and committing its turn.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

async fn status_json(dir: &Path, url: &str, conv: &str, envs: &[(&str, &str)]) -> Value {
    let mut cmd = anchorbot(dir, url);
    cmd.envs(envs.iter().copied())
        .args(["status", "--conversation", conv, "--json"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "status failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Asks `n` questions through the binary with a small input budget (so summarization is due
/// after a few turns), each answered by `answer`, while every summary call gets `summary`.
/// Returns the fake server and the number of summary calls.
async fn converse_with_a_bad_summarizer(
    dir: &Path,
    model: &'static str,
    answer: &'static str,
    summary: fn() -> Reply,
    n: usize,
) -> (FakeLlm, Value) {
    let llm = FakeLlm::start(move |req| {
        if is_summary(req) {
            summary()
        } else {
            Reply::text(&format!(
                "{answer}Noted: {} {}",
                last_user(req),
                "and some detail ".repeat(10)
            ))
        }
    })
    .await;
    let envs = [
        ("ANCHORBOT_MAX_INPUT_TOKENS", "700"),
        ("ANCHORBOT_REASONING_MODEL", model),
    ];
    for i in 0..n {
        let mut cmd = anchorbot(dir, &llm.url);
        cmd.envs(envs).args([
            "ask",
            "--conversation",
            "memo",
            &format!("code word {i} is WORD{i}"),
        ]);
        let (ok, _, err) = run(cmd).await;
        assert!(ok, "turn {i}: {err}");
    }
    let st = status_json(dir, &llm.url, "memo", &envs).await;
    (llm, st)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_summary_cut_refused_or_empty_leaves_every_turn_in_the_anchor() {
    // (case, model, what each answer starts with, the summarizer's reply)
    type Case = (&'static str, &'static str, &'static str, fn() -> Reply);
    let cases: [Case; 3] = [
        (
            "cut mid-reasoning",
            // An R1 distill on vLLM without a reasoning parser: reasoning streams as content,
            // and the summary call is cut before `</think>`.
            "deepseek-r1-distill-qwen-7b",
            "Let me think.</think>",
            || {
                Reply::chunks(
                    vec![
                        "Okay, let me weigh the code words. ".into(),
                        "SUMMARY: maybe WORD0 ".into(),
                    ],
                    Some("length"),
                )
            },
        ),
        ("a refusal", "fake-model", "", || {
            Reply::text("I'm sorry, but I can't help with summarizing this conversation.")
        }),
        ("an empty answer", "fake-model", "", || {
            Reply::chunks(Vec::new(), Some("stop"))
        }),
    ];
    for (case, model, answer_prefix, summary) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let n = 9;
        let (llm, st) =
            converse_with_a_bad_summarizer(&dir, model, answer_prefix, summary, n).await;
        let calls = llm.requests().iter().filter(|r| is_summary(r)).count();
        assert!(calls >= 1, "{case}: summarization never ran");
        // Backing off: not every turn retries.
        assert!(calls < n - 2, "{case}: {calls} summary calls in {n} turns");
        assert_eq!(st["turns"], n, "{case}: {st}");
        assert_eq!(
            st["recent_turns"], n,
            "{case}: every turn kept verbatim: {st}"
        );
        assert_eq!(st["summaries"], 0, "{case}: {st}");
        assert!(
            st["summary_hold"]["failures"].as_u64().unwrap() >= 1,
            "{case}: {st}"
        );
        // The next prompt still carries the oldest code word.
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.envs([("ANCHORBOT_REASONING_MODEL", model)])
            .args(["status", "--conversation", "memo"]);
        let (ok, out, _) = run(cmd).await;
        assert!(ok);
        assert!(out.contains("Summarizing is paused"), "{case}: {out}");
        let store = reopen_store(&dir).await;
        let key = anchorbot_platform::ConversationKey::console("memo").unwrap();
        let anchor = store.anchor(&key).await.unwrap();
        let queries: Vec<&str> = anchor.turns.iter().map(|t| t.query.as_str()).collect();
        for i in 0..n {
            assert!(
                queries.contains(&format!("code word {i} is WORD{i}").as_str()),
                "{case}: turn {i} lost: {queries:?}"
            );
        }
        assert!(
            anchor.summaries.is_empty() && anchor.facts.is_empty(),
            "{case}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_summary_after_a_bad_one_folds_and_clears_the_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let llm = FakeLlm::start(move |req| {
        if is_summary(req) {
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Reply::text("Sure! Here is a summary of the chat.")
            } else {
                Reply::text(
                    "SUMMARY: Code words were set.\nFACTS:\n- WORD0 is the first code word\n",
                )
            }
        } else {
            Reply::text(&format!(
                "Noted: {} {}",
                last_user(req),
                "and some detail ".repeat(10)
            ))
        }
    })
    .await;
    let envs = [("ANCHORBOT_MAX_INPUT_TOKENS", "700")];
    let mut i = 0;
    while calls.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(i < 16, "summarization never retried");
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.envs(envs).args([
            "ask",
            "--conversation",
            "memo",
            &format!("code word {i} is WORD{i}"),
        ]);
        let (ok, _, err) = run(cmd).await;
        assert!(ok, "{err}");
        i += 1;
    }
    let st = status_json(&dir, &llm.url, "memo", &envs).await;
    assert_eq!(st["summaries"], 1, "{st}");
    assert!(st["summary_hold"].is_null(), "{st}");
    assert_eq!(st["key_facts"][0], "WORD0 is the first code word");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2048_token_budget_with_documents_answers_with_its_passages() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm =
        FakeLlm::start(|req| Reply::text(&format!("Answer to {}", last_user(req).len()))).await;
    // A handbook with many sections, so retrieval has more than the budget can hold.
    let mut doc = String::from("# Team handbook\n\n");
    for s in 0..40 {
        doc.push_str(&format!(
            "## Section {s}\n\nThe notice period for contractors in region {s} is {} weeks. {}\n\n",
            s % 9 + 1,
            "Contractors send notice in writing to the office manager, who confirms it within a week. ".repeat(6)
        ));
    }
    let file = tmp.path().join("handbook.md");
    std::fs::write(&file, doc).unwrap();
    let envs = [
        ("ANCHORBOT_MAX_INPUT_TOKENS", "2048"),
        ("ANCHORBOT_DOCUMENTS_TOP_K", "12"),
        ("ANCHORBOT_DOCUMENTS_CONTEXT_TOKENS", "6000"),
    ];
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.envs(envs)
        .args(["ingest", "--conversation", "d"])
        .arg(&file);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{out}{err}");
    // Some earlier turns, so recent turns compete for the room too.
    for q in [
        "hello there",
        "who owns the handbook?",
        "what is the notice period for contractors in region 3?",
    ] {
        let mut cmd = anchorbot(&dir, &llm.url);
        cmd.envs(envs).args(["ask", "--conversation", "d", q]);
        let (ok, out, err) = run(cmd).await;
        assert!(ok, "{q}: {out}{err}");
        assert!(out.starts_with("Answer to"), "{out}");
    }
    let last = llm.turn_requests().pop().unwrap();
    let question = last_user(&last);
    assert!(
        question.contains("<document source=\"[handbook.md"),
        "{question}"
    );
    assert!(question.trim_end().ends_with("region 3?"), "{question}");
    // Earlier turns still made it in beside the passages.
    assert!(all_text(&last).contains("who owns the handbook?"));
    let st = status_json(&dir, &llm.url, "d", &envs).await;
    let docs_budget = st["documents_budget"].as_u64().unwrap();
    assert!(docs_budget > 200 && docs_budget < 1024, "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slash_words_with_text_are_messages_and_clear_takes_everything_or_nothing() {
    ensure_models();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let llm = FakeLlm::start(|req| Reply::text(&format!("Answer to <{}>", last_user(req)))).await;
    let file = tmp.path().join("notes.md");
    std::fs::write(
        &file,
        "# Notes\n\nThe cache is cleared every night at 2am by the ops team.\n",
    )
    .unwrap();
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["ingest", "--conversation", "c"]).arg(&file);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{out}{err}");
    // Typed in a chat session: a question that starts with a slash word.
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["chat", "--conversation", "c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"/clear what is this\n/files\n")
            .await
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("you: /clear what is this>"),
        "answered as a message: {out}"
    );
    assert!(out.contains("notes.md"), "the document remains: {out}");
    let st = status_json(&dir, &llm.url, "c", &[]).await;
    assert_eq!(st["turns"], 1, "{st}");
    assert_eq!(st["documents"], 1, "{st}");
    // The real clear removes memory, documents, chunks and vectors together.
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["clear", "--conversation", "c"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("1 turn") && out.contains("1 document"),
        "{out}"
    );
    let st = status_json(&dir, &llm.url, "c", &[]).await;
    assert_eq!(
        (st["turns"].as_u64(), st["documents"].as_u64()),
        (Some(0), Some(0))
    );
    let mut cmd = anchorbot(&dir, &llm.url);
    cmd.args(["search", "--conversation", "c", "--json", "cache"]);
    let (ok, out, err) = run(cmd).await;
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&out).unwrap().len(),
        0,
        "{out}"
    );
}

/// Environment that makes [`child_receives_two_events_and_waits_to_be_killed`] a child.
const CHILD_DATA: &str = "ANCHORBOT_TEST_CHILD_DATA";
const CHILD_URL: &str = "ANCHORBOT_TEST_CHILD_URL";

/// The child half of the crash test (run by it as a separate process): the real app receives
/// event E1, whose answer never finishes, and then E2 in another conversation, whose commit
/// flushes the store; then the process waits to be killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a child process of a_process_killed_before_the_commit_answers_the_redelivery_once"]
async fn child_receives_two_events_and_waits_to_be_killed() {
    let dir = std::env::var(CHILD_DATA).expect("run by the crash test");
    let url = std::env::var(CHILD_URL).expect("run by the crash test");
    let app = start_app(settings(Path::new(&dir), &url)).await;
    let _pending = app
        .sink
        .submit(message("A", "E1", "ann", "hang on this one"))
        .unwrap();
    app.sink
        .submit(message("B", "E2", "bo", "quick one"))
        .unwrap()
        .done()
        .await;
    println!("CHILD-READY");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_before_the_commit_answers_the_redelivery_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = hang.clone();
    let llm = FakeLlm::start(move |req| {
        let q = last_user(req);
        let reply = Reply::text(&format!("Answer to <{q}>"));
        if q.contains("hang") && h.load(std::sync::atomic::Ordering::SeqCst) {
            reply.slow(Duration::from_secs(3600))
        } else {
            reply
        }
    })
    .await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_receives_two_events_and_waits_to_be_killed",
            "--nocapture",
        ])
        .env(CHILD_DATA, &dir)
        .env(CHILD_URL, &llm.url)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("CHILD-READY") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap();
        assert!(ready, "the child ended before receiving its events");
    }
    // E1 is at the model, E2 is answered and flushed: now the process dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !llm
        .turn_requests()
        .iter()
        .any(|r| last_user(r).contains("hang"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "E1 never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    child.wait().await.unwrap();

    // The platform redelivers both events, E1 twice; the model now answers.
    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let app = start_app(settings(&dir, &llm.url)).await;
    for (channel, id, text) in [
        ("A", "E1", "hang on this one"),
        ("A", "E1", "hang on this one"),
        ("B", "E2", "quick one"),
    ] {
        app.sink
            .submit(message(channel, id, "ann", text))
            .unwrap()
            .done()
            .await;
    }
    assert_eq!(
        app.platform.finals("A"),
        vec!["Answer to <ann: hang on this one>".to_string()],
        "E1 is answered exactly once after the crash"
    );
    assert!(
        app.platform.finals("B").is_empty(),
        "E2 was committed before the crash"
    );
    app.shutdown().await;
    let store = reopen_store(&dir).await;
    let a = anchorbot_platform::ConversationKey::new("test", Some("W1"), "A", None).unwrap();
    assert_eq!(store.anchor(&a).await.unwrap().turns.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_message_is_refused_before_the_model_and_the_conversation_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = FakeLlm::start(|req| Reply::text(&format!("Answer to <{}>", last_user(req)))).await;
    let app = start_app(settings(&tmp.path().join("data"), &llm.url)).await;
    let huge = "x".repeat(300 * 1024);
    for (id, text) in [("big", huge.as_str()), ("small", "still there?")] {
        app.sink
            .submit(message("M", id, "ann", text))
            .unwrap()
            .done()
            .await;
    }
    let finals = app.platform.finals("M");
    assert_eq!(finals.len(), 2, "{finals:?}");
    assert!(finals[0].contains("over the 256 KB"), "{}", &finals[0]);
    assert_eq!(finals[1], "Answer to <ann: still there?>");
    assert_eq!(
        llm.turn_requests().len(),
        1,
        "the big one never reached the model"
    );
    app.shutdown().await;
}
