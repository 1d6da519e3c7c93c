//! Test support for the Markdown modules: the mrkdwn fence check and a generator of
//! Markdown-flavoured input.

use proptest::prelude::*;

/// mrkdwn has only backtick fences, and any line starting with three toggles.
pub(super) fn balanced(s: &str) -> bool {
    s.lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count()
        .is_multiple_of(2)
}

/// Markdown-flavoured input: syntax tokens, words, multi-byte text, and fence lines (kept
/// short, see the limitation noted on `push_within`).
pub(super) fn markdownish() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "word",
        "word",
        "word",
        " ",
        " ",
        " ",
        "\n",
        "\n\n",
        "\t",
        "**",
        "*",
        "_",
        "__",
        "~~",
        "~",
        "`code`",
        "\n```rust\n",
        "\n```\n",
        "\n~~~\n",
        "snake_case",
        "2*3*4",
        "[",
        "]",
        "(",
        ")",
        "](https://e.com/a_b)",
        "https://x.y/a_b_",
        "<",
        ">",
        "&",
        "# ",
        "\n- ",
        "\n  * ",
        "\n1. ",
        "\n| a | b |\n|---|:-:|\n| 1 | 2 |\n",
        "\n> ",
        "\n---\n",
        "![",
        "\\",
        "é",
        "日本語",
        "🙂",
        "\r\n",
    ];
    prop::collection::vec(prop::sample::select(TOKENS), 0..250).prop_map(|t| t.concat())
}
