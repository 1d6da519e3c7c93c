//! The in-memory index of one conversation's chunks, built from sled when the conversation is
//! first searched (and again after its documents change): the vectors for dense search, a
//! BM25 index over the same chunks' words for lexical search, and where each row sits
//! (document and page), so results can keep one hit per page and reach a hit's neighbours.
//!
//! Rows are in key order (`conversation\0document\0page position`), so a chunk's neighbours
//! in its document are the rows beside it.

use std::collections::HashMap;

use super::lexical::LexicalIndex;

/// Where a row's chunk sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// The document, as an ordinal within this index.
    pub doc: u32,
    /// The page; for a document without pages, a block of its chunks.
    pub page: u32,
}

/// The vectors of one conversation, loaded once and kept in memory, quantized to `i8`
/// (unit vectors scaled by 127): a quarter of the memory traffic of `f32`. Past
/// [`PREFILTER_ROWS`] rows, one bit per dimension (the sign after subtracting the mean vector)
/// first narrows the scan: 48 bytes a row instead of 384, which is what bounds a scan of 100k
/// vectors. The best candidates are re-scored exactly from the stored `f32`s.
pub struct ConvIndex {
    /// Each row's chunk key in sled.
    pub keys: Vec<sled::IVec>,
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
const PREFILTER_FACTOR: usize = 40;
const PREFILTER_MIN: usize = 2_000;

/// Sign codes of the centred vectors: the Hamming distance between two codes tracks the angle
/// between the vectors, cheaply enough to rank 100k rows in well under a millisecond.
#[derive(Default)]
struct Codes {
    words: usize,
    bits: Vec<u64>,
    center: Vec<f32>,
}

impl Codes {
    /// The codes of the rows of `matrix` (quantized by 127), centred on their mean.
    fn build(matrix: &[i8], dims: usize) -> Self {
        let rows = matrix.len() / dims.max(1);
        if dims == 0 || rows < PREFILTER_ROWS {
            return Self::default();
        }
        let mut sum = vec![0f64; dims];
        for row in matrix.chunks_exact(dims) {
            for (s, &x) in sum.iter_mut().zip(row) {
                *s += f64::from(x);
            }
        }
        let center: Vec<f32> = sum.iter().map(|s| (*s / rows as f64) as f32).collect();
        let words = dims.div_ceil(64);
        let mut bits = vec![0u64; rows * words];
        for (r, row) in matrix.chunks_exact(dims).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                if f32::from(x) > center[j] {
                    bits[r * words + j / 64] |= 1 << (j % 64);
                }
            }
        }
        Self {
            words,
            bits,
            center: center.iter().map(|c| c / 127.0).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// The code of the unit vector `q`.
    fn of(&self, q: &[f32]) -> Vec<u64> {
        let mut code = vec![0u64; self.words];
        for (j, (&x, &c)) in q.iter().zip(&self.center).enumerate() {
            if x > c {
                code[j / 64] |= 1 << (j % 64);
            }
        }
        code
    }

    /// The `keep` rows whose codes are nearest to `q`'s, in row order.
    fn nearest(&self, q: &[f32], keep: usize) -> Vec<usize> {
        let code = self.of(q);
        let mut dist: Vec<(u32, usize)> = self
            .bits
            .chunks_exact(self.words)
            .map(|row| {
                row.iter()
                    .zip(&code)
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum()
            })
            .zip(0..)
            .collect();
        if keep < dist.len() {
            dist.select_nth_unstable_by_key(keep, |d| d.0);
            dist.truncate(keep);
        }
        let mut rows: Vec<usize> = dist.into_iter().map(|d| d.1).collect();
        rows.sort_unstable();
        rows
    }
}

/// Quantized candidates re-scored per result wanted.
const RESCORE_FACTOR: usize = 4;

/// Rows per thread before a scan is split across cores.
const ROWS_PER_THREAD: usize = 16_384;

fn quantize(v: &[f32]) -> impl Iterator<Item = i8> + '_ {
    v.iter()
        .map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
}

/// Integer dot product, written so the compiler vectorizes it.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..16 {
            acc[j] += i32::from(x[j]) * i32::from(y[j]);
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

