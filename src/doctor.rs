//! `anchorbot doctor`: checks the configuration, the data directory and every endpoint, and
//! says what each endpoint serves.

use std::fmt::Write as _;
use std::path::Path;

use crate::llm::OpenAiEndpoint;
use crate::settings::Settings;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details.
    pub detail: String,
}

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![data_dir(&settings.data_dir)];
    if let Some(path) = &settings.reasoning.tokenizer {
        let name = format!("tokenizer {}", path.display());
        checks.push(match crate::tokens::Tiktoken::from_file(path) {
            Ok(t) => Check {
                name,
                ok: true,
                detail: format!(
                    "loaded; exact budgets ({} tokens in \"hello world\")",
                    t.encode("hello world").len()
                ),
            },
            Err(e) => Check {
                name,
                ok: false,
                detail: e.to_string(),
            },
        });
    }
    checks.extend(document_tools(settings).await);
    let endpoints = settings
        .reasoning
        .with_fallbacks()
        .into_iter()
        .map(|e| ("reasoning", e))
        .chain(
            settings
                .vision
                .with_fallbacks()
                .into_iter()
                .map(|e| ("vision", e)),
        );
    let budget = settings.max_input_tokens + settings.max_output_tokens;
    let tesseract = installed("tesseract", "--version").await;
    for (role, ep) in endpoints {
        let mut check = endpoint(role, &ep, budget).await;
        if role == "vision" && !check.ok {
            check.detail.push_str(if tesseract {
                "; scans and images are read with tesseract meanwhile"
            } else {
                "; scans and images cannot be read until it is up (or tesseract-ocr is installed)"
            });
        }
        checks.push(check);
    }
    checks
}

/// Whether `tool` runs.
async fn installed(tool: &str, arg: &str) -> bool {
    tokio::process::Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok()
}

/// Checks one endpoint and lists what it serves; `budget` is input plus output tokens.
async fn endpoint(role: &str, ep: &crate::settings::Endpoint, budget: usize) -> Check {
    let client = OpenAiEndpoint::new(ep.clone());
    let name = format!("{role} endpoint {}", ep.url);
    match client.models().await {
        Ok(models) => {
            let mut detail = String::from("serves:");
            for m in &models {
                let _ = write!(detail, " {}", m.id);
                if let Some(len) = m.max_model_len {
                    let _ = write!(detail, " (max_model_len {len})");
                }
            }
            if ep.continuation != crate::settings::ContinuationMode::Instruction
                && models.iter().any(|m| m.owned_by.as_deref() == Some("vllm"))
            {
                detail.push_str("; vLLM: cut answers are resumed in place");
            }
            if role == "reasoning" && models.iter().all(|m| m.max_model_len.is_none()) {
                // llama.cpp and most non-vLLM servers: nothing shrinks the budgets automatically.
                let _ = write!(
                    detail,
                    "; it does not report its context length: keep max_input_tokens + max_output_tokens ({budget}) within it"
                );
            }
            let has = models.iter().any(|m| m.id == ep.model);
            if !has {
                let _ = write!(
                    detail,
                    "; configured model {:?} is not among them",
                    ep.model
                );
            }
            Check {
                name,
                ok: has || models.len() == 1,
                detail,
            }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// Checks what documents need: poppler, tesseract (optional), the embedding model.
async fn document_tools(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    for (tool, arg, needed, what) in [
        (
            "pdftotext",
            "-v",
            true,
            "PDF text layers (Debian poppler-utils)",
        ),
        (
            "pdftoppm",
            "-v",
            true,
            "rasterizing scanned pages (Debian poppler-utils)",
        ),
        (
            "tesseract",
            "--version",
            false,
            "OCR fallback (Debian tesseract-ocr)",
        ),
    ] {
        let found = installed(tool, arg).await;
        checks.push(Check {
            name: format!("{tool}: {what}"),
            ok: found || !needed,
            detail: if found {
                "installed".into()
            } else {
                "not installed; run .ci/setup.sh".into()
            },
        });
    }
    let d = &settings.documents;
    if d.embedder == crate::settings::EmbedderKind::Local {
        let missing: Vec<String> = crate::docs::embed::MODEL_FILES
            .iter()
            .map(|f| d.model_dir.join(f))
            .chain([d.onnxruntime.clone()])
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        checks.push(Check {
            name: format!("embedding model {}", d.model_dir.display()),
            ok: missing.is_empty(),
            detail: if missing.is_empty() {
                "present (documents can be indexed offline)".into()
            } else {
                format!("missing {}; run .ci/setup.sh", missing.join(", "))
            },
        });
    }
    checks
}

/// Checks that the data directory exists (or can be created) and is writable.
fn data_dir(dir: &Path) -> Check {
    let name = format!("data dir {}", dir.display());
    let probe = dir.join(".anchorbot-doctor-probe");
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => {
            let version = if dir.join("db").exists() {
                "store present"
            } else {
                "no store yet"
            };
            Check {
                name,
                ok: true,
                detail: format!("writable; {version}"),
            }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("not writable: {e}"),
        },
    }
}
