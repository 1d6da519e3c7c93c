//! Runs of text that are data, not prose: a base64 blob, a `data:` URI in HTML or Markdown,
//! a hex dump with no spaces, minified code, a line of thousands of commas. Such a run carries
//! no meaning a question could find, yet it would be cut into thousands of chunks and embedded
//! for minutes; so it is skipped, and the ingest report says how much was.
//!
//! A run is what lies between two breaks, and a break is whitespace or a character of a
//! script written without spaces between words (Chinese, Japanese, Korean, Thai, Lao, Khmer,
//! Myanmar, Tibetan): a Chinese page has no spaces at all, but it is prose. Which script a
//! character is in comes from the Unicode data (`unicode-script`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use unicode_script::{Script, UnicodeScript};

/// The shortest run, in bytes, taken as data: 4 KB with no break. A word, a URL or a number
/// is far shorter; so is a paragraph of any language written with spaces.
pub const DATA_RUN: usize = 4096;

/// What was skipped as data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Bytes of text skipped.
    pub bytes: u64,
    /// Runs skipped.
    pub runs: u32,
}

impl Skipped {
    /// Whether anything was skipped.
    pub fn is_empty(&self) -> bool {
        self.runs == 0
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: Skipped) {
        self.bytes += other.bytes;
        self.runs += other.runs;
    }

    /// "skipped 8 MB of unbroken text (data, not prose)", for the ingest report.
    pub fn describe(&self) -> String {
        format!(
            "skipped {} of unbroken text ({}data, not prose)",
            size_text(self.bytes),
            match self.runs {
                1 => String::new(),
                n => format!("{n} runs, "),
            }
        )
    }
}

