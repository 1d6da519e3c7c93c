//! Quoting hits: each hit's chunk with its neighbours on the page (and across a page break
//! when a sentence runs on), joined without repeating their overlap, and cited by file and page.

use super::index::{ConvIndex, Place};
use crate::docs::store::DocStore;
use crate::docs::DocError;
use crate::retrieval::Passage;

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
