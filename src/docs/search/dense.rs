//! The dense kernels: vectors quantized to `i8`, one-bit sign codes that narrow a large scan,
//! and the integer and float dot products, compiled for the CPU's vector extensions.

use super::index::PREFILTER_ROWS;

/// Sign codes of the centred vectors: the Hamming distance between two codes tracks the angle
/// between the vectors, cheaply enough to rank 100k rows in well under a millisecond.
#[derive(Default)]
pub(super) struct Codes {
    pub(super) words: usize,
    pub(super) bits: Vec<u64>,
    pub(super) center: Vec<f32>,
}

impl Codes {
    /// The codes of the rows of `matrix` (quantized by 127), centred on their mean.
    pub(super) fn build(matrix: &[i8], dims: usize) -> Self {
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

    pub(super) fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// The code of the unit vector `q`.
    pub(super) fn of(&self, q: &[f32]) -> Vec<u64> {
        let mut code = vec![0u64; self.words];
        for (j, (&x, &c)) in q.iter().zip(&self.center).enumerate() {
            if x > c {
                code[j / 64] |= 1 << (j % 64);
            }
        }
        code
    }

    /// The `keep` rows whose codes are nearest to `q`'s, in row order.
    pub(super) fn nearest(&self, q: &[f32], keep: usize) -> Vec<usize> {
        let code = self.of(q);
        let dist = hamming(&self.bits, self.words, &code);
        // Distances are small integers, so a histogram finds the cut-off without sorting.
        let mut counts = vec![0usize; self.words * 64 + 1];
        for &d in &dist {
            counts[usize::from(d)] += 1;
        }
        let mut cut = 0;
        let mut total = 0;
        for (d, &n) in counts.iter().enumerate() {
            total += n;
            cut = d;
            if total >= keep {
                break;
            }
        }
        // Rows at the cut-off distance fill what is left, in row order.
        let mut at_cut = keep.saturating_sub(total - counts[cut]);
        let cut = cut as u16;
        let mut rows = Vec::with_capacity(keep);
        for (i, &d) in dist.iter().enumerate() {
            if d < cut {
                rows.push(i);
            } else if d == cut && at_cut > 0 {
                at_cut -= 1;
                rows.push(i);
            }
        }
        rows
    }
}

// The hot loops below are compiled for the CPU's vector extensions as well as the baseline,
// and the best version is chosen at run time: baseline x86-64 has no `popcnt`, and its integer
// dot product is about 2.5 times slower than with AVX2.

/// The Hamming distance of each row's code to `code`.
#[multiversion::multiversion(targets("x86_64+avx2+fma+popcnt", "x86_64+popcnt"))]
pub(super) fn hamming(bits: &[u64], words: usize, code: &[u64]) -> Vec<u16> {
    bits.chunks_exact(words)
        .map(|row| {
            row.iter()
                .zip(code)
                .map(|(a, b)| (a ^ b).count_ones() as u16)
                .sum()
        })
        .collect()
}

/// Integer dot product, written so the compiler vectorizes it.
#[inline(always)]
pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
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

/// The quantized scores of rows `start..end` of `matrix`.
#[multiversion::multiversion(targets("x86_64+avx2+fma+popcnt", "x86_64+popcnt"))]
pub(super) fn dot_rows(
    matrix: &[i8],
    dims: usize,
    q: &[i8],
    start: usize,
    end: usize,
) -> Vec<(i32, usize)> {
    (start..end)
        .map(|i| (dot_i8(&matrix[i * dims..(i + 1) * dims], q), i))
        .collect()
}

/// A quantized row's dot product with an unquantized vector, written so the compiler
/// vectorizes it.
#[inline(always)]
pub(super) fn dot_i8_f32(row: &[i8], q: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut cr = row.chunks_exact(16);
    let mut cq = q.chunks_exact(16);
    for (x, y) in (&mut cr).zip(&mut cq) {
        for j in 0..16 {
            acc[j] += f32::from(x[j]) * y[j];
        }
    }
    let tail: f32 = cr
        .remainder()
        .iter()
        .zip(cq.remainder())
        .map(|(&x, &y)| f32::from(x) * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// The similarity of each of `rows` to the unit vector `q`, against the unquantized query (the
/// rows' own rounding is all that is left, about 0.5% of a score).
#[multiversion::multiversion(targets("x86_64+avx2+fma+popcnt", "x86_64+popcnt"))]
pub(super) fn score_rows(
    matrix: &[i8],
    dims: usize,
    q: &[f32],
    rows: &[usize],
) -> Vec<(f32, usize)> {
    rows.iter()
        .map(|&i| (dot_i8_f32(&matrix[i * dims..(i + 1) * dims], q) / 127.0, i))
        .collect()
}

/// Quantized candidates re-scored per result wanted, below the prefilter's size.
pub(super) const RESCORE_FACTOR: usize = 4;

/// Rows per thread before a scan is split across cores.
pub(super) const ROWS_PER_THREAD: usize = 16_384;

pub(super) fn quantize(v: &[f32]) -> impl Iterator<Item = i8> + '_ {
    v.iter()
        .map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8)
}

/// The cores this process may use (read once: the standard library reads cgroup files for it
/// on every call).
pub(super) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The `want` best rows of `matrix` for `q` (approximate scores), best first.
pub(super) fn scan(matrix: &[i8], dims: usize, q: &[i8], want: usize) -> Vec<(i32, usize)> {
    let rows = matrix.len() / dims;
    let parts = (rows / ROWS_PER_THREAD).clamp(1, cores());
    let per = rows.div_ceil(parts);
    let top = |start: usize, end: usize| {
        let mut scored = dot_rows(matrix, dims, q, start, end);
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

/// The exact similarity of two unit vectors.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
