//! The block parser: Markdown lines grouped into code blocks, tables, quotes and single lines,
//! rendered as mrkdwn lines (headings as bold lines, lists as bullets, rules as a dash line,
//! tables as aligned code blocks) or normalized back to the Markdown the splitter expects.

use super::escape_mrkdwn;
use super::inline::{render_inline, CELL, HEADING, TEXT};

/// What a horizontal rule becomes: mrkdwn has no rule.
const RULE: &str = "———";

/// Breaks a run of three backticks that is not a fence, so Slack does not open a block there.
const ZWSP: char = '\u{200B}';

/// A block-level element: what decides how a group of lines is rendered.
pub(super) enum Block<'a> {
    /// A fenced code block; `lines` are stripped of the fence's indentation.
    Code { lang: &'a str, lines: Vec<&'a str> },
    /// A table, already laid out as aligned plain-text lines.
    Table(Vec<String>),
    /// A block quote (nested quotes flattened: mrkdwn has one level).
    Quote(Vec<Block<'a>>),
    /// Any other line.
    Line(&'a str),
}

/// An opening code fence.
pub(crate) struct Fence<'a> {
    pub(crate) ch: char,
    len: usize,
    indent: usize,
    lang: &'a str,
}

pub(super) fn parse_blocks<'a>(lines: &[&'a str]) -> Vec<Block<'a>> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(fence) = open_fence(line) {
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() {
                let candidate = lines[i];
                i += 1;
                if closes(&fence, candidate) {
                    break;
                }
                body.push(strip_indent(candidate, fence.indent));
            }
            blocks.push(Block::Code {
                lang: fence.lang,
                lines: body,
            });
        } else if is_quote(line) {
            let mut inner = Vec::new();
            while i < lines.len() && is_quote(lines[i]) {
                inner.push(strip_quote(lines[i]));
                i += 1;
            }
            blocks.push(Block::Quote(parse_blocks(&inner)));
        } else if let Some((table, used)) = parse_table(&lines[i..]) {
            blocks.push(Block::Table(table));
            i += used;
        } else {
            blocks.push(Block::Line(line));
            i += 1;
        }
    }
    blocks
}

pub(crate) fn open_fence(line: &str) -> Option<Fence<'_>> {
    let t = line.trim_start();
    let ch = t.chars().next().filter(|&c| c == '`' || c == '~')?;
    let len = t.chars().take_while(|&c| c == ch).count();
    if len < 3 {
        return None;
    }
    let info = t[len..].trim();
    if ch == '`' && info.contains('`') {
        return None;
    }
    let lang = info.split_whitespace().next().unwrap_or("");
    // A language tag is one short word; anything longer would only bloat reopened fences.
    let lang = if lang.chars().count() > 24 { "" } else { lang };
    Some(Fence {
        ch,
        len,
        indent: line.chars().take_while(|c| c.is_whitespace()).count(),
        lang,
    })
}

pub(crate) fn closes(fence: &Fence<'_>, line: &str) -> bool {
    let t = line.trim();
    t.chars().count() >= fence.len && t.chars().all(|c| c == fence.ch)
}

/// Removes up to `n` leading whitespace characters.
fn strip_indent(line: &str, n: usize) -> &str {
    let cut = line
        .char_indices()
        .take(n)
        .take_while(|(_, c)| c.is_whitespace())
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    &line[cut..]
}

