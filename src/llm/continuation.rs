//! Merging an instruction-style continuation round into the answer it continues.
//!
//! A server that cannot resume an assistant message gets the partial answer plus a user
//! message asking to continue ([`CONTINUE_PROMPT`]). Small models then go on where the answer
//! stopped (maybe repeating its last words), start the whole answer over, start over from one
//! of its sentences, put a preamble first ("Sure! Here is the complete answer:"), or echo the
//! instruction. [`Merge`] turns such a round into the text to append, so that no sentence of
//! the answer appears twice and no echo of the instruction gets through. It is pure: the turn
//! feeds it the round's answer text and appends what it returns.
//!
//! A round passes three stages:
//! 1. **Chatter**: leading units (clauses ending in `:`, short sentences) that echo the
//!    instruction or announce the answer are dropped. A generic opener ("Sure!", "Here are
//!    the steps:") is dropped only when a restart or an announcement follows it.
//! 2. **Overlap**: the longest end of the answer the round starts with is skipped: a few words
//!    repeated at the seam, a sentence restarted, or the whole answer from the start. Text is
//!    held while it still repeats the answer, so a restart shows nothing until it gets past
//!    the cut.
//! 3. **Body**: sentences (Unicode sentence boundaries) that repeat one already in the answer
//!    are dropped, and echoes of the instruction are cut out. A sentence is held only while it
//!    could still turn out a repeat or an echo; new text streams on.
//!
//! Comparisons ignore case and whitespace runs; the answer's own text (the first round's and
//! earlier rounds') is never altered.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use unicode_segmentation::UnicodeSegmentation;

use crate::llm::turn::CONTINUE_PROMPT;

/// Shortest overlap (in normalised characters) that counts as a repeat when it starts
/// mid-sentence: shorter ones ("a ") are as likely a coincidence.
pub const MIN_OVERLAP: usize = 8;
/// A leading unit longer than this (bytes) with no end in sight is content, not chatter.
const MAX_CHATTER_UNIT: usize = 300;
/// A chatter unit has at most this many words.
const MAX_CHATTER_WORDS: usize = 14;
/// Alphanumeric characters a sentence needs before a repeat of it is dropped (a table rule or
/// a bare list marker may repeat legitimately).
const MIN_SENTENCE_CHARS: usize = 3;

/// Instruction words rare enough in answers that two of them in an instruction-shaped run of
/// words mark an echo.
const RARE_WORDS: &[&str] = &[
    "previous", "reply", "length", "limit", "continue", "exactly", "stopped", "repeat", "anything",
    "already", "written", "preamble",
];

/// Phrases (lower case) that announce a continuation or a complete answer: a unit with one of
/// them at the head of a round is chatter.
const ANNOUNCEMENTS: &[&str] = &[
    "continuing from",
    "continuing where",
    "continuing the answer",
    "continuing the response",
    "left off",
    "where it stopped",
    "where i stopped",
    "previous",
    "resum",
    "complete answer",
    "completed answer",
    "complete response",
    "completed response",
    "complete reply",
    "full answer",
    "full response",
    "rest of the",
    "remaining part",
    "remainder",
    "vollständige antwort",
    "完整",
];

/// Words (lower case) of going on: in a clause ending with a colon at the head of a round
/// ("Continuing:", "Sure, continuing:"), an announcement.
const GOING_ON: &[&str] = &["continu", "fortsetz", "weiter", "继续", "続き"];

/// Openers (lower case) of a generic preamble: chatter when a restart or an announcement
/// follows, content otherwise.
const OPENERS: &[&str] = &[
    "sure",
    "certainly",
    "of course",
    "okay",
    "ok",
    "alright",
    "all right",
    "absolutely",
    "no problem",
    "got it",
    "understood",
    "here is",
    "here's",
    "here are",
    "below is",
    "gerne",
    "klar",
    "natürlich",
    "hier ist",
    "hier sind",
    "好的",
    "当然",
    "以下",
    "continuing",
    "to continue",
];

