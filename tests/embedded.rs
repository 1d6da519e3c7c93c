//! The embedded model end to end: the real `App`, with `reasoning.url = "embedded"` and no model
//! server anywhere, answers through SmolLM2-135M-Instruct run in the process (the GGUF that
//! `.ci/setup.sh` puts in `.models/`), and remembers the turn after a restart.

mod common;

use common::*;

fn embedded(dir: &std::path::Path) -> anchorbot::Settings {
    // No server listens at the vision URL either: nothing here may leave the process.
    let mut s = settings(dir, "http://127.0.0.1:9/v1");
    s.reasoning.url = "embedded".into();
    s.reasoning.embedded_model = Some(models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    s.max_output_tokens = 48;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_model_answers_and_the_turn_is_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let app = start_app(embedded(&dir)).await;
    app.sink
        .submit(message("E", "e1", "ann", "What is the capital of France?"))
        .unwrap()
        .done()
        .await;
    let finals = app.platform.finals("E");
    app.shutdown().await;
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(finals[0].contains("Paris"), "{finals:?}");

    let (store, _) = reopen(&dir).await;
    let anchor = store
        .anchor(&anchorbot_platform::ConversationKey::new("test", Some("W1"), "E", None).unwrap())
        .await
        .unwrap();
    assert_eq!(anchor.turns.len(), 1);
    assert!(anchor.turns[0].answer.contains("Paris"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_model_folds_older_turns_into_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut s = embedded(&dir);
    // A small input budget: a few turns outgrow the recent turns' share, so older ones fold.
    s.max_input_tokens = 700;
    let app = start_app(s).await;
    let lines = [
        "Hi! My name is Priya and I work on the billing service.",
        "Our team decided to move the invoices to PostgreSQL in March.",
        "The budget for the migration is 12,000 euros.",
        "Bo owns the rollback plan and Ann reviews it.",
        "We ship the new invoice page on May 3.",
        "Remind me later that the audit is in June.",
    ];
    let started = std::time::Instant::now();
    for (i, line) in lines.iter().enumerate() {
        app.sink
            .submit(message("S", &format!("s{i}"), "priya", line))
            .unwrap()
            .done()
            .await;
    }
    let key = anchorbot_platform::ConversationKey::new("test", Some("W1"), "S", None).unwrap();
    // Summarizing runs in the background after a delivered answer; SmolLM2 writes ~20 tokens/s.
    eprintln!("{} turns answered in {:?}", lines.len(), started.elapsed());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let mut asked = 0;
    let status = loop {
        asked += 1;
        app.sink
            .submit(message("S", &format!("st{asked}"), "priya", "/status"))
            .unwrap()
            .done()
            .await;
        let status = app
            .platform
            .all()
            .into_iter()
            .rev()
            .find_map(|r| match r {
                Record::Ephemeral(c, t) if c == "S" => Some(t),
                _ => None,
            })
            .unwrap();
        if !status.contains("into 0 summaries")
            || status.contains("paused")
            || std::time::Instant::now() > deadline
        {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    app.shutdown().await;
    // Folding may run more than once while the turns arrive; at least once it was accepted.
    assert!(!status.contains("into 0 summaries"), "{status}");
    assert!(!status.contains("paused"), "{status}");
    assert!(
        status.contains("Model: SmolLM2-135M-Instruct.Q4_1.gguf (embedded, in this process)"),
        "{status}"
    );
    let (store, _) = reopen(&dir).await;
    let anchor = store.anchor(&key).await.unwrap();
    let summary = &anchor.summaries[0].text;
    assert!(!summary.trim().is_empty());
    // Not the request's words copied back (SmolLM2 copied the form's description before).
    assert!(!summary.contains("one paragraph keeping"), "{summary}");
    assert!(
        [
            "Priya",
            "billing",
            "PostgreSQL",
            "invoice",
            "budget",
            "euro",
            "rollback",
            "May",
            "June"
        ]
        .iter()
        .any(|w| summary.contains(w)),
        "the summary names something said: {summary}"
    );
    assert!(
        !anchor.summaries[0]
            .text
            .to_ascii_lowercase()
            .starts_with("summary:"),
        "the lead is not stored: {:?}",
        anchor.summaries[0].text
    );
    eprintln!(
        "summary: {:?}\nfacts: {:?}",
        anchor.summaries[0].text, anchor.facts
    );
}
