//! What a Discord message is claimed as (see the contract's `Arrival`) once it is known to be
//! for the bot, before anything is done about it on Discord (a thread created from a
//! mention): its conversation as known before any thread exists, its event id (its
//! snowflake, as the mapped message carries it), and its body, so that a process taking the
//! claim over maps it again. Discord does not deliver an event again to a new session, so the
//! claim is all that keeps a mention whose process died mid-mapping from being lost.
//!
//! The body holds the message as serenity reads it from the gateway, and who the bot is: a
//! process that takes the claim over may not have a gateway session (it stands by) and so no
//! READY to tell it.
//!
//! Only messages are claimed. Slash commands and button presses are journaled once mapped
//! (`accept`): mapping them changes nothing on Discord, so a process dying before it loses
//! nothing that mapping again could not redo.

use anchorbot_platform::Arrival;
use serde::{Deserialize, Serialize};
use serenity::all::Message;

use crate::identity::Identity;
use crate::route::Route;

/// The body journaled with a claim.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    /// The bot's user id.
    bot: u64,
    /// The application's id.
    application: u64,
    /// The message, as the gateway sent it.
    message: Box<Message>,
}

/// The claim for `m`, routed by `route`; `None` when its ids make no conversation key or
/// it cannot be written down.
pub fn of(route: &Route, m: &Message, me: Identity) -> Option<Arrival> {
    let key = route.key()?;
    let body = Body {
        bot: me.bot,
        application: me.application,
        message: Box::new(m.clone()),
    };
    match serde_json::to_string(&body) {
        Ok(body) => Some(Arrival {
            key,
            event_id: m.id.get().to_string(),
            body,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "a Discord message could not be journaled");
            None
        }
    }
}

/// Who the bot was and the message an arrival journaled by [`of`] holds; `None` for a body
/// this adapter did not write.
pub fn message_of(arrival: &Arrival) -> Option<(Identity, Message)> {
    match serde_json::from_str::<Body>(&arrival.body) {
        Ok(b) => Some((
            Identity {
                bot: b.bot,
                application: b.application,
            },
            *b.message,
        )),
        Err(e) => {
            tracing::warn!(error = %e, "a journaled Discord message is unreadable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::ChannelInfo;
    use crate::route::tests::{message, BOT};
    use crate::route::{considered, route};
    use serde_json::json;

    const ME: Identity = Identity {
        bot: BOT,
        application: 43,
    };
    const TEXT: Option<ChannelInfo> = Some(ChannelInfo {
        parent: None,
        bot_owned: false,
    });

    /// The claim the mapper makes for `m` in a channel described by `info`.
    fn claim(m: &Message, info: Option<ChannelInfo>) -> Option<Arrival> {
        route(m, BOT, info, true).and_then(|r| of(&r, m, ME))
    }

    #[test]
    fn a_mention_is_claimed_under_its_channel_and_reads_back() {
        let m = message(
            2,
            true,
            &format!("<@{BOT}> what is an anchor?"),
            json!({"attachments": [{"id": "3", "filename": "a.pdf", "size": 10,
                "url": "https://cdn.discordapp.com/a.pdf", "proxy_url": "https://media/a.pdf",
                "content_type": "application/pdf"}]}),
        );
        let a = claim(&m, TEXT).expect("a mention is claimed");
        assert_eq!(a.key.to_string(), "discord:1/2");
        assert_eq!(a.event_id, "900");
        let (me, back) = message_of(&a).expect("the body reads back");
        assert_eq!(me, ME);
        assert_eq!(back.id, m.id);
        assert_eq!(back.content, m.content);
        assert_eq!(back.guild_id, m.guild_id);
        assert_eq!(back.mentions[0].id.get(), BOT);
        assert_eq!(back.attachments[0].filename, "a.pdf");
        assert_eq!(back.attachments[0].size, 10);
        assert!(considered(&back, me.bot));
        // Mapped again, it goes where it went the first time.
        assert_eq!(claim(&back, TEXT), Some(a));
    }

    #[test]
    fn chatter_is_never_claimed() {
        assert_eq!(claim(&message(2, true, "lunch?", json!({})), TEXT), None);
        assert_eq!(claim(&message(2, true, "lunch?", json!({})), None), None);
        let bots = message(
            2,
            true,
            &format!("<@{BOT}> ping"),
            json!({"author": {"id": "8", "username": "b", "discriminator": "0",
                "avatar": null, "bot": true}}),
        );
        assert_eq!(claim(&bots, TEXT), None);
    }

    #[test]
    fn a_body_from_elsewhere_is_refused() {
        let a = Arrival {
            key: anchorbot_platform::ConversationKey::new("discord", None, "9", None).unwrap(),
            event_id: "1".into(),
            body: "{\"slack\":\"push\"}".into(),
        };
        assert!(message_of(&a).is_none());
    }
}
