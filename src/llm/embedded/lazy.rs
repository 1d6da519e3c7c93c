//! The embedded model as the app holds it: loaded on first use (or by [`LazyEmbedded::preload`]
//! at start), so commands that never ask the model (`status`, `ingest`, `export`) work without
//! the file, and a missing file is a clear answer ("run .ci/setup.sh") rather than a failed
//! start. A load that failed is tried again on the next request, so running the set-up while
//! the bot runs is enough.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::EmbeddedModel;
use crate::llm::{ChatBackend, ChatRequest, ItemStream, LlmError, ServerFacts};

/// The embedded model, loaded when first needed.
pub struct LazyEmbedded {
    /// The GGUF file.
    path: PathBuf,
    /// The model once loaded.
    model: OnceCell<Arc<EmbeddedModel>>,
}

impl std::fmt::Debug for LazyEmbedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyEmbedded")
            .field("path", &self.path)
            .field("loaded", &self.model.initialized())
            .finish()
    }
}

impl LazyEmbedded {
    /// The model in `path`, not loaded yet.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            model: OnceCell::new(),
        }
    }

    /// The GGUF file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's name (what `/status` and `doctor` call the model).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// Loads the model now (off the async workers); a failure is logged, and the first request
    /// tries again and reports it.
    pub async fn preload(&self) {
        if let Err(e) = self.model().await {
            tracing::warn!(error = %e, "the embedded model is not loaded");
        }
    }

    /// The loaded model, loading it on the blocking pool the first time.
    async fn model(&self) -> Result<&Arc<EmbeddedModel>, LlmError> {
        self.model
            .get_or_try_init(|| async {
                let path = self.path.clone();
                let started = std::time::Instant::now();
                let model = tokio::task::spawn_blocking(move || EmbeddedModel::load(&path))
                    .await
                    .map_err(|e| LlmError::ModelFile {
                        path: self.path.display().to_string(),
                        reason: format!("loading stopped: {e}"),
                    })?
                    .map_err(|e| LlmError::ModelFile {
                        path: self.path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                tracing::info!(
                    model = model.name(),
                    load_ms = started.elapsed().as_millis() as u64,
                    "the model runs in this process"
                );
                Ok(Arc::new(model))
            })
            .await
    }
}

#[async_trait]
impl ChatBackend for LazyEmbedded {
    async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
        self.model().await?.stream(request).await
    }

    async fn facts(&self) -> ServerFacts {
        match self.model().await {
            Ok(m) => m.facts().await,
            Err(_) => ServerFacts::default(),
        }
    }

    fn health(&self) -> Vec<(String, bool)> {
        let usable = self.model.initialized() || self.path.is_file();
        vec![(format!("embedded: {}", self.name()), usable)]
    }

    fn describe(&self) -> String {
        format!("{} (embedded, in this process)", self.name())
    }

    async fn count_prompt(&self, request: &ChatRequest) -> Option<usize> {
        self.model().await.ok()?.count_prompt(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatMessage, Role};

    #[tokio::test]
    async fn a_missing_file_is_an_answer_that_says_what_to_run_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.gguf");
        let lazy = LazyEmbedded::new(path.clone());
        assert_eq!(
            lazy.health(),
            vec![("embedded: missing.gguf".into(), false)]
        );
        let request = ChatRequest {
            messages: vec![ChatMessage::new(Role::User, "hi")],
            max_tokens: 4,
            ..ChatRequest::default()
        };
        let e = match lazy.stream(&request).await {
            Err(e) => e,
            Ok(_) => panic!("a missing model cannot stream"),
        };
        assert!(matches!(e, LlmError::ModelFile { .. }), "{e:?}");
        assert!(e.to_string().contains("missing.gguf"), "{e}");
        assert!(
            e.user_reason().contains(".ci/setup.sh"),
            "{}",
            e.user_reason()
        );
        assert!(!lazy.facts().await.reported);
        // Not remembered as failed: a file that appears later is tried (and here refused as
        // not a GGUF model, which is again a clear error rather than a panic).
        std::fs::write(&path, b"not a model").unwrap();
        assert_eq!(lazy.health(), vec![("embedded: missing.gguf".into(), true)]);
        let e = match lazy.stream(&request).await {
            Err(e) => e,
            Ok(_) => panic!("a broken model cannot stream"),
        };
        assert!(e.to_string().contains("not usable"), "{e}");
    }
}
