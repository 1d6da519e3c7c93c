//! What each model server is and serves: its kind (vLLM, SGLang, llama.cpp's `llama-server`,
//! llama-cpp-python, Ollama, LM Studio), the context length it actually serves and where that
//! number came from, and how it resumes a final assistant message. Detection reads only what
//! each server documents; [`FactsCache`] is the one cache of these facts, shared by the engine
//! (budgets, continuation) and the reranker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ChatBackend, ServedModel, ServerFacts};
use crate::settings::ContinuationMode;
use anchorbot_platform::sync;

/// How long what the servers report about themselves is trusted before a refresh.
pub const FACTS_TTL: Duration = Duration::from_secs(300);

/// Ollama's context when neither the model's `num_ctx` nor a loaded model says otherwise: the
/// smallest of its VRAM-based defaults (docs/context-length.mdx: "< 24 GiB VRAM: 4k context").
pub const OLLAMA_DEFAULT_CONTEXT: u64 = 4096;

/// Which server answers at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// vLLM: `/v1/models` entries are `owned_by: "vllm"` with `max_model_len`.
    Vllm,
    /// SGLang: `owned_by: "sglang"` (its `ModelCard` default), with `max_model_len`.
    Sglang,
    /// llama.cpp's `llama-server`: `owned_by: "llamacpp"`, `GET /props`.
    LlamaServer,
    /// llama-cpp-python's server (`python -m llama_cpp.server`): `owned_by: "me"`.
    LlamaCppPython,
    /// Ollama's OpenAI endpoint: `GET /api/version` answers.
    Ollama,
    /// LM Studio: `owned_by: "organization_owner"`, `GET /api/v0/models/{id}`.
    LmStudio,
    /// An OpenAI-compatible server not recognised.
    Unknown,
}

impl ServerKind {
    /// The name a user reads.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Vllm => "vLLM",
            ServerKind::Sglang => "SGLang",
            ServerKind::LlamaServer => "llama.cpp llama-server",
            ServerKind::LlamaCppPython => "llama-cpp-python",
            ServerKind::Ollama => "Ollama",
            ServerKind::LmStudio => "LM Studio",
            ServerKind::Unknown => "an OpenAI-compatible server",
        }
    }

    /// Whether the server loads exactly one model and answers whatever model name is asked
    /// (llama-server without router mode; llama-cpp-python falls back to its default model).
    pub fn answers_any_name(self) -> bool {
        matches!(self, ServerKind::LlamaServer | ServerKind::LlamaCppPython)
    }

    /// How `auto` resumes a final assistant message on this kind of server.
    pub fn auto_resume(self) -> ResumeWire {
        match self {
            // vLLM documents `continue_final_message` / `add_generation_prompt`; SGLang added the
            // same parameter (sgl-project/sglang PR #4226, "Prefill assistant response").
            ServerKind::Vllm | ServerKind::Sglang => ResumeWire::VllmFlags,
            // llama-server: `--prefill-assistant` is on by default ("if the last message is an
            // assistant message", tools/server/README.md). Ollama: a final assistant message is
            // continued (ollama/ollama issue #6778, and #5890 fixed the regression in 0.2.8).
            ServerKind::LlamaServer | ServerKind::Ollama => ResumeWire::FinalAssistant,
            // llama-cpp-python's chat formatters render with `add_generation_prompt=True`
            // (llama_cpp/llama_chat_format.py), so a final assistant message gets a fresh
            // answer after it; LM Studio documents no resume.
            ServerKind::LlamaCppPython | ServerKind::LmStudio | ServerKind::Unknown => {
                ResumeWire::None
            }
        }
    }
}

/// How a request resumes a final assistant message on one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeWire {
    /// vLLM's `continue_final_message: true, add_generation_prompt: false`.
    VllmFlags,
    /// The request simply ends with the assistant message (llama-server, Ollama).
    FinalAssistant,
    /// The server cannot resume: the turn asks for the rest in a user message.
    None,
}

