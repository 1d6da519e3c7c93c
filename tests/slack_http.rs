//! The Slack adapter over the Events API (HTTP mode) end to end: the real `App` with the real
//! `SlackAdapter`, configured with a signing secret and a listen address and no app token,
//! receives requests signed exactly as Slack documents (`v0=hex(HMAC-SHA256(secret,
//! "v0:{timestamp}:{body}"))`) and answers through the local fake Slack's Web API.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anchorbot::Settings;
use common::slack::{FakeSlack, FakeSlackConfig};
use common::*;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::Value;
use sha2::Sha256;

/// The app's signing secret (Slack's documentation example).
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A running app in HTTP mode, where it listens, and a way to stop it.
struct HttpApp {
    url: String,
    http: reqwest::Client,
    app: running::RunningApp,
}

/// A port that was free a moment ago and that no other test of this binary was given: the
/// app binds it only once it is built, and meanwhile the system may hand the same free port
/// to another test's probe, whose app would then take this test's requests.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Slack's request signature: `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

/// `application/x-www-form-urlencoded` from a JSON object of strings.
fn form(fields: &Value) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v.as_str().unwrap_or_default())))
        .collect::<Vec<_>>()
        .join("&")
}

impl HttpApp {
    async fn start(dir: &std::path::Path, llm_url: &str, slack: &FakeSlack) -> Self {
        Self::start_on(dir, llm_url, slack, None).await
    }

