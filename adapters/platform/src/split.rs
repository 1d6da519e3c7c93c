//! Splitting a long reply at a platform's length limit, on paragraph, line or word
//! boundaries, keeping Markdown code fences balanced in every piece.
//!
//! Nothing is lost or repeated: each piece is a span of the original text, and only the
//! whitespace at a cut is left out (inside a code block, exactly the one line break that the
//! piece's closing fence stands in for). A code block open at a cut is closed at the end of
//! that piece and reopened, with its info string, at the start of the next. Fences follow
//! CommonMark: up to three spaces of indent, three or more backticks or tildes, closed only by
//! the same character at least as many times, so a fence inside a longer fence stays text.

/// Splits `text` into pieces of at most `max_chars` characters (at least 16 are assumed).
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    split_spans(text, max_chars)
        .iter()
        .map(|s| s.render(text))
        .collect()
}

/// Whether every code block opened in `text` is closed in it (CommonMark's fence rules).
pub fn fences_balanced(text: &str) -> bool {
    fence_after(None, text).is_none()
}

/// One piece: a byte range of the original, plus the fence lines added around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    /// Byte range of the original text the piece carries.
    pub start: usize,
    /// End of that range (exclusive).
    pub end: usize,
    /// The opening fence line repeated at the start (the piece begins inside a code block).
    pub reopen: Option<String>,
    /// The closing fence added at the end (the piece ends inside a code block).
    pub close: Option<String>,
}

impl Span {
    /// The piece as sent.
    pub fn render(&self, text: &str) -> String {
        let mut out = String::new();
        if let Some(open) = &self.reopen {
            out.push_str(open);
            out.push('\n');
        }
        out.push_str(&text[self.start..self.end]);
        if let Some(close) = &self.close {
            out.push('\n');
            out.push_str(close);
        }
        out
    }
}

/// An open code block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    /// `` ` `` or `~`.
    marker: char,
    /// How many markers opened it; a closing fence needs at least as many.
    len: usize,
    /// The opening line, without its indent, to reopen the block in the next piece.
    line: String,
}

impl Fence {
    /// The line that closes it.
    fn closer(&self) -> String {
        std::iter::repeat_n(self.marker, self.len).collect()
    }

    /// Characters added to a piece that ends inside it: a line break and the closer.
    fn close_cost(&self) -> usize {
        self.len + 1
    }
}

/// The longest opening line repeated at a piece's start; a longer one is reopened without its
/// info string, so a pathological info string cannot eat the piece.
const MAX_REOPEN_CHARS: usize = 64;

/// Splits `text` into spans whose rendered pieces fit `max_chars`.
pub(crate) fn split_spans(text: &str, max_chars: usize) -> Vec<Span> {
    let max_chars = max_chars.max(16);
    let mut spans = Vec::new();
    let mut start = 0;
    let mut open: Option<Fence> = None;
    loop {
        let reopen = open.as_ref().map(|f| reopen_line(f, max_chars));
        let prefix = reopen.as_ref().map_or(0, |l| l.chars().count() + 1);
        let rest = &text[start..];
        // A block the answer itself leaves open (a cut-off answer) is closed in its last
        // piece, so the platform still shows it as code.
        let dangling = fence_after(open.clone(), rest);
        let close_cost = dangling.as_ref().map_or(0, Fence::close_cost);
        if prefix + rest.chars().count() + close_cost <= max_chars {
            if !rest.is_empty() || spans.is_empty() {
                spans.push(Span {
                    start,
                    end: text.len(),
                    reopen,
                    close: dangling.as_ref().map(Fence::closer),
                });
            }
            return spans;
        }
        // Room for the closing fence a piece may need; grows if the cut lands in a block
        // opened by a longer fence.
        let mut reserve = open.as_ref().map_or(4, Fence::close_cost).max(4);
        let (cut, next, after) = loop {
            let budget = max_chars.saturating_sub(prefix + reserve).max(1);
            let (cut, next) = choose_cut(rest, budget, open.as_ref());
            let after = fence_after(open.clone(), &rest[..cut]);
            let need = after.as_ref().map_or(0, Fence::close_cost);
            if need <= reserve || budget == 1 {
                break (cut, next, after);
            }
            reserve = need;
        };
        let (mut cut, mut next, mut after) = (cut, next, after);
        // A cut just before the block's own closing fence takes the fence along, rather than
        // closing the block and reopening it empty in the next piece.
        if let Some(f) = &after {
            let line = rest[next..].split('\n').next().unwrap_or("");
            let used = prefix + rest[..cut].chars().count() + 1 + line.chars().count();
            if next > cut && closes(f, line) && used <= max_chars {
                cut = next + line.len();
                next = skip_blank(rest, cut);
                after = None;
            }
        }
        let close = after.as_ref().map(Fence::closer);
        spans.push(Span {
            start,
            end: start + cut,
            reopen,
            close,
        });
        start += next;
        open = after;
    }
}

