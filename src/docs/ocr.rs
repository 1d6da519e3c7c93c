//! OCR: the vision model (OpenAI-compatible chat with an image part as a base64 data URL) is
//! the primary path; the `tesseract` CLI is the fallback when no vision endpoint answers. Each
//! tesseract run has its own time limit and a cap on what it prints. A page that yields no
//! text is reported as [`DocError::NoText`], not stored as an empty page.
//!
//! [`Documents`] picks the OCR for a document page by page ([`PageOcr`]): the vision model first,
//! tesseract for the rest once the vision endpoint fails; scanned PDF pages are read a few at a
//! time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use tokio::sync::{watch, OnceCell};

use super::ingest::ReadPage;
use super::store::PageSource;
use super::{extract, DocError, Documents};
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
            .when(|e| !matches!(e, DocError::NoText))
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
        let dir = tempfile::tempdir().map_err(DocError::Io)?;
        let path = dir.path().join(format!("page.{ext}"));
        std::fs::write(&path, image).map_err(DocError::Io)?;
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

/// OCR chosen page by page: the vision model first, and tesseract for the rest of the
/// document once the vision endpoint fails (or from the start when it does not answer).
pub(super) struct PageOcr {
    /// The vision model, unless OCR is set to tesseract only.
    vision: Option<VisionOcr>,
    /// Set once the vision endpoint failed during this document.
    vision_down: AtomicBool,
    /// Whether tesseract may read (not when OCR is set to the vision model only).
    fallback: bool,
    /// tesseract if installed, looked for on first need.
    tesseract: OnceCell<Option<TesseractOcr>>,
    /// tesseract languages.
    lang: String,
    /// tesseract's time limit per page.
    limit: Duration,
}

impl PageOcr {
    async fn tesseract(&self) -> Option<&TesseractOcr> {
        if !self.fallback {
            return None;
        }
        self.tesseract
            .get_or_init(|| TesseractOcr::detect(&self.lang, self.limit))
            .await
            .as_ref()
    }

    /// Reads one image; returns its text and the name of the engine that read it.
    async fn read(&self, image: &[u8], mime: &str) -> Result<(String, &'static str), DocError> {
        let mut vision_error = None;
        if let Some(vision) = &self.vision {
            // Once the endpoint failed, tesseract reads the rest; without it, keep asking.
            let skip = self.vision_down.load(Ordering::Relaxed) && self.tesseract().await.is_some();
            if !skip {
                match vision.transcribe(image, mime).await {
                    Ok(text) => return Ok((text, vision.name())),
                    // A blank page: the endpoint worked, there is just nothing to read.
                    Err(DocError::NoText) => return Err(DocError::NoText),
                    Err(e) => {
                        if self.fallback && !self.vision_down.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "the vision endpoint failed; tesseract reads the rest of this document");
                        }
                        vision_error = Some(e);
                    }
                }
            }
        }
        match self.tesseract().await {
            Some(t) => t.transcribe(image, mime).await.map(|text| (text, t.name())),
            None => Err(vision_error.unwrap_or_else(|| DocError::Ocr {
                reason: "no OCR is available (vision endpoint down, tesseract not installed)"
                    .into(),
            })),
        }
    }
}

#[async_trait::async_trait]
impl Ocr for PageOcr {
    /// The engine that reads the next page.
    fn name(&self) -> &'static str {
        let tesseract_ready = matches!(self.tesseract.get(), Some(Some(_)));
        match &self.vision {
            Some(v) if !self.vision_down.load(Ordering::Relaxed) || !tesseract_ready => v.name(),
            _ => "tesseract",
        }
    }

    async fn transcribe(&self, image: &[u8], mime: &str) -> Result<String, DocError> {
        self.read(image, mime).await.map(|(text, _)| text)
    }
}

impl Documents {
    /// The OCR for one document: the vision model if it answers, tesseract (if installed)
    /// for the pages after the vision endpoint fails; `None` when neither can read.
    pub(super) async fn ocr_engine(&self) -> Option<Arc<dyn Ocr>> {
        self.page_ocr().await.map(|o| o as Arc<dyn Ocr>)
    }

    /// The page-by-page OCR chooser for one document, as [`Documents::ocr_engine`].
    pub(super) async fn page_ocr(&self) -> Option<Arc<PageOcr>> {
        use crate::settings::OcrChoice;
        let ocr = PageOcr {
            vision: (self.cfg.ocr != OcrChoice::Tesseract)
                .then(|| VisionOcr::new(self.vision.clone(), self.cfg.ocr_retries)),
            vision_down: AtomicBool::new(false),
            fallback: self.cfg.ocr != OcrChoice::Vision,
            tesseract: OnceCell::new(),
            lang: self.cfg.tesseract_lang.clone(),
            limit: Duration::from_secs(self.cfg.parse_timeout_secs),
        };
        if let Some(vision) = &ocr.vision {
            if !vision.is_healthy().await {
                if !ocr.fallback {
                    return None;
                }
                tracing::warn!(url = %self.vision.url, "vision endpoint unavailable; trying tesseract for OCR");
                ocr.vision_down.store(true, Ordering::Relaxed);
            }
        }
        let vision_usable = ocr.vision.is_some() && !ocr.vision_down.load(Ordering::Relaxed);
        if !vision_usable && ocr.tesseract().await.is_none() {
            return None;
        }
        Some(Arc::new(ocr))
    }
    /// OCRs `need` pages of a PDF, at most `ocr_concurrency` at a time, yielding each page as
    /// it completes so it can be stored at once (a crash loses at most the pages in flight).
    pub(super) fn ocr_pages<'a>(
        &'a self,
        name: &'a str,
        pdf: &'a (std::path::PathBuf, extract::PdfInfo),
        need: Vec<u32>,
        ocr: Option<Arc<PageOcr>>,
        progress: &'a watch::Sender<String>,
    ) -> impl futures_util::Stream<Item = ReadPage> + 'a {
        let (path, info) = (&pdf.0, &pdf.1);
        let parse_limit = Duration::from_secs(self.cfg.parse_timeout_secs);
        let total = info.pages;
        let done = Arc::new(std::sync::atomic::AtomicU32::new(0));
        futures_util::stream::iter(need)
            .map(move |p| {
                let ocr = ocr.clone();
                let done = done.clone();
                async move {
                    let source_text = match &ocr {
                        None => Err(DocError::Ocr {
                            reason: "no OCR is available (vision endpoint down, tesseract not installed)".into(),
                        }),
                        Some(ocr) => match extract::pdf_render_page(path, p, self.cfg.ocr_dpi, self.cfg.ocr_max_side_px, info, parse_limit).await {
                            Ok(png) => ocr.read(&png, "image/png").await,
                            Err(e) => Err(e),
                        },
                    };
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let _ = progress.send(format!("Reading {name}: page {p}/{total} ({n} scanned pages read)"));
                    match source_text {
                        Ok((text, engine)) => ReadPage {
                            page: p,
                            text,
                            source: PageSource::Ocr { engine: engine.into() },
                        },
                        Err(e) => {
                            tracing::warn!(document = name, page = p, error = %e, "page could not be read");
                            ReadPage {
                                page: p,
                                text: String::new(),
                                source: PageSource::Failed { reason: e.to_string() },
                            }
                        }
                    }
                }
            })
            .buffer_unordered(self.cfg.ocr_concurrency.max(1))
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
        assert!(matches!(readable(" \n ".into()), Err(DocError::NoText)));
        assert_eq!(readable("Total 5".into()).ok().as_deref(), Some("Total 5"));
    }
}
