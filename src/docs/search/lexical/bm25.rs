//! BM25 scoring: term-at-a-time, rarest term first, with a MaxScore bound that settles the
//! top `n` before the long posting lists are read in full.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::analysis::*;
use super::postings::*;
use super::LexicalIndex;

/// BM25 term-frequency saturation.
pub const K1: f32 = 1.2;

/// BM25 length normalisation.
pub const B: f32 = 0.75;

impl LexicalIndex {
    /// The `n` best rows for `query` by BM25, best first, ties to the lower row. A query with
    /// no indexable term (empty, stop words only) finds nothing.
    ///
    /// Terms are scored rarest first. Before each long posting list the rows that can still
    /// make the top `n` are bounded (MaxScore): a row the rarer terms did not touch scores at
    /// most the sum of the remaining terms' bounds, so once `n` rows are above that, the long
    /// lists (words found in most chunks) are only looked up for the few rows still in the
    /// running. The result is the exact BM25 top `n`.
    pub fn search(&self, query: &str, n: usize) -> Vec<(u32, f32)> {
        let rows = self.lens.len();
        let n = n.min(rows);
        if n == 0 {
            return Vec::new();
        }
        let mut terms = Vec::new();
        analyse(query, &mut terms);
        // A repeated query term counts once.
        terms.sort_unstable();
        terms.dedup();
        let n_rows = rows as f32;
        let mut lists: Vec<QueryTerm<'_>> = terms
            .iter()
            .filter_map(|t| self.postings(t))
            .map(|postings| {
                let df = postings.rows.len() + postings.pending.len();
                let idf = (1.0 + (n_rows - df as f32 + 0.5) / (df as f32 + 0.5)).ln();
                QueryTerm { postings, df, idf }
            })
            .collect();
        if lists.is_empty() {
            return Vec::new();
        }
        lists.sort_by_key(|l| l.df);
        // The postings and the score bound of lists[i..]; the tf part is below k1 + 1.
        let mut rest = vec![(0usize, 0f32); lists.len() + 1];
        for i in (0..lists.len()).rev() {
            rest[i] = (
                rest[i + 1].0 + lists[i].df,
                rest[i + 1].1 + lists[i].idf * (K1 + 1.0),
            );
        }

        let norms = Norms::new(self.total_len as f32 / n_rows, self.max_len);
        let mut scores = vec![0f32; rows];
        let mut touched: Vec<u32> = Vec::new();
        let mut done_bound = 0f32;
        for (i, list) in lists.iter().enumerate() {
            let (rest_postings, rest_bound) = rest[i];
            // Headroom for rounding in the sums, so that pruning stays exact.
            let rest_bound = rest_bound * 1.001 + 1e-6;
            // The check costs a pass over the touched rows: worth it only before long lists,
            // and only when the rows scored so far could be above the bound at all.
            if touched.len() >= n && rest_postings > 2 * touched.len() && done_bound > rest_bound {
                let mut best = Best::new(n);
                for &row in &touched {
                    best.offer(row, scores[row as usize]);
                }
                let nth = best.floor;
                if nth > rest_bound {
                    let live = touched
                        .into_iter()
                        .filter(|&row| scores[row as usize] + rest_bound >= nth)
                        .collect();
                    return self.finish_live(&lists[i..], &rest[i + 1..], live, n, &norms, scores);
                }
            }
            self.accumulate(list, &norms, &mut scores, &mut touched);
            done_bound += list.idf * (K1 + 1.0);
        }

        let mut best = Best::new(n);
        for row in touched {
            best.offer(row, scores[row as usize]);
        }
        best.into_sorted()
    }

    /// Adds one term's contributions to `scores`, noting rows scored for the first time in
    /// `touched`.
    pub(super) fn accumulate(
        &self,
        list: &QueryTerm<'_>,
        norms: &Norms,
        scores: &mut [f32],
        touched: &mut Vec<u32>,
    ) {
        let p = &list.postings;
        let frozen = p.rows.iter().copied().zip(p.tfs.iter().copied());
        for (row, tf) in frozen.chain(p.pending.iter().copied()) {
            let (Some(score), Some(&len)) =
                (scores.get_mut(row as usize), self.lens.get(row as usize))
            else {
                continue;
            };
            // Every contribution is positive, so a zero score means a row not yet seen.
            if *score == 0.0 {
                touched.push(row);
            }
            *score += list.idf * norms.tf_part(tf, len);
        }
    }

