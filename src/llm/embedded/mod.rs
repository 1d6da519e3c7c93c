//! The embedded model: a small instruct model in GGUF form (SmolLM2-135M-Instruct by default)
//! run inside this process on the CPU with candle, behind the same [`ChatBackend`] as a model
//! server, so a turn streams through the same pipeline (state machine, language filter,
//! continuation, budgets).
//!
//! candle's quantized llama reads the GGUF weights; the tokenizer is built from the GGUF's
//! metadata ([`tokenizer`]). Generation runs on the blocking pool, one request at a time (the
//! model holds one key-value cache), and streams each decoded piece as it comes. A final
//! assistant message is resumed natively: the prompt leaves it open.

pub mod lazy;
pub mod tokenizer;

pub use lazy::LazyEmbedded;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use futures_util::StreamExt;

use crate::llm::{
    ChatBackend, ChatRequest, FinishReason, ItemStream, LlmError, ServerFacts, StreamItem,
};
use anchorbot_platform::sync;

/// Why the embedded model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The model file cannot be read.
    #[error("cannot read the model file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a GGUF model this build can run.
    #[error("the model file is not usable: {0}")]
    Format(String),
}

/// What generation needs, behind one lock: the weights hold the key-value cache.
struct Loaded {
    weights: ModelWeights,
}

/// A GGUF model run in this process.
pub struct EmbeddedModel {
    loaded: Arc<Mutex<Loaded>>,
    tokenizer: Arc<tokenizers::Tokenizer>,
    /// The end of an answer (`<|im_end|>`), and of the text (`<|endoftext|>`).
    stops: Vec<u32>,
    /// The context length the model was trained for.
    context: u64,
    /// The file's name, for `doctor` and `/status`.
    name: String,
}

impl std::fmt::Debug for EmbeddedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl EmbeddedModel {
    /// Loads the model in `path` (a GGUF file).
    pub fn load(path: &Path) -> Result<Self, EmbeddedError> {
        let open = |source| EmbeddedError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(open)?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| EmbeddedError::Format(e.to_string()))?;
        let (tokenizer, vocab) = tokenizer::from_gguf(&content)?;
        let stops: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| vocab.get(*t).copied())
            .collect();
        let context = match content.metadata.get("llama.context_length") {
            Some(gguf_file::Value::U32(n)) => u64::from(*n),
            _ => 2048,
        };
        let format = |e: candle_core::Error| EmbeddedError::Format(e.to_string());
        let weights = match widened(&content, &mut file).map_err(format)? {
            Some(mut wide) => {
                let content = gguf_file::Content::read(&mut wide).map_err(format)?;
                ModelWeights::from_gguf(content, &mut wide, &Device::Cpu).map_err(format)?
            }
            None => ModelWeights::from_gguf(content, &mut file, &Device::Cpu).map_err(format)?,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            loaded: Arc::new(Mutex::new(Loaded { weights })),
            tokenizer: Arc::new(tokenizer),
            stops,
            context,
            name,
        })
    }

    /// The model file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context length the model was trained for (its GGUF's `llama.context_length`).
    pub fn context_length(&self) -> u64 {
        self.context
    }
}

/// The most a model may weigh once widened to 32-bit floats (about 330M parameters).
const WIDEN_LIMIT_BYTES: u64 = 1 << 30;

