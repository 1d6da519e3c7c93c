//! Reports: `/status` (memory and token budgets), `/files` (documents) and the one line on an
//! ingested file, for the chat and for `anchorbot status` and `anchorbot ingest`.

use anchorbot_platform::ConversationKey;
use serde::Serialize;

use super::Engine;
use crate::commands::counted;
use crate::docs::service::DocumentInfo;
use crate::docs::{DocError, IngestReport};
use crate::llm::prompt;
use crate::store::{StoreError, SummaryHold};

/// What `/status` and `anchorbot status` show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusReport {
    /// Conversation key.
    pub conversation: String,
    /// Which model answers (the embedded one, or the configured model on its servers).
    pub model: String,
    /// Turns answered since the last reset.
    pub turns: u64,
    /// Turns still held verbatim.
    pub recent_turns: usize,
    /// Rolling summaries.
    pub summaries: usize,
    /// Summarization passes run.
    pub summarizations: u64,
    /// Summarization is paused after answers that could not be used, and why.
    pub summary_hold: Option<SummaryHold>,
    /// The key facts.
    pub key_facts: Vec<String>,
    /// Documents shared.
    pub documents: usize,
    /// Files being read or waiting to be, each with its latest progress note.
    pub reading: Vec<String>,
    /// Answers marked helpful.
    pub feedback_up: u64,
    /// Answers marked not helpful.
    pub feedback_down: u64,
    /// Tokens of the anchored system prompt.
    pub system_prompt_tokens: usize,
    /// Tokens of the recent turns.
    pub recent_turns_tokens: usize,
    /// Budget of the recent turns before summarization.
    pub recent_turns_budget: usize,
    /// The most tokens document passages may take in a prompt (before the question's own
    /// tokens are known).
    pub documents_budget: usize,
    /// Prompt tokens of the latest turn.
    pub last_prompt_tokens: u64,
    /// The input budget.
    pub max_input_tokens: usize,
    /// The output cap.
    pub max_output_tokens: usize,
}

impl StatusReport {
    /// Human-readable form.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Conversation {}\n\
             Turns: {} ({} recent, {} summarized into {})\n\
             Key facts: {}\n\
             Documents: {}\n\
             Feedback: {} 👍, {} 👎\n\
             Token budget: system {} + documents up to {} + recent turns {}/{} of max_input_tokens {}; last prompt {}; max output {}\n\
             Model: {}",
            self.conversation,
            self.turns,
            self.recent_turns,
            self.turns.saturating_sub(self.recent_turns as u64),
            counted(self.summaries as u64, "summary", "summaries"),
            self.key_facts.len(),
            self.documents,
            self.feedback_up,
            self.feedback_down,
            self.system_prompt_tokens,
            self.documents_budget,
            self.recent_turns_tokens,
            self.recent_turns_budget,
            self.max_input_tokens,
            self.last_prompt_tokens,
            self.max_output_tokens,
            self.model,
        );
        if let Some(h) = &self.summary_hold {
            s.push_str(&format!(
                "\nSummarizing is paused after {} ({}); the turns are kept word for word, and the next try is after turn {}",
                counted(h.failures.into(), "failed attempt", "failed attempts"),
                h.reason,
                h.retry_at_turn
            ));
        }
        for f in &self.key_facts {
            s.push_str(&format!("\n  - {f}"));
        }
        if !self.reading.is_empty() {
            s.push_str("\nFiles being read:");
            for r in &self.reading {
                s.push_str(&format!("\n  - {r}"));
            }
        }
        s
    }
}

