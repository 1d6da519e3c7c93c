//! `anchorbot doctor`: checks the configuration, the data directory, the store, the document
//! tools and every model endpoint, and says what each endpoint serves; then each chat
//! platform's own checks (its [`anchorbot_platform::doctor::Doctor`], from [`crate::adapters::doctors`]). Secrets are never
//! printed.

use std::fmt::Write as _;
use std::path::Path;

use crate::llm::OpenAiEndpoint;
use crate::settings::Settings;

pub use anchorbot_platform::doctor::{Check, CheckState};

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![data_dir(&settings.data_dir)];
    if settings.store_location().is_database() {
        checks.push(database(settings).await);
    }
    if let Some(path) = &settings.reasoning.tokenizer {
        let name = format!("tokenizer {}", path.display());
        checks.push(match crate::llm::tokens::Tiktoken::from_file(path) {
            Ok(t) => Check {
                name,
                state: CheckState::Pass,
                detail: format!(
                    "loaded; exact budgets ({} tokens in \"hello world\")",
                    t.encode("hello world").len()
                ),
            },
            Err(e) => Check {
                name,
                state: CheckState::Fail,
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
        if role == "reasoning" && ep.is_embedded() {
            checks.push(embedded_model(&ep, budget).await);
            continue;
        }
        let mut check = endpoint(
            role,
            &ep,
            settings.max_input_tokens,
            settings.max_output_tokens,
        )
        .await;
        // Tesseract reads scans and images without the vision endpoint (more slowly and less
        // well), so a missing one is worth a warning, not a failed set-up.
        if role == "vision" && check.state == CheckState::Fail {
            if tesseract {
                check.state = CheckState::Warn;
                check
                    .detail
                    .push_str("; scans and images are read with tesseract meanwhile");
            } else {
                check.detail.push_str(
                    "; scans and images cannot be read until it is up (or tesseract-ocr is installed)",
                );
            }
        }
        checks.push(check);
    }
    for platform in crate::adapters::doctors(settings) {
        checks.extend(platform.checks().await);
    }
    checks
}

/// Loads the embedded model (`reasoning.url = "embedded"`) and says what it is and what it is
/// for; `budget` is input plus output tokens.
async fn embedded_model(ep: &crate::settings::Endpoint, budget: usize) -> Check {
    let path = ep.embedded_model_path();
    let name = format!("reasoning model (embedded) {}", path.display());
    let file = path.clone();
    let loaded =
        tokio::task::spawn_blocking(move || crate::llm::embedded::EmbeddedModel::load(&file)).await;
    match loaded {
        Ok(Ok(model)) => {
            let context = model.context_length();
            let mut detail = format!(
                "loaded {} (context {context} tokens); it runs on this machine's CPU and is for trying anchorbot out: set reasoning.url (ANCHORBOT_REASONING_URL) to a model server for a team",
                model.name()
            );
            if budget as u64 > context {
                // The engine shrinks the budgets to fit; say so rather than fail.
                let _ = write!(
                    detail,
                    "; max_input_tokens + max_output_tokens ({budget}) are shrunk to fit it"
                );
            }
            Check {
                name,
                state: CheckState::Pass,
                detail,
            }
        }
        Ok(Err(e)) => Check {
            name,
            state: CheckState::Fail,
            detail: format!(
                "{e}; run .ci/setup.sh (it puts SmolLM2-135M-Instruct there), set reasoning.embedded_model, or set reasoning.url (ANCHORBOT_REASONING_URL) to a model server"
            ),
        },
        Err(e) => Check {
            name,
            state: CheckState::Fail,
            detail: format!("loading stopped: {e}"),
        },
    }
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

/// Checks one endpoint: which server it is, what it serves, the context length that applies
/// (and where it came from), how cut answers are continued, and, when something mismatches,
/// the exact value to set. `input` and `output` are `max_input_tokens` and `max_output_tokens`.
async fn endpoint(
    role: &str,
    ep: &crate::settings::Endpoint,
    input: usize,
    output: usize,
) -> Check {
    use crate::llm::facts::{ResumeWire, ServerKind};
    let client = OpenAiEndpoint::new(ep.clone());
    let name = format!("{role} endpoint {}", ep.url);
    let found = match client.probe().await {
        Ok(found) => found,
        Err(e) => {
            return Check {
                name,
                state: CheckState::Fail,
                detail: e.to_string(),
            }
        }
    };
    let ids: Vec<&str> = found.models.iter().map(|m| m.id.as_str()).collect();
    let mut detail = format!("{}; serves: {}", found.kind.label(), ids.join(", "));
    if role == "reasoning" {
        detail.push_str(&context_advice(&found, input, output));
        detail.push_str(match client.resume_wire() {
            ResumeWire::VllmFlags => "; cut answers are resumed in place (continue_final_message)",
            ResumeWire::FinalAssistant => {
                "; cut answers are resumed in place (the request ends with the partial answer)"
            }
            ResumeWire::None => "; cut answers are continued by instruction",
        });
    }
    let served = ids.contains(&ep.model.as_str());
    let ok = if served {
        true
    } else if found.kind.answers_any_name() {
        let _ = write!(
            detail,
            "; it serves its one model under any name, so {:?} is answered by {}",
            ep.model,
            ids.first().copied().unwrap_or("it")
        );
        true
    } else {
        let first = ids.first().copied().unwrap_or("<a model it serves>");
        let _ = write!(
            detail,
            "; configured model {:?} is not served: set {role}.model = \"{first}\" (or ANCHORBOT_{}_MODEL={first})",
            ep.model,
            role.to_uppercase()
        );
        // A server of unknown kind with one model may answer any name, as before.
        found.kind == ServerKind::Unknown && ids.len() == 1
    };
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
}

/// Which context length applies to the reasoning endpoint, where it came from, and the
/// values to set when `input + output` exceed it.
fn context_advice(found: &crate::llm::facts::EndpointFacts, input: usize, output: usize) -> String {
    let sum = input + output;
    let Some(ctx) = found.context_length.map(|c| c as usize) else {
        let started = if found.kind == crate::llm::facts::ServerKind::LlamaCppPython {
            " (llama-cpp-python's --n_ctx; .ci/local-llm.sh starts it with 4096: set max_input_tokens = 3072 and max_output_tokens = 1024)"
        } else {
            ""
        };
        return format!(
            "; it does not report its context length, so the settings apply: keep max_input_tokens + max_output_tokens ({sum}) within the context it was started with{started}"
        );
    };
    let mut advice = format!("; context {ctx} ({})", found.context_source.describe());
    if sum > ctx {
        // The same split the engine falls back to: output kept unless it leaves no room.
        let out = if output + 256 > ctx {
            (ctx / 4).max(1)
        } else {
            output
        };
        let _ = write!(
            advice,
            "; max_input_tokens + max_output_tokens ({sum}) exceed it and are shrunk per turn: set max_input_tokens = {} and max_output_tokens = {out} (context {ctx})",
            ctx - out
        );
    }
    advice
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
            state: CheckState::passes(found || !needed),
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
            state: CheckState::passes(missing.is_empty()),
            detail: if missing.is_empty() {
                "present (documents can be indexed offline)".into()
            } else {
                format!("missing {}; run .ci/setup.sh", missing.join(", "))
            },
        });
    }
    checks
}

