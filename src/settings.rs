//! Configuration: defaults that follow the reference deployment, then a TOML file (from
//! `--config` or `./anchorbot.toml`), then `ANCHORBOT_*` environment variables.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use anchorbot_discord::DiscordSettings;
use anchorbot_slack::SlackSettings;

/// Everything anchorbot can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// Where the sled store lives (and the embedding model's caches, whatever the store).
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the store is this PostgreSQL database instead of sled in
    /// `data_dir` (env `ANCHORBOT_DATABASE_URL`). It may hold a password, which is never shown.
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
    pub database_url: Option<SecretString>,
    /// The language every answer is written in.
    pub language: String,
    /// The opening of the system prompt.
    pub base_prompt: String,
    /// Prompt budget in tokens (system + memory + query).
    pub max_input_tokens: usize,
    /// Largest answer requested from the model, in tokens.
    pub max_output_tokens: usize,
    /// Token budget of the recent turns; past it the oldest turns are summarized.
    pub recent_turns_tokens: usize,
    /// Most rolling summaries kept before the oldest are merged.
    pub max_summaries: usize,
    /// Most key facts kept; the oldest go first.
    pub max_facts: usize,
    /// Messages that may wait per conversation before new ones are refused.
    pub queue_capacity: usize,
    /// Name the console uses for its user.
    pub console_user: String,
    /// Continuation rounds after an answer is cut by `finish_reason = "length"` (MAX_ROUNDS).
    pub max_rounds: usize,
    /// Whether the streaming language filter runs: `auto` (when `language` is not a CJK
    /// language), `on` or `off`.
    pub language_filter: FilterMode,
    /// Scripts the language filter removes.
    pub filter_scripts: Vec<Script>,
    /// Share of the input budget kept free when counting with cl100k for a model whose own
    /// tokenizer is not configured (its counts differ; see BENCHMARKS.md).
    pub token_margin: f64,
    /// Retries per endpoint, before any token has streamed, before failing over.
    pub retries: usize,
    /// First retry delay in milliseconds; it doubles per retry.
    pub retry_backoff_ms: u64,
    /// Seconds a failed endpoint is tried last.
    pub health_cooldown_secs: u64,
    /// The reasoning model endpoint.
    pub reasoning: Endpoint,
    /// The vision model endpoint (OCR), used by document ingestion.
    pub vision: Endpoint,
    /// Shared documents: limits, OCR, chunking, embeddings, retrieval.
    pub documents: DocumentSettings,
    /// The Slack adapter; it runs when `bot_token` is set.
    pub slack: SlackSettings,
    /// The Discord adapter; it runs when `token` is set.
    pub discord: DiscordSettings,
    /// The ops endpoints: health, readiness and Prometheus metrics.
    pub metrics: MetricsSettings,
    /// Seconds the turns in flight get to finish after SIGTERM or SIGINT before they are cut
    /// off (their users are told; nothing partial is stored).
    pub shutdown_grace_secs: u64,
    /// Conversations idle for longer than this many days are forgotten (everything of them
    /// erased, as by `anchorbot forget`), checked when `run` or `chat` starts and hourly
    /// after; unset: kept forever.
    pub retention_days: Option<u32>,
}

/// Where `/healthz`, `/readyz` and `/metrics` are served.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// Listen address such as `127.0.0.1:9464` (port 0 picks one); unset: off.
    pub listen: Option<String>,
}

/// Which embedder turns chunks into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// fastembed with a local ONNX model (offline).
    Local,
    /// An OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
    /// fastembed's own all-MiniLM-L6-v2, downloaded from the Hugging Face hub on first use
    /// (needs a network and a build with the `model-download` feature).
    Download,
}

/// Which OCR engine reads scans and images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrChoice {
    /// The vision model, falling back to tesseract when it does not answer.
    Auto,
    /// The vision model only.
    Vision,
    /// tesseract only.
    Tesseract,
}

