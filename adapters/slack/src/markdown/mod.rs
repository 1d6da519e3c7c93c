//! Markdown to Slack mrkdwn, and splitting answers at Slack's length limits.
//!
//! Answers are Markdown. Slack takes Markdown as is in `markdown_text` and `markdown` blocks,
//! but section blocks, notification `text` fallbacks and `chat.update` on old clients take only
//! mrkdwn ("Formatting text for app surfaces"): `*bold*`, `_italic_`, `~strike~`, `` `code` ``,
//! ```` ``` ```` blocks without a language tag, `<url|text>` links, `>` quotes, and `&`, `<`, `>`
//! escaped as `&amp;`, `&lt;`, `&gt;` everywhere except in the link syntax itself.
//!
//! [`to_mrkdwn`] converts; [`split_for_slack`] splits Markdown for the Markdown surfaces; and
//! [`split_to_mrkdwn`] splits and converts so that every converted piece fits a limit. The
//! conversion is a small line-based parser with CommonMark's delimiter rules for emphasis,
//! stricter in one respect: emphasis never opens or closes inside a word, so `snake_case_name`
//! and `2*3*4` stay literal, as Slack itself would show them.
//!
//! The block parser is in `block.rs`, the inline engine in `inline.rs` and the splitting in
//! `split.rs`. [`markdown_block`] converts Markdown for Slack's `markdown` block instead,
//! with the block parser's fence, quote, rule and table readers.

mod block;
mod inline;
pub mod markdown_block;
mod split;
#[cfg(test)]
mod testing;

pub(crate) use block::{
    closes, is_quote, is_rule, neutralize_backticks, open_fence, parse_table, strip_quote, Fence,
};
pub use split::{split_for_slack, split_to_mrkdwn};

use block::{parse_blocks, render_blocks};
use inline::push_escaped;

/// Slack truncates a message's `text` past this many characters.
pub const MESSAGE_TEXT_MAX: usize = 40_000;

/// The most characters a `markdown` block holds.
pub const MARKDOWN_BLOCK_MAX: usize = 12_000;

/// The most characters of a section block's `text`.
pub const SECTION_TEXT_MAX: usize = 3_000;

/// The most characters of `markdown_text` in one `chat.appendStream` call.
pub const APPEND_STREAM_MAX: usize = 12_000;

/// Converts Markdown to Slack mrkdwn. Never panics; plain text without Markdown syntax comes
/// out unchanged except for the escaping of `&`, `<` and `>`; code fences in the output are
/// always balanced.
pub fn to_mrkdwn(markdown: &str) -> String {
    let lines: Vec<&str> = markdown.split('\n').collect();
    let mut out = Vec::new();
    render_blocks(&parse_blocks(&lines), &mut out);
    out.join("\n")
}

/// Escapes text for mrkdwn: `&`, `<` and `>` become `&amp;`, `&lt;` and `&gt;`.
pub fn escape_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::markdown::testing::{balanced, markdownish};

    #[test]
    fn limits() {
        assert_eq!(MESSAGE_TEXT_MAX, 40_000);
        assert_eq!(MARKDOWN_BLOCK_MAX, 12_000);
        assert_eq!(SECTION_TEXT_MAX, 3_000);
        assert_eq!(APPEND_STREAM_MAX, 12_000);
    }

    #[test]
    fn pathological_lines_finish() {
        let long = 20_000;
        for input in [
            "*a ".repeat(long),
            "a* ".repeat(long),
            "_a _b ".repeat(long),
            "[".repeat(long),
            "[a](x \"".repeat(long / 4),
            "<".repeat(long),
            "`".repeat(long),
            format!("https://e.com/{}", ")".repeat(long)),
            format!("{}x{}", "**".repeat(long), "**".repeat(long)),
            format!("{}](https://e.com)", "[".repeat(long)),
            "> ".repeat(long),
            "- ".repeat(long),
        ] {
            let out = to_mrkdwn(&input);
            assert!(balanced(&out));
            for p in split_to_mrkdwn(&input, SECTION_TEXT_MAX) {
                assert!(p.chars().count() <= SECTION_TEXT_MAX);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn conversion_never_panics_and_balances_fences(s in any::<String>()) {
            let out = to_mrkdwn(&s);
            prop_assert!(balanced(&out));
        }

        #[test]
        fn conversion_of_markdownish_balances_fences(s in markdownish()) {
            let out = to_mrkdwn(&s);
            prop_assert!(balanced(&out), "{out:?}");
        }

        #[test]
        fn plain_text_is_unchanged(s in "[^*_~`\\[\\]<>&#|+\\-]{0,300}") {
            prop_assert_eq!(to_mrkdwn(&s), s);
        }
    }
}
