//! OCR: the vision model (OpenAI-compatible chat with an image part as a base64 data URL) is
//! the primary path; the `tesseract` CLI is the fallback when no vision endpoint answers. Each
//! tesseract run has its own time limit and a cap on what it prints. A page that yields no
//! text is reported as [`DocError::NoText`], not stored as an empty page.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use secrecy::ExposeSecret;

use super::DocError;
use crate::settings::Endpoint;

/// The prompt sent with every page image.
pub const OCR_PROMPT: &str = "Transcribe this page faithfully as Markdown. Keep headings, lists, \
tables and numbers exactly as written; do not summarize, translate or add commentary. If the \
image has no text, describe what it shows in one or two sentences.";

/// An OCR engine.
#[async_trait]
pub trait Ocr: Send + Sync {
    /// Short name for `/files` ("vision model", "tesseract").
    fn name(&self) -> &'static str;

    /// Transcribes one image.
    async fn transcribe(&self, image: &[u8], mime: &str) -> Result<String, DocError>;
}

/// The vision model behind an OpenAI-compatible endpoint.
pub struct VisionOcr {
    /// Endpoint settings.
    cfg: Endpoint,
    /// HTTP client.
    http: reqwest::Client,
    /// Retries per page.
    retries: usize,
}

impl VisionOcr {
    /// A client for `cfg`.
    pub fn new(cfg: Endpoint, retries: usize) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .build()
            .expect("a plain reqwest client builds");
        Self { cfg, http, retries }
    }

    /// Whether the endpoint answers `/models`.
    pub async fn is_healthy(&self) -> bool {
        crate::llm::OpenAiEndpoint::new(self.cfg.clone())
            .models()
            .await
            .is_ok()
    }

    async fn once(&self, image: &[u8], mime: &str) -> Result<String, DocError> {
        let data_url = format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(image)
        );
        let body = serde_json::json!({
            "model": self.cfg.model,
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "text", "text": OCR_PROMPT},
                    {"type": "image_url", "image_url": {"url": data_url}}
                ]
            }],
            "max_tokens": 2048,
            "temperature": 0.0,
            "stream": false
        });
        let mut rb = self
            .http
            .post(format!(
                "{}/chat/completions",
                self.cfg.url.trim_end_matches('/')
            ))
            .json(&body)
            .timeout(Duration::from_secs(
                self.cfg.first_token_timeout_secs.max(1),
            ));
        if let Some(k) = &self.cfg.api_key {
            rb = rb.bearer_auth(k.expose_secret());
        }
        let resp = rb.send().await.map_err(|e| DocError::Ocr {
            reason: format!("vision endpoint {}: {}", self.cfg.url, innermost(&e)),
        })?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.map_err(|e| DocError::Ocr {
            reason: format!("vision endpoint answered HTTP {status} with a bad body: {e}"),
        })?;
        if !status.is_success() {
            return Err(DocError::Ocr {
                reason: format!(
                    "vision endpoint answered HTTP {status}: {}",
                    v["error"]["message"]
                ),
            });
        }
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| DocError::Ocr {
                reason: "vision endpoint sent no message content".into(),
            })?;
        readable(strip_fences(text))
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// A transcription, or [`DocError::NoText`] when there is nothing in it.
fn readable(text: String) -> Result<String, DocError> {
    if text.trim().is_empty() {
        return Err(DocError::NoText);
    }
    Ok(text)
}

/// Vision models like to wrap a transcription in a ```markdown fence; unwrap it.
fn strip_fences(text: &str) -> String {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let body = rest.split_once('\n').map(|(_, b)| b).unwrap_or("");
        return body.trim_end().trim_end_matches("```").trim().to_string();
    }
    t.to_string()
}

#[async_trait]
impl Ocr for VisionOcr {
    fn name(&self) -> &'static str {
        "vision model"
    }

    async fn transcribe(&self, image: &[u8], mime: &str) -> Result<String, DocError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_times(self.retries)
            .with_jitter();
        (|| self.once(image, mime))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            // A page with no text has none the next time either.
            .when(|e| *e != DocError::NoText)
            .notify(
                |e, d| tracing::warn!(error = %e, retry_in = ?d, "OCR request failed; retrying"),
            )
            .await
    }
}

/// One page's tesseract run: its own limit, inside the parse limit (a page takes about a
/// second on 2 cores).
pub const TESSERACT_LIMIT: Duration = Duration::from_secs(60);

/// Most bytes tesseract may print for one page (a dense page is a few KB).
const MAX_PAGE_TEXT: u64 = 1 << 20;

/// The `tesseract` command-line OCR (Debian `tesseract-ocr`).
pub struct TesseractOcr {
    /// Languages, e.g. `eng`.
    lang: String,
    /// Per-page time limit.
    limit: Duration,
}

impl TesseractOcr {
    /// A tesseract runner if the binary is installed.
    pub async fn detect(lang: &str, limit: Duration) -> Option<Self> {
        let ok = tokio::process::Command::new("tesseract")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Self {
            lang: lang.to_string(),
            limit: limit.min(TESSERACT_LIMIT),
        })
    }
}

#[async_trait]
impl Ocr for TesseractOcr {
    fn name(&self) -> &'static str {
        "tesseract"
    }

    async fn transcribe(&self, image: &[u8], mime: &str) -> Result<String, DocError> {
        let ext = mime.rsplit('/').next().unwrap_or("png");
        let dir = tempfile::tempdir().map_err(|e| DocError::Io(e.to_string()))?;
        let path = dir.path().join(format!("page.{ext}"));
        std::fs::write(&path, image).map_err(|e| DocError::Io(e.to_string()))?;
        let args: Vec<&std::ffi::OsStr> = vec![
            path.as_os_str(),
            "-".as_ref(),
            "-l".as_ref(),
            self.lang.as_ref(),
        ];
        let out = super::extract::run_tool("tesseract", &args, self.limit, MAX_PAGE_TEXT, || {
            super::extract::expands("tesseract")
        })
        .await?;
        if !out.status.success() {
            return Err(DocError::Ocr {
                reason: format!(
                    "tesseract failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
            });
        }
        readable(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_unwrapped() {
        assert_eq!(
            strip_fences("```markdown\n# Invoice\nTotal 5\n```"),
            "# Invoice\nTotal 5"
        );
        assert_eq!(strip_fences("plain"), "plain");
    }

    #[test]
    fn a_blank_transcription_is_no_text() {
        assert_eq!(readable(" \n ".into()), Err(DocError::NoText));
        assert_eq!(readable("Total 5".into()), Ok("Total 5".into()));
    }
}
