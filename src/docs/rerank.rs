//! Optional reranking of retrieved passages by the reasoning model (`documents.rerank = "llm"`).
//!
//! The reasoning endpoint is asked, in one short prompt, to list the numbers of the passages
//! that help answer the question, most useful first. The answer is parsed leniently
//! ([`parse_order`]): models drift from any format, and reasoning models think aloud before
//! answering even when asked not to. Anything that goes wrong (the endpoint is down or slow,
//! the answer holds no usable number, the output cap is hit inside the reasoning) gives `None`,
//! which means "keep the fused order": reranking may only ever improve retrieval, never break
//! it. Successful orders are cached per (question, candidate set).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::llm::facts::FactsCache;
use crate::llm::think::{final_answer, Piece, ThinkSplitter, ThinkStart};
use crate::llm::{ChatBackend, ChatMessage, ChatRequest, Completion, LlmError, Role};
use crate::retrieval::Passage;
use anchorbot_platform::{sync, BoundedMap};

/// The most candidates shown to the model; any further ones keep their fused order after them.
pub const MAX_CANDIDATES: usize = 20;

/// Characters of a passage shown to the model, so that twenty of them stay a short prompt.
pub const PASSAGE_CHARS: usize = 600;

/// Characters of a label (citation) shown to the model.
const LABEL_CHARS: usize = 120;

/// Characters of the question shown to the model (a pasted wall of text need not be repeated).
const QUESTION_CHARS: usize = 2000;

/// Output cap: a list of twenty numbers takes about sixty tokens, and the rest leaves room for
/// a model that thinks in its content anyway to close its think block.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Successful orders remembered.
pub const CACHE_ENTRIES: usize = 256;

/// The system message of the rerank prompt.
pub const SYSTEM_PROMPT: &str = "You rank passages by how well they help answer a question. \
                                 Reply with passage numbers only.";

/// The instruction closing the user message of the rerank prompt.
pub const INSTRUCTION: &str = "List the numbers of the passages that help answer the question, \
                               most useful first, as a comma-separated list like 3, 1, 7, and \
                               nothing else.";

/// One passage to order: what the model is shown of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it comes from, e.g. `gpl-3.txt p.4`.
    pub label: String,
    /// The passage text.
    pub text: String,
}

impl Candidate {
    /// A candidate labelled `label`.
    pub fn new(label: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            text: text.into(),
        }
    }
}

impl From<&Passage> for Candidate {
    fn from(p: &Passage) -> Self {
        Self::new(p.citation.clone(), p.text.clone())
    }
}

/// Orders retrieved passages with the reasoning model, falling back to the fused order.
pub struct Reranker {
    /// The reasoning endpoint(s).
    llm: Arc<dyn ChatBackend>,
    /// The limit on one whole rerank call, server probe included.
    limit: Duration,
    /// Where the model's output starts relative to a think block.
    think_start: ThinkStart,
    /// Output cap of the rerank call.
    max_tokens: usize,
    /// Successful orders by (question, candidates) digest.
    cache: Mutex<BoundedMap<[u8; 32], Vec<usize>>>,
    /// What the servers report about themselves: the engine's cache, handed over with
    /// [`Reranker::with_facts`].
    facts: Arc<FactsCache>,
    /// Calls that reached the model (cache misses), for tests and diagnostics.
    calls: AtomicU64,
}

impl std::fmt::Debug for Reranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranker")
            .field("limit", &self.limit)
            .field("think_start", &self.think_start)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// Why a rerank fell back to the fused order (logged; never holds passage text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// The model's output stopped inside its reasoning, before any answer.
    ReasoningOpen,
    /// The answer holds no passage number in range.
    Unparseable,
}

impl Fallback {
    fn as_str(self) -> &'static str {
        match self {
            Fallback::ReasoningOpen => "the output stopped inside the model's reasoning",
            Fallback::Unparseable => "the answer holds no usable passage number",
        }
    }
}

impl Reranker {
    /// A reranker asking `llm`, with `limit` on each whole call. The model's output is taken
    /// to start outside a think block; see [`Reranker::with_think_start`].
    pub fn new(llm: Arc<dyn ChatBackend>, limit: Duration) -> Self {
        Self {
            facts: FactsCache::new(llm.clone()),
            llm,
            limit,
            think_start: ThinkStart::Outside,
            max_tokens: DEFAULT_MAX_TOKENS,
            cache: Mutex::new(BoundedMap::new(CACHE_ENTRIES)),
            calls: AtomicU64::new(0),
        }
    }