/// Where a round is.
#[derive(Debug)]
enum Stage {
    /// Reading leading units; `pos` is the first byte not yet classified.
    Chatter,
    /// Looking for the answer's end at the start of the content.
    Overlap(Matcher),
    /// Sentence by sentence.
    Body,
}

/// The merge of one continuation round into the answer so far.
#[derive(Debug)]
pub struct Merge {
    /// The answer so far, normalised, with its sentence starts.
    prev: Normalised,
    /// Sentence starts in `prev` (indices into its characters).
    prev_starts: Vec<bool>,
    /// Keys of the complete sentences of the answer so far, and of those this round added.
    seen: BTreeSet<String>,
    /// The answer's last, unfinished sentence (empty when it ended a sentence).
    open_tail: String,
    /// The answer ends with whitespace (the round's leading whitespace is dropped).
    prev_ends_ws: bool,
    /// The answer ends a sentence with no whitespace after it (`"…here."`).
    prev_ends_tight: bool,
    /// The answer ends with a letter or digit of a script that spaces its words.
    prev_ends_word: bool,
    stage: Stage,
    /// Round text not yet emitted or dropped: in the body, from the current sentence's start.
    buf: String,
    /// Chatter stage: first byte of `buf` not yet classified.
    pos: usize,
    /// Start of generic openers not yet confirmed as chatter.
    tentative: Option<usize>,
    /// Body: bytes of the current sentence already emitted.
    released: usize,
    /// Body: the next sentence emitted completes the answer's open sentence.
    seam_open: bool,
    /// Chatter or a repeated sentence was dropped: what follows starts afresh rather than
    /// going on from the answer's last character.
    indirect: bool,
    /// Anything emitted yet.
    emitted: bool,
    /// Inside a fenced code block (where lines repeat legitimately: no sentence is dropped).
    in_code: bool,
    /// Body: an announcement held until a sentence after it is kept (else it is dropped).
    announcement: Option<String>,
}

