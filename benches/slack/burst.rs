//! Many questions at once: 40 mentions arriving together over 10 channels (4 in each, from 40
//! people), the fake model streaming a few hundred characters for each. The figures: the time
//! from each question to the first answer text in its thread (the first `chat.postMessage`,
//! text-bearing `chat.startStream` or `chat.appendStream` there), whether every answer ended
//! with the model's whole text, the calls Slack refused (429) and the calls sent into a
//! Retry-After the fake had given (the fake's "no call into a running Retry-After" rule).
//! Run once with Slack's tiers enforced by the fake and once without.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::slack::{FakeSlack, FakeSlackConfig};
use super::common::*;
use secrecy::SecretString;

/// Questions asked together.
pub const QUESTIONS: usize = 40;
/// Channels they are spread over.
pub const CHANNELS: usize = 10;
/// Words in each answer (about 360 characters).
const WORDS: usize = 60;
/// The pause before each word.
const WORD_GAP: Duration = Duration::from_millis(10);
/// How long the run waits for every answer to be complete.
const DEADLINE: Duration = Duration::from_secs(300);

/// What one run measured.
#[derive(Debug)]
pub struct Figures {
    /// Seconds from each question to the first answer text in its thread, sorted.
    pub first_text: Vec<f64>,
    /// Answers whose final text is the model's whole answer.
    pub complete: usize,
    /// Seconds until the last answer was complete.
    pub all_done: f64,
    /// Seconds until the last 👀 was taken off (it waits for `reactions.remove`, Tier 2, in
    /// the background); `None` past the deadline.
    pub all_settled: Option<f64>,
    /// Calls answered 429.
    pub limited: usize,
    /// Calls sent into a running Retry-After.
    pub into_retry_after: usize,
    /// Calls by method.
    pub calls: BTreeMap<String, usize>,
}

impl Figures {
    /// The `p`th percentile (0–100) of the first-text times.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.first_text.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.first_text.len() as f64).ceil() as usize;
        self.first_text[rank.clamp(1, self.first_text.len()) - 1]
    }
}

/// The model's answer.
fn answer_text() -> String {
    (0..WORDS)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One run, with Slack's tiers enforced by the fake or not.
pub async fn run(tiers: bool) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig {
        tiers,
        echo_bot_messages: false,
        ..Default::default()
    })
    .await;
    let llm = FakeLlm::start(|req| {
        if is_summary(req) {
            return Reply::text("");
        }
        let words: Vec<String> = (0..WORDS)
            .map(|i| {
                if i + 1 == WORDS {
                    format!("word{i}")
                } else {
                    format!("word{i} ")
                }
            })
            .collect();
        Reply::chunks(words, Some("stop")).slow(WORD_GAP)
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
    // Let slack-morphism's second Socket Mode connection open before the burst.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls_before = slack.calls().len();

    let mut threads: Vec<(String, String, Instant)> = Vec::new();
    for i in 0..QUESTIONS {
        let channel = format!("C{:02}", i % CHANNELS);
        let mention = slack.app_mention(&channel, &format!("U{i:03}"), "a question", None);
        let ts = mention["ts"].as_str().unwrap().to_string();
        threads.push((channel, ts, Instant::now()));
        slack.push_event(mention);
    }
    let asked = Instant::now();
    let expected = answer_text();
    let done = |slack: &FakeSlack, channel: &str, ts: &str| {
        slack
            .thread_messages(channel, ts)
            .iter()
            .any(|m| m.bot_id.is_some() && !m.streaming && shown(m).trim() == expected.trim())
    };
    let all_done = loop {
        if threads.iter().all(|(c, ts, _)| done(&slack, c, ts)) {
            break asked.elapsed();
        }
        if asked.elapsed() > DEADLINE {
            break asked.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let complete = threads
        .iter()
        .filter(|(c, ts, _)| done(&slack, c, ts))
        .count();
    // What follows the answers (the feedback buttons, the working reaction taken off) waits
    // for its allowance in the background; the calls it makes count too.
    let settled = |slack: &FakeSlack| {
        threads.iter().all(|(c, ts, _)| {
            slack
                .find_message(c, ts)
                .is_some_and(|m| m.reaction_names().is_empty())
        })
    };
    let all_settled = loop {
        if settled(&slack) {
            break Some(asked.elapsed().as_secs_f64());
        }
        if asked.elapsed() > DEADLINE {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let calls: Vec<_> = slack.calls().into_iter().skip(calls_before).collect();
    let mut first_text: Vec<f64> = threads
        .iter()
        .filter_map(|(_, ts, pushed)| {
            first_text_at(&calls, ts).map(|at| at.duration_since(*pushed).as_secs_f64())
        })
        .collect();
    first_text.sort_by(|a, b| a.total_cmp(b));
    let mut by_method = BTreeMap::new();
    for c in &calls {
        *by_method.entry(c.method.clone()).or_default() += 1;
    }
    let figures = Figures {
        first_text,
        complete,
        all_done: all_done.as_secs_f64(),
        all_settled,
        limited: calls.iter().filter(|c| c.status == 429).count(),
        into_retry_after: slack.violations().take().len(),
        calls: by_method,
    };
    app.stop_quietly().await;
    figures
}

/// What a bot message shows as the answer: a stream's text, or a posted message's
/// `markdown` block.
fn shown(m: &super::common::slack::FakeMessage) -> String {
    if m.streamed {
        m.text.clone()
    } else {
        m.blocks
            .first()
            .and_then(|b| b["text"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// When the first answer text reached the thread `ts`.
fn first_text_at(calls: &[super::common::slack::ApiCall], ts: &str) -> Option<Instant> {
    let in_thread = |c: &super::common::slack::ApiCall| c.args["thread_ts"] == ts && c.ok();
    let mut first: Option<Instant> = None;
    let mut earliest = |at: Instant| {
        first = Some(first.map_or(at, |f: Instant| f.min(at)));
    };
    let mut streams: Vec<Value> = Vec::new();
    for c in calls {
        match c.method.as_str() {
            "chat.postMessage" if in_thread(c) => earliest(c.at),
            "chat.startStream" if in_thread(c) => {
                if c.args["markdown_text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
                {
                    earliest(c.at);
                }
                streams.push(c.response["ts"].clone());
            }
            _ => {}
        }
    }
    for c in calls {
        if c.method == "chat.appendStream" && c.ok() && streams.contains(&c.args["ts"]) {
            earliest(c.at);
        }
    }
    first
}