pub(crate) fn is_quote(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// The content of a quote line, without its `>` markers (all of them) and one space.
pub(crate) fn strip_quote(line: &str) -> &str {
    let mut rest = line;
    while let Some(after) = rest.trim_start().strip_prefix('>') {
        rest = after;
    }
    rest.strip_prefix(' ').unwrap_or(rest)
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

/// A GFM table at the start of `lines`: its laid-out lines and how many input lines it used.
pub(crate) fn parse_table(lines: &[&str]) -> Option<(Vec<String>, usize)> {
    let header = lines.first()?;
    if !header.contains('|') {
        return None;
    }
    let aligns = parse_delimiter_row(lines.get(1)?)?;
    let head = split_cells(header);
    if head.len() != aligns.len() {
        return None;
    }
    let mut rows = vec![head];
    let mut used = 2;
    for line in &lines[2..] {
        if line.trim().is_empty() || !line.contains('|') || open_fence(line).is_some() {
            break;
        }
        if is_quote(line) {
            break;
        }
        rows.push(split_cells(line));
        used += 1;
    }
    Some((layout_table(&rows, &aligns), used))
}

fn parse_delimiter_row(line: &str) -> Option<Vec<Align>> {
    let t = line.trim();
    if !t.contains('|') || !t.contains('-') {
        return None;
    }
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|')
        .map(|cell| {
            let c = cell.trim();
            let left = c.starts_with(':');
            let right = c.len() > 1 && c.ends_with(':');
            let dashes = c.trim_start_matches(':').trim_end_matches(':');
            if dashes.is_empty() || !dashes.chars().all(|ch| ch == '-') {
                return None;
            }
            Some(match (left, right) {
                (true, true) => Align::Center,
                (false, true) => Align::Right,
                _ => Align::Left,
            })
        })
        .collect()
}

/// A table row's cells, rendered as plain text (a code block shows no formatting).
fn split_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells
        .iter()
        .map(|c| render_inline(c.trim(), CELL))
        .collect()
}

/// Lays a table out as lines with padded columns.
fn layout_table(rows: &[Vec<String>], aligns: &[Align]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
                .max(1)
        })
        .collect();
    let mut out = Vec::with_capacity(rows.len() + 1);
    for (r, row) in rows.iter().enumerate() {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, &w)| {
                let text = row.get(c).map_or("", String::as_str);
                let pad = w.saturating_sub(text.chars().count());
                let (before, after) = match aligns.get(c).copied().unwrap_or(Align::Left) {
                    Align::Left => (0, pad),
                    Align::Right => (pad, 0),
                    Align::Center => (pad / 2, pad - pad / 2),
                };
                format!("{}{text}{}", " ".repeat(before), " ".repeat(after))
            })
            .collect();
        out.push(format!("| {} |", cells.join(" | ")));
        if r == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
            out.push(format!("|{}|", rule.join("|")));
        }
    }
    out
}

/// Renders blocks as mrkdwn lines.
pub(super) fn render_blocks(blocks: &[Block<'_>], out: &mut Vec<String>) {
    let mut lists = Vec::new();
    for block in blocks {
        match block {
            Block::Code { lines, .. } => {
                lists.clear();
                out.push("```".to_string());
                out.extend(
                    lines
                        .iter()
                        .map(|l| escape_mrkdwn(&neutralize_backticks(l))),
                );
                out.push("```".to_string());
            }
            Block::Table(lines) => {
                lists.clear();
                out.push("```".to_string());
                out.extend(
                    lines
                        .iter()
                        .map(|l| escape_mrkdwn(&neutralize_backticks(l))),
                );
                out.push("```".to_string());
            }
            Block::Quote(inner) => {
                lists.clear();
                let mut quoted = Vec::new();
                render_blocks(inner, &mut quoted);
                // The quote marker is mrkdwn syntax, so it stays a literal `>`.
                out.extend(quoted.into_iter().map(|l| {
                    if l.is_empty() {
                        ">".to_string()
                    } else {
                        format!("> {l}")
                    }
                }));
            }
            Block::Line(line) => out.push(render_line(line, &mut lists)),
        }
    }
}

/// Renders blocks back as Markdown in the shape the splitter and the converter agree on: every
/// fence is ```` ``` ```` at the start of its line, tables are code blocks, and no other line
/// starts with three backticks.
pub(super) fn normalize_blocks(blocks: &[Block<'_>], out: &mut Vec<String>) {
    for block in blocks {
        match block {
            Block::Code { lang, lines } => {
                out.push(format!("```{lang}"));
                out.extend(lines.iter().map(|l| neutralize_backticks(l)));
                out.push("```".to_string());
            }
            Block::Table(lines) => {
                out.push("```".to_string());
                out.extend(lines.iter().map(|l| neutralize_backticks(l)));
                out.push("```".to_string());
            }
            Block::Quote(inner) => {
                let mut quoted = Vec::new();
                normalize_blocks(inner, &mut quoted);
                out.extend(quoted.into_iter().map(|l| {
                    if l.is_empty() {
                        ">".to_string()
                    } else {
                        format!("> {l}")
                    }
                }));
            }
            Block::Line(line) if line.trim_start().starts_with("```") => {
                out.push(neutralize_backticks(line));
            }
            Block::Line(line) => out.push((*line).to_string()),
        }
    }
}

/// Puts a zero-width space inside every run of three or more backticks, so that Slack never
/// sees a fence where Markdown had none (or inside a code block).
pub(crate) fn neutralize_backticks(s: &str) -> String {
    if !s.contains("```") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            if run == 3 {
                out.push(ZWSP);
                run = 1;
            }
        } else {
            run = 0;
        }
        out.push(c);
    }
    out
}

