//! Test helpers: a local OpenAI-compatible server that speaks the real SSE streaming format
//! (scripted per request), a recording platform adapter for in-process runs of the real
//! `App`, and a builder for the real `anchorbot` binary.
#![allow(dead_code)]

pub mod discord_app;
pub mod isolated;
pub mod peak;
pub mod pg;
pub mod running;
pub mod slack_app;

// The platform fakes and fixture generators live in their own crate, compiled once for every
// test binary instead of inside each.
#[allow(unused_imports)]
pub use anchorbot_fakes::{discord, fixtures, slack};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::{
    Adapter, Attachment, Author, CommandSpec, EventSink, FinalState, Limits, MessageRef, Platform,
    PlatformError, ReplyTarget, Status,
};
use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

/// How the fake answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Content pieces, one SSE chunk each.
    pub chunks: Vec<String>,
    /// `finish_reason` of the last chunk; `None` ends the stream without one (a cut).
    pub finish: Option<&'static str>,
    /// Pause before each chunk.
    pub delay: Duration,
    /// HTTP status; anything but 200 returns an error body instead of a stream.
    pub status: u16,
    /// `reasoning_content` pieces sent before the content (vLLM's reasoning parser).
    pub reasoning: Vec<String>,
    /// Write the SSE body in pieces of this many bytes (splitting frames and characters).
    pub raw_split: Option<usize>,
    /// Pause before the first frame (to trip the first-token timeout).
    pub first_delay: Duration,
}

impl Reply {
    /// A complete answer streamed in word-sized pieces.
    pub fn text(answer: &str) -> Self {
        let mut chunks = Vec::new();
        let mut cur = String::new();
        for ch in answer.chars() {
            cur.push(ch);
            if ch == ' ' {
                chunks.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            chunks.push(cur);
        }
        Self::chunks(chunks, Some("stop"))
    }

    /// Exactly these content chunks, then `finish`.
    pub fn chunks(chunks: Vec<String>, finish: Option<&'static str>) -> Self {
        Self {
            chunks,
            finish,
            delay: Duration::ZERO,
            status: 200,
            reasoning: Vec::new(),
            raw_split: None,
            first_delay: Duration::ZERO,
        }
    }

    /// An error status instead of a stream.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::chunks(Vec::new(), None)
        }
    }

    /// Same, with a pause before each chunk.
    pub fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Script = dyn Fn(&Value) -> Reply + Send + Sync;

struct FakeState {
    requests: Mutex<Vec<Value>>,
    script: Box<Script>,
    /// `max_model_len` reported by `/v1/models`.
    max_model_len: Option<u64>,
    /// `owned_by` reported by `/v1/models` (`"vllm"` for vLLM).
    owned_by: &'static str,
    /// Tokens per character reported by `/tokenize`; `None`: the route does not exist.
    tokenize_ratio: Option<f64>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `/v1/models` requests that arrived while a chat stream was open (llama.cpp's Python
    /// server cuts the open stream when that happens).
    models_while_streaming: AtomicUsize,
}

/// A local OpenAI-compatible server on an ephemeral port.
pub struct FakeLlm {
    /// Base URL including `/v1`.
    pub url: String,
    state: Arc<FakeState>,
}

impl FakeLlm {
    /// Starts a server that answers each chat request with `script(request_json)`.
    pub async fn start(script: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(Some(16384), None, script).await
    }

    /// Starts a server reporting `max_model_len` and, with `tokenize_ratio`, offering vLLM's
    /// `/tokenize` (counting `ratio` tokens per character of the messages).
    pub async fn start_with(
        max_model_len: Option<u64>,
        tokenize_ratio: Option<f64>,
        script: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::serve(max_model_len, tokenize_ratio, "test", script).await
    }

    /// Starts a server that lists its model as vLLM does (`"owned_by": "vllm"`).
    pub async fn start_vllm(script: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(Some(16384), None, "vllm", script).await
    }

