//! The conversation turn as a state machine: it takes events (stream items, failures) and
//! returns effects (request, render, commit, fail). It performs no I/O; the engine's driver
//! does, so every path here is tested without async or a network.
//!
//! The pipeline per content chunk: think splitter (reasoning apart from the answer) → language
//! filter → the continuation merge (on instruction-style continuation rounds: no repeated
//! sentence, no preamble, no echo of the instruction; see [`crate::llm::continuation`]) → the
//! answer shown so far. On `finish_reason = "length"` the machine asks for a continuation
//! round, up to `max_rounds`.

use std::sync::Arc;

use crate::llm::continuation::Merge;
use crate::llm::lang_filter::{Script, ScriptFilter};
use crate::llm::prompt::trim_history;
use crate::llm::think::{Piece, ThinkSplitter, ThinkStart};
use crate::llm::tokens::TokenCounter;
use crate::llm::{ChatMessage, ChatRequest, FinishReason, LlmError, Role, StreamItem};

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a streamed completion (the first round or a continuation).
    Request(ChatRequest),
    /// Show the answer so far (the full text, not a delta).
    Render(String),
    /// The model is reasoning; show a "thinking…" status.
    Thinking,
    /// Reasoning text, offered to the adapter apart from the answer. Never stored.
    Reasoning(String),
    /// The language filter removed this many characters in this turn (log a warning).
    Filtered {
        /// Characters removed.
        removed: usize,
    },
    /// Store the turn, flush it, then show `answer` as the final reply.
    Commit {
        /// Final answer text, as stored (no reasoning).
        answer: String,
        /// The answer was still cut when the continuation rounds ran out.
        truncated: bool,
        /// Continuation rounds used.
        rounds: usize,
    },
    /// Store nothing; end the reply with the failure (and the partial answer, if any).
    Fail(Failure),
}

/// Why a turn ended without an answer to store: a closed set the driver acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The request or the stream failed; `partial` is the answer shown so far (maybe empty).
    Llm {
        /// What failed.
        error: LlmError,
        /// Answer text streamed before the failure.
        partial: String,
    },
    /// The model spent its whole output budget reasoning and gave no answer.
    OnlyReasoning,
    /// The model finished with an empty answer.
    EmptyAnswer,
}

impl Failure {
    /// What the user reads: the partial answer, if any, then one `⚠️` line. Endpoint URLs
    /// stay in the log: the chat only hears about "the reasoning model".
    pub fn message(&self) -> String {
        match self {
            Failure::Llm { error, partial } if partial.trim().is_empty() => {
                format!("⚠️ I could not answer: {}.", error.user_reason())
            }
            Failure::Llm { error, partial } => format!(
                "{}\n\n⚠️ The answer broke off and was not saved: {}.",
                partial.trim(),
                error.user_reason()
            ),
            Failure::OnlyReasoning => "⚠️ The model used its whole output budget reasoning and gave no answer. Ask a narrower question, or raise max_output_tokens.".into(),
            Failure::EmptyAnswer => "⚠️ The model returned an empty answer. Try rephrasing the question.".into(),
        }
    }
}

/// Inputs the driver feeds back.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An item from the completion stream.
    Item(StreamItem),
    /// The request or the stream failed.
    Failed(LlmError),
}

/// How a turn behaves.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Continuation rounds allowed after the first round (`MAX_ROUNDS`).
    pub max_rounds: usize,
    /// Where each completion starts relative to a think block.
    pub think_start: ThinkStart,
    /// Scripts removed from the answer (empty: filter off).
    pub filter: Vec<Script>,
    /// Prompt budget a continuation request must fit.
    pub input_budget: usize,
    /// How a cut answer is continued.
    pub continuation: ContinuationStyle,
}