    /// Uses `facts`, the engine's server-facts cache, instead of one of its own.
    pub fn with_facts(mut self, facts: Arc<FactsCache>) -> Self {
        self.facts = facts;
        self
    }

    /// Where the model's output starts (the reasoning endpoint's `think_start()`): an R1
    /// distill starts inside a think block, so output cut before `</think>` is all reasoning
    /// and its numbers must not be read as an order.
    pub fn with_think_start(mut self, start: ThinkStart) -> Self {
        self.think_start = start;
        self
    }

    /// The output cap of a rerank call (default [`DEFAULT_MAX_TOKENS`]).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    /// The limit on one whole call.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// How many calls reached the model (cache hits do not count).
    pub fn model_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The order of `candidates` (given in fused order, best first) for `question`: a
    /// permutation of `0..candidates.len()`, the model's order first, then the candidates it
    /// left out in their fused order. Only the first [`MAX_CANDIDATES`] are shown to the
    /// model. `None` means "keep the fused order": the endpoint failed or exceeded the time
    /// limit, or its answer could not be read. With fewer than two candidates there is nothing
    /// to order and the model is not asked.
    pub async fn rerank(&self, question: &str, candidates: &[Candidate]) -> Option<Vec<usize>> {
        let n = candidates.len();
        if n < 2 {
            return Some((0..n).collect());
        }
        let key = cache_key(question, candidates);
        if let Some(order) = sync::lock(&self.cache).refresh(&key).cloned() {
            tracing::debug!(candidates = n, "rerank order from the cache");
            return Some(order);
        }
        let shown = n.min(MAX_CANDIDATES);
        let started = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let elapsed_ms = || started.elapsed().as_millis() as u64;
        let done = match tokio::time::timeout(self.limit, self.ask(question, &candidates[..shown]))
            .await
        {
            Err(_) => {
                tracing::info!(
                    candidates = n,
                    limit_ms = self.limit.as_millis() as u64,
                    "rerank exceeded its time limit; keeping the fused order"
                );
                return None;
            }
            Ok(Err(e)) => {
                // `user_reason`, not `Display`: a server's error body may echo the prompt
                // (a 422 listing the request's messages), and passage text stays out of logs.
                tracing::warn!(candidates = n, elapsed_ms = elapsed_ms(), offline = e.is_offline(), reason = %e.user_reason(), "rerank call failed; keeping the fused order");
                return None;
            }
            Ok(Ok(done)) => done,
        };
        let ranked = match self.read(&done, shown) {
            Ok(ranked) => ranked,
            Err(why) => {
                tracing::info!(
                    candidates = n,
                    elapsed_ms = elapsed_ms(),
                    output_chars = done.content.chars().count(),
                    finish = ?done.finish,
                    reason = why.as_str(),
                    "rerank answer unusable; keeping the fused order"
                );
                return None;
            }
        };
        let order = complete_order(ranked, n);
        tracing::debug!(
            candidates = n,
            elapsed_ms = elapsed_ms(),
            moved = order.iter().enumerate().filter(|(i, o)| i != *o).count(),
            "reranked passages"
        );
        sync::lock(&self.cache).insert(key, order.clone());
        Some(order)
    }

    /// Asks the model (server probe included, so the caller's time limit covers both).
    async fn ask(&self, question: &str, shown: &[Candidate]) -> Result<Completion, LlmError> {
        let mut request = rerank_request(question, shown);
        request.max_tokens = self.max_tokens;
        // vLLM passes chat_template_kwargs to the template: Qwen3 then skips its reasoning.
        // Other servers may reject the unknown field, so it is sent to vLLM only.
        request.thinking_off = self.facts.get().await.all_vllm;
        self.llm.complete(&request).await
    }

    /// The model's order (0-based, at most `shown` entries) from a finished completion.
    fn read(&self, done: &Completion, shown: usize) -> Result<Vec<usize>, Fallback> {
        let mut splitter = ThinkSplitter::new(self.think_start);
        if done.reasoning_apart {
            splitter.set_outside();
        }
        let mut answer = String::new();
        let pieces = splitter
            .push(&done.content)
            .into_iter()
            .chain(splitter.finish());
        for piece in pieces {
            match piece {
                Piece::Answer(a) => answer.push_str(&a),
                Piece::Reasoning(_) => {}
                Piece::AnswerWasReasoning => answer.clear(),
            }
        }
        // A cut inside the reasoning leaves thoughts, whose numbers are no order.
        if splitter.is_inside() && answer.trim().is_empty() {
            return Err(Fallback::ReasoningOpen);
        }
        let order = parse_order(&answer, shown);
        if order.is_empty() {
            Err(Fallback::Unparseable)
        } else {
            Ok(order)
        }
    }
}

