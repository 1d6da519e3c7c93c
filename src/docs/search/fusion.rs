//! Ranking over one conversation's index: dense and lexical candidates fused, one hit per
//! page.
//!
//! Two fusions. Score fusion (the default) ranks every candidate of either list by its cosine
//! similarity plus a small bonus for its words, BM25 relative to the best match: the embedding
//! decides between clearly different meanings, and exact terms decide between near-equals,
//! which is where dense search alone goes wrong. Reciprocal rank fusion needs no calibration
//! between the two scales, but it lets a weak lexical list pull a clear dense winner down: on
//! the benchmark's paraphrased questions it lost to dense search alone in MRR@5.

use super::index::{ConvIndex, Place};
use super::{SearchMode, CANDIDATES};
use crate::settings::{DocumentSettings, FusionChoice};

/// The constant of reciprocal rank fusion (the usual 60: later ranks still count, a little).
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists (best first) by reciprocal rank, each list counting with its weight: a
/// row scores Σ w/(k + rank), rank from 1. Best first; ties keep the order of first
/// appearance.
pub fn weighted_rrf(lists: &[(&[usize], f32)], k: f32) -> Vec<(f32, usize)> {
    let mut scores: Vec<(f32, usize)> = Vec::new();
    let mut at: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (list, weight) in lists {
        for (rank, &row) in list.iter().enumerate() {
            let s = weight / (k + rank as f32 + 1.0);
            match at.get(&row) {
                Some(&i) => scores[i].0 += s,
                None => {
                    at.insert(row, scores.len());
                    scores.push((s, row));
                }
            }
        }
    }
    // A stable sort: equal scores keep the order in which the rows first appeared.
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    scores
}

/// Score fusion: each candidate (a row of `dense`, with its cosine similarity, or of `lexical`,
/// with its BM25 score) scores its similarity plus `bonus` times its BM25 score over the best
/// BM25 score. `similarity` gives the similarity of the lexical rows that dense search did not
/// return. Best first; ties keep the order of first appearance.
pub fn score_fusion(
    dense: &[(f32, usize)],
    lexical: &[(f32, usize)],
    similarity: impl FnOnce(&[usize]) -> Vec<(f32, usize)>,
    bonus: f32,
) -> Vec<(f32, usize)> {
    let mut at: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut scores: Vec<(f32, usize)> = Vec::with_capacity(dense.len() + lexical.len());
    for &(s, row) in dense {
        at.entry(row).or_insert_with(|| {
            scores.push((s, row));
            scores.len() - 1
        });
    }
    let missing: Vec<usize> = lexical
        .iter()
        .map(|&(_, row)| row)
        .filter(|row| !at.contains_key(row))
        .collect();
    for (s, row) in similarity(&missing) {
        at.entry(row).or_insert_with(|| {
            scores.push((s, row));
            scores.len() - 1
        });
    }
    let best = lexical.iter().map(|x| x.0).fold(0f32, f32::max);
    if best > 0.0 {
        for &(s, row) in lexical {
            match at.get(&row) {
                Some(&i) => scores[i].0 += bonus * s / best,
                // No similarity for it (no vector): the words alone, below any similarity.
                None => {
                    at.insert(row, scores.len());
                    scores.push((bonus * s / best - 2.0, row));
                }
            }
        }
    }
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    scores
}

/// Keeps the best row of each (document, page); the order is kept.
pub fn best_per_page(ranked: Vec<(f32, usize)>, places: &[Place]) -> Vec<(f32, usize)> {
    let mut seen = std::collections::HashSet::new();
    ranked
        .into_iter()
        .filter(|(_, row)| places.get(*row).is_some_and(|p| seen.insert(*p)))
        .collect()
}

/// How `rank` fuses, from the settings.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fusion {
    /// Similarity plus a lexical bonus of at most this.
    Score(f32),
    /// Reciprocal rank, the lexical list with this weight.
    Rrf(f32),
}

impl Fusion {
    pub(super) fn of(cfg: &DocumentSettings) -> Self {
        match cfg.fusion {
            FusionChoice::Score => Self::Score(cfg.lexical_bonus.max(0.0)),
            FusionChoice::Rrf => Self::Rrf(cfg.lexical_weight.max(0.0)),
        }
    }
}