/// How a continuation round asks for the rest of a cut answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContinuationStyle {
    /// The partial answer, then a user message asking to continue (any server).
    Instruction,
    /// The partial answer as the final assistant message, resumed as it stands (vLLM's
    /// `continue_final_message`): no instruction to echo, no reasoning again, no seam.
    Prefill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    Done,
}

/// Note appended to an answer still cut when the rounds ran out.
pub const CUT_NOTE: &str = "\n\n_(The answer was cut at the output limit.)_";

/// The instruction for a continuation round.
pub const CONTINUE_PROMPT: &str =
    "Your previous reply was cut off by the length limit. Continue it \
exactly where it stopped: do not repeat anything already written and add no preamble.";

/// Added to the question when the model ran out of room while still reasoning.
pub const ANSWER_NOW_PROMPT: &str = "(You ran out of room while reasoning last time. Keep your \
reasoning brief and give the final answer.)";

/// One turn in progress.
pub struct Turn {
    /// Behaviour.
    cfg: TurnConfig,
    /// Token counter for fitting continuation requests.
    counter: Arc<dyn TokenCounter>,
    /// The first round's request.
    base: ChatRequest,
    /// Think splitter for the current round.
    splitter: ThinkSplitter,
    /// Language filter (counts over the whole turn).
    filter: ScriptFilter,
    /// Answer text so far, over all rounds.
    answer: String,
    /// Length of `answer` when the current round started.
    round_start: usize,
    /// Reasoning text of the current round.
    reasoning: String,
    /// The merge of an instruction-style continuation round into `answer`.
    merge: Option<Merge>,
    /// Content arrived in the current round (decides whether `reasoning_content` resets the
    /// splitter).
    content_seen: bool,
    /// Whether a "thinking" status was already emitted.
    thinking_shown: bool,
    /// Continuation rounds used.
    rounds: usize,
    /// The current round resumes the answer itself (prefill): everything it streams is
    /// answer. vLLM's R1 reasoning parser labels text with no `</think>` as reasoning, which
    /// a resumed answer never has.
    resuming: bool,
    /// Text last rendered, to avoid redundant edits.
    shown: String,
    /// Where the turn is.
    phase: Phase,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("rounds", &self.rounds)
            .field("answer_len", &self.answer.len())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Turn {
    /// Starts a turn for `request`.
    pub fn start(
        request: ChatRequest,
        cfg: TurnConfig,
        counter: Arc<dyn TokenCounter>,
    ) -> (Self, Vec<Effect>) {
        let turn = Self {
            splitter: ThinkSplitter::new(cfg.think_start),
            filter: ScriptFilter::new(&cfg.filter),
            cfg,
            counter,
            base: request.clone(),
            answer: String::new(),
            round_start: 0,
            reasoning: String::new(),
            merge: None,
            content_seen: false,
            thinking_shown: false,
            rounds: 0,
            resuming: false,
            shown: String::new(),
            phase: Phase::Streaming,
        };
        (turn, vec![Effect::Request(request)])
    }

    /// The answer as it stands (what the reply shows).
    pub fn answer_so_far(&self) -> &str {
        &self.answer
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
        let mut fx = Vec::new();
        match input {
            Input::Item(StreamItem::Content(c) | StreamItem::Reasoning(c)) if self.resuming => {
                self.content_seen = true;
                let pieces = self.splitter.push(&c);
                self.apply(pieces, &mut fx);
                self.render(&mut fx);
            }
            Input::Item(StreamItem::Content(c)) => {
                self.content_seen = true;
                let pieces = self.splitter.push(&c);
                self.apply(pieces, &mut fx);
                self.render(&mut fx);
            }
            Input::Item(StreamItem::Reasoning(r)) => {
                // The server separates reasoning itself, so content is all answer.
                if !self.content_seen {
                    self.splitter.set_outside();
                }
                self.reasoning_piece(r, &mut fx);
            }
            Input::Item(StreamItem::Finish(reason)) => {
                let pieces = self.splitter.finish();
                self.apply(pieces, &mut fx);
                self.close_merge();
                self.finish_round(reason, &mut fx);
            }
            Input::Failed(e) => {
                self.phase = Phase::Done;
                self.filtered(&mut fx);
                fx.push(Effect::Fail(Failure::Llm {
                    error: e,
                    partial: self.answer.trim().to_string(),
                }));
            }
        }
        fx
    }

    fn reasoning_piece(&mut self, r: String, fx: &mut Vec<Effect>) {
        if !self.thinking_shown {
            self.thinking_shown = true;
            fx.push(Effect::Thinking);
        }
        self.reasoning.push_str(&r);
        fx.push(Effect::Reasoning(r));
    }

    fn apply(&mut self, pieces: Vec<Piece>, fx: &mut Vec<Effect>) {
        for p in pieces {
            match p {
                Piece::Reasoning(r) => self.reasoning_piece(r, fx),
                Piece::Answer(a) => {
                    let clean = self.filter.push(&a).into_owned();
                    self.push_answer(&clean);
                }
                Piece::AnswerWasReasoning => {
                    // What this round streamed as answer was reasoning: take it back.
                    let moved = self.answer.split_off(self.round_start);
                    let held = self.merge.take().map(Merge::into_held).unwrap_or_default();
                    let r = moved + &held;
                    if !r.is_empty() {
                        self.reasoning_piece(r, fx);
                    }
                    if self.rounds > 0 && !self.answer.trim().is_empty() {
                        self.merge = Some(Merge::new(&self.answer));
                    }
                }
            }
        }
    }

    fn push_answer(&mut self, text: &str) {
        match &mut self.merge {
            Some(merge) => {
                let new = merge.push(text);
                self.answer.push_str(&new);
            }
            None => self.answer.push_str(text),
        }
    }

    /// Ends the round's merge: appends the text it still held.
    fn close_merge(&mut self) {
        if let Some(merge) = self.merge.take() {
            let rest = merge.finish();
            self.answer.push_str(&rest);
        }
    }

    fn render(&mut self, fx: &mut Vec<Effect>) {
        let shown = self.answer.trim_start();
        if !shown.is_empty() && shown != self.shown {
            self.shown = shown.to_string();
            fx.push(Effect::Render(self.shown.clone()));
        }
    }

    fn filtered(&self, fx: &mut Vec<Effect>) {
        if self.filter.removed() > 0 {
            fx.push(Effect::Filtered {
                removed: self.filter.removed(),
            });
        }
    }

    fn finish_round(&mut self, reason: FinishReason, fx: &mut Vec<Effect>) {
        let round_answer = self.answer[self.round_start..].trim().to_string();
        // A stream that started "inside" but never closed a think block and stopped normally
        // was an answer all along (a model that did not think).
        if reason != FinishReason::Length
            && self.splitter.is_inside()
            && !self.splitter.saw_tags()
            && round_answer.is_empty()
        {
            let text = std::mem::take(&mut self.reasoning);
            let clean = self.filter.push(&text).into_owned();
            self.answer.push_str(&clean);
            self.render(fx);
        }
        // Still inside a think block: either an explicit one never closed, or the output
        // limit hit while an R1-style model was reasoning.
        let still_thinking = self.splitter.is_inside()
            && (self.splitter.saw_tags() || reason == FinishReason::Length);
        let cut = reason == FinishReason::Length || (still_thinking && round_answer.is_empty());
        if cut && self.rounds < self.cfg.max_rounds {
            if let Some(req) = self.continuation(still_thinking && self.answer.trim().is_empty()) {
                self.rounds += 1;
                self.round_start = self.answer.len();
                self.reasoning.clear();
                self.resuming = req.continue_final;
                // A resumed answer starts outside any think block and cannot repeat itself.
                self.splitter = ThinkSplitter::new(if self.resuming {
                    ThinkStart::Outside
                } else {
                    self.cfg.think_start
                });
                self.content_seen = false;
                self.merge = if self.answer.trim().is_empty() || self.resuming {
                    None
                } else {
                    Some(Merge::new(&self.answer))
                };
                fx.push(Effect::Request(req));
                return;
            }
        }
        self.phase = Phase::Done;
        self.filtered(fx);
        let answer = self.answer.trim().to_string();
        if answer.is_empty() {
            fx.push(Effect::Fail(
                if self.thinking_shown || !self.reasoning.is_empty() {
                    Failure::OnlyReasoning
                } else {
                    Failure::EmptyAnswer
                },
            ));
            return;
        }
        fx.push(Effect::Commit {
            answer,
            truncated: cut,
            rounds: self.rounds,
        });
    }

    /// The next round's request, fitted to the input budget; `None` if it cannot fit.
    fn continuation(&self, answer_now: bool) -> Option<ChatRequest> {
        let mut messages = self.base.messages.clone();
        let prefill = !answer_now
            && self.cfg.continuation == ContinuationStyle::Prefill
            && !self.answer.trim().is_empty();
        let protected = if prefill {
            messages.push(ChatMessage::new(
                Role::Assistant,
                self.answer.trim_start().to_string(),
            ));
            2
        } else if answer_now {
            if let Some(last) = messages.last_mut() {
                last.content = format!("{}\n\n{ANSWER_NOW_PROMPT}", last.content);
            }
            1
        } else {
            messages.push(ChatMessage::new(
                Role::Assistant,
                self.answer.trim_start().to_string(),
            ));
            messages.push(ChatMessage::new(Role::User, CONTINUE_PROMPT));
            3
        };
        trim_history(
            self.counter.as_ref(),
            &mut messages,
            protected,
            self.cfg.input_budget,
        )
        .then(|| ChatRequest {
            messages,
            continue_final: prefill,
            ..self.base.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chars;
    impl TokenCounter for Chars {
        fn count(&self, text: &str) -> usize {
            text.len() / 4
        }
    }

    fn req() -> ChatRequest {
        ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, "sys"),
                ChatMessage::new(Role::User, "q"),
            ],
            max_tokens: 10,
            continue_final: false,
            ..Default::default()
        }
    }

    fn cfg(max_rounds: usize, think_start: ThinkStart) -> TurnConfig {
        TurnConfig {
            max_rounds,
            think_start,
            filter: Script::CJK.to_vec(),
            input_budget: 10_000,
            continuation: ContinuationStyle::Instruction,
        }
    }

    fn start(max_rounds: usize, think_start: ThinkStart) -> Turn {
        Turn::start(req(), cfg(max_rounds, think_start), Arc::new(Chars)).0
    }

    fn content(t: &mut Turn, s: &str) -> Vec<Effect> {
        t.handle(Input::Item(StreamItem::Content(s.into())))
    }

    fn finish(t: &mut Turn, r: FinishReason) -> Vec<Effect> {
        t.handle(Input::Item(StreamItem::Finish(r)))
    }

    fn committed(fx: &[Effect]) -> (String, bool, usize) {
        match fx.last() {
            Some(Effect::Commit {
                answer,
                truncated,
                rounds,
            }) => (answer.clone(), *truncated, *rounds),
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    fn request(fx: &[Effect]) -> ChatRequest {
        match fx.last() {
            Some(Effect::Request(r)) => r.clone(),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn streams_then_commits() {
        let (mut t, fx) = Turn::start(req(), cfg(3, ThinkStart::Outside), Arc::new(Chars));
        assert_eq!(fx, vec![Effect::Request(req())]);
        assert_eq!(content(&mut t, "Hel"), vec![Effect::Render("Hel".into())]);
        assert_eq!(content(&mut t, "lo"), vec![Effect::Render("Hello".into())]);
        assert_eq!(
            committed(&finish(&mut t, FinishReason::Stop)),
            ("Hello".into(), false, 0)
        );
        assert!(t.is_done());
        assert!(content(&mut t, "x").is_empty());
    }

    #[test]
    fn leading_whitespace_never_renders() {
        let mut t = start(3, ThinkStart::Outside);
        assert!(content(&mut t, "\n\n").is_empty());
        assert_eq!(content(&mut t, "Hi "), vec![Effect::Render("Hi ".into())]);
    }

    #[test]
    fn reasoning_content_stream_is_kept_apart() {
        let mut t = start(3, ThinkStart::Inside);
        let fx = t.handle(Input::Item(StreamItem::Reasoning("hmm".into())));
        assert_eq!(fx, vec![Effect::Thinking, Effect::Reasoning("hmm".into())]);
        assert_eq!(
            t.handle(Input::Item(StreamItem::Reasoning(" more".into()))),
            vec![Effect::Reasoning(" more".into())]
        );
        // Content after reasoning_content is answer even though the model is R1-style.
        assert_eq!(content(&mut t, "42"), vec![Effect::Render("42".into())]);
        assert_eq!(committed(&finish(&mut t, FinishReason::Stop)).0, "42");
    }

    #[test]
    fn r1_content_without_opening_tag() {
        let mut t = start(3, ThinkStart::Inside);
        let fx = content(&mut t, "Let me see, 6*7");
        assert_eq!(
            fx,
            vec![
                Effect::Thinking,
                Effect::Reasoning("Let me see, 6*7".into())
            ]
        );
        let fx = content(&mut t, " is 42.</thi");
        assert_eq!(fx, vec![Effect::Reasoning(" is 42.".into())]);
        let fx = content(&mut t, "nk>\n\nIt is 42.");
        assert_eq!(fx, vec![Effect::Render("It is 42.".into())]);
        assert_eq!(
            committed(&finish(&mut t, FinishReason::Stop)).0,
            "It is 42."
        );
    }

    #[test]
    fn inside_start_without_any_tag_is_an_answer() {
        let mut t = start(3, ThinkStart::Inside);
        content(&mut t, "Plain answer, no thinking.");
        let fx = finish(&mut t, FinishReason::Stop);
        assert_eq!(fx[0], Effect::Render("Plain answer, no thinking.".into()));
        assert_eq!(committed(&fx).0, "Plain answer, no thinking.");
    }

    fn start_prefill(think_start: ThinkStart) -> Turn {
        let cfg = TurnConfig {
            continuation: ContinuationStyle::Prefill,
            ..cfg(3, think_start)
        };
        Turn::start(req(), cfg, Arc::new(Chars)).0
    }

    #[test]
    fn prefill_resumes_the_answer_mid_word_and_keeps_a_real_repeat() {
        let mut t = start_prefill(ThinkStart::Inside);
        content(&mut t, "<think>plan</think>| a | b |\n| a | b |\nThe capi");
        let r = request(&finish(&mut t, FinishReason::Length));
        assert!(r.continue_final);
        assert_eq!(r.messages.len(), 3, "no instruction message: {r:?}");
        assert_eq!(
            r.messages[2],
            ChatMessage::new(Role::Assistant, "| a | b |\n| a | b |\nThe capi")
        );
        // The resumed round starts in the answer: no think block, no seam trimming, and a
        // repeat of the answer's end (a table row) is kept as written.
        content(&mut t, "tal is Paris.\n| a | b |\n");
        let fx = finish(&mut t, FinishReason::Stop);
        assert_eq!(
            committed(&fx),
            (
                "| a | b |\n| a | b |\nThe capital is Paris.\n| a | b |".into(),
                false,
                1
            )
        );
    }

    #[test]
    fn prefill_round_takes_reasoning_labelled_text_as_answer() {
        // vLLM's R1 parser labels a resumed answer (no `</think>`) as reasoning_content.
        let mut t = start_prefill(ThinkStart::Inside);
        t.handle(Input::Item(StreamItem::Reasoning("weighing".into())));
        content(&mut t, "Forty");
        request(&finish(&mut t, FinishReason::Length));
        let fx = t.handle(Input::Item(StreamItem::Reasoning("-two.".into())));
        assert_eq!(fx, vec![Effect::Render("Forty-two.".into())]);
        assert_eq!(
            committed(&finish(&mut t, FinishReason::Stop)).0,
            "Forty-two."
        );
    }

    #[test]
    fn prefill_with_no_answer_yet_asks_for_an_answer_instead() {
        let mut t = start_prefill(ThinkStart::Inside);
        content(&mut t, "still reasoning when the limit hit");
        let r = request(&finish(&mut t, FinishReason::Length));
        assert!(!r.continue_final);
        assert!(r
            .messages
            .last()
            .unwrap()
            .content
            .contains(ANSWER_NOW_PROMPT));
    }

    #[test]
    fn length_then_one_continuation_joins_without_repeats() {
        let mut t = start(3, ThinkStart::Outside);
        content(&mut t, "The quick brown fox");
        let r = request(&finish(&mut t, FinishReason::Length));
        let n = r.messages.len();
        assert_eq!(
            r.messages[n - 2],
            ChatMessage::new(Role::Assistant, "The quick brown fox")
        );
        assert_eq!(
            r.messages[n - 1],
            ChatMessage::new(Role::User, CONTINUE_PROMPT)
        );
        // The continuation repeats "brown fox" before going on.
        assert!(
            content(&mut t, "brown fox jumps").is_empty(),
            "held at the seam"
        );
        content(&mut t, " over the lazy dog.");
        let fx = finish(&mut t, FinishReason::Stop);
        assert_eq!(
            committed(&fx),
            (
                "The quick brown fox jumps over the lazy dog.".into(),
                false,
                1
            )
        );
    }

    const ANSWER: &str = "A billing service issues invoices to customers. It records every \
payment against the invoice it settles. Finally, it reminds customers of overdue invoices.";

    /// Runs a turn whose first round streams `first` and is cut, then one continuation round
    /// per entry of `rounds` (streamed a word at a time; the last one stops); returns every
    /// rendered text and the commit.
    fn continued(
        filter: Vec<Script>,
        first: &str,
        rounds: &[(&str, FinishReason)],
        max_rounds: usize,
    ) -> (Vec<String>, (String, bool, usize)) {
        let c = TurnConfig {
            filter,
            ..cfg(max_rounds, ThinkStart::Outside)
        };
        let mut t = Turn::start(req(), c, Arc::new(Chars)).0;
        let mut renders = Vec::new();
        let mut keep = |fx: Vec<Effect>| {
            for e in &fx {
                if let Effect::Render(r) = e {
                    renders.push(r.clone());
                }
            }
            fx
        };
        keep(content(&mut t, first));
        let mut fx = keep(finish(&mut t, FinishReason::Length));
        for (text, reason) in rounds {
            let r = request(&fx);
            assert_eq!(r.messages.last().unwrap().content, CONTINUE_PROMPT);
            for w in text.split_inclusive(' ') {
                keep(content(&mut t, w));
            }
            fx = keep(finish(&mut t, reason.clone()));
        }
        (renders, committed(&fx))
    }

    /// Every render extends the one before (nothing shown is taken back) and shows no
    /// sentence twice and no instruction.
    fn assert_clean_renders(renders: &[String]) {
        for pair in renders.windows(2) {
            assert!(pair[1].starts_with(&pair[0]), "{pair:?}");
        }
        for r in renders {
            assert!(
                !r.contains("length limit") && !r.contains("where it stopped"),
                "{r}"
            );
            let mut seen = std::collections::HashSet::new();
            for s in unicode_segmentation::UnicodeSegmentation::split_sentence_bounds(r.as_str()) {
                let k = s.trim().to_lowercase();
                assert!(
                    k.len() < 3 || seen.insert(k.clone()),
                    "{k:?} twice in {r:?}"
                );
            }
        }
    }

    #[test]
    fn a_continuation_that_starts_over_adds_only_the_rest() {
        let (renders, commit) = continued(
            Script::CJK.to_vec(),
            &ANSWER[..60],
            &[(ANSWER, FinishReason::Stop)],
            3,
        );
        assert_eq!(commit, (ANSWER.into(), false, 1));
        assert_clean_renders(&renders);
    }

    #[test]
    fn a_restart_after_a_preamble_loses_the_preamble() {
        for preamble in [
            "Sure! Here is the complete answer: ",
            "Here is the completed response:\n\n",
        ] {
            let cont = format!("{preamble}{ANSWER}");
            let (renders, commit) =
                continued(vec![], &ANSWER[..100], &[(&cont, FinishReason::Stop)], 3);
            assert_eq!(commit, (ANSWER.into(), false, 1), "{preamble:?}");
            assert_clean_renders(&renders);
        }
    }

    #[test]
    fn a_restart_from_a_later_sentence_adds_only_the_rest() {
        let (renders, commit) = continued(
            vec![],
            &ANSWER[..100],
            &[(&ANSWER[48..], FinishReason::Stop)],
            3,
        );
        assert_eq!(commit, (ANSWER.into(), false, 1));
        assert_clean_renders(&renders);
    }

    #[test]
    fn an_echoed_instruction_never_reaches_the_answer() {
        let first = "The capital of France is";
        let expected = "The capital of France is Paris. It lies on the Seine.";
        for echo in [
            format!("{CONTINUE_PROMPT}\n\n"),
            format!("Here is the completed response: {CONTINUE_PROMPT} "),
            "Your previous reply was cut off by the length limit. ".into(),
            "Here is the completed response: Your previous reply was cut off by the length \
limit. Continue it exactly where it stopped. "
                .into(),
        ] {
            let cont = format!("{echo}Paris. It lies on the Seine.");
            let (renders, commit) = continued(vec![], first, &[(&cont, FinishReason::Stop)], 3);
            assert_eq!(commit, (expected.into(), false, 1), "{echo:?}");
            assert_clean_renders(&renders);
        }
    }

    #[test]
    fn cjk_and_german_restarts_add_only_the_rest() {
        let zh = "计费服务向客户开具发票。它记录每一笔付款。最后，它提醒客户逾期的发票。";
        let cut = zh.char_indices().nth(15).unwrap().0;
        let (renders, commit) = continued(vec![], &zh[..cut], &[(zh, FinishReason::Stop)], 3);
        assert_eq!(commit, (zh.into(), false, 1));
        assert_clean_renders(&renders);
        let de = "Ein Abrechnungsdienst stellt Rechnungen aus. Er verbucht jede Zahlung. \
Zuletzt erinnert er säumige Kunden an offene Beträge.";
        let cont = format!("Gerne! Hier ist die vollständige Antwort: {de}");
        let (renders, commit) = continued(vec![], &de[..55], &[(&cont, FinishReason::Stop)], 3);
        assert_eq!(commit, (de.into(), false, 1));
        assert_clean_renders(&renders);
    }

    #[test]
    fn rounds_that_only_repeat_commit_the_answer_once_and_cut() {
        // A model that starts over every round and is cut before it gets past the cut (the
        // ANCHORBOT_MAX_OUTPUT_TOKENS=16 case).
        let first = &ANSWER[..30];
        let repeat = (first, FinishReason::Length);
        let (renders, commit) =
            continued(vec![], first, &[repeat.clone(), repeat.clone(), repeat], 3);
        assert_eq!(commit, (first.trim().into(), true, 3));
        assert_clean_renders(&renders);
        // One that repeats and stops: the answer is committed once.
        let (_, commit) = continued(vec![], first, &[(first, FinishReason::Stop)], 3);
        assert_eq!(commit.0, first.trim());
    }

    #[test]
    fn many_short_rounds_that_restart_build_the_answer_once() {
        // Each round starts over and gets 25 characters further.
        let mut rounds = Vec::new();
        let mut end = 50;
        while end < ANSWER.len() {
            rounds.push((&ANSWER[..end], FinishReason::Length));
            end += 25;
        }
        rounds.push((ANSWER, FinishReason::Stop));
        let n = rounds.len();
        let (renders, commit) = continued(vec![], &ANSWER[..25], &rounds, n);
        assert_eq!(commit, (ANSWER.into(), false, n));
        assert_clean_renders(&renders);
    }

    #[test]
    fn rounds_run_out_and_the_answer_says_it_was_cut() {
        let mut t = start(2, ThinkStart::Outside);
        content(&mut t, "one ");
        request(&finish(&mut t, FinishReason::Length));
        content(&mut t, "two ");
        request(&finish(&mut t, FinishReason::Length));
        content(&mut t, "three");
        let (answer, truncated, rounds) = committed(&finish(&mut t, FinishReason::Length));
        assert_eq!(
            (answer.as_str(), truncated, rounds),
            ("one two three", true, 2)
        );
    }

    #[test]
    fn think_block_open_at_the_limit_asks_for_the_answer() {
        let mut t = start(3, ThinkStart::Outside);
        content(&mut t, "<think>long deliberation");
        let r = request(&finish(&mut t, FinishReason::Length));
        assert!(r
            .messages
            .last()
            .unwrap()
            .content
            .ends_with(ANSWER_NOW_PROMPT));
        assert_eq!(r.messages.len(), 2, "no partial answer to continue");
        content(&mut t, "<think>ok</think>Final.");
        assert_eq!(
            committed(&finish(&mut t, FinishReason::Stop)),
            ("Final.".into(), false, 1)
        );
        let mut t = start(0, ThinkStart::Inside);
        content(&mut t, "deliberating");
        match &finish(&mut t, FinishReason::Length)[..] {
            [Effect::Fail(f)] => assert_eq!(f, &Failure::OnlyReasoning),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cjk_is_filtered_across_chunks_and_counted() {
        let mut t = start(3, ThinkStart::Outside);
        assert_eq!(
            content(&mut t, "Hello 世"),
            vec![Effect::Render("Hello ".into())]
        );
        assert_eq!(
            content(&mut t, "界world。"),
            vec![Effect::Render("Hello world".into())]
        );
        let fx = finish(&mut t, FinishReason::Stop);
        assert_eq!(fx[0], Effect::Filtered { removed: 3 });
        assert_eq!(committed(&fx).0, "Hello world");
    }

    #[test]
    fn failure_mid_answer_stores_nothing_but_shows_the_partial_text() {
        let mut t = start(3, ThinkStart::Outside);
        content(&mut t, "partial");
        let fx = t.handle(Input::Failed(LlmError::StreamCut("closed".into())));
        match &fx[..] {
            [Effect::Fail(f)] => {
                let message = f.message();
                assert!(message.starts_with("partial"));
                assert!(message.contains("not saved"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_answers_fail() {
        let mut t = start(3, ThinkStart::Outside);
        assert!(matches!(
            &finish(&mut t, FinishReason::Stop)[..],
            [Effect::Fail(Failure::EmptyAnswer)]
        ));
    }

    #[test]
    fn continuation_that_cannot_fit_ends_cut() {
        let mut c = cfg(3, ThinkStart::Outside);
        c.input_budget = 40;
        let mut t = Turn::start(req(), c, Arc::new(Chars)).0;
        content(&mut t, &"long answer ".repeat(40));
        let (_, truncated, rounds) = committed(&finish(&mut t, FinishReason::Length));
        assert!(truncated);
        assert_eq!(rounds, 0);
    }
}