    /// The same, on the database `db` when given (a replica).
    async fn start_on(
        dir: &std::path::Path,
        llm_url: &str,
        slack: &FakeSlack,
        db: Option<&pg::TestDb>,
    ) -> Self {
        let port = free_port();
        let mut s: Settings = settings(dir, llm_url);
        s.slack.bot_token = Some(SecretString::from(slack.config().bot_token.clone()));
        s.slack.signing_secret = Some(SecretString::from(SECRET));
        s.slack.listen = Some(format!("127.0.0.1:{port}"));
        s.slack.api_url = slack.api_url();
        s.database_url = db.map(|d| d.url.clone());
        let mut app = anchorbot::App::build(s.clone()).await.unwrap();
        for a in anchorbot::adapters::configured_on(&s, app.storage()).unwrap() {
            app = app.with_adapter(a);
        }
        let app = running::RunningApp::start(app);
        // The adapter asks auth.test who it is, then binds.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                !app.is_finished(),
                "the app stopped before it listened: {:?}",
                app.join().await
            );
            assert!(
                Instant::now() < deadline,
                "the adapter never listened on 127.0.0.1:{port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            app,
        }
    }

    /// POSTs `body` with exactly these headers; the status and the body of the answer.
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    /// POSTs `body` signed with `secret` at `timestamp`, as Slack does.
    async fn post_signed_at(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        secret: &str,
        timestamp: i64,
    ) -> (u16, String) {
        let headers = [
            ("x-slack-request-timestamp", timestamp.to_string()),
            ("x-slack-signature", sign(secret, timestamp, body)),
        ];
        self.post(path, content_type, body, &headers).await
    }

    /// An Events API request, signed now with the app's secret.
    async fn event(&self, body: &str) -> (u16, String) {
        self.post_signed_at("/slack/events", "application/json", body, SECRET, now())
            .await
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn url_verification_is_answered_with_the_challenge() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = HttpApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let (status, text) = app.event(body).await;
    assert_eq!(status, 200);
    assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    // Unsigned, the same request is refused.
    let (status, _) = app
        .post("/slack/events", "application/json", body, &[])
        .await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_mention_is_acknowledged_at_once_and_answered_once_in_its_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(300))).await;
    let app = HttpApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let mention = slack.app_mention("C1", "U1", "the code word is HTTPBIRD", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    let (callback, _event_id) = slack.event_callback(mention);
    let body = callback.to_string();
    let sent = Instant::now();
    let (status, text) = app.event(&body).await;
    assert_eq!(status, 200);
    assert!(text.is_empty(), "{text}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the ack waited for the turn: {:?}",
        sent.elapsed()
    );
    // Slack retries a delivery it thinks failed, with the same event_id.
    let retry_ts = now();
    let retry = [
        ("x-slack-request-timestamp", retry_ts.to_string()),
        ("x-slack-signature", sign(SECRET, retry_ts, &body)),
        ("x-slack-retry-num", "1".to_string()),
        ("x-slack-retry-reason", "http_timeout".to_string()),
    ];
    let (status, _) = app
        .post("/slack/events", "application/json", &body, &retry)
        .await;
    assert_eq!(status, 200);
    let answer = slack.answer_in("C1", &ts, "HTTPBIRD").await;
    assert!(
        // The asker is named as Slack shows them (`users.info`: the fake's U1 is "u1").
        answer.contains("Answer to <u1: the code word is HTTPBIRD>"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(llm.turn_requests().len(), 1, "the retry was answered too");
    let answers = slack
        .thread_messages("C1", &ts)
        .into_iter()
        .filter(|m| m.bot_id.is_some())
        .count();
    assert_eq!(answers, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_missing_and_stale_signatures_are_rejected_and_not_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = HttpApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let json = "application/json";

    let bad = slack.app_mention("C2", "U1", "signed with the wrong secret", None);
    let bad_ts = bad["ts"].as_str().unwrap().to_string();
    let body = slack.event_callback(bad).0.to_string();
    let (status, _) = app
        .post_signed_at("/slack/events", json, &body, "not-the-secret", now())
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.post("/slack/events", json, &body, &[]).await;
    assert_eq!(status, 401, "no signature at all");

    // Signed with the right secret ten minutes ago: outside the 5-minute window.
    let stale = slack.app_mention("C2", "U1", "ten minutes late", None);
    let stale_ts = stale["ts"].as_str().unwrap().to_string();
    let body = slack.event_callback(stale).0.to_string();
    let (status, _) = app
        .post_signed_at("/slack/events", json, &body, SECRET, now() - 600)
        .await;
    assert_eq!(status, 401);

    let command = form(&slack.anchor_status("C2", "U1"));
    let (status, _) = app
        .post_signed_at(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &command,
            "not-the-secret",
            now(),
        )
        .await;
    assert_eq!(status, 401);

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(llm.turn_requests().is_empty());
    for ts in [&bad_ts, &stale_ts] {
        assert!(
            slack
                .thread_messages("C2", ts)
                .iter()
                .all(|m| m.bot_id.is_none()),
            "a refused request was answered"
        );
    }
    assert!(slack.bot_messages("C2").is_empty());
    assert!(slack.response_url_posts().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slash_command_over_http_is_answered_ephemerally_through_its_response_url() {
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(echo).await;
    let app = HttpApp::start(&tmp.path().join("data"), &llm.url, &slack).await;
    let fields = slack.anchor_status("C3", "U1");
    let path = fields["response_url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&slack.base_url())
        .to_string();
    let (status, text) = app
        .post_signed_at(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &form(&fields),
            SECRET,
            now(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(text.is_empty(), "the ack carries no answer: {text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let post = loop {
        if let Some(p) = slack.response_url_posts().into_iter().next() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the response_url"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(post.path, path);
    let answer = post.json().expect("a JSON answer");
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    assert!(
        !answer["text"].as_str().unwrap_or_default().is_empty(),
        "{answer}"
    );
    // Nothing public: no message in the channel, and no model turn.
    assert!(slack.bot_messages("C3").is_empty());
    assert!(llm.turn_requests().is_empty());
    app.stop().await;
}

/// Two replicas behind a load balancer, on one PostgreSQL database: a mention reaches one, and
/// Slack's retry of it and its `message` twin reach the other. It is answered once.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_behind_a_load_balancer_answer_a_retried_event_once() {
    let Some(db) = pg::database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await;
    let llm = FakeLlm::start(|req| echo(req).slow(Duration::from_millis(300))).await;
    let one = HttpApp::start_on(&tmp.path().join("one"), &llm.url, &slack, Some(&db)).await;
    let two = HttpApp::start_on(&tmp.path().join("two"), &llm.url, &slack, Some(&db)).await;
    let mention = slack.app_mention("C1", "U1", "the code word is LBBIRD", None);
    let ts = mention["ts"].as_str().unwrap().to_string();
    let twin = slack
        .event_callback(slack.message_twin(&mention))
        .0
        .to_string();
    let body = slack.event_callback(mention).0.to_string();
    let (status, _) = one.event(&body).await;
    assert_eq!(status, 200);
    let retry_ts = now();
    let retry = [
        ("x-slack-request-timestamp", retry_ts.to_string()),
        ("x-slack-signature", sign(SECRET, retry_ts, &body)),
        ("x-slack-retry-num", "1".to_string()),
        ("x-slack-retry-reason", "http_timeout".to_string()),
    ];
    let (status, _) = two
        .post("/slack/events", "application/json", &body, &retry)
        .await;
    assert_eq!(status, 200);
    let (status, _) = two.event(&twin).await;
    assert_eq!(status, 200);
    slack.answer_in("C1", &ts, "LBBIRD").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(llm.turn_requests().len(), 1, "answered more than once");
    let answers = slack
        .thread_messages("C1", &ts)
        .into_iter()
        .filter(|m| m.bot_id.is_some())
        .count();
    assert_eq!(answers, 1);
    one.stop().await;
    two.stop().await;
}
