//! The ops surface of the real binary: `/metrics` after a turn, `/healthz` and `/readyz` with
//! the reasoning endpoint up and down, graceful shutdown on SIGTERM (a turn in flight
//! finishes and is stored; one that outlives the grace is cut off, told and not stored), and
//! JSON logs without secrets.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{anchorbot, closed_port_url, echo, reopen_store, FakeLlm, Reply};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};

/// A running `anchorbot chat` with its output collected as it arrives.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// `chat` writes its log here, not to stderr.
    log: std::path::PathBuf,
}

impl Chat {
    /// Starts `anchorbot chat` on `data` against `url`, with extra environment.
    fn start(data: &std::path::Path, url: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = anchorbot(data, url);
        cmd.arg("chat")
            .env("ANCHORBOT_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Self {
            child,
            stdin,
            stdout,
            stderr,
            log: data.join("logs").join("anchorbot.log"),
        }
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it wrote to stderr, then its log file so far.
    fn stderr(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        self.stderr.lock().unwrap().clone() + &log
    }

    /// Waits (up to 30 s) until `what` returns something.
    async fn wait_for<T>(&self, label: &str, what: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = what(self) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {label}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ops address from the "metrics listening on ADDR" log line.
    async fn ops_addr(&self) -> String {
        self.wait_for("the ops address", |c| {
            c.stderr()
                .lines()
                .find_map(|l| l.split("metrics listening on ").nth(1))
                .map(|a| a.trim().trim_end_matches('"').to_string())
        })
        .await
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Waits for the exit (within `limit`) and returns whether it was a success.
    async fn exit_within(&mut self, limit: Duration) -> bool {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "anchorbot did not exit within {limit:?}\nstderr: {}",
                    self.stderr()
                )
            })
            .unwrap();
        status.success()
    }
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The value of the sample `name` (with its labels, as written) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_a_turn() {
    let llm = FakeLlm::start(echo).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chat = Chat::start(
        &data,
        &llm.url,
        &[("ANCHORBOT_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let addr = chat.ops_addr().await;
    chat.say("what is an anchor?").await;
    chat.wait_for("the answer", |c| {
        c.stdout().contains("what is an anchor?>").then_some(())
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = get(&addr, "/metrics").await;
        assert_eq!(status, 200);
        if sample(&body, r#"anchorbot_turns_total{outcome="answered"}"#).is_some()
            || tokio::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&body, r#"anchorbot_turns_total{outcome="answered"}"#),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(&body, "anchorbot_tokens_in_total").unwrap() > 0.0,
        "{body}"
    );
    assert!(
        sample(&body, "anchorbot_tokens_out_total").unwrap() > 0.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "anchorbot_time_to_first_token_seconds_count"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "anchorbot_turn_seconds_count"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "anchorbot_continuation_rounds_total"),
        Some(0.0),
        "{body}"
    );
    let endpoint = format!(r#"anchorbot_endpoint_up{{endpoint="{}"}}"#, llm.url);
    assert_eq!(sample(&body, &endpoint), Some(1.0), "{body}");
    assert_eq!(sample(&body, "anchorbot_queue_depth"), Some(0.0), "{body}");
    // No conversation key or user in any label.
    assert!(!body.contains("console:"), "{body}");
    drop(chat.stdin.take());
    assert!(
        chat.exit_within(Duration::from_secs(30)).await,
        "{}",
        chat.stderr()
    );
}

#[tokio::test]
async fn readiness_follows_the_reasoning_endpoint() {
    let llm = FakeLlm::start(echo).await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = Chat::start(
        &dir.path().join("up"),
        &llm.url,
        &[("ANCHORBOT_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let addr = up.ops_addr().await;
    assert_eq!(get(&addr, "/healthz").await.0, 200);
    let (status, body) = get(&addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    drop(up.stdin.take());
    assert!(up.exit_within(Duration::from_secs(30)).await);

    let down_url = closed_port_url();
    let mut down = Chat::start(
        &dir.path().join("down"),
        &down_url,
        &[("ANCHORBOT_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let addr = down.ops_addr().await;
    // The first health check runs at start; wait for it to mark the endpoint down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = get(&addr, "/readyz").await;
        if status == 503 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{body}");
    assert!(
        failed[0].as_str().unwrap().starts_with("reasoning:"),
        "{body}"
    );
    assert_eq!(get(&addr, "/healthz").await.0, 200);
    let (_, metrics) = get(&addr, "/metrics").await;
    let endpoint = format!(r#"anchorbot_endpoint_up{{endpoint="{down_url}"}}"#);
    assert_eq!(sample(&metrics, &endpoint), Some(0.0), "{metrics}");
    drop(down.stdin.take());
    assert!(down.exit_within(Duration::from_secs(30)).await);
}

/// A slow answer: `n` words, `delay` apart.
fn slow_answer(n: usize, delay: Duration) -> Reply {
    let words: Vec<String> = (0..n).map(|i| format!("word{i} ")).collect();
    Reply::chunks(words, Some("stop")).slow(delay)
}

#[tokio::test]
async fn sigterm_lets_the_streaming_turn_finish_and_exits_zero() {
    let llm = FakeLlm::start(|req| {
        if common::is_summary(req) {
            return Reply::text("");
        }
        slow_answer(12, Duration::from_millis(250))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chat = Chat::start(&data, &llm.url, &[]);
    chat.say("tell me slowly").await;
    chat.wait_for("the answer streaming", |c| {
        c.stdout().contains("word1").then_some(())
    })
    .await;
    chat.signal("-TERM");
    // The default grace is 30 s; the answer needs about 3 s more.
    assert!(
        chat.exit_within(Duration::from_secs(30)).await,
        "{}",
        chat.stderr()
    );
    let out = chat.stdout();
    assert!(out.contains("word11"), "the answer did not complete: {out}");
    assert!(!out.contains("restarting"), "{out}");

    let mut status = anchorbot(&data, &llm.url);
    status.args(["status", "--json"]);
    let (ok, json, err) = common::run(status).await;
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["turns"], 1, "{json}");
}

#[tokio::test]
async fn a_turn_outliving_the_grace_is_cut_told_and_not_stored() {
    let llm = FakeLlm::start(|_| slow_answer(200, Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chat = Chat::start(&data, &llm.url, &[("ANCHORBOT_SHUTDOWN_GRACE_SECS", "1")]);
    chat.say("tell me very slowly").await;
    chat.wait_for("the answer streaming", |c| {
        c.stdout().contains("word1").then_some(())
    })
    .await;
    chat.signal("-TERM");
    assert!(
        chat.exit_within(Duration::from_secs(20)).await,
        "{}",
        chat.stderr()
    );
    let out = chat.stdout();
    assert!(
        out.contains("anchorbot is restarting; this answer was cut off"),
        "the user was not told: {out}"
    );
    assert!(!out.contains("word199"), "{out}");

    let store = reopen_store(&data).await;
    let key = anchorbot_platform::ConversationKey::console("default").unwrap();
    let anchor = store.anchor(&key).await.unwrap();
    assert!(
        anchor.turns.is_empty(),
        "a cut answer was stored: {:?}",
        anchor.turns
    );
    assert_eq!(anchor.counters.turns_total, 0);
}

#[tokio::test]
async fn json_logs_parse_and_hold_no_secret() {
    let secret = "sk-ops-test-secret-4242";
    let slack = "xoxb-1111-2222-abcdefSECRET";
    // The key also sits in the URL, so every log line naming the endpoint carries it.
    let url = format!("{}?key={secret}", closed_port_url());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chat = Chat::start(
        &data,
        &url,
        &[
            ("ANCHORBOT_LOG_FORMAT", "json"),
            ("ANCHORBOT_REASONING_API_KEY", secret),
            ("ANCHORBOT_RETRIES", "0"),
            ("SLACK_BOT_TOKEN", slack),
        ],
    );
    chat.say("hello").await;
    chat.wait_for("the failure", |c| c.stdout().contains("⚠️").then_some(()))
        .await;
    drop(chat.stdin.take());
    assert!(
        chat.exit_within(Duration::from_secs(30)).await,
        "{}",
        chat.stderr()
    );
    let err = chat.stderr();
    // Every line is JSON, the start-up warning about the unreachable model server included.
    let json: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json.iter().any(|v| v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Start a model server"))),
        "no start-up warning in {err}"
    );
    assert!(
        json.iter().any(|v| v["level"] == "WARN"
            && v["fields"]["endpoint"]
                .as_str()
                .is_some_and(|e| e.contains("[redacted]"))),
        "no redacted endpoint warning in {err}"
    );
    assert!(!err.contains(secret), "{err}");
    assert!(!err.contains("abcdefSECRET"), "{err}");
}
