//! Text analysis, shared by chunks and queries: tokens lowercased and width-folded, stop words
//! dropped, English words stemmed, dotted runs kept whole and in parts, CJK as bigrams.

use std::borrow::Cow;
use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// Tokens longer than this many characters are dropped (base64, hex dumps, URLs run
/// together); real words and identifiers are far shorter.
pub const MAX_TOKEN_CHARS: usize = 40;

/// English stop words, sorted (byte order) for binary search. Kept short: only words that
/// carry no topic. The contraction tails (`s`, `t`, `ll`, …) are what "it's", "don't" and
/// "we'll" leave once split at the apostrophe.
pub(super) const STOP_WORDS: [&str; 90] = [
    "a", "about", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being",
    "both", "but", "by", "could", "d", "did", "do", "does", "doing", "each", "for", "from", "had",
    "has", "have", "having", "he", "her", "here", "him", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "just", "ll", "m", "me", "my", "of", "on", "only", "or", "our", "re", "s",
    "she", "should", "so", "some", "such", "t", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "ve", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours",
];

/// Whether a lowercased word is a stop word.
pub(super) fn is_stop(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// The Snowball English stemmer (stateless; created once).
pub(super) fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// What a raw token is, which decides what the analyser does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Letters only: stop-word check, then stemming.
    Word,
    /// Has a digit, or is a dotted run: kept as is.
    Literal,
    /// A CJK bigram or lone character: kept as is.
    Cjk,
}

/// Whether `c` belongs to a script written without spaces between words (Han, Hiragana,
/// Katakana) or one that is usually bigrammed with them (Hangul).
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'     // Hangul Jamo
        | '\u{3005}'..='\u{3007}'   // 々 〆 〇
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3130}'..='\u{318F}'   // Hangul compatibility Jamo
        | '\u{31F0}'..='\u{31FF}'   // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'   // Han extension A
        | '\u{4E00}'..='\u{9FFF}'   // Han
        | '\u{A960}'..='\u{A97F}'   // Hangul Jamo extended A
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // Han compatibility
        | '\u{FF66}'..='\u{FF9F}'   // half-width Katakana
        | '\u{20000}'..='\u{3134F}' // Han extensions B–H
    )
}

/// Folds full-width ASCII (Ｆｕｌｌ, ４．２), common in CJK documents, to ASCII.
pub(super) fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// Splits `text` into raw lowercased tokens and hands each to `emit` with its kind.
pub(super) fn tokenize(text: &str, emit: &mut impl FnMut(&str, Kind)) {
    let mut scan = Scan {
        text,
        buf: String::new(),
        seg_start: 0,
        seg_chars: 0,
        seg_digit: false,
        comp_start: 0,
        comp_end: 0,
        comp_chars: 0,
        comp_parts: 0,
        dot: false,
        cjk_prev: 0,
        cjk_run: 0,
    };
    for (i, raw) in text.char_indices() {
        scan.feed(i, raw, emit);
    }
    scan.finish(emit);
}

/// The tokenizer's state. Words and dotted runs are contiguous in the text, so only their
/// byte ranges are tracked and a token is lowercased once, when it ends.
pub(super) struct Scan<'t> {
    pub(super) text: &'t str,
    /// The lowercased token being emitted.
    pub(super) buf: String,
    /// Start byte, length in characters and "has a digit" of the word being read.
    pub(super) seg_start: usize,
    pub(super) seg_chars: usize,
    pub(super) seg_digit: bool,
    /// Byte range, length in characters and number of words of the dotted run being read.
    pub(super) comp_start: usize,
    pub(super) comp_end: usize,
    pub(super) comp_chars: usize,
    pub(super) comp_parts: usize,
    /// The last word ended at a '.': the dotted run goes on if a word starts right here.
    pub(super) dot: bool,
    /// Start byte of the previous CJK character, and the length of the current CJK run.
    pub(super) cjk_prev: usize,
    pub(super) cjk_run: usize,
}

