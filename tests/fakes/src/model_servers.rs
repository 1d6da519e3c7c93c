//! Fakes of the model servers a team may already run, each following what that server
//! documents: vLLM, SGLang, llama.cpp's `llama-server`, llama-cpp-python's server, Ollama's
//! OpenAI endpoint and LM Studio. Each answers `/v1/models` the way the real one does, offers
//! its own extra routes only (`/tokenize`, `/props`, `/apply-template`, `/api/show`, `/api/ps`,
//! `/api/version`, `/api/v0/models/{id}`), streams chat completions as SSE with that server's
//! reasoning field, and records every request.
//!
//! The "model" behind each fake writes one fixed answer, one word per token, and stops with
//! `finish_reason: "length"` at `max_tokens`. A request whose last message is the assistant's
//! is resumed where that message ends on servers that resume (vLLM and SGLang with
//! `continue_final_message`, llama-server, Ollama); the others add a generation prompt and the
//! model starts its answer over, as a small model does. A request ending in a user message
//! after a partial answer (the instruction form) gets the rest of the answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Which server a fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// vLLM's OpenAI server.
    Vllm,
    /// SGLang.
    Sglang,
    /// llama.cpp's `llama-server`.
    LlamaServer,
    /// llama-cpp-python's `python -m llama_cpp.server`.
    LlamaCppPython,
    /// Ollama's OpenAI-compatible endpoint.
    Ollama,
    /// LM Studio's OpenAI-compatible endpoint.
    LmStudio,
}

/// How a fake is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The server.
    pub kind: Kind,
    /// The model id `/v1/models` lists.
    pub model: String,
    /// The answer the model writes.
    pub answer: String,
    /// Reasoning streamed apart before the answer, in the server's reasoning field.
    pub reasoning: Option<String>,
    /// The context length served (vLLM/SGLang `max_model_len`, llama-server `n_ctx`, LM
    /// Studio's loaded context, the Ollama model's `num_ctx` when set).
    pub context: Option<u64>,
    /// Ollama: the context of the loaded model in `/api/ps` (none: no model loaded).
    pub ollama_loaded: Option<u64>,
}

impl Setup {
    /// A fake of `kind` serving `model` that answers `answer`.
    pub fn new(kind: Kind, model: &str, answer: &str) -> Self {
        Self {
            kind,
            model: model.into(),
            answer: answer.into(),
            reasoning: None,
            context: None,
            ollama_loaded: None,
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method and path, e.g. `POST /v1/chat/completions`.
    pub route: String,
    /// The JSON body (`null` for a GET).
    pub body: Value,
}

struct Shared {
    setup: Setup,
    requests: Mutex<Vec<Recorded>>,
}

/// A running fake model server on loopback.
pub struct ModelServer {
    /// Base URL including `/v1`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    /// Starts the fake on a free loopback port.
    pub async fn start(setup: Setup) -> Self {
        let kind = setup.kind;
        let shared = Arc::new(Shared {
            setup,
            requests: Mutex::new(Vec::new()),
        });
        let mut app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat));
        app = match kind {
            // vLLM: `POST /tokenize` takes chat messages and answers `count`.
            Kind::Vllm => app.route("/tokenize", post(vllm_tokenize)),
            Kind::Sglang => app.route("/get_model_info", get(sglang_model_info)),
            // llama-server: `GET /props`, `POST /tokenize` with `content`.
            Kind::LlamaServer => app
                .route("/props", get(llama_props))
                .route("/apply-template", post(llama_apply_template))
                .route("/tokenize", post(llama_tokenize)),
            Kind::LlamaCppPython => app.route("/extras/tokenize", post(llama_tokenize)),
            Kind::Ollama => app
                .route("/api/version", get(ollama_version))
                .route("/api/show", post(ollama_show))
                .route("/api/ps", get(ollama_ps)),
            Kind::LmStudio => app.route("/api/v0/models/{id}", get(lmstudio_model)),
        };
        let app = app.fallback(not_found).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/v1"),
            shared,
            task,
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// The bodies of the chat completion requests so far.
    pub fn chats(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.route == "POST /v1/chat/completions")
            .map(|r| r.body)
            .collect()
    }
}

fn record(s: &Shared, route: String, body: &Value) {
    s.requests.lock().expect("requests lock").push(Recorded {
        route,
        body: body.clone(),
    });
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error", "code": status.as_u16()}})),
    )
        .into_response()
}

