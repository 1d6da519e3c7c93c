//! What an error from a native streaming method (`chat.startStream`, `chat.appendStream`,
//! `chat.stopStream`) says about streaming: that the workspace has none, that the channel has
//! none, or only that this one call failed.
//!
//! Only the first two are remembered. A per-call error (bad arguments, a message too long, a
//! thread gone, a rate limit, Slack having a bad moment) makes that one answer fall back to
//! post plus update; the next answer streams again. An error code not listed here is a
//! per-call error: one odd answer must never switch streaming off for everyone.

use hyper::StatusCode;
use slack_morphism::errors::SlackClientError;

/// How far a streaming error reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The workspace (its plan, server, token or installation) has no streaming: every later
    /// answer there posts and updates.
    Workspace,
    /// This kind of channel takes no streams: later answers in the channel post and update.
    Channel,
    /// Only this call failed: this answer posts and updates.
    Call,
}

/// The reach of a streaming method's error.
pub fn reach(e: &SlackClientError) -> Reach {
    match e {
        SlackClientError::ApiError(a) => reach_of_code(&a.code),
        // A server without the methods at all (an older Enterprise server, a proxy).
        SlackClientError::HttpError(h) if h.status_code == StatusCode::NOT_FOUND => {
            Reach::Workspace
        }
        _ => Reach::Call,
    }
}

/// The reach of a Web API error code from a streaming method.
pub fn reach_of_code(code: &str) -> Reach {
    match code {
        // The method does not exist where this token calls it.
        "unknown_method"
        // The method is gone for good.
        | "method_deprecated"
        // This kind of token (a user token, a legacy bot) may not stream, and never will.
        | "not_allowed_token_type"
        // The installation lacks a scope streaming needs; only a reinstall adds it.
        | "missing_scope"
        // The workspace's network policy keeps the method from this caller.
        | "accesslimited" => Reach::Workspace,
        // Streaming exists, but not in this kind of channel.
        "method_not_supported_for_channel_type" => Reach::Channel,
        // Everything else is about this call: its arguments (`invalid_arguments`,
        // `missing_recipient_user_id`, `missing_recipient_team_id`, `msg_too_long`), its
        // target (`channel_not_found`, `not_in_channel`, `is_archived`, `thread_not_found`,
        // `user_not_found`, `team_not_found`), the message's state
        // (`message_not_in_streaming_state`, `streaming_state_conflict`), or Slack's moment
        // (`ratelimited`, `internal_error`, `fatal_error`, `service_unavailable`,
        // `request_timeout`), and any code not known here.
        _ => Reach::Call,
    }
}

#[cfg(test)]
mod tests {
    use slack_morphism::errors::{SlackClientApiError, SlackClientHttpError, SlackRateLimitError};

    use super::*;

    fn api(code: &str) -> SlackClientError {
        SlackClientError::ApiError(SlackClientApiError::new(code.to_string()))
    }

    #[test]
    fn only_no_streaming_errors_reach_beyond_the_call() {
        for code in ["unknown_method", "not_allowed_token_type", "missing_scope"] {
            assert_eq!(reach(&api(code)), Reach::Workspace, "{code}");
        }
        assert_eq!(
            reach(&api("method_not_supported_for_channel_type")),
            Reach::Channel
        );
        for code in [
            "invalid_arguments",
            "missing_recipient_team_id",
            "msg_too_long",
            "channel_not_found",
            "message_not_in_streaming_state",
            "internal_error",
            "some_code_from_next_year",
        ] {
            assert_eq!(reach(&api(code)), Reach::Call, "{code}");
        }
        let limited = SlackClientError::RateLimitError(SlackRateLimitError::new());
        assert_eq!(reach(&limited), Reach::Call);
        let missing = SlackClientError::HttpError(SlackClientHttpError::new(StatusCode::NOT_FOUND));
        assert_eq!(reach(&missing), Reach::Workspace);
        let down =
            SlackClientError::HttpError(SlackClientHttpError::new(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(reach(&down), Reach::Call);
    }
}
