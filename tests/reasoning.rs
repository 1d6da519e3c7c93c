//! The reasoning pipeline end to end, against a local scripted OpenAI SSE server: think tags
//! split anywhere, `reasoning_content`, auto-continuation, the CJK filter, endpoint faults,
//! retries, failover, the offline fallback and server-reported limits. In every case the user
//! gets a final message, and the stored anchor holds no reasoning and no half answer.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorbot::llm::turn::{ANSWER_NOW_PROMPT, CONTINUE_PROMPT, CUT_NOTE};
use anchorbot::retrieval::{Passage, Retriever};
use anchorbot::store::Exchange;
use anchorbot_platform::{ConversationKey, FinalState};
use common::*;
use serde_json::Value;

fn key(channel: &str) -> ConversationKey {
    ConversationKey::new("test", Some("W1"), channel, None).unwrap()
}

/// Stops the app and returns the stored turns of `channel`.
async fn stored(app: Running, data: &std::path::Path, channels: &[&str]) -> Vec<Vec<Exchange>> {
    app.shutdown().await;
    let store = reopen_store(data).await;
    let mut turns = Vec::new();
    for c in channels {
        turns.push(store.anchor(&key(c)).await.unwrap().turns);
    }
    turns
}

fn is_continuation(req: &Value) -> bool {
    last_user(req) == CONTINUE_PROMPT
}