impl ResumeWire {
    /// The wire form for `mode` on a server of `kind` (`None` when not known yet).
    pub fn for_mode(mode: ContinuationMode, kind: Option<ServerKind>) -> Self {
        match mode {
            ContinuationMode::Prefill => ResumeWire::VllmFlags,
            ContinuationMode::Resume => ResumeWire::FinalAssistant,
            ContinuationMode::Instruction => ResumeWire::None,
            ContinuationMode::Auto => kind.map_or(ResumeWire::None, ServerKind::auto_resume),
        }
    }

    /// Whether the server resumes the message itself.
    pub fn is_native(self) -> bool {
        self != ResumeWire::None
    }
}

/// Where a context length came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextSource {
    /// Nothing reported it: the settings' `max_input_tokens + max_output_tokens` apply.
    #[default]
    Setting,
    /// `max_model_len` in `/v1/models` (vLLM, SGLang).
    MaxModelLen,
    /// llama-server's `GET /props` (`default_generation_settings.n_ctx`).
    Props,
    /// The Ollama model's `num_ctx` parameter (`POST /api/show`).
    OllamaNumCtx,
    /// The context Ollama allocated to the loaded model (`GET /api/ps`).
    OllamaLoaded,
    /// Ollama's smallest default context, as nothing set `num_ctx`.
    OllamaDefault,
    /// LM Studio's loaded context (`GET /api/v0/models/{id}`, `loaded_context_length`).
    LmStudioLoaded,
    /// The embedded model's own context length.
    Embedded,
}

impl ContextSource {
    /// Where the number came from, as a user reads it.
    pub fn describe(self) -> &'static str {
        match self {
            ContextSource::Setting => "not reported; the settings apply",
            ContextSource::MaxModelLen => "max_model_len in /v1/models",
            ContextSource::Props => "n_ctx in /props",
            ContextSource::OllamaNumCtx => "the model's num_ctx in /api/show",
            ContextSource::OllamaLoaded => "context_length of the loaded model in /api/ps",
            ContextSource::OllamaDefault => "Ollama's default (no num_ctx set)",
            ContextSource::LmStudioLoaded => "loaded_context_length in /api/v0/models",
            ContextSource::Embedded => "the model file",
        }
    }
}

/// What one endpoint is and serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFacts {
    /// The models `/v1/models` lists.
    pub models: Vec<ServedModel>,
    /// Which server it is.
    pub kind: ServerKind,
    /// The context length it serves the configured model with, when it says.
    pub context_length: Option<u64>,
    /// Where `context_length` came from.
    pub context_source: ContextSource,
}

impl EndpointFacts {
    /// The listed model that answers for `configured`: the same id, else the first one.
    pub fn served<'a>(&'a self, configured: &str) -> Option<&'a ServedModel> {
        self.models
            .iter()
            .find(|m| m.id == configured)
            .or(self.models.first())
    }
}

/// The server's root URL (the base URL without its `/v1`), where the non-OpenAI routes live.
pub fn root_of(base: &str) -> &str {
    base.trim_end_matches('/').trim_end_matches("/v1")
}

/// The kind `/v1/models` names through `owned_by`, when it does.
pub fn kind_from_models(models: &[ServedModel]) -> Option<ServerKind> {
    models.iter().find_map(|m| match m.owned_by.as_deref()? {
        // vLLM: vllm/entrypoints/openai/protocol.py `ModelCard.owned_by = "vllm"`.
        "vllm" => Some(ServerKind::Vllm),
        // SGLang: sglang/srt/entrypoints/openai/protocol.py `ModelCard.owned_by = "sglang"`.
        "sglang" => Some(ServerKind::Sglang),
        // llama-server: tools/server/README.md, `GET /v1/models` example.
        "llamacpp" => Some(ServerKind::LlamaServer),
        // llama-cpp-python: llama_cpp/server/app.py `get_models` answers `"owned_by": "me"`.
        "me" => Some(ServerKind::LlamaCppPython),
        // LM Studio's OpenAI endpoint (lmstudio.ai/docs, `GET /v1/models` example).
        "organization_owner" => Some(ServerKind::LmStudio),
        _ => None,
    })
}

