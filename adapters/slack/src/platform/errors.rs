//! Error mapping: slack-morphism's errors and non-success HTTP answers as the platform
//! contract's [`PlatformError`], keeping only codes and statuses (never response bodies).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anchorbot_platform::PlatformError;
use hyper::header::RETRY_AFTER;
use hyper::StatusCode;
use slack_morphism::errors::SlackClientError;

use crate::client::Api;
use crate::rate::DEFAULT_RETRY_AFTER;

/// The contract's error for a slack-morphism error; counts rate limits. Only codes and
/// statuses are kept: response bodies stay out of errors.
pub(crate) fn map_error(api: &Api, e: &SlackClientError) -> PlatformError {
    match e {
        SlackClientError::RateLimitError(r) => {
            api.rate_limited.fetch_add(1, Ordering::Relaxed);
            PlatformError::RateLimited {
                retry_after: r.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            }
        }
        SlackClientError::ApiError(a) => PlatformError::Rejected(a.code.clone()),
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            PlatformError::Transport(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::HttpError(h) => {
            PlatformError::Rejected(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::ProtocolError(p) => {
            PlatformError::Transport(format!("unreadable answer from Slack: {}", p.json_error))
        }
        SlackClientError::EndOfStream(_) => {
            PlatformError::Transport("Slack closed the connection".into())
        }
        SlackClientError::HttpProtocolError(_) | SlackClientError::SystemError(_) => {
            PlatformError::Transport(format!("cannot reach Slack: {e}"))
        }
        SlackClientError::SocketModeProtocolError(s) => PlatformError::Transport(s.message.clone()),
    }
}

/// The Web API error code of `e`, if Slack answered with one.
pub(super) fn api_code(e: &SlackClientError) -> Option<&str> {
    match e {
        SlackClientError::ApiError(a) => Some(a.code.as_str()),
        _ => None,
    }
}

/// The error for a non-success HTTP answer from `who`.
pub(super) fn http_status_error<B>(
    who: &str,
    status: StatusCode,
    r: &hyper::Response<B>,
) -> PlatformError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = r
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
        PlatformError::RateLimited { retry_after }
    } else if status.is_server_error() {
        PlatformError::Transport(format!("{who} answered {status}"))
    } else {
        PlatformError::Rejected(format!("{who} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use slack_morphism::errors::{SlackClientApiError, SlackRateLimitError};

    use super::*;
    use crate::platform::testing::platform;

    #[test]
    fn slack_errors_map_to_the_contract_and_rate_limits_are_counted() {
        let p = platform();
        let limited = SlackClientError::RateLimitError(
            SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
        );
        assert!(matches!(
            map_error(&p.api, &limited),
            PlatformError::RateLimited { retry_after } if retry_after == Duration::from_secs(7)
        ));
        assert_eq!(p.api.rate_limited.load(Ordering::Relaxed), 1);
        let refused = SlackClientError::ApiError(
            SlackClientApiError::new("channel_not_found".into())
                .with_http_response_body("{\"ok\":false}".into()),
        );
        match map_error(&p.api, &refused) {
            PlatformError::Rejected(code) => assert_eq!(code, "channel_not_found"),
            other => panic!("{other:?}"),
        }
    }
}