async fn not_found(State(s): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    record(
        &s,
        format!("{} {}", req.method(), req.uri().path()),
        &Value::Null,
    );
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// `GET /v1/models`, as each server documents it.
async fn models(State(s): State<Arc<Shared>>) -> Json<Value> {
    record(&s, "GET /v1/models".into(), &Value::Null);
    let st = &s.setup;
    let entry = match st.kind {
        // vllm/entrypoints/openai/protocol.py ModelCard.
        Kind::Vllm => json!({
            "id": st.model, "object": "model", "created": 1_700_000_000, "owned_by": "vllm",
            "root": st.model, "parent": null, "max_model_len": st.context,
            "permission": [{"id": "modelperm-1", "object": "model_permission"}]
        }),
        // sglang/srt/entrypoints/openai/protocol.py ModelCard.
        Kind::Sglang => json!({
            "id": st.model, "object": "model", "created": 1_700_000_000, "owned_by": "sglang",
            "root": st.model, "max_model_len": st.context
        }),
        // tools/server/README.md: `meta` holds the trained context, not the served one.
        Kind::LlamaServer => json!({
            "id": st.model, "object": "model", "created": 1_700_000_000, "owned_by": "llamacpp",
            "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576,
                     "n_params": 134_515_008, "size": 98_000_000}
        }),
        // llama_cpp/server/app.py get_models.
        Kind::LlamaCppPython => json!({
            "id": st.model, "object": "model", "owned_by": "me", "permissions": []
        }),
        // ollama openai/openai.go: owned_by is the model name's namespace.
        Kind::Ollama => json!({
            "id": st.model, "object": "model", "created": 1_700_000_000, "owned_by": "library"
        }),
        Kind::LmStudio => json!({
            "id": st.model, "object": "model", "owned_by": "organization_owner"
        }),
    };
    Json(json!({"object": "list", "data": [entry]}))
}

async fn vllm_tokenize(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "POST /tokenize".into(), &body);
    let flags_clash = body["continue_final_message"] == json!(true)
        && body["add_generation_prompt"] != json!(false);
    if flags_clash {
        return error(
            StatusCode::BAD_REQUEST,
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        );
    }
    let count: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| 4 + words(x["content"].as_str().unwrap_or("")).len())
                .sum()
        })
        .unwrap_or(0);
    Json(json!({"count": count, "max_model_len": s.setup.context, "tokens": []})).into_response()
}

async fn sglang_model_info(State(s): State<Arc<Shared>>) -> Json<Value> {
    record(&s, "GET /get_model_info".into(), &Value::Null);
    Json(json!({"model_path": s.setup.model, "is_generation": true}))
}

async fn llama_props(State(s): State<Arc<Shared>>) -> Json<Value> {
    record(&s, "GET /props".into(), &Value::Null);
    Json(json!({
        "default_generation_settings": {"id": 0, "id_task": -1, "n_ctx": s.setup.context.unwrap_or(4096),
                                        "speculative": false, "is_processing": false},
        "total_slots": 1,
        "model_path": format!("/models/{}.gguf", s.setup.model),
        "chat_template": "{% for message in messages %}...{% endfor %}",
        "build_info": "b6000-fake"
    }))
}

/// llama-server's `POST /apply-template`: the chat template's prompt (ChatML here), with the
/// generation prompt.
async fn llama_apply_template(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "POST /apply-template".into(), &body);
    let Some(messages) = body["messages"].as_array() else {
        return error(StatusCode::BAD_REQUEST, "\"messages\" must be provided");
    };
    let mut prompt = String::new();
    for m in messages {
        prompt.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m["role"].as_str().unwrap_or(""),
            m["content"].as_str().unwrap_or("")
        ));
    }
    prompt.push_str("<|im_start|>assistant\n");
    Json(json!({ "prompt": prompt })).into_response()
}

async fn llama_tokenize(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let route = if s.setup.kind == Kind::LlamaServer {
        "POST /tokenize"
    } else {
        "POST /extras/tokenize"
    };
    record(&s, route.into(), &body);
    let field = if s.setup.kind == Kind::LlamaServer {
        "content"
    } else {
        "input"
    };
    match body.get(field).and_then(Value::as_str) {
        Some(text) => {
            let tokens: Vec<usize> = (0..words(text).len()).collect();
            Json(json!({ "tokens": tokens })).into_response()
        }
        None => error(
            StatusCode::BAD_REQUEST,
            &format!("\"{field}\" must be provided"),
        ),
    }
}

async fn ollama_version(State(s): State<Arc<Shared>>) -> Json<Value> {
    record(&s, "GET /api/version".into(), &Value::Null);
    Json(json!({"version": "0.12.3"}))
}

async fn ollama_show(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "POST /api/show".into(), &body);
    let asked = body["model"]
        .as_str()
        .or(body["name"].as_str())
        .unwrap_or("");
    if asked != s.setup.model {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("model '{asked}' not found")})),
        )
            .into_response();
    }
    let mut parameters = String::from("stop                           \"<|im_end|>\"");
    if let Some(n) = s.setup.context {
        parameters.push_str(&format!("\nnum_ctx                        {n}"));
    }
    Json(json!({
        "modelfile": "# Modelfile generated by \"ollama show\"",
        "parameters": parameters,
        "template": "{{- range .Messages }}...{{ end }}",
        "details": {"format": "gguf", "family": "qwen2", "parameter_size": "494.03M"},
        // The trained maximum: never the context Ollama runs the model with.
        "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}
    }))
    .into_response()
}