/// Whether retrieved passages are re-ordered by the reasoning model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RerankChoice {
    /// The fused order of dense and lexical search.
    #[default]
    Off,
    /// The reasoning model orders the best 20 (falling back to the fused order).
    Llm,
}

/// How dense and lexical search results are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionChoice {
    /// Each candidate's cosine similarity plus a bonus of up to `lexical_bonus` for how well
    /// its words match (BM25 relative to the best match).
    #[default]
    Score,
    /// Reciprocal rank fusion (k = 60), the lexical ranking weighted by `lexical_weight`.
    Rrf,
}

/// Settings for shared documents.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DocumentSettings {
    /// Embedding back-end.
    pub embedder: EmbedderKind,
    /// Local model directory (model.onnx and the four tokenizer files).
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// Threads for local embedding (when unset, half the cores, one to four: a question's
    /// embedding is small, and threads that wait for each other cost it more than they give).
    pub embed_threads: Option<usize>,
    /// Embed questions with the int8 copy of the local model (`model_quantized.onnx` in
    /// `model_dir`, which `.ci/setup-models.sh` writes) when it is there. Documents are
    /// always embedded by `model.onnx`.
    pub quantized_queries: bool,
    /// The `/v1/embeddings` endpoint when `embedder = "openai"`.
    pub embeddings: Endpoint,
    /// Chunk size in the embedding model's tokens (wordpieces for the local MiniLM; prompt
    /// tokens with an embeddings endpoint).
    pub chunk_tokens: usize,
    /// Overlap between chunks, in the same tokens.
    pub chunk_overlap: usize,
    /// Chunks embedded per batch. A batch is embedded, stored and dropped before the next, so
    /// memory does not grow with the size of a page.
    pub embed_batch: usize,
    /// Most tokens in one embedding batch (the chunks' own plus their headings), so chunks
    /// longer than usual make smaller batches.
    pub embed_batch_tokens: usize,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// How dense and lexical results are fused.
    pub fusion: FusionChoice,
    /// With `fusion = "score"`: the most a lexical match adds to a cosine similarity (the best
    /// BM25 match gets all of it, others their share). Small, so that words break near-ties
    /// between meanings rather than overrule them.
    pub lexical_bonus: f32,
    /// With `fusion = "rrf"`: how much the lexical (BM25) ranking counts against the dense one
    /// (1.0).
    pub lexical_weight: f32,
    /// Re-order retrieved passages with the reasoning model.
    pub rerank: RerankChoice,
    /// Time limit of one reranking call, in milliseconds; past it the fused order is used.
    pub rerank_timeout_ms: u64,
    /// Token budget of retrieved passages in the prompt.
    pub context_tokens: usize,
    /// Largest file accepted, in MB.
    pub max_file_mb: u64,
    /// Most PDF pages accepted.
    pub max_pages: u32,
    /// Most pixels in an image.
    pub max_image_pixels: u64,
    /// Most chunks one document may produce: a file with more text is refused before any
    /// embedding (on a CPU, 60,000 chunks of 96 wordpieces take about 15 minutes to embed).
    pub max_chunks: usize,
    /// Time limit for parsing or OCR of one file or page, in seconds.
    pub parse_timeout_secs: u64,
    /// OCR engine choice.
    pub ocr: OcrChoice,
    /// Pages OCR'd at once.
    pub ocr_concurrency: usize,
    /// Retries per OCR'd page.
    pub ocr_retries: usize,
    /// Rasterizing resolution for scanned pages.
    pub ocr_dpi: u32,
    /// Longest side of a rasterized page, in pixels.
    pub ocr_max_side_px: u32,
    /// tesseract languages.
    pub tesseract_lang: String,
}

impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            embedder: EmbedderKind::Local,
            model_dir: PathBuf::from(".models/all-MiniLM-L6-v2"),
            onnxruntime: PathBuf::from(".models/onnxruntime/libonnxruntime.so"),
            embed_threads: None,
            quantized_queries: true,
            embeddings: Endpoint {
                url: "http://localhost:8007/v1".into(),
                model: "BAAI/bge-small-en-v1.5".into(),
                ..Endpoint::default()
            },
            fusion: FusionChoice::Score,
            lexical_bonus: 0.05,
            lexical_weight: 1.0,
            rerank: RerankChoice::Off,
            rerank_timeout_ms: 5000,
            chunk_tokens: 96,
            chunk_overlap: 16,
            embed_batch: 64,
            embed_batch_tokens: 8192,
            top_k: 5,
            context_tokens: 3072,
            max_file_mb: 50,
            max_pages: 500,
            max_image_pixels: 40_000_000,
            max_chunks: 60_000,
            parse_timeout_secs: 120,
            ocr: OcrChoice::Auto,
            ocr_concurrency: 4,
            ocr_retries: 2,
            ocr_dpi: 150,
            ocr_max_side_px: 2200,
            tesseract_lang: "eng".into(),
        }
    }
}

impl DocumentSettings {
    /// The file size limit in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_mb * 1024 * 1024
    }
}

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Endpoint {
    /// Base URL including `/v1`.
    pub url: String,
    /// Model name as the server knows it.
    pub model: String,
    /// Bearer token, if the server wants one. Never printed.
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
    pub api_key: Option<SecretString>,
    /// Seconds allowed to open a connection.
    pub connect_timeout_secs: u64,
    /// Seconds allowed until the first streamed token.
    pub first_token_timeout_secs: u64,
    /// Seconds allowed between two streamed chunks.
    pub idle_timeout_secs: u64,
    /// Further servers of the same model, tried in order when this one fails. A
    /// comma-separated string works too (for the environment).
    #[serde(deserialize_with = "string_or_list")]
    pub fallback_urls: Vec<String>,
    /// Where a completion starts relative to a `<think>` block: `auto` (inside for R1-style
    /// models: names with "r1" or "qwq"), `inside` or `outside`.
    pub think: ThinkMode,
    /// How an answer cut at the output limit is continued: `auto` (per server kind: `prefill`
    /// on vLLM and SGLang, `resume` on llama-server and Ollama, else `instruction`), `prefill`
    /// (the partial answer is sent as the final assistant message with vLLM's
    /// `continue_final_message`, so the model resumes mid-sentence and does not reason again),
    /// `resume` (the request simply ends with the partial answer as the assistant message) or
    /// `instruction` (the partial answer plus a "continue" user message, for any
    /// OpenAI-compatible server).
    pub continuation: ContinuationMode,
    /// `continuation` for particular servers of the role, keyed by URL (the primary or a
    /// fallback), e.g. `{ "http://ollama:11434/v1" = "resume" }`.
    pub continuation_by_url: std::collections::BTreeMap<String, ContinuationMode>,
    /// The model's own tokenizer (`tokenizer.json` or `*.tiktoken`), for exact budgets.
    pub tokenizer: Option<PathBuf>,
    /// Ask the server for exact prompt counts when it offers vLLM's `/tokenize`.
    pub remote_tokenize: bool,
    /// The GGUF model run in-process when `url` is `embedded`
    /// (`.models/SmolLM2-135M-Instruct.Q4_1.gguf` when unset).
    pub embedded_model: Option<PathBuf>,
}

/// How an answer cut at the output limit is continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContinuationMode {
    /// Per server kind: `prefill` on vLLM and SGLang, `resume` on llama-server and Ollama,
    /// `instruction` elsewhere.
    Auto,
    /// Resume the assistant message itself (vLLM's `continue_final_message`).
    Prefill,
    /// Resume the assistant message itself by ending the request with it, without vLLM's
    /// flag (llama-server's default assistant prefill; Ollama).
    Resume,
    /// Ask for the rest in a user message.
    Instruction,
}

