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

use anchorbot_platform::split_message;

/// Slack truncates a message's `text` past this many characters.
pub const MESSAGE_TEXT_MAX: usize = 40_000;
/// The most characters a `markdown` block holds.
pub const MARKDOWN_BLOCK_MAX: usize = 12_000;
/// The most characters of a section block's `text`.
pub const SECTION_TEXT_MAX: usize = 3_000;
/// The most characters of `markdown_text` in one `chat.appendStream` call.
pub const APPEND_STREAM_MAX: usize = 12_000;

/// What a horizontal rule becomes: mrkdwn has no rule.
const RULE: &str = "———";
/// Breaks a run of three backticks that is not a fence, so Slack does not open a block there.
const ZWSP: char = '\u{200B}';
/// Characters a backslash escapes. Only Markdown syntax characters, so that plain text with
/// backslashes (Windows paths, `\n` in prose) comes out unchanged.
const ESCAPABLE: &str = "*_~`[]<>&#|-";

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

/// A block-level element: what decides how a group of lines is rendered.
enum Block<'a> {
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

fn parse_blocks<'a>(lines: &[&'a str]) -> Vec<Block<'a>> {
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
fn render_blocks(blocks: &[Block<'_>], out: &mut Vec<String>) {
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
fn normalize_blocks(blocks: &[Block<'_>], out: &mut Vec<String>) {
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

/// Which emphasis markers an inline rendering shows.
#[derive(Clone, Copy, PartialEq)]
enum Marks {
    All,
    /// In a heading, which is bold as a whole.
    NoStrong,
    /// In link labels and table cells.
    None,
}

/// How links come out.
#[derive(Clone, Copy, PartialEq)]
enum Links {
    /// `<url|text>`.
    Slack,
    /// The label only (inside another link's label).
    Label,
    /// `text (url)`, for table cells in a code block.
    LabelAndUrl,
}

/// How to render inline content.
#[derive(Clone, Copy)]
struct Style {
    marks: Marks,
    escape: bool,
    links: Links,
}

const TEXT: Style = Style {
    marks: Marks::All,
    escape: true,
    links: Links::Slack,
};
const HEADING: Style = Style {
    marks: Marks::NoStrong,
    ..TEXT
};
const LABEL: Style = Style {
    marks: Marks::None,
    escape: true,
    links: Links::Label,
};
const CELL: Style = Style {
    marks: Marks::None,
    escape: false,
    links: Links::LabelAndUrl,
};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Strong,
    Em,
    Strike,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn marker(self) -> char {
        match self {
            Kind::Strong => '*',
            Kind::Em => '_',
            Kind::Strike => '~',
        }
    }
}

/// A run of `*`, `_` or `~` that may open or close emphasis.
struct Delim {
    ch: char,
    /// Length of the run in the source (for CommonMark's "rule of 3").
    orig: usize,
    /// Characters not yet used by a match; they stay literal.
    count: usize,
    can_open: bool,
    can_close: bool,
    /// Still on the delimiter stack.
    active: bool,
    /// Markers this run opens, outermost first.
    opens: Vec<Kind>,
    /// Markers this run closes, innermost first.
    closes: Vec<Kind>,
}

enum Node {
    Text(String),
    Delim(Delim),
}

fn push_char(out: &mut String, c: char, style: Style) {
    if style.escape {
        push_escaped(out, c);
    } else {
        out.push(c);
    }
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        _ => out.push(c),
    }
}

fn push_str(out: &mut String, s: &str, style: Style) {
    for c in s.chars() {
        push_char(out, c, style);
    }
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace())
}

/// Renders inline Markdown (one line) in `style`.
fn render_inline(s: &str, style: Style) -> String {
    let chars: Vec<char> = s.chars().collect();
    let brackets = match_brackets(&chars);
    let mut nodes = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1).is_some_and(|n| ESCAPABLE.contains(*n)) => {
                push_char(&mut text, chars[i + 1], style);
                i += 2;
            }
            '`' => i = code_span(&chars, i, style, &mut text),
            '<' => match autolink(&chars, i) {
                Some((url, email, next)) => {
                    push_autolink(&mut text, &url, email, style);
                    i = next;
                }
                None => {
                    push_char(&mut text, c, style);
                    i += 1;
                }
            },
            '!' | '[' => {
                let open = if c == '!' { i + 1 } else { i };
                let link = (chars.get(open) == Some(&'['))
                    .then(|| link(&chars, &brackets, open))
                    .flatten();
                match link {
                    Some((label, dest, next)) => {
                        push_link(&mut text, &label, &dest, style);
                        i = next;
                    }
                    None => {
                        push_char(&mut text, c, style);
                        i += 1;
                    }
                }
            }
            '*' | '_' | '~' => {
                let run = chars[i..].iter().take_while(|&&x| x == c).count();
                if c == '~' && run > 2 {
                    text.extend(std::iter::repeat_n(c, run));
                } else {
                    let prev = if i == 0 { ' ' } else { chars[i - 1] };
                    let next = chars.get(i + run).copied().unwrap_or(' ');
                    let left = !next.is_whitespace()
                        && (!is_punct(next) || prev.is_whitespace() || is_punct(prev));
                    let right = !prev.is_whitespace()
                        && (!is_punct(prev) || next.is_whitespace() || is_punct(next));
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    // Stricter than CommonMark for `*` (which may be intraword there): a
                    // run inside a word is literal, as in `2*3*4` or `snake_case_name`.
                    nodes.push(Node::Delim(Delim {
                        ch: c,
                        orig: run,
                        count: run,
                        can_open: left && (!right || is_punct(prev)),
                        can_close: right && (!left || is_punct(next)),
                        active: true,
                        opens: Vec::new(),
                        closes: Vec::new(),
                    }));
                }
                i += run;
            }
            _ => match bare_url(&chars, i) {
                Some(end) => {
                    let url: String = chars[i..end].iter().collect();
                    push_str(&mut text, &url, style);
                    i = end;
                }
                None => {
                    push_char(&mut text, c, style);
                    i += 1;
                }
            },
        }
    }
    if !text.is_empty() {
        nodes.push(Node::Text(text));
    }
    process_emphasis(&mut nodes);
    emit(&nodes, style)
}