impl Merge {
    /// A merge of a round continuing `answer` (the whole answer so far).
    pub fn new(answer: &str) -> Self {
        let trimmed = answer.trim();
        let prev = Normalised::of(trimmed);
        let mut prev_starts = vec![false; prev.lower.len()];
        let mut seen = BTreeSet::new();
        let segments: Vec<(usize, &str)> = trimmed.split_sentence_bound_indices().collect();
        let closed = ends_sentence(answer);
        let mut open_tail = String::new();
        mark_line_starts(trimmed, &prev, &mut prev_starts);
        let mut in_code = false;
        for (i, (at, seg)) in segments.iter().enumerate() {
            let lead = seg.len() - seg.trim_start().len();
            if let Some(k) = prev.index_at(at + lead) {
                prev_starts[k] = true;
            }
            let code = in_code || has_fence(seg);
            in_code ^= toggles_code(seg);
            let last = i + 1 == segments.len();
            if last && !closed {
                open_tail = seg.trim_start().to_string();
            } else if !code {
                insert_sentence(&mut seen, seg);
            }
        }
        let tight = !answer.ends_with(char::is_whitespace)
            && answer
                .trim_end_matches(is_closer)
                .ends_with(['.', '!', '?', ':']);
        Self {
            in_code,
            seam_open: !key(&open_tail).is_empty(),
            prev,
            prev_starts,
            seen,
            open_tail,
            prev_ends_ws: answer.ends_with(char::is_whitespace),
            prev_ends_tight: tight,
            prev_ends_word: answer
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() && !is_wide_char(c)),
            stage: Stage::Chatter,
            buf: String::new(),
            pos: 0,
            tentative: None,
            released: 0,
            indirect: false,
            emitted: false,
            announcement: None,
        }
    }

    /// Takes the next piece of the round's answer text; returns the text to append now.
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        self.advance(false)
    }

    /// The round ended: returns the rest to append.
    pub fn finish(mut self) -> String {
        let mut out = self.advance(true);
        // An announcement that ends the round leads into nothing: dropped if it opens a
        // list or an answer ("…complete answer:"), kept if it is a sentence of its own.
        if let Some(a) = self.announcement.take() {
            if !a.trim_end().ends_with([':', '：']) {
                self.emit(&a, &mut out);
            }
        }
        out
    }

    /// The round's text not yet emitted (when the round turns out to be reasoning).
    pub fn into_held(self) -> String {
        match self.stage {
            Stage::Body => self.buf[self.released..].to_string(),
            _ => self.buf,
        }
    }

    fn advance(&mut self, finishing: bool) -> String {
        let mut out = String::new();
        loop {
            match &mut self.stage {
                Stage::Chatter => match self.chatter(finishing) {
                    Some(content) => {
                        let keep_from = self.tentative.unwrap_or(content);
                        self.stage = Stage::Overlap(Matcher::new(
                            &self.prev,
                            &self.prev_starts,
                            content,
                            keep_from,
                        ));
                    }
                    None => return out,
                },
                Stage::Overlap(m) => {
                    m.feed(&self.buf);
                    if !m.resolved() && !finishing {
                        return out;
                    }
                    let from = m.cut();
                    if m.best.is_some() {
                        // The new text follows the repeated text as the model wrote it.
                        self.indirect = false;
                    }
                    self.buf.drain(..from);
                    self.tentative = None;
                    self.stage = Stage::Body;
                }
                Stage::Body => {
                    self.body(finishing, &mut out);
                    return out;
                }
            }
        }
    }

    /// Classifies leading units; returns the content's first byte once it is known.
    fn chatter(&mut self, finishing: bool) -> Option<usize> {
        loop {
            let rest = &self.buf[self.pos..];
            let lead = rest.len() - rest.trim_start().len();
            let start = self.pos + lead;
            if start == self.buf.len() {
                return finishing.then_some(start);
            }
            let unit_end = match unit_end(&self.buf, start, finishing) {
                Some(end) => end,
                None if self.buf.len() - start > MAX_CHATTER_UNIT => return Some(start),
                None => return None,
            };
            let unit = &self.buf[start..unit_end];
            let echoes = echo_spans(unit, finishing && unit_end == self.buf.len());
            if let Some(&(_, end)) = echoes.last() {
                // An echo, and whatever led up to it in its unit, is chatter; what follows
                // it in the unit (a word the answer was cut in) is content.
                self.tentative = None;
                self.indirect = true;
                let after = start + end;
                let rest = &self.buf[after..unit_end];
                if rest.trim().is_empty() {
                    self.pos = unit_end;
                    continue;
                }
                return Some(after + rest.len() - rest.trim_start().len());
            }
            match classify(unit) {
                Chatter::Announcement => {
                    self.tentative = None;
                    self.indirect = true;
                    self.pos = unit_end;
                }
                Chatter::Opener => {
                    self.tentative.get_or_insert(self.pos);
                    self.pos = unit_end;
                }
                // The whitespace after dropped chatter was the chatter's; before the first
                // unit it is the seam's.
                Chatter::Content if self.indirect => return Some(start),
                Chatter::Content => return Some(self.pos),
            }
        }
    }

    fn body(&mut self, finishing: bool, out: &mut String) {
        if !self.emitted && self.prev_ends_ws {
            // The seam already has its space (a line break the round starts with is kept).
            let lead = self.buf.len() - self.buf.trim_start_matches([' ', '\t']).len();
            self.buf.drain(..lead);
        }
        loop {
            // A boundary inside text already emitted (more text can change one) is ignored.
            let released = self.released;
            let mut bounds = self
                .buf
                .split_sentence_bound_indices()
                .map(|(at, _)| at)
                .filter(|&at| at > 0 && at >= released);
            let end = match bounds.next() {
                Some(end) => end,
                None if finishing && !self.buf.is_empty() => self.buf.len(),
                None => {
                    self.release_partial(out);
                    return;
                }
            };
            let sentence: String = self.buf.drain(..end).collect();
            let released = std::mem::take(&mut self.released);
            self.complete(&sentence, released, out);
        }
    }

    /// A complete sentence of the round, of which `released` bytes were already emitted.
    fn complete(&mut self, sentence: &str, released: usize, out: &mut String) {
        let seam = self.seam_open;
        if self.in_code || has_fence(sentence) {
            self.in_code ^= toggles_code(sentence);
            self.seam_open = false;
            let kept = without_spans(sentence, released, &echo_spans(sentence, false));
            self.emit(&kept, out);
            return;
        }
        if released == 0 {
            if let Some(end) = lead_clause(sentence) {
                if classify(&sentence[..end]) == Chatter::Announcement {
                    // "Here is the complete answer: It is…": the lead-in goes with what
                    // follows it.
                    self.announcement = Some(sentence[..end].to_string());
                    return self.complete(&sentence[end..], 0, out);
                }
            }
        }
        let spans = echo_spans(sentence, false);
        let kept = without_spans(sentence, released, &spans);
        if !spans.is_empty() {
            // What is left beside an echo is its preamble, or nothing.
            let whole = format!("{}{kept}", &sentence[..released]);
            if !kept.chars().any(char::is_alphanumeric) || classify(&whole) != Chatter::Content {
                return;
            }
        }
        if released == 0 && classify(&kept) == Chatter::Announcement {
            // "Here is the complete answer:" mid-round: kept only if new text follows it.
            self.announcement = Some(kept);
            return;
        }
        let full = format!("{}{}", &sentence[..released], kept);
        let k = key(&full);
        // The sentence the answer was cut in, if this one completes it.
        let joined = seam.then(|| key(&format!("{}{full}", self.open_tail)));
        let repeat = |k: &String| repeatable(k) && self.seen.contains(k);
        if released == 0 && (repeat(&k) || joined.as_ref().is_some_and(repeat)) {
            self.indirect = true;
            self.announcement = None;
            return;
        }
        if let Some(joined) = joined {
            self.seen.insert(joined);
            self.seam_open = false;
        } else {
            insert_sentence(&mut self.seen, &full);
        }
        self.emit(&kept, out);
    }

    /// Emits the start of the current sentence once it can no longer turn out to be a repeat
    /// or an echo.
    fn release_partial(&mut self, out: &mut String) {
        let partial = &self.buf;
        if partial.len() == self.released || partial.trim().is_empty() {
            return;
        }
        if !echo_spans(partial, true).is_empty() || echo_tail(partial) {
            return;
        }
        if self.in_code && !partial.contains('`') {
            let text = partial[self.released..].to_string();
            self.released = partial.len();
            self.emit(&text, out);
            return;
        }
        // A clause before a colon may lead into an echo or a restart.
        if partial.trim_end().ends_with([':', '：']) || may_be_chatter(partial) {
            return;
        }
        let k = key(partial);
        let may_repeat = |k: &str| {
            self.seen
                .range(k.to_string()..)
                .next()
                .is_some_and(|s| s.starts_with(k))
        };
        let joined = self.seam_open && may_repeat(&key(&format!("{}{partial}", self.open_tail)));
        if k.is_empty() || may_repeat(&k) || joined {
            return;
        }
        let text = partial[self.released..].to_string();
        self.released = partial.len();
        self.emit(&text, out);
    }

    fn emit(&mut self, text: &str, out: &mut String) {
        if let Some(announcement) = self.announcement.take() {
            self.emit(&announcement, out);
        }
        if text.is_empty() {
            return;
        }
        let first = text.chars().next().unwrap_or(' ');
        let after_word = self.prev_ends_word && first.is_alphanumeric() && !is_wide_char(first);
        if !self.emitted
            && ((self.prev_ends_tight && first.is_uppercase()) || (self.indirect && after_word))
        {
            // "…here." + "Next…", or text after dropped chatter or repeats: it starts a new
            // sentence or word, which the model wrote without the space before it.
            out.push(' ');
        }
        self.emitted = true;
        out.push_str(text);
    }
}

