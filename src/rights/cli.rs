//! The data-rights commands as `main` runs them: each takes the settings and its arguments,
//! prints its report on stdout and returns the exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::backup::{self, BackupSummary};
use super::export::{self, ExportFormat};
use super::{erase, list, open, open_all, parse_key, store_exists, swap, RightsError};
use crate::commands::counted;
use crate::settings::Settings;

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
    let dir = &settings.data_dir;
    let data = if store_exists(dir) {
        let o = open_all(dir)?;
        export::collect(&o.store, &o.docs, &key)?
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
    let dir = &settings.data_dir;
    if !store_exists(dir) {
        out(&format!("Nothing stored for {key}."));
        return Ok(ExitCode::SUCCESS);
    }
    let opened = open_all(dir)?;
    if !yes
        && !confirm(&format!(
            "Erase everything stored of {key} (memory, feedback, documents)? This cannot be undone."
        ))
    {
        return Err(RightsError::NotConfirmed);
    }
    let erased = erase::erase(&opened.store, &opened.docs, &key).await?;
    let db = opened.store.db();
    let copied = swap::write_new(dir, |new| Ok(swap::copy_trees(&db, new)?))?;
    // Every handle on the old store goes before the swap.
    drop(db);
    drop(opened);
    swap::swap_in(dir)?;
    let store = open(dir)?;
    let (left, _) = erase::tree_bytes(&store.db(), &key.to_string())?;
    if left != 0 {
        return Err(RightsError::Sled(sled::Error::ReportableBug(format!(
            "{left} records of {key} are still stored after forget"
        ))));
    }
    tracing::info!(
        records = erased.records,
        kept = copied,
        "conversation forgotten and store compacted"
    );
    if erased.is_empty() {
        out(&format!(
            "Nothing stored for {key}. The store was compacted ({copied} records kept)."
        ));
    } else {
        out(&format!(
            "Forgot {key}: {}, {}, {}, {}, {}, {} ({}, {} bytes). The store was compacted: nothing of it remains on disk.",
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
    let dir = &settings.data_dir;
    if !store_exists(dir) {
        return Err(RightsError::NoStore { path: dir.clone() });
    }
    let store = open(dir)?;
    let conversations = list::conversations(&store)?.len();
    let summary = backup::write(&store.db(), file)?;
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
    let dir = &settings.data_dir;
    let checked = backup::verify(file)?;
    // Held until the swap, so no bot starts on the store being replaced.
    let existing = if store_exists(dir) {
        let store = open(dir)?;
        let conversations = list::conversations(&store)?.len();
        if conversations > 0 && !force {
            return Err(RightsError::NotEmpty {
                path: dir.clone(),
                conversations,
            });
        }
        Some(store)
    } else {
        None
    };
    let restored = backup::restore_into_new(dir, file)?;
    debug_assert_eq!(restored, checked);
    drop(existing);
    swap::swap_in(dir)?;
    let store = open(dir)?;
    let conversations = list::conversations(&store)?.len();
    out(&format!(
        "Restored {} ({}, backed up {}) from {} into {}.",
        counted(conversations as u64, "conversation", "conversations"),
        describe(&restored),
        export::utc(restored.created_ms),
        file.display(),
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `anchorbot conversations [--json]`.
pub async fn conversations(settings: &Settings, json: bool) -> Result<ExitCode, RightsError> {
    let dir = &settings.data_dir;
    let all = if store_exists(dir) {
        list::conversations(&open(dir)?)?
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
