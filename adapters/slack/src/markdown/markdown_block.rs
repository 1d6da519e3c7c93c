//! Markdown as Slack's `markdown` block (and a stream's `markdown_text`) renders it.
//!
//! The block takes standard Markdown but renders a subset of it: no tables, no horizontal
//! rules, and code blocks without syntax highlighting. Model answers use all three, and the
//! block shows what it does not render as raw pipes, dashes and language tags. So before an
//! answer goes into a block:
//! - a table becomes a code block with its columns aligned (the same layout the mrkdwn
//!   conversion uses, cells as plain text, links as `label (url)`);
//! - a horizontal rule becomes an empty line;
//! - a code fence loses its language tag, and `~~~` fences become ```` ``` ````;
//! - everything else (emphasis, links, lists, quotes, headings) is left as it is.
//!
//! [`to_markdown_block`] converts a whole answer. A stream cannot take text back, so
//! [`streamable`] converts only the part of an answer still being written that later text
//! cannot change: a table is held back until its last row has arrived (its column widths
//! depend on every row), and so is an unfinished line that may still turn into a rule, a
//! fence or a table row. An open code block is streamed as it grows, without the closing
//! fence the final text gets.

use super::{
    closes, is_quote, is_rule, neutralize_backticks, open_fence, parse_table, strip_quote, Fence,
};

/// The fence every code block gets.
const FENCE: &str = "```";

/// `markdown` as a `markdown` block renders it: tables as aligned code blocks, rules as empty
/// lines, code fences without a language. Code fences are balanced in the result.
pub fn to_markdown_block(markdown: &str) -> String {
    convert(markdown, true)
}

/// The converted part of a streamed answer that later text cannot change, so that every
/// call's result starts with the previous call's (while the answer only grows) and the final
/// [`to_markdown_block`] starts with the last of them (unless the answer's last line only then
/// turns out to be a rule, a fence or a table).
pub fn streamable(markdown: &str) -> String {
    convert(&markdown[..stable_len(markdown)], false)
}

/// Converts `markdown`; an unclosed code block is closed only with `close_open_fence`.
fn convert(markdown: &str, close_open_fence: bool) -> String {
    let lines: Vec<&str> = markdown.split('\n').collect();
    let mut out = Vec::with_capacity(lines.len());
    convert_lines(&lines, close_open_fence, &mut out);
    out.join("\n")
}

fn convert_lines(lines: &[&str], close_open_fence: bool, out: &mut Vec<String>) {
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(fence) = open_fence(line) {
            let indent = leading_space(line);
            out.push(format!("{indent}{FENCE}"));
            i += 1;
            let mut closed = false;
            while i < lines.len() {
                let body = lines[i];
                i += 1;
                if closes(&fence, body) {
                    closed = true;
                    break;
                }
                // A run of backticks inside the block would end it early once the fence is
                // ``` (a ~~~ or ```` fence may hold one).
                out.push(neutralize_backticks(body));
            }
            if closed || close_open_fence {
                out.push(format!("{indent}{FENCE}"));
            }
        } else if is_quote(line) {
            let start = i;
            while i < lines.len() && is_quote(lines[i]) {
                i += 1;
            }
            let inner: Vec<&str> = lines[start..i].iter().map(|l| strip_quote(l)).collect();
            // A code block open in a quote that has ended (a line follows it, not just the
            // final newline) is closed, as its quote is.
            let ended = lines[i..].iter().any(|l| !l.is_empty()) || lines.len() > i + 1;
            let mut quoted = Vec::new();
            convert_lines(&inner, close_open_fence || ended, &mut quoted);
            out.extend(quoted.into_iter().map(|l| {
                if l.is_empty() {
                    ">".to_string()
                } else {
                    format!("> {l}")
                }
            }));
        } else if let Some((table, used)) = parse_table(&lines[i..]) {
            out.push(FENCE.to_string());
            out.extend(table.iter().map(|l| neutralize_backticks(l)));
            out.push(FENCE.to_string());
            i += used;
        } else if is_rule(line.trim()) {
            // The block has no rule; an empty line keeps the break between the parts.
            out.push(String::new());
            i += 1;
        } else if line.trim_start().starts_with(FENCE) {
            // Not a fence (its info string has a backtick), but Slack would open one.
            out.push(neutralize_backticks(line));
            i += 1;
        } else {
            out.push(line.to_string());
            i += 1;
        }
    }
}

