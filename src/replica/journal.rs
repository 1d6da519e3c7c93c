//! What the journal of accepted events holds, and what a process does with an entry it takes
//! over from one that died.
//!
//! An entry is either an [`InboundEvent`] (journaled by [`anchorbot_platform::EventSink::accept`])
//! or an [`Arrival`] (journaled by [`anchorbot_platform::EventSink::claim`] before the adapter
//! mapped it). Beside it the journal keeps the messages the answer had posted, noted as they
//! appear ([`note_reply`]); a process taking the entry over deletes them before it answers
//! again (or, where the platform refuses, marks them cut off), so the conversation shows one
//! complete answer, not a partial one and then another.

use std::sync::Arc;

use anchorbot_platform::{Arrival, ConversationKey, InboundEvent, MessageRef, Platform};
use serde::{Deserialize, Serialize};

use crate::storage::Journal;

/// What the note on a partial answer that could not be deleted says.
pub const CUT_OFF_NOTE: &str =
    "⚠️ This answer was cut off when the bot restarted; the complete answer follows.";

/// A journal entry's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// Claimed as it arrived; its adapter maps it.
    Arrival {
        /// The arrival.
        arrival: Arrival,
    },
    /// A mapped event, answered by the engine.
    Event(InboundEvent),
}

impl Entry {
    /// The platform whose adapter handles the entry.
    pub fn platform(&self) -> &str {
        match self {
            Entry::Arrival { arrival } => arrival.key.platform(),
            Entry::Event(e) => e.key().platform(),
        }
    }

    /// The bytes journaled.
    pub fn encode(&self) -> Vec<u8> {
        // Both shapes are plain data (strings, lists, flags): they always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An entry read back; `Err` for bytes no version of anchorbot wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Notes `messages` (those carrying the answer so far) on the journaled event `event` of `key`,
/// in the background: a lost note only leaves a partial message behind after a crash.
pub fn note_reply(
    journal: Arc<dyn Journal>,
    key: &ConversationKey,
    event: &str,
    messages: Vec<MessageRef>,
) {
    let Ok(bytes) = serde_json::to_vec(&messages) else {
        return;
    };
    let (conv, event) = (key.to_string(), event.to_string());
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            if let Err(e) = journal.note_reply(&conv, &event, &bytes).await {
                tracing::debug!(error = %e, "the messages of an answer were not noted");
            }
        });
    }
}

/// Takes away what a dead process's answer had posted (`reply`, as noted): each message is
/// deleted, or, when the platform refuses, edited to say it was cut off. Returns how many were
/// taken away or marked.
pub async fn clear_partial(platform: &Arc<dyn Platform>, reply: &[u8]) -> usize {
    if reply.is_empty() {
        return 0;
    }
    let messages: Vec<MessageRef> = match serde_json::from_slice(reply) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "the messages of a cut-off answer are unreadable; left as they are");
            return 0;
        }
    };
    let mut done = 0;
    for message in &messages {
        match platform.delete(message).await {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::info!(error = %e, "a cut-off answer could not be deleted; marking it");
                match platform.edit(message, CUT_OFF_NOTE).await {
                    Ok(()) => done += 1,
                    Err(e) => tracing::warn!(error = %e, "a cut-off answer could not be marked"),
                }
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorbot_platform::{Author, IncomingMessage, ReplyTarget};

    fn key() -> ConversationKey {
        ConversationKey::new("slack", Some("T1"), "C1", Some("1.000100")).unwrap()
    }

    #[test]
    fn both_kinds_of_entry_read_back_as_written() {
        let arrival = Entry::Arrival {
            arrival: Arrival {
                key: key(),
                event_id: "C1:1.000200".into(),
                body: r#"{"type":"event_callback"}"#.into(),
            },
        };
        let event = Entry::Event(InboundEvent::Message(IncomingMessage {
            key: key(),
            event_id: "C1:1.000200".into(),
            author: Author {
                id: "U1".into(),
                display_name: "Ann".into(),
            },
            text: "rent?".into(),
            attachments: Vec::new(),
            reply_to: ReplyTarget::default(),
            mentions_bot: true,
            from_bot: false,
        }));
        for entry in [arrival, event] {
            let back = Entry::decode(&entry.encode()).unwrap();
            assert_eq!(back, entry);
            assert_eq!(back.platform(), "slack");
        }
        assert!(Entry::decode(b"{\"nothing\":1}").is_err());
    }
}