/// For each `[`, the index of its matching `]` (escaped brackets skipped), in one pass.
fn match_brackets(chars: &[char]) -> Vec<Option<usize>> {
    let mut matches = vec![None; chars.len()];
    let mut stack = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => stack.push(i),
            ']' => {
                if let Some(open) = stack.pop() {
                    matches[open] = Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    matches
}

/// Renders the code span or literal backtick run at `i`; returns the index after it.
fn code_span(chars: &[char], i: usize, style: Style, text: &mut String) -> usize {
    let run = chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut j = i + run;
    while j < chars.len() {
        if chars[j] == '`' {
            let other = chars[j..].iter().take_while(|&&c| c == '`').count();
            if other == run {
                let mut content: String = chars[i + run..j].iter().collect();
                // CommonMark strips one space on each side, so `` `x` `` can hold backticks.
                if content.len() >= 2
                    && content.starts_with(' ')
                    && content.ends_with(' ')
                    && !content.trim().is_empty()
                {
                    content = content[1..content.len() - 1].to_string();
                }
                let content = neutralize_backticks(&content);
                if style.marks == Marks::None {
                    push_str(text, &content, style);
                } else {
                    text.push('`');
                    push_str(text, &content, style);
                    text.push('`');
                }
                return j + other;
            }
            j += other;
        } else {
            j += 1;
        }
    }
    let literal: String = chars[i..i + run].iter().collect();
    text.push_str(&neutralize_backticks(&literal));
    i + run
}

/// An autolink `<scheme:…>` or `<user@host>` at `i`: the address, whether it is an email, and
/// the index after the closing `>`.
fn autolink(chars: &[char], i: usize) -> Option<(String, bool, usize)> {
    let close = chars[i + 1..]
        .iter()
        .position(|&c| c == '>' || c == '<' || c.is_whitespace())
        .map(|p| i + 1 + p)
        .filter(|&p| chars[p] == '>')?;
    let inner: String = chars[i + 1..close].iter().collect();
    if absolute_url(&inner) {
        return Some((inner, false, close + 1));
    }
    let (user, host) = inner.split_once('@')?;
    let email = !user.is_empty()
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        && user.chars().all(|c| !c.is_whitespace() && c != '@');
    email.then_some((inner, true, close + 1))
}

fn push_autolink(text: &mut String, url: &str, email: bool, style: Style) {
    match style.links {
        Links::Slack if email => {
            text.push_str("<mailto:");
            text.push_str(&slack_url(url));
            text.push('|');
            push_str(text, url, style);
            text.push('>');
        }
        Links::Slack => {
            text.push('<');
            text.push_str(&slack_url(url));
            text.push('>');
        }
        Links::Label | Links::LabelAndUrl => push_str(text, url, style),
    }
}

/// Whether `s` starts with a URI scheme (`https:`, `mailto:`…) as CommonMark defines it.
fn absolute_url(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut cs = scheme.chars();
    (2..=32).contains(&scheme.len())
        && cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

/// A URL inside Slack's `<url|text>` syntax: `&` escaped, and the characters that would end
/// the syntax early percent-encoded.
fn slack_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '|' => out.push_str("%7C"),
            c if c.is_whitespace() => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

/// An inline link or image whose `[` is at `open`: its label, destination, and the index after
/// the closing `)`.
fn link(
    chars: &[char],
    brackets: &[Option<usize>],
    open: usize,
) -> Option<(String, String, usize)> {
    let close = brackets.get(open).copied().flatten()?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let mut k = close + 2;
    while chars.get(k).is_some_and(|c| c.is_whitespace()) {
        k += 1;
    }
    let dest: String;
    if chars.get(k) == Some(&'<') {
        let end = chars[k + 1..]
            .iter()
            .position(|&c| c == '>' || c == '<' || c == '\n')
            .map(|p| k + 1 + p)
            .filter(|&p| chars[p] == '>')?;
        dest = chars[k + 1..end].iter().collect();
        k = end + 1;
    } else {
        let start = k;
        let mut depth = 0usize;
        while let Some(&c) = chars.get(k) {
            if c.is_whitespace() || (c == ')' && depth == 0) {
                break;
            }
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                '\\' => k += 1,
                _ => {}
            }
            k += 1;
        }
        let end = k.min(chars.len());
        dest = chars[start..end].iter().collect();
        k = end;
    }
    while chars.get(k).is_some_and(|c| c.is_whitespace()) {
        k += 1;
    }
    if let Some(&quote) = chars.get(k).filter(|c| matches!(c, '"' | '\'' | '(')) {
        let end_quote = if quote == '(' { ')' } else { quote };
        let end = chars[k + 1..].iter().position(|&c| c == end_quote)?;
        k += end + 2;
        while chars.get(k).is_some_and(|c| c.is_whitespace()) {
            k += 1;
        }
    }
    if chars.get(k) != Some(&')') {
        return None;
    }
    let label: String = chars[open + 1..close].iter().collect();
    Some((label, dest, k + 1))
}

fn push_link(text: &mut String, label: &str, dest: &str, style: Style) {
    // Nested labels render without links, which also bounds the recursion.
    let inner = if style.links == Links::Slack {
        LABEL
    } else {
        Style {
            links: Links::Label,
            ..style
        }
    };
    let shown = if style.links == Links::Label {
        strip_brackets(label)
    } else {
        render_inline(label, inner)
    };
    let url = if dest.starts_with("www.") {
        format!("http://{dest}")
    } else {
        dest.to_string()
    };
    let linkable = absolute_url(&url);
    match style.links {
        Links::Slack if linkable => {
            text.push('<');
            text.push_str(&slack_url(&url));
            if !shown.trim().is_empty() {
                text.push('|');
                text.push_str(&shown);
            }
            text.push('>');
        }
        Links::LabelAndUrl if linkable && shown.trim() != url => {
            text.push_str(&shown);
            if !shown.trim().is_empty() {
                text.push(' ');
            }
            text.push('(');
            push_str(text, &url, style);
            text.push(')');
        }
        _ => text.push_str(&shown),
    }
}

/// A label two links deep, shown as text: Markdown punctuation that would need parsing is
/// dropped rather than parsed again.
fn strip_brackets(label: &str) -> String {
    let mut out = String::new();
    for c in label
        .chars()
        .filter(|c| !matches!(c, '[' | ']' | '*' | '_' | '`'))
    {
        push_escaped(&mut out, c);
    }
    out
}

/// The end of a bare `http(s)://` or `www.` URL starting at `i`, so that underscores and
/// asterisks inside it are not read as emphasis. Trailing punctuation is not part of it (GFM).
fn bare_url(chars: &[char], i: usize) -> Option<usize> {
    if !matches!(chars[i], 'h' | 'H' | 'w' | 'W') {
        return None;
    }
    if i > 0 && chars[i - 1].is_alphanumeric() {
        return None;
    }
    let head: String = chars[i..chars.len().min(i + 8)]
        .iter()
        .collect::<String>()
        .to_ascii_lowercase();
    let prefix = ["https://", "http://", "www."]
        .into_iter()
        .find(|p| head.starts_with(p))?;
    let mut end = i;
    while end < chars.len() && !chars[end].is_whitespace() && chars[end] != '<' {
        end += 1;
    }
    let span = &chars[i..end];
    let opens = span.iter().filter(|&&c| c == '(').count();
    let mut closes = span.iter().filter(|&&c| c == ')').count();
    while end > i {
        let last = chars[end - 1];
        if matches!(
            last,
            '?' | '!' | '.' | ',' | ':' | ';' | '*' | '_' | '~' | '\'' | '"'
        ) {
            end -= 1;
        } else if last == ')' && closes > opens {
            closes -= 1;
            end -= 1;
        } else {
            break;
        }
    }
    (end - i > prefix.len()).then_some(end)
}

/// Matches openers with closers, following CommonMark's "process emphasis" procedure (GFM's for
/// `~`: a single or double tilde, opener and closer of the same length).
fn process_emphasis(nodes: &mut [Node]) {
    let delims: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| matches!(n, Node::Delim(_)).then_some(i))
        .collect();
    // The lowest delimiter index worth searching for an opener, per kind of closer; keeps the
    // procedure linear on long lines of unmatched delimiters.
    let mut bottom = [0usize; 18];
    let mut c = 0;
    while c < delims.len() {
        let Some(closer) = delim(nodes, delims[c]) else {
            c += 1;
            continue;
        };
        if !closer.active || !closer.can_close || closer.count == 0 {
            c += 1;
            continue;
        }
        let (ch, closer_orig, closer_can_open) = (closer.ch, closer.orig, closer.can_open);
        let key = match ch {
            '*' => 0,
            '_' => 6,
            _ => 12,
        } + usize::from(closer_can_open) * 3
            + closer_orig % 3;
        let mut found = None;
        let mut o = c;
        while o > bottom[key] {
            o -= 1;
            let Some(opener) = delim(nodes, delims[o]) else {
                continue;
            };
            if !opener.active || !opener.can_open || opener.count == 0 || opener.ch != ch {
                continue;
            }
            let compatible = if ch == '~' {
                opener.orig == closer_orig
            } else {
                let sum = opener.orig + closer_orig;
                !((opener.can_close || closer_can_open)
                    && sum % 3 == 0
                    && !(opener.orig % 3 == 0 && closer_orig % 3 == 0))
            };
            if compatible {
                found = Some(o);
                break;
            }
        }
        let Some(o) = found else {
            bottom[key] = c;
            if !closer_can_open {
                if let Some(d) = delim_mut(nodes, delims[c]) {
                    d.active = false;
                }
            }
            c += 1;
            continue;
        };
        let opener_count = delim(nodes, delims[o]).map_or(0, |d| d.count);
        let closer_count = delim(nodes, delims[c]).map_or(0, |d| d.count);
        let (kind, used) = if ch == '~' {
            (Kind::Strike, opener_count.min(closer_count))
        } else if opener_count >= 2 && closer_count >= 2 {
            (Kind::Strong, 2)
        } else {
            (Kind::Em, 1)
        };
        if let Some(d) = delim_mut(nodes, delims[o]) {
            d.count -= used;
            d.opens.insert(0, kind);
            if d.count == 0 {
                d.active = false;
            }
        }
        for &between in &delims[o + 1..c] {
            if let Some(d) = delim_mut(nodes, between) {
                d.active = false;
            }
        }
        if let Some(d) = delim_mut(nodes, delims[c]) {
            d.count -= used;
            d.closes.push(kind);
            if d.count == 0 {
                d.active = false;
                c += 1;
            }
        }
    }
}

fn delim(nodes: &[Node], i: usize) -> Option<&Delim> {
    match nodes.get(i) {
        Some(Node::Delim(d)) => Some(d),
        _ => None,
    }
}

fn delim_mut(nodes: &mut [Node], i: usize) -> Option<&mut Delim> {
    match nodes.get_mut(i) {
        Some(Node::Delim(d)) => Some(d),
        _ => None,
    }
}

/// Writes the nodes out. Emphasis nested in emphasis of the same kind is flattened, since
/// mrkdwn cannot nest `*…*` in `*…*`.
fn emit(nodes: &[Node], style: Style) -> String {
    let shown = |k: Kind| match style.marks {
        Marks::All => true,
        Marks::NoStrong => k != Kind::Strong,
        Marks::None => false,
    };
    let mut depth = [0usize; 3];
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Delim(d) => {
                for &k in &d.closes {
                    depth[k.index()] = depth[k.index()].saturating_sub(1);
                    if depth[k.index()] == 0 && shown(k) {
                        out.push(k.marker());
                    }
                }
                out.extend(std::iter::repeat_n(d.ch, d.count));
                for &k in &d.opens {
                    if depth[k.index()] == 0 && shown(k) {
                        out.push(k.marker());
                    }
                    depth[k.index()] += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// mrkdwn has only backtick fences, and any line starting with three toggles.
    fn balanced(s: &str) -> bool {
        s.lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count()
            .is_multiple_of(2)
    }

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
    fn bold_italic_and_strike() {
        assert_eq!(to_mrkdwn("**bold** and __bold__"), "*bold* and *bold*");
        assert_eq!(to_mrkdwn("*it* and _it_"), "_it_ and _it_");
        assert_eq!(to_mrkdwn("~~gone~~ and ~gone~"), "~gone~ and ~gone~");
        assert_eq!(to_mrkdwn("(**x**), \"*y*\"."), "(*x*), \"_y_\".");
    }

    #[test]
    fn links_images_and_autolinks() {
        assert_eq!(
            to_mrkdwn("see [the docs](https://example.com/a)"),
            "see <https://example.com/a|the docs>"
        );
        assert_eq!(
            to_mrkdwn("![a chart](https://example.com/c.png)"),
            "<https://example.com/c.png|a chart>"
        );
        assert_eq!(
            to_mrkdwn("![](https://example.com/c.png)"),
            "<https://example.com/c.png>"
        );
        assert_eq!(
            to_mrkdwn("go to <https://example.com/x>"),
            "go to <https://example.com/x>"
        );
        assert_eq!(
            to_mrkdwn("<ops@example.com>"),
            "<mailto:ops@example.com|ops@example.com>"
        );
        assert_eq!(
            to_mrkdwn("[t](https://e.com/a \"title\")"),
            "<https://e.com/a|t>"
        );
        assert_eq!(to_mrkdwn("[w](www.e.com)"), "<http://www.e.com|w>");
    }

    #[test]
    fn link_syntax_is_not_escaped_but_its_parts_are() {
        assert_eq!(
            to_mrkdwn("[a <b> & c](https://e.com/?x=1&y=2|3)"),
            "<https://e.com/?x=1&amp;y=2%7C3|a &lt;b&gt; &amp; c>"
        );
        assert_eq!(
            to_mrkdwn("[**bold** `code`](https://e.com)"),
            "<https://e.com|bold code>"
        );
    }

    #[test]
    fn relative_links_keep_only_their_text() {
        assert_eq!(to_mrkdwn("see [setup](#setup)"), "see setup");
    }

    #[test]
    fn links_with_underscores_in_the_url() {
        assert_eq!(
            to_mrkdwn("[docs](https://e.com/a_b_c/_x_)"),
            "<https://e.com/a_b_c/_x_|docs>"
        );
        assert_eq!(
            to_mrkdwn("see https://e.com/_a_/b_c_ and _this_"),
            "see https://e.com/_a_/b_c_ and _this_"
        );
        assert_eq!(to_mrkdwn("**https://e.com/x_y**."), "*https://e.com/x_y*.");
    }

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
    fn inline_code_is_kept_but_escaped() {
        assert_eq!(
            to_mrkdwn("`a*b*c` and `Vec<T>` and `_x_`"),
            "`a*b*c` and `Vec&lt;T&gt;` and `_x_`"
        );
        assert_eq!(to_mrkdwn("`` a`b ``"), "`a`b`");
        assert_eq!(to_mrkdwn("a ` lone"), "a ` lone");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            to_mrkdwn("if a < b && c > d"),
            "if a &lt; b &amp;&amp; c &gt; d"
        );
        assert_eq!(
            to_mrkdwn("<@U123> <!channel>"),
            "&lt;@U123&gt; &lt;!channel&gt;"
        );
        assert_eq!(escape_mrkdwn("<&>"), "&lt;&amp;&gt;");
    }

    #[test]
    fn intraword_markers_stay_literal() {
        assert_eq!(to_mrkdwn("snake_case_name"), "snake_case_name");
        assert_eq!(to_mrkdwn("2*3*4 = 24"), "2*3*4 = 24");
        assert_eq!(to_mrkdwn("a * b * c"), "a * b * c");
        assert_eq!(to_mrkdwn("call __init__ now"), "call *init* now");
        assert_eq!(
            to_mrkdwn("file_name.rs and my_var"),
            "file_name.rs and my_var"
        );
    }

    #[test]
    fn nested_emphasis() {
        assert_eq!(to_mrkdwn("**bold _it_ bold**"), "*bold _it_ bold*");
        assert_eq!(to_mrkdwn("***both***"), "_*both*_");
        assert_eq!(to_mrkdwn("**a **b** c**"), "*a b c*");
        assert_eq!(to_mrkdwn("*a **b** c*"), "_a *b* c_");
        assert_eq!(to_mrkdwn("~~**x**~~"), "~*x*~");
    }

    #[test]
    fn unbalanced_markers_stay_literal() {
        assert_eq!(to_mrkdwn("**bold"), "**bold");
        assert_eq!(to_mrkdwn("**a* b"), "*_a_ b");
        assert_eq!(to_mrkdwn("a ** b"), "a ** b");
        assert_eq!(to_mrkdwn("a ~~~ b ~~~"), "a ~~~ b ~~~");
    }

    #[test]
    fn backslash_escapes() {
        assert_eq!(to_mrkdwn("\\# not a heading"), "# not a heading");
        assert_eq!(to_mrkdwn("C:\\Users\\me\\n"), "C:\\Users\\me\\n");
        assert_eq!(to_mrkdwn("a \\< b"), "a &lt; b");
    }

    #[test]
    fn line_endings_are_kept() {
        assert_eq!(to_mrkdwn("**a**\r\nb\r\n"), "*a*\r\nb\r\n");
    }

    #[test]
    fn limits() {
        assert_eq!(MESSAGE_TEXT_MAX, 40_000);
        assert_eq!(MARKDOWN_BLOCK_MAX, 12_000);
        assert_eq!(SECTION_TEXT_MAX, 3_000);
        assert_eq!(APPEND_STREAM_MAX, 12_000);
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

    /// Markdown-flavoured input: syntax tokens, words, multi-byte text, and fence lines (kept
    /// short, see the limitation noted on `push_within`).
    fn markdownish() -> impl Strategy<Value = String> {
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