impl Scan<'_> {
    /// Takes the character `raw` at byte `i`.
    pub(super) fn feed(&mut self, i: usize, raw: char, emit: &mut impl FnMut(&str, Kind)) {
        let c = fold_width(raw);
        if is_cjk(c) {
            self.end_word(i, emit);
            self.end_dotted(emit);
            self.dot = false;
            if self.cjk_run > 0 {
                emit(&self.text[self.cjk_prev..i + raw.len_utf8()], Kind::Cjk);
            }
            self.cjk_prev = i;
            self.cjk_run += 1;
            return;
        }
        self.end_cjk(i, emit);
        if c.is_alphanumeric() {
            if self.seg_chars == 0 {
                if self.dot {
                    self.comp_chars += 1;
                    self.comp_parts += 1;
                } else {
                    self.end_dotted(emit);
                    self.comp_start = i;
                    self.comp_chars = 0;
                    self.comp_parts = 1;
                }
                self.dot = false;
                self.seg_start = i;
            }
            self.seg_chars += 1;
            self.comp_chars += 1;
            self.seg_digit |= c.is_numeric();
        } else {
            let in_word = self.seg_chars > 0;
            self.end_word(i, emit);
            if c == '.' && in_word {
                self.dot = true;
            } else {
                self.end_dotted(emit);
                self.dot = false;
            }
        }
    }

    /// Ends whatever is open at the end of the text.
    pub(super) fn finish(&mut self, emit: &mut impl FnMut(&str, Kind)) {
        let end = self.text.len();
        self.end_cjk(end, emit);
        self.end_word(end, emit);
        self.end_dotted(emit);
    }

    /// Ends the word being read (if any) at byte `end`.
    pub(super) fn end_word(&mut self, end: usize, emit: &mut impl FnMut(&str, Kind)) {
        if self.seg_chars == 0 {
            return;
        }
        if self.seg_chars <= MAX_TOKEN_CHARS {
            lower(&self.text[self.seg_start..end], &mut self.buf);
            let kind = if self.seg_digit {
                Kind::Literal
            } else {
                Kind::Word
            };
            emit(&self.buf, kind);
        }
        self.comp_end = end;
        self.seg_chars = 0;
        self.seg_digit = false;
    }

    /// Ends the dotted run being read; emits it whole if it had two words or more.
    pub(super) fn end_dotted(&mut self, emit: &mut impl FnMut(&str, Kind)) {
        if self.comp_parts >= 2 && self.comp_chars <= MAX_TOKEN_CHARS {
            lower(&self.text[self.comp_start..self.comp_end], &mut self.buf);
            emit(&self.buf, Kind::Literal);
        }
        self.comp_parts = 0;
        self.comp_chars = 0;
    }

    /// Ends the CJK run being read at byte `end`: a lone character is a token of its own.
    pub(super) fn end_cjk(&mut self, end: usize, emit: &mut impl FnMut(&str, Kind)) {
        if self.cjk_run == 1 {
            emit(&self.text[self.cjk_prev..end], Kind::Cjk);
        }
        self.cjk_run = 0;
    }
}

/// Lowercases `s` into `buf`, folding full-width ASCII.
pub(super) fn lower(s: &str, buf: &mut String) {
    buf.clear();
    if s.is_ascii() {
        buf.push_str(s);
        buf.make_ascii_lowercase();
    } else {
        for c in s.chars() {
            buf.extend(fold_width(c).to_lowercase());
        }
    }
}

/// The indexed term for a raw token, or `None` for a stop word.
pub(super) fn term(raw: &str, kind: Kind) -> Option<Cow<'_, str>> {
    if kind != Kind::Word {
        return Some(Cow::Borrowed(raw));
    }
    if is_stop(raw) {
        return None;
    }
    // Snowball English is for English: words with other letters stay as they are.
    if raw.len() > 2 && raw.bytes().all(|b| b.is_ascii_lowercase()) {
        let stem = stemmer().stem(raw);
        if !stem.is_empty() {
            return Some(stem);
        }
    }
    Some(Cow::Borrowed(raw))
}

/// Analyses `text` the way chunks and queries are indexed, appending its terms to `out` in
/// text order (repeats kept): lowercased, stop words dropped, English words stemmed, dotted
/// runs kept whole as well as in parts, CJK as character bigrams, over-long tokens dropped.
pub fn analyse(text: &str, out: &mut Vec<String>) {
    tokenize(text, &mut |raw, kind| {
        if let Some(t) = term(raw, kind) {
            out.push(t.into_owned());
        }
    });
}