    async fn serve(
        max_model_len: Option<u64>,
        tokenize_ratio: Option<f64>,
        owned_by: &'static str,
        script: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let state = Arc::new(FakeState {
            requests: Mutex::new(Vec::new()),
            script: Box::new(script),
            max_model_len,
            owned_by,
            tokenize_ratio,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            models_while_streaming: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/tokenize", post(tokenize))
            .route("/v1/embeddings", post(embeddings))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// Every chat request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Chat requests that were not summarization calls.
    pub fn turn_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| !is_summary(r))
            .collect()
    }

    /// The most requests that were streaming at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many `/v1/models` requests arrived while a chat stream was open.
    pub fn models_while_streaming(&self) -> usize {
        self.state.models_while_streaming.load(Ordering::SeqCst)
    }
}

/// Echoes the question back, so answers are recognisable: `Answer to <author: question>`.
pub fn echo(req: &Value) -> Reply {
    Reply::text(&format!("Answer to <{}>", last_user(req)))
}

/// True for a summarization request.
pub fn is_summary(req: &Value) -> bool {
    system_of(req).starts_with("You maintain the long-term memory")
}

/// The system message of a request.
pub fn system_of(req: &Value) -> String {
    req["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The last user message of a request.
pub fn last_user(req: &Value) -> String {
    let msgs = req["messages"].as_array().unwrap();
    msgs.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// All message contents of a request, joined.
pub fn all_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn models(State(state): State<Arc<FakeState>>) -> Json<Value> {
    if state.in_flight.load(Ordering::SeqCst) > 0 {
        state.models_while_streaming.fetch_add(1, Ordering::SeqCst);
    }
    let mut model = json!({"id": "fake-model", "object": "model", "owned_by": state.owned_by});
    if let Some(len) = state.max_model_len {
        model["max_model_len"] = json!(len);
    }
    Json(json!({"object": "list", "data": [model]}))
}

/// A deterministic embedding: hashed bag of words, 64 dimensions.
pub fn bag_of_words(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(1469598103934665603u64, |h, b| {
                (h ^ b as u64).wrapping_mul(1099511628211)
            });
        v[(h % 64) as usize] += 1.0;
    }
    v
}

async fn embeddings(State(state): State<Arc<FakeState>>, Json(req): Json<Value>) -> Json<Value> {
    state.requests.lock().unwrap().push(req.clone());
    let inputs: Vec<String> = req["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": bag_of_words(t)}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": req["model"]}))
}

async fn tokenize(State(state): State<Arc<FakeState>>, Json(req): Json<Value>) -> Response {
    let Some(ratio) = state.tokenize_ratio else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let chars: usize = req["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["content"].as_str().unwrap_or("").chars().count())
                .sum()
        })
        .unwrap_or(0);
    let count = (chars as f64 * ratio).ceil() as u64;
    Json(json!({"count": count, "max_model_len": state.max_model_len, "tokens": []}))
        .into_response()
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let v = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {v}\n\n"))
}

struct InFlight(Arc<FakeState>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(state): State<Arc<FakeState>>, Json(req): Json<Value>) -> Response {
    state.requests.lock().unwrap().push(req.clone());
    let reply = (state.script)(&req);
    if reply.status == 200 && req["stream"] != true {
        // A non-streaming completion (OCR requests use these).
        tokio::time::sleep(reply.first_delay + reply.delay).await;
        let body = json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.chunks.concat()},
                         "finish_reason": reply.finish.unwrap_or("stop")}]
        });
        return Json(body).into_response();
    }
    if reply.status != 200 {
        let body = json!({"error": {"message": "scripted failure", "type": "server_error"}});
        return (StatusCode::from_u16(reply.status).unwrap(), Json(body)).into_response();
    }
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let guard = InFlight(state.clone());
    // (frame, ends the answer): the in-flight count drops when the finish frame is sent.
    let mut frames: Vec<(Bytes, bool)> = vec![(
        chunk(json!({"role": "assistant", "content": ""}), None),
        false,
    )];
    frames.extend(
        reply
            .reasoning
            .iter()
            .map(|r| (chunk(json!({"reasoning_content": r}), None), false)),
    );
    frames.extend(
        reply
            .chunks
            .iter()
            .map(|c| (chunk(json!({"content": c}), None), false)),
    );
    if let Some(f) = reply.finish {
        frames.push((chunk(json!({}), Some(f)), true));
        frames.push((Bytes::from("data: [DONE]\n\n"), false));
    }
    if let Some(n) = reply.raw_split {
        // Re-cut the whole body into n-byte writes, ignoring frame and character boundaries.
        let body: Vec<u8> = frames.iter().flat_map(|(b, _)| b.to_vec()).collect();
        let last = frames.len();
        frames = body
            .chunks(n.max(1))
            .map(|c| (Bytes::copy_from_slice(c), false))
            .collect();
        if last > 0 && reply.finish.is_some() {
            if let Some(f) = frames.last_mut() {
                f.1 = true;
            }
        }
    }
    let delay = reply.delay;
    let first_delay = reply.first_delay;
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), Some(guard), true),
        move |(mut it, mut guard, first)| async move {
            let (frame, last) = it.next()?;
            if first && !first_delay.is_zero() {
                tokio::time::sleep(first_delay).await;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if last {
                guard = None;
            }
            Some((Ok::<_, std::io::Error>(frame), (it, guard, false)))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A port on which nothing listens.
/// Polls `/readyz` at `ops` until it answers 200, handing each not-ready body to `not_ready`
/// (which may assert on it); fails after 20 s.
pub async fn wait_ready(ops: std::net::SocketAddr, mut not_ready: impl FnMut(&str)) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = reqwest::get(format!("http://{ops}/readyz")).await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == 200 {
            return;
        }
        not_ready(&body);
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// The repository's model directory (`.ci/setup-models.sh` fills it).
pub fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".models")
}