/// Marks as sentence starts the characters that start a line or follow a clause's colon (a
/// list item, a heading's text): a restart may begin there too.
fn mark_line_starts(text: &str, prev: &Normalised, starts: &mut [bool]) {
    for k in 1..prev.lower.len() {
        let after_colon = k >= 2 && prev.lower[k - 1] == ' ' && prev.exact[k - 2] == ':';
        let line = prev.lower[k - 1] == ' ' && text[prev.at[k - 1]..prev.at[k]].contains('\n');
        if line || after_colon {
            starts[k] = true;
        }
    }
}

/// Text compared ignoring case and whitespace runs: one entry per kept character.
#[derive(Debug, Default)]
struct Normalised {
    /// Lower-cased characters (a whitespace run is one `' '`).
    lower: Vec<char>,
    /// The characters as written (for exact comparisons of short overlaps).
    exact: Vec<char>,
    /// Byte offset in the source of each character (of a whitespace run's first character).
    at: Vec<usize>,
}

impl Normalised {
    fn of(text: &str) -> Self {
        let mut n = Self::default();
        // Where the whitespace run before the next character started.
        let mut space = None;
        for (i, c) in text.char_indices() {
            if c.is_whitespace() {
                if !n.lower.is_empty() {
                    space.get_or_insert(i);
                }
                continue;
            }
            if let Some(at) = space.take() {
                n.push(' ', at);
            }
            n.push(c, i);
        }
        n
    }

