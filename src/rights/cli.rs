//! The data-rights commands as `main` runs them: each takes the settings and its arguments,
//! prints its report on stdout and returns the exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::export::{self, ExportFormat};
use super::{erase, list, open, parse_key, RightsError};
use crate::commands::counted;
use crate::settings::Settings;
use crate::storage::{BackupSummary, Location};

/// Prints to stdout; a closed pipe is not an error.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// `anchorbot export`: prints (or writes to `output`) everything stored of the conversation.
/// A conversation with nothing stored exports as empty (`"stored": false`).
pub async fn export(
    settings: &Settings,
    conversation: &str,
    format: ExportFormat,
    output: Option<&Path>,
) -> Result<ExitCode, RightsError> {
    let key = parse_key(conversation)?;
    let location = settings.store_location();
    let data = if location.exists() {
        let o = open(&location).await?;
        export::collect(&o.store, &o.docs, &key).await?
    } else {
        export::Export::empty(&key)
    };
    if !data.stored {
        eprintln!("note: nothing is stored for {key}");
    }
    let text = match format {
        ExportFormat::Json => export::to_json(&data),
        ExportFormat::Md => export::to_markdown(&data),
    };
    match output {
        Some(path) => {
            std::fs::write(path, text.as_bytes()).map_err(|e| RightsError::io(path, e))?;
            eprintln!("Exported {key} to {}.", path.display());
        }
        None => out(text.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; anything but y/yes declines. Without a terminal, declines.
fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// `anchorbot forget`: erases everything of the conversation from every tree, then compacts
/// the store so its bytes leave the disk, and reports what was erased. Forgetting a
/// conversation with nothing stored is not an error (exit 0, "nothing stored"): the state
/// asked for holds, and scripts can run it again safely. The store is compacted either way, so
/// a forget interrupted before its compaction is finished by running it again.
pub async fn forget(
    settings: &Settings,
    conversation: &str,
    yes: bool,
) -> Result<ExitCode, RightsError> {
    let key = parse_key(conversation)?;
    let location = settings.store_location();
    if !location.exists() {
        out(&format!("Nothing stored for {key}."));
        return Ok(ExitCode::SUCCESS);
    }
    let opened = open(&location).await?;
    if !yes
        && !confirm(&format!(
            "Erase everything stored of {key} (memory, feedback, documents)? This cannot be undone."
        ))
    {
        return Err(RightsError::NotConfirmed);
    }
    let erased = erase::erase(&opened.store, &opened.docs, &key).await?;
    // Every handle on the store goes before a compaction rewrites it.
    drop(opened);
    let copied = location.compact()?;
    let opened = open(&location).await?;
    let left = opened
        .store
        .storage()
        .maintenance
        .size_of(&key.to_string())
        .await?
        .records;
    if left != 0 {
        return Err(RightsError::NotErased {
            key: key.to_string(),
            records: left,
        });
    }
    let after = match copied {
        Some(kept) => format!("The store was compacted ({kept} records kept)"),
        None => "Its rows were deleted from the database".to_string(),
    };
    tracing::info!(
        records = erased.records,
        kept = copied.unwrap_or(0),
        "conversation forgotten"
    );
    if erased.is_empty() {
        out(&format!("Nothing stored for {key}. {after}."));
    } else {
        let gone = match copied {
            Some(_) => "The store was compacted: nothing of it remains on disk.",
            None => "Its rows were deleted; PostgreSQL reclaims their space (see the README).",
        };
        out(&format!(
            "Forgot {key}: {}, {}, {}, {}, {}, {} ({}, {} bytes). {gone}",
            counted(erased.turns, "turn", "turns"),
            counted(erased.summaries, "summary", "summaries"),
            counted(erased.facts, "key fact", "key facts"),
            counted(erased.documents, "document", "documents"),
            counted(erased.chunks, "chunk", "chunks"),
            counted(erased.vectors, "vector", "vectors"),
            counted(erased.records, "record", "records"),
            erased.bytes,
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(s: &BackupSummary) -> String {
    format!(
        "{} in {}, schema version {}",
        counted(s.records, "record", "records"),
        counted(s.trees, "tree", "trees"),
        s.schema_version
    )
}

/// `anchorbot backup FILE`.
pub async fn backup(settings: &Settings, file: &Path) -> Result<ExitCode, RightsError> {
    let location = settings.store_location();
    if !location.exists() {
        return Err(RightsError::NoStore {
            path: settings.data_dir.clone(),
        });
    }
    let opened = open(&location).await?;
    let conversations = list::conversations(&opened.store).await?.len();
    let summary = opened.store.storage().maintenance.backup(file).await?;
    out(&format!(
        "Backed up {} ({}) to {}.",
        counted(conversations as u64, "conversation", "conversations"),
        describe(&summary),
        file.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `anchorbot restore FILE [--force]`: checks the file whole, refuses to replace a store that
/// holds conversations unless `force`, then builds the restored store beside the data
/// directory and swaps it in.
pub async fn restore(
    settings: &Settings,
    file: &Path,
    force: bool,
) -> Result<ExitCode, RightsError> {
    let location = settings.store_location();
    let checked = location.verify_backup(file)?;
    // Held until the swap, so no bot starts on the store being replaced.
    let existing = if location.exists() {
        let opened = open(&location).await?;
        let conversations = list::conversations(&opened.store).await?.len();
        if conversations > 0 && !force {
            return Err(RightsError::NotEmpty {
                path: settings.data_dir.clone(),
                conversations,
            });
        }
        Some(opened)
    } else {
        None
    };
    let restored = location.restore_beside(file)?;
    debug_assert_eq!(restored, checked);
    drop(existing);
    location.swap_restored()?;
    let opened = open(&location).await?;
    let conversations = list::conversations(&opened.store).await?.len();
    out(&format!(
        "Restored {} ({}, backed up {}) from {} into {}.",
        counted(conversations as u64, "conversation", "conversations"),
        describe(&restored),
        export::utc(restored.created_ms),
        file.display(),
        settings.data_dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `anchorbot conversations [--json]`.
pub async fn conversations(settings: &Settings, json: bool) -> Result<ExitCode, RightsError> {
    let location = settings.store_location();
    let all = if location.exists() {
        list::conversations(&open(&location).await?.store).await?
    } else {
        Vec::new()
    };
    if json {
        out(&serde_json::to_string_pretty(&all).expect("listings serialize"));
    } else if all.is_empty() {
        out("No conversations stored.");
    } else {
        out(&format!(
            "{:<40} {:<24} {:>6} {:>5} {:>7} {:>10}",
            "CONVERSATION", "LAST ACTIVITY", "TURNS", "DOCS", "CHUNKS", "BYTES"
        ));
        for c in &all {
            let when = if c.last_activity_ms == 0 {
                "-".to_string()
            } else {
                export::utc(c.last_activity_ms)
            };
            out(&format!(
                "{:<40} {:<24} {:>6} {:>5} {:>7} {:>10}",
                c.key, when, c.turns_total, c.documents, c.chunks, c.bytes
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `anchorbot store copy --to URL [--force]`: copies the sled store of the data directory into
/// the PostgreSQL database at `to`, prints progress on stderr (at most once a second) and
/// what it copied on stdout.
pub async fn store_copy(
    settings: &Settings,
    to: &str,
    force: bool,
) -> Result<ExitCode, RightsError> {
    // The data directory's embedded store, then the database at `to`.
    let source = Location::new(&settings.data_dir, None);
    if !source.exists() {
        return Err(RightsError::NoStore {
            path: settings.data_dir.clone(),
        });
    }
    let target = Location::new(
        &settings.data_dir,
        Some(&secrecy::SecretString::from(to.to_string())),
    );
    let from = source.open().await?;
    let into = target.open().await?;
    let mut last = std::time::Instant::now();
    let report = crate::storage::copy::copy(&from, &into, force, |r| {
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!(
                "copying: {}, {} so far",
                counted(r.documents, "document", "documents"),
                counted(r.chunks, "chunk", "chunks")
            );
        }
    })
    .await?;
    let secs = report.elapsed_ms as f64 / 1000.0;
    out(&format!(
        "Copied {} ({}), {}, {} with their vectors and {} ({}) from {} to {} in {secs:.1} s ({:.0} chunks/s). \
         De-duplication marks were not copied (they expire within a day). \
         Set ANCHORBOT_DATABASE_URL (or database_url) to that database for the bot to use it.",
        counted(report.conversations, "conversation", "conversations"),
        counted(report.anchors, "memory", "memories"),
        counted(report.documents, "document", "documents"),
        counted(report.chunks, "chunk", "chunks"),
        counted(report.sources, "kept file", "kept files"),
        crate::docs::data_runs::size_text(report.bytes),
        source.describe(),
        target.describe(),
        report.chunks as f64 / secs.max(0.001),
    ));
    Ok(ExitCode::SUCCESS)
}
