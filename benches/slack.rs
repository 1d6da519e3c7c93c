//! Slack figures through the real `App` and `SlackAdapter` against the local fake Slack (Web
//! API over HTTP, Socket Mode over WebSocket) and the fake OpenAI server: the time from the
//! model's first token to the first update a Slack user can see, and the Web API calls one
//! 1,000-token answer costs, for native streaming and for the post + update fallback.
//!
//! Then 40 questions at once over 10 channels, with Slack's rate-limit tiers enforced by the
//! fake and without ([`burst`]).
//!
//! Run: `cargo bench --bench slack` (`SLACK_BENCH_PART=burst` for the burst alone).

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "slack/burst.rs"]
mod burst;

use std::time::{Duration, Instant};

use common::slack::{FakeSlack, FakeSlackConfig};
use common::*;
use secrecy::SecretString;

/// Tokens in the answer, streamed one word each.
const TOKENS: usize = 1000;
/// The pause before each token: a 7B model on one GPU streams about this fast per
/// conversation.
const TOKEN_GAP: Duration = Duration::from_millis(4);
/// Answers per path.
const RUNS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for (name, streaming) in [
        ("native streaming", true),
        ("post + update fallback", false),
    ] {
        // SLACK_BENCH_PART=burst runs only the burst below.
        if std::env::var("SLACK_BENCH_PART").as_deref() != Ok("burst") {
            path(name, streaming).await;
        }
    }
    println!(
        "\n== {} questions at once over {} channels, a few hundred characters each",
        burst::QUESTIONS,
        burst::CHANNELS
    );
    for (name, tiers) in [("Slack's tiers enforced", true), ("no tiers", false)] {
        let f = burst::run(tiers).await;
        println!(
            "  {name}: first answer text p50 {:.2} s, p95 {:.2} s, max {:.2} s; {}/{} answers \
             complete, all by {:.1} s; every 👀 off by {}; {} calls answered 429, {} into a \
             running Retry-After; calls: {:?}",
            f.percentile(50.0),
            f.percentile(95.0),
            f.percentile(100.0),
            f.complete,
            burst::QUESTIONS,
            f.all_done,
            f.all_settled
                .map_or("never".to_string(), |s| format!("{s:.1} s")),
            f.limited,
            f.into_retry_after,
            f.calls
        );
    }
}

async fn path(name: &str, streaming: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        streaming,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(|_req| {
        Reply::chunks(
            (0..TOKENS).map(|i| format!("w{i} ")).collect(),
            Some("stop"),
        )
        .slow(TOKEN_GAP)
    })
    .await;
    let mut s = settings(&tmp.path().join("data"), &llm.url);
    s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
    s.slack.app_token = Some(SecretString::from(slack.config().app_token.clone()));
    s.slack.api_url = slack.api_url();
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    let mut app = anchorbot::App::build(s).await.unwrap();
    for a in adapters {
        app = app.with_adapter(a);
    }
    let app = running::RunningApp::start(app);
    assert!(slack.wait_connections(1, Duration::from_secs(30)).await);
    println!("\n== {name}: {TOKENS}-token answer, a token every {TOKEN_GAP:?}, {RUNS} runs");
    for run in 0..RUNS {
        let calls_before = slack.calls().len();
        let asked = llm.turn_requests().len();
        let mention = slack.app_mention("C1", "U1", &format!("question {run}"), None);
        let ts = mention["ts"].as_str().unwrap().to_string();
        slack.push_event(mention);
        // The first token leaves the model server as soon as the request arrives.
        let first_token = loop {
            if llm.turn_requests().len() > asked {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let visible = if streaming {
            "chat.appendStream"
        } else {
            "chat.postMessage"
        };
        let mut first_update = None;
        let done = loop {
            if first_update.is_none() {
                first_update = slack
                    .calls_to(visible)
                    .into_iter()
                    .map(|c| c.at)
                    .find(|at| *at >= first_token);
                if first_update.is_none() && streaming {
                    // The first text can also ride on chat.startStream.
                    first_update = slack
                        .calls_to("chat.startStream")
                        .into_iter()
                        .filter(|c| c.args.get("markdown_text").is_some())
                        .map(|c| c.at)
                        .find(|at| *at >= first_token);
                }
            }
            let finished = slack.thread_messages("C1", &ts).iter().any(|m| {
                m.bot_id.is_some()
                    && !m.streaming
                    && m.visible_text().contains(&format!("w{}", TOKENS - 1))
            });
            if finished {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // Let the feedback buttons and the status clear land.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls: Vec<_> = slack.calls().into_iter().skip(calls_before).collect();
        let mut by_method: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &calls {
            *by_method.entry(c.method.clone()).or_default() += 1;
        }
        println!(
            "  run {run}: first token → first visible update {:>7.1} ms; answer done after {:.2} s; {} Web API calls: {:?}",
            first_update.map(|t| t.duration_since(first_token).as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
            done.duration_since(first_token).as_secs_f64(),
            calls.len(),
            by_method
        );
    }
    app.stop_quietly().await;
}