#[tokio::test(flavor = "multi_thread")]
async fn think_tags_split_at_every_byte_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    const TEXT: &str = "<think>The user asks 6×7; that is 42.</think>\n\nIt is **42** — sûr.";
    // The query names the split: "k" cuts the content there; "raw" re-cuts the whole SSE body
    // into 1-byte writes (splitting frames, JSON and multi-byte characters).
    let llm = FakeLlm::start(|req| {
        let q = last_user(req);
        let arg = q.rsplit(' ').next().unwrap();
        if arg == "raw" {
            let mut r = Reply::chunks(vec![TEXT.to_string()], Some("stop"));
            r.raw_split = Some(1);
            return r;
        }
        let k: usize = arg.parse().unwrap();
        Reply::chunks(
            vec![TEXT[..k].to_string(), TEXT[k..].to_string()],
            Some("stop"),
        )
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.reasoning.model = "Qwen/Qwen3-32B-AWQ".into(); // explicit tags, starts outside
    let app = start_app(s).await;
    let cuts: Vec<usize> = (0..=TEXT.len())
        .filter(|&k| TEXT.is_char_boundary(k))
        .collect();
    let mut channels = Vec::new();
    for &k in &cuts {
        let ch = format!("K{k}");
        app.sink
            .submit(message(&ch, &ch, "ann", &format!("split {k}")))
            .unwrap()
            .done()
            .await;
        channels.push(ch);
    }
    app.sink
        .submit(message("RAW", "raw", "ann", "split raw"))
        .unwrap()
        .done()
        .await;
    channels.push("RAW".into());
    for ch in &channels {
        assert_eq!(
            app.platform.finals(ch),
            vec!["It is **42** — sûr.".to_string()],
            "{ch}"
        );
        let reasoning = app
            .platform
            .reasoning
            .lock()
            .unwrap()
            .get(ch)
            .cloned()
            .unwrap_or_default();
        assert_eq!(reasoning, "The user asks 6×7; that is 42.", "{ch}");
    }
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    for (turns, ch) in stored(app, &data, &names).await.iter().zip(&names) {
        assert_eq!(turns.len(), 1, "{ch}");
        assert_eq!(turns[0].answer, "It is **42** — sûr.");
        assert!(!turns[0].answer.contains("think") && !turns[0].answer.contains("6×7"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn r1_style_stream_without_opening_tag_and_reasoning_content_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        if last_user(req).contains("parser") {
            // vLLM with --reasoning-parser: reasoning arrives apart, content is the answer.
            let mut r = Reply::chunks(
                vec!["Paris".into(), " is the capital.".into()],
                Some("stop"),
            );
            r.reasoning = vec!["The user wants ".into(), "a capital.".into()];
            r
        } else {
            // An R1 distill: the template opened <think>, so the content starts inside it.
            Reply::chunks(
                vec![
                    "Okay, France… capital is Paris.\n</th".into(),
                    "ink>\n\nParis.".into(),
                ],
                Some("stop"),
            )
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.reasoning.model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B".into(); // think: auto → inside
    let app = start_app(s).await;
    app.sink
        .submit(message("A", "a1", "bo", "capital of France, parser"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("B", "b1", "bo", "capital of France, r1"))
        .unwrap()
        .done()
        .await;
    assert_eq!(app.platform.finals("A"), vec!["Paris is the capital."]);
    assert_eq!(app.platform.finals("B"), vec!["Paris."]);
    let reasoning = app.platform.reasoning.lock().unwrap().clone();
    assert_eq!(reasoning["A"], "The user wants a capital.");
    assert_eq!(reasoning["B"], "Okay, France… capital is Paris.\n");
    let turns = stored(app, &data, &["A", "B"]).await;
    assert_eq!(turns[0][0].answer, "Paris is the capital.");
    assert_eq!(turns[1][0].answer, "Paris.");
}

/// A server that cuts every answer at the length limit until `rounds_needed` continuation
/// rounds have been requested. Each round adds one sentence; continuations repeat the tail of
/// the previous round, as real models do.
fn length_script(rounds_needed: usize) -> impl Fn(&Value) -> Reply + Send + Sync + 'static {
    move |req| {
        // The round is the number of sentences in the partial answer being continued.
        let msgs = req["messages"].as_array().unwrap();
        let round = if is_continuation(req) {
            msgs[msgs.len() - 2]["content"]
                .as_str()
                .unwrap()
                .matches("ends here.")
                .count()
        } else {
            0
        };
        let sentence = format!("Sentence number {round} ends here. ");
        let mut chunks = vec![];
        if round > 0 {
            chunks.push(format!("number {} ends here. ", round - 1));
        }
        chunks.push(sentence);
        let finish = if round < rounds_needed {
            "length"
        } else {
            "stop"
        };
        Reply::chunks(chunks, Some(finish))
    }
}

/// vLLM resumes a final assistant message (`continue_final_message`), so an R1 model picks up
/// mid-word without a think block; its reasoning parser then labels that text as
/// `reasoning_content` (no `</think>` in it), which is what this fake sends.
#[tokio::test(flavor = "multi_thread")]
async fn against_vllm_a_cut_answer_is_resumed_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start_vllm(|req| {
        let msgs = req["messages"].as_array().unwrap();
        let last = msgs.last().unwrap();
        if req["continue_final_message"] == true {
            assert_eq!(req["add_generation_prompt"], false);
            assert_eq!(last["role"], "assistant");
            let partial = last["content"].as_str().unwrap();
            let mut r = if partial.ends_with("the launch is on May") {
                Reply::chunks(vec![" 3, in Hall".into()], Some("length"))
            } else {
                assert!(
                    partial.ends_with("the launch is on May 3, in Hall"),
                    "{partial}"
                );
                Reply::chunks(vec![" 4.".into()], Some("stop"))
            };
            r.reasoning = std::mem::take(&mut r.chunks);
            r
        } else {
            Reply::chunks(
                vec![
                    "<think>Check the notes.</think>".into(),
                    "As planned, the launch is on May".into(),
                ],
                Some("length"),
            )
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.reasoning.model = "deepseek-r1-distill".into();
    let app = start_app(s).await;
    app.sink
        .submit(message("V", "v", "vl", "when and where is the launch?"))
        .unwrap()
        .done()
        .await;
    let expected = "As planned, the launch is on May 3, in Hall 4.";
    assert_eq!(app.platform.finals("V"), vec![expected.to_string()]);
    let reqs = llm.turn_requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter().all(|r| !is_continuation(r)),
        "no instruction message"
    );
    let turns = stored(app, &data, &["V"]).await;
    assert_eq!(turns[0][0].answer, expected);
    assert!(!turns[0][0].truncated);
}

#[tokio::test(flavor = "multi_thread")]
async fn length_is_continued_for_one_two_and_too_many_rounds() {
    for (needed, max_rounds) in [(1usize, 3usize), (2, 3), (4, 3)] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let llm = FakeLlm::start(length_script(needed)).await;
        let mut s = settings(&data, &llm.url);
        s.max_rounds = max_rounds;
        s.reasoning.model = "plain-model".into();
        let app = start_app(s).await;
        app.sink
            .submit(message("L", "l", "cy", "write a long text"))
            .unwrap()
            .done()
            .await;
        let rounds_used = needed.min(max_rounds);
        let expected: String = (0..=rounds_used)
            .map(|r| format!("Sentence number {r} ends here."))
            .collect::<Vec<_>>()
            .join(" ");
        let finals = app.platform.finals("L");
        let cut = needed > max_rounds;
        if cut {
            assert_eq!(
                finals,
                vec![format!("{expected}{CUT_NOTE}")],
                "needed {needed}"
            );
        } else {
            assert_eq!(finals, vec![expected.clone()], "needed {needed}");
        }
        let reqs = llm.turn_requests();
        assert_eq!(reqs.len(), rounds_used + 1, "needed {needed}");
        for (i, r) in reqs.iter().enumerate().skip(1) {
            assert!(is_continuation(r));
            let msgs = r["messages"].as_array().unwrap();
            // The partial answer so far is the assistant message before the instruction.
            let partial = msgs[msgs.len() - 2]["content"].as_str().unwrap();
            assert!(
                partial
                    .trim_end()
                    .ends_with(&format!("Sentence number {} ends here.", i - 1)),
                "{partial}"
            );
            assert!(
                !partial.contains("ends here. number"),
                "seams repeat nothing: {partial}"
            );
        }
        let turns = stored(app, &data, &["L"]).await;
        assert_eq!(turns[0].len(), 1);
        assert_eq!(turns[0][0].answer, expected);
        assert_eq!(turns[0][0].truncated, cut);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn think_block_open_at_the_limit_gets_an_answer_round() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        if last_user(req).ends_with(ANSWER_NOW_PROMPT) {
            Reply::chunks(vec!["brief.</think>The answer is 7.".into()], Some("stop"))
        } else {
            Reply::chunks(
                vec!["Let me deliberate at great length".into()],
                Some("length"),
            )
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.reasoning.think = anchorbot::settings::ThinkMode::Inside;
    let app = start_app(s).await;
    app.sink
        .submit(message("T", "t", "di", "what is 3+4?"))
        .unwrap()
        .done()
        .await;
    assert_eq!(app.platform.finals("T"), vec!["The answer is 7."]);
    let turns = stored(app, &data, &["T"]).await;
    assert_eq!(turns[0][0].answer, "The answer is 7.");
}

#[tokio::test(flavor = "multi_thread")]
async fn cjk_interleaved_at_chunk_boundaries_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|_| {
        let mut r = Reply::chunks(
            vec![
                "The budget".into(),
                "是".into(),
                " ten thou".into(),
                "sand 欧元。 Ne".into(),
                "xt: カ".into(),
                "タ 한ok！".into(),
            ],
            Some("stop"),
        );
        r.raw_split = Some(3); // also split the UTF-8 bytes of every CJK character in transit
        r
    })
    .await;
    let app = start_app(settings(&data, &llm.url)).await;
    app.sink
        .submit(message("C", "c", "ed", "budget?"))
        .unwrap()
        .done()
        .await;
    let expected = "The budget ten thousand  Next:  ok";
    assert_eq!(app.platform.finals("C"), vec![expected]);
    let turns = stored(app, &data, &["C"]).await;
    assert_eq!(turns[0][0].answer, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_end_with_a_final_message_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let llm = FakeLlm::start(|req| {
        let q = last_user(req);
        if q.contains("500") {
            Reply::status(500)
        } else if q.contains("cut") {
            let mut r = Reply::chunks(
                vec!["<think>hmm</think>Half of".into(), " an ans".into()],
                None,
            );
            r.delay = Duration::from_millis(5);
            r
        } else {
            let mut r = Reply::text("too late");
            r.first_delay = Duration::from_secs(3);
            r
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.reasoning.first_token_timeout_secs = 1;
    s.reasoning.model = "plain-model".into();
    s.retries = 1;
    let app = start_app(s).await;
    app.sink
        .submit(message("E500", "1", "fa", "give 500"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("ECUT", "2", "fa", "please cut"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("ESLOW", "3", "fa", "be slow"))
        .unwrap()
        .done()
        .await;
    let all = app.platform.all();
    let final_of = |ch: &str| {
        all.iter()
            .find_map(|r| match r {
                Record::Final(c, t, st) if c == ch => Some((t.clone(), st.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no final message in {ch}"))
    };
    let (t, st) = final_of("E500");
    assert_eq!(st, FinalState::Failed);
    assert!(t.contains("HTTP 500"), "{t}");
    let (t, st) = final_of("ECUT");
    assert_eq!(st, FinalState::Failed);
    assert!(
        t.starts_with("Half of an ans") && t.contains("broke off"),
        "{t}"
    );
    assert!(!t.contains("hmm"), "no reasoning in the message: {t}");
    let (t, _) = final_of("ESLOW");
    assert!(t.contains("did not answer within 1 s"), "{t}");
    // 500 and the slow server were retried once each before giving up.
    let count = |needle: &str| {
        llm.requests()
            .iter()
            .filter(|r| last_user(r).contains(needle))
            .count()
    };
    assert_eq!(count("500"), 2);
    assert_eq!(count("slow"), 2);
    assert_eq!(count("cut"), 1, "no retry once tokens have streamed");
    for (ch, thinking) in app.platform.thinking.lock().unwrap().iter() {
        assert!(!thinking, "{ch} left a thinking status");
    }
    let turns = stored(app, &data, &["E500", "ECUT", "ESLOW"]).await;
    assert!(
        turns.iter().all(|t| t.is_empty()),
        "nothing stored: {turns:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_then_succeeds_before_any_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let llm = FakeLlm::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(503)
        } else {
            Reply::text("third time lucky")
        }
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.retries = 2;
    let app = start_app(s).await;
    app.sink
        .submit(message("R", "r", "gu", "hello"))
        .unwrap()
        .done()
        .await;
    assert_eq!(app.platform.finals("R"), vec!["third time lucky"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let turns = stored(app, &data, &["R"]).await;
    assert_eq!(turns[0][0].answer, "third time lucky");
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_over_to_the_second_endpoint_and_reports_when_all_are_down() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let broken = FakeLlm::start(|_| Reply::status(500)).await;
    let good = FakeLlm::start(|_| Reply::text("from the backup")).await;
    let mut s = settings(&data, &closed_port_url());
    s.reasoning.fallback_urls = vec![broken.url.clone(), good.url.clone()];
    s.retries = 0;
    let app = start_app(s).await;
    app.sink
        .submit(message("F", "f1", "ha", "hi"))
        .unwrap()
        .done()
        .await;
    assert_eq!(app.platform.finals("F"), vec!["from the backup"]);
    assert_eq!(broken.requests().len(), 1);
    // The failed endpoints are now tried last: the next turn goes straight to the backup.
    app.sink
        .submit(message("F", "f2", "ha", "again"))
        .unwrap()
        .done()
        .await;
    assert_eq!(broken.requests().len(), 1);
    assert_eq!(good.turn_requests().len(), 2);
    app.shutdown().await;

    let mut s = settings(&tmp.path().join("data2"), &closed_port_url());
    s.reasoning.fallback_urls = vec![closed_port_url()];
    s.retries = 0;
    let app = start_app(s).await;
    app.sink
        .submit(message("D", "d", "ha", "hi"))
        .unwrap()
        .done()
        .await;
    let finals = app.platform.finals("D");
    assert!(
        finals[0].contains("all 2 of its servers failed"),
        "{finals:?}"
    );
    app.shutdown().await;
}

struct StubRetriever;

#[async_trait::async_trait]
impl Retriever for StubRetriever {
    async fn passages(&self, key: &ConversationKey, _query: &str, k: usize) -> Vec<Passage> {
        if key.channel() != "DOCS" {
            return vec![];
        }
        vec![Passage {
            text: "The notice period is 3 months.".into(),
            citation: "contract.pdf p.4".into(),
            score: 0.8,
            name: "contract.pdf".into(),
            page: Some(4),
            heading: None,
        }]
        .into_iter()
        .take(k)
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_model_with_documents_quotes_passages_with_citations() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = settings(&data, &closed_port_url());
    s.retries = 0;
    let app = start_app_with(s, Some(Arc::new(StubRetriever))).await;
    app.sink
        .submit(message("DOCS", "1", "ia", "notice period?"))
        .unwrap()
        .done()
        .await;
    app.sink
        .submit(message("NODOCS", "2", "ia", "notice period?"))
        .unwrap()
        .done()
        .await;
    let docs = app.platform.finals("DOCS");
    assert!(docs[0].contains("cannot be reached"), "{docs:?}");
    assert!(docs[0].contains("> The notice period is 3 months."));
    assert!(docs[0].contains("[contract.pdf p.4]"));
    let plain = app.platform.finals("NODOCS");
    assert!(
        plain[0].contains("the reasoning model cannot be reached") && !plain[0].contains(">"),
        "{plain:?}"
    );
    // The endpoint's address stays in the log, out of the chat.
    assert!(!docs[0].contains("127.0.0.1") && !plain[0].contains("127.0.0.1"));
    let turns = stored(app, &data, &["DOCS"]).await;
    assert!(turns[0].is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_context_length_and_exact_counts_bound_the_request() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A 2048-token server that counts a token per 2 characters (far above cl100k's estimate).
    let llm = FakeLlm::start_with(Some(2048), Some(0.5), |req| {
        Reply::text(
            &format!("ok {}", "and more words ".repeat(10))[..40 + last_user(req).len() % 7],
        )
    })
    .await;
    let app = start_app(settings(&data, &llm.url)).await;
    for i in 0..12 {
        app.sink
            .submit(message(
                "X",
                &format!("x{i}"),
                "jo",
                &format!("question {i} {}", "pad ".repeat(40)),
            ))
            .unwrap()
            .done()
            .await;
    }
    let reqs = llm.turn_requests();
    let last = reqs.last().unwrap();
    // Output is capped so input + output fit 2048; input fits the rest by the server's count.
    let max_tokens = last["max_tokens"].as_u64().unwrap();
    assert_eq!(max_tokens, 512);
    let chars: usize = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().chars().count())
        .sum();
    assert!(
        (chars as u64).div_ceil(2) + max_tokens <= 2048,
        "{chars} chars + {max_tokens}"
    );
    assert!(
        last["messages"].as_array().unwrap().len() < 2 + 2 * 11,
        "older turns were cut"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_do_not_probe_an_endpoint_mid_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // 1.5 s reading the prompt, then a three-second answer, with health checks every second.
    let words: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    let answer = words.concat().trim_end().to_string();
    let llm = FakeLlm::start(move |_| {
        let mut r = Reply::chunks(words.clone(), Some("stop")).slow(Duration::from_millis(75));
        r.first_delay = Duration::from_millis(1500);
        r
    })
    .await;
    let mut s = settings(&data, &llm.url);
    s.health_cooldown_secs = 1;
    s.vision.url = closed_port_url();
    let app = start_app(s).await;
    app.sink
        .submit(message("A", "a1", "ann", "Say forty words."))
        .unwrap()
        .done()
        .await;
    assert_eq!(app.platform.finals("A"), vec![answer]);
    assert_eq!(
        llm.models_while_streaming(),
        0,
        "a health probe reached the server while it streamed"
    );
    app.shutdown().await;
}
