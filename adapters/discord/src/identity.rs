//! Who the bot is on Discord: its user id and its application, as READY (or a claim taken
//! over, see [`crate::arrival`]) tells them.

/// Who the bot is, from READY (or from a claim taken over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The bot's user id, as mentions spell it.
    pub bot: u64,
    /// The application id (commands, interaction webhooks).
    pub application: u64,
}