/// Where to cut `rest` within `budget` characters: `(end of the piece, start of the next)`,
/// both byte offsets. Prefers the end of a paragraph outside code, then the end of any line,
/// then a space outside code, each in the last two thirds of the window; a space inside code
/// is never a cut, since it would break a line of code in two. `open` is the code block open
/// at the start of `rest`.
fn choose_cut(rest: &str, budget: usize, open: Option<&Fence>) -> (usize, usize) {
    let hard = byte_index_of_char(rest, budget);
    let floor = hard / 3;
    let mut state = open.cloned();
    let (mut paragraph, mut line, mut space) = (None, None, None);
    let mut start = 0;
    loop {
        let end = rest[start..].find('\n').map(|i| start + i);
        let text = &rest[start..end.unwrap_or(rest.len())];
        if state.is_none() && opens(text).is_none() {
            let within = &rest[start..end.unwrap_or(rest.len()).min(hard).max(start)];
            if let Some(i) = within.rfind(' ').map(|i| start + i).filter(|&i| i > floor) {
                space = Some(i);
            }
        }
        let Some(end) = end.filter(|&e| e <= hard) else {
            break;
        };
        state = step(state, text);
        if end > floor {
            line = Some((end, state.is_some()));
            if state.is_none() && !text.is_empty() && rest[end + 1..].starts_with('\n') {
                paragraph = Some(end);
            }
        }
        start = end + 1;
    }
    if let Some(i) = paragraph {
        return (i, skip_blank(rest, i));
    }
    if let Some((i, in_code)) = line {
        return (i, if in_code { i + 1 } else { skip_blank(rest, i) });
    }
    if let Some(i) = space {
        return (i, i + 1);
    }
    let hard = if hard == 0 {
        rest.chars().next().map_or(0, char::len_utf8)
    } else {
        hard
    };
    (hard, hard)
}

/// The start of the next piece after a cut at line break `i` outside code: the blank lines
/// that follow are left out, the indent of the next line kept.
fn skip_blank(rest: &str, i: usize) -> usize {
    let mut next = i;
    while rest[next..].starts_with('\n') {
        next += 1;
    }
    next
}

/// The fence line a piece reopens `fence` with.
fn reopen_line(fence: &Fence, max_chars: usize) -> String {
    let limit = MAX_REOPEN_CHARS.min(max_chars / 4);
    if fence.line.chars().count() <= limit {
        fence.line.clone()
    } else {
        fence.closer()
    }
}

/// Byte index of the `n`th character, or the end of the string.
fn byte_index_of_char(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map(|(i, _)| i).unwrap_or(s.len())
}

/// Whether a code block is open after `piece`, starting from `open`.
fn fence_after(mut open: Option<Fence>, piece: &str) -> Option<Fence> {
    for line in piece.split('\n') {
        open = step(open, line);
    }
    open
}

/// The code block open after `line`, given the one open before it.
fn step(open: Option<Fence>, line: &str) -> Option<Fence> {
    match open {
        Some(f) if closes(&f, line) => None,
        Some(f) => Some(f),
        None => opens(line),
    }
}

/// The line without up to three spaces of indent, or `None` when it is indented further
/// (an indented code line, not a fence).
fn unindent(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    (indent <= 3).then(|| &line[indent..])
}

/// The code block `line` opens, if it is an opening fence.
fn opens(line: &str) -> Option<Fence> {
    let t = unindent(line)?;
    let marker = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = t.chars().take_while(|c| *c == marker).count();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string may not hold a backtick (it would be inline code).
    if marker == '`' && t[len..].contains('`') {
        return None;
    }
    Some(Fence {
        marker,
        len,
        line: t.trim_end().to_string(),
    })
}

