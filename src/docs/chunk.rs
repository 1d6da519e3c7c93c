//! Token-aware chunking with `text-splitter`, sized by the same tokenizer as the prompt
//! budget. Every chunk keeps its page and the nearest heading above it.
//!
//! Runs of data (4 KB with no break: base64, `data:` URIs, minified blobs) are skipped first
//! ([`super::data_runs`]), and what was skipped is counted for the report.
//!
//! Chunking stays linear in the page's length: runs that a tokenizer would take as one piece
//! (letters, digits or symbols with no break, or a long stretch of whitespace) are split
//! before anything is tokenized, because byte-pair encoding of one huge piece is quadratic;
//! headings are found in one pass; and the sizer checks a [`Cancel`] so a time limit stops it.

use std::borrow::Cow;
use std::sync::Arc;

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter, TryChunkSizer};

use super::data_runs::{skip_data_runs, Skipped};
use super::extract::Cancel;
use super::{DocError, PageSource};
use crate::llm::tokens::TokenCounter;

/// Tokens as the embedding model counts them (its own `tokenizer.json`: WordPiece for
/// MiniLM). Chunks are sized in these, because a chunk longer than the length the model was
/// trained at (128 wordpieces for MiniLM) is embedded worse, and prompt tokens (cl100k) are
/// not what the embedder sees.
pub struct ModelTokens {
    tokenizer: tokenizers::Tokenizer,
}

impl ModelTokens {
    /// Loads `tokenizer.json` from the embedding model's directory, without its truncation
    /// and padding (a count must see the whole text).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, String> {
        let path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { tokenizer })
    }
}

impl TokenCounter for ModelTokens {
    fn count(&self, text: &str) -> usize {
        match self.tokenizer.encode_fast(text, false) {
            Ok(e) => e.len(),
            // Never expected for text; an estimate keeps chunking going.
            Err(_) => text.len() / 4 + 1,
        }
    }
}

/// A chunk of one page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageChunk {
    /// The text.
    pub text: String,
    /// Byte offset in the page text (after long runs were split).
    pub offset: usize,
    /// The nearest heading above the chunk, if any.
    pub heading: Option<String>,
}

/// The longest run of one kind of character left whole. A longer run (a base64 blob, a line
/// of commas) gets a line break every this many characters; ordinary words, URLs and numbers
/// are far shorter.
pub const MAX_RUN: usize = 64;

/// The longest line left whole. A longer one is broken at its last space or tab (or, with
/// none, where it reaches the limit): the splitter looks for the end of the current sentence
/// or line at every chunk, so one endless line would make chunking quadratic.
pub const MAX_LINE: usize = 4096;

/// One page's chunks, and what was skipped as data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunked {
    /// The chunks, in page order.
    pub chunks: Vec<PageChunk>,
    /// The data runs left out.
    pub skipped: Skipped,
}

/// Sizes chunks in tokens, and stops when the work is cancelled.
struct Sizer {
    counter: Arc<dyn TokenCounter>,
    cancel: Cancel,
}

impl TryChunkSizer for Sizer {
    type Error = DocError;

    fn try_size(&self, chunk: &str) -> Result<usize, DocError> {
        self.cancel.check()?;
        Ok(self.counter.count(chunk))
    }
}

/// Splits page texts into chunks of at most `tokens` tokens with `overlap` tokens of overlap.
/// Cheap to clone, so the work can move to a blocking thread.
#[derive(Clone)]
pub struct Chunker {
    counter: Arc<dyn TokenCounter>,
    tokens: usize,
    overlap: usize,
}

impl Chunker {
    /// A chunker; `overlap` is kept below `tokens`.
    pub fn new(counter: Arc<dyn TokenCounter>, tokens: usize, overlap: usize) -> Self {
        let tokens = tokens.max(1);
        Self {
            counter,
            tokens,
            overlap: overlap.min(tokens - 1),
        }
    }

    fn config(&self, cancel: &Cancel) -> ChunkConfig<Sizer> {
        ChunkConfig::new(self.tokens)
            .with_sizer(Sizer {
                counter: self.counter.clone(),
                cancel: cancel.clone(),
            })
            .with_overlap(self.overlap)
            .expect("overlap is kept below the chunk size")
    }

    /// Chunks one page. Markdown keeps its structure; headings are tracked for both.
    pub fn chunk(&self, page: &str, markdown: bool) -> Vec<PageChunk> {
        self.chunk_within(page, markdown, &Cancel::never())
            .expect("a chunker that is never cancelled does not fail")
            .chunks
    }

    /// The chunks of one page read from `source`: none for a page that failed; OCR output is
    /// Markdown (the vision prompt asks for it), other text when `markdown`.
    pub fn chunk_page(
        &self,
        text: &str,
        source: &PageSource,
        markdown: bool,
        cancel: &Cancel,
    ) -> Result<Chunked, DocError> {
        match source {
            PageSource::Failed { .. } => Ok(Chunked::default()),
            PageSource::Ocr { .. } => self.chunk_within(text, true, cancel),
            _ => self.chunk_within(text, markdown, cancel),
        }
    }

