//! Shared files: each attachment of a message is fetched through the platform (within the
//! size limit), ingested into the conversation's documents with progress notes, and listed in
//! the anchor. Every attachment ends with its own final line: added, resumed or refused.

use std::sync::Arc;

use anchorbot_platform::{
    ConversationKey, FinalState, IncomingMessage, Platform, Status, StreamingReply,
};

use super::Engine;
use crate::docs::DocError;

impl Engine {
    /// Ingests one file into the conversation and lists it in the anchor.
    pub async fn ingest_file(
        &self,
        key: &ConversationKey,
        name: &str,
        bytes: &[u8],
        progress: &tokio::sync::watch::Sender<String>,
    ) -> Result<crate::docs::IngestReport, DocError> {
        let docs = self
            .docs
            .as_ref()
            .ok_or(DocError::Unsupported { mime: "any".into() })?;
        let report = docs.ingest(&key.to_string(), name, bytes, progress).await?;
        if !report.duplicate {
            let doc = report.doc.clone();
            self.store
                .update(key, |anchor| {
                    anchor.documents.retain(|d| d.id != doc.id);
                    anchor.documents.push(crate::store::DocumentRef {
                        id: doc.id.clone(),
                        name: doc.name.clone(),
                        pages: doc.pages,
                        status: doc.status,
                    });
                })
                .await
                .map_err(|e| DocError::Store(e.to_string()))?;
        }
        Ok(report)
    }

    /// Ingests a message's attachments, reporting progress and a summary line each.
    pub(super) async fn ingest_attachments(
        &self,
        m: &IncomingMessage,
        platform: &Arc<dyn Platform>,
    ) {
        for a in &m.attachments {
            let mut reply = StreamingReply::new(platform.clone(), m.reply_to.clone());
            let (text, state) = match self.ingest_attachment(m, a, platform, &reply).await {
                Ok(summary) => (summary, FinalState::Notice),
                Err(message) => (message, FinalState::Failed),
            };
            let _ = reply.finish(&text, state).await;
        }
    }

    /// Downloads and ingests one attachment, showing progress on `reply`. The error is the
    /// message for the user (and is logged).
    async fn ingest_attachment(
        &self,
        m: &IncomingMessage,
        a: &anchorbot_platform::Attachment,
        platform: &Arc<dyn Platform>,
        reply: &StreamingReply,
    ) -> Result<String, String> {
        let refuse = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(conversation = %m.key, file = %a.name, error = %e, "{what}");
            format!("⚠️ I can't read {}: {e}.", a.name)
        };
        let Some(docs) = &self.docs else {
            return Err(format!(
                "⚠️ I can't read shared files in this setup, so I ignored {}.",
                a.name
            ));
        };
        let limit = docs.settings().max_file_bytes();
        if a.size > limit {
            return Err(refuse(
                "file refused",
                &DocError::TooLarge {
                    size: a.size,
                    limit,
                },
            ));
        }
        reply
            .status(Status::Progress(format!("Reading {}…", a.name)))
            .await;
        let bytes = platform
            .fetch(a, limit)
            .await
            .map_err(|e| refuse("attachment download failed", &e))?;
        let (tx, mut rx) = tokio::sync::watch::channel(String::new());
        let ingest = self.ingest_file(&m.key, &a.name, &bytes, &tx);
        tokio::pin!(ingest);
        let result = loop {
            tokio::select! {
                r = &mut ingest => break r,
                changed = rx.changed() => {
                    if changed.is_ok() {
                        let note = rx.borrow_and_update().clone();
                        reply.status(Status::Progress(note)).await;
                    }
                }
            }
        };
        result
            .map(|report| report.summary())
            .map_err(|e| refuse("document not ingested", &e))
    }
}
