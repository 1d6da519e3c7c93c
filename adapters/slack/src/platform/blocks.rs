//! Block Kit for answers: the message body with the answer in a `markdown` block and a short
//! mrkdwn notification fallback, the feedback buttons, and the plain-text cuts (titles,
//! statuses, ephemeral text) that Slack's limits call for.

use serde_json::{json, Map, Value};

use crate::markdown::{to_mrkdwn, MESSAGE_TEXT_MAX};

/// The `action_id` of the feedback buttons, for the inbound side to recognise a click.
pub const FEEDBACK_ACTION_ID: &str = "anchorbot_feedback";

/// The feedback button values: thumbs up, thumbs down.
pub const FEEDBACK_POSITIVE: &str = "good";

/// See [`FEEDBACK_POSITIVE`].
pub const FEEDBACK_NEGATIVE: &str = "bad";

/// Characters of the notification fallback `text`: a preview, not the answer.
const FALLBACK_CHARS: usize = 280;

/// Characters of an assistant thread's title.
const TITLE_CHARS: usize = 60;

/// The body of `chat.postMessage` (no `ts`) or `chat.update` (`ts`): the answer in a
/// `markdown` block, a short notification fallback in `text`, and with `feedback` the
/// feedback buttons under the answer.
pub(super) fn message_body(
    channel: &str,
    thread: Option<&str>,
    ts: Option<&str>,
    markdown: &str,
    feedback: bool,
) -> Value {
    let mut blocks = vec![markdown_block(markdown)];
    if feedback {
        blocks.push(feedback_block());
    }
    let mut body = Map::new();
    body.insert("channel".into(), json!(channel));
    if let Some(ts) = ts {
        body.insert("ts".into(), json!(ts));
    }
    if let Some(thread) = thread {
        body.insert("thread_ts".into(), json!(thread));
    }
    body.insert("text".into(), json!(fallback_text(markdown)));
    body.insert("blocks".into(), Value::Array(blocks));
    Value::Object(body)
}

/// A `markdown` block holding `markdown` (Slack renders standard Markdown in it).
fn markdown_block(markdown: &str) -> Value {
    json!({ "type": "markdown", "text": markdown })
}

/// The `context_actions` block with the 👍/👎 `feedback_buttons`.
pub fn feedback_block() -> Value {
    json!({
        "type": "context_actions",
        "elements": [{
            "type": "feedback_buttons",
            "action_id": FEEDBACK_ACTION_ID,
            "positive_button": {
                "text": { "type": "plain_text", "text": "👍" },
                "value": FEEDBACK_POSITIVE,
                "accessibility_label": "Mark this answer as helpful",
            },
            "negative_button": {
                "text": { "type": "plain_text", "text": "👎" },
                "value": FEEDBACK_NEGATIVE,
                "accessibility_label": "Mark this answer as not helpful",
            },
        }],
    })
}

/// The notification fallback: the start of the answer, in mrkdwn. Cut before converting, so
/// the conversion balances what the cut opened.
fn fallback_text(markdown: &str) -> String {
    let cut = truncate_chars(markdown.trim(), FALLBACK_CHARS);
    let text = to_mrkdwn(&cut);
    if text.trim().is_empty() {
        "…".to_string()
    } else {
        text
    }
}

/// Markdown as mrkdwn for the surfaces that take only `text`, within Slack's text limit.
pub(super) fn mrkdwn_text(markdown: &str) -> String {
    let text = to_mrkdwn(markdown);
    if text.chars().count() > MESSAGE_TEXT_MAX {
        truncate_chars(&text, MESSAGE_TEXT_MAX)
    } else {
        text
    }
}

/// An assistant thread's title from the start of its answer: the first line, without
/// Markdown markers, at most [`TITLE_CHARS`] characters.
pub(super) fn title_of(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(|c: char| "#>-+ ".contains(c));
    let plain: String = line.chars().filter(|c| !"*_`~".contains(*c)).collect();
    let plain = plain.trim();
    (!plain.is_empty()).then(|| truncate_chars(plain, TITLE_CHARS))
}

/// `s` cut to at most `max` characters, ending in "…" when cut.
pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feedback_block_has_slacks_documented_shape() {
        let expected = json!({"type":"context_actions","elements":[{"type":"feedback_buttons","action_id":"anchorbot_feedback","positive_button":{"text":{"type":"plain_text","text":"👍"},"value":"good","accessibility_label":"Mark this answer as helpful"},"negative_button":{"text":{"type":"plain_text","text":"👎"},"value":"bad","accessibility_label":"Mark this answer as not helpful"}}]});
        assert_eq!(feedback_block(), expected);
        // slack-morphism models it too: the shape is one it reads back.
        let typed: slack_morphism::prelude::SlackBlock =
            serde_json::from_value(expected).expect("a typed block");
        assert!(matches!(
            typed,
            slack_morphism::prelude::SlackBlock::ContextActions(_)
        ));
    }

    #[test]
    fn an_answer_lives_in_a_markdown_block_with_a_short_fallback() {
        let answer = format!("**Yes.** See `a<b`.\n\n{}", "word ".repeat(200));
        let body = message_body("C1", Some("1.5"), None, &answer, false);
        assert_eq!(body["channel"], "C1");
        assert_eq!(body["thread_ts"], "1.5");
        assert!(body.get("ts").is_none());
        assert_eq!(
            body["blocks"],
            json!([{ "type": "markdown", "text": answer }])
        );
        let text = body["text"].as_str().expect("text");
        assert!(text.starts_with("*Yes.* See `a&lt;b`."), "{text}");
        assert!(text.chars().count() <= FALLBACK_CHARS + 10, "{text}");

        let update = message_body("C1", None, Some("2.5"), "done", true);
        assert_eq!(update["ts"], "2.5");
        assert!(update.get("thread_ts").is_none());
        assert_eq!(
            update["blocks"],
            json!([{ "type": "markdown", "text": "done" }, feedback_block()])
        );
    }

    #[test]
    fn the_fallback_never_is_empty_and_fences_stay_balanced() {
        assert_eq!(fallback_text("   "), "…");
        let code = format!("```rust\n{}\n```", "let x = 1;\n".repeat(100));
        let text = fallback_text(&code);
        assert_eq!(text.matches("```").count() % 2, 0, "{text}");
    }

    #[test]
    fn titles_come_from_the_first_line_of_the_answer() {
        assert_eq!(
            title_of("\n## **Quarterly** report\nmore").as_deref(),
            Some("Quarterly report")
        );
        assert_eq!(title_of("   \n  ").as_deref(), None);
        let long = title_of(&"word ".repeat(40)).expect("title");
        assert_eq!(long.chars().count(), TITLE_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn long_ephemeral_text_is_cut_to_slacks_limit() {
        let text = mrkdwn_text(&"a".repeat(MESSAGE_TEXT_MAX + 5));
        assert_eq!(text.chars().count(), MESSAGE_TEXT_MAX);
        assert_eq!(mrkdwn_text("**hi**"), "*hi*");
    }
}
