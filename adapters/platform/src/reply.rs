//! A streamed reply built on the [`Platform`] primitives. Where the platform has a native
//! append stream (Slack's `chat.startStream`), the answer is appended to it in buffered pieces;
//! otherwise the first text is posted and later text edits it. Either way at most one write per
//! [`Platform::write_interval`] (which the platform stretches when many replies share its
//! allowance), a rate limit's `retry_after` is waited out (and counted), and text past the
//! platform's length limit continues in follow-up messages, split after the Markdown is
//! rendered for the platform. A native stream that refuses an append for any reason but a
//! rate limit is left as it is, and the final text is written by editing the message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    split_message, AppendStream, FinalState, MessageRef, Platform, PlatformError, ReplyTarget,
    Status,
};

/// How long the final write keeps being retried while the platform rate-limits it: long
/// enough for a minute's allowance to refill, as many replies may be waiting for it.
const FINAL_DEADLINE: Duration = Duration::from_secs(180);

/// The longest single rate-limit wait honoured before the final write is tried again.
const MAX_FINAL_WAIT: Duration = Duration::from_secs(30);

/// The shortest wait between two tries of the final write.
const MIN_FINAL_WAIT: Duration = Duration::from_millis(10);

/// The native stream of a reply, while it is used.
struct Native {
    /// The open stream.
    stream: Box<dyn AppendStream>,
    /// The text appended so far.
    appended: String,
    /// The answer no longer extends what was appended (text was taken back), or outgrew one
    /// message: nothing more is appended, and the final text is written by editing.
    diverged: bool,
}

/// One reply that grows as the answer streams in.
pub struct StreamingReply {
    /// The adapter that posts and edits.
    platform: Arc<dyn Platform>,
    /// Where the reply goes.
    target: ReplyTarget,
    /// Messages posted so far, with the text each currently shows.
    sent: Vec<(MessageRef, String)>,
    /// The native stream, once opened.
    native: Option<Native>,
    /// Whether opening a native stream was tried.
    stream_tried: bool,
    /// When the platform was last written, for throttling.
    last_flush: Option<Instant>,
    /// No write before this instant: the platform asked to wait (`retry_after`).
    hold_until: Option<Instant>,
    /// Rate-limit waits honoured so far.
    rate_limited: u32,
    /// The full reply text as of the latest update.
    latest: String,
    /// Told the messages that carry the reply whenever one more appears.
    noter: Option<Box<dyn Fn(Vec<MessageRef>) + Send + Sync>>,
    /// How many messages the noter was told of.
    noted: usize,
}

impl StreamingReply {
    /// Starts a reply to `target`. Nothing is posted until there is text.
    pub fn new(platform: Arc<dyn Platform>, target: ReplyTarget) -> Self {
        Self {
            platform,
            target,
            sent: Vec::new(),
            native: None,
            stream_tried: false,
            last_flush: None,
            hold_until: None,
            rate_limited: 0,
            latest: String::new(),
            noter: None,
            noted: 0,
        }
    }

    /// Calls `noter` with the messages that carry the reply each time one more appears (the
    /// first post, the native stream's message, a follow-up), so they can be found again if
    /// the process dies mid-answer.
    pub fn noting(mut self, noter: impl Fn(Vec<MessageRef>) + Send + Sync + 'static) -> Self {
        self.noter = Some(Box::new(noter));
        self
    }

    /// Tells the noter of a new message, if one appeared.
    fn note_messages(&mut self) {
        let Some(noter) = &self.noter else {
            return;
        };
        let mut refs = self.messages();
        if let Some(m) = self.native.as_ref().and_then(|n| n.stream.message()) {
            if !refs.contains(&m) {
                refs.insert(0, m);
            }
        }
        if refs.len() > self.noted {
            self.noted = refs.len();
            noter(refs);
        }
    }

    /// The messages that carry the reply so far, in order.
    pub fn messages(&self) -> Vec<MessageRef> {
        self.sent.iter().map(|(m, _)| m.clone()).collect()
    }

    /// Rate-limit waits this reply honoured.
    pub fn rate_limited(&self) -> u32 {
        self.rate_limited
    }

    /// Shows a transient status. Failures are logged, never fatal: a status is cosmetic.
    pub async fn status(&self, status: Status) {
        if let Err(e) = self.platform.status(&self.target, &status).await {
            tracing::debug!(error = %e, "status update failed");
        }
    }