/// The rerank prompt for `candidates` (already cut to the ones shown), numbered from 1.
/// `max_tokens` and `thinking_off` are left for the caller to set.
pub fn rerank_request(question: &str, candidates: &[Candidate]) -> ChatRequest {
    let mut user = format!(
        "Question: {}\n\nPassages:\n",
        clip(question, QUESTION_CHARS)
    );
    for (i, c) in candidates.iter().enumerate() {
        user.push_str(&format!(
            "[{}] ({}) {}\n",
            i + 1,
            clip(&c.label, LABEL_CHARS),
            clip(&c.text, PASSAGE_CHARS)
        ));
    }
    user.push('\n');
    user.push_str(INSTRUCTION);
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, SYSTEM_PROMPT),
            ChatMessage::new(Role::User, user),
        ],
        max_tokens: DEFAULT_MAX_TOKENS,
        temperature: Some(0.0),
        continue_final: false,
        thinking_off: false,
    }
}

/// `text` on one line (whitespace runs collapsed, so a passage cannot fake a `[k]` line),
/// cut to `max` characters with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for ch in word.chars() {
            if count == max {
                out.push('…');
                return out;
            }
            out.push(ch);
            count += 1;
        }
    }
    out
}

/// The model's order from its raw output: 0-based indices into `n` passages, best first,
/// without duplicates. Empty when no passage number in `1..=n` can be read.
///
/// Tolerates the usual drift: think blocks (closed, missing their opening tag, or cut off at
/// the end) are dropped; when any numbers stand in square brackets (`[3][1]`, `1. [3]`,
/// `[3, 1, 7]`) only those count, since echoed passages and numbered lists add others; a
/// numbered list (`1. 3\n2. 1`) gives the first number after each rank; otherwise every
/// standalone number counts (`3, 1, 7`, `3 > 1 > 7`, `Passage 3, then passage 1`). Numbers
/// glued to words or decimals (`gpl-3`, `p.4`, `2.5`, `3rd`) are not passage numbers.
pub fn parse_order(output: &str, n: usize) -> Vec<usize> {
    let answer = final_answer(output);
    let found = numbers(answer);
    let in_range = |v: u64| v >= 1 && v <= n as u64;
    let bracketed: Vec<u64> = {
        let spans = bracket_spans(answer);
        found
            .iter()
            .filter(|t| spans.iter().any(|&(a, b)| a < t.start && t.end <= b))
            .map(|t| t.value)
            .collect()
    };
    let picked = if bracketed.iter().any(|&v| in_range(v)) {
        bracketed
    } else if let Some(ranked) = ranked_list(answer) {
        ranked
    } else {
        found.iter().map(|t| t.value).collect()
    };
    let mut order = Vec::new();
    for v in picked {
        if in_range(v) && !order.contains(&(v as usize - 1)) {
            order.push(v as usize - 1);
        }
    }
    order
}

/// `ranked` followed by the indices of `0..n` it leaves out, in their original order.
fn complete_order(mut ranked: Vec<usize>, n: usize) -> Vec<usize> {
    let mut seen = vec![false; n];
    ranked.retain(|&i| i < n && !std::mem::replace(&mut seen[i], true));
    ranked.extend((0..n).filter(|&i| !seen[i]));
    ranked
}

/// `items` in `order` when it is a permutation of their indices; otherwise, and for `None`,
/// unchanged (the fused order).
pub fn reorder<T>(items: Vec<T>, order: Option<&[usize]>) -> Vec<T> {
    let Some(order) = order else {
        return items;
    };
    let n = items.len();
    let mut seen = vec![false; n];
    let valid = order.len() == n
        && order
            .iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
    if !valid {
        return items;
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.iter().filter_map(|&i| slots[i].take()).collect()
}

/// A standalone number in the answer, with its byte span.
#[derive(Debug, Clone, Copy)]
struct Num {
    start: usize,
    end: usize,
    value: u64,
}

/// The standalone numbers of `s`: ASCII digit runs not glued to a word or a decimal.
fn numbers(s: &str) -> Vec<Num> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let end = i;
        let mut before = s[..start].chars().rev();
        let glued_before = match before.next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.' => true,
            // "gpl-3" is a name; "3-1-7" and " -3" are not.
            Some('-') => before.next().is_some_and(|c| c.is_ascii_alphabetic()),
            _ => false,
        };
        let mut after = s[end..].chars();
        let glued_after = match after.next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => true,
            // "3.txt", "2.5"; a sentence or rank ending in "3." is fine.
            Some('.') => after.next().is_some_and(|c| c.is_ascii_alphanumeric()),
            _ => false,
        };
        if glued_before || glued_after {
            continue;
        }
        // Too long for a passage number: saturate so it is out of range, never an overflow.
        let value = s[start..end].parse().unwrap_or(u64::MAX);
        out.push(Num { start, end, value });
    }
    out
}

