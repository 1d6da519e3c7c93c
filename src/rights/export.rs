//! `anchorbot export`: everything stored of one conversation, as JSON (complete,
//! machine-readable) or Markdown (for people): the anchor with its summaries, key facts and
//! recent turns (authors and times), the feedback, the document list and each document's
//! extracted text in page order.

use std::fmt::Write as _;

use anchorbot_platform::ConversationKey;
use serde::Serialize;

use super::RightsError;
use crate::docs::search::join_overlapping;
use crate::docs::store::{DocRecord, DocStore};
use crate::store::{now_ms, Anchor, Store};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// Readable Markdown.
    #[default]
    Md,
    /// Complete JSON.
    Json,
}

/// Names the JSON layout, so a reader can tell what it holds.
pub const EXPORT_KIND: &str = "anchorbot-conversation-export";

/// Version of the JSON layout.
pub const EXPORT_VERSION: u32 = 1;

/// Everything stored of one conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    /// [`EXPORT_KIND`].
    pub kind: &'static str,
    /// [`EXPORT_VERSION`].
    pub version: u32,
    /// The conversation key.
    pub conversation: String,
    /// When the export was made (Unix ms).
    pub exported_at_ms: u64,
    /// Whether anything is stored for the conversation.
    pub stored: bool,
    /// The context anchor: summaries, key facts, recent turns (with their feedback), counters
    /// and the document references.
    pub anchor: Anchor,
    /// Every vote on an answer, flattened from the turns.
    pub feedback: Vec<FeedbackEntry>,
    /// The documents, oldest first, each with its text.
    pub documents: Vec<DocumentExport>,
}

/// One vote on one answer.
#[derive(Debug, Clone, Serialize)]
pub struct FeedbackEntry {
    /// When the question of the rated turn arrived (Unix ms).
    pub turn_at_ms: u64,
    /// Who voted.
    pub user: String,
    /// Thumbs up (`true`) or down.
    pub positive: bool,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// One document with its extracted text.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentExport {
    /// The stored record: name, type, size, pages, status, ingestion time, page sources.
    #[serde(flatten)]
    pub record: DocRecord,
    /// The text of each page, in page order.
    pub text: Vec<PageText>,
}

/// The extracted text of one page (or of a whole document without pages).
#[derive(Debug, Clone, Serialize)]
pub struct PageText {
    /// Page number, for paged documents.
    pub page: Option<u32>,
    /// How citations name the page (`slide 2`), when not by number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The text, chunk overlaps removed.
    pub text: String,
}

impl Export {
    /// The export of a conversation with nothing stored.
    pub fn empty(key: &ConversationKey) -> Self {
        Self {
            kind: EXPORT_KIND,
            version: EXPORT_VERSION,
            conversation: key.to_string(),
            exported_at_ms: now_ms(),
            stored: false,
            anchor: Anchor::default(),
            feedback: Vec::new(),
            documents: Vec::new(),
        }
    }
}

/// Collects everything stored of `key`.
pub async fn collect(
    store: &Store,
    docs: &DocStore,
    key: &ConversationKey,
) -> Result<Export, RightsError> {
    let conv = key.to_string();
    let anchor = store.anchor(key).await?;
    let feedback = anchor
        .turns
        .iter()
        .flat_map(|t| {
            t.feedback.iter().map(|v| FeedbackEntry {
                turn_at_ms: t.at_ms,
                user: v.user.clone(),
                positive: v.positive,
                at_ms: v.at_ms,
            })
        })
        .collect();
    let mut documents = Vec::new();
    for record in docs.list(&conv).await? {
        let text = document_text(docs, &conv, &record.id).await?;
        documents.push(DocumentExport { record, text });
    }
    let records = store.storage().maintenance.size_of(&conv).await?.records;
    Ok(Export {
        kind: EXPORT_KIND,
        version: EXPORT_VERSION,
        conversation: conv,
        exported_at_ms: now_ms(),
        stored: records > 0,
        anchor,
        feedback,
        documents,
    })
}

