//! Discord figures through the real `App` and `DiscordAdapter` against the local fake Discord
//! (REST v10 and the gateway over loopback) and the fake OpenAI server: the time from the
//! model's first token to the first message a Discord user sees, and the REST calls one
//! 1,000-token answer costs.
//!
//! Run: `cargo bench --bench discord`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::discord::{FakeDiscord, FakeDiscordConfig, USER_ID};
use common::*;
use secrecy::SecretString;

/// Tokens in the answer, streamed one word each.
const TOKENS: usize = 1000;
/// The pause before each token (a 7B model's pace on one GPU).
const TOKEN_GAP: Duration = Duration::from_millis(4);
/// Answers measured.
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
    let tmp = tempfile::tempdir().unwrap();
    let discord = FakeDiscord::start(FakeDiscordConfig::default()).await;
    let llm = FakeLlm::start(|_req| {
        Reply::chunks(
            (0..TOKENS).map(|i| format!("w{i} ")).collect(),
            Some("stop"),
        )
        .slow(TOKEN_GAP)
    })
    .await;
    let mut s = settings(&tmp.path().join("data"), &llm.url);
    s.discord.token = Some(SecretString::from(discord.config().token.clone()));
    s.discord.api_url = discord.base_url();
    let adapters = anchorbot::adapters::configured(&s).unwrap();
    let mut app = anchorbot::App::build(s).await.unwrap();
    for a in adapters {
        app = app.with_adapter(a);
    }
    let app = running::RunningApp::start(app);
    assert!(discord.wait_ready(Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n== {TOKENS}-token answer in a DM, a token every {TOKEN_GAP:?}, {RUNS} runs");
    for run in 0..RUNS {
        let dm = format!("12000000000000009{run:02}");
        let calls_before = discord.calls().len();
        let asked = llm.turn_requests().len();
        discord.dispatch(
            "MESSAGE_CREATE",
            discord.dm(&dm, USER_ID, &format!("question {run}")),
        );
        let first_token = loop {
            if llm.turn_requests().len() > asked {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let mut first_update = None;
        let done = loop {
            if first_update.is_none() {
                first_update = discord
                    .calls_to("POST /channels/{channel_id}/messages")
                    .into_iter()
                    .map(|c| c.at)
                    .find(|at| *at >= first_token);
            }
            let finished = discord.bot_messages(&dm).iter().any(|m| {
                m.content.contains(&format!("w{}", TOKENS - 1))
                    && m.custom_ids().iter().any(|c| c == "anchorbot:good")
            });
            if finished {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls: Vec<_> = discord.calls().into_iter().skip(calls_before).collect();
        let mut by_route: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &calls {
            *by_route.entry(c.route.clone()).or_default() += 1;
        }
        println!(
            "  run {run}: first token → first visible message {:>7.1} ms; answer done after {:.2} s; {} REST calls: {:?}",
            first_update
                .map(|t| t.duration_since(first_token).as_secs_f64() * 1000.0)
                .unwrap_or(f64::NAN),
            done.duration_since(first_token).as_secs_f64(),
            calls.len(),
            by_route
        );
    }
    app.stop_quietly().await;
}
