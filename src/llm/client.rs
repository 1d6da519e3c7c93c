//! The HTTP back-end: an OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp, Ollama,
//! LM Studio) streamed over SSE, with its `/models` and `/tokenize` probes.

use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::facts::{self, ContextSource, EndpointFacts, ResumeWire, ServerKind};
use super::{
    ChatBackend, ChatRequest, FinishReason, ItemStream, LlmError, ServedModel, StreamItem,
};
use crate::settings::Endpoint;
use anchorbot_platform::sync;

/// An OpenAI-compatible HTTP endpoint.
pub struct OpenAiEndpoint {
    /// Connection settings.
    cfg: Endpoint,
    /// Shared HTTP client with the connect timeout applied.
    http: reqwest::Client,
    /// Whether the server offers vLLM's `/tokenize`: 0 unknown, 1 yes, 2 no.
    tokenize: std::sync::atomic::AtomicU8,
    /// The kind of server, once a probe has told.
    kind: std::sync::Mutex<Option<ServerKind>>,
}

impl std::fmt::Debug for OpenAiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEndpoint")
            .field("url", &self.cfg.url)
            .field("model", &self.cfg.model)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    message: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
}

impl OpenAiEndpoint {
    /// Builds the client for `cfg`.
    pub fn new(cfg: Endpoint) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .build()
            .expect("a plain reqwest client builds");
        Self {
            cfg,
            http,
            tokenize: std::sync::atomic::AtomicU8::new(0),
            kind: std::sync::Mutex::new(None),
        }
    }

    /// The kind of server found by the last [`OpenAiEndpoint::probe`], if any.
    pub fn kind(&self) -> Option<ServerKind> {
        *sync::lock(&self.kind)
    }

    /// How this endpoint resumes a final assistant message: its `continuation` setting, and
    /// for `auto` the kind of server a probe found (unknown: not natively).
    pub fn resume_wire(&self) -> ResumeWire {
        ResumeWire::for_mode(self.cfg.continuation, self.kind())
    }

    /// Asks the server what it is and serves: `/v1/models`, then the routes its kind
    /// documents for the context length it serves (see [`facts`]). Remembers the kind for the
    /// wire form of continuations. Fails only when `/v1/models` fails.
    pub async fn probe(&self) -> Result<EndpointFacts, LlmError> {
        let models = self.models().await?;
        let served_id = models
            .iter()
            .find(|m| m.id == self.cfg.model)
            .or(models.first())
            .map(|m| m.id.clone())
            .unwrap_or_else(|| self.cfg.model.clone());
        let kind = match facts::kind_from_models(&models) {
            Some(k) => k,
            // Ollama's `owned_by` is the model's namespace ("library"), so it is told by its
            // own `GET /api/version` (docs/api.md, "Version").
            None if self
                .get_root("api/version")
                .await
                .is_some_and(|v| v.get("version").is_some()) =>
            {
                ServerKind::Ollama
            }
            None => ServerKind::Unknown,
        };
        let max_model_len = models
            .iter()
            .find(|m| m.id == served_id)
            .and_then(|m| m.max_model_len);
        let (context_length, context_source) = match kind {
            ServerKind::Vllm | ServerKind::Sglang => (max_model_len, ContextSource::MaxModelLen),
            ServerKind::LlamaServer => (
                self.get_root("props")
                    .await
                    .as_ref()
                    .and_then(facts::props_n_ctx),
                ContextSource::Props,
            ),
            ServerKind::Ollama => self.ollama_context(&served_id).await,
            ServerKind::LmStudio => (
                self.get_root(&format!("api/v0/models/{served_id}"))
                    .await
                    .as_ref()
                    .and_then(facts::lmstudio_loaded_context),
                ContextSource::LmStudioLoaded,
            ),
            ServerKind::LlamaCppPython | ServerKind::Unknown => {
                (max_model_len, ContextSource::MaxModelLen)
            }
        };
        let context_source = if context_length.is_some() {
            context_source
        } else {
            ContextSource::Setting
        };
        *sync::lock(&self.kind) = Some(kind);
        Ok(EndpointFacts {
            models,
            kind,
            context_length,
            context_source,
        })
    }

    /// Ollama's context for `model`: its `num_ctx` parameter (`POST /api/show`), else what
    /// the loaded model got (`GET /api/ps`), else Ollama's smallest default. Never
    /// `model_info.*.context_length`, the trained maximum: Ollama cuts longer prompts
    /// silently to the context it actually runs.
    async fn ollama_context(&self, model: &str) -> (Option<u64>, ContextSource) {
        let show = self
            .post_root("api/show", serde_json::json!({ "model": model }))
            .await;
        if let Some(n) = show.as_ref().and_then(facts::ollama_num_ctx) {
            return (Some(n), ContextSource::OllamaNumCtx);
        }
        let ps = self.get_root("api/ps").await;
        if let Some(n) = ps
            .as_ref()
            .and_then(|ps| facts::ollama_loaded_context(ps, model))
        {
            return (Some(n), ContextSource::OllamaLoaded);
        }
        (
            Some(facts::OLLAMA_DEFAULT_CONTEXT),
            ContextSource::OllamaDefault,
        )
    }

    /// `GET {root}/{path}` as JSON, `None` on any failure (the route is optional).
    async fn get_root(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("{}/{path}", facts::root_of(&self.cfg.url));
        self.root_json(self.http.get(url)).await
    }

    /// `POST {root}/{path}` with a JSON body, `None` on any failure (the route is optional).
    async fn post_root(&self, path: &str, body: serde_json::Value) -> Option<serde_json::Value> {
        let url = format!("{}/{path}", facts::root_of(&self.cfg.url));
        self.root_json(self.http.post(url).json(&body)).await
    }

    /// Sends a probe of an optional route and reads its JSON; `None` on any failure.
    async fn root_json(&self, rb: reqwest::RequestBuilder) -> Option<serde_json::Value> {
        let resp = self
            .authorize(rb)
            .timeout(self.probe_timeout())
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    fn probe_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.connect_timeout_secs.max(1) * 2)
    }

    /// The endpoint's base URL.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    /// The model requested from this endpoint.
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// Exact prompt tokens of `request` with the server's chat template, from vLLM's
    /// `/tokenize`. `None` if the server does not offer it (remembered) or does not answer.
    pub async fn tokenize_chat(&self, request: &ChatRequest) -> Option<usize> {
        use std::sync::atomic::Ordering;
        if self.tokenize.load(Ordering::Relaxed) == 2 {
            return None;
        }
        // vLLM counts chat prompts at `/tokenize`, and a server of unknown kind may be
        // vLLM-compatible; llama-server renders the prompt at `/apply-template` and counts text
        // at its own `/tokenize`. Other kinds have no way to count a chat prompt.
        let answer = match self.kind() {
            Some(ServerKind::LlamaServer) => self.llama_server_count(request).await,
            Some(ServerKind::Vllm | ServerKind::Unknown) | None => self.vllm_count(request).await,
            Some(_) => return None,
        };
        // A server that answered without a count does not offer one (remembered); one that
        // did not answer may next time.
        let count = answer.ok()?;
        self.tokenize
            .store(if count.is_some() { 1 } else { 2 }, Ordering::Relaxed);
        count
    }

    /// vLLM's `POST /tokenize` with the chat messages: `Err` when the server did not answer.
    async fn vllm_count(&self, request: &ChatRequest) -> Result<Option<usize>, ()> {
        let mut body = serde_json::json!({
            "model": self.cfg.model,
            "messages": request.messages,
            "add_generation_prompt": !request.continue_final,
        });
        if request.continue_final && self.resume_wire() == ResumeWire::VllmFlags {
            body["continue_final_message"] = serde_json::json!(true);
        }
        let url = format!("{}/tokenize", facts::root_of(&self.cfg.url));
        let resp = self
            .authorize(self.http.post(url))
            .json(&body)
            .timeout(self.probe_timeout())
            .send()
            .await
            .map_err(|_| ())?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        Ok(resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("count").and_then(|c| c.as_u64()))
            .map(|c| c as usize))
    }

    /// llama-server: the prompt its chat template renders (`POST /apply-template`), counted
    /// the way a chat completion tokenizes it (`POST /tokenize` with special tokens added and
    /// parsed); tools/server/README.md documents both routes.
    async fn llama_server_count(&self, request: &ChatRequest) -> Result<Option<usize>, ()> {
        let rendered = self
            .post_root(
                "apply-template",
                serde_json::json!({ "messages": request.messages }),
            )
            .await
            .ok_or(())?;
        let Some(prompt) = rendered.get("prompt").and_then(|p| p.as_str()) else {
            return Ok(None);
        };
        let tokens = self
            .post_root(
                "tokenize",
                serde_json::json!({ "content": prompt, "add_special": true, "parse_special": true }),
            )
            .await
            .ok_or(())?;
        Ok(tokens
            .get("tokens")
            .and_then(|t| t.as_array())
            .map(Vec::len))
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{}", self.cfg.url.trim_end_matches('/'), path)
    }

    fn authorize(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.api_key {
            Some(k) => rb.bearer_auth(k.expose_secret()),
            None => rb,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                url: self.cfg.url.clone(),
                phase: "connect",
                secs: self.cfg.connect_timeout_secs,
            }
        } else {
            // The innermost cause is the useful part ("Connection refused"); reqwest's own
            // text repeats the URL. Neither ever holds the Authorization header.
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason = s.to_string();
                src = s.source();
            }
            LlmError::Unreachable {
                url: self.cfg.url.clone(),
                reason,
            }
        }
    }

    /// Lists the models the server serves.
    pub async fn models(&self) -> Result<Vec<ServedModel>, LlmError> {
        let resp = self
            .authorize(self.http.get(self.endpoint("models")))
            .timeout(Duration::from_secs(
                self.cfg.connect_timeout_secs.max(1) * 2,
            ))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let body: serde_json::Value = if status.is_success() {
            resp.json()
                .await
                .map_err(|e| LlmError::Protocol(e.to_string()))?
        } else {
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect(),
            });
        };
        let data = body
            .get("data")
            .and_then(|d| d.as_array())
            .ok_or_else(|| LlmError::Protocol("`/models` has no `data` list".into()))?;
        Ok(data
            .iter()
            .filter_map(|m| {
                Some(ServedModel {
                    id: m.get("id")?.as_str()?.to_string(),
                    max_model_len: m.get("max_model_len").and_then(|v| v.as_u64()),
                    owned_by: m
                        .get("owned_by")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                })
            })
            .collect())
    }
}