/// `n_ctx` from llama-server's `/props`: `default_generation_settings.n_ctx` (the documented
/// place, tools/server/README.md), or a top-level `n_ctx` as some builds also send.
pub fn props_n_ctx(props: &Value) -> Option<u64> {
    props
        .pointer("/default_generation_settings/n_ctx")
        .or_else(|| props.get("n_ctx"))
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
}

/// `num_ctx` from Ollama's `/api/show` `parameters`, a Modelfile-style text of
/// `name value` lines (docs/api.md, "Show Model Information").
pub fn ollama_num_ctx(show: &Value) -> Option<u64> {
    show.get("parameters")?
        .as_str()?
        .lines()
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next()? == "num_ctx").then(|| parts.next()?.parse().ok())?
        })
        .filter(|n: &u64| *n > 0)
}

/// The context Ollama allocated to `model`, from `/api/ps` (`models[].context_length`).
pub fn ollama_loaded_context(ps: &Value, model: &str) -> Option<u64> {
    ps.get("models")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("name").and_then(Value::as_str) == Some(model)
                || m.get("model").and_then(Value::as_str) == Some(model)
        })?
        .get("context_length")?
        .as_u64()
        .filter(|n| *n > 0)
}

/// The context LM Studio loaded `model` with (`loaded_context_length` in
/// `/api/v0/models/{id}`, present while the model is loaded).
pub fn lmstudio_loaded_context(info: &Value) -> Option<u64> {
    info.get("loaded_context_length")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
}

/// The facts of the reasoning servers, shared by every conversation and the reranker. Reads
/// never wait on a probe once something is cached: a stale value is used while one background
/// refresh runs, and only the first read, with nothing cached, asks the servers itself. Facts
/// from a round where no server answered are not kept.
pub struct FactsCache {
    /// The back-end asked.
    llm: Arc<dyn ChatBackend>,
    /// The facts and when they were read; only facts some server actually reported.
    cached: RwLock<Option<(ServerFacts, Instant)>>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// How long facts are trusted.
    ttl: Duration,
}

