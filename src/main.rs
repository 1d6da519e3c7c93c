//! The `anchorbot` command line: parses arguments, loads settings, builds the [`App`] and
//! runs the chosen command. With no command it opens the console conversation.
#![forbid(unsafe_code)]

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anchorbot::commands::Command;
use anchorbot::docs::SearchMode;
use anchorbot::engine::Outcome;
use anchorbot::ops;
use anchorbot::{App, Settings};
use anchorbot_console::{message_event, Console, ConsolePlatform};
use anchorbot_platform::{Author, ConversationKey};
use anyhow::Context;
use clap::{Parser, Subcommand};
use cli::ask_output::AskOutput;
use cli::between_turns::{BetweenTurns, NoticeLine};
use tokio::io::BufReader;

/// Prints a line to stdout; a closed pipe (`anchorbot status | head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "anchorbot",
    version,
    about = "A self-hosted AI teammate with durable per-conversation memory"
)]
struct Cli {
    /// Config file (TOML). Defaults to ./anchorbot.toml when present.
    #[arg(long, global = true, env = "ANCHORBOT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Interactive console conversation: each line is a message; /help lists commands.
    Chat {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
        /// Show the model's reasoning (dimmed, on stderr) apart from the answer.
        #[arg(long)]
        show_reasoning: bool,
    },
    /// Ask one question, stream the answer to stdout, exit non-zero on failure.
    Ask {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
        /// Show the model's reasoning (on stderr) apart from the answer.
        #[arg(long)]
        show_reasoning: bool,
        /// The question.
        question: String,
    },
    /// Show a conversation's anchor.
    Status {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reset a conversation: delete its documents and memory.
    Clear {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
    },
    /// Add files to a conversation's documents (PDF, images, text, Markdown, CSV, HTML, code).
    Ingest {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
        /// Also read again the pages that failed in the conversation's documents (and resume
        /// interrupted ones) from the kept files; no file arguments needed.
        #[arg(long)]
        retry_failed: bool,
        /// Files to add (sharing a partly read file again resumes it).
        #[arg(required_unless_present = "retry_failed")]
        files: Vec<PathBuf>,
    },
    /// Search a conversation's documents.
    Search {
        /// Conversation name.
        #[arg(long, short, default_value = "default")]
        conversation: String,
        /// Chunks to show.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How to search (default: fused, or reranked with `documents.rerank = "llm"`).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// What to look for.
        query: String,
    },
    /// Check the configuration, the data directory and the model endpoints.
    Doctor,
    /// Write everything stored of a conversation: memory, turns, feedback, documents and
    /// their text.
    Export {
        /// Conversation: a key as `conversations` prints it, or a console conversation name.
        #[arg(long, short)]
        conversation: String,
        /// Markdown for people, or complete JSON.
        #[arg(long, value_enum, default_value = "md")]
        format: anchorbot::rights::export::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Erase everything of a conversation from the store and from the disk (stop the bot first).
    Forget {
        /// Conversation: a key as `conversations` prints it, or a console conversation name.
        #[arg(long, short)]
        conversation: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Back the whole store up into one file (stop the bot first).
    Backup {
        /// The backup file to write.
        file: PathBuf,
    },
    /// Replace the store with a backup (stop the bot first).
    Restore {
        /// The backup file to read.
        file: PathBuf,
        /// Replace a store that holds conversations.
        #[arg(long)]
        force: bool,
    },
    /// List the stored conversations with their last activity and size.
    Conversations {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Production entry point: run the configured platform adapters until stopped.
    Run,
    /// Manage the store itself.
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreCmd,
    },
}

/// `anchorbot store …`.
#[derive(Subcommand)]
enum StoreCmd {
    /// Copy the sled store of data_dir (anchors, documents, chunks, vectors, kept files) into
    /// a PostgreSQL database (stop the bot first).
    Copy {
        /// The database: a postgres:// URL (pass "$ANCHORBOT_DATABASE_URL" to keep the
        /// password out of your shell history).
        #[arg(long)]
        to: String,
        /// Copy into a database that already holds conversations, overwriting what both hold.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = !matches!(cli.command, Some(Cmd::Run));
    // The console's log goes to a file once the data dir is known: no colour codes in it.
    let chat = matches!(cli.command, None | Some(Cmd::Chat { .. }));
    let logging = match init_logging(quiet, !chat) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let redactor = logging.redactor.clone();
    let code = match runtime.block_on(run(cli, logging)) {
        Ok(code) => code,
        Err(e) => {
            redactor.tell(tracing::Level::ERROR, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    // A console read of standard input may still be blocked on a runtime thread after a
    // SIGTERM; it must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// Logs go to stderr (for `chat`, to a log file once the settings are read); `ANCHORBOT_LOG`
/// (or `RUST_LOG`) sets the filter and `ANCHORBOT_LOG_FORMAT=json` makes them JSON lines.
/// Secrets are redacted either way. `colour` allows ANSI colours on a terminal.
fn init_logging(
    quiet: bool,
    colour: bool,
) -> Result<ops::logging::Logging, ops::logging::BadLogFormat> {
    let default = if quiet { "warn" } else { "info" };
    let filter = std::env::var("ANCHORBOT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_string());
    let format =
        ops::logging::LogFormat::parse(std::env::var("ANCHORBOT_LOG_FORMAT").ok().as_deref())?;
    Ok(ops::logging::init(
        &filter,
        format,
        colour && std::io::stderr().is_terminal(),
        anchorbot::adapters::token_patterns(),
    ))
}

async fn run(cli: Cli, logging: ops::logging::Logging) -> anyhow::Result<ExitCode> {
    let redactor = logging.redactor.clone();
    let settings = Settings::load(cli.config.as_deref())?;
    redactor.set_secrets(ops::logging::secrets_of(&settings));
    let command = cli.command.unwrap_or(Cmd::Chat {
        conversation: "default".into(),
        show_reasoning: false,
    });
    // In the console, log lines would land inside the conversation: they go to a file, and
    // the warnings the user must act on are shown between turns.
    let notices = match &command {
        Cmd::Chat { .. } => Some(chat_log(&settings, &logging)),
        _ => None,
    };
    if let Cmd::Doctor = command {
        return doctor(&settings).await;
    }
    // The data-rights commands open the store themselves (forget and restore replace it).
    use anchorbot::rights::cli as rights;
    match &command {
        Cmd::Export {
            conversation,
            format,
            output,
        } => return Ok(rights::export(&settings, conversation, *format, output.as_deref()).await?),
        Cmd::Forget { conversation, yes } => {
            return Ok(rights::forget(&settings, conversation, *yes).await?)
        }
        Cmd::Backup { file } => return Ok(rights::backup(&settings, file).await?),
        Cmd::Restore { file, force } => return Ok(rights::restore(&settings, file, *force).await?),
        Cmd::Conversations { json } => return Ok(rights::conversations(&settings, *json).await?),
        Cmd::Store {
            action: StoreCmd::Copy { to, force },
        } => {
            redactor.set_secrets(
                ops::logging::secrets_of(&settings)
                    .into_iter()
                    .chain(anchorbot::storage::url_secrets(
                        &secrecy::SecretString::from(to.clone()),
                    ))
                    .chain([to.clone()])
                    .collect::<Vec<_>>(),
            );
            return Ok(rights::store_copy(&settings, to, *force).await?);
        }
        _ => {}
    }
    let user = settings.console_user.clone();
    if matches!(command, Cmd::Chat { .. } | Cmd::Run) {
        probe_model_server(&settings, &redactor, matches!(command, Cmd::Run)).await;
    }
    // The adapters' rate budget is shared through the store, so they follow its opening.
    let adapter_settings = matches!(command, Cmd::Run).then(|| settings.clone());
    let mut app = App::build(settings).await?;
    if let Some(s) = adapter_settings {
        for adapter in anchorbot::adapters::configured_on(&s, app.storage())? {
            app = app.with_adapter(adapter);
        }
    }
    match command {
        Cmd::Chat {
            conversation,
            show_reasoning,
        } => {
            let line = notices.expect("chat sets up its log");
            chat(app, &conversation, &user, show_reasoning, line).await
        }
        Cmd::Run => {
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ask {
            conversation,
            show_reasoning,
            question,
        } => ask(app, &conversation, &user, &question, show_reasoning).await,
        Cmd::Status { conversation, json } => {
            let report = app.engine().status(&key(&conversation)?).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                out!("{}", report.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clear { conversation } => {
            let text = app
                .engine()
                .run_command(&Command::Clear, &key(&conversation)?)
                .await?;
            out!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ingest {
            conversation,
            retry_failed,
            files,
        } => ingest(app, &conversation, &files, retry_failed).await,
        Cmd::Search {
            conversation,
            top_k,
            json,
            mode,
            query,
        } => search(app, &conversation, &query, top_k, json, mode).await,
        Cmd::Doctor
        | Cmd::Export { .. }
        | Cmd::Forget { .. }
        | Cmd::Backup { .. }
        | Cmd::Restore { .. }
        | Cmd::Conversations { .. }
        | Cmd::Store { .. } => unreachable!("handled above"),
    }
}

/// `anchorbot search --mode`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// Embedding similarity only.
    Dense,
    /// Words only (BM25).
    Lexical,
    /// Both, fused by reciprocal rank.
    Fused,
    /// Fused, then ordered by the reasoning model.
    Reranked,
}

fn key(name: &str) -> anyhow::Result<ConversationKey> {
    ConversationKey::console(name).with_context(|| format!("bad conversation name {name:?}"))
}

/// Sends the log to `<data_dir>/logs/anchorbot.log` and starts collecting the warnings to show
/// between turns. A log file that cannot be opened leaves the log on standard error.
fn chat_log(settings: &Settings, logging: &ops::logging::Logging) -> NoticeLine {
    let dir = settings.data_dir.join("logs");
    let path = match logging.to_file(&dir) {
        Ok(path) => path,
        Err(e) => {
            logging.redactor.tell(
                tracing::Level::WARN,
                &format!(
                    "cannot write the log file in {}: {e}; logging to standard error",
                    dir.display()
                ),
            );
            PathBuf::from("standard error")
        }
    };
    NoticeLine::new(logging.collect_notices().clone(), path)
}

async fn chat(
    app: App,
    conversation: &str,
    user: &str,
    show_reasoning: bool,
    notices: NoticeLine,
) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    // Named once, at the start of an interactive session (a warning line names it too); piped
    // sessions keep stderr for what the user must read.
    if interactive {
        eprintln!("anchorbot — conversation {conversation:?}. /help lists commands, /quit leaves.");
        eprintln!("Log: {}", notices.log().display());
    }
    let platform = Arc::new(ConsolePlatform::stdout().with_reasoning(show_reasoning));
    let console = Console::new(
        conversation,
        user,
        BufReader::new(tokio::io::stdin()),
        interactive,
        platform,
    )
    .with_context(|| format!("bad conversation name {conversation:?}"))?;
    app.with_adapter(Box::new(BetweenTurns::new(console, notices.clone())))
        .run_until_stopped(shutdown_signal())
        .await?;
    // Warnings from the end of the session (a summary that failed after the last answer).
    notices.show();
    Ok(ExitCode::SUCCESS)
}

async fn ask(
    app: App,
    conversation: &str,
    user: &str,
    question: &str,
    show_reasoning: bool,
) -> anyhow::Result<ExitCode> {
    if question.trim().is_empty() {
        eprintln!("error: the question is empty");
        return Ok(ExitCode::from(2));
    }
    let key = key(conversation)?;
    let author = Author {
        id: format!("console:{user}"),
        display_name: user.to_string(),
    };
    // stdout is for the answer only: failure notes go to stderr.
    let output = Arc::new(AskOutput::new(
        ConsolePlatform::stdout().with_reasoning(show_reasoning),
        Box::new(std::io::stderr()),
    ));
    let engine = app.engine();
    let outcome = engine
        .handle(message_event(&key, &author, question), output.clone())
        .await;
    // Summarization runs after the answer is delivered; let it finish before exiting.
    engine.drain_background().await;
    engine.store().flush().await?;
    let failed = |why: &dyn std::fmt::Display| {
        // The failure note already on stderr says it for the user.
        if !output.wrote_failure() {
            eprintln!("error: {why}");
        }
        ExitCode::FAILURE
    };
    Ok(match outcome {
        Outcome::Answered { .. } | Outcome::Command => ExitCode::SUCCESS,
        Outcome::Failed(why) => failed(&why),
        Outcome::Refused(why) => failed(&why),
        Outcome::Ignored | Outcome::Duplicate | Outcome::Stopped => ExitCode::from(2),
    })
}

async fn ingest(
    app: App,
    conversation: &str,
    files: &[PathBuf],
    retry_failed: bool,
) -> anyhow::Result<ExitCode> {
    let key = key(conversation)?;
    let engine = app.engine();
    let docs = app.documents();
    let mut failed = 0;
    let mut done = std::collections::HashSet::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let limit = docs.settings().max_file_bytes();
        let bytes = match std::fs::metadata(path) {
            Ok(m) if m.len() > limit => Err(format!(
                "the file is {} bytes, over the {limit}-byte limit",
                m.len()
            )),
            Ok(_) => std::fs::read(path).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        match ingest_one(&engine, &key, &name, &bytes).await {
            Some(id) => {
                done.insert(id);
            }
            None => failed += 1,
        }
    }
    if retry_failed {
        let conv = key.to_string();
        // Documents just shared above were resumed already.
        let todo: Vec<_> = docs
            .retry_candidates(&conv)
            .await?
            .into_iter()
            .filter(|d| !done.contains(&d.id))
            .collect();
        if todo.is_empty() {
            out!("Nothing to retry: no document in {conversation:?} has failed or unread pages.");
        }
        for doc in todo {
            let Some(bytes) = docs.store().source(&conv, &doc.id).await? else {
                eprintln!(
                    "error: {}: its file was not kept; share it again to resume it",
                    doc.name
                );
                failed += 1;
                continue;
            };
            let failed_pages = doc.failed_pages();
            if failed_pages.is_empty() {
                out!("Resuming {} ({}).", doc.name, doc.status.label());
            } else {
                let list: Vec<String> = failed_pages.iter().map(|p| p.to_string()).collect();
                out!(
                    "Retrying {}: page{} {}.",
                    doc.name,
                    if list.len() > 1 { "s" } else { "" },
                    list.join(", ")
                );
            }
            let report = ingest_one(&engine, &key, &doc.name, &bytes).await;
            if report.is_none() {
                failed += 1;
            }
        }
    }
    engine.store().flush().await?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Ingests one file, showing progress on a terminal and printing the summary line; returns
/// the document's id, or `None` after printing why it failed.
async fn ingest_one(
    engine: &anchorbot::engine::Engine,
    key: &ConversationKey,
    name: &str,
    bytes: &[u8],
) -> Option<String> {
    let (tx, mut rx) = tokio::sync::watch::channel(String::new());
    let show = std::io::stderr().is_terminal();
    let progress = tokio::spawn(async move {
        // Not on a terminal (a log, a pipe): one line per note, at most one a second.
        let mut last: Option<std::time::Instant> = None;
        while rx.changed().await.is_ok() {
            let note = rx.borrow_and_update().clone();
            if show {
                eprint!("\r\x1b[K{note}");
            } else if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                eprintln!("{note}");
                last = Some(std::time::Instant::now());
            }
        }
    });
    let result = engine.ingest_file(key, name, bytes, &tx).await;
    drop(tx);
    let _ = progress.await;
    if show {
        eprint!("\r\x1b[K");
    }
    match result {
        Ok(report) => {
            out!("{}", anchorbot::engine::ingest_summary(&report));
            Some(report.doc.id)
        }
        Err(e) => {
            eprintln!("error: {name}: {e}");
            None
        }
    }
}

async fn search(
    app: App,
    conversation: &str,
    query: &str,
    top_k: usize,
    json: bool,
    mode: Option<ModeArg>,
) -> anyhow::Result<ExitCode> {
    let key = key(conversation)?;
    let docs = app.documents();
    let hits = match mode {
        None => docs.search(&key.to_string(), query, top_k).await?,
        Some(m) => {
            let mode = match m {
                ModeArg::Dense => SearchMode::Dense,
                ModeArg::Lexical => SearchMode::Lexical,
                ModeArg::Fused => SearchMode::Fused,
                ModeArg::Reranked => SearchMode::Reranked,
            };
            docs.search_mode(&key.to_string(), query, top_k, mode)
                .await?
        }
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&hits)?);
    } else if hits.is_empty() {
        out!("No matching passages (does the conversation have documents? `anchorbot ingest` adds some).");
    } else {
        for h in &hits {
            let heading = h
                .heading
                .as_ref()
                .map(|x| format!(" — {x}"))
                .unwrap_or_default();
            let text: String = h.text.split_whitespace().collect::<Vec<_>>().join(" ");
            out!(
                "{:.3}  [{}]{heading}\n       {}",
                h.score,
                h.citation,
                text.chars().take(300).collect::<String>()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns early when the model cannot answer, so a first run explains itself; for `run`, says
/// loudly when the embedded model answers.
async fn probe_model_server(settings: &Settings, redactor: &ops::logging::Redactor, run: bool) {
    if settings.reasoning.is_embedded() {
        let path = settings.reasoning.embedded_model_path();
        if !path.is_file() {
            redactor.tell(
                tracing::Level::WARN,
                &format!("the embedded model {} is missing\n         Run .ci/setup.sh (it puts SmolLM2-135M-Instruct there), set reasoning.embedded_model, or set ANCHORBOT_REASONING_URL to a model server.", path.display()),
            );
        } else if run {
            redactor.tell(
                tracing::Level::WARN,
                &format!("\n  ************************************************************************\n  The answers come from the embedded model {} (135M parameters,\n  on this machine's CPU). It is for trying anchorbot out, not for a team:\n  set ANCHORBOT_REASONING_URL to your model server (README: \"Model server\").\n  ************************************************************************", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
            );
        }
        return;
    }
    let endpoint = anchorbot::llm::OpenAiEndpoint::new(settings.reasoning.clone());
    if let Err(e) = endpoint.models().await {
        redactor.tell(
            tracing::Level::WARN,
            &format!("{e}\n         Start a model server (README: \"Model server\") or set ANCHORBOT_REASONING_URL; `anchorbot doctor` checks the setup."),
        );
    }
}

async fn doctor(settings: &Settings) -> anyhow::Result<ExitCode> {
    out!(
        "Configuration (secrets redacted):\n{}",
        settings.redacted_toml()
    );
    let checks = anchorbot::doctor::run(settings).await;
    let mut ok = true;
    for c in &checks {
        out!("{} {}: {}", c.state.tag(), c.name, c.detail);
        ok &= c.state.is_ok();
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
