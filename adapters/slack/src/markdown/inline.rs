//! The inline engine: one line of Markdown (emphasis, code spans, links, autolinks, bare URLs,
//! backslash escapes) as mrkdwn, with CommonMark's delimiter rules for emphasis made stricter
//! inside words, and `&`, `<`, `>` escaped outside Slack's link syntax.

use super::block::neutralize_backticks;

/// Characters a backslash escapes. Only Markdown syntax characters, so that plain text with
/// backslashes (Windows paths, `\n` in prose) comes out unchanged.
const ESCAPABLE: &str = "*_~`[]<>&#|-";

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
pub(super) struct Style {
    marks: Marks,
    escape: bool,
    links: Links,
}

pub(super) const TEXT: Style = Style {
    marks: Marks::All,
    escape: true,
    links: Links::Slack,
};

pub(super) const HEADING: Style = Style {
    marks: Marks::NoStrong,
    ..TEXT
};

const LABEL: Style = Style {
    marks: Marks::None,
    escape: true,
    links: Links::Label,
};

pub(super) const CELL: Style = Style {
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

pub(super) fn push_escaped(out: &mut String, c: char) {
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
pub(super) fn render_inline(s: &str, style: Style) -> String {
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
    use crate::markdown::{escape_mrkdwn, to_mrkdwn};

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
}