    /// Scores the remaining (long) `lists` for the `live` rows only, the rows that can still
    /// make the top `n`, and returns the top `n`. `rest[j]` is the postings and score bound of
    /// the lists after `lists[j]`; as the bound shrinks, so does the set of live rows.
    pub(super) fn finish_live(
        &self,
        lists: &[QueryTerm<'_>],
        rest: &[(usize, f32)],
        mut live: Vec<u32>,
        n: usize,
        norms: &Norms,
        mut scores: Vec<f32>,
    ) -> Vec<(u32, f32)> {
        live.sort_unstable();
        let mut marks: Vec<u64> = Vec::new();
        for (list, &(_, rest_bound)) in lists.iter().zip(rest) {
            self.accumulate_live(list, &live, &mut marks, norms, &mut scores);
            let rest_bound = rest_bound * 1.001 + 1e-6;
            let mut best = Best::new(n);
            for &row in &live {
                best.offer(row, scores[row as usize]);
            }
            let nth = best.floor;
            live.retain(|&row| scores[row as usize] + rest_bound >= nth);
        }
        let mut best = Best::new(n);
        for row in live {
            best.offer(row, scores[row as usize]);
        }
        best.into_sorted()
    }

    /// Adds one term's contributions to the scores of the `live` rows (ascending) only.
    pub(super) fn accumulate_live(
        &self,
        list: &QueryTerm<'_>,
        live: &[u32],
        marks: &mut Vec<u64>,
        norms: &Norms,
        scores: &mut [f32],
    ) {
        let p = &list.postings;
        let mut add = |row: u32, tf: u8| {
            if let (Some(score), Some(&len)) =
                (scores.get_mut(row as usize), self.lens.get(row as usize))
            {
                *score += list.idf * norms.tf_part(tf, len);
            }
        };
        // Few live rows: look each up (galloping). Many: one pass over the postings with a
        // bit per row, which beats a dependent load per step of a search.
        if live.len() * 64 < list.df {
            let (mut f, mut q) = (0, 0);
            for &row in live {
                f = seek(p.rows.len(), f, row, |i| p.rows[i]);
                if let (Some(&r), Some(&tf)) = (p.rows.get(f), p.tfs.get(f)) {
                    if r == row {
                        add(row, tf);
                        continue;
                    }
                }
                q = seek(p.pending.len(), q, row, |i| p.pending[i].0);
                if let Some(&(r, tf)) = p.pending.get(q) {
                    if r == row {
                        add(row, tf);
                    }
                }
            }
            return;
        }
        if marks.is_empty() {
            marks.resize(self.lens.len().div_ceil(64), 0);
        }
        marks.fill(0);
        for &row in live {
            if let Some(word) = marks.get_mut(row as usize / 64) {
                *word |= 1 << (row % 64);
            }
        }
        let is_live = |row: u32| {
            marks
                .get(row as usize / 64)
                .is_some_and(|word| word & (1 << (row % 64)) != 0)
        };
        let frozen = p.rows.iter().copied().zip(p.tfs.iter().copied());
        for (row, tf) in frozen.chain(p.pending.iter().copied()) {
            if is_live(row) {
                add(row, tf);
            }
        }
    }
}

/// A query term that occurs in the index.
pub(super) struct QueryTerm<'a> {
    pub(super) postings: TermPostings<'a>,
    pub(super) df: usize,
    pub(super) idf: f32,
}

/// The term-frequency part of BM25, (k1 + 1)·tf / (tf + k1·(1 − b + b·len/avgdl)),
/// tabulated per query for small tf and length (chunks are short) so that the inner loop
/// has no division.
pub(super) struct Norms {
    /// k1·(1 − b) and k1·b/avgdl: the length norm is `base + slope·len`.
    pub(super) base: f32,
    pub(super) slope: f32,
    /// Lengths tabulated: `0..width`.
    pub(super) width: usize,
    /// The part for tf `1..=TF` and length `0..width`, tf-major.
    pub(super) table: Vec<f32>,
}

impl Norms {
    /// Term frequencies tabulated.
    const TF: usize = 8;
    /// Lengths tabulated at most.
    const LENGTHS: usize = 256;

    pub(super) fn new(avgdl: f32, max_len: u16) -> Self {
        let base = K1 * (1.0 - B);
        let slope = K1 * B / avgdl.max(1.0);
        let width = (usize::from(max_len) + 1).min(Self::LENGTHS);
        let mut norms = Norms {
            base,
            slope,
            width,
            table: Vec::with_capacity(Self::TF * width),
        };
        for tf in 1..=Self::TF as u8 {
            for len in 0..width {
                let part = norms.compute(tf, len as f32);
                norms.table.push(part);
            }
        }
        norms
    }

    pub(super) fn compute(&self, tf: u8, len: f32) -> f32 {
        let tf = f32::from(tf);
        (K1 + 1.0) * tf / (tf + self.base + self.slope * len)
    }

    pub(super) fn tf_part(&self, tf: u8, len: u16) -> f32 {
        let (t, l) = (usize::from(tf), usize::from(len));
        if (1..=Self::TF).contains(&t) && l < self.width {
            if let Some(&part) = self.table.get((t - 1) * self.width + l) {
                return part;
            }
        }
        self.compute(tf, f32::from(len))
    }
}

/// A scored row; greater is better (higher score, then lower row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Hit {
    pub(super) row: u32,
    pub(super) score: f32,
}

impl Eq for Hit {}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.row.cmp(&self.row))
    }
}

/// The best `n` hits offered so far: a min-heap whose top is the worst kept, its score
/// cached in `floor` so that most candidates are turned away by one comparison.
pub(super) struct Best {
    pub(super) n: usize,
    pub(super) heap: BinaryHeap<Reverse<Hit>>,
    pub(super) floor: f32,
}

impl Best {
    pub(super) fn new(n: usize) -> Self {
        Best {
            n,
            heap: BinaryHeap::with_capacity(n),
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub(super) fn offer(&mut self, row: u32, score: f32) {
        if score < self.floor {
            return;
        }
        let hit = Hit { row, score };
        if self.heap.len() < self.n {
            self.heap.push(Reverse(hit));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if hit > worst.0 {
                *worst = Reverse(hit);
            }
        }
        if self.heap.len() == self.n {
            if let Some(worst) = self.heap.peek() {
                self.floor = worst.0.score;
            }
        }
    }

    /// Best first.
    pub(super) fn into_sorted(self) -> Vec<(u32, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(h)| (h.row, h.score))
            .collect()
    }
}