/// When the language filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// When the answer language is not Chinese, Japanese or Korean.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// A script (or symbol block) the filter can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Script {
    /// Chinese characters (CJK unified ideographs, extensions, compatibility, radicals).
    Han,
    /// Japanese Hiragana.
    Hiragana,
    /// Japanese Katakana, including half-width Katakana.
    Katakana,
    /// Korean Hangul syllables and Jamo.
    Hangul,
    /// CJK symbols and punctuation (U+3000–U+303F), e.g. `。`, `「`, `、`.
    CjkPunctuation,
    /// Halfwidth and fullwidth forms (U+FF00–U+FFEF), e.g. `，`, `！`, `Ａ`.
    Fullwidth,
}

impl Script {
    /// The default set: every CJK script plus CJK punctuation and fullwidth forms.
    pub const CJK: &'static [Script] = &[
        Script::Han,
        Script::Hiragana,
        Script::Katakana,
        Script::Hangul,
        Script::CjkPunctuation,
        Script::Fullwidth,
    ];
}

/// Languages whose answers must keep CJK characters.
const CJK_LANGUAGES: &[&str] = &[
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "zh",
    "ja",
    "ko",
    "中文",
    "汉语",
    "漢語",
    "日本語",
    "한국어",
];

/// True when `language` is written with CJK scripts.
pub fn is_cjk_language(language: &str) -> bool {
    let l = language.trim().to_lowercase();
    CJK_LANGUAGES
        .iter()
        .any(|c| l == *c || l.starts_with(&format!("{c}-")) || l.starts_with(&format!("{c} ")))
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkStart {
    /// Inside a think block: everything is reasoning until `</think>` (R1 distills, QwQ).
    Inside,
    /// Outside: everything is answer unless a `<think>` block opens.
    Outside,
}

/// Where completions start relative to a think block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkMode {
    /// Decide from the model name.
    Auto,
    /// Inside a think block (R1 distills, QwQ).
    Inside,
    /// Outside.
    Outside,
}

/// The `url` that runs the model in this process instead of asking a server.
pub const EMBEDDED: &str = "embedded";

/// The embedded model when `embedded_model` is unset (`.ci/fetch-chat-model.sh` puts it there).
pub const DEFAULT_EMBEDDED_MODEL: &str = ".models/SmolLM2-135M-Instruct.Q4_1.gguf";

impl Endpoint {
    /// Whether the model runs in this process (`url = "embedded"`).
    pub fn is_embedded(&self) -> bool {
        self.url.trim() == EMBEDDED
    }

