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