/// A document's text from its chunks, in page and position order; overlapping chunk text is
/// joined without repeating the overlap.
async fn document_text(
    docs: &DocStore,
    conv: &str,
    doc: &str,
) -> Result<Vec<PageText>, RightsError> {
    let mut pages: Vec<PageText> = Vec::new();
    let mut last_page: Option<u32> = None;
    for (page, chunk) in docs.document_chunks(conv, doc).await? {
        match pages.last_mut() {
            Some(p) if last_page == Some(page) => p.text = join_overlapping(&p.text, &chunk.text),
            _ => pages.push(PageText {
                page: chunk.page,
                label: chunk.label,
                text: chunk.text,
            }),
        }
        last_page = Some(page);
    }
    Ok(pages)
}

/// A Unix time in ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Renders an export as JSON.
pub fn to_json(export: &Export) -> String {
    serde_json::to_string_pretty(export).expect("exports serialize")
}

/// Renders an export as Markdown.
pub fn to_markdown(e: &Export) -> String {
    let mut md = String::new();
    let a = &e.anchor;
    let _ = writeln!(md, "# Conversation `{}`\n", e.conversation);
    let _ = writeln!(md, "Exported {}.", utc(e.exported_at_ms));
    if !e.stored {
        let _ = writeln!(md, "\nNothing is stored for this conversation.");
        return md;
    }
    let c = &a.counters;
    let _ = writeln!(
        md,
        "\nTurns since the last /clear: {}. Summarizations: {}. Feedback: {} 👍, {} 👎.",
        c.turns_total, c.summarizations, c.feedback_up, c.feedback_down
    );
    if !a.summaries.is_empty() {
        let _ = writeln!(md, "\n## Summaries\n");
        for s in &a.summaries {
            let _ = writeln!(
                md,
                "- *{} (covers {} turns):* {}",
                utc(s.at_ms),
                s.covers_turns,
                s.text.trim()
            );
        }
    }
    if !a.facts.is_empty() {
        let _ = writeln!(md, "\n## Key facts\n");
        for f in &a.facts {
            let _ = writeln!(md, "- {f}");
        }
    }
    if !a.turns.is_empty() {
        let _ = writeln!(md, "\n## Recent turns");
        for t in &a.turns {
            let _ = writeln!(
                md,
                "\n### {} — {} ({})\n\n{}\n\n**anchorbot{}:**\n\n{}",
                utc(t.at_ms),
                t.author.display_name,
                t.author.id,
                t.query.trim(),
                if t.truncated {
                    " (cut at the output limit)"
                } else {
                    ""
                },
                t.answer.trim()
            );
            for v in &t.feedback {
                let _ = writeln!(
                    md,
                    "\n> {} {} at {}",
                    if v.positive { "👍" } else { "👎" },
                    v.user,
                    utc(v.at_ms)
                );
            }
        }
    }
    if !e.documents.is_empty() {
        let _ = writeln!(md, "\n## Documents\n");
        for d in &e.documents {
            let r = &d.record;
            let _ = writeln!(
                md,
                "- **{}** — {}, {}, ingested {} ({} bytes, sha256 {})",
                r.name,
                r.pages_counted(),
                r.status.label(),
                utc(r.ingested_at_ms),
                r.size,
                r.sha256
            );
        }
        for d in &e.documents {
            let _ = writeln!(md, "\n## Text of {}", d.record.name);
            for p in &d.text {
                let heading = match (&p.label, p.page) {
                    (Some(l), _) => format!("\n### {l}\n"),
                    (None, Some(n)) => format!("\n### Page {n}\n"),
                    (None, None) => String::new(),
                };
                let _ = writeln!(md, "{heading}\n{}", p.text.trim());
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_712_345_678_000), "2024-04-05 19:34:38 UTC");
    }
}
