//! Token-aware chunking with `text-splitter`, sized by the same tokenizer as the prompt
//! budget. Every chunk keeps its page and the nearest heading above it.

use std::sync::Arc;

use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};

use crate::tokens::TokenCounter;

/// A chunk of one page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageChunk {
    /// The text.
    pub text: String,
    /// Byte offset in the page text.
    pub offset: usize,
    /// The nearest heading above the chunk, if any.
    pub heading: Option<String>,
}

/// Sizes chunks in tokens.
struct Sizer(Arc<dyn TokenCounter>);

impl ChunkSizer for Sizer {
    fn size(&self, chunk: &str) -> usize {
        self.0.count(chunk)
    }
}

/// Splits page texts into chunks of at most `tokens` tokens with `overlap` tokens of overlap.
pub struct Chunker {
    text: TextSplitter<Sizer>,
    markdown: MarkdownSplitter<Sizer>,
}

impl Chunker {
    /// A chunker; `overlap` must be smaller than `tokens`.
    pub fn new(counter: Arc<dyn TokenCounter>, tokens: usize, overlap: usize) -> Self {
        let overlap = overlap.min(tokens.saturating_sub(1));
        let config = |c: Arc<dyn TokenCounter>| {
            ChunkConfig::new(tokens.max(1))
                .with_sizer(Sizer(c))
                .with_overlap(overlap)
                .expect("overlap is below the chunk size")
        };
        Self {
            text: TextSplitter::new(config(counter.clone())),
            markdown: MarkdownSplitter::new(config(counter)),
        }
    }

    /// Chunks one page. Markdown keeps its structure; headings are tracked for both.
    pub fn chunk(&self, page: &str, markdown: bool) -> Vec<PageChunk> {
        let spans: Vec<(usize, &str)> = if markdown {
            self.markdown.chunk_indices(page).collect()
        } else {
            self.text.chunk_indices(page).collect()
        };
        spans
            .into_iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(offset, t)| PageChunk {
                text: t.to_string(),
                offset,
                heading: heading_before(page, offset + leading_heading_len(t)),
            })
            .collect()
    }
}

/// If a chunk starts with a heading line, that heading is its own.
fn leading_heading_len(chunk: &str) -> usize {
    match chunk.lines().next() {
        Some(l) if as_heading(l).is_some() => l.len(),
        _ => 0,
    }
}

/// The last heading at or before byte `offset`.
fn heading_before(page: &str, offset: usize) -> Option<String> {
    let mut found = None;
    let mut pos = 0;
    for line in page.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        if let Some(h) = as_heading(line) {
            found = Some(h);
        }
        pos += line.len();
    }
    found
}

/// A Markdown heading (`# Title`) or a short title-like line in extracted text (numbered
/// section or ALL CAPS), as text.
fn as_heading(line: &str) -> Option<String> {
    let t = line.trim();
    if let Some(h) = t.strip_prefix('#') {
        let h = h.trim_start_matches('#').trim();
        return (!h.is_empty()).then(|| h.to_string());
    }
    let words = t.split_whitespace().count();
    if t.is_empty() || t.len() > 80 || words > 10 || t.ends_with(['.', ',', ';', ':']) {
        return None;
    }
    let letters: Vec<char> = t.chars().filter(|c| c.is_alphabetic()).collect();
    let all_caps = letters.len() >= 3 && letters.iter().all(|c| c.is_uppercase());
    let numbered = t.split_once(' ').is_some_and(|(n, rest)| {
        n.trim_end_matches('.')
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            && rest.chars().next().is_some_and(|c| c.is_uppercase())
    });
    (all_caps || numbered).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Tiktoken;

    #[test]
    fn chunks_respect_size_and_carry_headings() {
        let c = Chunker::new(Arc::new(Tiktoken::cl100k()), 40, 8);
        let page = format!(
            "# Payment terms\n\n{}\n\n## Termination\n\n{}",
            "Invoices are due within thirty days of receipt. ".repeat(6),
            "Either party may terminate with three months notice. ".repeat(6)
        );
        let chunks = c.chunk(&page, true);
        assert!(chunks.len() >= 4);
        let counter = Tiktoken::cl100k();
        assert!(chunks.iter().all(|ch| counter.count(&ch.text) <= 40));
        let last = chunks.last().unwrap();
        assert!(last.text.contains("terminate"));
        assert_eq!(last.heading.as_deref(), Some("Termination"));
        assert_eq!(chunks[0].heading.as_deref(), Some("Payment terms"));
    }

    #[test]
    fn headings_in_extracted_text() {
        assert_eq!(
            as_heading("3.2 Notice Period"),
            Some("3.2 Notice Period".into())
        );
        assert_eq!(
            as_heading("TERMS AND CONDITIONS"),
            Some("TERMS AND CONDITIONS".into())
        );
        assert_eq!(as_heading("The tenant pays monthly."), None);
        assert_eq!(as_heading("2024 was a good year"), None);
    }
}