    /// The GGUF file of the embedded model: `embedded_model` when set; else the default in the
    /// working directory, or in this checkout's `.models/` (where `.ci/setup.sh` put it) when an
    /// installed `anchorbot` runs elsewhere.
    pub fn embedded_model_path(&self) -> PathBuf {
        if let Some(path) = &self.embedded_model {
            return path.clone();
        }
        let here = PathBuf::from(DEFAULT_EMBEDDED_MODEL);
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_EMBEDDED_MODEL);
        if !here.is_file() && checkout.is_file() {
            checkout
        } else {
            here
        }
    }

    /// This endpoint followed by one per fallback URL (same model and key), each with its
    /// own `continuation` (from `continuation_by_url`, else the role's).
    pub fn with_fallbacks(&self) -> Vec<Endpoint> {
        std::iter::once(&self.url)
            .chain(&self.fallback_urls)
            .map(|url| Endpoint {
                url: url.clone(),
                fallback_urls: Vec::new(),
                continuation: self.continuation_for(url),
                ..self.clone()
            })
            .collect()
    }

    /// The continuation mode of the server at `url`.
    pub fn continuation_for(&self, url: &str) -> ContinuationMode {
        let trimmed = url.trim_end_matches('/');
        self.continuation_by_url
            .iter()
            .find(|(k, _)| k.trim_end_matches('/') == trimmed)
            .map_or(self.continuation, |(_, m)| *m)
    }

    /// The think-block start this endpoint's model needs.
    pub fn think_start(&self) -> ThinkStart {
        match self.think {
            ThinkMode::Inside => ThinkStart::Inside,
            ThinkMode::Outside => ThinkStart::Outside,
            ThinkMode::Auto => {
                // The embedded model is named by its file; `model` names a server's model.
                let m = if self.is_embedded() {
                    self.embedded_model_path().to_string_lossy().to_lowercase()
                } else {
                    self.model.to_lowercase()
                };
                if m.contains("r1") || m.contains("qwq") {
                    ThinkStart::Inside
                } else {
                    ThinkStart::Outside
                }
            }
        }
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("anchorbot-data"),
            database_url: None,
            language: "English".into(),
            base_prompt: "You are anchorbot, a helpful, precise AI teammate in a team chat. \
                          Answer clearly and concisely."
                .into(),
            max_input_tokens: 12288,
            max_output_tokens: 4096,
            recent_turns_tokens: 6144,
            max_summaries: 8,
            max_facts: 40,
            queue_capacity: 16,
            console_user: "you".into(),
            max_rounds: 3,
            language_filter: FilterMode::Auto,
            filter_scripts: Script::CJK.to_vec(),
            token_margin: 0.10,
            retries: 2,
            retry_backoff_ms: 250,
            health_cooldown_secs: 30,
            reasoning: Endpoint {
                url: EMBEDDED.into(),
                model: "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B".into(),
                ..Endpoint::default()
            },
            vision: Endpoint {
                url: "http://localhost:8006/v1".into(),
                model: "Qwen/Qwen2.5-VL-3B-Instruct".into(),
                ..Endpoint::default()
            },
            documents: DocumentSettings::default(),
            slack: SlackSettings::default(),
            discord: DiscordSettings::default(),
            metrics: MetricsSettings::default(),
            shutdown_grace_secs: 30,
            retention_days: None,
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key: None,
            connect_timeout_secs: 5,
            first_token_timeout_secs: 180,
            idle_timeout_secs: 60,
            fallback_urls: Vec::new(),
            think: ThinkMode::Auto,
            continuation: ContinuationMode::Auto,
            continuation_by_url: std::collections::BTreeMap::new(),
            tokenizer: None,
            remote_tokenize: true,
            embedded_model: None,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file named with `--config` does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    /// The file or an environment variable holds a bad value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Environment variables (after `ANCHORBOT_`) that address a nested key.
const NESTED: &[(&str, &str)] = &[
    ("reasoning_", "reasoning."),
    ("vision_", "vision."),
    // Before "documents_": the embeddings endpoint is a table inside [documents].
    ("documents_embeddings_", "documents.embeddings."),
    ("documents_", "documents."),
    ("slack_", "slack."),
    ("discord_", "discord."),
    ("metrics_", "metrics."),
];

/// The platforms' own environment variable names for their secrets, each with the key it sets
/// (`SLACK_BOT_TOKEN` → `slack.bot_token`), as each adapter lists them.
fn platform_env() -> Vec<(&'static str, String)> {
    [
        ("slack", anchorbot_slack::settings::ENV),
        ("discord", anchorbot_discord::settings::ENV),
    ]
    .into_iter()
    .flat_map(|(table, names)| {
        names
            .iter()
            .map(move |(name, key)| (*name, format!("{table}.{key}")))
    })
    .collect()
}

impl Settings {
    /// Where the store is: PostgreSQL at `database_url` when set, else sled in `data_dir`.
    pub fn store_location(&self) -> crate::storage::Location {
        crate::storage::Location::new(&self.data_dir, self.database_url.as_ref())
    }

    /// Loads defaults, then `path` (or `./anchorbot.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(p) if !p.exists() => return Err(SettingsError::Missing(p.to_path_buf())),
            Some(p) => fig = fig.merge(Toml::file(p)),
            None if Path::new("anchorbot.toml").exists() => {
                fig = fig.merge(Toml::file("anchorbot.toml"))
            }
            None => {}
        }
        let env = Env::prefixed("ANCHORBOT_")
            .ignore(&["config", "log", "log_format"])
            .map(|k| {
                let k = k.as_str().to_ascii_lowercase();
                for (prefix, nested) in NESTED {
                    if let Some(rest) = k.strip_prefix(prefix) {
                        return format!("{nested}{rest}").into();
                    }
                }
                k.into()
            });
        let platform_env = platform_env();
        let names: Vec<&str> = platform_env.iter().map(|(k, _)| *k).collect();
        let platforms = Env::raw().only(&names).map(move |k| {
            platform_env
                .iter()
                .find(|(name, _)| k.as_str().eq_ignore_ascii_case(name))
                .map(|(_, key)| key.clone().into())
                .unwrap_or_else(|| k.into())
        });
        let mut settings: Settings = fig
            .merge(platforms)
            .merge(env)
            .extract()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        // An empty secret (`SLACK_BOT_TOKEN=` in a compose file or .env) is no secret: it
        // must not start an adapter or send an empty bearer token.
        let Settings {
            database_url,
            reasoning,
            vision,
            documents,
            slack,
            discord,
            ..
        } = &mut settings;
        let secrets = [
            database_url,
            &mut reasoning.api_key,
            &mut vision.api_key,
            &mut documents.embeddings.api_key,
        ]
        .into_iter()
        .chain(slack.secrets_mut())
        .chain(discord.secrets_mut());
        for secret in secrets {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose_secret().trim().is_empty())
            {
                *secret = None;
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects values that cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Invalid(m));
        if let Some(url) = &self.database_url {
            if let Err(reason) = crate::storage::check_database_url(url) {
                return bad(format!("{reason}; unset it to keep the store in data_dir"));
            }
        }
        if self.max_input_tokens < 256 {
            return bad(format!(
                "max_input_tokens must be at least 256, not {}",
                self.max_input_tokens
            ));
        }
        if self.max_output_tokens == 0 {
            return bad("max_output_tokens must be positive".into());
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be positive".into());
        }
        if self.max_summaries < 2 {
            return bad("max_summaries must be at least 2".into());
        }
        for (role, e) in [("reasoning", &self.reasoning), ("vision", &self.vision)] {
            if role == "reasoning" && e.is_embedded() {
                continue;
            }
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                let or_embedded = if role == "reasoning" {
                    ", or be \"embedded\" (the model in this process)"
                } else {
                    ""
                };
                return bad(format!(
                    "{role}.url must start with http:// or https://{or_embedded}, not {:?}",
                    e.url
                ));
            }
        }
        Ok(())
    }

    /// The chat platforms' secrets that are set (their tokens and signing secrets).
    pub fn platform_secrets(&self) -> Vec<&SecretString> {
        self.slack.secrets().chain(self.discord.secrets()).collect()
    }

    /// The scripts the language filter removes for the configured language (empty: off).
    pub fn active_filter(&self) -> Vec<Script> {
        match self.language_filter {
            FilterMode::Off => Vec::new(),
            FilterMode::On => self.filter_scripts.clone(),
            FilterMode::Auto if is_cjk_language(&self.language) => Vec::new(),
            FilterMode::Auto => self.filter_scripts.clone(),
        }
    }

    /// The settings as TOML with secrets redacted, for `doctor`.
    pub fn redacted_toml(&self) -> String {
        toml_like(&serde_json::to_value(self).unwrap_or_default(), "")
    }
}