impl Engine {
    /// The `/files` listing: every document with its pages, status and OCR engine.
    pub async fn files_text(&self, key: &ConversationKey) -> Result<String, DocError> {
        let docs = match &self.docs {
            Some(d) => d.list(key).await?,
            None => Vec::new(),
        };
        if docs.is_empty() {
            return Ok("No documents in this conversation. Share a file to add one.".to_string());
        }
        let mut s = format!("{}:", counted(docs.len() as u64, "document", "documents"));
        for d in &docs {
            s.push_str(&format!(
                "\n- {} ({}, {}, {}): {}",
                d.name,
                d.mime,
                pages_counted(d),
                counted(d.chunks.into(), "chunk", "chunks"),
                d.status.label()
            ));
            let engines = &d.ocr_engines;
            if !engines.is_empty() {
                let fallback = if engines.iter().any(|e| e == "tesseract") {
                    " (fallback: the vision model was unavailable)"
                } else {
                    ""
                };
                s.push_str(&format!("; OCR by {}{fallback}", engines.join(", ")));
            }
            if !d.skipped.is_empty() {
                s.push_str(&format!("; {}", d.skipped.describe()));
            }
            let failed = &d.failed_pages;
            if !failed.is_empty() {
                s.push_str(&format!(
                    "; unread pages: {}",
                    failed
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(s)
    }

    /// The status of a conversation.
    pub async fn status(&self, key: &ConversationKey) -> Result<StatusReport, StoreError> {
        let a = self.store.anchor(key).await?;
        let c = self.counter.as_ref();
        let system_prompt_tokens = self.system_tokens(&a);
        // The budgets in effect: the settings, shrunk to the context the server serves.
        let (input, output) = self.budgets().await;
        let documents = match &self.docs {
            Some(d) => d.list(key).await.map(|l| l.len()).unwrap_or(0),
            None => a.documents.len(),
        };
        Ok(StatusReport {
            conversation: key.to_string(),
            model: self.llm.describe(),
            turns: a.counters.turns_total,
            recent_turns: a.turns.len(),
            summaries: a.summaries.len(),
            summarizations: a.counters.summarizations,
            summary_hold: a.summary_hold.clone(),
            key_facts: a.facts.clone(),
            documents,
            reading: self.board().reading(key),
            feedback_up: a.counters.feedback_up,
            feedback_down: a.counters.feedback_down,
            system_prompt_tokens,
            recent_turns_tokens: a.turns.iter().map(|e| prompt::exchange_tokens(c, e)).sum(),
            recent_turns_budget: self.recent_budget(input, system_prompt_tokens, documents > 0),
            documents_budget: self.documents_budget(input, system_prompt_tokens),
            last_prompt_tokens: a.counters.prompt_tokens_last,
            max_input_tokens: input,
            max_output_tokens: output,
        })
    }
}

/// The chat's one line on an ingestion.
pub fn ingest_summary(report: &IngestReport) -> String {
    let d = report.document();
    if report.duplicate {
        return format!(
            "📄 {} is already in this conversation ({}, {}).",
            d.name,
            pages_counted(&d),
            counted(d.chunks.into(), "chunk", "chunks"),
        );
    }
    let mut s = format!(
        "📄 Added {}: {}, {}",
        d.name,
        pages_counted(&d),
        counted(d.chunks.into(), "chunk", "chunks"),
    );
    if !d.ocr_engines.is_empty() {
        s.push_str(&format!(", OCR by {}", d.ocr_engines.join(" and ")));
    }
    if !d.skipped.is_empty() {
        s.push_str(&format!("; {}", d.skipped.describe()));
    }
    if report.resumed_pages > 0 {
        s.push_str(&format!(
            ", resumed after {} already stored",
            counted(report.resumed_pages.into(), "page", "pages")
        ));
    } else if report.resumed_chunks > 0 {
        s.push_str(&format!(
            ", resumed after {} already stored",
            counted(report.resumed_chunks.into(), "chunk", "chunks")
        ));
    }
    if !report.retried_pages.is_empty() {
        let read = report
            .retried_pages
            .iter()
            .filter(|p| d.stored_pages.contains(p))
            .count();
        s.push_str(&format!(
            ", retried failed page{} {}: {}",
            if report.retried_pages.len() > 1 {
                "s"
            } else {
                ""
            },
            page_list(&report.retried_pages),
            match read {
                0 => "still unreadable".to_string(),
                n if n == report.retried_pages.len() => "now read".to_string(),
                n => format!("{n} now read"),
            }
        ));
    }
    if !d.failed_pages.is_empty() {
        let reason = d.failure.clone().unwrap_or_default();
        s.push_str(&format!(
            ". ⚠️ Could not read page{} {} ({reason}); the rest is kept",
            if d.failed_pages.len() > 1 { "s" } else { "" },
            page_list(&d.failed_pages)
        ));
    }
    s.push('.');
    s
}

/// "3 pages", "1 slide", "2 sheets".
fn pages_counted(d: &DocumentInfo) -> String {
    let (one, many) = d.page_noun;
    counted(d.pages.into(), one, many)
}

/// "2, 5, 7".
fn page_list(pages: &[u32]) -> String {
    pages
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists_are_comma_separated() {
        assert_eq!(page_list(&[]), "");
        assert_eq!(page_list(&[7]), "7");
        assert_eq!(page_list(&[2, 5, 7]), "2, 5, 7");
    }
}
