//! Which messages are for the bot, and where each is answered: decided from the message and
//! what is known of its channel, with no Discord call, so that a message is claimed (see
//! [`crate::arrival`]) only once it is known to be the bot's, and never for the guild chatter
//! it owes nothing. The rules are listed in [`crate::inbound`]. What is known of a channel
//! ([`ChannelInfo`]) and the conversation key of a place ([`conversation_key`]) live here, as
//! routing reads them.

use anchorbot_platform::ConversationKey;
use serenity::all::{Message, MessageType};

/// What is known about a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The parent channel, when this channel is a thread.
    pub parent: Option<u64>,
    /// The bot created the thread.
    pub bot_owned: bool,
}

/// Where a message for the bot is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The guild; `None` in a DM.
    pub guild: Option<u64>,
    /// The channel, or the thread's parent when the message is in a thread.
    pub channel: u64,
    /// The thread the message is in.
    pub thread: Option<u64>,
    /// A thread is to be created from the message (a mention in a guild channel, with
    /// `reply_in_thread`); it then becomes the conversation.
    pub start_thread: bool,
    /// The message mentions the bot.
    pub mentions_bot: bool,
}

impl Route {
    /// The conversation as known before any thread is created from the message: what the
    /// message is claimed under.
    pub fn key(&self) -> Option<ConversationKey> {
        conversation_key(self.guild, self.channel, self.thread)
    }
}

/// Whether `m` may be for the bot at all: not the bot's own message (Discord echoes them),
/// not another bot's or a webhook's, not a system message.
pub fn considered(m: &Message, bot: u64) -> bool {
    m.author.id.get() != bot
        && !m.author.bot
        && m.webhook_id.is_none()
        && matches!(m.kind, MessageType::Regular | MessageType::InlineReply)
}

/// Where `m` is answered; `None` when it is not for the bot. `info` is what is known of a
/// guild message's channel (`None`: a DM, or a channel Discord would not describe, taken as
/// an ordinary channel).
pub fn route(
    m: &Message,
    bot: u64,
    info: Option<ChannelInfo>,
    reply_in_thread: bool,
) -> Option<Route> {
    if !considered(m, bot) {
        return None;
    }
    let mentions_bot = m.mentions.iter().any(|u| u.id.get() == bot);
    let channel = m.channel_id.get();
    let Some(guild) = m.guild_id.map(|g| g.get()) else {
        return Some(Route {
            guild: None,
            channel,
            thread: None,
            start_thread: false,
            mentions_bot,
        });
    };
    match info {
        Some(ChannelInfo {
            parent: Some(parent),
            bot_owned,
        }) => (bot_owned || mentions_bot).then_some(Route {
            guild: Some(guild),
            channel: parent,
            thread: Some(channel),
            start_thread: false,
            mentions_bot,
        }),
        _ => mentions_bot.then_some(Route {
            guild: Some(guild),
            channel,
            thread: None,
            start_thread: reply_in_thread,
            mentions_bot,
        }),
    }
}

