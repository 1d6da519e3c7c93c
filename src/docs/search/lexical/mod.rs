//! A compact in-memory lexical index (BM25) over a conversation's chunks, beside the vector
//! index: it finds the exact rare term (an error code, a clause number, a product name) that
//! embedding similarity ranks low.
//!
//! Why not tantivy: it is a whole search engine with its own files, segments and merge
//! threads, and the chunks are already durable in sled. This index is a few flat arrays,
//! rebuilt from the chunk texts when a conversation's index is loaded (about a second for
//! 100k chunks, ~20–30 MB), well within the query path's latency budget.
//!
//! The analyser ([`analyse`]) is shared by chunks and queries:
//! - lowercase (Unicode, full-width ASCII folded), words split on anything not alphanumeric;
//!   numbers kept; a dotted run such as `4.2`, `1.3.5`, `v2.0` or `config.toml` is kept whole
//!   as well as in parts, so "section 4.2" ranks the chunk with "4.2" above those with a
//!   stray 4 and 2;
//! - English stop words dropped, then the Snowball English stemmer (`rust-stemmers`) on
//!   words of ASCII letters only: a token with a digit is an identifier, and the English
//!   rules would only mangle other languages;
//! - Han, kana and Hangul have no spaces between words, so each run of them becomes its
//!   overlapping character bigrams (a lone character stays a unigram): 中文检索 → 中文, 文检,
//!   检索. Bigrams need no dictionary and are what Lucene's CJK analyser does;
//! - a token longer than [`MAX_TOKEN_CHARS`] (a base64 blob, a hash run together) is dropped,
//!   which also bounds the work and the vocabulary.
//!
//! Layout: the frozen part is a sorted term dictionary in one string arena (binary search,
//! 4 bytes a term besides the text), postings in CSR form (per-term offsets into one array
//! of row ids and one of term frequencies) and a `u16` length per row. Rows added with
//! [`LexicalIndex::push`] go to a small hash-keyed pending part first, searched alongside,
//! and are merged into the frozen arrays once the pending part grows past an eighth of them,
//! so pushing costs amortised O(1) copies per posting.
//!
//! Scoring is term-at-a-time, rarest term first, into a dense score array of one `f32` a row
//! (allocated per query: ~10 µs at 100k rows, and no state shared between searches); the
//! tf part of BM25 is tabulated per query by tf and length, so the inner loop has no
//! division. Words found in most chunks have long lists and tiny weights: before each long
//! list a MaxScore bound checks whether the rows touched so far already settle the top `n`,
//! and if so the long lists are only looked up for the rows still in the running. Results
//! are the exact BM25 top `n`; a query of 8 words at 100k chunks takes well under a
//! millisecond (see the ignored `measure_100k` test).

mod analysis;
mod bm25;
mod postings;
#[cfg(test)]
mod tests;

use std::fmt;

pub use analysis::{analyse, MAX_TOKEN_CHARS};
pub use bm25::{B, K1};
use postings::{Dict, Pending, NONE, PENDING_MIN};

/// A BM25 index over rows of text (a conversation's chunks, row `i` being the `i`-th chunk
/// given). Rows are only added; a removed document means rebuilding. Row ids are `u32`.
#[derive(Clone, Default)]
pub struct LexicalIndex {
    /// Frozen terms, sorted; term `t`'s postings are `offsets[t]..offsets[t + 1]`.
    dict: Dict,
    offsets: Vec<u32>,
    /// Row ids, ascending within a term.
    rows: Vec<u32>,
    /// Term frequency of each posting, saturated at 255.
    tfs: Vec<u8>,
    /// Indexed tokens per row, saturated at 65535.
    lens: Vec<u16>,
    total_len: u64,
    /// The longest row, in indexed tokens.
    max_len: u16,
    pending: Pending,
}

impl fmt::Debug for LexicalIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LexicalIndex")
            .field("rows", &self.lens.len())
            .field("terms", &self.dict.len())
            .field("postings", &self.rows.len())
            .field("pending_postings", &self.pending.postings)
            .finish()
    }
}

impl LexicalIndex {
    /// An index of `texts`, row ids `0..n` in iteration order.
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = Self::default();
        for text in texts {
            index.add(text);
        }
        index.compact();
        index
    }

    /// Adds a row without merging it into the main arrays yet: for a bulk build from a
    /// stream of texts, ended by [`finish_bulk`](Self::finish_bulk).
    pub fn push_bulk(&mut self, text: &str) {
        self.add(text);
    }

    /// Merges the rows added by [`push_bulk`](Self::push_bulk).
    pub fn finish_bulk(&mut self) {
        self.compact();
    }

    /// Adds a row (its id is the previous [`len`](Self::len)).
    pub fn push(&mut self, text: &str) {
        self.add(text);
        if self.pending.postings > PENDING_MIN.max(self.rows.len() / 8) {
            self.compact();
        }
    }

    /// Rows indexed.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether no row is indexed.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Distinct terms indexed (the pending part's new terms counted too).
    pub fn terms(&self) -> usize {
        self.dict.len()
            + self
                .pending
                .slots
                .iter()
                .filter(|s| s.frozen == NONE)
                .count()
    }

    /// An estimate of the heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.dict.heap_bytes()
            + self.offsets.capacity() * 4
            + self.rows.capacity() * 4
            + self.tfs.capacity()
            + self.lens.capacity() * 2
            + self.pending.heap_bytes()
    }
}
