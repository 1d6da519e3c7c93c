//! Embeddings behind one trait: fastembed running a local ONNX model fully offline (the
//! default), or an OpenAI-compatible `/v1/embeddings` endpoint (vLLM can serve embedding
//! models). With the `model-download` feature fastembed may fetch its models from the hub.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::model_thread::ModelThread;
use crate::settings::Endpoint;

/// Why embeddings are not available.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EmbedError {
    /// The ONNX Runtime library is missing.
    #[error("the ONNX Runtime library {path} is missing; run .ci/setup-models.sh (or set documents.onnxruntime)")]
    RuntimeMissing {
        /// Where it was looked for.
        path: String,
    },
    /// The model directory lacks a file.
    #[error("the embedding model file {path} is missing; run .ci/setup-models.sh (or set documents.model_dir)")]
    ModelMissing {
        /// The missing file.
        path: String,
    },
    /// The model or runtime failed to load or run.
    #[error("the embedding model failed: {0}")]
    Failed(String),
    /// The embeddings endpoint failed.
    #[error("the embeddings endpoint failed: {0}")]
    Endpoint(String),
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// A description for logs and `/files`.
    fn name(&self) -> String;

    /// Embeds `texts`, one unit-length vector each, in order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Scales `v` to unit length (cosine similarity becomes a dot product).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The files a local model directory must hold.
pub const MODEL_FILES: &[&str] = &[
    "model.onnx",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// fastembed with a user-defined local ONNX model, run on its own thread.
pub struct LocalEmbedder {
    /// The thread that owns the loaded model.
    model: ModelThread,
    /// Model directory, for `name()`.
    dir: PathBuf,
}

/// Texts per inference batch.
const INFERENCE_BATCH: usize = 16;

impl LocalEmbedder {
    /// Loads the model in `dir` with the ONNX Runtime library at `runtime`. Checks every file
    /// first, because ort panics on a missing library.
    pub fn load(dir: &Path, runtime: &Path, threads: Option<usize>) -> Result<Self, EmbedError> {
        Self::load_file(dir, "model.onnx", runtime, threads)
    }

    /// Loads the model file `onnx` of `dir` (the tokenizer files are `dir`'s own).
    pub fn load_file(
        dir: &Path,
        onnx: &str,
        runtime: &Path,
        threads: Option<usize>,
    ) -> Result<Self, EmbedError> {
        if !runtime.is_file() {
            return Err(EmbedError::RuntimeMissing {
                path: runtime.display().to_string(),
            });
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|_| EmbedError::ModelMissing {
                path: p.display().to_string(),
            })
        };
        let onnx = read(onnx)?;
        let files = fastembed::TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        load_runtime(runtime)?;
        let model = fastembed::UserDefinedEmbeddingModel::new(onnx, files)
            .with_pooling(fastembed::Pooling::Mean);
        let mut options = fastembed::InitOptionsUserDefined::new().with_max_length(256);
        options.intra_threads = threads;
        let model = fastembed::TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| EmbedError::Failed(e.to_string()))?;
        Ok(Self {
            model: ModelThread::start("anchorbot-embed", model, INFERENCE_BATCH)?,
            dir: dir.to_path_buf(),
        })
    }
}

/// The int8 copy of a local model that questions are embedded with, when it is there and
/// no older than the model itself (a stale copy could be of another model).
pub const QUANTIZED_FILE: &str = "model_quantized.onnx";

/// `dir`'s quantized model file, if it is usable for questions.
pub fn quantized_model(dir: &Path) -> Option<PathBuf> {
    let quantized = dir.join(QUANTIZED_FILE);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (q, full) = (modified(&quantized)?, modified(&dir.join("model.onnx"))?);
    if q >= full {
        Some(quantized)
    } else {
        tracing::warn!(
            file = %quantized.display(),
            "the quantized model is older than model.onnx and is not used; run .ci/setup-models.sh again"
        );
        None
    }
}

impl LocalEmbedder {
    /// fastembed's all-MiniLM-L6-v2 from the Hugging Face hub (cached after the first run).
    #[cfg(feature = "model-download")]
    pub fn download(runtime: &Path, threads: Option<usize>) -> Result<Self, EmbedError> {
        load_runtime(runtime)?;
        let mut options = fastembed::TextInitOptions::new(fastembed::EmbeddingModel::AllMiniLML6V2);
        if let Some(t) = threads {
            options = options.with_intra_threads(t);
        }
        let model = fastembed::TextEmbedding::try_new(options)
            .map_err(|e| EmbedError::Failed(e.to_string()))?;
        Ok(Self {
            model: ModelThread::start("anchorbot-embed", model, INFERENCE_BATCH)?,
            dir: PathBuf::from("hub:sentence-transformers/all-MiniLM-L6-v2"),
        })
    }