    /// Chunks one page without its data runs, stopping with [`DocError::Timeout`] once
    /// `cancel` fires.
    pub fn chunk_within(
        &self,
        page: &str,
        markdown: bool,
        cancel: &Cancel,
    ) -> Result<Chunked, DocError> {
        let (page, skipped) = skip_data_runs(page);
        cancel.check()?;
        let page = split_long_runs(&page);
        let page = page.as_ref();
        let mut spans: Vec<(usize, &str)> = Vec::new();
        for (start, segment) in segments(page, SEGMENT) {
            let config = self.config(cancel);
            let found: Vec<(usize, &str)> = if markdown {
                MarkdownSplitter::new(config)
                    .try_chunk_indices(segment)
                    .collect::<Result<_, _>>()?
            } else {
                TextSplitter::new(config)
                    .try_chunk_indices(segment)
                    .collect::<Result<_, _>>()?
            };
            spans.extend(found.into_iter().map(|(at, t)| (start + at, t)));
        }
        let headings = Headings::of(page);
        let chunks = spans
            .into_iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(offset, t)| PageChunk {
                text: t.to_string(),
                offset,
                heading: headings.before(offset + leading_heading_len(t)),
            })
            .collect();
        Ok(Chunked { chunks, skipped })
    }
}

/// The most text chunked in one piece. The splitter's work for each chunk grows with the
/// line breaks left in its text, so a long page is chunked a segment at a time (cut at a
/// blank line, else a line end); a chunk never spans two segments.
pub const SEGMENT: usize = 16 * 1024;

/// `page` in segments of at most `max` bytes (or one character, if longer), with their
/// offsets: cut after the last blank line in a segment's second half, else after its last
/// line end, else at a character boundary.
fn segments(page: &str, max: usize) -> impl Iterator<Item = (usize, &str)> {
    let floor = |s: &str, mut i: usize| {
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = &page[start..];
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            let window = &rest[..floor(rest, max)];
            let half = floor(window, window.len() / 2);
            window[half..]
                .rfind("\n\n")
                .map(|i| half + i + 2)
                .or_else(|| window.rfind('\n').map(|i| i + 1))
                .unwrap_or(window.len())
        };
        // At least one character, so every step moves on.
        let cut = if cut == 0 {
            rest.chars().next().map_or(rest.len(), char::len_utf8)
        } else {
            cut
        };
        let segment = (start, &rest[..cut]);
        start += cut;
        Some(segment)
    })
}

/// What a tokenizer's pre-splitting pattern keeps together: a run of letters, of digits, of
/// other symbols, or of whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Letter,
    Digit,
    Space,
    Other,
}

fn run_kind(c: char) -> RunKind {
    if c.is_whitespace() {
        RunKind::Space
    } else if c.is_alphabetic() {
        RunKind::Letter
    } else if c.is_numeric() {
        RunKind::Digit
    } else {
        RunKind::Other
    }
}

/// `text` with no run of one kind longer than [`MAX_RUN`] characters and no line longer
/// than [`MAX_LINE`]: long runs of letters, digits or symbols get line breaks, long whitespace
/// is cut short, long lines are broken. Borrowed when nothing needed it (nearly always).
pub fn split_long_runs(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut kind = None;
    let (mut run, mut line) = (0usize, 0usize);
    // Where the last space or tab of the current line is in the output.
    let mut space: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let k = run_kind(c);
        if Some(k) == kind {
            run += 1;
        } else {
            kind = Some(k);
            run = 1;
        }
        let long_run = run > MAX_RUN;
        let long_line = c != '\n' && line >= MAX_LINE;
        if long_run || long_line {
            let out = out.get_or_insert_with(|| {
                let mut s = String::with_capacity(text.len() + text.len() / MAX_RUN + 1);
                s.push_str(&text[..i]);
                s
            });
            if long_run && k == RunKind::Space {
                // Whitespace beyond the run carries nothing.
                continue;
            }
            match space.take() {
                Some(at) if !long_run => {
                    // Break the line at its last space: the rest moves to a new line.
                    out.replace_range(at..at + 1, "\n");
                    line = out[at + 1..].chars().count();
                }
                _ => {
                    out.push('\n');
                    line = 0;
                    run = 1;
                }
            }
        }
        if c == '\n' {
            line = 0;
            space = None;
        } else {
            if c == ' ' || c == '\t' {
                space = Some(out.as_ref().map_or(i, String::len));
            }
            line += 1;
        }
        if let Some(out) = out.as_mut() {
            out.push(c);
        }
    }
    match out {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(text),
    }
}

/// The headings of a page with where their lines start, found in one pass.
struct Headings(Vec<(usize, String)>);

impl Headings {
    fn of(page: &str) -> Self {
        let mut found = Vec::new();
        let mut pos = 0;
        for line in page.split_inclusive('\n') {
            if let Some(h) = as_heading(line) {
                found.push((pos, h));
            }
            pos += line.len();
        }
        Self(found)
    }

