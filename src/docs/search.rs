//! Hybrid retrieval over one conversation's index: dense and lexical candidates fused, one hit
//! per page, and each hit quoted with its neighbouring chunks so an answer that crosses a chunk
//! or page break arrives whole.
//!
//! Two fusions. Score fusion (the default) ranks every candidate of either list by its cosine
//! similarity plus a small bonus for its words, BM25 relative to the best match: the embedding
//! decides between clearly different meanings, and exact terms decide between near-equals,
//! which is where dense search alone goes wrong. Reciprocal rank fusion needs no calibration
//! between the two scales, but it lets a weak lexical list pull a clear dense winner down: on
//! the benchmark's paraphrased questions it lost to dense search alone in MRR@5.

use super::index::{ConvIndex, Place};
use super::store::DocStore;
use super::DocError;
use crate::retrieval::Passage;

/// Candidates taken from each of dense and lexical search before fusion.
pub const CANDIDATES: usize = 50;
/// The constant of reciprocal rank fusion (the usual 60: later ranks still count, a little).
pub const RRF_K: f32 = 60.0;
/// Passages the reranker orders.
pub const RERANK_POOL: usize = 20;

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

/// The longest overlap looked for between neighbouring chunks, in bytes (more than the
/// chunker's overlap of 16 wordpieces can hold).
const MAX_OVERLAP: usize = 600;

/// `a` followed by `b`, where `b` may begin with the end of `a` (chunks overlap): the shared
/// part appears once. Without an overlap, they are joined by a line break.
pub fn join_overlapping(a: &str, b: &str) -> String {
    let longest = a.len().min(b.len()).min(MAX_OVERLAP);
    for n in (1..=longest).rev() {
        if !b.is_char_boundary(n) || !a.is_char_boundary(a.len() - n) {
            continue;
        }
        // A one- or two-byte match is a coincidence, not an overlap.
        if n >= 8 && a.ends_with(&b[..n]) {
            return format!("{a}{}", &b[n..]);
        }
    }
    format!("{}\n{}", a.trim_end(), b.trim_start())
}

/// Whether `text` stops mid-sentence (its last character is no sentence end, and it is not a
/// table row), so the text after it belongs with it.
pub fn runs_on(text: &str) -> bool {
    let last_line = text.trim_end().lines().last().unwrap_or("");
    // A table row (`a | b | c`, as Office tables are read) ends without punctuation and is
    // complete.
    if last_line.contains(" | ") || last_line.trim_start().starts_with('|') {
        return false;
    }
    let ends = [
        '.', '!', '?', ':', ';', '"', '\'', ')', ']', '”', '’', '。', '！', '？', '」', '）',
    ];
    text.trim_end()
        .chars()
        .last()
        .is_some_and(|c| !ends.contains(&c))
}

/// The passages for `hits` (rows, best first): each hit's chunk with the chunks before and
/// after it on its page, and across a page break when a sentence runs on over it; cited by
/// file and page (a page range when a neighbour is on another page). Scores are the hits'.
pub fn passages(
    store: &DocStore,
    conv: &str,
    idx: &ConvIndex,
    hits: &[(f32, usize)],
) -> Result<Vec<Passage>, DocError> {
    let mut out = Vec::with_capacity(hits.len());
    for &(score, row) in hits {
        let Some(hit) = store.chunk_blocking(conv, idx, row)? else {
            continue;
        };
        let place = idx.places[row];
        let neighbour = |r: Option<usize>| -> Result<Option<(Place, String)>, DocError> {
            let Some(r) = r.filter(|r| *r < idx.len()) else {
                return Ok(None);
            };
            let p = idx.places[r];
            // Only the same document, and at most the adjacent page.
            if p.doc != place.doc || p.page.abs_diff(place.page) > 1 {
                return Ok(None);
            }
            Ok(store.chunk_blocking(conv, idx, r)?.map(|c| (p, c.text)))
        };
        // Across a page break, only a sentence that runs on is worth the wider citation.
        let before =
            neighbour(row.checked_sub(1))?.filter(|(p, t)| p.page == place.page || runs_on(t));
        let after =
            neighbour(Some(row + 1))?.filter(|(p, _)| p.page == place.page || runs_on(&hit.text));
        let mut text = hit.text.clone();
        let (mut first, mut last) = (place.page, place.page);
        if let Some((p, t)) = before {
            text = join_overlapping(&t, &text);
            first = p.page;
        }
        if let Some((p, t)) = after {
            text = join_overlapping(&text, &t);
            last = p.page;
        }
        let citation = match hit.page {
            Some(_) if hit.label.is_none() && first != last => {
                format!("{} p.{first}–{last}", hit.name)
            }
            _ => hit.citation(),
        };
        out.push(Passage {
            score,
            citation,
            name: hit.name,
            page: hit.page,
            heading: hit.heading,
            text,
        });
    }
    Ok(out)
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

    #[test]
    fn a_sentence_runs_on_unless_it_ended() {
        assert!(runs_on("The notice period for the tenant is"));
        assert!(runs_on("in section 4,\n"));
        assert!(!runs_on("It ends here.  "));
        assert!(!runs_on("合同有效期为三年。"));
        assert!(!runs_on(""));
        assert!(!runs_on("Travel\nDomestic | 45 EUR"));
    }

    #[test]
    fn overlapping_chunks_join_without_repeating() {
        assert_eq!(
            join_overlapping("The licence is granted to you", "granted to you for ever."),
            "The licence is granted to you for ever."
        );
        assert_eq!(
            join_overlapping("End of page.", "Next page."),
            "End of page.\nNext page."
        );
        // Multibyte text and no false overlap of a single letter.
        assert_eq!(
            join_overlapping("中文检索很好用", "很好用吗"),
            "中文检索很好用吗"
        );
        assert_eq!(join_overlapping("abc a", "a b"), "abc a\na b");
    }
}
