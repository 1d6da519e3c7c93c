//! The output of `anchorbot ask`: the answer streams to standard output and nothing else does.
//! A failure note (and whatever part of a final text is not answer) goes to standard error.
//!
//! A reply is written as it grows, one write behind: the engine's final write for a failed
//! turn (the partial answer followed by the reason, or the reason alone) looks like any other
//! until `finished` says the turn failed. So the newest text is held, the text before it is
//! printed once a newer write extends it, and `finished` sends what is held to standard output
//! for an answer or to standard error for a failure.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use anchorbot_console::ConsolePlatform;
use anchorbot_platform::sync;
use anchorbot_platform::{
    Attachment, Author, FinalState, Limits, MessageRef, Platform, PlatformError, ReplyTarget,
    Status,
};
use async_trait::async_trait;

/// One message of the reply.
#[derive(Default)]
struct Held {
    /// Text already on standard output.
    shown: String,
    /// The newest text, not yet printed.
    newest: String,
}

impl Held {
    /// The part of the newest text not shown yet: its tail when it extends what is shown, the
    /// whole text on a new line when it rewrote it.
    fn unshown(&self) -> String {
        match self.newest.strip_prefix(self.shown.as_str()) {
            Some(tail) => tail.to_string(),
            None => format!("\n{}", self.newest),
        }
    }
}

/// The `ask` platform: answers on standard output (through the console's own output, which
/// also wipes the "thinking…" status), failures on `failures`.
pub struct AskOutput {
    /// Prints answer text, status and reasoning.
    console: ConsolePlatform,
    /// Where failure notes go (standard error).
    failures: Mutex<Box<dyn Write + Send>>,
    /// Each message's text, by id.
    held: Mutex<HashMap<String, Held>>,
    /// Message id counter.
    seq: AtomicU64,
    /// Whether a failure note was written.
    failed: AtomicBool,
}

impl AskOutput {
    /// Answers through `console`, failures to `failures`.
    pub fn new(console: ConsolePlatform, failures: Box<dyn Write + Send>) -> Self {
        Self {
            console,
            failures: Mutex::new(failures),
            held: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// Whether a failure note was written to standard error.
    pub fn wrote_failure(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Prints `text` as answer text.
    async fn answer(&self, to: &ReplyTarget, text: &str) -> Result<(), PlatformError> {
        if text.is_empty() {
            return Ok(());
        }
        self.console.post(to, text).await.map(|_| ())
    }
}

#[async_trait]
impl Platform for AskOutput {
    fn limits(&self) -> Limits {
        self.console.limits()
    }

    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        let id = self.seq.fetch_add(1, Ordering::Relaxed).to_string();
        sync::lock(&self.held).insert(
            id.clone(),
            Held {
                shown: String::new(),
                newest: text.to_string(),
            },
        );
        Ok(MessageRef {
            channel: to.channel.clone(),
            id,
        })
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let ready = {
            let mut held = sync::lock(&self.held);
            let h = held.entry(message.id.clone()).or_default();
            // Only a write that the next one extends is surely answer text.
            let ready = text
                .starts_with(h.newest.as_str())
                .then(|| h.unshown())
                .filter(|t| !t.is_empty());
            if ready.is_some() {
                h.shown = h.newest.clone();
            }
            h.newest = text.to_string();
            ready
        };
        let to = ReplyTarget {
            channel: message.channel.clone(),
            ..ReplyTarget::default()
        };
        match ready {
            Some(text) => self.answer(&to, &text).await,
            None => Ok(()),
        }
    }

    async fn ephemeral(
        &self,
        to: &ReplyTarget,
        user: &Author,
        text: &str,
    ) -> Result<(), PlatformError> {
        self.console.ephemeral(to, user, text).await
    }

    async fn status(&self, to: &ReplyTarget, status: &Status) -> Result<(), PlatformError> {
        self.console.status(to, status).await
    }

    async fn reasoning(&self, to: &ReplyTarget, delta: &str) -> Result<(), PlatformError> {
        self.console.reasoning(to, delta).await
    }

    async fn finished(
        &self,
        to: &ReplyTarget,
        state: &FinalState,
        messages: &[MessageRef],
    ) -> Result<(), PlatformError> {
        let (rest, any_shown) = {
            let mut held = sync::lock(&self.held);
            let mut rest = Vec::new();
            let mut any_shown = false;
            for m in messages {
                if let Some(h) = held.remove(&m.id) {
                    any_shown |= !h.shown.is_empty();
                    rest.push(h.unshown());
                }
            }
            (rest, any_shown)
        };
        if *state == FinalState::Failed {
            // The console's status must not be left on the line the note starts.
            self.console.status(to, &Status::Clear).await?;
            if any_shown {
                self.console.finished(to, state, messages).await?;
            }
            let note = rest.concat();
            let mut failures = sync::lock(&self.failures);
            let _ = writeln!(failures, "{}", note.trim());
            let _ = failures.flush();
            self.failed.store(true, Ordering::SeqCst);
            return Ok(());
        }
        for text in rest {
            self.answer(to, &text).await?;
        }
        self.console.finished(to, state, messages).await
    }

    async fn fetch(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError> {
        self.console.fetch(attachment, max_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    async fn reply(writes: &[&str], state: FinalState) -> (String, String, bool) {
        let (out, err) = (Shared::default(), Shared::default());
        let ask = AskOutput::new(
            ConsolePlatform::new(Box::new(out.clone()), false),
            Box::new(err.clone()),
        );
        let to = ReplyTarget::default();
        let m = ask.post(&to, writes[0]).await.unwrap();
        for w in &writes[1..] {
            ask.edit(&m, w).await.unwrap();
        }
        ask.finished(&to, &state, &[m]).await.unwrap();
        (out.text(), err.text(), ask.wrote_failure())
    }

    #[tokio::test]
    async fn an_answer_streams_to_stdout_whole() {
        let (out, err, failed) = reply(
            &["The", "The answer", "The answer is 42."],
            FinalState::Complete,
        )
        .await;
        assert_eq!(out, "The answer is 42.\n");
        assert_eq!(err, "");
        assert!(!failed);
    }

    #[tokio::test]
    async fn a_failure_after_a_partial_answer_puts_only_the_reason_on_stderr() {
        let (out, err, failed) = reply(
            &[
                "half",
                "half an ans",
                "half an ans\n\n⚠️ The answer broke off and was not saved: HTTP 500.",
            ],
            FinalState::Failed,
        )
        .await;
        assert_eq!(out, "half an ans\n");
        assert_eq!(
            err,
            "⚠️ The answer broke off and was not saved: HTTP 500.\n"
        );
        assert!(failed);
    }

    #[tokio::test]
    async fn a_failure_with_no_answer_leaves_stdout_empty() {
        let (out, err, failed) =
            reply(&["⚠️ I cannot reach the model server."], FinalState::Failed).await;
        assert_eq!(out, "");
        assert_eq!(err, "⚠️ I cannot reach the model server.\n");
        assert!(failed);
    }

    #[tokio::test]
    async fn a_rewritten_answer_is_printed_again_on_a_new_line() {
        let (out, _, _) = reply(&["Draft", "Draft one", "Final text"], FinalState::Complete).await;
        assert_eq!(out, "Draft\nFinal text\n");
    }
}