/// Renders one line outside code blocks and tables. `lists` holds the indentation columns of
/// the enclosing list items, to turn indentation into nesting levels.
fn render_line(line: &str, lists: &mut Vec<usize>) -> String {
    let (body, cr) = match line.strip_suffix('\r') {
        Some(body) => (body, "\r"),
        None => (line, ""),
    };
    let mut out = render_line_body(body, lists);
    out.push_str(cr);
    out
}

fn render_line_body(body: &str, lists: &mut Vec<usize>) -> String {
    if body.trim().is_empty() {
        return body.to_string();
    }
    let t = body.trim_start();
    let indent = &body[..body.len() - t.len()];
    let column = columns(indent);
    if column <= 3 {
        if let Some(content) = heading(t) {
            lists.clear();
            let inner = render_inline(content, HEADING);
            return if inner.is_empty() {
                String::new()
            } else {
                format!("*{inner}*")
            };
        }
        if is_rule(t) {
            lists.clear();
            return RULE.to_string();
        }
    }
    if let Some(rest) = bullet(t) {
        let level = list_level(lists, column);
        let (check, rest) = task_box(rest);
        return format!(
            "{}• {check}{}",
            "    ".repeat(level),
            render_inline(rest, TEXT)
        );
    }
    if let Some(marker) = ordered_marker(t) {
        list_level(lists, column);
        return format!(
            "{indent}{}{}",
            &t[..marker],
            render_inline(&t[marker..], TEXT)
        );
    }
    if column == 0 {
        lists.clear();
    }
    render_inline(body, TEXT)
}

/// Display columns of leading whitespace (a tab advances to the next multiple of four).
fn columns(indent: &str) -> usize {
    indent.chars().fold(0, |col, c| {
        if c == '\t' {
            col + 4 - col % 4
        } else {
            col + 1
        }
    })
}

/// The nesting level of a list item at `column`, updating the stack of enclosing items.
fn list_level(lists: &mut Vec<usize>, column: usize) -> usize {
    while lists.last().is_some_and(|&c| c >= column) {
        lists.pop();
    }
    let level = lists.len();
    lists.push(column);
    level
}

/// The text of an ATX heading (`# Title`, `## Title ##`), if `t` is one.
fn heading(t: &str) -> Option<&str> {
    let hashes = t.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &t[hashes..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let content = rest.trim();
    let without_closing = content.trim_end_matches('#');
    Some(if without_closing.is_empty() {
        ""
    } else if without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end()
    } else {
        content
    })
}

/// Whether `t` is a thematic break: three or more of one of `-*_`, spaces allowed between.
pub(crate) fn is_rule(t: &str) -> bool {
    let marks: Vec<char> = t.chars().filter(|c| !matches!(c, ' ' | '\t')).collect();
    marks.len() >= 3 && matches!(marks[0], '-' | '*' | '_') && marks.iter().all(|&c| c == marks[0])
}

/// The content of a bullet item (`- x`, `* x`, `+ x`), if `t` is one.
fn bullet(t: &str) -> Option<&str> {
    let rest = t.strip_prefix(['-', '*', '+'])?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.starts_with([' ', '\t']).then(|| rest.trim_start())
}

/// A task-list checkbox at the start of an item, as a symbol, and the rest of the item.
fn task_box(rest: &str) -> (&'static str, &str) {
    for (prefix, symbol) in [("[ ]", "☐ "), ("[x]", "☑ "), ("[X]", "☑ ")] {
        if let Some(after) = rest.strip_prefix(prefix) {
            if after.is_empty() || after.starts_with([' ', '\t']) {
                return (symbol, after.trim_start());
            }
        }
    }
    ("", rest)
}