/// Makes sure the embedding model and ONNX Runtime are set up (runs the set-up script once).
pub fn ensure_models() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = models_dir();
        if dir.join("all-MiniLM-L6-v2/model.onnx").exists()
            && dir.join("onnxruntime/libonnxruntime.so").exists()
        {
            return;
        }
        let status = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup-models.sh"))
            .status()
            .expect("run .ci/setup-models.sh");
        assert!(status.success(), ".ci/setup-models.sh failed");
    });
}

/// The real binary with a private data dir and the given model URL.
pub fn anchorbot(data_dir: &Path, url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_anchorbot"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ANCHORBOT_DATA_DIR", data_dir)
        .env("ANCHORBOT_REASONING_URL", url)
        .env("ANCHORBOT_REASONING_MODEL", "fake-model")
        .env("ANCHORBOT_VISION_URL", url)
        .env("ANCHORBOT_RETRY_BACKOFF_MS", "10")
        .env(
            "ANCHORBOT_DOCUMENTS_MODEL_DIR",
            models_dir().join("all-MiniLM-L6-v2"),
        )
        .env(
            "ANCHORBOT_DOCUMENTS_ONNXRUNTIME",
            models_dir().join("onnxruntime/libonnxruntime.so"),
        )
        .env("ANCHORBOT_DOCUMENTS_EMBED_THREADS", "1")
        .current_dir(data_dir.parent().unwrap())
        .kill_on_drop(true);
    cmd
}

/// The chunk count in an ingest summary (`…, 12 chunks.` or `…, 12 chunks; skipped …`).
pub fn chunk_count(summary: &str) -> Option<usize> {
    summary
        .split(';')
        .next()
        .unwrap_or(summary)
        .split(", ")
        .find_map(|p| {
            let p = p.trim().trim_end_matches('.');
            p.strip_suffix(" chunks").or(p.strip_suffix(" chunk"))
        })
        .and_then(|n| n.parse().ok())
}