/// Renders a JSON object as TOML-ish `key = value` lines.
fn toml_like(v: &serde_json::Value, section: &str) -> String {
    let mut out = String::new();
    let mut tables = String::new();
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => {
                    let name = if section.is_empty() {
                        k.clone()
                    } else {
                        format!("{section}.{k}")
                    };
                    tables.push_str(&format!("\n[{name}]\n{}", toml_like(v, &name)));
                }
                serde_json::Value::Null => out.push_str(&format!("# {k} is not set\n")),
                other => out.push_str(&format!("{k} = {}\n", toml_value(other))),
            }
        }
    }
    out + &tables
}

/// One value as it would be written in the file. An `f32` setting reaches JSON as the `f64`
/// nearest to it (`0.05` becomes `0.05000000074505806`): a float that is exactly an `f32` is
/// printed as that `f32`'s shortest form, and keeps a `.0` so it still reads as a float.
fn toml_value(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.is_finite() && f64::from(f as f32) == f => {
            let text = (f as f32).to_string();
            if text.contains(['.', 'e']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        _ => match v.as_array() {
            Some(items) => format!(
                "[{}]",
                items.iter().map(toml_value).collect::<Vec<_>>().join(",")
            ),
            None => v.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference_deployment() {
        let s = Settings::default();
        assert_eq!(s.max_input_tokens + s.max_output_tokens, 16384);
        // With no model server set, the model runs in this process.
        assert_eq!(s.reasoning.url, EMBEDDED);
        assert!(s.reasoning.is_embedded());
        assert_eq!(
            s.reasoning.think_start(),
            crate::llm::think::ThinkStart::Outside,
            "SmolLM2 does not think, whatever `model` names"
        );
        assert_eq!(s.vision.url, "http://localhost:8006/v1");
        s.validate().unwrap();
    }

    #[test]
    fn database_url_selects_postgres_and_is_never_shown() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "ANCHORBOT_DATABASE_URL",
                "postgres://bot:s3cr3t-pw@db.internal:5432/anchorbot",
            );
            let s = Settings::load(None).unwrap();
            assert!(s.store_location().is_database());
            let shown = format!(
                "{s:?} {} {}",
                serde_json::to_string(&s).unwrap(),
                s.store_location().describe()
            );
            assert!(!shown.contains("s3cr3t-pw"), "{shown}");
            assert!(
                s.store_location()
                    .describe()
                    .contains("postgres://bot@db.internal:5432/anchorbot"),
                "{}",
                s.store_location().describe()
            );
            jail.set_env(
                "ANCHORBOT_DATABASE_URL",
                "mysql://bot:s3cr3t-pw@db/anchorbot",
            );
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("database_url must be a postgres:// URL"),
                "{err}"
            );
            assert!(!err.contains("s3cr3t-pw"), "{err}");
            // Empty, as a compose file leaves it: the default store.
            jail.set_env("ANCHORBOT_DATABASE_URL", "");
            assert!(!Settings::load(None).unwrap().store_location().is_database());
            Ok(())
        });
    }

    #[test]
    fn filter_and_think_defaults_follow_language_and_model() {
        let mut s = Settings::default();
        s.reasoning.url = "http://localhost:8005/v1".into();
        assert_eq!(s.active_filter(), Script::CJK.to_vec());
        s.language = "Japanese".into();
        assert!(s.active_filter().is_empty());
        s.language_filter = FilterMode::On;
        assert_eq!(s.active_filter().len(), 6);
        assert_eq!(
            s.reasoning.think_start(),
            crate::llm::think::ThinkStart::Inside
        );
        s.reasoning.model = "Qwen/Qwen3-32B-AWQ".into();
        assert_eq!(
            s.reasoning.think_start(),
            crate::llm::think::ThinkStart::Outside
        );
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn platform_tokens_come_from_their_own_variables_and_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SLACK_BOT_TOKEN", "xoxb-secret-1");
            jail.set_env("SLACK_APP_TOKEN", "xapp-secret-2");
            jail.set_env("ANCHORBOT_SLACK_API_URL", "http://127.0.0.1:9/api");
            jail.set_env("ANCHORBOT_SLACK_LISTEN", "0.0.0.0:3000");
            jail.set_env("DISCORD_TOKEN", "discord-secret-3");
            jail.set_env("ANCHORBOT_DISCORD_GUILD_ID", "42");
            let s = Settings::load(None).expect("loads");
            assert_eq!(
                s.slack.bot_token.as_ref().unwrap().expose_secret(),
                "xoxb-secret-1"
            );
            assert_eq!(
                s.slack.app_token.as_ref().unwrap().expose_secret(),
                "xapp-secret-2"
            );
            assert_eq!(s.slack.api_url, "http://127.0.0.1:9/api");
            assert_eq!(s.slack.listen.as_deref(), Some("0.0.0.0:3000"));
            assert_eq!(
                s.discord.token.as_ref().unwrap().expose_secret(),
                "discord-secret-3"
            );
            assert_eq!(s.discord.guild_id, Some(42));
            let shown = format!("{s:?}{}", s.redacted_toml());
            for secret in ["xoxb-secret-1", "xapp-secret-2", "discord-secret-3"] {
                assert!(!shown.contains(secret));
            }
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Settings::default();
        s.reasoning.api_key = Some(SecretString::from("sk-very-secret"));
        assert!(!format!("{s:?}").contains("sk-very-secret"));
        assert!(!s.redacted_toml().contains("sk-very-secret"));
        assert!(s.redacted_toml().contains("[redacted]"));
        assert_eq!(
            s.reasoning.api_key.unwrap().expose_secret(),
            "sk-very-secret"
        );
    }

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/anchorbot.example.toml");
        figment::Jail::expect_with(|_| {
            let s = Settings::load(Some(Path::new(path))).unwrap();
            let d = Settings::default();
            assert_eq!(format!("{s:?}"), format!("{d:?}"));
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "max_input_tokens = 4000\n[reasoning]\nurl = \"http://a:1/v1\"\nmodel = \"m1\"\n",
            )?;
            jail.set_env("ANCHORBOT_REASONING_MODEL", "m2");
            jail.set_env("ANCHORBOT_MAX_OUTPUT_TOKENS", "99");
            jail.set_env("ANCHORBOT_DATA_DIR", "/tmp/x");
            jail.set_env(
                "ANCHORBOT_REASONING_FALLBACK_URLS",
                "http://b:2/v1, http://c:3/v1",
            );
            jail.set_env("ANCHORBOT_LANGUAGE_FILTER", "off");
            jail.set_env("ANCHORBOT_REASONING_CONTINUATION", "prefill");
            let s = Settings::load(Some(Path::new("custom.toml"))).unwrap();
            assert_eq!(s.max_input_tokens, 4000);
            assert_eq!(s.reasoning.url, "http://a:1/v1");
            assert_eq!(s.reasoning.model, "m2");
            assert_eq!(s.max_output_tokens, 99);
            assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(
                s.reasoning.fallback_urls,
                vec!["http://b:2/v1", "http://c:3/v1"]
            );
            assert_eq!(s.reasoning.with_fallbacks().len(), 3);
            assert!(s.active_filter().is_empty());
            assert_eq!(s.reasoning.continuation, ContinuationMode::Prefill);
            assert_eq!(s.vision.continuation, ContinuationMode::Auto);
            Ok(())
        });
    }

    #[test]
    fn empty_secrets_are_unset_and_the_embeddings_endpoint_takes_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SLACK_BOT_TOKEN", "");
            jail.set_env("DISCORD_TOKEN", "  ");
            jail.set_env("SLACK_APP_TOKEN", "xapp-1");
            jail.set_env("ANCHORBOT_DOCUMENTS_EMBEDDINGS_URL", "http://emb:9/v1");
            jail.set_env("ANCHORBOT_DOCUMENTS_EMBEDDINGS_MODEL", "bge");
            let s = Settings::load(None).unwrap();
            assert!(s.slack.bot_token.is_none());
            assert!(s.discord.token.is_none());
            assert_eq!(
                s.slack.app_token.as_ref().map(|t| t.expose_secret()),
                Some("xapp-1")
            );
            assert_eq!(s.documents.embeddings.url, "http://emb:9/v1");
            assert_eq!(s.documents.embeddings.model, "bge");
            Ok(())
        });
    }
}
