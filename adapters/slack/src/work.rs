//! What Slack's handlers hand the mapper ([`crate::inbound`]): the payloads that arrived
//! ([`Work`]), and who the bot is ([`Identity`]), by which the handlers and the claims
//! ([`crate::arrival`]) tell what may be owed an answer.

use slack_morphism::prelude::*;

/// Who the bot is in its workspace, from `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Workspace id.
    pub team: String,
    /// The bot's user id (`UBOT`), as mentions spell it.
    pub bot_user: String,
    /// The bot's bot id (`B…`), on messages it posts.
    pub bot_id: Option<String>,
}

/// Something Slack sent, waiting to be mapped.
#[derive(Debug)]
pub enum Work {
    /// An Events API event.
    Push(Box<SlackPushEventCallback>),
    /// A slash command.
    Command(Box<SlackCommandEvent>),
    /// A button click or other interaction.
    Interaction(Box<SlackInteractionEvent>),
}
