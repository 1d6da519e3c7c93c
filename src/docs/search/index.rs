//! The in-memory index of one conversation's chunks, built from the store when the conversation is
//! first searched (and again after its documents change): the vectors for dense search, a
//! BM25 index over the same chunks' words for lexical search, and where each row sits
//! (document and page), so results can keep one hit per page and reach a hit's neighbours.
//!
//! Rows are in the store's chunk order (document, page, position), so a chunk's neighbours in
//! its document are the rows beside it.

use std::collections::HashMap;

pub use super::dense::dot_f32;
use super::dense::{quantize, scan, score_rows, Codes, RESCORE_FACTOR};
use super::lexical::LexicalIndex;

/// Where a row's chunk sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// The document, as an ordinal within this index.
    pub doc: u32,
    /// The page; for a document without pages, a block of its chunks.
    pub page: u32,
}

/// Where a row's chunk is stored: its document (an ordinal into [`ConvIndex::doc_ids`]), and
/// the page and position it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAt {
    /// The document, as an ordinal within this index.
    pub doc: u32,
    /// The stored page (0 in a document without pages).
    pub page: u32,
    /// The position.
    pub position: u32,
}

/// The vectors of one conversation, loaded once and kept in memory, quantized to `i8`
/// (unit vectors scaled by 127): a quarter of the memory traffic of `f32`. Past
/// [`PREFILTER_ROWS`] rows, one bit per dimension (the sign after subtracting the mean vector)
/// first narrows the scan: 48 bytes a row instead of 384, which is what bounds a scan of 100k
/// vectors. The candidates are then scored against the unquantized query.
pub struct ConvIndex {
    /// Where each row's chunk is stored.
    pub keys: Vec<ChunkAt>,
    /// The documents' ids, by ordinal.
    pub doc_ids: Vec<String>,
    /// Each row's document and page.
    pub places: Vec<Place>,
    /// Words of each row (the heading and the text), for BM25.
    lexical: LexicalIndex,
    dims: usize,
    matrix: Vec<i8>,
    /// One-bit codes, [`Codes::words`] `u64`s a row; empty below [`PREFILTER_ROWS`].
    codes: Codes,
}

/// Rows from which the dense scan is narrowed by one-bit codes first.
pub const PREFILTER_ROWS: usize = 20_000;
/// Rows kept by the one-bit prefilter for each result wanted, and at least this many in all.
const PREFILTER_FACTOR: usize = 20;
const PREFILTER_MIN: usize = 1_000;

impl ConvIndex {
    /// Rows indexed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The vectors' dimension.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The `want` rows nearest to the unit vector `query`, best first; none when the
    /// dimension differs.
    pub fn dense(&self, query: &[f32], want: usize) -> Vec<usize> {
        self.dense_scored(query, want)
            .into_iter()
            .map(|(_, i)| i)
            .collect()
    }