/// The leading whitespace of `line` (a fence inside a list item keeps its indentation).
fn leading_space(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// The length (bytes) of the start of a growing answer that later text cannot change once
/// converted: it ends before a run of lines starting with `|` (a table still growing, or a
/// header waiting for its delimiter row), and before an unfinished last line that may still
/// become a rule, a fence or a table row.
///
/// Whether a line is held back is decided by how it starts, never by what arrives later in it,
/// so text once shown is never held back again. (A table whose rows do not start with `|` is
/// seen only when it is complete; the final text then differs from what was streamed, and the
/// reply rewrites the message.)
fn stable_len(markdown: &str) -> usize {
    let (complete, tail) = match markdown.rfind('\n') {
        Some(i) => (i + 1, &markdown[i + 1..]),
        None => (0, markdown),
    };
    // The open code block, and whether it is inside a quote (which ends it when it ends).
    let mut fence: Option<(Fence<'_>, bool)> = None;
    // Where the run of lines starting with `|` that reaches the last complete line starts.
    let mut table_from: Option<usize> = None;
    let mut offset = 0;
    for line in markdown[..complete].split_inclusive('\n') {
        let text = line.trim_end_matches('\n');
        let start = offset;
        offset += line.len();
        let quoted = is_quote(text);
        let body = text.trim_start_matches(['>', ' ']);
        if let Some((f, in_quote)) = &fence {
            if *in_quote && !quoted {
                fence = None;
            } else {
                if closes(f, body) {
                    fence = None;
                }
                table_from = None;
                continue;
            }
        }
        if let Some(f) = open_fence(body) {
            fence = Some((f, quoted));
            table_from = None;
        } else if body.starts_with('|') {
            table_from.get_or_insert(start);
        } else {
            table_from = None;
        }
    }
    if let Some(start) = table_from {
        return start;
    }
    // What the unfinished line is is known from its first character after any indentation and
    // quote markers (until that arrives, it is held back): a `|`, a backtick or a tilde may
    // start a table row or a fence, and a line of only `-`, `*` and `_` may still be a rule.
    let t = tail.trim_start_matches(|c: char| c == '>' || c.is_whitespace());
    let unsettled = !tail.is_empty()
        && match &fence {
            // The line may be the closing fence, or (in a quote) end the quote and its block.
            Some((f, in_quote)) => t.is_empty() || t.starts_with(f.ch) || *in_quote,
            None => {
                t.is_empty()
                    || t.starts_with(['|', '`', '~'])
                    || t.chars().all(|c| matches!(c, '-' | '*' | '_' | ' ' | '\t'))
            }
        };
    if unsettled {
        complete
    } else {
        markdown.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_becomes_an_aligned_code_block() {
        let md = "Prices:\n\n| Fruit | Price |\n|:------|------:|\n| **Apple** | 1 |\n| [Kiwi](https://k.example) | 12 |\n\nThat is all.";
        assert_eq!(
            to_markdown_block(md),
            "Prices:\n\n```\n| Fruit                    | Price |\n|--------------------------|-------|\n| Apple                    |     1 |\n| Kiwi (https://k.example) |    12 |\n```\n\nThat is all."
        );
    }

    #[test]
    fn rules_become_empty_lines_and_fences_lose_their_language() {
        let md =
            "One\n\n---\n\nTwo\n* * *\n```rust\nfn main() {}\n```\n~~~python\nprint(\"```\")\n~~~";
        assert_eq!(
            to_markdown_block(md),
            "One\n\n\n\nTwo\n\n```\nfn main() {}\n```\n```\nprint(\"``\u{200B}`\")\n```"
        );
    }

    #[test]
    fn other_markdown_is_left_as_it_is() {
        let md = "# Title\n\n**bold** _it_ ~~gone~~ `a|b` [x](https://x.example)\n\n- one\n  - two\n1. three\n> quoted\n\n- [ ] task";
        assert_eq!(to_markdown_block(md), md);
        // `|` in prose without a delimiter row is no table.
        assert_eq!(to_markdown_block("a | b\nc | d"), "a | b\nc | d");
    }

    #[test]
    fn quotes_and_list_items_are_converted_inside() {
        assert_eq!(
            to_markdown_block("> ```sh\n> ls\n> ```\n> ---"),
            "> ```\n> ls\n> ```\n>"
        );
        assert_eq!(
            to_markdown_block("- step:\n  ```bash\n  make\n  ```"),
            "- step:\n  ```\n  make\n  ```"
        );
    }

    #[test]
    fn an_unclosed_fence_is_closed_in_the_final_text_only() {
        assert_eq!(to_markdown_block("```js\nlet a"), "```\nlet a\n```");
        assert_eq!(streamable("```js\nlet a\n"), "```\nlet a\n");
    }

    #[test]
    fn a_growing_table_is_held_back_until_its_last_row() {
        let steps = [
            "Here:\n| a |",
            "Here:\n| a | b |\n",
            "Here:\n| a | b |\n|---|---|\n| 1 | 2 |\n",
            "Here:\n| a | b |\n|---|---|\n| 1 | 2 |\n| 300 | 4 |\n",
        ];
        for s in steps {
            assert_eq!(streamable(s), "Here:\n", "{s:?}");
        }
        let done = "Here:\n| a | b |\n|---|---|\n| 1 | 2 |\n| 300 | 4 |\n\nDone";
        assert_eq!(streamable(done), to_markdown_block(done));
        assert!(to_markdown_block(done).contains("| 300 | 4 |"));
    }

    #[test]
    fn an_unfinished_line_that_may_become_a_rule_or_fence_is_held_back() {
        assert_eq!(streamable("Text\n--"), "Text\n");
        assert_eq!(streamable("Text\n~~"), "Text\n");
        assert_eq!(streamable("Text\n``"), "Text\n");
        assert_eq!(streamable("Text\n- item"), "Text\n- item");
        assert_eq!(streamable("Hello wor"), "Hello wor");
        // Inside a code block, only a line that may close it waits.
        assert_eq!(
            streamable("```\nlet x = 1;\nlet y"),
            "```\nlet x = 1;\nlet y"
        );
        assert_eq!(streamable("~~~\ncode\n~~"), "```\ncode\n");
    }

    /// Every stage of a growing answer converts to a prefix of the next stage and of the final
    /// text, so a stream never has to take text back.
    #[test]
    fn streamed_stages_only_ever_grow() {
        let answer = "# Plan\n\nFirst *this*:\n\n```python\nprint('hi')\n```\n\n---\n\n| step | who |\n|------|-----|\n| one | me |\n| two | you |\n\n~~~\n```\n~~~\n> quote | with pipe\n\n***\n- done";
        let chars: Vec<char> = answer.chars().collect();
        let mut previous = String::new();
        for n in 0..=chars.len() {
            let so_far: String = chars[..n].iter().collect();
            let shown = streamable(&so_far);
            assert!(
                shown.starts_with(&previous),
                "stage {n} took text back:\nbefore {previous:?}\nnow    {shown:?}"
            );
            previous = shown;
        }
        assert!(to_markdown_block(answer).starts_with(&previous));
    }

    /// One block of a model's answer, as the generator below writes them.
    fn block() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let word = "[a-zA-Z0-9*_`~#>.-]{1,8}";
        prop_oneof![
            prop::collection::vec(word, 1..8).prop_map(|w| w.join(" ")),
            (1..4usize, 1..4usize).prop_map(|(cols, rows)| {
                let row = |c: &str| format!("| {} |", vec![c; cols].join(" | "));
                let mut t = vec![row("h"), format!("|{}", "---|".repeat(cols))];
                t.extend((0..rows).map(|r| row(&"x".repeat(r + 1))));
                t.join("\n")
            }),
            ("(rust|py|)", prop::collection::vec(word, 0..3))
                .prop_map(|(lang, body)| format!("```{lang}\n{}\n```", body.join("\n"))),
            Just("---".to_string()),
            Just("* * *".to_string()),
            word.prop_map(|w| format!("> {w}")),
            word.prop_map(|w| format!("- {w}")),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Over random answers: the stream only grows, the final text starts with what was
        /// streamed, and its fences are balanced.
        #[test]
        fn random_answers_stream_without_taking_text_back(
            blocks in proptest::collection::vec(block(), 1..8),
            sep in proptest::sample::select(vec!["\n", "\n\n"]),
        ) {
            let answer = blocks.join(sep);
            let chars: Vec<char> = answer.chars().collect();
            let mut previous = String::new();
            for n in 0..=chars.len() {
                let shown = streamable(&chars[..n].iter().collect::<String>());
                proptest::prop_assert!(shown.starts_with(&previous), "{:?} then {:?}", previous, shown);
                previous = shown;
            }
            let done = to_markdown_block(&answer);
            proptest::prop_assert!(done.starts_with(&previous), "{:?} / {:?}", previous, done);
            let fences = done.lines().filter(|l| l.trim_start().starts_with("```")).count();
            proptest::prop_assert_eq!(fences % 2, 0, "{}", done);
        }
    }
}