/// The byte length of an ordered-list marker with its following spaces (`12. `), if any.
fn ordered_marker(t: &str) -> Option<usize> {
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if !(1..=9).contains(&digits) {
        return None;
    }
    let rest = t[digits..].strip_prefix(['.', ')'])?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let spaces = rest.len() - rest.trim_start().len();
    Some(digits + 1 + spaces)
}

#[cfg(test)]
mod tests {
    use crate::markdown::to_mrkdwn;

    #[test]
    fn headings_become_bold_lines() {
        assert_eq!(to_mrkdwn("# Title"), "*Title*");
        assert_eq!(to_mrkdwn("### Deep ###\ntext"), "*Deep*\ntext");
        assert_eq!(to_mrkdwn("###### Six"), "*Six*");
        assert_eq!(to_mrkdwn("# **Big** _deal_"), "*Big _deal_*");
        assert_eq!(to_mrkdwn("#hashtag"), "#hashtag");
        assert_eq!(to_mrkdwn("#"), "");
    }

    #[test]
    fn bullets_and_nesting() {
        assert_eq!(to_mrkdwn("- a\n* b\n+ c"), "• a\n• b\n• c");
        assert_eq!(
            to_mrkdwn("- a\n  - b\n    - c\n  - d\n- e"),
            "• a\n    • b\n        • c\n    • d\n• e"
        );
        assert_eq!(to_mrkdwn("- **x**: y"), "• *x*: y");
        assert_eq!(to_mrkdwn("- [ ] todo\n- [x] done"), "• ☐ todo\n• ☑ done");
    }

    #[test]
    fn ordered_lists_are_kept() {
        assert_eq!(
            to_mrkdwn("1. one\n2. **two**\n   - sub"),
            "1. one\n2. *two*\n    • sub"
        );
    }

    #[test]
    fn quotes() {
        assert_eq!(
            to_mrkdwn("> quoted *x*\n>\n> more"),
            "> quoted _x_\n>\n> more"
        );
        assert_eq!(to_mrkdwn(">> deep"), "> deep");
        assert_eq!(to_mrkdwn("> - item"), "> • item");
    }

    #[test]
    fn rules() {
        assert_eq!(to_mrkdwn("a\n\n---\n\nb"), "a\n\n———\n\nb");
        assert_eq!(to_mrkdwn("* * *"), "———");
        assert_eq!(to_mrkdwn("___"), "———");
    }

    #[test]
    fn tables_become_aligned_code_blocks() {
        let table = "| Name | Qty |\n|:-----|----:|\n| apple | 3 |\n| **kiwi** | 12 |";
        assert_eq!(
            to_mrkdwn(table),
            "```\n| Name  | Qty |\n|-------|-----|\n| apple |   3 |\n| kiwi  |  12 |\n```"
        );
        assert_eq!(
            to_mrkdwn("a | b\n--|--\n<x> | [l](https://e.com)"),
            "```\n| a   | b                 |\n|-----|-------------------|\n| &lt;x&gt; | l (https://e.com) |\n```"
        );
        assert_eq!(to_mrkdwn("a | b\nnot a table"), "a | b\nnot a table");
    }

    #[test]
    fn code_blocks_drop_the_language_and_keep_their_text() {
        assert_eq!(
            to_mrkdwn("```rust\nlet a = 2 * 3 * 4; // <x> & **y**\n```"),
            "```\nlet a = 2 * 3 * 4; // &lt;x&gt; &amp; **y**\n```"
        );
        assert_eq!(
            to_mrkdwn("- item\n  ```sh\n  ls *_x_*\n  ```"),
            "• item\n```\nls *_x_*\n```"
        );
        assert_eq!(
            to_mrkdwn("~~~\nx = '```'\n~~~"),
            "```\nx = '``\u{200B}`'\n```"
        );
    }

    #[test]
    fn unclosed_code_blocks_are_closed() {
        assert_eq!(
            to_mrkdwn("text\n```py\nprint(1)"),
            "text\n```\nprint(1)\n```"
        );
    }

    #[test]
    fn line_endings_are_kept() {
        assert_eq!(to_mrkdwn("**a**\r\nb\r\n"), "*a*\r\nb\r\n");
    }
}