    fn push(&mut self, c: char, at: usize) {
        self.lower.push(lower(c));
        self.exact.push(c);
        self.at.push(at);
    }

    /// The index of the character at byte `at`, if one starts there.
    fn index_at(&self, at: usize) -> Option<usize> {
        self.at.binary_search(&at).ok()
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// One place in the answer the round may have started repeating from.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    exact: bool,
}

/// Finds the longest end of the answer that the round's content starts with.
#[derive(Debug)]
struct Matcher {
    prev: Vec<char>,
    prev_exact: Vec<char>,
    starts: Vec<bool>,
    alive: Vec<Candidate>,
    /// Normalised characters of the content compared so far.
    matched: usize,
    /// Byte in the round's text where feeding resumes.
    fed: usize,
    /// A whitespace run was read and not yet compared.
    space: bool,
    /// The longest accepted overlap: the byte after it in the round's text.
    best: Option<usize>,
    /// Where the content (or the unconfirmed opener before it) starts, if no overlap is found.
    keep_from: usize,
}

impl Matcher {
    fn new(prev: &Normalised, starts: &[bool], content: usize, keep_from: usize) -> Self {
        let n = prev.lower.len();
        let alive = (0..n)
            .filter(|&s| s + MIN_OVERLAP <= n || starts[s])
            .map(|start| Candidate { start, exact: true })
            .collect();
        Self {
            prev: prev.lower.clone(),
            prev_exact: prev.exact.clone(),
            starts: starts.to_vec(),
            alive,
            matched: 0,
            fed: content,
            space: false,
            best: None,
            keep_from,
        }
    }

    fn feed(&mut self, text: &str) {
        for (i, c) in text[self.fed..].char_indices() {
            if self.alive.is_empty() {
                break;
            }
            let at = self.fed + i;
            if c.is_whitespace() {
                self.space = self.matched > 0;
                continue;
            }
            if std::mem::take(&mut self.space) {
                self.step(' ', ' ', at);
            }
            self.step(lower(c), c, at + c.len_utf8());
        }
        self.fed = text.len();
    }

    /// Compares the content's next character; `end` is the byte after it.
    fn step(&mut self, lc: char, c: char, end: usize) {
        let j = self.matched;
        let n = self.prev.len();
        let mut completed = None;
        self.alive.retain_mut(|cand| {
            let i = cand.start + j;
            if self.prev[i] != lc {
                return false;
            }
            cand.exact &= self.prev_exact[i] == c;
            if i + 1 == n {
                completed = Some(*cand);
                return false;
            }
            true
        });
        self.matched += 1;
        if let Some(cand) = completed {
            // A short overlap counts only as a sentence or line started over, word for word
            // (a closing brace at a line start repeats by coincidence).
            let short_ok = self.starts[cand.start]
                && cand.exact
                && self.prev[cand.start..].iter().any(|c| c.is_alphanumeric());
            if n - cand.start >= MIN_OVERLAP || short_ok {
                self.best = Some(end);
            }
        }
    }