    /// The `want` rows nearest to the unit vector `query`, best first, each with its
    /// similarity. Candidates come from the quantized scan (or, past [`PREFILTER_ROWS`], from
    /// the one-bit codes) and are scored against the unquantized query, so no vector has to
    /// be read from disk.
    pub fn dense_scored(&self, query: &[f32], want: usize) -> Vec<(f32, usize)> {
        if self.is_empty() || query.len() != self.dims || want == 0 {
            return Vec::new();
        }
        let candidates: Vec<usize> = if self.codes.is_empty() {
            let q8: Vec<i8> = quantize(query).collect();
            scan(&self.matrix, self.dims, &q8, want * RESCORE_FACTOR)
                .into_iter()
                .map(|(_, i)| i)
                .collect()
        } else {
            self.codes
                .nearest(query, (want * PREFILTER_FACTOR).max(PREFILTER_MIN))
        };
        let mut scored = score_rows(&self.matrix, self.dims, query, &candidates);
        if want < scored.len() {
            scored.select_nth_unstable_by(want - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(want);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
    }

    /// The similarity of each of `rows` to the unit vector `query` (as [`Self::dense_scored`]
    /// scores them); none when the dimension differs.
    pub fn similarity(&self, query: &[f32], rows: &[usize]) -> Vec<(f32, usize)> {
        if query.len() != self.dims {
            return Vec::new();
        }
        let rows: Vec<usize> = rows.iter().copied().filter(|&r| r < self.len()).collect();
        score_rows(&self.matrix, self.dims, query, &rows)
    }

    /// The `want` rows nearest to `query` by scoring every row (what the benchmark compares
    /// the prefilter's recall with).
    pub fn dense_exhaustive(&self, query: &[f32], want: usize) -> Vec<usize> {
        if self.is_empty() || query.len() != self.dims || want == 0 {
            return Vec::new();
        }
        let all: Vec<usize> = (0..self.len()).collect();
        let mut scored = score_rows(&self.matrix, self.dims, query, &all);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(want);
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The `want` best rows for `query` by BM25, best first, with their scores.
    pub fn lexical(&self, query: &str, want: usize) -> Vec<(f32, usize)> {
        self.lexical
            .search(query, want)
            .into_iter()
            .map(|(row, score)| (score, row as usize))
            .collect()
    }

    /// Memory held, approximately (the benchmark reports it).
    pub fn heap_bytes(&self) -> usize {
        self.matrix.len()
            + self.keys.len() * std::mem::size_of::<ChunkAt>()
            + self.doc_ids.iter().map(|d| d.len() + 24).sum::<usize>()
            + self.places.len() * std::mem::size_of::<Place>()
            + self.lexical.heap_bytes()
            + self.codes.bits.len() * 8
    }
}

/// Collects rows, then builds the index.
#[derive(Default)]
pub struct IndexBuilder {
    keys: Vec<ChunkAt>,
    places: Vec<Place>,
    dims: usize,
    matrix: Vec<i8>,
    lexical: LexicalIndex,
    docs: HashMap<String, u32>,
}

impl IndexBuilder {
    /// Adds a row: where it is stored (document id, stored page and position), the page it
    /// counts as for one hit per page, its vector and searchable text. A vector of another
    /// dimension than the first is skipped (`false`).
    pub fn push(
        &mut self,
        stored: (&str, u32, u32),
        page: u32,
        vector: &[f32],
        text: String,
    ) -> bool {
        let (doc, stored_page, position) = stored;
        if self.dims == 0 {
            self.dims = vector.len();
        }
        if vector.len() != self.dims || vector.is_empty() {
            return false;
        }
        let next = self.docs.len() as u32;
        let doc = match self.docs.get(doc) {
            Some(d) => *d,
            None => {
                self.docs.insert(doc.to_string(), next);
                next
            }
        };
        self.keys.push(ChunkAt {
            doc,
            page: stored_page,
            position,
        });
        self.places.push(Place { doc, page });
        self.matrix.extend(quantize(vector));
        // Indexed as it comes, so the texts of 100k chunks are never all in memory at once.
        self.lexical.push_bulk(&text);
        true
    }

    /// The index.
    pub fn finish(self) -> ConvIndex {
        let mut lexical = self.lexical;
        lexical.finish_bulk();
        let codes = Codes::build(&self.matrix, self.dims);
        let mut doc_ids = vec![String::new(); self.docs.len()];
        for (id, ordinal) in self.docs {
            doc_ids[ordinal as usize] = id;
        }
        ConvIndex {
            keys: self.keys,
            doc_ids,
            places: self.places,
            lexical,
            dims: self.dims,
            matrix: self.matrix,
            codes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dense::*;
    use super::*;

    #[test]
    fn the_one_bit_prefilter_keeps_the_nearest_rows() {
        // Clustered unit vectors, like embeddings of related texts: 30k rows around 300
        // centres that share a common offset (embeddings are not centred on zero).
        let dims = 64;
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let offset: Vec<f32> = (0..dims).map(|_| rnd() * 0.6).collect();
        let centres: Vec<Vec<f32>> = (0..300)
            .map(|_| (0..dims).map(|j| offset[j] + rnd()).collect())
            .collect();
        let mut b = IndexBuilder::default();
        let mut rows = Vec::new();
        for i in 0..30_000 {
            let c = &centres[i % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + rnd() * 0.4).collect();
            crate::docs::embed::normalize(&mut v);
            b.push(("d", 1, i as u32), 1, &v, String::new());
            rows.push(v);
        }
        let idx = b.finish();
        assert!(!idx.codes.is_empty(), "30k rows use the prefilter");
        let (mut found, mut total) = (0, 0);
        for qi in (0..30_000).step_by(997) {
            let q = &rows[qi];
            let fast = idx.dense(q, 20);
            let full = idx.dense_exhaustive(q, 20);
            assert_eq!(fast[0], full[0], "the nearest row is never lost");
            total += full.len();
            found += full.iter().filter(|r| fast.contains(r)).count();
        }
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.95, "prefilter recall@20 {recall:.3}");
    }

    #[test]
    fn quantized_scan_finds_the_exact_best_rows() {
        let dims = 40;
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let rows: Vec<Vec<f32>> = (0..3000)
            .map(|_| {
                let mut v: Vec<f32> = (0..dims).map(|_| rnd()).collect();
                crate::docs::embed::normalize(&mut v);
                v
            })
            .collect();
        let matrix: Vec<i8> = rows.iter().flat_map(|r| quantize(r)).collect();
        let q = rows[1234].clone();
        let q8: Vec<i8> = quantize(&q).collect();
        let top = scan(&matrix, dims, &q8, 40);
        assert_eq!(top[0].1, 1234, "a vector is its own best match");
        // The exact top 5 are all among the 40 approximate candidates.
        let mut exact: Vec<(f32, usize)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (dot_f32(r, &q), i))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, i) in &exact[..5] {
            assert!(top.iter().any(|(_, j)| j == i), "row {i} missed");
        }
        assert_eq!(dot_i8(&[1, 2, 3], &[4, 5, 6]), 32);
    }
}
