//! Shared files, read in the background so the conversation stays usable while a big file is
//! embedded. A message with files becomes a job on its conversation's lane ([`super::ingests`]
//! keeps the order and the limits) and the conversation's worker goes on with the next event
//! at once; questions asked meanwhile are answered from what is already stored.
//!
//! The lane reads the message's files one after another, each fetched through the platform
//! (within the size limit) with its progress status and its own final line (added, resumed,
//! refused, or not kept), lists each in the anchor, then answers the message's own text, if
//! any, under the conversation's turn lock, so a question sent with a file sees that file. The
//! event is marked handled when all of that is done. At most
//! [`super::ingests::READING_AT_ONCE`] files are read at once across conversations.
//!
//! `/clear` stops the file being read and drops the files of earlier messages unread, each
//! saying it was not kept; at the shutdown deadline a file being read stops where it is and its
//! user is told that sharing it again resumes it.

use std::sync::Arc;

use anchorbot_platform::{
    Attachment, ConversationKey, FinalState, IncomingMessage, Platform, PlatformError, Status,
    StreamingReply,
};
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::ingests::{self, Admitted, Next};
use super::report::ingest_summary;
use super::{Engine, FilesBusy, Outcome, Refusal, TurnFailure};
use crate::docs::{DocError, IngestReport};

/// A message whose files wait for, or are read by, its conversation's lane.
pub struct Job {
    /// The message, files and text.
    message: IncomingMessage,
    /// Where its replies go.
    platform: Arc<dyn Platform>,
    /// Completes [`Pending`].
    outcome: oneshot::Sender<Outcome>,
}

/// The outcome of a message whose files are read in the background, once they are in.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Outcome>);

impl Pending {
    /// Waits until the message's files are read and its text answered.
    pub async fn outcome(self) -> Outcome {
        self.0
            .await
            .unwrap_or(Outcome::Failed(TurnFailure::FilesEnded))
    }
}

/// Why reading stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// `/clear`: nothing of the file is kept.
    Cleared,
    /// The shutdown deadline: what was stored stays, and sharing the file again resumes.
    Restart,
}

impl Stopped {
    /// The final line of a file that was not read to its end.
    fn file_line(self, name: &str) -> String {
        match self {
            Stopped::Cleared => format!(
                "🗑️ I did not keep {name}: this conversation was cleared before I finished reading it."
            ),
            Stopped::Restart => format!(
                "⏸️ Reading {name} was interrupted by a restart of anchorbot. Share the file again and I'll pick up where I stopped."
            ),
        }
    }

    /// The reply to a message's text that was not answered because its files were not read.
    fn question_line(self) -> &'static str {
        match self {
            Stopped::Cleared => "I did not answer the question sent with those files: this conversation was cleared before they were read.",
            Stopped::Restart => "⚠️ anchorbot is restarting, so I did not answer the question sent with those files. Share them again and ask once they are in.",
        }
    }
}

/// How reading one file ended.
enum ReadEnd {
    /// Stored.
    Kept(IngestReport),
    /// Not stored.
    Refused(FileError),
    /// Stopped by `/clear` or the shutdown deadline.
    Stopped,
}