/// Whether `line` closes `fence`.
fn closes(fence: &Fence, line: &str) -> bool {
    let Some(t) = unindent(line) else {
        return false;
    };
    let len = t.chars().take_while(|c| *c == fence.marker).count();
    len >= fence.len && t[len * fence.marker.len_utf8()..].trim().is_empty()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Checks every promise of the splitter for `text` at `max`: pieces within the limit,
    /// balanced fences, and the pieces put back together give the text, with only the
    /// whitespace at the cuts left out.
    fn check(text: &str, max: usize) -> Result<(), TestCaseError> {
        let spans = split_spans(text, max);
        let pieces = split_message(text, max);
        prop_assert_eq!(spans.len(), pieces.len(), "pieces");
        prop_assert!(!pieces.is_empty());
        let mut at = 0;
        let mut open = None;
        for (span, piece) in spans.iter().zip(&pieces) {
            prop_assert_eq!(&span.render(text), piece, "render");
            prop_assert!(
                piece.chars().count() <= max.max(16),
                "a piece of {} characters over {}",
                piece.chars().count(),
                max
            );
            prop_assert!(fences_balanced(piece), "unbalanced: {:?}", piece);
            // What was left out between two pieces.
            let gap = &text[at..span.start];
            if open.is_some() {
                prop_assert!(
                    gap.is_empty() || gap == "\n",
                    "code lost at a cut: {:?}",
                    gap
                );
            } else {
                prop_assert!(gap.trim().is_empty(), "text lost at a cut: {:?}", gap);
            }
            prop_assert_eq!(
                span.reopen.is_some(),
                open.is_some(),
                "reopen of {:?}",
                span
            );
            prop_assert!(span.start <= span.end);
            open = fence_after(open, &text[span.start..span.end]);
            prop_assert_eq!(span.close.is_some(), open.is_some(), "close of {:?}", span);
            at = span.end;
        }
        let tail = &text[at..];
        if open.is_some() {
            prop_assert!(
                tail.is_empty() || tail == "\n",
                "code lost at the end: {:?}",
                tail
            );
        } else {
            prop_assert!(
                tail.trim().is_empty(),
                "the end of the text is missing: {:?}",
                tail
            );
        }
        Ok(())
    }

    /// One line of Markdown: headings, list items, quotes, fences (of several lengths, so
    /// they nest), prose, long unbroken words, CJK and emoji.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z ,.]{0,120}",
            1 => "#{1,3} [a-zA-Z ]{1,40}",
            1 => "(- |\\* |1\\. )[a-z ]{0,80}",
            1 => "> [a-z ]{0,60}",
            1 => "(```|````|~~~)(rust|python|markdown|)",
            1 => Just("```".to_string()),
            1 => "    [a-z=;()]{0,50}",
            1 => "[a-z]{150,700}",
            1 => "[\u{4e00}-\u{4fff}\u{3040}-\u{309f}]{1,300}",
            1 => "[a-zé😀 ]{0,60}",
            1 => Just(String::new()),
        ]
    }

    fn markdown() -> impl Strategy<Value = String> {
        prop::collection::vec(line(), 0..120).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn discord_pieces_fit_and_lose_nothing(text in markdown()) {
            check(&text, 2000)?;
        }

        #[test]
        fn slack_pieces_fit_and_lose_nothing(text in markdown()) {
            // Slack: a markdown block holds 12,000 characters; tested smaller too, so that
            // the generated answers are cut many times.
            check(&text, 12_000)?;
            check(&text, 400)?;
        }

        #[test]
        fn tiny_limits_still_lose_nothing(text in markdown(), max in 16usize..120) {
            check(&text, max)?;
        }
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split_message("hello", 2000), vec!["hello".to_string()]);
        assert_eq!(split_message("", 2000), vec![String::new()]);
    }

    #[test]
    fn pieces_respect_limit_and_keep_all_words() {
        let text = (0..500)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let pieces = split_message(&text, 100);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(p.chars().count() <= 100, "{} chars", p.chars().count());
        }
        assert_eq!(pieces.join(" "), text);
    }

    #[test]
    fn code_fences_stay_balanced() {
        let code = (0..80)
            .map(|i| format!("let x{i} = {i};"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("Intro paragraph.\n\n```rust\n{code}\n```\n\nOutro.");
        let pieces = split_message(&text, 200);
        assert!(pieces.len() > 3);
        for p in &pieces {
            assert!(p.chars().count() <= 200);
            assert!(fences_balanced(p), "unbalanced piece: {p}");
        }
        assert!(pieces[2].starts_with("```rust\n"));
    }

    #[test]
    fn the_line_after_a_code_block_is_kept() {
        // The answer that lost a line on Discord: prose, a long code block, then a line
        // right after its closing fence.
        let mut text = String::new();
        for i in 0..12 {
            text.push_str(&format!("Paragraph {i}: {}\n\n", "lorem ipsum ".repeat(10)));
        }
        text.push_str("```rust\n");
        for i in 0..60 {
            text.push_str(&format!("let value_{i} = compute({i}) + other({i});\n"));
        }
        text.push_str("```\nThe first line after the code block.\n\n");
        for i in 0..20 {
            text.push_str(&format!("Closing {i}: {}\n\n", "dolor sit amet ".repeat(6)));
        }
        for max in [2000, 1500, 900] {
            let pieces = split_message(&text, max);
            assert_eq!(
                pieces
                    .iter()
                    .filter(|p| p.contains("The first line after the code block."))
                    .count(),
                1,
                "at {max}: {pieces:#?}"
            );
            check(&text, max).unwrap();
        }
    }

    #[test]
    fn a_fence_inside_a_longer_fence_is_text() {
        let inner = "```rust\nfn main() {}\n```\n".repeat(40);
        let text = format!("````markdown\n{inner}````\nafter");
        let pieces = split_message(&text, 200);
        assert!(pieces.len() > 2);
        for p in &pieces[1..pieces.len() - 1] {
            assert!(p.starts_with("````markdown\n"), "{p}");
            assert!(p.ends_with("\n````"), "{p}");
        }
        check(&text, 200).unwrap();
    }

    #[test]
    fn code_is_cut_between_lines_not_inside_them() {
        let code = (0..50)
            .map(|i| format!("call(alpha, beta, gamma, {i});"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("```\n{code}\n```");
        for p in split_message(&text, 150) {
            for line in p.lines().filter(|l| !l.starts_with("```")) {
                assert!(
                    line.starts_with("call(") && line.ends_with(");"),
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let text = "é".repeat(1000);
        let pieces = split_message(&text, 64);
        assert!(pieces.iter().all(|p| p.chars().count() <= 64));
        assert_eq!(pieces.concat(), text);
    }
}