    /// The last heading whose line starts at or before byte `offset`.
    fn before(&self, offset: usize) -> Option<String> {
        let n = self.0.partition_point(|(start, _)| *start <= offset);
        n.checked_sub(1).map(|i| self.0[i].1.clone())
    }
}

/// If a chunk starts with a heading line, that heading is its own.
fn leading_heading_len(chunk: &str) -> usize {
    match chunk.lines().next() {
        Some(l) if as_heading(l).is_some() => l.len(),
        _ => 0,
    }
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
    use crate::llm::tokens::Tiktoken;

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
    fn long_runs_and_lines_are_broken_and_ordinary_text_is_untouched() {
        let prose = "Visit https://example.com/a/b?c=d&e=f for the 2024 figures: 1,234,567.\n";
        assert!(matches!(split_long_runs(prose), Cow::Borrowed(_)));
        let run = "x".repeat(MAX_RUN * 3 + 5);
        let split = split_long_runs(&run);
        assert_eq!(split.replace('\n', ""), run);
        assert!(split.lines().all(|l| l.chars().count() <= MAX_RUN));
        let commas = ",".repeat(1000);
        assert!(split_long_runs(&commas).lines().all(|l| l.len() <= MAX_RUN));
        // Whitespace beyond a run is dropped, not kept as a line.
        let gap = format!("a{}b", " ".repeat(1000));
        assert_eq!(split_long_runs(&gap), format!("a{}b", " ".repeat(MAX_RUN)));
        // A long line breaks at its last space, so words stay whole.
        let words = "budget ".repeat(MAX_LINE);
        let broken = split_long_runs(&words);
        assert!(broken.lines().all(|l| l.chars().count() <= MAX_LINE));
        assert!(broken.split_whitespace().all(|w| w == "budget"));
        assert_eq!(broken.replace('\n', " "), words);
        // Characters of several bytes are never cut.
        let wide = "東".repeat(MAX_RUN * 2 + 1);
        assert_eq!(split_long_runs(&wide).replace('\n', ""), wide);
    }

    #[test]
    fn segments_cover_the_page_and_end_at_paragraphs() {
        let page = format!("{}\n\n{}", "a b\n".repeat(6000), "東京 ".repeat(9000));
        let parts: Vec<_> = segments(&page, SEGMENT).collect();
        assert!(parts.len() > 2);
        assert_eq!(parts.iter().map(|(_, s)| *s).collect::<String>(), page);
        for (start, s) in &parts {
            assert_eq!(&page[*start..*start + s.len()], *s);
            assert!(s.len() <= SEGMENT);
        }
        assert!(parts[0].1.ends_with('\n'));
    }

    #[test]
    fn a_run_with_no_break_under_the_data_limit_is_chunked_whole_and_within_size() {
        let c = Chunker::new(Arc::new(Tiktoken::cl100k()), 64, 8);
        let counter = Tiktoken::cl100k();
        let under = super::super::data_runs::DATA_RUN - 8;
        for (line, markdown) in [
            ("q".repeat(under), false),
            (",".repeat(under), false),
            ("abc+def/".repeat(under / 8), true),
        ] {
            let chunks = c.chunk(&line, markdown);
            assert!(!chunks.is_empty());
            assert!(chunks.iter().all(|ch| counter.count(&ch.text) <= 64));
            // Nothing is lost: the chunks, put back together, hold every character.
            let kept: usize = chunks
                .iter()
                .map(|ch| ch.text.chars().filter(|c| !c.is_whitespace()).count())
                .sum();
            assert!(kept >= line.len(), "{kept} of {}", line.len());
        }
    }

    #[test]
    fn a_data_run_is_skipped_and_counted_and_the_prose_is_chunked() {
        let c = Chunker::new(Arc::new(Tiktoken::cl100k()), 64, 8);
        let page = format!(
            "# Notes\n\nThe invoice is due in thirty days.\n\n{}\n\nLate fees apply after that.",
            ",".repeat(50_000)
        );
        let out = c.chunk_within(&page, true, &Cancel::never()).unwrap();
        assert_eq!(out.skipped.bytes, 50_000);
        assert_eq!(out.skipped.runs, 1);
        let text: String = out.chunks.iter().map(|ch| ch.text.as_str()).collect();
        assert!(
            text.contains("thirty days") && text.contains("Late fees"),
            "{text}"
        );
        assert!(!text.contains(",,"), "{text}");
    }

    #[test]
    fn cancelled_chunking_stops() {
        let c = Chunker::new(Arc::new(Tiktoken::cl100k()), 40, 8);
        let cancel = Cancel::never();
        cancel.cancel();
        let err = c
            .chunk_within("Some text to chunk.", false, &cancel)
            .unwrap_err();
        assert!(matches!(err, DocError::Timeout { .. }), "{err}");
        let failed = PageSource::Failed {
            reason: "unreadable".into(),
        };
        assert!(matches!(
            c.chunk_page("ignored", &failed, false, &Cancel::never()),
            Ok(c) if c == Chunked::default()
        ));
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