/// A small model rewritten with 16-bit float weights (an in-memory GGUF), which candle then
/// multiplies as plain 32-bit tensors; `None` for a model too big to widen, which runs quantized.
///
/// candle's quantized kernels use SIMD only when the build targets AVX2 (`-C target-cpu`),
/// which a portable build does not: SmolLM2's Q4_1 weights then go through scalar code, and the
/// first token of a 600-token prompt took about five times longer than with float weights,
/// which candle multiplies with `gemm` (SIMD chosen at run time). Decoding is slower widened
/// (11 against 18 tokens/s for SmolLM2), but every prompt carries the system prompt and memory,
/// so a turn is faster overall; memory grows from ~100 MB to ~540 MB for a 135M model
/// (`BENCHMARKS.md`, "Embedded model").
fn widened(
    content: &gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<Option<std::io::Cursor<Vec<u8>>>> {
    use candle_core::quantized::{GgmlDType, QTensor};
    let params: u64 = content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64)
        .sum();
    if params * 4 > WIDEN_LIMIT_BYTES {
        return Ok(None);
    }
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let t = content.tensor(file, name, &Device::Cpu)?;
        let t = match t.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => t,
            _ => QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::F16)?,
        };
        tensors.push((name.as_str(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs)?;
    out.set_position(0);
    Ok(Some(out))
}

/// A generation failure as the pipeline sees it.
fn failed(e: impl std::fmt::Display) -> LlmError {
    LlmError::Protocol(format!("the embedded model failed: {e}"))
}

#[async_trait]
impl ChatBackend for EmbeddedModel {
    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        let prompt = tokenizer::chatml(&request.messages, request.continue_final);
        let ids: Vec<u32> = self
            .tokenizer
            .encode(prompt.as_str(), false)
            .map_err(failed)?
            .get_ids()
            .to_vec();
        if ids.len() as u64 >= self.context {
            return Err(failed(format!(
                "the prompt is {} tokens, over the model's {}",
                ids.len(),
                self.context
            )));
        }
        let room = (self.context - ids.len() as u64) as usize;
        let max = request.max_tokens.min(room).max(1);
        let temperature = request.temperature.map(f64::from).filter(|t| *t > 0.0);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<StreamItem, LlmError>>(64);
        let (loaded, tok, stops) = (
            self.loaded.clone(),
            self.tokenizer.clone(),
            self.stops.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut loaded = sync::lock(&loaded);
            let mut sampler = LogitsProcessor::new(0x5eed, temperature, None);
            let mut step = |input: &[u32], pos: usize| -> Result<u32, LlmError> {
                let x = Tensor::new(input, &Device::Cpu)
                    .and_then(|t| t.unsqueeze(0))
                    .map_err(failed)?;
                let logits = loaded
                    .weights
                    .forward(&x, pos)
                    .and_then(|l| l.squeeze(0))
                    .map_err(failed)?;
                sampler.sample(&logits).map_err(failed)
            };
            let mut out: Vec<u32> = Vec::new();
            let mut shown = 0;
            let mut next = match step(&ids, 0) {
                Ok(t) => t,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let finish = loop {
                if stops.contains(&next) {
                    break FinishReason::Stop;
                }
                out.push(next);
                // Decoded as a whole so a character split over tokens comes out whole.
                if let Ok(text) = tok.decode(&out, true) {
                    if text.len() > shown
                        && text.is_char_boundary(shown)
                        && !text.ends_with('\u{fffd}')
                    {
                        let piece = text[shown..].to_string();
                        shown = text.len();
                        if tx.blocking_send(Ok(StreamItem::Content(piece))).is_err() {
                            // The reader went away (a stop, a cut): nothing more to do.
                            return;
                        }
                    }
                }
                if out.len() >= max {
                    break FinishReason::Length;
                }
                next = match step(&[next], ids.len() + out.len() - 1) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
            };
            let _ = tx.blocking_send(Ok(StreamItem::Finish(finish)));
        });
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }

    fn health(&self) -> Vec<(String, bool)> {
        vec![(format!("embedded: {}", self.name), true)]
    }

    async fn facts(&self) -> ServerFacts {
        ServerFacts {
            context_length: Some(self.context),
            context_source: super::facts::ContextSource::Embedded,
            // The prompt is built here: a final assistant message is left open and resumed.
            native_resume: true,
            reported: true,
            ..ServerFacts::default()
        }
    }

    async fn count_prompt(&self, request: &ChatRequest) -> Option<usize> {
        let prompt = tokenizer::chatml(&request.messages, request.continue_final);
        Some(self.tokenizer.encode(prompt.as_str(), false).ok()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatMessage, Role};

    /// SmolLM2-135M-Instruct, where `.ci/setup.sh` puts it.
    fn model_file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_embedded_model_streams_an_answer_and_stops_at_its_cap() {
        let model = EmbeddedModel::load(&model_file()).expect("run .ci/setup.sh for the model");
        let request = ChatRequest {
            messages: vec![ChatMessage::new(
                Role::User,
                "What is the capital of France?",
            )],
            max_tokens: 24,
            temperature: None,
            continue_final: false,
            thinking_off: false,
        };
        let mut stream = model.stream(&request).await.unwrap();
        let mut text = String::new();
        let mut pieces = 0;
        let finish = loop {
            match stream.next().await.expect("a finish").unwrap() {
                StreamItem::Content(c) => {
                    text.push_str(&c);
                    pieces += 1;
                }
                StreamItem::Reasoning(_) => panic!("no reasoning from this model"),
                StreamItem::Finish(f) => break f,
            }
        };
        assert!(text.contains("Paris"), "{text}");
        assert!(pieces > 1, "streamed in pieces: {pieces}");
        assert!(!text.contains("<|im_end|>"));
        let tokens = model.tokenizer.encode(text.as_str(), false).unwrap().len();
        assert!(tokens <= 24 + 1, "{tokens} tokens for a cap of 24");
        assert!(matches!(finish, FinishReason::Stop | FinishReason::Length));
        assert_eq!(model.facts().await.context_length, Some(8192));
    }
}