/// The index's best rows by `mode` (fused ranks for `Reranked`) from the question's vector and
/// its lexical results, one per page, at most `want`, each with its score.
pub(super) fn rank(
    idx: &ConvIndex,
    vector: Option<&[f32]>,
    lexical: &[(f32, usize)],
    mode: SearchMode,
    want: usize,
    fusion: Fusion,
) -> Vec<(f32, usize)> {
    let dense = match vector {
        Some(q) => idx.dense_scored(q, CANDIDATES),
        None => Vec::new(),
    };
    let ranked = match (mode, fusion, vector) {
        (SearchMode::Dense, _, _) => dense,
        // Without a vector (the embedder failed) fused search is lexical search.
        (SearchMode::Lexical, _, _) | (_, _, None) => lexical.to_vec(),
        (SearchMode::Fused | SearchMode::Reranked, Fusion::Score(bonus), Some(q)) => {
            score_fusion(&dense, lexical, |rows| idx.similarity(q, rows), bonus)
        }
        (SearchMode::Fused | SearchMode::Reranked, Fusion::Rrf(weight), Some(_)) => {
            let dense_rows: Vec<usize> = dense.iter().map(|x| x.1).collect();
            let lexical_rows: Vec<usize> = lexical.iter().map(|x| x.1).collect();
            weighted_rrf(&[(&dense_rows, 1.0), (&lexical_rows, weight)], RRF_K)
        }
    };
    let mut kept = best_per_page(ranked, &idx.places);
    kept.truncate(want);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_rewards_rows_both_lists_rank() {
        let dense = [1, 2, 3];
        let lexical = [3, 4, 1];
        let fused = weighted_rrf(&[(&dense, 1.0), (&lexical, 1.0)], RRF_K);
        let rows: Vec<usize> = fused.iter().map(|x| x.1).collect();
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 — equal, 1 came first; then 2 and 4 (rank 2 each).
        assert_eq!(rows, [1, 3, 2, 4]);
        assert!((fused[0].0 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn the_lexical_bonus_breaks_near_ties_but_does_not_overrule_meaning() {
        // Dense: row 1 clearly best, rows 2 and 3 close. Lexical: row 3 best, row 4 (not in the
        // dense list) second, row 2 weak.
        let dense = [(0.80, 1), (0.61, 2), (0.60, 3)];
        let lexical = [(12.0, 3), (6.0, 4), (3.0, 2)];
        let mut asked = Vec::new();
        let fused = score_fusion(
            &dense,
            &lexical,
            |rows| {
                asked = rows.to_vec();
                vec![(0.50, 4)]
            },
            0.05,
        );
        // Only the row dense search did not score is asked for its similarity.
        assert_eq!(asked, [4]);
        let rows: Vec<usize> = fused.iter().map(|x| x.1).collect();
        assert_eq!(rows, [1, 3, 2, 4]);
        // The best lexical match gets the whole bonus, the others their share of its score.
        assert!((fused[1].0 - 0.65).abs() < 1e-6, "{fused:?}");
        assert!((fused[2].0 - (0.61 + 0.05 / 4.0)).abs() < 1e-6, "{fused:?}");
        assert!((fused[3].0 - (0.50 + 0.05 / 2.0)).abs() < 1e-6, "{fused:?}");
        // Without lexical results the dense order stands.
        let alone = score_fusion(&dense, &[], |_| Vec::new(), 0.05);
        assert_eq!(alone, dense.to_vec());
        // A lexical row whose similarity is unknown still appears, after every scored row.
        let unknown = score_fusion(&dense, &lexical, |_| Vec::new(), 0.05);
        assert_eq!(unknown.last().map(|x| x.1), Some(4));
    }

    #[test]
    fn one_hit_per_page() {
        let places = [
            Place { doc: 0, page: 1 },
            Place { doc: 0, page: 1 },
            Place { doc: 0, page: 2 },
            Place { doc: 1, page: 1 },
        ];
        let kept = best_per_page(vec![(0.9, 1), (0.8, 0), (0.7, 3), (0.6, 2)], &places);
        assert_eq!(kept, vec![(0.9, 1), (0.7, 3), (0.6, 2)]);
    }

    /// Four rows: document `a` page 1 (rows 0 and 1) and page 2 (row 2), document `b` page 1
    /// (row 3); their vectors turn from the query's direction (row 0) to a right angle (row 3).
    fn four_rows() -> ConvIndex {
        let mut b = super::super::index::IndexBuilder::default();
        let rows = [
            (("a", 1), [1.0, 0.0]),
            (("a", 1), [0.8, 0.6]),
            (("a", 2), [0.6, 0.8]),
            (("b", 1), [0.0, 1.0]),
        ];
        for (i, ((doc, page), v)) in rows.into_iter().enumerate() {
            assert!(b.push((doc, page, i as u32), page, &v, format!("row {i}")));
        }
        b.finish()
    }

    fn ranked(
        idx: &ConvIndex,
        vector: Option<&[f32]>,
        mode: SearchMode,
        want: usize,
        fusion: Fusion,
    ) -> Vec<usize> {
        // Lexical: row 3 best, then row 1, then row 0 (on row 1's page).
        let lexical = [(5.0, 3), (4.0, 1), (1.0, 0)];
        rank(idx, vector, &lexical, mode, want, fusion)
            .into_iter()
            .map(|x| x.1)
            .collect()
    }

    #[test]
    fn rank_keeps_one_row_a_page_and_at_most_want() {
        let idx = four_rows();
        let q: &[f32] = &[1.0, 0.0];
        let none = Fusion::Score(0.05);
        assert_eq!(
            ranked(&idx, Some(q), SearchMode::Dense, 10, none),
            [0, 2, 3]
        );
        assert_eq!(ranked(&idx, Some(q), SearchMode::Dense, 2, none), [0, 2]);
        // Lexical search ignores the vector; row 0 shares row 1's page.
        assert_eq!(ranked(&idx, Some(q), SearchMode::Lexical, 10, none), [3, 1]);
        assert!(ranked(&idx, Some(q), SearchMode::Dense, 0, none).is_empty());
    }

    #[test]
    fn fused_search_without_a_vector_is_lexical_search() {
        let idx = four_rows();
        for mode in [SearchMode::Fused, SearchMode::Reranked] {
            for fusion in [Fusion::Score(0.05), Fusion::Rrf(1.0)] {
                assert_eq!(
                    ranked(&idx, None, mode, 10, fusion),
                    [3, 1],
                    "{mode:?} {fusion:?}"
                );
            }
        }
    }

    #[test]
    fn the_fusion_decides_how_far_words_move_a_row() {
        let idx = four_rows();
        let q: &[f32] = &[1.0, 0.0];
        // A small bonus leaves the dense order; a large one lets the words win.
        assert_eq!(
            ranked(&idx, Some(q), SearchMode::Fused, 10, Fusion::Score(0.05)),
            [0, 2, 3]
        );
        assert_eq!(
            ranked(&idx, Some(q), SearchMode::Fused, 10, Fusion::Score(1.0)),
            [1, 3, 2]
        );
        // Reciprocal rank: row 0 (ranks 1 and 3) beats row 1 (2 and 2) by a hair, and row 3
        // (4 and 1) beats row 2 (3 and none); a lexical weight of 0 leaves the dense order.
        assert_eq!(
            ranked(&idx, Some(q), SearchMode::Reranked, 10, Fusion::Rrf(1.0)),
            [0, 3, 2]
        );
        assert_eq!(
            ranked(&idx, Some(q), SearchMode::Fused, 10, Fusion::Rrf(0.0)),
            [0, 2, 3]
        );
    }

    #[test]
    fn the_fusion_comes_from_the_settings_never_negative() {
        let mut cfg = DocumentSettings {
            fusion: FusionChoice::Score,
            lexical_bonus: 0.07,
            lexical_weight: 0.5,
            ..DocumentSettings::default()
        };
        assert!(matches!(Fusion::of(&cfg), Fusion::Score(b) if b == 0.07));
        cfg.lexical_bonus = -1.0;
        assert!(matches!(Fusion::of(&cfg), Fusion::Score(b) if b == 0.0));
        cfg.fusion = FusionChoice::Rrf;
        assert!(matches!(Fusion::of(&cfg), Fusion::Rrf(w) if w == 0.5));
        cfg.lexical_weight = -2.0;
        assert!(matches!(Fusion::of(&cfg), Fusion::Rrf(w) if w == 0.0));
    }
}