    /// No longer overlap can still come.
    fn resolved(&self) -> bool {
        self.alive.is_empty()
    }

    /// Where the round's new text starts.
    fn cut(&self) -> usize {
        self.best.unwrap_or(self.keep_from)
    }
}

/// What a leading unit of a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chatter {
    /// Announces the (continued or complete) answer: dropped.
    Announcement,
    /// A generic opener: dropped only before a restart or an announcement.
    Opener,
    /// The answer itself.
    Content,
}

fn classify(unit: &str) -> Chatter {
    let u = unit.trim().to_lowercase();
    let words = words(&u).len();
    if u.is_empty() || words > MAX_CHATTER_WORDS {
        return Chatter::Content;
    }
    let ends_colon = u.trim_end_matches(is_closer).ends_with([':', '：']);
    let announces = ANNOUNCEMENTS.iter().any(|a| u.contains(a))
        || (ends_colon && GOING_ON.iter().any(|a| u.contains(a)));
    let opens = OPENERS.iter().any(|o| starts_with_phrase(&u, o));
    // A sentence like "The rest of the team agreed." is content: without a colon, only an
    // opener makes a unit chatter.
    match (ends_colon, opens, announces) {
        (true, _, true) | (false, true, true) if words <= 8 || ends_colon => Chatter::Announcement,
        (true, true, false) => Chatter::Opener,
        (false, true, false) if words <= 4 => Chatter::Opener,
        _ => Chatter::Content,
    }
}

/// The end of a clause ending with a colon that leads a sentence (with the space after it).
fn lead_clause(sentence: &str) -> Option<usize> {
    let (i, c) = sentence
        .char_indices()
        .find(|&(_, c)| c == ':' || c == '：')?;
    let after = i + c.len_utf8();
    let rest = &sentence[after..];
    let ws = rest.len() - rest.trim_start().len();
    (c == '：' || ws > 0).then_some(after + ws)
}

/// `partial`, the start of a sentence, may still turn out to be chatter.
fn may_be_chatter(partial: &str) -> bool {
    let u = partial.trim().to_lowercase();
    if words(&u).len() > MAX_CHATTER_WORDS {
        return false;
    }
    ANNOUNCEMENTS.iter().any(|a| u.contains(a))
        || GOING_ON.iter().any(|a| u.contains(a))
        || OPENERS
            .iter()
            .any(|o| o.starts_with(u.as_str()) || starts_with_phrase(&u, o))
}

/// `text` starts with the phrase `p` as whole words.
fn starts_with_phrase(text: &str, p: &str) -> bool {
    text.strip_prefix(p)
        .is_some_and(|rest| !rest.starts_with(char::is_alphanumeric) || is_wide_str(p))
}

/// The end of the unit starting at `start`: after a clause or sentence end followed by
/// whitespace (or right after a full-width one), or after a line break. `None` while unknown.
fn unit_end(text: &str, start: usize, finishing: bool) -> Option<usize> {
    let mut chars = text[start..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = start + i + c.len_utf8();
        if c == '\n' || matches!(c, '。' | '！' | '？' | '：') {
            return Some(at);
        }
        if matches!(c, '.' | '!' | '?' | ':' | '…') {
            match chars.peek() {
                Some((_, n)) if n.is_whitespace() => return Some(at),
                Some(_) => {}
                None => return finishing.then_some(at),
            }
        }
    }
    finishing.then_some(text.len())
}

/// The instruction's words, lower case.
fn instruction_words() -> &'static [String] {
    static WORDS: OnceLock<Vec<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        words(&CONTINUE_PROMPT.to_lowercase())
            .into_iter()
            .map(|(_, _, w)| w)
            .collect()
    })
}

/// Alphanumeric words with their byte spans, lower case.
fn words(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || (c == '\'' && cur.is_some()) {
            cur.get_or_insert_with(|| (i, String::new()))
                .1
                .extend(c.to_lowercase());
        } else if let Some((s, w)) = cur.take() {
            out.push((s, i, w));
        }
    }
    if let Some((s, w)) = cur {
        out.push((s, text.len(), w));
    }
    out
}

