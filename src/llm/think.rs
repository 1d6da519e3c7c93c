//! Separates R1-style reasoning (`<think>…</think>` inside the content) from the answer while
//! it streams. Tags may be split across chunks at any point; at most a possible partial tag
//! (under 8 bytes) is held back. R1 distills usually start already inside the think block (the
//! chat template opens it), so the splitter can start inside.

pub use crate::settings::ThinkStart;

/// A classified piece of streamed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text.
    Answer(String),
    /// A `</think>` arrived with no opening tag while outside: the answer text streamed so far
    /// in this stream was reasoning after all.
    AnswerWasReasoning,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// The streaming splitter for one completion.
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    /// Currently inside a think block.
    inside: bool,
    /// A tail that may be the start of a tag, held until the next chunk decides.
    carry: String,
    /// A closing tag was seen (the think block ended).
    closed: bool,
    /// An opening tag was seen.
    opened: bool,
}

impl ThinkSplitter {
    /// A splitter starting `start`.
    pub fn new(start: ThinkStart) -> Self {
        Self {
            inside: start == ThinkStart::Inside,
            carry: String::new(),
            closed: false,
            opened: false,
        }
    }

    /// The server separates reasoning itself (`reasoning_content`): content is all answer.
    pub fn set_outside(&mut self) {
        self.inside = false;
    }

    /// Still inside a think block.
    pub fn is_inside(&self) -> bool {
        self.inside
    }

    /// Whether any think tag was seen.
    pub fn saw_tags(&self) -> bool {
        self.opened || self.closed
    }