impl std::fmt::Debug for FactsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactsCache")
            .field("cached", &self.peek())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl FactsCache {
    /// A cache over `llm` trusting facts for [`FACTS_TTL`].
    pub fn new(llm: Arc<dyn ChatBackend>) -> Arc<Self> {
        Self::with_ttl(llm, FACTS_TTL)
    }

    /// A cache over `llm` trusting facts for `ttl`.
    pub fn with_ttl(llm: Arc<dyn ChatBackend>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            llm,
            cached: RwLock::new(None),
            refreshing: AtomicBool::new(false),
            ttl,
        })
    }

    /// The cached facts and when they were read, without asking anyone.
    pub fn peek(&self) -> Option<(ServerFacts, Instant)> {
        *sync::read(&self.cached)
    }

    /// Asks the servers now and caches what they report. The pool skips endpoints that are
    /// streaming, and a round where no server answered keeps the previous facts.
    pub async fn refresh(&self) -> ServerFacts {
        let facts = self.llm.facts().await;
        if facts.reported {
            *sync::write(&self.cached) = Some((facts, Instant::now()));
        }
        facts
    }

    /// The facts: fresh ones from the cache, stale ones while one background refresh runs,
    /// or, with nothing cached, asked for now. No lock is held while a server is asked.
    pub async fn get(self: &Arc<Self>) -> ServerFacts {
        match self.peek() {
            Some((facts, at)) if at.elapsed() < self.ttl => facts,
            Some((facts, _)) => {
                if !self.refreshing.swap(true, Ordering::SeqCst) {
                    let cache = self.clone();
                    tokio::spawn(async move {
                        cache.refresh().await;
                        cache.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                facts
            }
            None => self.refresh().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatRequest, ItemStream, LlmError};
    use std::sync::atomic::AtomicUsize;

    fn model(id: &str, owned_by: &str) -> ServedModel {
        ServedModel {
            id: id.into(),
            max_model_len: None,
            owned_by: Some(owned_by.into()),
        }
    }

    #[test]
    fn kinds_follow_owned_by() {
        for (owner, kind) in [
            ("vllm", Some(ServerKind::Vllm)),
            ("sglang", Some(ServerKind::Sglang)),
            ("llamacpp", Some(ServerKind::LlamaServer)),
            ("me", Some(ServerKind::LlamaCppPython)),
            ("organization_owner", Some(ServerKind::LmStudio)),
            ("library", None),
        ] {
            assert_eq!(kind_from_models(&[model("m", owner)]), kind, "{owner}");
        }
    }

    #[test]
    fn context_readers_take_the_served_value_not_the_trained_one() {
        let props = serde_json::json!({"default_generation_settings": {"n_ctx": 4096}});
        assert_eq!(props_n_ctx(&props), Some(4096));
        let show = serde_json::json!({
            "parameters": "stop \"<|im_end|>\"\nnum_ctx                        8192",
            "model_info": {"qwen2.context_length": 32768}
        });
        assert_eq!(ollama_num_ctx(&show), Some(8192));
        let unset = serde_json::json!({"parameters": "stop \"<|im_end|>\"",
            "model_info": {"qwen2.context_length": 32768}});
        assert_eq!(ollama_num_ctx(&unset), None);
        let ps = serde_json::json!({"models": [{"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", "context_length": 4096}]});
        assert_eq!(ollama_loaded_context(&ps, "qwen2.5:0.5b"), Some(4096));
        assert_eq!(ollama_loaded_context(&ps, "other"), None);
    }

    #[test]
    fn auto_resume_per_kind_and_explicit_modes() {
        use ContinuationMode::*;
        assert_eq!(
            ResumeWire::for_mode(Auto, Some(ServerKind::Vllm)),
            ResumeWire::VllmFlags
        );
        assert_eq!(
            ResumeWire::for_mode(Auto, Some(ServerKind::Ollama)),
            ResumeWire::FinalAssistant
        );
        assert_eq!(
            ResumeWire::for_mode(Auto, Some(ServerKind::LlamaCppPython)),
            ResumeWire::None
        );
        assert_eq!(ResumeWire::for_mode(Auto, None), ResumeWire::None);
        assert_eq!(
            ResumeWire::for_mode(Resume, Some(ServerKind::Unknown)),
            ResumeWire::FinalAssistant
        );
        assert_eq!(
            ResumeWire::for_mode(Instruction, Some(ServerKind::Vllm)),
            ResumeWire::None
        );
    }

    /// Counts `facts()` calls; reports only when `answer` is set.
    struct Counting {
        calls: AtomicUsize,
        answer: AtomicBool,
    }

    #[async_trait::async_trait]
    impl ChatBackend for Counting {
        async fn stream(&self, _: &ChatRequest) -> Result<ItemStream, LlmError> {
            Err(LlmError::Protocol("not used".into()))
        }
        async fn facts(&self) -> ServerFacts {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as u64;
            ServerFacts {
                context_length: Some(1000 + n),
                reported: self.answer.load(Ordering::SeqCst),
                ..ServerFacts::default()
            }
        }
    }

    #[tokio::test]
    async fn unanswered_rounds_are_not_kept_and_stale_facts_refresh_in_the_background() {
        let llm = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: AtomicBool::new(false),
        });
        let cache = FactsCache::with_ttl(llm.clone(), Duration::from_millis(50));
        assert!(!cache.get().await.reported);
        assert!(cache.peek().is_none(), "facts from no answer are kept");
        llm.answer.store(true, Ordering::SeqCst);
        let first = cache.get().await;
        assert_eq!(first.context_length, Some(1001));
        assert_eq!(cache.get().await, first, "fresh facts are asked again");
        assert_eq!(llm.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Stale: served as they are while one refresh runs behind.
        assert_eq!(cache.get().await, first);
        for _ in 0..100 {
            if cache.peek().is_some_and(|(f, _)| f != first) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.get().await.context_length, Some(1002));
        assert_eq!(llm.calls.load(Ordering::SeqCst), 3);
    }
}
