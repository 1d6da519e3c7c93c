//! Metrics of the platforms' Web APIs, recorded by each adapter's REST wrapper through the
//! `metrics` facade (a no-op until the app installs a recorder). Labels are the platform name
//! and a route template or method name, never an id: `chat.postMessage`,
//! `POST /channels/{channel}/messages`.

/// Web API calls, by `platform` and `route`.
pub const API_CALLS: &str = "anchorbot_platform_api_calls_total";
/// Web API calls that failed, by `platform` and `route`.
pub const API_ERRORS: &str = "anchorbot_platform_api_errors_total";
/// Waits for a platform's rate limit (a 429 with `retry_after`), by `platform` and `route`.
pub const RATE_LIMIT_WAITS: &str = "anchorbot_platform_rate_limit_waits_total";
/// Seconds spent waiting on a platform's rate limit (a 429's hold or a spent allowance), by
/// `platform` and `method`: a histogram, so `_sum` is the seconds and `_count` the waits.
pub const RATE_LIMIT_SECONDS: &str = "anchorbot_platform_rate_limit_wait_seconds";

/// Counts one call to `route` (a method name or a template from [`route_template`]) on
/// `platform`.
pub fn api_call(platform: &'static str, route: &str) {
    metrics::counter!(API_CALLS, "platform" => platform, "route" => route.to_string()).increment(1);
}

/// Counts one failed call.
pub fn api_error(platform: &'static str, route: &str) {
    metrics::counter!(API_ERRORS, "platform" => platform, "route" => route.to_string())
        .increment(1);
}

/// Counts one wait for the rate limit.
pub fn rate_limit_wait(platform: &'static str, route: &str) {
    metrics::counter!(RATE_LIMIT_WAITS, "platform" => platform, "route" => route.to_string())
        .increment(1);
}

/// Counts `waited` spent waiting on the rate limit of `method` (a method name, a route
/// template or a bucket) on `platform`.
pub fn rate_limit_seconds(platform: &'static str, method: &str, waited: std::time::Duration) {
    metrics::histogram!(RATE_LIMIT_SECONDS, "platform" => platform, "method" => method.to_string())
        .record(waited.as_secs_f64());
}

/// A REST path as a bounded label: numeric segments (snowflakes) become `{id}` and long ones
/// (interaction and webhook tokens) `{token}`; the query is dropped.
pub fn route_template(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else if s.len() > 24 {
                "{token}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

/// Help texts, registered by the app when it installs its recorder.
pub fn describe() {
    metrics::describe_counter!(API_CALLS, "Platform Web API calls by platform and route.");
    metrics::describe_counter!(API_ERRORS, "Failed platform Web API calls.");
    metrics::describe_counter!(RATE_LIMIT_WAITS, "Waits for a platform's rate limit.");
    metrics::describe_histogram!(
        RATE_LIMIT_SECONDS,
        metrics::Unit::Seconds,
        "Seconds spent waiting on a platform's rate limit, by platform and method."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_carry_no_ids_or_tokens() {
        assert_eq!(
            route_template("PATCH", "/channels/123456789012345678/messages/98765?x=1"),
            "PATCH /channels/{id}/messages/{id}"
        );
        assert_eq!(
            route_template(
                "POST",
                "/interactions/1234/aW50ZXJhY3Rpb246MTIzNDU2Nzg5OmFiY2Q/callback"
            ),
            "POST /interactions/{id}/{token}/callback"
        );
    }
}