/// Byte spans of closed, unnested square-bracket groups (`[…]`, `［…］`, `【…】`), from the
/// opening bracket to the start of the closing one.
fn bracket_spans(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut open: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '[' | '［' | '【' => open = Some(i),
            ']' | '］' | '】' => {
                if let Some(a) = open.take() {
                    spans.push((a, i));
                }
            }
            _ => {}
        }
    }
    spans
}

/// The numbers of a numbered list (`1. 3`, `2) 1`, `3: 7`), one per rank: the first number
/// after it. `None` unless the answer has lines starting with ranks 1, 2, 3… in order and at
/// least one of them has a number after its rank (`1.\n2.` is a list of bare numbers).
/// Lines without a rank (a preamble such as "The 3 best:") are ignored in a list.
fn ranked_list(s: &str) -> Option<Vec<u64>> {
    let mut values = Vec::new();
    let mut expected = 1;
    let mut any_value = false;
    for line in s.lines() {
        let body = line.trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, '-' | '*' | '•' | '#' | '+')
        });
        let digits = body.len() - body.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            continue;
        }
        let rest = &body[digits..];
        let mut marker = rest.chars();
        let is_rank = matches!(marker.next(), Some('.' | ')' | ':'))
            && marker.next().is_none_or(char::is_whitespace);
        if !is_rank {
            continue;
        }
        if body[..digits].parse::<u64>().ok() != Some(expected) {
            return None;
        }
        expected += 1;
        if let Some(first) = numbers(&rest[1..]).first() {
            values.push(first.value);
            any_value = true;
        }
    }
    any_value.then_some(values)
}

