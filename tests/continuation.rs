//! Continuation by instruction end to end, through the real `App`, against scripted servers
//! that behave like a small model: cut at the output limit (`finish_reason: "length"`), then
//! asked to continue, it starts the whole answer over after a preamble, echoes the instruction
//! before or after the answer, starts over from the sentence it was cut in, or keeps starting
//! over until the rounds run out. What the chat shows and what the store (and its JSON export)
//! keeps hold no sentence twice and no instruction text.

mod common;

use anchorbot::llm::turn::{CONTINUE_PROMPT, CUT_NOTE};
use anchorbot::settings::ContinuationMode;
use anchorbot::store::Exchange;
use anchorbot_platform::ConversationKey;
use common::*;
use serde_json::Value;
use unicode_segmentation::UnicodeSegmentation;

/// The question, answered in three sentences.
const QUESTION: &str = "Explain what a billing service does in three sentences.";
const ANSWER: &str = "A billing service turns what customers use into invoices and sends \
them out on schedule. It records every payment against the invoice it settles and keeps each \
account's balance current. When a payment is late, it reminds the customer and flags the \
account for follow-up.";

fn key(channel: &str) -> ConversationKey {
    ConversationKey::new("test", Some("W1"), channel, None).unwrap()
}

fn is_continuation(req: &Value) -> bool {
    last_user(req) == CONTINUE_PROMPT
}

/// The partial answer a continuation request asks to continue.
fn partial(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    let m = &msgs[msgs.len() - 2];
    assert_eq!(m["role"], "assistant", "{req}");
    m["content"].as_str().unwrap().to_string()
}

/// The question that started the turn (the user message before the partial answer).
fn question(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    let at = if is_continuation(req) {
        msgs.len() - 3
    } else {
        msgs.len() - 1
    };
    msgs[at]["content"].as_str().unwrap().to_string()
}

/// `text` streamed a word at a time.
fn words(text: &str, finish: &'static str) -> Reply {
    Reply::chunks(
        text.split_inclusive(' ').map(str::to_string).collect(),
        Some(finish),
    )
}

/// At most this many characters: about `max_tokens` tokens of English.
fn within(text: &str, req: &Value) -> (String, bool) {
    let budget = req["max_tokens"].as_u64().unwrap() as usize * 4;
    let cut = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .take_while(|&i| i <= budget)
        .last()
        .unwrap_or(0);
    (text[..cut].to_string(), cut < text.len())
}

/// The comparison keys of `text`'s sentences that appear more than once.
fn repeated_sentences(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.split_sentence_bounds()
        .map(|s| {
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|k| k.len() >= 3 && !seen.insert(k.clone()))
        .collect()
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        repeated_sentences(text).is_empty(),
        "{what}: repeated {:?} in {text:?}",
        repeated_sentences(text)
    );
    let lower = text.to_lowercase();
    for phrase in [
        "previous reply",
        "length limit",
        "where it stopped",
        "completed response",
        "complete answer",
        "preamble",
    ] {
        assert!(!lower.contains(phrase), "{what}: {phrase:?} in {text:?}");
    }
}

/// Stops the app; returns the stored turns and the JSON export of each channel.
async fn stored(
    app: Running,
    data: &std::path::Path,
    channels: &[&str],
) -> Vec<(Vec<Exchange>, String)> {
    app.shutdown().await;
    let (store, docs) = reopen(data).await;
    let mut out = Vec::new();
    for c in channels {
        let turns = store.anchor(&key(c)).await.unwrap().turns;
        let export = anchorbot::rights::export::collect(&store, &docs, &key(c))
            .await
            .unwrap();
        out.push((turns, anchorbot::rights::export::to_json(&export)));
    }
    out
}