    /// Offers reasoning text to the adapter. Failures are logged, never fatal.
    pub async fn reasoning(&self, delta: &str) {
        if let Err(e) = self.platform.reasoning(&self.target, delta).await {
            tracing::debug!(error = %e, "reasoning update failed");
        }
    }

    /// Replaces the reply's text with `full_text`; the platform sees it when the write
    /// interval (and any rate-limit wait) allows.
    pub async fn update(&mut self, full_text: &str) {
        self.latest.clear();
        self.latest.push_str(full_text);
        let now = Instant::now();
        let native = self.native.as_ref().is_some_and(|n| !n.diverged);
        let interval = self.platform.write_interval(&self.target, native);
        let due = self.last_flush.is_none_or(|t| t.elapsed() >= interval)
            && self.hold_until.is_none_or(|t| now >= t);
        if due && !self.latest.trim().is_empty() {
            if let Err(e) = self.write().await {
                self.note_error(&e);
                tracing::debug!(error = %e, "streaming write skipped");
            }
            self.note_messages();
        }
    }

    /// Writes the final text (retrying rate limits), clears the status and reports the state
    /// with the messages that carry the reply.
    pub async fn finish(
        &mut self,
        final_text: &str,
        state: FinalState,
    ) -> Result<(), PlatformError> {
        self.latest.clear();
        self.latest.push_str(final_text);
        // A rate limit met while streaming still holds: the final write waits it out too.
        if let Some(until) = self.hold_until.take() {
            let wait = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(wait.min(MAX_FINAL_WAIT)).await;
        }
        let started = Instant::now();
        let mut result = self.write_final().await;
        while let Err(PlatformError::RateLimited { retry_after }) = &result {
            let left = FINAL_DEADLINE.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            self.rate_limited += 1;
            let wait = (*retry_after)
                .clamp(MIN_FINAL_WAIT, MAX_FINAL_WAIT)
                .min(left);
            tokio::time::sleep(wait).await;
            result = self.write_final().await;
        }
        self.note_messages();
        self.status(Status::Clear).await;
        let messages = self.messages();
        if let Err(e) = self
            .platform
            .finished(&self.target, &state, &messages)
            .await
        {
            tracing::debug!(error = %e, "finish notification failed");
        }
        result
    }

    fn note_error(&mut self, e: &PlatformError) {
        if let PlatformError::RateLimited { retry_after } = e {
            self.rate_limited += 1;
            self.hold_until = Some(Instant::now() + *retry_after);
        }
    }

    /// Opens the native stream on the first write, when the platform has one.
    async fn ensure_stream(&mut self) {
        if self.stream_tried {
            return;
        }
        self.stream_tried = true;
        match self.platform.open_stream(&self.target).await {
            Ok(Some(stream)) => {
                self.native = Some(Native {
                    stream,
                    appended: String::new(),
                    diverged: false,
                })
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(error = %e, "native streaming unavailable; posting and editing")
            }
        }
    }