/// How long the database check waits for a connection.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks that the database answers (connecting runs its migrations, as the bot's start
/// does), and counts its conversations, the replicas running on it (live liveness leases)
/// and the events accepted and not answered yet. The password is never in the detail.
async fn database(settings: &Settings) -> Check {
    let location = settings.store_location();
    let name = location.describe();
    let check = async {
        let storage = location.open().await?;
        storage.maintenance.ready().await?;
        let conversations = storage.maintenance.sizes().await?.len();
        let replicas = storage
            .leases
            .count(&crate::replica::budget::replica_prefix())
            .await?;
        let waiting = storage.journal.pending().await?.len();
        Ok::<_, crate::storage::StorageError>((conversations, replicas, waiting))
    };
    let (ok, detail) = match tokio::time::timeout(DATABASE_WAIT, check).await {
        Ok(Ok((n, replicas, waiting))) => (
            true,
            format!(
                "connected; schema up to date; {} stored; {} running on it; {} accepted and not answered yet",
                crate::commands::counted(n as u64, "conversation", "conversations"),
                crate::commands::counted(replicas as u64, "replica", "replicas"),
                crate::commands::counted(waiting as u64, "event", "events"),
            ),
        ),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!(
                "no answer within {} s; check the host, port and firewall",
                DATABASE_WAIT.as_secs()
            ),
        ),
    };
    // A driver may quote what it was given; the password never leaves in a report.
    let detail = crate::ops::logging::secrets_of(settings)
        .iter()
        .fold(detail, |d, secret| d.replace(secret.as_str(), "[redacted]"));
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
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
                state: CheckState::Pass,
                detail: format!("writable; {version}"),
            }
        }
        Err(e) => Check {
            name,
            state: CheckState::Fail,
            detail: format!("not writable: {e}"),
        },
    }
}