/// Why a shared file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// This setup has no documents service.
    #[error("I can't read shared files in this setup")]
    NoDocuments,
    /// The platform did not hand over the file's bytes.
    #[error(transparent)]
    Download(#[from] PlatformError),
    /// The documents service refused the file or failed to read it.
    #[error(transparent)]
    Document(#[from] DocError),
}

impl FileError {
    /// The file's final line in the chat.
    fn line(&self, name: &str) -> String {
        match self {
            FileError::NoDocuments => format!("⚠️ {self}, so I ignored {name}."),
            _ => format!("⚠️ I can't read {name}: {self}."),
        }
    }
}

impl Engine {
    /// Ingests one file into the conversation.
    pub async fn ingest_file(
        &self,
        key: &ConversationKey,
        name: &str,
        bytes: &[u8],
        progress: &tokio::sync::watch::Sender<String>,
    ) -> Result<IngestReport, FileError> {
        let docs = self.docs.as_ref().ok_or(FileError::NoDocuments)?;
        // The document store is the one record of a document: the anchor does not list it.
        Ok(docs.ingest(key, name, bytes, progress).await?)
    }

    /// Hands a message with files to its conversation's lane (starting the lane if it has
    /// none). `Err` is the outcome of a message that was not taken: a duplicate, or refused
    /// over the limits (its user is told).
    pub(super) async fn read_in_background(
        self: &Arc<Self>,
        m: IncomingMessage,
        platform: Arc<dyn Platform>,
    ) -> Result<Pending, Outcome> {
        let key = m.key.clone();
        let event_id = m.event_id.clone();
        let files = m.attachments.iter().map(|a| a.name.clone()).collect();
        let (tx, rx) = oneshot::channel();
        let job = Job {
            message: m,
            platform,
            outcome: tx,
        };
        let admitted = self.board().admit(&key, &event_id, files, job);
        match admitted {
            Ok(Admitted::NewLane) => {
                let engine = self.clone();
                self.background.spawn(engine.lane(key));
                Ok(Pending(rx))
            }
            Ok(Admitted::Queued { ahead }) => {
                tracing::info!(conversation = %key, event = %event_id, ahead, "files wait for the conversation's earlier ones");
                Ok(Pending(rx))
            }
            Err((ingests::Refusal::Duplicate, _)) => {
                tracing::info!(conversation = %key, event = %event_id, "files of this event are being read; redelivery dropped");
                Err(Outcome::Duplicate)
            }
            Err((refusal, job)) => Err(self.refuse_files(job, &refusal).await),
        }
    }

    /// Tells the user their files were not taken (too many are waiting) and marks the event
    /// handled once they know.
    async fn refuse_files(&self, job: Job, refusal: &ingests::Refusal) -> Outcome {
        let m = &job.message;
        let why = match refusal {
            ingests::Refusal::ConversationFull => FilesBusy::Conversation,
            _ => FilesBusy::Everywhere,
        };
        tracing::warn!(conversation = %m.key, ?refusal, "files refused: too many waiting");
        let mut delivered = true;
        for a in &m.attachments {
            let mut text = format!(
                "⚠️ {why}, so I did not take {}. Share it again once they are in.",
                a.name
            );
            if !m.text.trim().is_empty() {
                text.push_str(" Send your question again with it.");
            }
            let mut reply = StreamingReply::new(job.platform.clone(), m.reply_to.clone());
            delivered &= reply.finish(&text, FinalState::Failed).await.is_ok();
        }
        if delivered {
            self.mark_handled(&m.key, &m.event_id).await;
        }
        Outcome::Refused(Refusal::FilesNotTaken(why))
    }

    /// Stops the files being read in `key` for a `/clear` and waits until the one being read
    /// has returned; files of messages before the clear are dropped unread when their turn
    /// comes.
    pub(super) async fn stop_reading(&self, key: &ConversationKey) {
        let stopping = self.board().clear(key);
        // The documents' own stop first: it ends an ingestion at its next step and lets it
        // record what it stored, which cancelling the job outright would not.
        if let Some(docs) = &self.docs {
            docs.stop_ingests(key).await;
        }
        if let Some(s) = stopping {
            s.cancel.cancel();
            s.finished.cancelled().await;
        }
    }

    /// A conversation's lane: runs its jobs one at a time until none is left.
    async fn lane(self: Arc<Self>, key: ConversationKey) {
        loop {
            // Bound first: the board's lock must not be held across the job.
            let next = self.board().next(&key);
            let Some(Next {
                job,
                cleared,
                cancel,
            }) = next
            else {
                return;
            };
            let Job {
                message,
                platform,
                outcome,
            } = job;
            let run = self.run_job(&message, &platform, cleared, &cancel);
            let result = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::error!(conversation = %key, "reading shared files panicked; the conversation goes on");
                    let _ = platform
                        .ephemeral(&message.reply_to, &message.author, "⚠️ Something went wrong on my side while reading your files. Please share them again.")
                        .await;
                    Outcome::Failed(TurnFailure::FilesPanicked)
                }
            };
            metrics::counter!(crate::ops::metrics::TURNS, "outcome" => result.label()).increment(1);
            // After the job marked its event handled: a redelivery from now on is caught by
            // the store instead of the board.
            self.board().finish(&key);
            let _ = outcome.send(result);
        }
    }

    /// Reads a message's files, then answers its text. `cleared`: a `/clear` came after the
    /// message, so its files are dropped unread.
    async fn run_job(
        self: &Arc<Self>,
        m: &IncomingMessage,
        platform: &Arc<dyn Platform>,
        cleared: bool,
        cancel: &CancellationToken,
    ) -> Outcome {
        let key = &m.key;
        let mut stopped = if cleared {
            Some(Stopped::Cleared)
        } else if self.is_cutting() {
            Some(Stopped::Restart)
        } else {
            None
        };
        for (i, a) in m.attachments.iter().enumerate() {
            let mut reply = StreamingReply::new(platform.clone(), m.reply_to.clone());
            let end = match stopped {
                Some(_) => ReadEnd::Stopped,
                None => self.read_file(m, i, a, platform, &reply, cancel).await,
            };
            self.board().file_done(key, i);
            let (text, state) = match end {
                ReadEnd::Kept(report) => (ingest_summary(&report), FinalState::Notice),
                ReadEnd::Refused(e) => (e.line(&a.name), FinalState::Failed),
                ReadEnd::Stopped => {
                    let why = *stopped.get_or_insert_with(|| self.stop_reason(key));
                    tracing::info!(conversation = %key, file = %a.name, ?why, "file not read to its end");
                    (why.file_line(&a.name), FinalState::Notice)
                }
            };
            if let Err(e) = reply.finish(&text, state).await {
                tracing::warn!(conversation = %key, error = %e, "file summary not delivered");
            }
        }
        if stopped.is_none() && !m.text.trim().is_empty() {
            // The answer waits for any turn of the conversation running now; a /clear or the
            // shutdown deadline ends the wait.
            let turn = tokio::select! {
                turn = self.turn_locks.lock(key) => Some(turn),
                _ = cancel.cancelled() => None,
            };
            match turn {
                Some(_turn) => return self.answer(m, platform.clone()).await,
                None => stopped = Some(self.stop_reason(key)),
            }
        }
        let Some(why) = stopped else {
            self.mark_handled(key, &m.event_id).await;
            return Outcome::Command;
        };
        if !m.text.trim().is_empty() {
            let mut reply = StreamingReply::new(platform.clone(), m.reply_to.clone());
            if let Err(e) = reply.finish(why.question_line(), FinalState::Notice).await {
                tracing::warn!(conversation = %key, error = %e, "note on the unanswered question not delivered");
            }
        }
        match why {
            Stopped::Cleared => {
                self.mark_handled(key, &m.event_id).await;
                Outcome::Command
            }
            // Left unhandled, like a cut turn: a redelivery after the restart reads the files
            // again, resuming where this stopped.
            Stopped::Restart => Outcome::Stopped,
        }
    }

    /// Why the current job of `key` was stopped.
    fn stop_reason(&self, key: &ConversationKey) -> Stopped {
        if self.board().cleared(key) || !self.is_cutting() {
            Stopped::Cleared
        } else {
            Stopped::Restart
        }
    }

    /// Fetches and ingests file `index` of a message, showing progress on `reply` and on the
    /// board (for `/status`).
    async fn read_file(
        &self,
        m: &IncomingMessage,
        index: usize,
        a: &Attachment,
        platform: &Arc<dyn Platform>,
        reply: &StreamingReply,
        cancel: &CancellationToken,
    ) -> ReadEnd {
        let key = &m.key;
        let refuse = |what: &str, e: FileError| {
            tracing::warn!(conversation = %key, file = %a.name, error = %e, "{what}");
            ReadEnd::Refused(e)
        };
        let Some(docs) = &self.docs else {
            return ReadEnd::Refused(FileError::NoDocuments);
        };
        let limit = docs.limits().max_file_bytes;
        if a.size > limit {
            let e = DocError::TooLarge {
                size: a.size,
                limit,
            };
            return refuse("file refused", e.into());
        }
        let show = |note: String| async move {
            self.board().note(key, index, note.clone());
            reply.status(Status::Progress(note)).await;
        };
        let slot = match self.reading_slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                show(format!(
                    "Waiting to read {}: other files are being read first…",
                    a.name
                ))
                .await;
                tokio::select! {
                    slot = self.reading_slots.acquire() => slot.expect("the reading slots are never closed"),
                    _ = cancel.cancelled() => return ReadEnd::Stopped,
                }
            }
        };
        show(format!("Reading {}…", a.name)).await;
        let fetched = tokio::select! {
            fetched = platform.fetch(a, limit) => fetched,
            _ = cancel.cancelled() => return ReadEnd::Stopped,
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => return refuse("attachment download failed", e.into()),
        };
        let (tx, mut rx) = tokio::sync::watch::channel(String::new());
        let ingest = docs.ingest(key, &a.name, &bytes, &tx);
        // A cancelled job asks the documents to stop, so the ingestion records what it stored
        // and returns; if it had not registered yet (the stop found nothing), it is dropped.
        let stop = async {
            cancel.cancelled().await;
            docs.stop_ingests(key).await;
        };
        tokio::pin!(ingest, stop);
        let result = loop {
            tokio::select! {
                biased;
                r = &mut ingest => break Some(r),
                _ = &mut stop => break None,
                changed = rx.changed() => {
                    if changed.is_ok() {
                        let note = rx.borrow_and_update().clone();
                        show(note).await;
                    }
                }
            }
        };
        drop(slot);
        match result {
            None | Some(Err(DocError::Cancelled)) => ReadEnd::Stopped,
            Some(Err(e)) => refuse("document not ingested", e.into()),
            Some(Ok(report)) => ReadEnd::Kept(report),
        }
    }
}