/// What `/files` says in conversation `conv` of the store in `data` (through `anchorbot chat`).
pub async fn files(data: &Path, url: &str, conv: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut cmd = anchorbot(data, url);
    cmd.args(["chat", "--conversation", conv])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"/files\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("anchorbot chat did not end within 60 s")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary and returns (exit ok, stdout, stderr).
pub async fn run(cmd: tokio::process::Command) -> (bool, String, String) {
    run_for(cmd, Duration::from_secs(60)).await
}

/// Runs the binary and returns (exit ok, stdout, stderr); fails the test if it runs longer
/// than `guard` (a guard against hangs, not a timing assertion).
pub async fn run_for(mut cmd: tokio::process::Command, guard: Duration) -> (bool, String, String) {
    let out = tokio::time::timeout(guard, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("anchorbot did not finish within {guard:?}"))
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the recording platform saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A final reply: channel, text, state.
    Final(String, String, FinalState),
    /// A private answer: channel, text.
    Ephemeral(String, String),
}

/// A platform that records replies, for in-process tests of the real `App`.
#[derive(Default)]
pub struct RecordingPlatform {
    messages: Mutex<HashMap<String, (String, String)>>,
    last_in_channel: Mutex<HashMap<String, String>>,
    seq: AtomicUsize,
    /// Finals and ephemerals in the order they happened.
    pub records: Mutex<Vec<Record>>,
    /// Set when `status(Thinking)` was shown and not yet cleared, per channel.
    pub thinking: Mutex<HashMap<String, bool>>,
    /// Reasoning text offered to the adapter, per channel.
    pub reasoning: Mutex<HashMap<String, String>>,
}

impl RecordingPlatform {
    /// Final replies in `channel`, in order.
    pub fn finals(&self, channel: &str) -> Vec<String> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Record::Final(c, t, _) if c == channel => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Current texts of every message posted in `channel`, in posting order.
    pub fn messages_in(&self, channel: &str) -> Vec<String> {
        let m = self.messages.lock().unwrap();
        let mut v: Vec<(usize, String)> = m
            .iter()
            .filter(|(_, (c, _))| c == channel)
            .map(|(id, (_, t))| (id.parse().unwrap(), t.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// Everything recorded.
    pub fn all(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }
}

#[async_trait]
impl Platform for RecordingPlatform {
    fn limits(&self) -> Limits {
        Limits {
            max_message_chars: 2000,
            min_edit_interval: Duration::from_millis(5),
        }
    }

    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        let id = self.seq.fetch_add(1, Ordering::SeqCst).to_string();
        self.messages
            .lock()
            .unwrap()
            .insert(id.clone(), (to.channel.clone(), text.to_string()));
        self.last_in_channel
            .lock()
            .unwrap()
            .insert(to.channel.clone(), id.clone());
        Ok(MessageRef {
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let mut m = self.messages.lock().unwrap();
        let entry = m
            .get_mut(&message.id)
            .ok_or_else(|| PlatformError::Rejected("unknown message".into()))?;
        entry.1 = text.to_string();
        Ok(())
    }

    async fn ephemeral(
        &self,
        to: &ReplyTarget,
        _user: &Author,
        text: &str,
    ) -> Result<(), PlatformError> {
        self.records
            .lock()
            .unwrap()
            .push(Record::Ephemeral(to.channel.clone(), text.to_string()));
        Ok(())
    }

    async fn status(&self, to: &ReplyTarget, status: &Status) -> Result<(), PlatformError> {
        self.thinking
            .lock()
            .unwrap()
            .insert(to.channel.clone(), matches!(status, Status::Thinking));
        Ok(())
    }

    async fn reasoning(&self, to: &ReplyTarget, delta: &str) -> Result<(), PlatformError> {
        self.reasoning
            .lock()
            .unwrap()
            .entry(to.channel.clone())
            .or_default()
            .push_str(delta);
        Ok(())
    }

    async fn finished(
        &self,
        to: &ReplyTarget,
        state: &FinalState,
        _messages: &[MessageRef],
    ) -> Result<(), PlatformError> {
        let id = self
            .last_in_channel
            .lock()
            .unwrap()
            .get(&to.channel)
            .cloned();
        let text = id
            .and_then(|id| self.messages.lock().unwrap().get(&id).map(|m| m.1.clone()))
            .unwrap_or_default();
        self.records
            .lock()
            .unwrap()
            .push(Record::Final(to.channel.clone(), text, state.clone()));
        Ok(())
    }

    async fn fetch(&self, a: &Attachment, max: u64) -> Result<Vec<u8>, PlatformError> {
        let bytes =
            std::fs::read(&a.locator).map_err(|e| PlatformError::Rejected(e.to_string()))?;
        if bytes.len() as u64 > max {
            return Err(PlatformError::TooLarge {
                size: bytes.len() as u64,
                limit: max,
            });
        }
        Ok(bytes)
    }
}

/// An adapter that hands its sink to the test and runs until told to stop.
pub struct TestAdapter {
    platform: Arc<RecordingPlatform>,
    sink_tx: Option<oneshot::Sender<Arc<dyn EventSink>>>,
    stop: Arc<Notify>,
}

/// The test's handles on a running `App`.
pub struct Running {
    /// Submit events here.
    pub sink: Arc<dyn EventSink>,
    /// Replies land here.
    pub platform: Arc<RecordingPlatform>,
    /// Ends the adapter; the app then drains and returns.
    pub stop: Arc<Notify>,
    /// The app.
    pub app: running::RunningApp,
}

impl Running {
    /// Stops the adapter and waits for the app to drain and return.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        self.app.ended().await;
    }
}

/// Builds the real `App` from `settings` and runs it with a recording adapter.
pub async fn start_app(settings: anchorbot::Settings) -> Running {
    start_app_with(settings, None).await
}

/// The same, with a document retriever for the offline fallback.
pub async fn start_app_with(
    settings: anchorbot::Settings,
    retriever: Option<Arc<dyn anchorbot::retrieval::Retriever>>,
) -> Running {
    let platform = Arc::new(RecordingPlatform::default());
    let stop = Arc::new(Notify::new());
    let (tx, rx) = oneshot::channel();
    let adapter = TestAdapter {
        platform: platform.clone(),
        sink_tx: Some(tx),
        stop: stop.clone(),
    };
    let mut app = anchorbot::App::build(settings)
        .await
        .unwrap()
        .with_adapter(Box::new(adapter));
    if let Some(r) = retriever {
        app = app.with_retriever(r);
    }
    // Stopped by ending the adapter (`Running::shutdown`), not by the app's stop signal.
    let app = running::RunningApp::start(app);
    let sink = rx.await.unwrap();
    Running {
        sink,
        platform,
        stop,
        app,
    }
}

#[async_trait]
impl Adapter for TestAdapter {
    fn name(&self) -> &'static str {
        "test"
    }

    fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    async fn run(
        mut self: Box<Self>,
        sink: Arc<dyn EventSink>,
        _c: &'static [CommandSpec],
        _shutdown: anchorbot_platform::Shutdown,
    ) -> Result<(), PlatformError> {
        let _ = self.sink_tx.take().unwrap().send(sink);
        self.stop.notified().await;
        Ok(())
    }
}

/// Settings for a test: a private data dir and the given model URL.
pub fn settings(data_dir: &Path, url: &str) -> anchorbot::Settings {
    let mut s = anchorbot::Settings {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    s.reasoning.url = url.to_string();
    s.reasoning.model = "fake-model".into();
    s.vision.url = url.to_string();
    s.retry_backoff_ms = 10;
    s.documents.model_dir = models_dir().join("all-MiniLM-L6-v2");
    s.documents.onnxruntime = models_dir().join("onnxruntime/libonnxruntime.so");
    s.documents.embed_threads = Some(1);
    s
}

/// A message event with a file attached (read from `path` by the recording platform).
pub fn upload(
    channel: &str,
    event_id: &str,
    user: &str,
    text: &str,
    path: &Path,
) -> anchorbot_platform::InboundEvent {
    let mut ev = message(channel, event_id, user, text);
    if let anchorbot_platform::InboundEvent::Message(m) = &mut ev {
        m.attachments.push(Attachment {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            declared_mime: None,
            size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            locator: path.display().to_string(),
        });
    }
    ev
}

/// A message event from the test platform.
pub fn message(
    channel: &str,
    event_id: &str,
    user: &str,
    text: &str,
) -> anchorbot_platform::InboundEvent {
    let key = anchorbot_platform::ConversationKey::new("test", Some("W1"), channel, None).unwrap();
    anchorbot_platform::InboundEvent::Message(anchorbot_platform::IncomingMessage {
        key,
        event_id: event_id.to_string(),
        author: Author {
            id: format!("U-{user}"),
            display_name: user.to_string(),
        },
        text: text.to_string(),
        attachments: vec![],
        mentions_bot: true,
        from_bot: false,
        reply_to: ReplyTarget {
            channel: channel.to_string(),
            ..ReplyTarget::default()
        },
    })
}

/// Opens the store (and its documents) after an app in this process shut down, as a start of
/// the bot would: documents whose ingestion was interrupted are marked incomplete. sled's I/O
/// threads can hold the directory lock for a moment after the last handle is dropped, so a
/// `Locked` is retried for up to 10 s.
pub async fn reopen(dir: &Path) -> (anchorbot::store::Store, anchorbot::docs::DocStore) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let location = anchorbot::storage::Location::Sled(dir.to_path_buf());
    loop {
        match location.open().await {
            Ok(storage) => {
                let docs = anchorbot::docs::DocStore::new(storage.clone());
                docs.recover().await.expect("recovering the documents");
                return (anchorbot::store::Store::new(storage), docs);
            }
            Err(anchorbot::storage::StorageError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen the store: {e}"),
        }
    }
}

/// The conversation memory of the store in `dir`; see [`reopen`].
pub async fn reopen_store(dir: &Path) -> anchorbot::store::Store {
    reopen(dir).await.0
}

/// The sled backend of the store in `dir` itself, for tests that look at its trees on disk;
/// a `Locked` is retried for up to 10 s, as in [`reopen`].
pub fn reopen_sled(dir: &Path) -> anchorbot::storage::sled::SledStore {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match anchorbot::storage::sled::SledStore::open(dir) {
            Ok(s) => return s,
            Err(anchorbot::storage::StorageError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot reopen the sled store: {e}"),
        }
    }
}

/// The CPU model and core count, for benchmark reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}