    /// One throttled write of `latest`.
    async fn write(&mut self) -> Result<(), PlatformError> {
        self.last_flush = Some(Instant::now());
        self.ensure_stream().await;
        let limit = self.platform.limits().max_message_chars;
        match &mut self.native {
            Some(native) if !native.diverged => {
                let shown = self.platform.render_stream(&self.latest);
                let fits = shown.chars().count() <= limit;
                match shown.strip_prefix(native.appended.as_str()) {
                    Some(delta) if fits => {
                        if !delta.is_empty() {
                            if let Err(e) = native.stream.append(delta).await {
                                // Only a rate limit is worth appending again: anything else
                                // leaves the rest of this answer to an edit.
                                if !matches!(e, PlatformError::RateLimited { .. }) {
                                    native.diverged = true;
                                }
                                return Err(e);
                            }
                            native.appended.push_str(delta);
                        }
                    }
                    _ => native.diverged = true,
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.edit_pieces().await,
        }
    }

    /// The final write: the rest of the native stream and its stop, then edits and
    /// follow-ups for whatever the stream could not hold.
    async fn write_final(&mut self) -> Result<(), PlatformError> {
        self.last_flush = Some(Instant::now());
        if !self.latest.trim().is_empty() {
            self.ensure_stream().await;
        }
        if let Some(mut native) = self.native.take() {
            let limit = self.platform.limits().max_message_chars;
            let rendered = self.platform.render(&self.latest);
            if !native.diverged && rendered.chars().count() <= limit {
                if let Some(delta) = rendered.strip_prefix(native.appended.as_str()) {
                    if !delta.is_empty() {
                        match native.stream.append(delta).await {
                            Ok(()) => native.appended.push_str(delta),
                            Err(e @ PlatformError::RateLimited { .. }) => {
                                self.native = Some(native);
                                return Err(e);
                            }
                            // The stream refused the rest of this answer: the edit below
                            // writes it.
                            Err(e) => tracing::debug!(error = %e, "final append refused"),
                        }
                    }
                }
            }
            let message = match native.stream.stop().await {
                Ok(m) => m,
                Err(e) => {
                    self.native = Some(native);
                    return Err(e);
                }
            };
            self.sent.push((message, native.appended));
        }
        self.edit_pieces().await
    }

    /// Brings the posted messages up to `latest`: edits the ones that changed, posts the
    /// pieces past the last one.
    async fn edit_pieces(&mut self) -> Result<(), PlatformError> {
        let limit = self.platform.limits().max_message_chars;
        let rendered = self.platform.render(&self.latest);
        let pieces = split_message(&rendered, limit);
        for (i, piece) in pieces.into_iter().enumerate() {
            if i < self.sent.len() {
                if self.sent[i].1 != piece {
                    self.platform.edit(&self.sent[i].0, &piece).await?;
                    self.sent[i].1 = piece;
                }
            } else {
                let r = self.platform.post(&self.target, &piece).await?;
                self.sent.push((r, piece));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::{Attachment, Author, Limits};

    /// A platform that records every call; with `native`, it offers an append stream.
    #[derive(Default)]
    struct Recorder {
        native: bool,
        /// Answer the next edits with a rate limit.
        limit_edits: Mutex<u32>,
        /// The rate limit's `retry_after`, in ms (5 when zero).
        retry_after_ms: u64,
        /// Refuse the native stream's appends after this many (`invalid_arguments`).
        refuse_appends_after: Option<usize>,
        /// What `write_interval` answers (`Duration::ZERO` when unset).
        interval: Duration,
        calls: Arc<Mutex<Vec<String>>>,
    }

    struct Stream(Arc<Mutex<Vec<String>>>, Option<usize>);

    #[async_trait]
    impl AppendStream for Stream {
        async fn append(&mut self, text: &str) -> Result<(), PlatformError> {
            let mut calls = self.0.lock().unwrap();
            let appended = calls.iter().filter(|c| c.starts_with("append")).count();
            if self.1.is_some_and(|n| appended >= n) {
                return Err(PlatformError::Rejected("invalid_arguments".into()));
            }
            calls.push(format!("append {text}"));
            Ok(())
        }
        async fn stop(&mut self) -> Result<MessageRef, PlatformError> {
            self.0.lock().unwrap().push("stop".into());
            Ok(MessageRef {
                channel: "C".into(),
                id: "s1".into(),
            })
        }
    }

    #[async_trait]
    impl Platform for Recorder {
        fn limits(&self) -> Limits {
            Limits {
                max_message_chars: 40,
                min_edit_interval: Duration::ZERO,
            }
        }
        async fn post(&self, _to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(format!("post {text}"));
            Ok(MessageRef {
                channel: "C".into(),
                id: format!("m{}", calls.len()),
            })
        }
        async fn edit(&self, m: &MessageRef, text: &str) -> Result<(), PlatformError> {
            let mut left = self.limit_edits.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(PlatformError::RateLimited {
                    retry_after: Duration::from_millis(self.retry_after_ms.max(5)),
                });
            }
            self.calls
                .lock()
                .unwrap()
                .push(format!("edit {} {text}", m.id));
            Ok(())
        }
        async fn ephemeral(
            &self,
            _: &ReplyTarget,
            _: &Author,
            _: &str,
        ) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn status(&self, _: &ReplyTarget, _: &Status) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn open_stream(
            &self,
            _to: &ReplyTarget,
        ) -> Result<Option<Box<dyn AppendStream>>, PlatformError> {
            Ok(self.native.then(|| {
                Box::new(Stream(self.calls.clone(), self.refuse_appends_after))
                    as Box<dyn AppendStream>
            }))
        }
        fn write_interval(&self, _to: &ReplyTarget, _native: bool) -> Duration {
            self.interval
        }
        async fn fetch(&self, _: &Attachment, _: u64) -> Result<Vec<u8>, PlatformError> {
            Err(PlatformError::Rejected("no files".into()))
        }
    }

    fn calls(p: &Recorder) -> Vec<String> {
        p.calls.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_native_stream_gets_deltas_and_the_final_rest() {
        let p = Arc::new(Recorder {
            native: true,
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("Hello").await;
        r.update("Hello wor").await;
        r.finish("Hello world.", FinalState::Complete)
            .await
            .unwrap();
        assert_eq!(
            calls(&p),
            ["append Hello", "append  wor", "append ld.", "stop"]
        );
        assert_eq!(r.messages()[0].id, "s1");
    }

    #[tokio::test]
    async fn text_taken_back_or_past_the_limit_is_finished_by_editing() {
        let p = Arc::new(Recorder {
            native: true,
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("Thinking aloud").await;
        // The answer so far was reasoning after all: it no longer extends what was appended.
        r.update("The answer").await;
        let long = "The answer is long. ".repeat(3);
        r.finish(&long, FinalState::Complete).await.unwrap();
        let c = calls(&p);
        assert_eq!(&c[..2], ["append Thinking aloud", "stop"]);
        assert!(c[2].starts_with("edit s1 The answer"), "{c:?}");
        assert!(c[3].starts_with("post "), "the rest follows: {c:?}");
        assert_eq!(r.messages().len(), 2);
    }

    #[tokio::test]
    async fn a_rate_limit_is_waited_out_and_counted() {
        let p = Arc::new(Recorder {
            limit_edits: Mutex::new(2),
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("one").await;
        r.update("one two").await;
        // Held: the platform asked to wait, so this update does not write.
        r.update("one two three").await;
        r.finish("one two three four", FinalState::Complete)
            .await
            .unwrap();
        assert_eq!(r.rate_limited(), 2);
        assert_eq!(
            calls(&p),
            ["post one", "edit m1 one two three four"],
            "nothing was written during the wait"
        );
    }

    #[tokio::test]
    async fn the_final_write_waits_out_a_rate_limit_met_while_streaming() {
        let p = Arc::new(Recorder {
            limit_edits: Mutex::new(1),
            retry_after_ms: 300,
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("one").await;
        let limited = Instant::now();
        r.update("one two").await;
        r.finish("one two three", FinalState::Complete)
            .await
            .unwrap();
        assert!(
            limited.elapsed() >= Duration::from_millis(300),
            "the final edit came {:?} after a 429 asking for 300 ms",
            limited.elapsed()
        );
        assert_eq!(calls(&p), ["post one", "edit m1 one two three"]);
    }

    #[tokio::test]
    async fn writes_follow_the_platforms_write_interval() {
        let p = Arc::new(Recorder {
            interval: Duration::from_secs(60),
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        for text in ["one", "one two", "one two three"] {
            r.update(text).await;
        }
        r.finish("one two three four", FinalState::Complete)
            .await
            .unwrap();
        assert_eq!(
            calls(&p),
            ["post one", "edit m1 one two three four"],
            "a busy platform gets the first text and the final one, nothing between"
        );
    }

    #[tokio::test]
    async fn a_stream_refusing_an_append_is_finished_by_editing() {
        let p = Arc::new(Recorder {
            native: true,
            refuse_appends_after: Some(1),
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("Hello").await;
        r.update("Hello wor").await;
        r.update("Hello world").await;
        r.finish("Hello world.", FinalState::Complete)
            .await
            .unwrap();
        assert_eq!(
            calls(&p),
            ["append Hello", "stop", "edit s1 Hello world."],
            "one refused append, then no more appends, and the final text by an edit"
        );
    }

    #[tokio::test]
    async fn the_final_write_outlasts_more_than_three_rate_limits() {
        let p = Arc::new(Recorder {
            limit_edits: Mutex::new(6),
            ..Default::default()
        });
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default());
        r.update("one").await;
        r.finish("one two", FinalState::Complete).await.unwrap();
        assert_eq!(calls(&p), ["post one", "edit m1 one two"]);
        assert_eq!(r.rate_limited(), 6);
    }

    #[tokio::test]
    async fn the_noter_hears_of_each_new_message_once() {
        let p = Arc::new(Recorder::default());
        let heard = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let h = heard.clone();
        let mut r = StreamingReply::new(p.clone(), ReplyTarget::default()).noting(move |refs| {
            h.lock()
                .unwrap()
                .push(refs.into_iter().map(|m| m.id).collect())
        });
        r.update("one").await;
        r.update("one two").await;
        // Past the 40-character limit: a second message follows the first.
        let long = "word ".repeat(12);
        r.finish(&long, FinalState::Complete).await.unwrap();
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.len(), 2, "{heard:?}");
        assert_eq!(heard[0], ["m1"]);
        assert_eq!(heard[1].len(), 2);
        assert_eq!(heard[1][0], "m1");
    }
}