/// A size for people: "8 MB", "1.5 MB", "12 KB", "900 bytes".
pub fn size_text(bytes: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;
    if bytes >= MB {
        let mb = bytes as f64 / MB as f64;
        if mb >= 10.0 || (mb - mb.round()).abs() < 0.05 {
            format!("{} MB", mb.round() as u64)
        } else {
            format!("{mb:.1} MB")
        }
    } else if bytes >= KB {
        format!("{} KB", (bytes as f64 / KB as f64).round() as u64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether `c` ends a run: whitespace, or a letter of a script written without spaces.
fn is_break(c: char) -> bool {
    if c.is_whitespace() {
        return true;
    }
    if c.is_ascii() {
        return false;
    }
    matches!(
        c.script(),
        Script::Han
            | Script::Hiragana
            | Script::Katakana
            | Script::Hangul
            | Script::Bopomofo
            | Script::Thai
            | Script::Lao
            | Script::Khmer
            | Script::Myanmar
            | Script::Tibetan
    )
}

/// `text` without its data runs (each replaced by one space, so the words on either side stay
/// apart), and what was skipped. Borrowed when there was none (nearly always). Linear in the
/// text's length.
pub fn skip_data_runs(text: &str) -> (Cow<'_, str>, Skipped) {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_break(c) {
            if i - start >= DATA_RUN {
                runs.push((start, i));
            }
            start = i + c.len_utf8();
        }
    }
    if text.len() - start >= DATA_RUN {
        runs.push((start, text.len()));
    }
    if runs.is_empty() {
        return (Cow::Borrowed(text), Skipped::default());
    }
    let skipped = Skipped {
        bytes: runs.iter().map(|(a, b)| (b - a) as u64).sum(),
        runs: runs.len() as u32,
    };
    let mut out = String::with_capacity(text.len() - skipped.bytes as usize + runs.len());
    let mut at = 0;
    for (a, b) in runs {
        out.push_str(&text[at..a]);
        out.push(' ');
        at = b;
    }
    out.push_str(&text[at..]);
    (Cow::Owned(out), skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_untouched_and_borrowed() {
        let prose =
            "The tenant pays monthly. See https://example.com/a/b?c=d for the 2024 figures.\n"
                .repeat(200);
        let (out, skipped) = skip_data_runs(&prose);
        assert!(matches!(out, Cow::Borrowed(_)));
        assert!(skipped.is_empty());
    }

    #[test]
    fn a_base64_blob_between_paragraphs_is_skipped_and_counted() {
        let blob = "QUJDRA==".repeat(1000);
        let text = format!("Intro paragraph.\n\n{blob}\n\nClosing paragraph.");
        let (out, skipped) = skip_data_runs(&text);
        assert_eq!(out, "Intro paragraph.\n\n \n\nClosing paragraph.");
        assert_eq!(
            skipped,
            Skipped {
                bytes: blob.len() as u64,
                runs: 1
            }
        );
    }

    #[test]
    fn a_data_uri_in_markdown_goes_and_the_prose_around_it_stays() {
        let uri = format!(
            "![chart](data:image/png;base64,{})",
            "iVBORw0KGgo".repeat(500)
        );
        let text = format!("# Budget\n\nThe chart below shows spending. {uri} It rose in May.");
        let (out, skipped) = skip_data_runs(&text);
        assert_eq!(
            out,
            "# Budget\n\nThe chart below shows spending.   It rose in May."
        );
        assert_eq!(skipped.runs, 1);
        assert_eq!(skipped.bytes, uri.len() as u64);
    }

    #[test]
    fn a_run_just_under_the_limit_stays_and_one_at_the_limit_goes() {
        let under = "x".repeat(DATA_RUN - 1);
        assert!(skip_data_runs(&under).1.is_empty());
        let at = format!("a {} b", ",".repeat(DATA_RUN));
        let (out, skipped) = skip_data_runs(&at);
        assert_eq!(out, "a   b");
        assert_eq!(skipped.bytes, DATA_RUN as u64);
        // A run that ends the text counts too.
        let tail = format!("word {}", "f0".repeat(DATA_RUN));
        assert_eq!(skip_data_runs(&tail).1.runs, 1);
    }

    #[test]
    fn scripts_written_without_spaces_are_prose() {
        for (lang, sample) in [
            ("Chinese", "合同规定租金每月支付，逾期将收取滞纳金。"),
            (
                "Japanese",
                "契約により、家賃は毎月支払われます。カタカナも。",
            ),
            ("Thai", "สัญญากำหนดให้ชำระค่าเช่าทุกเดือน"),
            ("Lao", "ສັນຍາກຳນົດໃຫ້ຈ່າຍຄ່າເຊົ່າທຸກເດືອນ"),
            ("Khmer", "កិច្ចសន្យាកំណត់ឱ្យបង់ថ្លៃឈ្នួលរៀងរាល់ខែ"),
            ("Myanmar", "စာချုပ်အရ လစဉ်ငှားရမ်းခပေးရမည်"),
        ] {
            let text = sample.repeat(4 * DATA_RUN / sample.len() + 2);
            assert!(text.len() > 4 * DATA_RUN, "{lang}");
            let (out, skipped) = skip_data_runs(&text);
            assert!(skipped.is_empty(), "{lang}: {skipped:?}");
            assert_eq!(out, text, "{lang}");
        }
        // Latin letters inside a Chinese text are not a run of their own length.
        let mixed = "价格为USD100，见附件A。".repeat(2000);
        assert!(skip_data_runs(&mixed).1.is_empty());
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size_text(8 << 20), "8 MB");
        assert_eq!(size_text(3 << 19), "1.5 MB");
        assert_eq!(size_text(6 * 1024 * 1024 + 1), "6 MB");
        assert_eq!(size_text(4096), "4 KB");
        assert_eq!(size_text(900), "900 bytes");
        let s = Skipped {
            bytes: 8 << 20,
            runs: 1,
        };
        assert_eq!(
            s.describe(),
            "skipped 8 MB of unbroken text (data, not prose)"
        );
    }
}
