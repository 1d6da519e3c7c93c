//! Native streaming: an answer written with `chat.startStream`, `chat.appendStream` and
//! `chat.stopStream`, to the asking user in their own team. What a streaming error says about
//! the workspace or channel is remembered, so later answers post and update instead.

use std::sync::Arc;

use anchorbot_platform::{AppendStream, MessageRef, PlatformError, ReplyTarget};
use async_trait::async_trait;
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;

use super::errors::{api_code, map_error};
use super::state::{writer, Sent, Shared};
use super::{call, SlackPlatform, Written, AFTER_ANSWER, WRITE};
use crate::client::Api;
use crate::markdown::APPEND_STREAM_MAX;
use crate::rate::Patience;
use crate::stream_errors::{self, Reach};
use crate::target::{is_dm, SlackTarget};

impl SlackPlatform {
    /// The team of the person a stream to `target` answers, which for a Slack Connect guest
    /// or an Enterprise Grid user is not the workspace the event came through. The event says
    /// so in `user_team`, but slack-morphism's event types do not keep that field (Socket
    /// Mode hands over only the typed event), so it comes from the person's `users.info`
    /// (`team_id`), the look-up that also names them ([`crate::users`]); without it, the
    /// workspace's id is the best guess left.
    async fn recipient_team(&self, target: &SlackTarget) -> String {
        let names = &self.api.names;
        match names.team_of(&self.api, &target.user).await {
            Some(team) => team,
            None => target.team.clone(),
        }
    }

    /// Remembers what a streaming error says about streaming beyond this call.
    fn note_stream_error(&self, e: &SlackClientError, team: &str, channel: &str) {
        match stream_errors::reach(e) {
            Reach::Workspace => {
                tracing::info!(
                    error = api_code(e).unwrap_or("not found"),
                    "native streaming unavailable in this workspace; posting and updating"
                );
                self.shared.turn_streaming_off(team);
            }
            Reach::Channel => {
                tracing::info!(
                    error = api_code(e).unwrap_or("refused"),
                    "native streaming unavailable in this channel; posting and updating"
                );
                self.shared.turn_channel_streaming_off(channel);
            }
            Reach::Call => {}
        }
    }

    /// Ends the native stream of message `channel`/`ts` if it is still open, with `blocks`
    /// under the text. Only a rate limit is returned for a plain stop: any other failure
    /// leaves nothing to retry, and the message is then treated as a normal one.
    pub(super) async fn stop_stream(
        &self,
        channel: &str,
        ts: &str,
        blocks: Option<Value>,
    ) -> Result<(), PlatformError> {
        let Some(team) = self.shared.open_stream_team(channel, ts) else {
            return Ok(());
        };
        let mut body = json!({ "channel": channel, "ts": ts });
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        let result = call::<Value>(&self.api, "chat.stopStream", &body, AFTER_ANSWER).await;
        match result {
            Ok(_) => {
                self.shared.stream_stopped(channel, ts);
                Ok(())
            }
            Err(e) => {
                let mapped = map_error(&self.api, &e);
                self.note_stream_error(&e, &team, channel);
                if matches!(mapped, PlatformError::RateLimited { .. }) {
                    return Err(mapped);
                }
                tracing::debug!(error = %mapped, "chat.stopStream failed");
                if body.get("blocks").is_some() {
                    return Err(mapped);
                }
                self.shared.stream_stopped(channel, ts);
                Ok(())
            }
        }
    }

    /// Opens a native stream for an answer to `to` (the platform's
    /// [`anchorbot_platform::Platform::open_stream`]).
    pub(super) async fn start_stream(
        &self,
        to: &ReplyTarget,
    ) -> Result<Option<Box<dyn AppendStream>>, PlatformError> {
        // chat.startStream needs a thread to stream into.
        let Some(thread) = to.thread.as_deref() else {
            return Ok(None);
        };
        let target = SlackTarget::of(to);
        if self.shared.streaming_off(&target.team) || self.shared.channel_streaming_off(&to.channel)
        {
            return Ok(None);
        }
        let mut body = json!({ "channel": to.channel, "thread_ts": thread });
        if !is_dm(&to.channel) {
            // Outside DMs Slack wants to know whom the stream answers, in their own team.
            if target.user.is_empty() || target.team.is_empty() {
                return Ok(None);
            }
            let team = self.recipient_team(&target).await;
            body["recipient_user_id"] = json!(target.user);
            body["recipient_team_id"] = json!(team);
        }
        // With no allowance left the answer posts and updates at once, rather than waiting
        // for chat.startStream's (a Tier 2 method: 20 a minute).
        let started =
            call::<Written>(&self.api, "chat.startStream", &body, Patience::Reroute).await;
        match started {
            Ok(started) => {
                let message = MessageRef {
                    channel: started.channel.unwrap_or_else(|| to.channel.clone()),
                    id: started.ts,
                };
                self.shared
                    .remember(&message, Sent::streaming(to, &target.team));
                Ok(Some(Box::new(SlackStream {
                    api: self.api.clone(),
                    shared: self.shared.clone(),
                    team: target.team,
                    message,
                })))
            }
            Err(SlackClientError::RateLimitError(_)) => {
                tracing::debug!("no chat.startStream allowance; this answer posts and updates");
                Ok(None)
            }
            Err(e) => {
                self.note_stream_error(&e, &target.team, &to.channel);
                match stream_errors::reach(&e) {
                    Reach::Call => {
                        // Only this answer posts and updates; the next one streams again.
                        let e = map_error(&self.api, &e);
                        tracing::info!(error = %e, "this answer could not stream; posting it");
                        Err(e)
                    }
                    Reach::Workspace | Reach::Channel => Ok(None),
                }
            }
        }
    }
}