    /// Classifies one chunk.
    pub fn push(&mut self, chunk: &str) -> Vec<Piece> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.push_str(chunk);
        let mut out = Vec::new();
        let mut rest: &str = &buf;
        loop {
            let open_at = if self.inside { None } else { rest.find(OPEN) };
            let close_at = rest.find(CLOSE);
            let next = match (open_at, close_at) {
                (Some(o), Some(c)) if c < o => Some((c, false)),
                (Some(o), _) => Some((o, true)),
                (None, Some(c)) => Some((c, false)),
                (None, None) => None,
            };
            match next {
                Some((at, is_open)) => {
                    self.emit(&rest[..at], &mut out);
                    if is_open {
                        self.opened = true;
                        self.inside = true;
                        rest = &rest[at + OPEN.len()..];
                    } else {
                        if !self.inside && !self.opened {
                            out.push(Piece::AnswerWasReasoning);
                        }
                        self.closed = true;
                        self.inside = false;
                        rest = &rest[at + CLOSE.len()..];
                    }
                }
                None => {
                    let hold = partial_tag_suffix(rest);
                    let (emit, keep) = rest.split_at(rest.len() - hold);
                    self.emit(emit, &mut out);
                    self.carry = keep.to_string();
                    return out;
                }
            }
        }
    }

    /// Ends the stream: whatever was held back is emitted as it stands.
    pub fn finish(&mut self) -> Vec<Piece> {
        let carry = std::mem::take(&mut self.carry);
        let mut out = Vec::new();
        self.emit(&carry, &mut out);
        out
    }

    fn emit(&self, text: &str, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        let piece = if self.inside {
            Piece::Reasoning(text.to_string())
        } else {
            Piece::Answer(text.to_string())
        };
        // Merge with the previous piece of the same kind.
        match (out.last_mut(), piece) {
            (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
            (Some(Piece::Answer(a)), Piece::Answer(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
}

/// The answer of a whole completion: the text after the last `</think>` (closed blocks, and
/// R1's block whose opening tag is in the prompt), cut before a `<think>` left open after it.
/// For output read at once rather than streamed.
pub fn final_answer(output: &str) -> &str {
    let after = match output.rfind(CLOSE) {
        Some(i) => &output[i + CLOSE.len()..],
        None => output,
    };
    match after.find(OPEN) {
        Some(i) => &after[..i],
        None => after,
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of a tag.
fn partial_tag_suffix(s: &str) -> usize {
    let max = CLOSE.len() - 1;
    (1..=max.min(s.len()))
        .rev()
        .find(|&n| {
            s.is_char_boundary(s.len() - n) && {
                let tail = &s[s.len() - n..];
                OPEN.starts_with(tail) || CLOSE.starts_with(tail)
            }
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `chunks` through a splitter and returns (reasoning, answer, retracted).
    fn run(start: ThinkStart, chunks: &[&str]) -> (String, String, bool) {
        let mut s = ThinkSplitter::new(start);
        let mut r = String::new();
        let mut a = String::new();
        let mut retracted = false;
        let mut pieces: Vec<Piece> = chunks.iter().flat_map(|c| s.push(c)).collect();
        pieces.extend(s.finish());
        for p in pieces {
            match p {
                Piece::Reasoning(t) => r.push_str(&t),
                Piece::Answer(t) => a.push_str(&t),
                Piece::AnswerWasReasoning => {
                    retracted = true;
                    r = std::mem::take(&mut a) + &r;
                }
            }
        }
        (r, a, retracted)
    }

    #[test]
    fn tags_split_at_every_byte_boundary() {
        let text = "<think>Let me think: 2+2=4 — sûr.</think>The answer is 4 😀.";
        for i in 0..=text.len() {
            for j in i..=text.len() {
                if !(text.is_char_boundary(i) && text.is_char_boundary(j)) {
                    continue;
                }
                let (r, a, _) = run(ThinkStart::Outside, &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(r, "Let me think: 2+2=4 — sûr.", "split at {i},{j}");
                assert_eq!(a, "The answer is 4 😀.", "split at {i},{j}");
            }
        }
    }

    #[test]
    fn missing_opening_tag_when_starting_inside() {
        let text = "hmm, the user wants X.\n</think>\n\nHere is X.";
        for i in 0..=text.len() {
            let (r, a, retracted) = run(ThinkStart::Inside, &[&text[..i], &text[i..]]);
            assert_eq!(r, "hmm, the user wants X.\n");
            assert_eq!(a, "\n\nHere is X.");
            assert!(!retracted);
        }
    }

    #[test]
    fn stray_closing_tag_when_outside_retracts_the_answer() {
        let (r, a, retracted) = run(
            ThinkStart::Outside,
            &["thinking aloud", "</think>", "Answer."],
        );
        assert!(retracted);
        assert_eq!(r, "thinking aloud");
        assert_eq!(a, "Answer.");
    }

    #[test]
    fn open_think_block_at_the_end_stays_reasoning() {
        let mut s = ThinkSplitter::new(ThinkStart::Outside);
        let mut pieces = s.push("<think>still going when the limit hit </thi");
        pieces.extend(s.finish());
        assert!(s.is_inside());
        let reasoning: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Reasoning(t) => t.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(reasoning, "still going when the limit hit </thi");
    }

    #[test]
    fn text_that_only_looks_like_a_tag_is_released() {
        let (r, a, _) = run(ThinkStart::Outside, &["a <thin", "g> and <b>"]);
        assert_eq!(r, "");
        assert_eq!(a, "a <thing> and <b>");
    }

    #[test]
    fn holds_back_only_a_possible_tag_prefix() {
        let mut s = ThinkSplitter::new(ThinkStart::Outside);
        assert_eq!(s.push("Hello <"), vec![Piece::Answer("Hello ".into())]);
        assert_eq!(s.push("b"), vec![Piece::Answer("<b".into())]);
        assert_eq!(s.push("world"), vec![Piece::Answer("world".into())]);
    }

    #[test]
    fn the_final_answer_follows_the_last_closed_block() {
        assert_eq!(final_answer("plain answer"), "plain answer");
        assert_eq!(final_answer("<think>why</think>\n3, 1"), "\n3, 1");
        // R1: the opening tag was in the prompt.
        assert_eq!(final_answer("reasoning 5\n</think>\n\n2, 4"), "\n\n2, 4");
        assert_eq!(
            final_answer("<think>a 4</think><think>b 5</think>[2]"),
            "[2]"
        );
        // A block opened and never closed is reasoning, cut off.
        assert_eq!(final_answer("1, 2<think>on second thought"), "1, 2");
        assert_eq!(final_answer("<think>a</think>x<think>cut"), "x");
        assert_eq!(final_answer("<think>unfinished"), "");
        assert_eq!(final_answer(""), "");
    }
}