/// Length of the run of the instruction's words starting at word `p` of the instruction that
/// `ws[i..]` repeats. With `open_end`, the text's last word may be the start of one.
fn run_at(ws: &[(usize, usize, String)], i: usize, p: usize, open_end: bool) -> usize {
    let inst = instruction_words();
    let mut l = 0;
    while i + l < ws.len() && p + l < inst.len() {
        let w = &ws[i + l].2;
        let last = i + l + 1 == ws.len();
        if *w == inst[p + l] || (open_end && last && inst[p + l].starts_with(w.as_str())) {
            l += 1;
        } else {
            break;
        }
    }
    l
}

/// Byte spans of echoes of the instruction in `text`: runs of at least four of its words in
/// order with two rare ones among them, or of six; each with the punctuation after it.
fn echo_spans(text: &str, open_end: bool) -> Vec<(usize, usize)> {
    let inst = instruction_words();
    let ws = words(text);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        let (mut best, mut best_p) = (0, 0);
        for p in 0..inst.len() {
            let l = run_at(&ws, i, p, open_end);
            if l > best {
                (best, best_p) = (l, p);
            }
        }
        let rare = inst[best_p..best_p + best]
            .iter()
            .filter(|w| RARE_WORDS.contains(&w.as_str()))
            .count();
        if (best >= 4 && rare >= 2) || best >= 6 {
            let mut end = ws[i + best - 1].1;
            for c in text[end..].chars() {
                if c.is_alphanumeric() || c.is_whitespace() {
                    break;
                }
                end += c.len_utf8();
            }
            spans.push((ws[i].0, end));
            i += best;
        } else {
            i += 1;
        }
    }
    spans
}

/// The text ends with words that could be the start of an echo (hold it for the next word).
fn echo_tail(text: &str) -> bool {
    let ws = words(text);
    let open = text.ends_with(char::is_alphanumeric);
    (0..ws.len()).rev().take(6).any(|i| {
        (0..instruction_words().len()).any(|p| {
            let l = run_at(&ws, i, p, open);
            l > 0 && i + l == ws.len()
        })
    })
}

/// The comparison key of a sentence: its words, lower case, one space apart.
fn key(sentence: &str) -> String {
    words(sentence)
        .into_iter()
        .map(|(_, _, w)| w)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Long enough that a second copy is a repeat rather than a table rule or a list marker.
fn repeatable(key: &str) -> bool {
    key.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_SENTENCE_CHARS
}

fn insert_sentence(seen: &mut BTreeSet<String>, sentence: &str) {
    let k = key(sentence);
    if repeatable(&k) {
        seen.insert(k);
    }
}

/// `sentence` from byte `from` on, without the `spans`.
fn without_spans(sentence: &str, from: usize, spans: &[(usize, usize)]) -> String {
    let mut kept = String::new();
    let mut at = from;
    for &(s, e) in spans {
        if e <= at {
            continue;
        }
        kept.push_str(&sentence[at..s.max(at)]);
        at = e;
    }
    kept.push_str(&sentence[at..]);
    kept
}

/// `text` has a code fence.
fn has_fence(text: &str) -> bool {
    text.contains("```")
}

/// `text` opens or closes a fenced code block (an odd number of fences).
fn toggles_code(text: &str) -> bool {
    text.matches("```").count() % 2 == 1
}

/// `text` ends a sentence (or a line).
fn ends_sentence(text: &str) -> bool {
    if text.trim_end_matches([' ', '\t']).ends_with('\n') {
        return true;
    }
    text.trim_end()
        .trim_end_matches(is_closer)
        .ends_with(['.', '!', '?', '…', '。', '！', '？', ':', '：'])
}

/// Closing quotes, brackets and emphasis marks that may follow a sentence's end.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '*' | '_' | '`' | '”' | '’' | '」' | '』' | '）'
    )
}

/// A character of a script written without spaces between words or sentences.
fn is_wide_char(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF)
}

fn is_wide_str(s: &str) -> bool {
    s.chars().next().is_some_and(is_wide_char)
}

#[cfg(test)]
mod tests;