/// Cache key: a digest of the question and every candidate, each length-prefixed so that no
/// two different sets can run together into the same bytes.
fn cache_key(question: &str, candidates: &[Candidate]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(question);
    for c in candidates {
        field(&c.label);
        field(&c.text);
    }
    h.update((candidates.len() as u64).to_le_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{FinishReason, ItemStream, ServerFacts, StreamItem};
    use async_trait::async_trait;
    use futures_util::StreamExt;
    use std::sync::atomic::AtomicUsize;

    // ---- parse_order ----

    #[test]
    fn comma_separated_list() {
        assert_eq!(parse_order("3, 1, 7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3,1,7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("  3 ,1 ,  7.\n", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("Passages: 2, 4", 5), vec![1, 3]);
    }

    #[test]
    fn other_separators() {
        assert_eq!(parse_order("3 > 1 > 7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3>1>7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3 1 7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3; 1; 7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3-1-7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3，1，7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("3 and 1", 10), vec![2, 0]);
    }

    #[test]
    fn bracketed_numbers() {
        assert_eq!(parse_order("[3][1][7]", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("[3] [1]", 10), vec![2, 0]);
        assert_eq!(parse_order("[3, 1, 7]", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("{\"order\": [3, 1, 7]}", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("【3】【1】", 10), vec![2, 0]);
        assert_eq!(parse_order("[ 2 ] then [ 1 ]", 3), vec![1, 0]);
    }

    #[test]
    fn bracketed_numbers_win_over_ranks_and_echoed_text() {
        assert_eq!(parse_order("1. [3]\n2. [1]\n3. [7]", 10), vec![2, 0, 6]);
        // An echoed passage: its label and text hold numbers that are no passage numbers.
        assert_eq!(
            parse_order("[4] (report.pdf p.2) Revenue grew 5 percent in 2023.", 10),
            vec![3]
        );
        assert_eq!(
            parse_order("The best are 2 and [5], then 9", 10),
            vec![4],
            "any bracketed number makes the others noise"
        );
    }

    #[test]
    fn out_of_range_brackets_do_not_hide_plain_numbers() {
        assert_eq!(parse_order("[0] 3, 1", 5), vec![2, 0]);
        assert_eq!(parse_order("[12] 3, 1", 5), vec![2, 0]);
    }

    #[test]
    fn numbered_list_takes_the_number_after_each_rank() {
        assert_eq!(parse_order("1. 3\n2. 1\n3. 7", 10), vec![2, 0, 6]);
        assert_eq!(parse_order("1) 3\n2) 1", 10), vec![2, 0]);
        assert_eq!(parse_order("1: 3\n2: 1", 10), vec![2, 0]);
        assert_eq!(parse_order("- 1. 4\n- 2. 2", 10), vec![3, 1]);
        assert_eq!(
            parse_order("1. Passage 3 (section 7 of the license)\n2. Passage 1", 10),
            vec![2, 0],
            "only the first number after a rank"
        );
        assert_eq!(
            parse_order("The 3 best passages:\n1. 5\n2. 2\n3. 4", 10),
            vec![4, 1, 3],
            "a preamble's numbers are not in the list"
        );
        assert_eq!(
            parse_order("1. 25\n2. 4", 10),
            vec![3],
            "an out-of-range entry is dropped, the ranks are not taken instead"
        );
    }

    #[test]
    fn numbers_that_are_not_ranks_are_values() {
        // Bare numbers with periods: not a 1, 2, 3… list.
        assert_eq!(parse_order("3.\n1.\n7.", 10), vec![2, 0, 6]);
        // Ranks with nothing after them are the numbers themselves.
        assert_eq!(parse_order("1.\n2.\n3.", 10), vec![0, 1, 2]);
        assert_eq!(parse_order("2.", 10), vec![1]);
        // One line starting "3:" is not rank 3 of a list.
        assert_eq!(parse_order("3: most relevant, then 1", 10), vec![2, 0]);
    }

    #[test]
    fn prose_drift() {
        assert_eq!(parse_order("Passage 3, then passage 1", 10), vec![2, 0]);
        assert_eq!(
            parse_order("The most useful passages are 4 and 2.", 10),
            vec![3, 1]
        );
        assert_eq!(parse_order("Passage #2 is best, then #5.", 10), vec![1, 4]);
    }

    #[test]
    fn numbers_glued_to_words_or_decimals_are_ignored() {
        assert_eq!(parse_order("gpl-3.txt p.4 says 2", 10), vec![1]);
        assert_eq!(parse_order("2.5 of 3", 10), vec![2]);
        assert_eq!(parse_order("the 3rd, v2 and 1", 10), vec![0]);
        assert_eq!(parse_order("x_4 9", 10), vec![8]);
    }

    #[test]
    fn duplicates_and_out_of_range_are_dropped() {
        assert_eq!(parse_order("3, 3, 1, 3", 5), vec![2, 0]);
        assert_eq!(parse_order("0, 6, 2, 99999999999999999999999", 5), vec![1]);
        assert_eq!(parse_order("0", 5), Vec::<usize>::new());
        assert_eq!(parse_order("1, 2", 0), Vec::<usize>::new());
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse_order("I cannot help with that.", 10).is_empty());
        assert!(parse_order("", 10).is_empty());
        assert!(parse_order("None of the passages are relevant.", 10).is_empty());
        assert!(parse_order("[a][b]", 10).is_empty());
    }

    #[test]
    fn think_blocks_are_dropped() {
        assert_eq!(
            parse_order("<think>Passage 5 mentions 2 things.</think>\n3, 1", 10),
            vec![2, 0]
        );
        // R1: the opening tag is in the prompt.
        assert_eq!(
            parse_order("Passage 5 looks good, 6 too.\n</think>\n\n2, 4", 10),
            vec![1, 3]
        );
        // Cut off inside the reasoning.
        assert!(parse_order("<think>Passage 5 looks good, and 6", 10).is_empty());
        assert_eq!(
            parse_order("3, 1 <think>maybe 5 instead", 10),
            vec![2, 0],
            "a block left open at the end is dropped"
        );
        assert_eq!(
            parse_order("<think>a 4</think><think>b 5</think>[2]", 10),
            vec![1]
        );
    }

    #[test]
    fn long_lists_keep_their_order() {
        let text: Vec<String> = (1..=20).rev().map(|i| i.to_string()).collect();
        let order = parse_order(&text.join(", "), 20);
        assert_eq!(order, (0..20).rev().collect::<Vec<_>>());
    }

    #[test]
    fn multibyte_text_around_numbers_is_safe() {
        assert_eq!(parse_order("第 3 段，然后 1 😀", 5), vec![2, 0]);
        assert_eq!(parse_order("é3é, 2", 5), vec![2, 1]);
    }

    // ---- helpers ----

    #[test]
    fn omitted_candidates_follow_in_their_original_order() {
        assert_eq!(complete_order(vec![3, 1], 5), vec![3, 1, 0, 2, 4]);
        assert_eq!(complete_order(vec![], 3), vec![0, 1, 2]);
        assert_eq!(complete_order(vec![2, 2, 9], 3), vec![2, 0, 1]);
    }

    #[test]
    fn reorder_applies_only_permutations() {
        let fused = vec!["a", "b", "c"];
        assert_eq!(
            reorder(fused.clone(), Some(&[2, 0, 1])),
            vec!["c", "a", "b"]
        );
        assert_eq!(reorder(fused.clone(), None), fused);
        assert_eq!(reorder(fused.clone(), Some(&[2, 0])), fused);
        assert_eq!(reorder(fused.clone(), Some(&[2, 2, 0])), fused);
        assert_eq!(reorder(fused.clone(), Some(&[0, 1, 3])), fused);
    }

    #[test]
    fn clip_cuts_at_a_char_boundary_on_one_line() {
        assert_eq!(clip("a\n\n b\tc", 10), "a b c");
        assert_eq!(clip("ééééé", 3), "ééé…");
        assert_eq!(clip("abc", 3), "abc");
        let long = "😀".repeat(PASSAGE_CHARS + 50);
        assert_eq!(
            clip(&long, PASSAGE_CHARS).chars().count(),
            PASSAGE_CHARS + 1
        );
    }

    #[test]
    fn prompt_numbers_passages_from_one() {
        let req = rerank_request(
            "What does section 7 allow?",
            &[
                Candidate::new("gpl-3.txt p.4", "Additional\npermissions are…"),
                Candidate::new("b.md", "x".repeat(2000)),
            ],
        );
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[0].content, SYSTEM_PROMPT);
        let user = &req.messages[1].content;
        assert!(user.starts_with("Question: What does section 7 allow?\n\nPassages:\n"));
        assert!(user.contains("[1] (gpl-3.txt p.4) Additional permissions are…\n"));
        assert!(user.contains(&format!("[2] (b.md) {}…\n", "x".repeat(PASSAGE_CHARS))));
        assert!(user.ends_with(INSTRUCTION));
        assert_eq!(req.temperature, Some(0.0));
        assert!(!req.continue_final);
    }

    #[test]
    fn cache_keys_tell_sets_apart() {
        let a = [Candidate::new("x", "ab"), Candidate::new("y", "c")];
        let b = [Candidate::new("x", "a"), Candidate::new("y", "bc")];
        assert_ne!(cache_key("q", &a), cache_key("q", &b));
        assert_ne!(cache_key("q", &a), cache_key("q2", &a));
        assert_ne!(cache_key("q", &a), cache_key("q", &a[..1]));
        let same = [Candidate::new("x", "ab"), Candidate::new("y", "c")];
        assert_eq!(cache_key("q", &a), cache_key("q", &same));
    }

    #[test]
    fn the_cache_forgets_the_least_recently_used() {
        // The cache is read with `refresh`, which makes an order read the newest.
        let mut lru = BoundedMap::new(2);
        lru.insert([1; 32], vec![1]);
        lru.insert([2; 32], vec![2]);
        assert_eq!(lru.refresh(&[1; 32]).cloned(), Some(vec![1]));
        lru.insert([3; 32], vec![3]);
        assert_eq!(lru.refresh(&[2; 32]).cloned(), None);
        assert_eq!(lru.refresh(&[1; 32]).cloned(), Some(vec![1]));
        assert_eq!(lru.refresh(&[3; 32]).cloned(), Some(vec![3]));
        lru.insert([3; 32], vec![4]);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.refresh(&[3; 32]).cloned(), Some(vec![4]));
    }

    // ---- rerank with an in-process backend ----

    /// What the fake backend does with a request.
    enum Reply {
        /// Streams this content in small chunks, then finishes.
        Text(&'static str, FinishReason),
        /// Streams this content apart as reasoning, then this content, then finishes.
        Apart(&'static str, &'static str),
        /// Fails to start.
        Fail(LlmError),
        /// Waits this long before answering "1".
        Slow(Duration),
        /// Sends some content, then never another item.
        Stall,
    }

    struct Fake {
        reply: Reply,
        facts: ServerFacts,
        calls: AtomicUsize,
        requests: Mutex<Vec<ChatRequest>>,
    }

    impl Fake {
        fn new(reply: Reply) -> Arc<Self> {
            Self::with_facts(reply, ServerFacts::default())
        }

        fn with_facts(reply: Reply, facts: ServerFacts) -> Arc<Self> {
            Arc::new(Self {
                reply,
                facts,
                calls: AtomicUsize::new(0),
                requests: Mutex::new(Vec::new()),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn chunks(text: &str) -> Vec<Result<StreamItem, LlmError>> {
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(3)
            .map(|c| Ok(StreamItem::Content(c.iter().collect())))
            .collect()
    }

    #[async_trait]
    impl ChatBackend for Fake {
        async fn stream(&self, request: &ChatRequest) -> Result<ItemStream, LlmError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.requests.lock().unwrap().push(request.clone());
            let items = match &self.reply {
                Reply::Text(text, finish) => {
                    let mut items = chunks(text);
                    items.push(Ok(StreamItem::Finish(finish.clone())));
                    items
                }
                Reply::Apart(reasoning, text) => {
                    let mut items = vec![Ok(StreamItem::Reasoning(reasoning.to_string()))];
                    items.extend(chunks(text));
                    items.push(Ok(StreamItem::Finish(FinishReason::Stop)));
                    items
                }
                Reply::Fail(e) => return Err(e.clone()),
                Reply::Slow(d) => {
                    tokio::time::sleep(*d).await;
                    let mut items = chunks("1");
                    items.push(Ok(StreamItem::Finish(FinishReason::Stop)));
                    items
                }
                Reply::Stall => {
                    let s = futures_util::stream::iter(chunks("3, "))
                        .chain(futures_util::stream::pending());
                    return Ok(Box::pin(s));
                }
            };
            Ok(Box::pin(futures_util::stream::iter(items)))
        }

        async fn facts(&self) -> ServerFacts {
            self.facts
        }
    }

    fn candidates(n: usize) -> Vec<Candidate> {
        (1..=n)
            .map(|i| Candidate::new(format!("doc.txt p.{i}"), format!("Passage text {i}.")))
            .collect()
    }

    fn reranker(fake: &Arc<Fake>) -> Reranker {
        Reranker::new(fake.clone(), Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_good_answer_gives_a_permutation() {
        let fake = Fake::new(Reply::Text("3, 1, 2, 4", FinishReason::Stop));
        let order = reranker(&fake).rerank("q?", &candidates(4)).await;
        assert_eq!(order, Some(vec![2, 0, 1, 3]));
        let req = fake.requests.lock().unwrap()[0].clone();
        assert_eq!(req.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(req.temperature, Some(0.0));
    }

    #[tokio::test]
    async fn omitted_candidates_are_appended_in_their_fused_order() {
        let fake = Fake::new(Reply::Text("[4] [2]", FinishReason::Stop));
        let order = reranker(&fake).rerank("q?", &candidates(5)).await;
        assert_eq!(order, Some(vec![3, 1, 0, 2, 4]));
    }

    #[tokio::test]
    async fn garbage_keeps_the_fused_order() {
        let fake = Fake::new(Reply::Text("I cannot help with that.", FinishReason::Stop));
        let r = reranker(&fake);
        let fused = candidates(4);
        let order = r.rerank("q?", &fused).await;
        assert_eq!(order, None);
        assert_eq!(reorder(fused.clone(), order.as_deref()), fused);
    }

    #[tokio::test]
    async fn an_error_keeps_the_fused_order() {
        let fake = Fake::new(Reply::Fail(LlmError::Unreachable {
            url: "http://127.0.0.1:9/v1".into(),
            reason: "Connection refused".into(),
        }));
        assert_eq!(reranker(&fake).rerank("q?", &candidates(4)).await, None);
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test]
    async fn a_slow_server_keeps_the_fused_order_within_the_limit() {
        let limit = Duration::from_millis(100);
        for reply in [Reply::Slow(Duration::from_secs(60)), Reply::Stall] {
            let fake = Fake::new(reply);
            let r = Reranker::new(fake.clone(), limit);
            let started = std::time::Instant::now();
            assert_eq!(r.rerank("q?", &candidates(4)).await, None);
            let took = started.elapsed();
            assert!(took >= limit, "{took:?}");
            // Generous: a loaded 2-core machine may be slow to wake the timer.
            assert!(took < Duration::from_secs(5), "{took:?}");
            assert_eq!(fake.calls(), 1);
        }
    }

    #[tokio::test]
    async fn a_cut_inside_the_reasoning_keeps_the_fused_order() {
        let fake = Fake::new(Reply::Text(
            "<think>Passage 3 is about licences and 2",
            FinishReason::Length,
        ));
        assert_eq!(reranker(&fake).rerank("q?", &candidates(4)).await, None);

        // R1 distills start inside the block: the numbers of the thoughts are no order.
        let fake = Fake::new(Reply::Text(
            "Passage 3 is about licences and 2",
            FinishReason::Length,
        ));
        let r = reranker(&fake).with_think_start(ThinkStart::Inside);
        assert_eq!(r.rerank("q?", &candidates(4)).await, None);
    }

    #[tokio::test]
    async fn reasoning_before_the_answer_is_skipped() {
        let fake = Fake::new(Reply::Text(
            "Passage 4 mentions 1 thing.\n</think>\n\n2, 1",
            FinishReason::Stop,
        ));
        let r = reranker(&fake).with_think_start(ThinkStart::Inside);
        assert_eq!(r.rerank("q?", &candidates(4)).await, Some(vec![1, 0, 2, 3]));

        let fake = Fake::new(Reply::Text(
            "<think>Passage 4 mentions 1 thing.</think>2, 1",
            FinishReason::Stop,
        ));
        assert_eq!(
            reranker(&fake).rerank("q?", &candidates(4)).await,
            Some(vec![1, 0, 2, 3])
        );

        // vLLM's reasoning parser sends the thoughts apart: the content is all answer.
        let fake = Fake::new(Reply::Apart("Passage 4 mentions 1 thing.", "2, 1"));
        let r = reranker(&fake).with_think_start(ThinkStart::Inside);
        assert_eq!(r.rerank("q?", &candidates(4)).await, Some(vec![1, 0, 2, 3]));
    }

    #[tokio::test]
    async fn a_list_cut_at_the_output_cap_still_counts() {
        let fake = Fake::new(Reply::Text("3, 1,", FinishReason::Length));
        assert_eq!(
            reranker(&fake).rerank("q?", &candidates(4)).await,
            Some(vec![2, 0, 1, 3])
        );
    }

    #[tokio::test]
    async fn the_same_question_and_set_hit_the_cache() {
        let fake = Fake::new(Reply::Text("2, 1", FinishReason::Stop));
        let r = reranker(&fake);
        let set = candidates(3);
        assert_eq!(r.rerank("q?", &set).await, Some(vec![1, 0, 2]));
        assert_eq!(r.rerank("q?", &set).await, Some(vec![1, 0, 2]));
        assert_eq!(fake.calls(), 1);
        assert_eq!(r.model_calls(), 1);
        // Another question, or another set, asks again.
        r.rerank("other?", &set).await;
        r.rerank("q?", &candidates(4)).await;
        assert_eq!(fake.calls(), 3);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let fake = Fake::new(Reply::Text("no idea", FinishReason::Stop));
        let r = reranker(&fake);
        let set = candidates(3);
        assert_eq!(r.rerank("q?", &set).await, None);
        assert_eq!(r.rerank("q?", &set).await, None);
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test]
    async fn only_the_first_twenty_are_shown() {
        let fake = Fake::new(Reply::Text("20, 21, 25", FinishReason::Stop));
        let order = reranker(&fake).rerank("q?", &candidates(25)).await.unwrap();
        let mut expected = vec![19];
        expected.extend((0..25).filter(|&i| i != 19));
        assert_eq!(order, expected);
        let req = fake.requests.lock().unwrap()[0].clone();
        assert!(req.messages[1].content.contains("[20] (doc.txt p.20)"));
        assert!(!req.messages[1].content.contains("[21]"));
    }

    #[tokio::test]
    async fn fewer_than_two_candidates_need_no_call() {
        let fake = Fake::new(Reply::Text("1", FinishReason::Stop));
        let r = reranker(&fake);
        assert_eq!(r.rerank("q?", &[]).await, Some(vec![]));
        assert_eq!(r.rerank("q?", &candidates(1)).await, Some(vec![0]));
        assert_eq!(fake.calls(), 0);
    }

    #[tokio::test]
    async fn thinking_is_turned_off_on_vllm_only() {
        let vllm = ServerFacts {
            context_length: Some(16384),
            all_vllm: true,
            reported: true,
            ..ServerFacts::default()
        };
        let fake = Fake::with_facts(Reply::Text("1", FinishReason::Stop), vllm);
        reranker(&fake).rerank("q?", &candidates(2)).await;
        assert!(fake.requests.lock().unwrap()[0].thinking_off);

        let llama_cpp = ServerFacts {
            context_length: None,
            all_vllm: false,
            reported: true,
            ..ServerFacts::default()
        };
        let fake = Fake::with_facts(Reply::Text("1", FinishReason::Stop), llama_cpp);
        reranker(&fake).rerank("q?", &candidates(2)).await;
        assert!(!fake.requests.lock().unwrap()[0].thinking_off);
    }

    #[test]
    fn passages_convert_to_candidates() {
        let p = Passage {
            score: 0.5,
            name: "gpl-3.txt".into(),
            page: Some(4),
            citation: "gpl-3.txt p.4".into(),
            heading: None,
            text: "Additional permissions".into(),
        };
        assert_eq!(
            Candidate::from(&p),
            Candidate::new("gpl-3.txt p.4", "Additional permissions")
        );
    }
}