/// The conversation: `discord:GUILD/CHANNEL/THREAD` in a thread, `discord:GUILD/CHANNEL` in a
/// guild channel, `discord:CHANNEL` in a DM.
pub fn conversation_key(
    guild: Option<u64>,
    channel: u64,
    thread: Option<u64>,
) -> Option<ConversationKey> {
    let (g, c) = (guild.map(|g| g.to_string()), channel.to_string());
    // A DM has no threads; a thread outside a guild is not something Discord has.
    let t = guild.and(thread).map(|t| t.to_string());
    match ConversationKey::new("discord", g.as_deref(), &c, t.as_deref()) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, "Discord ids do not make a conversation key; ignored");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The bot's user id in these tests.
    pub const BOT: u64 = 42;

    /// A message as the gateway sends it: user 7 writes `text` in `channel` (of guild 1, or a
    /// DM when `guild` is false), mentioning the bot when `text` does; `extra` overrides
    /// fields.
    pub fn message(channel: u64, guild: bool, text: &str, extra: Value) -> Message {
        let mut m = json!({
            "id": "900", "channel_id": channel.to_string(), "content": text,
            "author": {"id": "7", "username": "ada", "discriminator": "0", "global_name": "Ada",
                       "avatar": null},
            "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": false, "type": 0,
        });
        if guild {
            m["guild_id"] = json!("1");
        }
        if text.contains(&format!("<@{BOT}>")) {
            m["mentions"] = json!([{"id": BOT.to_string(), "username": "anchorbot",
                                    "discriminator": "0", "avatar": null, "bot": true}]);
        }
        if let (Value::Object(m), Value::Object(extra)) = (&mut m, extra) {
            m.extend(extra);
        }
        serde_json::from_value(m).expect("a gateway message")
    }

    const TEXT: Option<ChannelInfo> = Some(ChannelInfo {
        parent: None,
        bot_owned: false,
    });
    const OWN_THREAD: Option<ChannelInfo> = Some(ChannelInfo {
        parent: Some(2),
        bot_owned: true,
    });
    const OTHER_THREAD: Option<ChannelInfo> = Some(ChannelInfo {
        parent: Some(2),
        bot_owned: false,
    });

    #[test]
    fn what_the_bot_owes_nothing_has_no_route() {
        let mention = format!("<@{BOT}> hi");
        let cases = [
            (
                "chatter in a channel",
                message(2, true, "hi", json!({})),
                TEXT,
            ),
            (
                "chatter in a thread someone else owns",
                message(5, true, "hi", json!({})),
                OTHER_THREAD,
            ),
            (
                "the bot's own message",
                message(
                    5,
                    true,
                    "answer",
                    json!({"author": {"id": BOT.to_string(),
                    "username": "anchorbot", "discriminator": "0", "avatar": null,
                    "bot": true}}),
                ),
                OWN_THREAD,
            ),
            (
                "another bot's mention",
                message(
                    2,
                    true,
                    &mention,
                    json!({"author": {"id": "8",
                    "username": "other", "discriminator": "0", "avatar": null,
                    "bot": true}}),
                ),
                TEXT,
            ),
            (
                "a webhook's mention",
                message(2, true, &mention, json!({"webhook_id": "77"})),
                TEXT,
            ),
            (
                "a system message in the bot's thread",
                message(5, true, "", json!({"type": 18})),
                OWN_THREAD,
            ),
            (
                "chatter in a channel Discord would not describe",
                message(2, true, "hi", json!({})),
                None,
            ),
        ];
        for (what, m, info) in cases {
            assert_eq!(route(&m, BOT, info, true), None, "{what}");
        }
    }

    #[test]
    fn what_the_bot_owes_an_answer_is_routed() {
        let mention = format!("<@{BOT}> what is an anchor?");
        let r = route(&message(2, true, &mention, json!({})), BOT, TEXT, true).unwrap();
        assert_eq!(
            r,
            Route {
                guild: Some(1),
                channel: 2,
                thread: None,
                start_thread: true,
                mentions_bot: true
            }
        );
        assert_eq!(r.key().unwrap().to_string(), "discord:1/2");
        let in_place = route(&message(2, true, &mention, json!({})), BOT, TEXT, false).unwrap();
        assert!(!in_place.start_thread);
        let follow_up = route(&message(5, true, "and?", json!({})), BOT, OWN_THREAD, true);
        assert_eq!(
            follow_up.and_then(|r| r.key()).unwrap().to_string(),
            "discord:1/2/5"
        );
        let asked_in = route(
            &message(5, true, &mention, json!({})),
            BOT,
            OTHER_THREAD,
            true,
        );
        assert_eq!(
            asked_in.map(|r| (r.thread, r.start_thread)),
            Some((Some(5), false))
        );
        let dm = route(&message(9, false, "hello", json!({})), BOT, None, true).unwrap();
        assert_eq!(
            (dm.key().unwrap().to_string(), dm.start_thread),
            ("discord:9".to_string(), false)
        );
    }
}