fn instruction_settings(data: &std::path::Path, url: &str) -> anchorbot::Settings {
    let mut s = settings(data, url);
    s.reasoning.model = "SmolLM2-135M-Instruct".into();
    s.reasoning.continuation = ContinuationMode::Instruction;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_model_that_starts_over_or_echoes_the_instruction_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The first round is cut mid-word in the second sentence; what the continuation round
    // sends depends on the channel's question.
    const CUT: usize = 110;
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            return Reply::text("SUMMARY: a billing question.");
        }
        let q = question(req);
        if !is_continuation(req) {
            return words(&ANSWER[..CUT], "length");
        }
        assert_eq!(
            partial(req),
            &ANSWER[..CUT],
            "the partial answer is sent as it is"
        );
        let echo = "Here is the completed response: Your previous reply was cut off by the \
length limit. Continue it exactly where it stopped.";
        let text = if q.contains("restart:") {
            format!("Sure! Here is the complete answer:\n\n{ANSWER}")
        } else if q.contains("echo-first:") {
            format!("{echo}\n\n{ANSWER}")
        } else if q.contains("echo-last:") {
            format!("{} {echo}", &ANSWER[CUT..])
        } else if q.contains("verbatim:") {
            // The instruction word for word, then the sentence it was cut in, over again.
            format!(
                "{CONTINUE_PROMPT}\n\n{}",
                &ANSWER[ANSWER.find("It records").unwrap()..]
            )
        } else {
            assert!(q.contains("partway:"), "{q}");
            // Starts over from the sentence it was cut in.
            ANSWER[ANSWER.find("It records").unwrap()..].to_string()
        };
        words(&text, "stop")
    })
    .await;
    let app = start_app(instruction_settings(&data, &llm.url)).await;
    let channels = ["restart", "echo-first", "echo-last", "verbatim", "partway"];
    for (i, ch) in channels.iter().enumerate() {
        app.sink
            .submit(message(
                ch,
                &format!("e{i}"),
                "ann",
                &format!("{ch}: {QUESTION}"),
            ))
            .unwrap()
            .done()
            .await;
    }
    for ch in channels {
        let finals = app.platform.finals(ch);
        assert_eq!(finals.len(), 1, "{ch}: {finals:?}");
        assert_clean(ch, &finals[0]);
        assert_eq!(finals[0], ANSWER, "{ch}");
        // Every message posted in the channel, as last edited.
        for m in app.platform.messages_in(ch) {
            assert_clean(ch, &m);
        }
    }
    let reqs = llm.turn_requests();
    assert_eq!(
        reqs.len(),
        2 * channels.len(),
        "one continuation round each"
    );
    for (ch, (turns, export)) in channels.iter().zip(stored(app, &data, &channels).await) {
        assert_eq!(turns.len(), 1, "{ch}");
        assert_eq!(turns[0].answer, ANSWER, "{ch}");
        assert!(!turns[0].truncated, "{ch}");
        assert_clean(ch, &turns[0].answer);
        assert!(export.contains(ANSWER), "{ch}: {export}");
        assert!(!export.contains("length limit") && !export.contains("where it stopped"));
        assert_eq!(
            export.matches("A billing service turns").count(),
            1,
            "{ch}: {export}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn many_short_rounds_that_repeat_or_start_the_sentence_over_build_the_answer_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // ANCHORBOT_MAX_OUTPUT_TOKENS=16: each round holds about 64 characters. Asked to
    // continue, this model starts over from the sentence it was cut in when that leaves room
    // to get further, and otherwise repeats the last three words first.
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            return Reply::text("SUMMARY: a billing question.");
        }
        let from = if is_continuation(req) {
            let p = partial(req);
            assert!(ANSWER.starts_with(p.trim_end()), "{p:?}");
            let done = p.trim_end().len();
            let sentence = ANSWER[..done].rfind(". ").map(|i| i + 2).unwrap_or(0);
            let words_back = ANSWER[..done]
                .rmatch_indices(' ')
                .nth(2)
                .map(|(i, _)| i + 1)
                .unwrap_or(0);
            if done - sentence < 40 {
                sentence
            } else {
                words_back
            }
        } else {
            0
        };
        let (text, cut) = within(&ANSWER[from..], req);
        words(&text, if cut { "length" } else { "stop" })
    })
    .await;
    let mut s = instruction_settings(&data, &llm.url);
    s.max_output_tokens = 16;
    s.max_rounds = 20;
    let app = start_app(s).await;
    app.sink
        .submit(message("S", "s1", "ann", QUESTION))
        .unwrap()
        .done()
        .await;
    let finals = app.platform.finals("S");
    assert_eq!(finals, vec![ANSWER.to_string()]);
    let rounds = llm.turn_requests().len();
    assert!(rounds > 5, "many short rounds: {rounds}");
    let stored = stored(app, &data, &["S"]).await;
    let (turns, export) = &stored[0];
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].answer, ANSWER);
    assert!(!turns[0].truncated);
    assert_eq!(
        export.matches("A billing service turns").count(),
        1,
        "{export}"
    );
    assert_eq!(
        export.matches("It records every payment").count(),
        1,
        "{export}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_only_starts_over_ends_cut_with_its_first_sentence_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // The run: every round starts the answer over and is cut at the same place.
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            return Reply::text("SUMMARY: a billing question.");
        }
        let (text, cut) = within(ANSWER, req);
        assert!(cut);
        words(&text, "length")
    })
    .await;
    let mut s = instruction_settings(&data, &llm.url);
    s.max_output_tokens = 16;
    let max_rounds = s.max_rounds;
    let app = start_app(s).await;
    app.sink
        .submit(message("O", "o1", "ann", QUESTION))
        .unwrap()
        .done()
        .await;
    assert_eq!(llm.turn_requests().len(), 1 + max_rounds);
    let first = within(ANSWER, &llm.turn_requests()[0]).0;
    let finals = app.platform.finals("O");
    assert_eq!(finals, vec![format!("{}{CUT_NOTE}", first.trim())]);
    assert_clean("final", &finals[0]);
    assert_eq!(finals[0].matches("A billing service").count(), 1);
    let stored = stored(app, &data, &["O"]).await;
    let (turns, _) = &stored[0];
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].answer, first.trim());
    assert!(turns[0].truncated);
}
