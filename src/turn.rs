//! The conversation turn as a state machine: it takes events (stream items, failures) and
//! returns effects (request, render, commit, fail). It performs no I/O; the engine's driver
//! does, so every path here is tested without async or a network.

use crate::llm::{ChatRequest, FinishReason, LlmError, StreamItem};

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a streamed completion.
    Request(ChatRequest),
    /// Show the answer so far (the full text, not a delta).
    Render(String),
    /// The model is reasoning; show a "thinking…" status.
    Thinking,
    /// Store the turn, flush it, then show `answer` as the final reply.
    Commit {
        /// Final answer text, as stored.
        answer: String,
        /// The answer was cut at the output limit.
        truncated: bool,
    },
    /// Store nothing; show `message` as the final reply.
    Fail {
        /// What the user reads.
        message: String,
    },
}

/// Inputs the driver feeds back.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An item from the completion stream.
    Item(StreamItem),
    /// The request or the stream failed.
    Failed(LlmError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// Note appended to an answer cut at the output limit.
pub const CUT_NOTE: &str = "\n\n_(The answer was cut at the output limit.)_";

/// One turn in progress.
#[derive(Debug)]
pub struct Turn {
    /// Answer text so far.
    answer: String,
    /// Whether a "thinking" status was already emitted.
    thinking_shown: bool,
    /// Where the turn is.
    phase: Phase,
}

impl Turn {
    /// Starts a turn for `request`.
    pub fn start(request: ChatRequest) -> (Self, Vec<Effect>) {
        (
            Self {
                answer: String::new(),
                thinking_shown: false,
                phase: Phase::Streaming,
            },
            vec![Effect::Request(request)],
        )
    }

    /// True once a final effect (commit or fail) was returned.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Advances the machine.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        if self.phase == Phase::Done {
            return Vec::new();
        }
        match input {
            Input::Item(StreamItem::Content(c)) => {
                self.answer.push_str(&c);
                // Leading whitespace is dropped as it streams, so the final text (trimmed)
                // extends what was shown instead of replacing it.
                match self.answer.trim_start() {
                    "" => Vec::new(),
                    shown => vec![Effect::Render(shown.to_string())],
                }
            }
            Input::Item(StreamItem::Reasoning(_)) => {
                if self.thinking_shown {
                    Vec::new()
                } else {
                    self.thinking_shown = true;
                    vec![Effect::Thinking]
                }
            }
            Input::Item(StreamItem::Finish(reason)) => {
                self.phase = Phase::Done;
                let answer = self.answer.trim().to_string();
                if answer.is_empty() {
                    return vec![Effect::Fail {
                        message: "The model returned an empty answer. Try rephrasing the question."
                            .into(),
                    }];
                }
                match reason {
                    FinishReason::Length => vec![Effect::Commit {
                        answer,
                        truncated: true,
                    }],
                    FinishReason::Stop | FinishReason::Other(_) => vec![Effect::Commit {
                        answer,
                        truncated: false,
                    }],
                }
            }
            Input::Failed(e) => {
                self.phase = Phase::Done;
                let partial = self.answer.trim();
                let message = if partial.is_empty() {
                    format!("⚠️ I could not answer: {e}")
                } else {
                    format!("{partial}\n\n⚠️ The answer broke off and was not saved: {e}")
                };
                vec![Effect::Fail { message }]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ChatRequest {
        ChatRequest {
            messages: vec![],
            max_tokens: 10,
            temperature: None,
        }
    }

    #[test]
    fn streams_then_commits() {
        let (mut t, fx) = Turn::start(req());
        assert_eq!(fx, vec![Effect::Request(req())]);
        assert_eq!(
            t.handle(Input::Item(StreamItem::Content("Hel".into()))),
            vec![Effect::Render("Hel".into())]
        );
        assert_eq!(
            t.handle(Input::Item(StreamItem::Content("lo".into()))),
            vec![Effect::Render("Hello".into())]
        );
        assert_eq!(
            t.handle(Input::Item(StreamItem::Finish(FinishReason::Stop))),
            vec![Effect::Commit {
                answer: "Hello".into(),
                truncated: false
            }]
        );
        assert!(t.is_done());
        assert!(t
            .handle(Input::Item(StreamItem::Content("x".into())))
            .is_empty());
    }

    #[test]
    fn leading_whitespace_never_renders() {
        let (mut t, _) = Turn::start(req());
        assert!(t
            .handle(Input::Item(StreamItem::Content("\n\n".into())))
            .is_empty());
        assert_eq!(
            t.handle(Input::Item(StreamItem::Content("Hi ".into()))),
            vec![Effect::Render("Hi ".into())]
        );
    }

    #[test]
    fn reasoning_shows_thinking_once_and_never_enters_the_answer() {
        let (mut t, _) = Turn::start(req());
        assert_eq!(
            t.handle(Input::Item(StreamItem::Reasoning("hmm".into()))),
            vec![Effect::Thinking]
        );
        assert!(t
            .handle(Input::Item(StreamItem::Reasoning("more".into())))
            .is_empty());
        t.handle(Input::Item(StreamItem::Content("42".into())));
        assert_eq!(
            t.handle(Input::Item(StreamItem::Finish(FinishReason::Stop))),
            vec![Effect::Commit {
                answer: "42".into(),
                truncated: false
            }]
        );
    }

    #[test]
    fn failure_mid_answer_stores_nothing_but_shows_the_partial_text() {
        let (mut t, _) = Turn::start(req());
        t.handle(Input::Item(StreamItem::Content("partial".into())));
        let fx = t.handle(Input::Failed(LlmError::StreamCut("closed".into())));
        match &fx[..] {
            [Effect::Fail { message }] => {
                assert!(message.starts_with("partial"));
                assert!(message.contains("not saved"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn length_marks_truncated_and_empty_answers_fail() {
        let (mut t, _) = Turn::start(req());
        t.handle(Input::Item(StreamItem::Content("long".into())));
        assert_eq!(
            t.handle(Input::Item(StreamItem::Finish(FinishReason::Length))),
            vec![Effect::Commit {
                answer: "long".into(),
                truncated: true
            }]
        );
        let (mut t, _) = Turn::start(req());
        assert!(matches!(
            &t.handle(Input::Item(StreamItem::Finish(FinishReason::Stop)))[..],
            [Effect::Fail { .. }]
        ));
    }
}