/// Parses one SSE `data:` payload into stream items.
pub fn parse_chunk(data: &str) -> Result<Vec<StreamItem>, LlmError> {
    let chunk: Chunk = serde_json::from_str(data)
        .map_err(|e| LlmError::Protocol(format!("bad chunk {:?}: {e}", truncate(data, 200))))?;
    let mut items = Vec::new();
    for choice in chunk.choices {
        if let Some(d) = choice.delta.or(choice.message) {
            if let Some(r) = d
                .reasoning_content
                .or(d.reasoning)
                .filter(|r| !r.is_empty())
            {
                items.push(StreamItem::Reasoning(r));
            }
            if let Some(c) = d.content.filter(|c| !c.is_empty()) {
                items.push(StreamItem::Content(c));
            }
        }
        if let Some(r) = choice.finish_reason {
            items.push(StreamItem::Finish(match r.as_str() {
                "stop" | "eos" | "stop_sequence" => FinishReason::Stop,
                "length" => FinishReason::Length,
                _ => FinishReason::Other(r),
            }));
        }
    }
    Ok(items)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[async_trait]
impl ChatBackend for OpenAiEndpoint {
    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        let mut body = serde_json::json!({
            "model": self.cfg.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "stream": true,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = serde_json::json!(t);
        }
        // A request resuming its final assistant message goes out in this server's form:
        // vLLM's flags, or simply the messages as they are (llama-server, Ollama). A server
        // that cannot resume gets the plain messages too: unknown fields may be rejected.
        if request.continue_final && self.resume_wire() == ResumeWire::VllmFlags {
            body["continue_final_message"] = serde_json::json!(true);
            body["add_generation_prompt"] = serde_json::json!(false);
        }
        if request.thinking_off {
            body["chat_template_kwargs"] = serde_json::json!({ "enable_thinking": false });
        }
        let first_token = Duration::from_secs(self.cfg.first_token_timeout_secs.max(1));
        let send = self
            .authorize(self.http.post(self.endpoint("chat/completions")))
            .json(&body)
            .send();
        let resp = tokio::time::timeout(first_token, send)
            .await
            .map_err(|_| LlmError::Timeout {
                url: self.cfg.url.clone(),
                phase: "waiting for the response",
                secs: first_token.as_secs(),
            })?
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            return Err(LlmError::RateLimited {
                retry_after: Duration::from_secs(retry_after),
            });
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: truncate(&text, 300),
            });
        }
        let url = self.cfg.url.clone();
        let idle = Duration::from_secs(self.cfg.idle_timeout_secs.max(1));
        let events = resp.bytes_stream().eventsource();
        let stream = async_stream_items(events, url, first_token, idle);
        Ok(Box::pin(stream))
    }
}

