//! Metric names and the one place that installs the Prometheus recorder. Call sites use the
//! `metrics` facade with these names; without an installed recorder (the ops server is off,
//! or a one-shot command runs) every call is a no-op.
//!
//! Labels stay small and bounded: outcomes, kinds, endpoint URLs from the configuration,
//! platform names and route templates. Never a user id or a conversation key.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Turns and other handled events, by `outcome` (the engine's `Outcome` variants).
pub const TURNS: &str = "anchorbot_turns_total";
/// Seconds from the start of a turn (the message taken up) to the first streamed item.
pub const FIRST_TOKEN_SECONDS: &str = "anchorbot_time_to_first_token_seconds";
/// Seconds a question-and-answer turn took, from the event to its final reply.
pub const TURN_SECONDS: &str = "anchorbot_turn_seconds";
/// Prompt tokens sent for turns (first rounds, as counted when the prompt was fitted).
pub const TOKENS_IN: &str = "anchorbot_tokens_in_total";
/// Answer tokens of committed turns (counted with the prompt counter).
pub const TOKENS_OUT: &str = "anchorbot_tokens_out_total";
/// Continuation rounds after `finish_reason = "length"`.
pub const CONTINUATION_ROUNDS: &str = "anchorbot_continuation_rounds_total";
/// Characters the language filter removed from answers.
pub const FILTERED_CHARS: &str = "anchorbot_filtered_chars_total";
/// Summarizations that folded old turns into memory.
pub const SUMMARIZATIONS: &str = "anchorbot_summarizations_total";
/// Summarizations whose result was refused (memory kept as it was).
pub const SUMMARIZATIONS_REFUSED: &str = "anchorbot_summarizations_refused_total";
/// Documents ingested.
pub const DOCUMENTS: &str = "anchorbot_documents_ingested_total";
/// Pages read from ingested documents.
pub const PAGES: &str = "anchorbot_pages_total";
/// Pages whose OCR failed.
pub const OCR_FAILURES: &str = "anchorbot_ocr_failures_total";
/// 1 when a model endpoint is healthy, 0 when it is down, by `endpoint` (its URL without
/// credentials or query).
pub const ENDPOINT_UP: &str = "anchorbot_endpoint_up";
/// Events waiting in the per-conversation queues, summed over conversations.
pub const QUEUE_DEPTH: &str = "anchorbot_queue_depth";
/// Feedback on answers, by `kind` (`up`, `down`).
pub const FEEDBACK: &str = "anchorbot_feedback_total";

/// Histogram buckets for the `_seconds` metrics: streaming answers take seconds to minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// The process-wide recorder's handle. The `metrics` facade has one global recorder, so it is
/// installed once; a second app in the same process shares it.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Help texts for `/metrics`.
fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(TURNS, "Handled events by outcome.");
    describe_histogram!(
        FIRST_TOKEN_SECONDS,
        Unit::Seconds,
        "Time from the start of a turn to its first streamed item."
    );
    describe_histogram!(
        TURN_SECONDS,
        Unit::Seconds,
        "Time a turn took to its final reply."
    );
    describe_counter!(TOKENS_IN, "Prompt tokens sent for turns.");
    describe_counter!(TOKENS_OUT, "Answer tokens of committed turns.");
    describe_counter!(
        CONTINUATION_ROUNDS,
        "Continuation rounds after the output limit."
    );
    describe_counter!(FILTERED_CHARS, "Characters the language filter removed.");
    describe_counter!(SUMMARIZATIONS, "Summarizations folded into memory.");
    describe_counter!(
        SUMMARIZATIONS_REFUSED,
        "Summarizations refused; memory kept."
    );
    describe_counter!(DOCUMENTS, "Documents ingested.");
    describe_counter!(PAGES, "Pages read from documents.");
    describe_counter!(OCR_FAILURES, "Pages whose OCR failed.");
    describe_gauge!(ENDPOINT_UP, "1 if the model endpoint is healthy, else 0.");
    describe_gauge!(QUEUE_DEPTH, "Events waiting in the conversation queues.");
    describe_counter!(FEEDBACK, "Feedback on answers by kind.");
    anchorbot_platform::metrics::describe();
}

/// An endpoint URL fit for a label: scheme, host, port and path, without user info, query or
/// fragment, so a key or password in the URL never reaches `/metrics`.
pub fn endpoint_label(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_carry_no_credentials() {
        assert_eq!(
            endpoint_label("http://user:secret@vllm:8005/v1?key=abc#x"),
            "http://vllm:8005/v1"
        );
        assert_eq!(
            endpoint_label("http://localhost:8005/v1"),
            "http://localhost:8005/v1"
        );
        assert_eq!(endpoint_label("vllm:8005"), "vllm:8005");
    }
}