    /// Without the `model-download` feature there is no hub access.
    #[cfg(not(feature = "model-download"))]
    pub fn download(_runtime: &Path, _threads: Option<usize>) -> Result<Self, EmbedError> {
        Err(EmbedError::Failed(
            "embedder = \"download\" needs anchorbot built with `--features model-download`".into(),
        ))
    }
}

/// Loads the ONNX Runtime library explicitly: ort panics later if it is not loaded.
fn load_runtime(runtime: &Path) -> Result<(), EmbedError> {
    if !runtime.is_file() {
        return Err(EmbedError::RuntimeMissing {
            path: runtime.display().to_string(),
        });
    }
    // An absolute path, because a relative one is tried next to the binary first.
    let abs = std::fs::canonicalize(runtime).map_err(|_| EmbedError::RuntimeMissing {
        path: runtime.display().to_string(),
    })?;
    // Only loads the library; fastembed builds the environment itself.
    let _builder = ort::init_from(&abs)
        .map_err(|e| EmbedError::Failed(format!("ONNX Runtime at {}: {e}", abs.display())))?;
    Ok(())
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn name(&self) -> String {
        format!("fastembed ({})", self.dir.display())
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model.embed(texts).await
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint.
pub struct OpenAiEmbedder {
    /// Endpoint settings.
    cfg: Endpoint,
    /// HTTP client.
    http: reqwest::Client,
}

impl OpenAiEmbedder {
    /// A client for `cfg`.
    pub fn new(cfg: Endpoint) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .build()
            .expect("a plain reqwest client builds");
        Self { cfg, http }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn name(&self) -> String {
        format!("{} at {}", self.cfg.model, self.cfg.url)
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(64) {
            let mut rb = self
                .http
                .post(format!("{}/embeddings", self.cfg.url.trim_end_matches('/')))
                .json(&serde_json::json!({"model": self.cfg.model, "input": batch}))
                .timeout(Duration::from_secs(
                    self.cfg.first_token_timeout_secs.max(1),
                ));
            if let Some(k) = &self.cfg.api_key {
                rb = rb.bearer_auth(k.expose_secret());
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| EmbedError::Endpoint(e.to_string()))?;
            let status = resp.status();
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| EmbedError::Endpoint(e.to_string()))?;
            if !status.is_success() {
                return Err(EmbedError::Endpoint(format!(
                    "HTTP {status}: {}",
                    v["error"]["message"]
                )));
            }
            let mut data: Vec<(u64, Vec<f32>)> = v["data"]
                .as_array()
                .ok_or_else(|| EmbedError::Endpoint("no data list".into()))?
                .iter()
                .map(|d| {
                    let idx = d["index"].as_u64().unwrap_or(0);
                    let vec = d["embedding"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_f64())
                                .map(|x| x as f32)
                                .collect()
                        })
                        .unwrap_or_default();
                    (idx, vec)
                })
                .collect();
            data.sort_by_key(|(i, _)| *i);
            if data.len() != batch.len() {
                return Err(EmbedError::Endpoint(format!(
                    "{} vectors for {} texts",
                    data.len(),
                    batch.len()
                )));
            }
            for (_, mut v) in data {
                normalize(&mut v);
                out.push(v);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_runtime_and_model_are_errors_naming_the_setup_command() {
        let dir = tempfile::tempdir().unwrap();
        let e = LocalEmbedder::load(dir.path(), &dir.path().join("libonnxruntime.so"), None)
            .err()
            .unwrap();
        assert!(matches!(e, EmbedError::RuntimeMissing { .. }));
        assert!(e.to_string().contains(".ci/setup-models.sh"));
        let lib = dir.path().join("lib.so");
        std::fs::write(&lib, b"x").unwrap();
        let e = LocalEmbedder::load(dir.path(), &lib, None).err().unwrap();
        assert!(matches!(e, EmbedError::ModelMissing { .. }), "{e}");
    }

    #[test]
    fn the_quantized_copy_is_used_only_when_it_is_not_older_than_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.onnx");
        let quantized = dir.path().join(QUANTIZED_FILE);
        std::fs::write(&model, b"fp32").unwrap();
        assert_eq!(quantized_model(dir.path()), None, "no copy");
        std::fs::write(&quantized, b"int8").unwrap();
        let now = std::time::SystemTime::now();
        let set = |p: &Path, t: std::time::SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        set(&model, now);
        set(&quantized, now + Duration::from_secs(5));
        assert_eq!(quantized_model(dir.path()), Some(quantized.clone()));
        // The model was replaced after the copy was made: the copy may be of another model.
        set(&model, now + Duration::from_secs(60));
        assert_eq!(quantized_model(dir.path()), None);
    }

    #[test]
    fn normalize_makes_unit_vectors() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }
}
