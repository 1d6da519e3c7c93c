//! Splitting answers at Slack's length limits: Markdown for the Markdown surfaces, or Markdown
//! converted to mrkdwn piece by piece so that every converted piece fits its limit.

use anchorbot_platform::split_message;

use super::block::{normalize_blocks, parse_blocks};
use super::to_mrkdwn;

/// Splits Markdown into pieces of at most `max_chars` characters for the Markdown surfaces
/// (`markdown_text`, `markdown` blocks), on paragraph, line or word boundaries, with code
/// fences closed at a cut and reopened (with their language tag) in the next piece. Pieces
/// holding only whitespace are dropped, since Slack rejects empty text; empty input gives one
/// empty piece.
pub fn split_for_slack(markdown: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    // A fence left open (a streamed answer cut mid-block) is closed by split_message.
    let mut pieces = Vec::new();
    for piece in split_message(markdown, max_chars) {
        push_within(piece, max_chars, &mut pieces);
    }
    finish(pieces)
}

/// Splits Markdown and converts each piece to mrkdwn, so that every converted piece has at
/// most `max_chars` characters (e.g. [`SECTION_TEXT_MAX`] for section blocks). Tables and code
/// blocks are laid out before splitting, so a table cut in two keeps its columns in both
/// pieces. Code fences are balanced in every piece.
pub fn split_to_mrkdwn(markdown: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let lines: Vec<&str> = markdown.split('\n').collect();
    let mut normalized = Vec::new();
    normalize_blocks(&parse_blocks(&lines), &mut normalized);
    let mut pieces = Vec::new();
    push_converted(&normalized.join("\n"), max_chars, max_chars, 0, &mut pieces);
    finish(pieces)
}

/// Converts the pieces of `markdown` split at `limit`, splitting again (smaller) any piece
/// whose conversion is longer than `max_chars`.
fn push_converted(
    markdown: &str,
    limit: usize,
    max_chars: usize,
    depth: u8,
    out: &mut Vec<String>,
) {
    for piece in split_message(markdown, limit) {
        let converted = to_mrkdwn(&piece);
        let converted_len = converted.chars().count();
        if converted_len <= max_chars {
            out.push(converted);
            continue;
        }
        // Escaping at most quintuples a character, so a few rounds always suffice unless the
        // limit is tiny; then the converted text itself is split.
        let piece_len = piece.chars().count();
        let smaller = (piece_len.saturating_mul(max_chars) / converted_len)
            .saturating_sub(8)
            .min(piece_len.saturating_sub(1));
        if depth >= 6 || smaller < 32 {
            for part in split_message(&converted, max_chars) {
                push_within(part, max_chars, out);
            }
        } else {
            push_converted(&piece, smaller, max_chars, depth + 1, out);
        }
    }
}

/// Pushes `piece`, cut at character boundaries if it is still longer than `max_chars`.
fn push_within(piece: String, max_chars: usize, out: &mut Vec<String>) {
    if piece.chars().count() <= max_chars {
        out.push(piece);
        return;
    }
    // Only reached when split_message cannot honour the limit: a limit under its 16-character
    // floor, or a reopened fence line nearly as long as the limit. The limit wins over fences.
    let mut rest = piece.as_str();
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(i, _)| i);
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
}

