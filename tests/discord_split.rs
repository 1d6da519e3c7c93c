//! A long answer on Discord, end to end: the real `App` and Discord adapter against the fake
//! Discord, with an answer of about 5,400 characters (prose, a long code block, the line right
//! after it, more prose) streamed in small pieces, so the reply is posted, edited and split over
//! several 2,000-character messages while it grows. Every line arrives exactly once.

mod common;

use std::time::{Duration, Instant};

use common::discord::{FakeDiscord, FakeDiscordConfig, USER_ID};
use common::discord_app::DiscordApp;
use common::*;

/// The answer: numbered lines, so each can be found exactly once.
fn long_answer() -> String {
    let mut text = String::from("Here is the plan.\n\n");
    for i in 0..14 {
        text.push_str(&format!(
            "Paragraph {i}: the release train leaves on time when every step below is done in order.\n\n"
        ));
    }
    text.push_str("```rust\n");
    for i in 0..52 {
        text.push_str(&format!(
            "let step_{i} = pipeline.run({i}).expect(\"step {i}\");\n"
        ));
    }
    text.push_str("```\nThe first line after the code block.\n\n");
    for i in 0..16 {
        text.push_str(&format!(
            "Closing {i}: check the dashboards, then tell the channel what changed and why.\n\n"
        ));
    }
    text.trim_end().to_string()
}

/// The answer as the model streams it: pieces of 37 characters, a few milliseconds apart.
fn streamed(text: &str) -> Reply {
    let chars: Vec<char> = text.chars().collect();
    let chunks = chars
        .chunks(37)
        .map(|c| c.iter().collect::<String>())
        .collect();
    Reply::chunks(chunks, Some("stop")).slow(Duration::from_millis(8))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_answer_split_over_messages_keeps_every_line_once() {
    let text = long_answer();
    assert!(text.chars().count() > 5_000, "{}", text.chars().count());
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let reply = streamed(&text);
    let llm = FakeLlm::start(move |req| {
        if is_summary(req) {
            Reply::text("summary")
        } else {
            reply.clone()
        }
    })
    .await;
    let app = DiscordApp::start(&tmp.path().join("data"), &llm.url, &discord).await;
    let dm = "1200000000000000913";
    discord.dispatch(
        "MESSAGE_CREATE",
        discord.dm(dm, USER_ID, "give me the plan"),
    );
    // The reply is final once its last message carries the feedback buttons.
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = discord.bot_messages(dm);
        let done = messages
            .last()
            .is_some_and(|m| m.custom_ids().iter().any(|c| c == "anchorbot:good"));
        if done {
            break messages;
        }
        assert!(Instant::now() < deadline, "no final answer: {messages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;
    assert!(messages.len() >= 3, "{} messages", messages.len());
    for m in &messages {
        assert!(m.content.chars().count() <= 2000, "{}", m.content.len());
        let fences = m.content.lines().filter(|l| l.starts_with("```")).count();
        assert_eq!(fences % 2, 0, "unbalanced fences in {:?}", m.content);
    }
    let shown: Vec<&str> = messages
        .iter()
        .flat_map(|m| m.content.lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .collect();
    let expected: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .collect();
    assert_eq!(
        shown,
        expected,
        "the messages are {:?}",
        messages
            .iter()
            .map(|m| m.content.chars().count())
            .collect::<Vec<_>>()
    );
}