/// The `want` best rows of `matrix` for `q` (approximate scores), best first.
fn scan(matrix: &[i8], dims: usize, q: &[i8], want: usize) -> Vec<(i32, usize)> {
    let rows = matrix.len() / dims;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let parts = (rows / ROWS_PER_THREAD).clamp(1, threads);
    let per = rows.div_ceil(parts);
    let top = |start: usize, end: usize| {
        let mut scored: Vec<(i32, usize)> = (start..end)
            .map(|i| (dot_i8(&matrix[i * dims..(i + 1) * dims], q), i))
            .collect();
        let k = want.min(scored.len());
        if k > 0 && k < scored.len() {
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.cmp(&a.0));
            scored.truncate(k);
        }
        scored
    };
    let mut all: Vec<(i32, usize)> = if parts == 1 {
        top(0, rows)
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parts)
                .map(|p| {
                    let (start, end) = (p * per, ((p + 1) * per).min(rows));
                    s.spawn(move || top(start, end))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("scan thread"))
                .collect()
        })
    };
    all.sort_by_key(|x| std::cmp::Reverse(x.0));
    all.truncate(want);
    all
}

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

    /// The `want` rows nearest to the unit vector `query` by the quantized scan (approximate
    /// scores), best first; none when the dimension differs.
    pub fn dense(&self, query: &[f32], want: usize) -> Vec<usize> {
        if self.is_empty() || query.len() != self.dims || want == 0 {
            return Vec::new();
        }
        let q8: Vec<i8> = quantize(query).collect();
        if self.codes.is_empty() {
            return scan(&self.matrix, self.dims, &q8, want)
                .into_iter()
                .map(|(_, i)| i)
                .collect();
        }
        // Over 20k rows.
        let keep = (want * PREFILTER_FACTOR).max(PREFILTER_MIN);
        let mut scored: Vec<(i32, usize)> = self
            .codes
            .nearest(query, keep)
            .into_iter()
            .map(|i| {
                let row = &self.matrix[i * self.dims..(i + 1) * self.dims];
                (dot_i8(row, &q8), i)
            })
            .collect();
        scored.sort_by_key(|x| std::cmp::Reverse(x.0));
        scored.truncate(want);
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The `want` rows nearest to `query`, best first, each with its similarity: the quantized
    /// candidates re-scored against the unquantized query (the rows' own rounding is all that
    /// is left, about 0.5% of a score), so no vector has to be read from disk.
    pub fn dense_scored(&self, query: &[f32], want: usize) -> Vec<(f32, usize)> {
        let mut scored: Vec<(f32, usize)> = self
            .dense(query, want * RESCORE_FACTOR)
            .into_iter()
            .map(|i| {
                let row = &self.matrix[i * self.dims..(i + 1) * self.dims];
                let dot: f32 = row.iter().zip(query).map(|(&r, &q)| f32::from(r) * q).sum();
                (dot / 127.0, i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(want);
        scored
    }

    /// The `want` rows nearest to `query` by the full quantized scan, without the prefilter
    /// (what the benchmark compares the prefilter's recall with).
    pub fn dense_exhaustive(&self, query: &[f32], want: usize) -> Vec<usize> {
        if self.is_empty() || query.len() != self.dims || want == 0 {
            return Vec::new();
        }
        let q8: Vec<i8> = quantize(query).collect();
        scan(&self.matrix, self.dims, &q8, want)
            .into_iter()
            .map(|(_, i)| i)
            .collect()
    }

    /// The `want` best rows for `query` by BM25, best first.
    pub fn lexical(&self, query: &str, want: usize) -> Vec<usize> {
        self.lexical
            .search(query, want)
            .into_iter()
            .map(|(row, _)| row as usize)
            .collect()
    }

    /// Memory held, approximately (the benchmark reports it).
    pub fn heap_bytes(&self) -> usize {
        self.matrix.len()
            + self.keys.iter().map(|k| k.len() + 24).sum::<usize>()
            + self.places.len() * std::mem::size_of::<Place>()
            + self.lexical.heap_bytes()
            + self.codes.bits.len() * 8
    }
}

/// Collects rows, then builds the index.
#[derive(Default)]
pub struct IndexBuilder {
    keys: Vec<sled::IVec>,
    places: Vec<Place>,
    dims: usize,
    matrix: Vec<i8>,
    lexical: LexicalIndex,
    docs: HashMap<Vec<u8>, u32>,
}

impl IndexBuilder {
    /// Adds a row: its key, document id, page, vector and searchable text. A vector of
    /// another dimension than the first is skipped (`false`).
    pub fn push(
        &mut self,
        key: sled::IVec,
        doc: &[u8],
        page: u32,
        vector: &[f32],
        text: String,
    ) -> bool {
        if self.dims == 0 {
            self.dims = vector.len();
        }
        if vector.len() != self.dims || vector.is_empty() {
            return false;
        }
        let next = self.docs.len() as u32;
        let doc = *self.docs.entry(doc.to_vec()).or_insert(next);
        self.keys.push(key);
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
        ConvIndex {
            keys: self.keys,
            places: self.places,
            lexical,
            dims: self.dims,
            matrix: self.matrix,
            codes,
        }
    }
}

/// The exact similarity of two unit vectors.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
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
            b.push(sled::IVec::from(&[0u8][..]), b"d", 1, &v, String::new());
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