/// Turns SSE events into items, applying the first-token and between-chunk timeouts, and
/// reporting a stream that ends without a finish reason as cut.
fn async_stream_items<S, E>(
    events: S,
    url: String,
    first_token: Duration,
    idle: Duration,
) -> impl Stream<Item = Result<StreamItem, LlmError>> + Send
where
    S: Stream<Item = Result<eventsource_stream::Event, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send,
{
    struct St<S> {
        events: S,
        pending: std::collections::VecDeque<StreamItem>,
        started: bool,
        done: bool,
    }
    let st = St {
        events,
        pending: Default::default(),
        started: false,
        done: false,
    };
    futures_util::stream::unfold(st, move |mut st| {
        let url = url.clone();
        async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    if matches!(item, StreamItem::Finish(_)) {
                        st.done = true;
                        st.pending.clear();
                    }
                    return Some((Ok(item), st));
                }
                if st.done {
                    return None;
                }
                let (limit, phase) = if st.started {
                    (idle, "between tokens")
                } else {
                    (first_token, "waiting for the first token")
                };
                let next = match tokio::time::timeout(limit, st.events.next()).await {
                    Err(_) => {
                        st.done = true;
                        return Some((
                            Err(LlmError::Timeout {
                                url,
                                phase,
                                secs: limit.as_secs(),
                            }),
                            st,
                        ));
                    }
                    Ok(n) => n,
                };
                match next {
                    None => {
                        st.done = true;
                        return Some((
                            Err(LlmError::StreamCut("the connection closed".into())),
                            st,
                        ));
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(LlmError::StreamCut(e.to_string())), st));
                    }
                    Some(Ok(ev)) => {
                        let data = ev.data.trim();
                        if data.is_empty() {
                            continue;
                        }
                        if data == "[DONE]" {
                            st.done = true;
                            return Some((
                                Err(LlmError::StreamCut("[DONE] without a finish reason".into())),
                                st,
                            ));
                        }
                        st.started = true;
                        match parse_chunk(data) {
                            Ok(items) => st.pending.extend(items),
                            Err(e) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_reasoning_and_finish() {
        let items = parse_chunk(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi","reasoning_content":"hmm"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            items,
            vec![
                StreamItem::Reasoning("hmm".into()),
                StreamItem::Content("Hi".into())
            ]
        );
        let items = parse_chunk(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#)
            .unwrap();
        assert_eq!(items, vec![StreamItem::Finish(FinishReason::Length)]);
        assert!(parse_chunk("not json").is_err());
    }
}