async fn ollama_ps(State(s): State<Arc<Shared>>) -> Json<Value> {
    record(&s, "GET /api/ps".into(), &Value::Null);
    let models: Vec<Value> = s
        .setup
        .ollama_loaded
        .map(|n| {
            json!({"name": s.setup.model, "model": s.setup.model, "size": 1, "digest": "x",
                   "expires_at": "2026-12-07T00:00:00Z", "size_vram": 0, "context_length": n})
        })
        .into_iter()
        .collect();
    Json(json!({ "models": models }))
}

async fn lmstudio_model(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    record(&s, format!("GET /api/v0/models/{id}"), &Value::Null);
    if id != s.setup.model {
        return error(StatusCode::NOT_FOUND, &format!("Model {id} not found"));
    }
    let mut info = json!({
        "id": id, "object": "model", "type": "llm", "publisher": "lmstudio-community",
        "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M",
        "state": "loaded", "max_context_length": 32768
    });
    if let Some(n) = s.setup.context {
        info["loaded_context_length"] = json!(n);
    }
    Json(info).into_response()
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Whether this server resumes a final assistant message for `body`.
fn resumes(kind: Kind, body: &Value) -> bool {
    match kind {
        Kind::Vllm | Kind::Sglang => body["continue_final_message"] == json!(true),
        Kind::LlamaServer | Kind::Ollama => true,
        Kind::LlamaCppPython | Kind::LmStudio => false,
    }
}

/// `POST /v1/chat/completions`, streamed or not.
async fn chat(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    record(&s, "POST /v1/chat/completions".into(), &body);
    let st = &s.setup;
    let asked = body["model"].as_str().unwrap_or("");
    // llama-server serves its one model under any name; llama-cpp-python falls back to its
    // default model (llama_cpp/server/model.py `LlamaProxy.__call__`).
    let any_name = matches!(st.kind, Kind::LlamaServer | Kind::LlamaCppPython);
    if asked != st.model && !any_name {
        return error(
            StatusCode::NOT_FOUND,
            &format!("The model `{asked}` does not exist."),
        );
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "messages must not be empty");
    };
    let last = messages.last().expect("not empty");
    if matches!(st.kind, Kind::Vllm | Kind::Sglang) {
        if body["continue_final_message"] == json!(true)
            && body["add_generation_prompt"] != json!(false)
        {
            return error(
                StatusCode::BAD_REQUEST,
                "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            );
        }
        if body["continue_final_message"] == json!(true) && last["role"] != "assistant" {
            return error(
                StatusCode::BAD_REQUEST,
                "continue_final_message needs a final assistant message",
            );
        }
    }
    let all = words(&st.answer);
    let last_text = last["content"].as_str().unwrap_or("");
    let start = if last["role"] == "assistant" && resumes(st.kind, &body) {
        // Resumed in place: the model goes on after the partial answer.
        words(last_text).len().min(all.len())
    } else if last["role"] == "user" && messages.len() >= 2 {
        // After a partial answer and a request to go on: the rest of the answer.
        let prev = &messages[messages.len() - 2];
        if prev["role"] == "assistant" {
            words(prev["content"].as_str().unwrap_or(""))
                .len()
                .min(all.len())
        } else {
            0
        }
    } else {
        0
    };
    let max = body["max_tokens"]
        .as_u64()
        .or(body["max_completion_tokens"].as_u64())
        .unwrap_or(u64::MAX) as usize;
    let rest = &all[start..];
    let (out, finish) = if rest.len() > max {
        (&rest[..max], "length")
    } else {
        (rest, "stop")
    };
    let joined_from = |i: usize, w: &str| {
        if i == 0 && start == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        }
    };
    // The reasoning field each server streams: vLLM, SGLang and llama-server
    // `reasoning_content`, LM Studio too (0.3.9+), Ollama `reasoning` (openai/openai.go);
    // llama-cpp-python has none. A model going on with its answer does not reason again.
    let reasoning_field = match st.kind {
        _ if start > 0 => None,
        Kind::Ollama => Some("reasoning"),
        Kind::LlamaCppPython => None,
        _ => Some("reasoning_content"),
    };
    if body["stream"] != json!(true) {
        let text: String = out
            .iter()
            .enumerate()
            .map(|(i, w)| joined_from(i, w))
            .collect();
        let mut message = json!({"role": "assistant", "content": text});
        if let (Some(f), Some(r)) = (reasoning_field, &st.reasoning) {
            message[f] = json!(r);
        }
        return Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": asked, "choices": [{"index": 0, "message": message, "finish_reason": finish}]
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
                   "model": asked, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut sse = chunk(json!({"role": "assistant", "content": ""}), None);
    if let (Some(f), Some(r)) = (reasoning_field, &st.reasoning) {
        for w in r.split_inclusive(' ') {
            sse.push_str(&chunk(json!({ f: w }), None));
        }
    }
    for (i, w) in out.iter().enumerate() {
        sse.push_str(&chunk(json!({"content": joined_from(i, w)}), None));
    }
    sse.push_str(&chunk(json!({}), Some(finish)));
    sse.push_str("data: [DONE]\n\n");
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        sse,
    )
        .into_response()
}
