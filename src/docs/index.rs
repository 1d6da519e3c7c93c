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
/// (unit vectors scaled by 127): a quarter of the memory traffic of `f32`, which is what bounds
/// a scan of 100k vectors. The best candidates are re-scored exactly from the stored `f32`s.
pub struct ConvIndex {
    /// Each row's chunk key in sled.
    pub keys: Vec<sled::IVec>,
    /// Each row's document and page.
    pub places: Vec<Place>,
    /// Words of each row (the heading and the text), for BM25.
    lexical: LexicalIndex,
    dims: usize,
    matrix: Vec<i8>,
}

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
    }
}

/// Collects rows, then builds the index.
#[derive(Default)]
pub struct IndexBuilder {
    keys: Vec<sled::IVec>,
    places: Vec<Place>,
    dims: usize,
    matrix: Vec<i8>,
    texts: Vec<String>,
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
        self.texts.push(text);
        true
    }

    /// The index.
    pub fn finish(self) -> ConvIndex {
        let lexical = LexicalIndex::build(self.texts.iter().map(String::as_str));
        ConvIndex {
            keys: self.keys,
            places: self.places,
            lexical,
            dims: self.dims,
            matrix: self.matrix,
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
