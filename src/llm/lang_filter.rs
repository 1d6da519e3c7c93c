//! The streaming language filter: removes characters of unwanted scripts (by default the CJK
//! scripts, CJK punctuation and fullwidth forms) from the answer as it streams. It works per
//! character, so it holds nothing back and cannot split a character at a chunk boundary
//! (chunks arrive as complete UTF-8 strings).

pub use crate::settings::{is_cjk_language, Script};

impl Script {
    /// Whether `c` belongs to this script.
    // Inlined into the filter's per-character loop: since `Script` moved to `settings`, this
    // impl can land in another codegen unit than the loop, and the call cut the filter's
    // throughput on text with 10% CJK by 40% (`cargo bench --bench pipeline`).
    #[inline]
    pub fn contains(self, c: char) -> bool {
        let u = c as u32;
        match self {
            Script::Han => matches!(u,
                0x2E80..=0x2FDF      // radicals supplement, Kangxi radicals
                | 0x31C0..=0x31EF    // CJK strokes
                | 0x3400..=0x4DBF    // extension A
                | 0x4E00..=0x9FFF    // unified ideographs
                | 0xF900..=0xFAFF    // compatibility ideographs
                | 0x20000..=0x2FA1F  // extensions B–F, compatibility supplement
                | 0x30000..=0x323AF  // extensions G–H
            ),
            Script::Hiragana => matches!(u, 0x3040..=0x309F | 0x1B100..=0x1B12F),
            Script::Katakana => {
                matches!(u, 0x30A0..=0x30FF | 0x31F0..=0x31FF | 0xFF65..=0xFF9F | 0x1B000..=0x1B0FF)
            }
            Script::Hangul => matches!(u,
                0x1100..=0x11FF | 0x3130..=0x318F | 0xA960..=0xA97F | 0xAC00..=0xD7AF | 0xD7B0..=0xD7FF | 0xFFA0..=0xFFDC
            ),
            Script::CjkPunctuation => matches!(u, 0x3000..=0x303F),
            Script::Fullwidth => matches!(u, 0xFF00..=0xFFEF),
        }
    }
}

/// Removes characters of the configured scripts and counts them.
#[derive(Debug, Clone, Default)]
pub struct ScriptFilter {
    /// Scripts removed; empty means the filter is off.
    scripts: Vec<Script>,
    /// Characters removed so far.
    removed: usize,
}

impl ScriptFilter {
    /// A filter removing `scripts` (an empty list turns it off).
    pub fn new(scripts: &[Script]) -> Self {
        Self {
            scripts: scripts.to_vec(),
            removed: 0,
        }
    }

    /// A filter that removes nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// Whether the filter removes anything.
    pub fn is_active(&self) -> bool {
        !self.scripts.is_empty()
    }

    /// Filters one chunk. Returns the chunk unchanged (no allocation) when nothing matches.
    pub fn push<'a>(&mut self, chunk: &'a str) -> std::borrow::Cow<'a, str> {
        if self.scripts.is_empty() || chunk.is_ascii() {
            return std::borrow::Cow::Borrowed(chunk);
        }
        // Nothing below U+1100 (Hangul Jamo, the lowest range) is ever removed.
        let unwanted = |c: char| c >= '\u{1100}' && self.scripts.iter().any(|s| s.contains(c));
        let Some((first, _)) = chunk.char_indices().find(|&(_, c)| unwanted(c)) else {
            return std::borrow::Cow::Borrowed(chunk);
        };
        let mut out = String::with_capacity(chunk.len());
        out.push_str(&chunk[..first]);
        let mut removed = 0;
        for c in chunk[first..].chars() {
            if unwanted(c) {
                removed += 1;
            } else {
                out.push(c);
            }
        }
        self.removed += removed;
        std::borrow::Cow::Owned(out)
    }

    /// Characters removed so far.
    pub fn removed(&self) -> usize {
        self.removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_cjk_script_and_keeps_everything_else() {
        let mut f = ScriptFilter::new(Script::CJK);
        let text = "Hello 你好, こんにちは カタカナ 안녕하세요「引用」。ｶﾀ！Ａ café — naïve ∑ 🙂 Ωμέγα Привет";
        let out = f.push(text);
        assert_eq!(out, "Hello ,    café — naïve ∑ 🙂 Ωμέγα Привет");
        assert_eq!(f.removed(), text.chars().count() - out.chars().count());
    }

    #[test]
    fn chunk_boundaries_never_corrupt_text() {
        let text = "A中b文c。d\u{3000}e한f";
        // Split at every char boundary: the concatenated output equals the whole-text output.
        let whole = ScriptFilter::new(Script::CJK).push(text).into_owned();
        for (i, _) in text.char_indices() {
            let mut f = ScriptFilter::new(Script::CJK);
            let out = format!("{}{}", f.push(&text[..i]), f.push(&text[i..]));
            assert_eq!(out, whole);
            assert_eq!(f.removed(), 5);
        }
        assert_eq!(whole, "Abcdef");
    }

    #[test]
    fn off_and_ascii_fast_paths_borrow() {
        let mut f = ScriptFilter::off();
        assert!(matches!(f.push("中文"), std::borrow::Cow::Borrowed(_)));
        let mut f = ScriptFilter::new(Script::CJK);
        assert!(matches!(
            f.push("plain ascii"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(matches!(f.push("naïve"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn a_subset_of_scripts_can_be_chosen() {
        let mut f = ScriptFilter::new(&[Script::Hangul]);
        assert_eq!(f.push("中文 한국어"), "中文 ");
    }

    #[test]
    fn cjk_languages_are_recognised() {
        for l in ["Chinese", "japanese", "Korean", "zh-CN", "中文"] {
            assert!(is_cjk_language(l), "{l}");
        }
        for l in ["English", "German", "français"] {
            assert!(!is_cjk_language(l), "{l}");
        }
    }
}