/// A reply's native stream: `chat.appendStream` per append. `stop` leaves the stream open
/// and returns the message: the stream is stopped by the next write to the message, or by
/// [`Platform::finished`] with the feedback buttons in `chat.stopStream`'s `blocks`, which
/// saves a `chat.update` per answer.
struct SlackStream {
    /// The Web API.
    api: Api,
    /// Where the text and the streaming fallback are remembered.
    shared: Arc<Shared>,
    /// The workspace, for the fallback memory.
    team: String,
    /// The streamed message.
    message: MessageRef,
}

#[async_trait]
impl AppendStream for SlackStream {
    async fn append(&mut self, text: &str) -> Result<(), PlatformError> {
        for piece in chunks(text, APPEND_STREAM_MAX) {
            let body = json!({
                "channel": self.message.channel,
                "ts": self.message.id,
                "markdown_text": piece,
            });
            if let Err(e) = call::<Value>(&self.api, "chat.appendStream", &body, WRITE).await {
                match stream_errors::reach(&e) {
                    Reach::Workspace => self.shared.turn_streaming_off(&self.team),
                    Reach::Channel => self
                        .shared
                        .turn_channel_streaming_off(&self.message.channel),
                    Reach::Call => {}
                }
                return Err(map_error(&self.api, &e));
            }
            self.shared.append_text(&self.message, piece);
            self.shared
                .writers
                .wrote("chat.appendStream", &writer(&self.message));
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<MessageRef, PlatformError> {
        Ok(self.message.clone())
    }

    fn message(&self) -> Option<MessageRef> {
        Some(self.message.clone())
    }
}

/// `text` in pieces of at most `max` characters, cut at character boundaries.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(1);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use anchorbot_platform::{FinalState, Platform};

    use super::*;
    use crate::platform::blocks::feedback_block;
    use crate::platform::testing::{
        body_of, methods, platform, platform_at, serve, slack_target, target, web_api,
    };
    use crate::rate;
    use anchorbot_platform::sync::lock;

    #[test]
    fn appends_are_cut_at_the_limit_on_character_boundaries() {
        assert!(chunks("", 3).is_empty());
        assert_eq!(chunks("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(chunks("ééééé", 2), ["éé", "éé", "é"]);
        let big = "x".repeat(APPEND_STREAM_MAX * 2 + 1);
        let pieces = chunks(&big, APPEND_STREAM_MAX);
        assert_eq!(pieces.len(), 3);
        assert!(pieces
            .iter()
            .all(|p| p.chars().count() <= APPEND_STREAM_MAX));
    }

    /// A fake Web API whose `chat.startStream` answers `invalid_arguments` to the first call,
    /// and whose `users.info` says U1 belongs to team T2.
    fn first_stream_refused() -> impl Fn(&str) -> (u16, Vec<(&'static str, String)>, String) {
        let starts = std::sync::atomic::AtomicUsize::new(0);
        move |path: &str| {
            let json = vec![("Content-Type", "application/json".to_string())];
            match path.split('?').next().unwrap_or_default() {
                "/api/chat.startStream" if starts.fetch_add(1, Ordering::SeqCst) == 0 => (
                    200,
                    json,
                    r#"{"ok":false,"error":"invalid_arguments"}"#.into(),
                ),
                "/api/users.info" => (
                    200,
                    json,
                    r#"{"ok":true,"user":{"id":"U1","team_id":"T2","name":"u1"}}"#.into(),
                ),
                _ => (200, json, r#"{"ok":true,"channel":"C1","ts":"2.0"}"#.into()),
            }
        }
    }

    #[tokio::test]
    async fn a_per_call_stream_error_falls_back_for_that_answer_only() {
        let (base, seen) = serve(first_stream_refused()).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let mut reply =
                anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to.clone());
            reply.update("Hello").await;
            reply
                .finish("Hello world", FinalState::Complete)
                .await
                .expect("finished");
        }
        let writes: Vec<String> = methods(&seen)
            .into_iter()
            .filter(|m| !m.starts_with("/api/users.info"))
            .collect();
        assert_eq!(
            writes,
            [
                "/api/chat.startStream",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream",
            ],
            "the refused answer was posted and updated; the next one streamed"
        );
        assert!(p.streams_in("T1"));
    }

    #[tokio::test]
    async fn a_stream_answers_the_asker_in_their_own_team() {
        let (base, seen) = serve(first_stream_refused()).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let _ = p.open_stream(&to).await;
        }
        let starts: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(path, _, _)| path == "/api/chat.startStream")
            .map(|(_, _, b)| b["recipient_team_id"].clone())
            .collect();
        assert_eq!(starts, [json!("T2"), json!("T2")]);
        let look_ups = methods(&seen)
            .iter()
            .filter(|m| m.starts_with("/api/users.info?"))
            .count();
        assert_eq!(look_ups, 1, "the team is asked once and remembered");
    }

    #[tokio::test]
    async fn without_start_stream_allowance_the_answer_posts_at_once() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let key = rate::key(&p.api.workspace(), "chat.startStream", None);
        p.api.budget.hold(&key, Duration::from_secs(60));
        let to = target("D1", Some("1.0"), slack_target("T1"));
        let started = std::time::Instant::now();
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply.update("Hello").await;
        reply
            .finish("Hello world", FinalState::Complete)
            .await
            .expect("finished");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            methods(&seen),
            [
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update"
            ],
            "no chat.startStream was sent into the hold"
        );
        assert!(
            p.streams_in("T1"),
            "a spent allowance does not turn streaming off"
        );
    }

    #[tokio::test]
    async fn streaming_needs_a_thread_recipients_and_a_workspace_that_streams() {
        let p = platform();
        let no_thread = target("C1", None, slack_target("T1"));
        assert!(p.open_stream(&no_thread).await.expect("no call").is_none());
        let no_recipient = target("C1", Some("1.0"), SlackTarget::default());
        assert!(p
            .open_stream(&no_recipient)
            .await
            .expect("no call")
            .is_none());

        assert!(p.streams_in("T1"));
        p.shared.turn_streaming_off("T1");
        assert!(!p.streams_in("T1"));
        assert!(p.streams_in("T2"), "the memory is per workspace");
        let t1 = target("C1", Some("1.0"), slack_target("T1"));
        assert!(p.open_stream(&t1).await.expect("no call").is_none());
        // Clones share the memory.
        assert!(!p.clone().streams_in("T1"));
    }

    #[tokio::test]
    async fn a_streamed_answer_ends_with_the_feedback_buttons_in_stop_stream() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply.update("Hello").await;
        reply
            .finish("Hello world", FinalState::Complete)
            .await
            .expect("finished");
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream"
            ]
        );
        let start = body_of(&seen, "/api/chat.startStream");
        assert_eq!(start["thread_ts"], "1.0");
        assert_eq!(start["recipient_user_id"], "U1");
        assert_eq!(start["recipient_team_id"], "T1");
        let appended: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(p, _, _)| p == "/api/chat.appendStream")
            .map(|(_, _, b)| b["markdown_text"].clone())
            .collect();
        assert_eq!(appended, [json!("Hello"), json!(" world")]);
        let stop = body_of(&seen, "/api/chat.stopStream");
        assert_eq!(stop["ts"], "2.0");
        assert_eq!(stop["blocks"], json!([feedback_block()]));
        assert!(lock(&seen)
            .iter()
            .all(|(_, auth, _)| auth.as_deref() == Some("Bearer xoxb-test-token")));
        assert_eq!(reply.messages()[0].id, "2.0");
    }

    #[tokio::test]
    async fn a_workspace_without_streaming_gets_post_and_update_from_then_on() {
        let (base, seen) = serve(web_api(&["chat.startStream"])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let mut reply =
                anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to.clone());
            reply.update("Hello").await;
            reply
                .finish("Hello world", FinalState::Complete)
                .await
                .expect("finished");
        }
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
            ],
            "the workspace is remembered"
        );
        let post = body_of(&seen, "/api/chat.postMessage");
        assert_eq!(post["thread_ts"], "1.0");
        assert_eq!(
            post["blocks"],
            json!([{ "type": "markdown", "text": "Hello" }])
        );
        // The final text, then the buttons under it (finished knows the answer is final).
        let updates: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(p, _, _)| p == "/api/chat.update")
            .map(|(_, _, b)| b["blocks"].clone())
            .collect();
        assert_eq!(
            updates[0],
            json!([{ "type": "markdown", "text": "Hello world" }])
        );
        assert_eq!(
            updates[1],
            json!([{ "type": "markdown", "text": "Hello world" }, feedback_block()]),
        );
        assert!(!p.streams_in("T1"));
    }

    #[tokio::test]
    async fn a_failed_answer_gets_no_buttons_and_its_stream_is_stopped() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply
            .finish("The model is unreachable.", FinalState::Failed)
            .await
            .expect("finished");
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream"
            ]
        );
        assert!(body_of(&seen, "/api/chat.stopStream")
            .get("blocks")
            .is_none());
    }
}
