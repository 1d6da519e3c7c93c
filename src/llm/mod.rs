//! The LLM boundary: an OpenAI-compatible chat endpoint (vLLM, llama.cpp) streamed over SSE.
//! [`ChatBackend`] is the trait the engine uses; [`OpenAiEndpoint`] is the HTTP back-end.

mod client;
pub mod continuation;
pub mod embedded;
pub mod facts;
pub mod lang_filter;
pub mod pool;
pub mod prompt;
pub mod think;
pub mod tokens;
pub mod turn;

pub use client::{parse_chunk, OpenAiEndpoint};

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// Who speaks a chat message: a closed set, spelled as the OpenAI API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions and memory.
    System,
    /// A person's message.
    User,
    /// The model's answer.
    Assistant,
}

/// One chat message in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A chat completion request, independent of the endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// Output cap in tokens.
    pub max_tokens: usize,
    /// Sampling temperature; `None` leaves the server's default.
    pub temperature: Option<f32>,
    /// Resume the final (assistant) message instead of starting a new one: vLLM's
    /// `continue_final_message` with no generation prompt.
    pub continue_final: bool,
    /// Ask the chat template not to think (Qwen3 on vLLM:
    /// `chat_template_kwargs: {"enable_thinking": false}`); set only for servers that take it.
    pub thinking_off: bool,
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The output cap was hit.
    Length,
    /// Anything else the server reported.
    Other(String),
}

/// One item of a streamed completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// Answer text.
    Content(String),
    /// Reasoning text sent apart from the answer (`reasoning_content`).
    Reasoning(String),
    /// The end of the completion.
    Finish(FinishReason),
}

/// LLM failures, with the variants a caller acts on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmError {
    /// Nothing listens at the endpoint, or the connection failed.
    #[error("cannot connect to the model server at {url}: {reason}")]
    Unreachable {
        /// Endpoint base URL.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The server took too long.
    #[error("the model server at {url} did not answer within {secs} s ({phase})")]
    Timeout {
        /// Endpoint base URL.
        url: String,
        /// Which wait ran out.
        phase: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The server asked us to slow down.
    #[error("the model server is rate limiting; retry after {retry_after:?}")]
    RateLimited {
        /// Requested wait.
        retry_after: Duration,
    },
    /// The server answered with an error status.
    #[error("the model server answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The stream ended without a finish reason.
    #[error("the model server's stream broke off mid-answer: {0}")]
    StreamCut(String),
    /// The server sent something that is not the OpenAI format.
    #[error("the model server sent an unexpected response: {0}")]
    Protocol(String),
    /// The model file of the embedded model is missing or cannot be run.
    #[error("the embedded model {path} cannot be used: {reason}")]
    ModelFile {
        /// The GGUF file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Every endpoint of the role failed.
    #[error("all {} model servers failed: {}", failures.len(), failures.join("; "))]
    AllDown {
        /// Each endpoint's failure, in the order tried.
        failures: Vec<String>,
    },
}

impl LlmError {
    /// The reason as a chat user reads it: about "the reasoning model", never an endpoint URL
    /// or a server's error body (those stay in the log, through `Display`).
    pub fn user_reason(&self) -> String {
        match self {
            LlmError::Unreachable { .. } => "the reasoning model cannot be reached".into(),
            LlmError::Timeout { phase, secs, .. } => {
                format!("the reasoning model did not answer within {secs} s ({phase})")
            }
            LlmError::RateLimited { retry_after } => format!(
                "the reasoning model is busy; try again in {} s",
                retry_after.as_secs().max(1)
            ),
            LlmError::Status { status, .. } => {
                format!("the reasoning model's server answered with an error (HTTP {status})")
            }
            LlmError::StreamCut(_) => "the reasoning model's stream broke off mid-answer".into(),
            LlmError::Protocol(_) => "the reasoning model sent an unexpected response".into(),
            LlmError::ModelFile { .. } => "the embedded model is not installed or cannot be \
                read (run .ci/setup.sh, or set reasoning.url to a model server)"
                .into(),
            LlmError::AllDown { failures } => format!(
                "the reasoning model is unavailable ({} failed)",
                counted_servers(failures.len())
            ),
        }
    }

    /// True when the model could not be reached at all (as opposed to a bad answer).
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            LlmError::Unreachable { .. }
                | LlmError::Timeout { .. }
                | LlmError::AllDown { .. }
                | LlmError::ModelFile { .. }
        ) || matches!(self, LlmError::Status { status, .. } if *status >= 500)
    }
}

/// A completion run to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The content text (which may still hold a `<think>` block).
    pub content: String,
    /// The server sent reasoning apart from the content (`reasoning_content`).
    pub reasoning_apart: bool,
    /// Why generation stopped.
    pub finish: FinishReason,
}

fn counted_servers(n: usize) -> String {
    if n == 1 {
        "its one server".into()
    } else {
        format!("all {n} of its servers")
    }
}

/// A boxed stream of completion items.
pub type ItemStream = Pin<Box<dyn Stream<Item = Result<StreamItem, LlmError>> + Send>>;

/// A model served somewhere: the open set of back-ends.
#[async_trait]
pub trait ChatBackend: Send + Sync {
    /// Starts a streamed completion. The stream ends after a [`StreamItem::Finish`] or an error.
    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError>;

    /// Runs a completion to its end.
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let mut s = self.stream(request).await?;
        let mut done = Completion {
            content: String::new(),
            reasoning_apart: false,
            finish: FinishReason::Stop,
        };
        while let Some(item) = s.next().await {
            match item? {
                StreamItem::Content(c) => done.content.push_str(&c),
                StreamItem::Reasoning(_) => done.reasoning_apart = true,
                StreamItem::Finish(r) => {
                    done.finish = r;
                    return Ok(done);
                }
            }
        }
        Err(LlmError::StreamCut("no finish reason".into()))
    }

    /// What the servers report about themselves (context length, vLLM or not).
    async fn facts(&self) -> ServerFacts {
        ServerFacts::default()
    }

    /// Probes the back-end's endpoints and updates their health (for failover order).
    async fn health_check(&self) {}

    /// Each endpoint (or the embedded model) and whether it counts as healthy now, for
    /// readiness.
    fn health(&self) -> Vec<(String, bool)> {
        Vec::new()
    }

    /// Which model answers, as `/status` and `doctor` name it.
    fn describe(&self) -> String {
        "a model server".into()
    }

    /// Exact prompt tokens of a request, when the server can count them.
    async fn count_prompt(&self, _request: &ChatRequest) -> Option<usize> {
        None
    }
}

/// Models a server lists at `/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// Model id.
    pub id: String,
    /// Context length, when the server reports it (vLLM's `max_model_len`).
    pub max_model_len: Option<u64>,
    /// Who serves it (`"vllm"` for vLLM).
    pub owned_by: Option<String>,
}

/// What the servers behind a back-end can do, as they report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerFacts {
    /// The smallest context length reported.
    pub context_length: Option<u64>,
    /// Where `context_length` came from.
    pub context_source: facts::ContextSource,
    /// Every answering server is vLLM, so vLLM's extra fields (`chat_template_kwargs`) are
    /// understood.
    pub all_vllm: bool,
    /// Every answering server resumes a final assistant message itself (its wire form is the
    /// client's business), so a cut answer is continued in place rather than by instruction.
    pub native_resume: bool,
    /// The kind of server, when every answering one is the same kind.
    pub kind: Option<facts::ServerKind>,
    /// At least one server answered; facts from no answer are not worth remembering.
    pub reported: bool,
}