/// Drops whitespace-only pieces, keeping one empty piece when nothing is left.
fn finish(pieces: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = pieces
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect();
    if kept.is_empty() {
        kept.push(String::new());
    }
    kept
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::markdown::testing::{balanced, markdownish};
    use crate::markdown::SECTION_TEXT_MAX;

    /// Markdown (for `markdown` blocks) follows CommonMark's fence rules, as the splitter does.
    fn balanced_markdown(s: &str) -> bool {
        anchorbot_platform::fences_balanced(s)
    }

    fn non_ws(s: &str) -> Vec<char> {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    /// Whether the pieces, minus the fence lines a split may add (a closing fence at the end
    /// of a piece and the reopened fence at the start of the next), spell the original's
    /// non-whitespace characters in order. Where a fence line could be original or added, both
    /// readings are tried.
    fn rejoins(original: &str, pieces: &[String]) -> bool {
        fn go(want: &[char], pieces: &[String], reopened: bool) -> bool {
            let Some((piece, rest)) = pieces.split_first() else {
                return want.is_empty();
            };
            let mut fronts = vec![piece.as_str()];
            let fence = |l: &str| {
                let l = l.trim_start();
                l.starts_with("```") || l.starts_with("~~~")
            };
            if reopened && fence(piece) {
                fronts = vec![piece.split_once('\n').map_or("", |(_, body)| body)];
            }
            for front in fronts {
                let mut options = vec![(front, false)];
                // A closing fence the split added: a last line of only backticks or tildes.
                if let Some((body, last)) = front.rsplit_once('\n') {
                    let marker = last.chars().next().filter(|c| *c == '`' || *c == '~');
                    if marker.is_some_and(|m| last.len() >= 3 && last.chars().all(|c| c == m)) {
                        options.push((body, true));
                    }
                }
                for (body, closed) in options {
                    let chars = non_ws(body);
                    if want.starts_with(&chars) && go(&want[chars.len()..], rest, closed) {
                        return true;
                    }
                }
            }
            false
        }
        go(&non_ws(original), pieces, false)
    }

    #[test]
    fn split_keeps_fences_and_the_language() {
        let code = (0..80)
            .map(|i| format!("let x{i} = {i};"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("Intro.\n\n```rust\n{code}\n```\n\nOutro.");
        let pieces = split_for_slack(&text, 200);
        assert!(pieces.len() > 3);
        for p in &pieces {
            assert!(p.chars().count() <= 200);
            assert!(balanced(p), "unbalanced: {p}");
        }
        assert!(pieces[1].starts_with("```rust\n") || pieces[2].starts_with("```rust\n"));
        assert!(rejoins(&text, &pieces));
    }

    #[test]
    fn split_closes_a_fence_left_open() {
        let pieces = split_for_slack("```py\nprint(1)", 100);
        assert_eq!(pieces, vec!["```py\nprint(1)\n```".to_string()]);
    }

    #[test]
    fn split_small_cases() {
        assert_eq!(split_for_slack("", 100), vec![String::new()]);
        assert_eq!(split_for_slack("hi", 100), vec!["hi".to_string()]);
        assert_eq!(
            split_for_slack("abcdef", 4),
            vec!["abcd".to_string(), "ef".to_string()]
        );
        assert_eq!(split_to_mrkdwn("", 100), vec![String::new()]);
        assert_eq!(split_to_mrkdwn("**hi**", 100), vec!["*hi*".to_string()]);
    }

    #[test]
    fn split_to_mrkdwn_fits_after_escaping() {
        let text = "a && b << c >> d ".repeat(500);
        let pieces = split_to_mrkdwn(&text, SECTION_TEXT_MAX);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(p.chars().count() <= SECTION_TEXT_MAX);
            assert!(!p.contains("&amp;amp;"));
        }
        let joined: String = pieces.concat();
        assert_eq!(joined.matches("&amp;&amp;").count(), 500);
    }

    #[test]
    fn split_to_mrkdwn_keeps_a_cut_table_aligned() {
        let rows = (0..60)
            .map(|i| format!("| row {i} | {} |", i * 7))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("| name | value |\n|---|---:|\n{rows}");
        let pieces = split_to_mrkdwn(&text, 300);
        assert!(pieces.len() > 2);
        for p in &pieces {
            assert!(p.chars().count() <= 300);
            assert!(p.starts_with("```\n") && p.ends_with("\n```"), "{p}");
            assert!(balanced(p));
        }
        assert!(pieces[1].contains("| row"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn split_pieces_fit(s in any::<String>(), max in 1usize..300) {
            for p in split_for_slack(&s, max) {
                prop_assert!(p.chars().count() <= max);
            }
            for p in split_to_mrkdwn(&s, max) {
                prop_assert!(p.chars().count() <= max);
            }
        }

        #[test]
        fn split_markdownish_fits_balances_and_rejoins(s in markdownish(), max in 40usize..400) {
            let pieces = split_for_slack(&s, max);
            for p in &pieces {
                prop_assert!(p.chars().count() <= max, "{} > {max}: {p:?}", p.chars().count());
                prop_assert!(balanced_markdown(p), "unbalanced: {p:?}");
            }
            prop_assert!(rejoins(&s, &pieces), "lost text: {s:?} -> {pieces:?}");
        }

        #[test]
        fn split_without_fences_rejoins(s in "[^`]{0,600}", max in 16usize..200) {
            let pieces = split_for_slack(&s, max);
            for p in &pieces {
                prop_assert!(p.chars().count() <= max);
            }
            prop_assert!(rejoins(&s, &pieces), "lost text: {s:?} -> {pieces:?}");
        }

        #[test]
        fn mrkdwn_pieces_fit_and_balance(s in markdownish(), max in 16usize..400) {
            for p in split_to_mrkdwn(&s, max) {
                prop_assert!(p.chars().count() <= max, "{} > {max}: {p:?}", p.chars().count());
                prop_assert!(balanced(&p), "unbalanced: {p:?}");
            }
        }
    }
}
